"""The LiteRT (TFLite) decoder files: builtin ops only, parity with Keras, no NaN, no dropped
weights, reproducible sampling that matches the SavedModel, and the measured quantization
error and size recorded in export.json."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from helpers import LATENT_DIM, assert_export_parity, keras_reference, train_run

from keras_vae.export import ExportError, export_run, litert_checks, litert_models, litert_parity
from keras_vae.model import VAE
from keras_vae.run_reader import load_model

FILES = ("decoder.tflite", "decoder_float16.tflite", "decoder_dynamic_int8.tflite")
# float32 must match Keras to 1e-5 (the issue). float16 weights carry a relative rounding
# error of 2**-11 ~ 5e-4 and int8 weights ~ 1/254 of each tensor's range: bounds on the
# decoder's probabilities well above what these cause but far below what a broken file gives.
TOLERANCE = {
    "decoder.tflite": 1e-5,
    "decoder_float16.tflite": 1e-3,
    "decoder_dynamic_int8.tflite": 0.05,
}
BYTES_PER_WEIGHT = {
    "decoder.tflite": 4,
    "decoder_float16.tflite": 2,
    "decoder_dynamic_int8.tflite": 1,
}


@pytest.fixture(scope="module")
def interpreters(mnist_export):
    return {name: Interpreter(model_path=str(mnist_export / "tflite" / name)) for name in FILES}


@pytest.fixture(scope="module")
def z():
    return np.random.default_rng(2024).standard_normal((32, LATENT_DIM)).astype(np.float32)


def weight_count(vae) -> int:
    """All decoder weights: a Bernoulli decoder's x_mean uses every one of them."""
    return sum(int(np.prod(w.shape)) for w in vae.decoder.weights)


def test_files_hold_their_weights_and_sizes_are_recorded(mnist_export, mnist_model):
    record = json.loads((mnist_export / "export.json").read_text())["tflite"]
    assert sorted(record["files"]) == sorted([*FILES, "encoder.tflite", "scorer.tflite"])
    assert record["x_mean_weights"] == weight_count(mnist_model)
    for name in FILES:
        size = (mnist_export / "tflite" / name).stat().st_size
        assert record["files"][name]["size_bytes"] == size
        # At least the bytes of the weights in that precision: a file that lost its weights
        # (a 3 KB model with NaN outputs has been seen here) cannot pass.
        assert size >= BYTES_PER_WEIGHT[name] * weight_count(mnist_model)
    sizes = [record["files"][name]["size_bytes"] for name in FILES]
    assert sizes[0] > sizes[1] > sizes[2]  # float32 > float16 > int8 weights


def test_only_builtin_ops(mnist_export):
    for name in FILES:
        ops = litert_checks.operators((mnist_export / "tflite" / name).read_bytes())
        assert "FULLY_CONNECTED" in ops
        assert not [op for op in ops if op.startswith("FLEX") or op == "CUSTOM"]


def test_signatures(interpreters):
    for interp in interpreters.values():
        signatures = interp.get_signature_list()
        assert signatures == {
            "decode": {"inputs": ["z"], "outputs": ["x_mean"]},
            "sample": {"inputs": ["noise"], "outputs": ["x_mean", "z"]},
        }


@pytest.mark.parametrize("name", FILES)
def test_decode_matches_keras_without_nan(interpreters, mnist_model, z, name):
    for batch in (1, len(z)):
        got = interpreters[name].get_signature_runner("decode")(z=z[:batch])
        assert got["x_mean"].shape == (batch, 28, 28)
        assert np.isfinite(got["x_mean"]).all()
        assert_export_parity(got, keras_reference(mnist_model, z=z[:batch]), TOLERANCE[name])


def test_quantization_errors_recorded_are_measured_and_ordered(
    mnist_export, interpreters, mnist_model, z
):
    record = json.loads((mnist_export / "export.json").read_text())["tflite"]["files"]
    expected = np.asarray(mnist_model.decode(z))
    errors = {}
    for name in FILES:
        got = interpreters[name].get_signature_runner("decode")(z=z)["x_mean"]
        errors[name] = float(np.max(np.abs(got - expected)))
        recorded = record[name]["max_abs_error"]
        assert 0 <= recorded <= TOLERANCE[name]
    assert record["decoder.tflite"]["max_abs_error"] <= 1e-5
    # Fewer bits, larger error, both in what the exporter recorded and on fresh z.
    assert errors["decoder.tflite"] < errors["decoder_float16.tflite"]
    assert errors["decoder_float16.tflite"] < errors["decoder_dynamic_int8.tflite"]


