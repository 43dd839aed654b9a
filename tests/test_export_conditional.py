"""Exports of a conditional VAE (issue 15, item 5): every SavedModel signature takes ``label``
(int32 [batch]), the decoder's ``sample`` takes one (label, int64 seed) per row, LiteRT
``decode`` and ``sample`` take ``label``; out-of-range labels fail everywhere; export.json
records ``num_classes``; the serving client's label arguments.

Two tiny models (8x8 inputs, latent 2, 3 classes) with random weights, so the label changes
every output (asserted first): gaussian + N(0, I), and iaf + VampPrior (whose pseudo-input k
has label k mod 3). One real conditional run on the bundled digits (10 classes, one epoch)
goes through `export_run(..., tflite=True)`, then a stand-in TF Serving (tests/serving_fakes.py)
for the client and the serving README's conditional curl.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import keras
import numpy as np
import pytest
import requests
import tensorflow as tf
from helpers import (
    load_saved_models,
    write_checked_exports,
)
from model_factory import (
    CLIENT_PROTOCOLS,
    assert_pure_tensorflow_close,
    assert_scaled_close,
    interpreters,
    run_in_pure_tensorflow,
    signature_io,
    small_model,
    trained_export,
)
from serving_fakes import client_for as fake_client
from serving_fakes import serving

from keras_vae.export import (
    ExportError,
    export_run,
    litert_checks,
    litert_models,
    litert_ops,
    saved_model,
    saved_model_checks,
)
from keras_vae.export.export_utils import bad_labels
from keras_vae.model import VAE
from keras_vae.parts.priors import sample_from_noise
from keras_vae.serving import ServingClient, ServingError

TOL = 1e-5
DATA_SHAPE = (8, 8)
LATENT = 2
K = 3
MODELS = {"gaussian-normal": ("gaussian", "normal"), "iaf-vamp": ("iaf", "vamp")}
FILES = tuple(litert_models.VARIANTS)
# x_mean of the quantized files (their decoder weights); z and component are exact in all.
X_MEAN_TOLERANCE = {
    "decoder.tflite": TOL,
    "decoder_float16.tflite": 1e-2,
    "decoder_dynamic_int8.tflite": 0.05,
}
MAX_SAMPLES = 64
SERVING_README = Path(__file__).resolve().parents[1] / "serving" / "README.md"


def conditional_model(name: str, seed: int) -> VAE:
    """A tiny conditional VAE with every weight random (`small_model(randomize="all")`: a fresh
    IAF is the identity and fresh biases are 0; random values make the flow, the prior and the
    label all matter)."""
    posterior, prior = MODELS[name]
    return small_model(
        posterior,
        prior,
        True,
        seed,
        latent_dim=LATENT,
        num_classes=K,
        flow_steps=1,
        randomize="all",
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (model, folder)}: folder/encoder/1 and folder/decoder/1 (written and checked by
    `keras_vae.export.saved_model`, cap `MAX_SAMPLES`) and folder/tflite (`write_tflite`)."""
    models = {name: conditional_model(name, seed) for seed, name in enumerate(MODELS)}
    return write_checked_exports(models, tmp_path_factory.mktemp("conditional"), MAX_SAMPLES)


@pytest.fixture(scope="module")
def loaded(exported):
    return load_saved_models(exported)


@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    """(model, export folder) of the real train job on the bundled digits, conditional (K=10
    from the labels), one epoch, then `export_run(..., tflite=True)`."""
    folder = tmp_path_factory.mktemp("conditional_run")
    config = {
        "model": {"latent_dim": LATENT, "hidden_units": [8], "conditional": True},
        # Without XLA: compiling these tiny train steps takes longer than the epoch.
        "training": {"epochs": 1, "batch_size": 64, "jit_compile": False},
        "runtime": {"seed": 5},
    }
    return trained_export(folder, config)


