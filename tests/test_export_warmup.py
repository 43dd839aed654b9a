"""TF Serving warm-up files (issue 16, item 4): `assets.extra/tf_serving_warmup_requests` parse
as `PredictionLog` TFRecords, name only existing signatures, skip the signatures TF Serving's
batcher refuses (scalar inputs), and every record replays: in a TensorFlow-only process the way
TF Serving runs them (a Session fed through the SignatureDef) and in-process with
`replay_warmup_requests`, which catches each kind of broken record a test writes on purpose.

Two tiny models with fresh weights (6 inputs, latent 2): an unconditional one and a conditional
one (3 classes), encoder and decoder each, written by `keras_vae.export.saved_model`.
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf
from helpers import TENSORFLOW_ONLY_PRELUDE, run_python
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from keras_vae.export import ExportError, saved_model, saved_model_signatures
from keras_vae.export.warmup import (
    WARMUP_PATH,
    read_warmup_requests,
    replay_warmup_requests,
    write_warmup_requests,
)
from keras_vae.model import VAE

MAX_ROWS = 3  # below the default batch size 4, which must then become 3
LATENT = 2


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """{"unconditional/encoder": (folder, records written), ...}: four SavedModels with warm-up."""
    root = tmp_path_factory.mktemp("warmup")
    written = {}
    for kind, kwargs in (("unconditional", {}), ("conditional", {"num_classes": 3})):
        vae = VAE(data_shape=(6,), latent_dim=LATENT, hidden_units=(8,), **kwargs)
        saved_model.write_encoder(vae, root / kind / "encoder" / "1")
        saved_model.write_decoder(vae, root / kind / "decoder" / "1", max_samples=MAX_ROWS)
        for part in ("encoder", "decoder"):
            folder = root / kind / part / "1"
            written[f"{kind}/{part}"] = (folder, write_warmup_requests(folder, part, MAX_ROWS))
    return written


def records(folder) -> list[tuple[str, int]]:
    """(signature, batch) of each warm-up record of `folder`."""
    result = []
    for log in read_warmup_requests(folder / WARMUP_PATH):
        request = log.predict_log.request
        batches = {value.tensor_shape.dim[0].size for value in request.inputs.values()}
        assert len(batches) == 1, request
        result.append((request.model_spec.signature_name, batches.pop()))
    return result


def test_files_parse_and_name_every_batchable_signature_at_clipped_sizes(exports):
    for key, (folder, count) in exports.items():
        part = key.split("/")[1]
        logs = read_warmup_requests(folder / WARMUP_PATH)
        assert len(logs) == count and all(
            isinstance(log, prediction_log_pb2.PredictionLog) for log in logs
        )
        assert {log.predict_log.request.model_spec.name for log in logs} == {part}
        signatures = set(saved_model_signatures(folder))
        # The unconditional `sample` takes scalars, which a batching TF Serving refuses: no record.
        expected = signatures - {"sample"} if key == "unconditional/decoder" else signatures
        assert "sample" in signatures or part == "encoder"
        got = records(folder)
        assert sorted(got) == sorted((name, b) for name in expected for b in (1, 2, MAX_ROWS)), key


def test_inputs_are_valid_values_from_the_signature(exports):
    folder, _ = exports["conditional/decoder"]
    logs = read_warmup_requests(folder / WARMUP_PATH)
    request = next(
        log.predict_log.request
        for log in logs
        if log.predict_log.request.model_spec.signature_name == "sample"
        and log.predict_log.request.inputs["seed"].tensor_shape.dim[0].size == MAX_ROWS
    )
    seed, label = (tf.make_ndarray(request.inputs[name]) for name in ("seed", "label"))
    assert seed.dtype == np.int64 and seed.tolist() == [0, 1, 2]  # distinct rows
    assert label.dtype == np.int32 and label.tolist() == [0, 0, 0]  # a valid class


# A fresh interpreter that cannot import keras_vae replays every record as TF Serving does:
# a TF1 Session fed and fetched through the SignatureDef's tensor names.
REPLAY_SCRIPT = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

counts = {}
for folder in sys.argv[1:]:
    path = folder + "/assets.extra/tf_serving_warmup_requests"
    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], folder)
        count = 0
        for record in tf.compat.v1.io.tf_record_iterator(path):
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            signature = meta.signature_def[request.model_spec.signature_name]
            assert set(request.inputs) == set(signature.inputs), request.model_spec
            feed = {signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
            fetch = {k: v.name for k, v in signature.outputs.items()}
            outputs = sess.run(fetch, feed_dict=feed)
            rows = {v.shape[0] for v in feed.values()}
            assert {v.shape[0] for v in outputs.values()} == rows and len(rows) == 1
            count += 1
    counts[folder] = count
assert "keras_vae" not in sys.modules
print(json.dumps(counts))
"""
)