def test_sample_is_reproducible_and_matches_the_saved_model(mnist_export, interpreters, z):
    decoder = tf.saved_model.load(str(mnist_export / "decoder" / "1")).signatures
    served = decoder["sample"](num_samples=tf.constant(8), seed=tf.constant(42))
    for name in FILES:
        runner = interpreters[name].get_signature_runner("sample")
        first = runner(noise=served["z"].numpy())
        again = runner(noise=served["z"].numpy())
        np.testing.assert_array_equal(first["x_mean"], again["x_mean"])
        np.testing.assert_array_equal(first["z"], served["z"])
        np.testing.assert_allclose(first["x_mean"], served["x_mean"], rtol=0, atol=TOLERANCE[name])
    runner = interpreters["decoder.tflite"].get_signature_runner("sample")
    from_noise = runner(noise=z)["x_mean"]
    from_saved_model = decoder["serving_default"](z=tf.constant(z))["x_mean"]
    np.testing.assert_allclose(from_noise, from_saved_model, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, LATENT_DIM + 1), np.float32), np.zeros((2, LATENT_DIM), np.float64)],
    ids=["wrong width", "float64"],
)
def test_litert_rejects_bad_latents(interpreters, bad):
    with pytest.raises((ValueError, RuntimeError)):
        interpreters["decoder.tflite"].get_signature_runner("decode")(z=bad)