def inputs(seed: int, batch: int):
    """x in [0, 1], labels spread over [0, K), standard normal noise and z."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *DATA_SHAPE)).astype(np.float32)
    labels = (np.arange(batch) % K).astype(np.int32)
    noise = rng.standard_normal((batch, LATENT)).astype(np.float32)
    z = rng.standard_normal((batch, LATENT)).astype(np.float32)
    return x, labels, noise, z


def row_draws(seeds, latent: int = LATENT):
    """The documented per-row eps (stateless normal, [seed, 0]) and u (stateless uniform,
    [seed, 1]), Philox, one seed at a time."""
    eps, u = [], []
    for seed in np.asarray(seeds, np.int64).tolist():
        normal, uniform = (tf.constant([seed, stream], tf.int64) for stream in (0, 1))
        eps.append(tf.random.stateless_normal([latent], normal, alg="philox").numpy())
        u.append(tf.random.stateless_uniform([], uniform, alg="philox").numpy())
    return np.stack(eps).astype(np.float32), np.asarray(u, np.float32)


def keras_sample(model, labels, seeds) -> dict[str, np.ndarray]:
    """What ``sample`` must return for (labels, seeds), from the Keras model."""
    eps, u = row_draws(seeds, int(model.latent_dim))
    expected = {"z": eps}
    if model.prior_name != "normal":
        z, component = sample_from_noise(model.prior_parameters(), eps, u)
        expected = {"z": np.asarray(z), "component": np.asarray(component)}
    expected["x_mean"] = np.asarray(model.decode(expected["z"], labels))
    return expected


def keras_outputs(model, x, labels, noise, z) -> dict[str, np.ndarray]:
    """Every SavedModel signature's outputs, from the Keras API: 'signature/output'."""
    z_mean, z_stddev = model.encode(x, labels)
    drawn_z, log_q = model.posterior_sample(x, noise=noise, labels=labels)
    return {
        "serving_default/z_mean": z_mean,
        "serving_default/z_stddev": z_stddev,
        "posterior_sample/z": drawn_z,
        "posterior_sample/log_q": log_q,
        "posterior_sample/z_mean": z_mean,
        "posterior_sample/z_stddev": z_stddev,
        "serving_default/x_mean": model.decode(z, labels),
    }


# ---------------------------------------------------------------------------- the label bites
@pytest.mark.parametrize("name", MODELS)
def test_the_label_changes_every_output(exported, name):
    """Another label moves z_mean, z_stddev and x_mean by far more than the 1e-5 the checks
    allow, so an export that dropped or mixed up the label fails them."""
    x, labels, _, z = inputs(0, 4)
    model, _ = exported[name]
    other = (labels + 1) % K
    for a, b in zip(model.encode(x, labels), model.encode(x, other)):
        assert np.abs(np.asarray(a) - np.asarray(b)).mean() > 1e-2, name
    moved = np.abs(np.asarray(model.decode(z, labels)) - np.asarray(model.decode(z, other)))
    assert moved.mean() > 1e-2, name


# ---------------------------------------------------------------------------- SavedModels
@pytest.mark.parametrize("name", MODELS)
def test_signatures_take_the_label(exported, name):
    f32, label = "float32", {"dtype": "int32", "shape": [-1]}
    latent = {"dtype": f32, "shape": [-1, LATENT]}
    x = {"dtype": f32, "shape": [-1, *DATA_SHAPE]}
    _, folder = exported[name]
    encoder = signature_io(folder / "encoder" / "1")
    assert encoder["serving_default"]["inputs"] == {"x": x, "label": label}
    assert encoder["serving_default"]["outputs"] == {"z_mean": latent, "z_stddev": latent}
    assert encoder["posterior_sample"]["inputs"] == {"x": x, "label": label, "noise": latent}
    decoder = signature_io(folder / "decoder" / "1")
    assert sorted(decoder) == ["generate", "sample", "serving_default"]
    assert decoder["serving_default"]["inputs"] == {"z": latent, "label": label}
    assert decoder["sample"]["inputs"] == {
        "label": label,
        "seed": {"dtype": "int64", "shape": [-1]},  # batched: TF Serving can merge them
    }
    outputs = decoder["sample"]["outputs"]
    assert outputs.pop("z") == latent
    assert outputs.pop("x_mean") == {"dtype": f32, "shape": [-1, *DATA_SHAPE]}
    if name == "iaf-vamp":
        assert outputs.pop("component") == label
    assert outputs == {}


