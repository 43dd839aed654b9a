"""Hardening of the exports (issue 24, classes 8, 10 and 11), each test failing on the code
before its fix:

* 8: every signature of the encoder, decoder and scorer SavedModels answers a batch of 0 rows
  with 0 rows, loaded in a TensorFlow-only process (the scorer raised "Tried to stack elements
  of an empty list"); so do the LiteRT files' signatures.
* 10: a warm-up file whose record length field is forged (2**40 with a valid length CRC) is
  refused with one `ExportError` before TensorFlow reads it (the replay crashed the process
  trying to allocate 1 TiB), as are a corrupt length CRC and a truncated file.
* 11: rows x K of one scorer request is bounded by `MAX_SCORE_ROW_SAMPLES`: a K and a row cap
  beyond it are refused by `write_scorer` and by ``keras-vae export`` before anything is
  written, and export.json records the bound.

Two tiny models with fresh weights (6 inputs, latent 2): a plain one and a conditional
VampPrior one with an IAF posterior (3 classes), so every signature kind is covered.
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf
from helpers import TENSORFLOW_ONLY_PRELUDE, assert_exit_2_and_unchanged, run_python

from keras_vae.export import (
    ExportError,
    export_run,
    litert,
    litert_checks,
    litert_models,
    saved_model,
    scorer,
)
from keras_vae.export.warmup import (
    WARMUP_PATH,
    masked_crc32c,
    replay_warmup_requests,
    write_warmup_requests,
)
from keras_vae.model import VAE
from keras_vae.signatures import MAX_SCORE_ROW_SAMPLES, SCORE_BUDGET_KEY

CAP = 8
K = 5
CALIBRATION = {"score": "kl", "threshold": 0.5, "anomaly_if": "above"}
MODELS = {
    "plain": {},
    "conditional": {
        "num_classes": 3, "prior": "vamp", "prior_components": 3, "posterior": "iaf",
        "flow_steps": 1, "flow_hidden_units": (8,),
    },
}  # fmt: skip
# Every signature the SavedModels must serve, so that a missing one fails too.
SIGNATURES = {
    "encoder": ["posterior_sample", "serving_default"],
    "decoder": ["generate", "sample", "serving_default"],
    "scorer": ["serving_default"],
}


def tiny_model(kind: str) -> VAE:
    return VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), **MODELS[kind])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """{kind: folder}: folder/{encoder,decoder,scorer} SavedModels (the scorer calibrated)."""
    root = tmp_path_factory.mktemp("hardening")
    folders = {}
    for kind in MODELS:
        model = tiny_model(kind)
        saved_model.write_encoder(model, root / kind / "encoder")
        saved_model.write_decoder(model, root / kind / "decoder", max_samples=CAP)
        scorer.write_scorer(model, root / kind / "scorer", K, CAP, calibration=CALIBRATION)
        folders[kind] = root / kind
    return folders


# ---------------------------------------------------------------------- 8: a batch of 0 rows
# (The scorer SavedModel loops over row chunks, none at 0 rows; scorer.tflite has no loop; a
# conditional IAF posterior tiles its context by rows // max(context rows, 1).)


# A fresh interpreter that cannot import keras_vae feeds every signature 0 rows: inputs of
# dimension 0 = 0 (other unknown dimensions 1), scalars 0 (`sample`'s num_samples and seed).
EMPTY_BATCH_SCRIPT = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json

import tensorflow as tf

results = {}
for folder in sys.argv[1:]:
    for part in ("encoder", "decoder", "scorer"):
        for name, function in tf.saved_model.load(f"{folder}/{part}").signatures.items():
            feed = {}
            for key, spec in function.structured_input_signature[1].items():
                shape = [1 if d is None else d for d in spec.shape.as_list()]
                feed[key] = tf.zeros([0, *shape[1:]] if shape else [], spec.dtype)
            try:
                out = {k: v.shape.as_list() for k, v in function(**feed).items()}
            except Exception as error:
                out = f"{type(error).__name__}: {str(error)[-300:]}"
            results[f"{folder}/{part}/{name}"] = out
assert "keras_vae" not in sys.modules
print(json.dumps(results))
"""
)


