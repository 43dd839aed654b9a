"""The TF Serving SavedModels: layout, export.json, self-containedness, parity with Keras, and
clear errors for bad inputs."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    LATENT_DIM,
    TENSORFLOW_ONLY_PRELUDE,
    assert_export_parity,
    console_script,
    keras_reference,
    rng_inputs,
    run_command,
    run_python,
)

from keras_vae.export import saved_model_signatures

TOL = 1e-5  # float32 parity required by the issue


@pytest.fixture(scope="module")
def loaded(mnist_export):
    return {
        "encoder": tf.saved_model.load(str(mnist_export / "encoder" / "1")),
        "decoder": tf.saved_model.load(str(mnist_export / "decoder" / "1")),
    }


def test_the_fixture_model_is_trained(mnist_run):
    """The export is of a model that learned something: its ELBO improved while training."""
    elbo = json.loads((mnist_run / "metrics.json").read_text())["history"]["elbo"]
    assert elbo[-1] > elbo[0] + 50  # nats per image; the first epochs gain hundreds


def test_layout_is_tf_serving_model_base_paths(mnist_export):
    for name in ("encoder", "decoder"):
        assert sorted(p.name for p in (mnist_export / name).iterdir()) == ["1"]
        version = mnist_export / name / "1"
        assert (version / "saved_model.pb").is_file()
        assert (version / "variables" / "variables.index").is_file()
    assert not list(mnist_export.glob(".tmp-export-*")), "the staging folder must be gone"


def test_signatures_are_exactly_the_documented_ones(mnist_export, mnist_model):
    shape = [-1, *mnist_model.data_shape]
    encoder = saved_model_signatures(mnist_export / "encoder" / "1")
    decoder = saved_model_signatures(mnist_export / "decoder" / "1")
    f32 = "float32"
    assert encoder == {
        "serving_default": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {"x": {"dtype": f32, "shape": shape}},
            "outputs": {
                "z_mean": {"dtype": f32, "shape": [-1, LATENT_DIM]},
                "z_stddev": {"dtype": f32, "shape": [-1, LATENT_DIM]},
            },
        },
        "posterior_sample": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {
                "x": {"dtype": f32, "shape": shape},
                "noise": {"dtype": f32, "shape": [-1, LATENT_DIM]},
            },
            "outputs": {
                "z": {"dtype": f32, "shape": [-1, LATENT_DIM]},
                "log_q": {"dtype": f32, "shape": [-1]},
                "z_mean": {"dtype": f32, "shape": [-1, LATENT_DIM]},
                "z_stddev": {"dtype": f32, "shape": [-1, LATENT_DIM]},
            },
        },
    }
    assert decoder["serving_default"]["inputs"] == {"z": {"dtype": f32, "shape": [-1, LATENT_DIM]}}
    assert decoder["serving_default"]["outputs"] == {"x_mean": {"dtype": f32, "shape": shape}}
    assert decoder["sample"]["inputs"] == {
        "num_samples": {"dtype": "int32", "shape": []},
        "seed": {"dtype": "int32", "shape": []},
    }
    assert decoder["sample"]["outputs"] == {
        "x_mean": {"dtype": f32, "shape": shape},
        "z": {"dtype": f32, "shape": [-1, LATENT_DIM]},
    }
    assert sorted(decoder) == ["generate", "sample", "serving_default"]


def test_export_json_records_run_signatures_and_checks(mnist_export, mnist_run):
    run_dir = mnist_run
    record = json.loads((mnist_export / "export.json").read_text())
    assert record["version"] == 1
    assert record["run_dir"] == str(run_dir.resolve())
    assert record["run_config"] == json.loads((run_dir / "config.json").read_text())
    assert record["model"]["data_shape"] == [28, 28]
    assert record["model"]["latent_dim"] == LATENT_DIM
    for name in ("encoder", "decoder"):
        info = record["models"][name]
        assert info["path"] == f"{name}/1"
        assert info["signatures"] == saved_model_signatures(mnist_export / name / "1")
        assert all(0 <= e <= TOL for e in info["max_abs_error"].values())
    assert [h["version"] for h in record["history"]] == [1]
    assert record["tflite"]["version"] == 1


def test_outputs_equal_keras(loaded, mnist_model):
    for batch in (1, 7):  # two batch sizes, as Keras's own export tests do
        x, z = rng_inputs(mnist_model, batch, seed=batch)
        encoded = loaded["encoder"].signatures["serving_default"](x=tf.constant(x))
        assert_export_parity(encoded, keras_reference(mnist_model, x=x), TOL)
        decoded = loaded["decoder"].signatures["serving_default"](z=tf.constant(z))
        assert_export_parity(decoded, keras_reference(mnist_model, z=z), TOL)
        assert decoded["x_mean"].shape == (batch, 28, 28)
        assert float(tf.reduce_min(decoded["x_mean"])) >= 0
        assert float(tf.reduce_max(decoded["x_mean"])) <= 1  # Bernoulli probabilities


def test_sample_is_a_pure_function_of_the_seed_and_decodes_with_keras(loaded, mnist_model):
    sample = loaded["decoder"].signatures["sample"]

    def draw(n, seed):
        return sample(num_samples=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int32))

    first, again, other = draw(6, 3), draw(6, 3), draw(6, 4)
    np.testing.assert_array_equal(first["z"], again["z"])
    np.testing.assert_array_equal(first["x_mean"], again["x_mean"])
    assert not np.allclose(first["z"], other["z"])
    # The documented generator: tf.random.stateless_normal with seed [seed, 0].
    expected_z = tf.random.stateless_normal([6, LATENT_DIM], seed=[3, 0])
    np.testing.assert_array_equal(first["z"], expected_z)
    np.testing.assert_allclose(first["x_mean"], mnist_model.decode(first["z"]), rtol=0, atol=TOL)
    assert draw(0, 1)["z"].shape == (0, LATENT_DIM)


def test_sample_draws_standard_normal_z(loaded):
    """Mean 0 and variance 1 within 5 standard errors over 4,000 x 20 draws."""
    z = (
        loaded["decoder"]
        .signatures["sample"](num_samples=tf.constant(4000), seed=tf.constant(123))["z"]
        .numpy()
    )
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)


SHAPE_OR_DTYPE = r"shape|expected to be a float"
# What each signature refuses: {kind: {case: (inputs, pattern of the InvalidArgumentError)}}.
BAD_INPUTS = {
    "encoder": {
        "wrong rank, same size": ({"x": np.zeros((2, 784), np.float32)}, SHAPE_OR_DTYPE),
        "wrong width": ({"x": np.zeros((2, 28, 27), np.float32)}, SHAPE_OR_DTYPE),
        "extra channel axis": ({"x": np.zeros((2, 28, 28, 1), np.float32)}, SHAPE_OR_DTYPE),
        "no batch axis": ({"x": np.zeros((28, 28), np.float32)}, SHAPE_OR_DTYPE),
        "float64": ({"x": np.zeros((2, 28, 28), np.float64)}, SHAPE_OR_DTYPE),
        "int32": ({"x": np.zeros((2, 28, 28), np.int32)}, SHAPE_OR_DTYPE),
    },
    "decoder": {
        "wrong latent size": ({"z": np.zeros((2, LATENT_DIM + 1), np.float32)}, SHAPE_OR_DTYPE),
        "vector": ({"z": np.zeros((LATENT_DIM,), np.float32)}, SHAPE_OR_DTYPE),
        "rank 3": ({"z": np.zeros((2, LATENT_DIM, 1), np.float32)}, SHAPE_OR_DTYPE),
        "float64": ({"z": np.zeros((2, LATENT_DIM), np.float64)}, SHAPE_OR_DTYPE),
    },
    "sample": {  # Python ints and floats: tf.constant makes int32 and float32 tensors
        "negative count": ({"num_samples": -1, "seed": 0}, "num_samples must be >= 0"),
        "count as vector": ({"num_samples": [2], "seed": 0}, "Shape of tensor num_samples"),
        "seed as vector": ({"num_samples": 2, "seed": [1, 2]}, "Shape of tensor seed"),
        "int64 count": ({"num_samples": np.int64(2), "seed": 0}, "expected to be a int32"),
        "float seed": ({"num_samples": 2, "seed": 0.5}, "expected to be a int32"),
    },
}
SIGNATURES = {
    "encoder": ("encoder", "serving_default"),
    "decoder": ("decoder", "serving_default"),
    "sample": ("decoder", "sample"),
}


@pytest.mark.parametrize(
    "kind, case", [(kind, case) for kind, cases in BAD_INPUTS.items() for case in sorted(cases)]
)
def test_signatures_reject_bad_inputs_with_invalid_argument(loaded, kind, case):
    inputs, pattern = BAD_INPUTS[kind][case]
    model, signature = SIGNATURES[kind]
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        loaded[model].signatures[signature](**tensors)


# Runs in a fresh interpreter that cannot import keras_vae: what TF Serving or any user gets.
PURE_TF_SCRIPT = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""

import numpy as np
import tensorflow as tf

out, inputs, results = sys.argv[1:4]
data = np.load(inputs)
encoder = tf.saved_model.load(out + "/encoder/1")
decoder = tf.saved_model.load(out + "/decoder/1")
assert sorted(decoder.signatures) == ["generate", "sample", "serving_default"], list(
    decoder.signatures
)
enc = encoder.signatures["serving_default"](x=tf.constant(data["x"]))
dec = decoder.signatures["serving_default"](z=tf.constant(data["z"]))
smp = decoder.signatures["sample"](num_samples=tf.constant(5), seed=tf.constant(11))


def run_signature_def(path, key, feeds):
    # TF Serving's path: a Session fed and fetched through the SignatureDef's tensor names.
    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        signature = meta.signature_def[key]
        fetch = {k: v.name for k, v in signature.outputs.items()}
        feed = {signature.inputs[k].name: v for k, v in feeds.items()}
        return sess.run(fetch, feed_dict=feed)


session_enc = run_signature_def(out + "/encoder/1", "serving_default", {"x": data["x"]})
session_dec = run_signature_def(out + "/decoder/1", "serving_default", {"z": data["z"]})
feeds = {"num_samples": np.int32(5), "seed": np.int32(11)}
session_smp = run_signature_def(out + "/decoder/1", "sample", feeds)
assert "keras_vae" not in sys.modules
np.savez(
    results,
    z_mean=enc["z_mean"], z_stddev=enc["z_stddev"], x_mean=dec["x_mean"],
    sample_x_mean=smp["x_mean"], sample_z=smp["z"],
    session_z_mean=session_enc["z_mean"], session_z_stddev=session_enc["z_stddev"],
    session_x_mean=session_dec["x_mean"],
    session_sample_x_mean=session_smp["x_mean"], session_sample_z=session_smp["z"],
)
print("ok")
"""
)