@pytest.mark.parametrize("name", MODELS)
def test_saved_models_equal_keras(exported, loaded, name):
    model, _ = exported[name]
    for batch in (1, 5):
        x, labels, noise, z = inputs(batch, batch)
        expected = keras_outputs(model, x, labels, noise, z)
        feeds = {
            ("encoder", "serving_default"): {"x": x, "label": labels},
            ("encoder", "posterior_sample"): {"x": x, "label": labels, "noise": noise},
            ("decoder", "serving_default"): {"z": z, "label": labels},
        }
        for (part, key), feed in feeds.items():
            got = loaded[name][part].signatures[key](**{k: tf.constant(v) for k, v in feed.items()})
            for output, value in got.items():
                assert_scaled_close(value, expected[f"{key}/{output}"], f"{name} {key}")


SEEDS = np.array([-(2**63), 2**63 - 1, -1, 0, 1, 12345678901234], np.int64)


def assert_same_rows(got: dict, expected: dict) -> None:
    """z and component bit for bit (each row's own draws), x_mean to 1e-6 (a matrix product
    of another batch size may round its last bit differently)."""
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if key == "x_mean":
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def run_sample(signature, labels, seeds) -> dict[str, np.ndarray]:
    labels, seeds = np.asarray(labels, np.int32), np.asarray(seeds, np.int64)
    out = signature(label=tf.constant(labels), seed=tf.constant(seeds))
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("name", MODELS)
def test_sample_is_a_pure_function_of_each_rows_label_and_seed(exported, loaded, name):
    """Rows of (label, seed) over the whole int64 range equal the Keras model's, twice
    bit-identically; [r1, r2] equals [r1] and [r2] run apart, a row of a batch of 5 equals
    itself alone, one seed gives one z whatever the label, and the rows differ."""
    labels = np.array([0, 1, 2, 2, 0, 1], np.int32)
    model, _ = exported[name]
    sample = loaded[name]["decoder"].signatures["sample"]
    got = run_sample(sample, labels, SEEDS)
    expected = keras_sample(model, labels, SEEDS)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=f"{name} {key}")
    if model.prior_name == "normal":
        np.testing.assert_array_equal(got["z"], expected["z"])  # z = eps, bit for bit
    again = run_sample(sample, labels, SEEDS)
    for key, value in got.items():
        np.testing.assert_array_equal(again[key], value)
    assert len({tuple(row) for row in got["z"]}) == len(SEEDS)  # every int64 seed its own
    pair = run_sample(sample, labels[:2], SEEDS[:2])
    for i in range(2):
        alone = run_sample(sample, labels[i : i + 1], SEEDS[i : i + 1])
        assert_same_rows(alone, {key: value[i : i + 1] for key, value in pair.items()})
    five = run_sample(sample, labels[1:], SEEDS[1:])
    alone = run_sample(sample, labels[3:4], SEEDS[3:4])
    assert_same_rows(alone, {key: value[2:3] for key, value in five.items()})
    assert_same_rows(five, {key: value[1:] for key, value in got.items()})
    # One seed, three labels: the same z (style), three different images (class).
    same = run_sample(sample, np.arange(K, dtype=np.int32), np.full(K, 7, np.int64))
    np.testing.assert_array_equal(same["z"], np.repeat(same["z"][:1], K, axis=0))
    assert np.abs(same["x_mean"][0] - same["x_mean"][1]).mean() > 1e-2