@pytest.fixture(scope="module")
def empty_batch_results(exports) -> dict:
    done = run_python(EMPTY_BATCH_SCRIPT, *(str(folder) for folder in exports.values()))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "kind, part, signature",
    [(kind, part, name) for kind in MODELS for part, names in SIGNATURES.items() for name in names],
)
def test_every_signature_answers_0_rows_with_0_rows(
    exports, empty_batch_results, kind, part, signature
):
    """Each output has 0 rows and keeps its other dimensions (the scorer failed here)."""
    got = empty_batch_results[f"{exports[kind]}/{part}/{signature}"]
    assert isinstance(got, dict), got
    assert got and all(shape[0] == 0 for shape in got.values()), got
    if part == "scorer":
        assert sorted(got) == ["elbo", "is_anomaly", "kl", "log_likelihood", "reconstruction"]


def test_the_saved_model_signatures_are_the_ones_checked(exports, empty_batch_results):
    for kind, folder in exports.items():
        prefix = f"{folder}/"
        served = {key[len(prefix) :] for key in empty_batch_results if key.startswith(prefix)}
        assert served == {f"{p}/{s}" for p, names in SIGNATURES.items() for s in names}, kind


@pytest.fixture(scope="module")
def litert_empty_batch_results(tmp_path_factory) -> dict:
    """{"kind/file/signature": output shapes or the error}: encoder.tflite, scorer.tflite and
    the float32 decoder.tflite of both models fed 0 rows (the scorer's noise: its K rows)."""
    root = tmp_path_factory.mktemp("litert_empty")
    results = {}
    for kind in MODELS:
        model = tiny_model(kind)
        work = root / kind
        litert.write_litert_models(model, work / "tflite", work / "work", K, CALIBRATION)
        files = {name: (work / "tflite" / name).read_bytes() for name in litert_models.SIGNATURES}
        litert_models.litert_archive(model).write_out(str(work / "decoder"), verbose=False)
        files["decoder.tflite"] = litert_models.convert(work / "decoder")
        for file_name, content in files.items():
            interp = litert_checks.interpreter(content)
            for signature in interp.get_signature_list():
                runner = interp.get_signature_runner(signature)
                feed = {}
                for name, info in runner.get_input_details().items():
                    shape = [1 if d < 0 else int(d) for d in info["shape_signature"]]
                    rows = K if name == "noise" and file_name == "scorer.tflite" else 0
                    feed[name] = np.zeros([rows, *shape[1:]], info["dtype"])
                try:
                    out = {key: list(value.shape) for key, value in runner(**feed).items()}
                except (RuntimeError, ValueError) as error:
                    out = f"{type(error).__name__}: {error}"
                results[f"{kind}/{file_name}/{signature}"] = out
    return results


LITERT_SIGNATURES = {
    "encoder.tflite": ["encode", "posterior_sample"],
    "scorer.tflite": ["score", "score_with_noise"],
    "decoder.tflite": ["decode", "sample"],
}


@pytest.mark.parametrize(
    "key",
    [
        f"{kind}/{file_name}/{name}"
        for kind in MODELS
        for file_name, names in LITERT_SIGNATURES.items()
        for name in names
    ],
)
def test_every_litert_signature_answers_0_rows_with_0_rows(litert_empty_batch_results, key):
    got = litert_empty_batch_results[key]
    assert isinstance(got, dict) and got, got
    assert all(shape[0] == 0 for shape in got.values()), got


# ---------------------------------------------------------------------- 10: forged lengths
def frame(length: int, payload: bytes, length_crc: int | None = None) -> bytes:
    """A TFRecord frame: uint64 length, uint32 masked CRC-32C of it, data, data's CRC."""
    header = struct.pack("<Q", length)
    crc = masked_crc32c(header) if length_crc is None else length_crc
    return header + struct.pack("<I", crc) + payload + struct.pack("<I", masked_crc32c(payload))


@pytest.fixture
def warm_decoder(exports, tmp_path):
    """A copy of the plain decoder with a valid warm-up file: (folder, file, its records)."""
    folder = shutil.copytree(exports["plain"] / "decoder", tmp_path / "1")
    return folder, folder / WARMUP_PATH, write_warmup_requests(folder, "decoder", CAP)