def test_every_record_replays_in_a_tensorflow_only_process(exports):
    folders = [str(folder) for folder, _ in exports.values()]
    done = run_python(REPLAY_SCRIPT, *folders, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == {str(folder): count for folder, count in exports.values()}


def test_every_record_replays_in_process(exports):
    for key, (folder, count) in exports.items():
        assert count > 0 and replay_warmup_requests(folder) == count, key


def request_log(signature: str, **inputs: np.ndarray) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "decoder", signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    return log.SerializeToString()


def flip_a_byte_of_record_1(path) -> None:
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])  # TFRecord: length, crc, payload, crc
    data[8 + 4 + length + 4 + 8 + 4 + 3] ^= 0xFF  # the 4th payload byte of record 1
    path.write_bytes(bytes(data))


Z = np.zeros((2, LATENT), np.float32)
BROKEN = {
    "flipped-bytes": (None, "record 1 of .* not a valid TFRecord"),
    "not-a-prediction-log": ([b"\xff\xff\xff"], "record 0 of .* not a PredictionLog"),
    "missing-signature": (
        [request_log("serving_default", z=Z), request_log("nope", z=Z)],
        "record 1 of .*'nope'",
    ),
    "wrong-shape-input": (
        [request_log("serving_default", z=np.zeros((2, 3), np.float32))],
        "(?s)record 0 .* fails: .*\\[2,3\\]",
    ),
    "unknown-input": (
        [request_log("serving_default", z=Z, label=np.zeros(2, np.int32))],
        "unknown \\['label'\\]",
    ),
    "missing-input": ([request_log("generate")], "missing \\['seed'\\]"),
    "scalar-input": (
        [request_log("sample", num_samples=np.int32(2), seed=np.int32(0))],
        "batched along dimension 0",
    ),
    "unequal-batch": (
        [request_log("posterior_sample", x=np.zeros((2, 6), np.float32), noise=Z[:1])],
        "batched along dimension 0",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_record_is_caught_by_the_replay(exports, tmp_path, case):
    part = "encoder" if case == "unequal-batch" else "decoder"
    folder = shutil.copytree(exports[f"unconditional/{part}"][0], tmp_path / "1")
    path = folder / WARMUP_PATH
    payloads, pattern = BROKEN[case]
    if payloads is None:
        flip_a_byte_of_record_1(path)
    else:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for payload in payloads:
                writer.write(payload)
    with pytest.raises(ExportError, match=pattern):
        replay_warmup_requests(folder)


def test_batch_sizes_above_max_rows_are_not_written(exports, tmp_path):
    folder = shutil.copytree(exports["unconditional/encoder"][0], tmp_path / "1")
    assert write_warmup_requests(folder, "encoder", max_rows=1, batch_sizes=(4, 1, 8)) == 2
    assert sorted(records(folder)) == [("posterior_sample", 1), ("serving_default", 1)]
    assert not list((folder / "assets.extra").glob("*.partial"))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"max_rows": 0}, "max_rows=0"),
        ({"max_rows": 4, "batch_sizes": ()}, "batch_sizes=()"),
        ({"max_rows": 4, "batch_sizes": (2, -1)}, "batch_sizes=\\(2, -1\\)"),
        (
            {"max_rows": 4000, "batch_sizes": range(1, 600)},
            "more than TF Serving's maximum of 1000",
        ),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_written(exports, tmp_path, kwargs, pattern):
    folder = shutil.copytree(exports["unconditional/encoder"][0], tmp_path / "1")
    before = (folder / WARMUP_PATH).read_bytes()
    with pytest.raises(ValueError, match=pattern):
        write_warmup_requests(folder, "encoder", **kwargs)
    assert (folder / WARMUP_PATH).read_bytes() == before