def test_sample_can_be_empty_and_is_capped(loaded):
    sample = loaded["iaf-vamp"]["decoder"].signatures["sample"]
    empty = run_sample(sample, np.zeros(0, np.int32), np.zeros(0, np.int64))
    assert empty["z"].shape == (0, LATENT) and empty["x_mean"].shape == (0, *DATA_SHAPE)

    def rows(n: int) -> np.ndarray:
        return np.arange(n) % K

    assert run_sample(sample, rows(MAX_SAMPLES), rows(MAX_SAMPLES))["z"].shape[0] == MAX_SAMPLES
    pattern = rf"<= {MAX_SAMPLES} rows.*max_samples_per_request"
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        run_sample(sample, rows(MAX_SAMPLES + 1), rows(MAX_SAMPLES + 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per row"):
        run_sample(sample, rows(2), rows(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per row"):
        run_sample(sample, rows(3), rows(2))


@pytest.mark.parametrize("bad", [K, -1])
def test_out_of_range_labels_fail_in_every_saved_model_signature(loaded, bad):
    """A label of K or -1 in any row fails with InvalidArgumentError naming K: never the zero
    one-hot row that would decode as no class at all."""
    x, labels, noise, z = inputs(3, 3)
    labels = labels.copy()
    labels[1] = bad
    feeds = {
        ("encoder", "serving_default"): {"x": x, "label": labels},
        ("encoder", "posterior_sample"): {"x": x, "label": labels, "noise": noise},
        ("decoder", "serving_default"): {"z": z, "label": labels},
        ("decoder", "sample"): {"label": labels, "seed": np.arange(3, dtype=np.int64)},
    }
    pattern = re.escape(
        f"labels must be class indices in [0, {K}) (this model has num_classes={K})"
    )
    for name in MODELS:
        for (part, key), feed in feeds.items():
            signature = loaded[name][part].signatures[key]
            with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
                signature(**{k: tf.constant(v) for k, v in feed.items()})


def test_label_batches_of_another_size_fail(loaded):
    x, labels, noise, z = inputs(4, 3)
    signatures = loaded["gaussian-normal"]
    cases = [
        (signatures["encoder"].signatures["serving_default"], {"x": x, "label": labels[:2]}),
        (
            signatures["encoder"].signatures["posterior_sample"],
            {"x": x, "label": labels[:2], "noise": noise},
        ),
        (signatures["decoder"].signatures["serving_default"], {"z": z[:2], "label": labels}),
    ]
    for signature, feed in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match="one label per row"):
            signature(**{k: tf.constant(v) for k, v in feed.items()})
    with pytest.raises(tf.errors.InvalidArgumentError, match="Shape of tensor label"):
        signatures["decoder"].signatures["serving_default"](
            z=tf.constant(z), label=tf.constant(labels[:, np.newaxis])
        )


def test_the_export_checks_refuse_a_decoder_that_swaps_labels(exported, tmp_path):
    """check_decoder compares with Keras per label: a decoder SavedModel of another model
    (the same weights but for the label's) fails it."""
    model, _ = exported["gaussian-normal"]
    other = conditional_model("gaussian-normal", 0)
    for weight in other.decoder.weights:
        if "hidden_0" in weight.path and "kernel" in weight.path:
            value = weight.numpy()
            value[LATENT:] = value[LATENT:][::-1]  # the rows the one-hot label multiplies
            weight.assign(value)
    saved_model.write_decoder(other, tmp_path / "decoder", max_samples=MAX_SAMPLES)
    with pytest.raises(ExportError, match="differs from the Keras model"):
        saved_model_checks.check_decoder(model, tmp_path / "decoder", max_samples=MAX_SAMPLES)


@pytest.mark.slow
def test_a_process_with_only_tensorflow_runs_every_conditional_signature(
    exported, real_export, tmp_path
):
    """Every signature of both models and of the real run's export, through
    `tf.saved_model.load` and through a Session fed by the SignatureDefs, in a process that
    cannot import keras_vae, equals Keras to 1e-5; an out-of-range label is refused there."""
    folders = {name: str(folder) for name, (_, folder) in exported.items()}
    folders["run"] = str(real_export[1])
    models = {name: model for name, (model, _) in exported.items()}
    models["run"] = real_export[0]
    x, labels, noise, z = inputs(99, 5)
    seeds = SEEDS[:5]
    feed = {"x": x, "label": labels, "noise": noise, "z": z, "seed": seeds}
    got = run_in_pure_tensorflow(folders, feed, tmp_path)
    for name, model in models.items():
        expected = keras_outputs(model, x, labels, noise, z)
        expected.update({f"sample/{k}": v for k, v in keras_sample(model, labels, seeds).items()})
        assert_pure_tensorflow_close(got, name, expected)
        assert bool(got[f"refused/{name}"]), name


# ---------------------------------------------------------------------------- LiteRT
@pytest.mark.parametrize("name", MODELS)
def test_tflite_files_use_builtin_ops_only_and_take_the_label(exported, name):
    _, folder = exported[name]
    for file_name in FILES:
        content = (folder / "tflite" / file_name).read_bytes()
        ops = litert_checks.operators(content)  # ExportError on any custom or Flex op
        assert {"GATHER", "WHERE", "ONE_HOT"} <= set(ops), (name, file_name, ops)
        signatures = litert_checks.describe_signatures(litert_checks.interpreter(content))
        label = {"dtype": "int32", "shape": [-1]}
        assert signatures["decode"]["inputs"]["label"] == label
        assert signatures["sample"]["inputs"]["label"] == label
        expected = ["label", "noise"] + (["uniform"] if name == "iaf-vamp" else [])
        assert sorted(signatures["sample"]["inputs"]) == expected


@pytest.mark.parametrize("name", MODELS)
def test_tflite_equals_the_saved_model(exported, loaded, name):
    """LiteRT ``sample`` on the SavedModel's per-row eps (and u) with the same labels gives the
    SavedModel's ``sample``: z and component exactly in every file, x_mean to 1e-5 in the
    float32 file; ``decode`` likewise against ``serving_default`` and Keras."""
    labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
    eps, u = row_draws(SEEDS)
    model, folder = exported[name]
    signatures = loaded[name]["decoder"].signatures
    served = run_sample(signatures["sample"], labels, SEEDS)
    decoded = signatures["serving_default"](z=tf.constant(eps), label=tf.constant(labels))
    decoded = decoded["x_mean"].numpy()
    np.testing.assert_allclose(decoded, model.decode(eps, labels), rtol=0, atol=TOL)
    for file_name, interp in interpreters(folder).items():
        tolerance = X_MEAN_TOLERANCE[file_name]
        runner = interp.get_signature_runner("sample")
        feed = {"noise": eps, "label": labels}
        if name == "iaf-vamp":
            feed["uniform"] = u
        got = runner(**feed)
        assert sorted(got) == sorted(served), file_name
        if "component" in got:
            np.testing.assert_array_equal(got["component"], served["component"])
        np.testing.assert_allclose(got["z"], served["z"], rtol=0, atol=TOL)
        np.testing.assert_allclose(got["x_mean"], served["x_mean"], rtol=0, atol=tolerance)
        from_decode = interp.get_signature_runner("decode")(z=eps, label=labels)["x_mean"]
        np.testing.assert_allclose(from_decode, decoded, rtol=0, atol=tolerance)


def test_tflite_refuses_out_of_range_labels_and_recovers(exported):
    """A label of K or -1 (or the int32 ends) in one row makes the run fail in every file
    and both signatures, never an output; the next good run works."""
    _, folder = exported["iaf-vamp"]
    eps, u = row_draws(SEEDS[:4])
    good = np.array([0, 1, 2, 1], np.int32)
    for file_name, interp in interpreters(folder).items():
        decode, sample = (interp.get_signature_runner(key) for key in ("decode", "sample"))
        for bad in bad_labels(K):
            labels = good.copy()
            labels[2] = bad
            with pytest.raises((RuntimeError, ValueError), match="GATHER|gather"):
                decode(z=eps, label=labels)
            with pytest.raises((RuntimeError, ValueError), match="GATHER|gather"):
                sample(noise=eps, label=labels, uniform=u)
            assert decode(z=eps, label=good)["x_mean"].shape == (4, *DATA_SHAPE)
        for shape in litert_checks.wrong_uniform_shapes(4):
            with pytest.raises(RuntimeError, match="RESHAPE|GATHER"):
                decode(z=eps, label=np.zeros(shape, np.int32))
        refused = litert_checks.check_rejects_wrong_rank(interp, LATENT, file_name, K)
        label_cases = len(litert_checks.wrong_uniform_shapes()) + len(bad_labels(K))
        latent_cases = len(litert_checks.wrong_latent_shapes(LATENT))
        # decode: z and label; sample: noise, label and uniform.
        assert refused == 2 * (latent_cases + label_cases) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert sample(noise=eps, label=good, uniform=u)["z"].shape == (4, LATENT)


def test_a_tflite_decoder_without_the_label_guard_never_passes(exported, tmp_path):
    """Converted with the shape checks but without `exact_labels`' table, ``decode`` runs label
    K (ONE_HOT gives a zero row: no class at all) and the export check refuses the file."""
    model, _ = exported["gaussian-normal"]

    def decode(z, label):
        z = litert_ops.exact_latents(z, LATENT)
        label = litert_ops.exact_uniform(label, tf.shape(z)[0])  # rank and rows, not the range
        return {"x_mean": model.decode(z, label, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    specs = [
        tf.TensorSpec([None, LATENT], tf.float32, name="z"),
        tf.TensorSpec([None], tf.int32, name="label"),
    ]
    archive.add_endpoint("decode", decode, specs)
    archive.write_out(str(tmp_path / "unguarded"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "unguarded"), signature_keys=["decode"]
    )
    interp = litert_checks.interpreter(converter.convert())
    z = np.zeros((2, LATENT), np.float32)
    ran = interp.get_signature_runner("decode")(z=z, label=np.array([0, K], np.int32))
    assert ran["x_mean"].shape == (2, *DATA_SHAPE)  # what the guard exists to stop
    with pytest.raises(ExportError, match=r"ran on label values .* in \[0, 3\)"):
        litert_checks.check_rejects_wrong_rank(interp, LATENT, num_classes=K)
    with pytest.raises(ValueError, match="pass num_classes"):
        litert_checks.check_rejects_wrong_rank(interp, LATENT)


# ---------------------------------------------------------------------------- a real run
def test_a_real_conditional_run_exports_with_num_classes(real_export):
    model, folder = real_export
    assert model.conditional and model.num_classes == 10  # the digits' labels
    record = json.loads((folder / "export.json").read_text())
    assert record["model"]["num_classes"] == 10
    label_input = record["model"]["label_input"]
    assert label_input["name"] == "label" and label_input["dtype"] == "int32"
    assert (label_input["minimum"], label_input["maximum"]) == (0, 9)
    label = {"dtype": "int32", "shape": [-1]}
    for part in ("encoder", "decoder"):
        entry = record["models"][part]
        for signature in entry["signatures"].values():
            assert signature["inputs"]["label"] == label
        assert all(0 <= error <= TOL for error in entry["max_abs_error"].values()), entry
    sample = record["models"]["decoder"]["signatures"]["sample"]["inputs"]
    assert sample["seed"] == {"dtype": "int64", "shape": [-1]}
    for name in FILES:
        entry = record["tflite"]["files"][name]
        assert entry["signatures"]["decode"]["inputs"]["label"] == label
        assert entry["signatures"]["sample"]["inputs"]["label"] == label
        per_signature = len(litert_checks.wrong_latent_shapes(LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert entry["wrong_shapes_refused"] == 2 * (per_signature + len(bad_labels(10)))
    assert "labels spread over [0, 10)" in record["tflite"]["checked_on"]
    # One image per class: the trained decoder tells the classes apart.
    z = np.zeros((10, LATENT), np.float32)
    images = np.asarray(model.decode(z, np.arange(10)))
    assert np.abs(images[0] - images[1]).mean() > 1e-3


def test_an_unconditional_export_json_has_no_num_classes(tiny_run_dir, tmp_path):
    record = export_run(tiny_run_dir, tmp_path / "export")
    assert "num_classes" not in record["model"] and "label_input" not in record["model"]
    assert sorted(record["models"]["decoder"]["signatures"]["sample"]["inputs"]) == [
        "num_samples",
        "seed",
    ]
    client = ServingClient.from_export(tmp_path / "export")
    assert client.num_classes == 0
    with pytest.raises(ValueError, match="unconditional"):
        client.decode(np.zeros((1, LATENT)), labels=[0])


# ---------------------------------------------------------------------------- the client
@pytest.fixture(scope="module")
def server(real_export):
    """A `FakeModelServer` (tests/serving_fakes.py) on the real conditional export."""
    with serving(real_export[1]) as fake:
        yield fake


def client_for(server, protocol="rest", **kwargs) -> ServingClient:
    return fake_client(server, protocol, from_export=True, **kwargs)


@CLIENT_PROTOCOLS
def test_client_calls_with_labels_equal_keras(real_export, server, protocol, rest_format):
    model, _ = real_export
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(3, *DATA_SHAPE)).astype(np.float32)
    labels = np.array([7, 0, 9])
    noise = rng.standard_normal((3, LATENT)).astype(np.float32)
    with client_for(server, protocol, rest_format=rest_format) as client:
        assert client.num_classes == 10
        z_mean, z_stddev = client.encode(x, labels)
        expected = model.encode(x, labels)
        np.testing.assert_allclose(z_mean, expected[0], rtol=0, atol=TOL)
        np.testing.assert_allclose(z_stddev, expected[1], rtol=0, atol=TOL)
        drawn = client.posterior_sample(x, noise, labels)
        z, log_q = model.posterior_sample(x, noise=noise, labels=labels)
        np.testing.assert_allclose(drawn.z, z, rtol=0, atol=TOL)
        np.testing.assert_allclose(drawn.log_q, log_q, rtol=0, atol=TOL)
        x_mean = client.decode(z_mean, labels)
        np.testing.assert_allclose(x_mean, model.decode(z_mean, labels), rtol=0, atol=TOL)
        one_label = client.decode(z_mean, labels=7)  # one label for every row
        np.testing.assert_allclose(one_label, model.decode(z_mean, 7), rtol=0, atol=TOL)
        sevens = client.sample(labels=[7, 7, 7], seeds=[1, 2, 3])
        expected = keras_sample(model, np.array([7, 7, 7]), [1, 2, 3])
        assert sevens.component is None and sevens.x_mean.shape == (3, *DATA_SHAPE)
        np.testing.assert_array_equal(sevens.z, expected["z"])
        np.testing.assert_allclose(sevens.x_mean, expected["x_mean"], rtol=0, atol=TOL)
        extremes = client.sample(labels=7, seeds=[-(2**63), 2**63 - 1])
        np.testing.assert_array_equal(extremes.z, row_draws([-(2**63), 2**63 - 1])[0])


BAD_CLIENT_CALLS = {
    "label K": ("decode", {"labels": [0, 10]}, "[0, 10)"),
    "label -1": ("encode", {"labels": [-1, 0]}, "values from -1 to 0"),
    "float labels": ("decode", {"labels": [0.0, 1.0]}, "dtype float64"),
    "bool labels": ("decode", {"labels": [True, False]}, "dtype bool"),
    "too few labels": ("posterior_sample", {"labels": [1]}, "1 values but `x` has 2 rows"),
    "labels as a column": ("decode", {"labels": [[1], [2]]}, "shape (2, 1)"),
    "no labels": ("decode", {}, "conditional (10 classes): pass `labels`"),
    "no labels to encode": ("encode", {}, "pass `labels`"),
    "sample without seeds": ("sample", {"labels": [7]}, "`seeds` is missing"),
    "sample n and seed": ("sample", {"n": 3, "seed": 0}, "one row per (label, seed)"),
    "sample seed not seeds": ("sample", {"labels": [7], "seed": 1}, "instead of `seed`"),
    "sample seeds beyond int64": ("sample", {"labels": 7, "seeds": [2**63]}, "2**63 - 1"),
    "sample float seeds": ("sample", {"labels": 7, "seeds": [1.5]}, "dtype float64"),
    "sample label 10": ("sample", {"labels": [10], "seeds": [1]}, "[0, 10)"),
    "sample n mismatch": ("sample", {"n": 2, "labels": 7, "seeds": [1]}, "`n`=2"),
    "sample over the cap": (
        "sample",
        {"labels": 7, "seeds": list(range(10_001))},
        "max_samples_per_request=10000",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CLIENT_CALLS))
def test_client_validates_labels_before_sending(server, case):
    method, kwargs, message = BAD_CLIENT_CALLS[case]
    server.requests.clear()
    x, _, noise, z = inputs(1, 2)
    args = {"encode": (x,), "decode": (z,), "posterior_sample": (x, noise), "sample": ()}[method]
    with client_for(server) as client, pytest.raises(ValueError, match=re.escape(message)):
        getattr(client, method)(*args, **kwargs)
    assert server.requests == []


def test_a_client_that_does_not_know_k_lets_the_server_refuse(server):
    """Without export.json's K the client still refuses negative labels; label 10 goes to the
    server, whose InvalidArgumentError comes back naming K."""
    client = ServingClient(
        "127.0.0.1", rest_port=server.rest_port, data_shape=DATA_SHAPE, latent_dim=LATENT
    )
    assert client.num_classes is None
    with client:
        with pytest.raises(ValueError, match="integer class indices >= 0"):
            client.decode(np.zeros((1, LATENT)), labels=[-1])
        with pytest.raises(ServingError, match=r"HTTP 400.*num_classes=10"):
            client.decode(np.zeros((1, LATENT)), labels=[10])


def conditional_curl_commands() -> list[str]:
    """The serving README's curl commands for a conditional export (its ```sh blocks)."""
    text = SERVING_README.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if "curl" in line and '"label"' in line]


def test_the_serving_readme_asks_a_conditional_decoder_for_three_sevens(real_export, server):
    """The README's request runs against the stand-in server on the real conditional export:
    three images of class 7, the same on every request, equal to Keras's."""
    model, _ = real_export
    commands = conditional_curl_commands()
    assert commands, "serving/README.md lost its conditional curl example"
    sevens = [c for c in commands if '"sample"' in c]
    assert len(sevens) == 1
    for command in commands:
        argv = shlex.split(command)
        url = next(a for a in argv if a.startswith("http://localhost:8501"))
        url = url.replace("localhost:8501", f"127.0.0.1:{server.rest_port}")
        body = argv[argv.index("-d") + 1]
        first = requests.post(url, data=body, timeout=30)
        assert first.status_code == 200, (command, first.text[:300])
        second = requests.post(url, data=body, timeout=30)
        assert first.json() == second.json()
        request = json.loads(body)
        outputs = first.json()["outputs"]
        if request.get("signature_name") == "sample":
            inputs = request["inputs"]
            assert inputs["label"] == [7, 7, 7]
            expected = keras_sample(model, np.array(inputs["label"]), inputs["seed"])
            np.testing.assert_allclose(outputs["x_mean"], expected["x_mean"], rtol=0, atol=TOL)
            np.testing.assert_allclose(outputs["z"], expected["z"], rtol=0, atol=TOL)
            assert np.asarray(outputs["x_mean"]).shape == (3, *DATA_SHAPE)