@pytest.mark.slow
def test_a_process_with_only_tensorflow_runs_every_signature(mnist_export, mnist_model, tmp_path):
    x, z = rng_inputs(mnist_model, 5, seed=99)
    np.savez(tmp_path / "inputs.npz", x=x, z=z)
    results = tmp_path / "results.npz"
    done = run_python(PURE_TF_SCRIPT, str(mnist_export), str(tmp_path / "inputs.npz"), str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(results)
    expected = keras_reference(mnist_model, x=x, z=z)  # z_mean, z_stddev and x_mean
    expected_z = tf.random.stateless_normal([5, LATENT_DIM], seed=[11, 0])
    for prefix in ("", "session_"):  # tf.saved_model.load, then the TF1 Session path
        assert_export_parity({name: got[prefix + name] for name in expected}, expected, TOL)
        sample_z = got[prefix + "sample_z"]
        np.testing.assert_array_equal(sample_z, expected_z)
        x_mean = got[prefix + "sample_x_mean"]
        np.testing.assert_allclose(x_mean, mnist_model.decode(sample_z), rtol=0, atol=TOL)


def _saved_model_cli(*args: str) -> subprocess.CompletedProcess:
    """TensorFlow's `saved_model_cli`, installed beside this interpreter."""
    return run_command([console_script("saved_model_cli"), *args])


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_the_signatures(mnist_export, mnist_model, tmp_path):
    """`saved_model_cli` goes through the SignatureDef, as TF Serving does."""
    shown = _saved_model_cli("show", "--all", "--dir", str(mnist_export / "decoder" / "1"))
    assert shown.returncode == 0, shown.stderr[-3000:]
    for fragment in (
        "signature_def['serving_default']",
        "signature_def['sample']",
        "inputs['num_samples']",
        "inputs['seed']",
        "inputs['z']",
        "outputs['x_mean']",
        "outputs['z']",
        "DT_INT32",
        "tensorflow/serving/predict",
    ):
        assert fragment in shown.stdout, fragment

    _, z = rng_inputs(mnist_model, 3, seed=5)
    np.save(tmp_path / "z.npy", z)
    ran = _saved_model_cli(
        "run",
        "--dir",
        str(mnist_export / "decoder" / "1"),
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        f"z={tmp_path / 'z.npy'}",
        "--outdir",
        str(tmp_path / "decoded"),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    x_mean = np.load(tmp_path / "decoded" / "x_mean.npy")
    np.testing.assert_allclose(x_mean, mnist_model.decode(z), rtol=0, atol=TOL)