# In a subprocess: before the fix TensorFlow allocated the forged length and killed the process.
REPLAY_SCRIPT = r"""
import sys

from keras_vae.export import ExportError
from keras_vae.export.warmup import replay_warmup_requests

try:
    replay_warmup_requests(sys.argv[1])
except ExportError as error:
    print("refused: " + str(error))
else:
    print("replayed")
"""


@pytest.mark.parametrize("index", [0, 1])
def test_a_forged_record_length_is_refused_before_tensorflow_reads_it(warm_decoder, index):
    folder, path, _ = warm_decoder
    valid = path.read_bytes()
    (first,) = struct.unpack("<Q", valid[:8])
    kept = valid[: 12 + first + 4] if index else b""
    path.write_bytes(kept + frame(2**40, b"\x00" * 16)[:-4])
    done = run_python(REPLAY_SCRIPT, str(folder), timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(f"refused: Warm-up record {index} of {path}"), line
    assert f"length field says {2**40} bytes" in line and "bytes are left in the file" in line


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("length-crc", "record 0 .*CRC of its length field does not match"),
        ("one-byte-short", "record 1 .*length field says \\d+ bytes, but only \\d+"),
        ("truncated-header", "record 1 .*ends inside its 12-byte header"),
    ],
)
def test_a_corrupt_frame_is_one_export_error(warm_decoder, case, pattern):
    folder, path, _ = warm_decoder
    data = path.read_bytes()
    (first,) = struct.unpack("<Q", data[:8])
    if case == "length-crc":
        data = frame(len(data), b"", length_crc=masked_crc32c(b"not it"))
    elif case == "one-byte-short":
        data = data[: 12 + first + 4] + frame(3, b"abc")[:-1]
    else:
        data = data[: 12 + first + 4 + 5]
    path.write_bytes(data)
    with pytest.raises(ExportError, match=pattern):
        replay_warmup_requests(folder)


def test_a_valid_file_still_replays(warm_decoder):
    folder, _, count = warm_decoder
    assert count == 6 and replay_warmup_requests(folder) == count  # no record for `sample`


# ---------------------------------------------------------------------- 11: rows x K bounded
def test_write_scorer_refuses_rows_times_k_above_the_budget(tmp_path):
    model = tiny_model("plain")
    k = MAX_SCORE_ROW_SAMPLES // 1000 + 1
    with pytest.raises(ValueError, match=f"1000 rows x {k} score samples.*--max-samples-per-"):
        scorer.write_scorer(model, tmp_path / "scorer", k, max_samples=1000)
    assert not (tmp_path / "scorer").exists()
    scorer.write_scorer(model, tmp_path / "scorer", k - 1, max_samples=1000)  # at the budget


@pytest.mark.parametrize(
    "k, cap, fix",
    [
        ("100000", "10000", "--max-samples-per-request 100 "),
        ("1001", "10000", "score-samples 1000"),
    ],
)
def test_export_refuses_k_times_rows_above_the_budget(tiny_run_dir, tmp_path, capsys, k, cap, fix):
    out = tmp_path / "export"
    argv = ["export", tiny_run_dir, "--out", out, "--score-samples", k]
    argv += ["--max-samples-per-request", cap]
    line = assert_exit_2_and_unchanged(argv, [tiny_run_dir, tmp_path], capsys, fix)
    assert str(MAX_SCORE_ROW_SAMPLES) in line and not out.exists()


def test_export_json_records_the_bound(tiny_run_dir, tmp_path):
    record = export_run(tiny_run_dir, tmp_path / "export", max_samples_per_request=20)
    written = json.loads((tmp_path / "export" / "export.json").read_text())
    assert written["models"]["scorer"][SCORE_BUDGET_KEY] == MAX_SCORE_ROW_SAMPLES
    assert record["models"]["scorer"][SCORE_BUDGET_KEY] == MAX_SCORE_ROW_SAMPLES
    signature = tf.saved_model.load(str(tmp_path / "export" / "scorer" / "1"))
    empty = signature.signatures["serving_default"](x=tf.zeros([0, 8, 8]))
    assert {name: value.shape.as_list() for name, value in empty.items()} == {
        name: [0] for name in ("elbo", "log_likelihood", "reconstruction", "kl")
    }