# Not [n, LATENT_DIM]: other ranks (the last four with exactly LATENT_DIM numbers per row, which
# a reshape of z alone lets through) and widths one off. The runtimes resize inputs non-strictly,
# so before the guard every one of these ran and returned outputs.
WRONG_SHAPES = [
    (LATENT_DIM,),
    (1, 2, LATENT_DIM),
    (3, 2, LATENT_DIM),
    (4, LATENT_DIM + 1),
    (4, LATENT_DIM - 1),
    (1, LATENT_DIM, 1),
    (1, 1, LATENT_DIM),
    (1, 4, LATENT_DIM // 4),
    (2, 1, 1, LATENT_DIM),
]
INPUTS = {"decode": "z", "sample": "noise"}


@pytest.mark.parametrize("name", FILES)
def test_every_signature_refuses_inputs_not_n_by_latent_dim(interpreters, mnist_model, z, name):
    """Wrong ranks and widths fail to run (RuntimeError from the runner) in both signatures of
    every variant; the same interpreter then still decodes correct batches like Keras."""
    interp = interpreters[name]
    for signature, key in INPUTS.items():
        runner = interp.get_signature_runner(signature)
        for shape in WRONG_SHAPES:
            with pytest.raises(RuntimeError, match="RESHAPE|GATHER"):
                runner(**{key: np.ones(shape, np.float32)})
        for batch in (1, 4):
            got = runner(**{key: z[:batch]})
            assert got["x_mean"].shape == (batch, 28, 28)
            assert_export_parity(got, keras_reference(mnist_model, z=z[:batch]), TOLERANCE[name])
        assert runner.get_input_details()[key]["shape_signature"].tolist() == [-1, LATENT_DIM]


def test_export_json_still_records_minus_one_by_latent_dim(mnist_export):
    record = json.loads((mnist_export / "export.json").read_text())["tflite"]["files"]
    for name in FILES:
        signatures = record[name]["signatures"]
        assert signatures["decode"]["inputs"]["z"]["shape"] == [-1, LATENT_DIM]
        assert signatures["sample"]["inputs"]["noise"]["shape"] == [-1, LATENT_DIM]
        assert signatures["sample"]["outputs"]["z"]["shape"] == [-1, LATENT_DIM]
        assert record[name]["wrong_shapes_refused"] == 2 * len(
            litert_checks.wrong_latent_shapes(LATENT_DIM)
        )
        assert "WHERE" in record[name]["ops"] and "GATHER" in record[name]["ops"]


def test_an_empty_batch_must_have_the_latent_width(mnist_export):
    """The Python signature runner refuses empty inputs itself; through the lower-level API
    (subgraph 0 is ``decode``) [0, latent_dim] runs and [0, latent_dim +- 1] does not."""
    interp = Interpreter(model_path=str(mnist_export / "tflite" / "decoder.tflite"))
    (z_input,) = interp.get_input_details()
    assert z_input["name"].startswith("decode")

    def invoke(shape):
        interp.resize_tensor_input(z_input["index"], list(shape))
        interp.allocate_tensors()
        interp.set_tensor(z_input["index"], np.zeros(shape, np.float32))
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    assert invoke((0, LATENT_DIM)).shape == (0, 28, 28)
    for shape in [(0, LATENT_DIM + 1), (0, LATENT_DIM - 1), (0, 1, LATENT_DIM)]:
        with pytest.raises(RuntimeError, match="GATHER|RESHAPE"):
            invoke(shape)
    assert invoke((2, LATENT_DIM)).shape == (2, 28, 28)


def test_a_file_that_runs_wrong_ranks_never_passes(tmp_path):
    """The decoder converted without the guard (what this module used to write): its
    signatures run a (latent_dim,) or (1, latent_dim, 1) z, and the export check refuses it."""
    vae = VAE(data_shape=(6, 5), latent_dim=4, hidden_units=(8,))
    archive = keras.export.ExportArchive()
    archive.track(vae.decoder)
    for signature, key in INPUTS.items():
        archive.add_endpoint(
            signature,
            lambda z: {"x_mean": vae.decode(z, training=False), "z": tf.identity(z)},
            [tf.TensorSpec([None, 4], tf.float32, name=key)],
        )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    content = litert_models.convert(tmp_path / "sm")
    assert (
        litert_checks.run_signature(content, "decode", z=np.ones(4, np.float32))["x_mean"].size
        == 30
    )
    with pytest.raises(ExportError, match=r"ran on z of shape \(4,\)"):
        litert_checks.check_rejects_wrong_rank(litert_checks.interpreter(content), 4)
    with pytest.raises(ExportError, match="instead of refusing"):
        litert_parity.check_variant(vae, content, "decoder.tflite", "none")
    # The guarded archive of the same model passes, refusing every shape in both signatures.
    litert_models.litert_archive(vae).write_out(str(tmp_path / "guarded"), verbose=False)
    guarded = litert_checks.interpreter(litert_models.convert(tmp_path / "guarded"))
    expected = 2 * len(litert_checks.wrong_latent_shapes(4))
    assert litert_checks.check_rejects_wrong_rank(guarded, 4) == expected


def test_a_nan_decoder_never_passes(tmp_path):
    vae = VAE(data_shape=(6, 5), latent_dim=3, hidden_units=(8,))
    vae.decoder.set_weights([np.full(w.shape, np.nan, np.float32) for w in vae.decoder.weights])
    litert_models.litert_archive(vae).write_out(str(tmp_path / "sm"), verbose=False)
    content = litert_models.convert(tmp_path / "sm")
    with pytest.raises(ExportError, match="NaN"):
        litert_parity.check_variant(vae, content, "decoder.tflite", "none")


def test_a_file_without_its_weights_never_passes(tmp_path):
    """A flatbuffer far smaller than the weights (what a conversion that drops them gives)."""
    vae = VAE(data_shape=(6, 5), latent_dim=3, hidden_units=(64,))

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def decode(self, z):
            return {"x_mean": tf.sigmoid(tf.tile(z[:, :1], [1, 30]))}

    tiny = Tiny()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tiny.decode.get_concrete_function()], tiny
    )
    with pytest.raises(ExportError, match="dropped weights"):
        litert_parity.check_variant(vae, converter.convert(), "decoder.tflite", "none")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"architecture": "conv", "hidden_units": [4, 8]},
        {"likelihood": "gaussian", "likelihood_scale": "learned", "hidden_units": [16]},
    ],
    ids=["conv-bernoulli", "mlp-gaussian-learned-scale"],
)
def test_other_architectures_export_with_parity(tmp_path, kwargs):
    """A conv decoder (transposed convolutions, cropping to 13x10) and a two-headed Gaussian
    decoder convert too, and the files agree with Keras. The run: one epoch of the real train
    job on 40 random 13x10 images."""
    rng = np.random.default_rng(1)
    dataset = tmp_path / "images.npz"
    np.savez(
        dataset,
        x_train=rng.random((32, 13, 10), np.float32),
        x_test=rng.random((8, 13, 10), np.float32),
    )
    config = {
        "model": {"latent_dim": 3, **kwargs},
        "data": {"dataset": str(dataset)},
        # Without XLA: compiling these tiny train steps takes longer than the epoch.
        "training": {"epochs": 1, "batch_size": 8, "jit_compile": False},
        "runtime": {"seed": 1},
    }
    run_dir = train_run(tmp_path, config)
    vae = load_model(run_dir)
    record = export_run(run_dir, tmp_path / "out", tflite=True)
    z = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected = keras_reference(vae, z=z)
    assert record["tflite"]["files"]["decoder.tflite"]["max_abs_error"] <= 1e-5
    for name in FILES:
        interp = Interpreter(model_path=str(tmp_path / "out" / "tflite" / name))
        got = interp.get_signature_runner("decode")(z=z)
        assert got["x_mean"].shape == (5, 13, 10)
        assert_export_parity(got, expected, TOLERANCE[name])
    decoder = tf.saved_model.load(str(tmp_path / "out" / "decoder" / "1"))
    assert_export_parity(decoder.signatures["serving_default"](z=tf.constant(z)), expected, 1e-5)
