"""Exports of every latent part (issue 14): the encoder's ``posterior_sample``, the decoder's
``sample`` from the model's own prior (mixture parameters baked in, ``component`` output), the
LiteRT ``sample`` on (noise, uniform), export.json's parts, and the serving client's
``posterior_sample`` and ``component``.

Small models (8x8 inputs, latent 3, 3 mixture components) with their part weights set to random
values: a fresh IAF is the identity and a fresh mixture prior has equal weights, which would let
an export that ignores the flow or the weights pass. One real run (iaf + mixture, trained four
steps) goes through `export_run`.
"""

from __future__ import annotations

import contextlib
import json
import re

import keras
import numpy as np
import pytest
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
from scipy import stats
from serving_fakes import client_for, serving

from keras_vae.export import (
    ExportError,
    litert_checks,
    litert_models,
    litert_ops,
)
from keras_vae.export.prior_draws import baked_prior
from keras_vae.model import VAE
from keras_vae.parts.priors import sample_from_noise
from keras_vae.serving import ServingError

TOL = 1e-5
DATA_SHAPE = (8, 8)
LATENT = 3
K = 3
FAMILIES = {  # name: (posterior, prior)
    "gaussian-normal": ("gaussian", "normal"),
    "iaf-normal": ("iaf", "normal"),
    "gaussian-vamp": ("gaussian", "vamp"),
    "iaf-mixture": ("iaf", "mixture"),
}
MIXTURES = ["gaussian-vamp", "iaf-mixture"]
FILES = tuple(litert_models.VARIANTS)
# x_mean of the quantized files (the decoder's weights); z and component are exact in all.
X_MEAN_TOLERANCE = {"decoder.tflite": TOL, "decoder_float16.tflite": 1e-2}
X_MEAN_TOLERANCE["decoder_dynamic_int8.tflite"] = 0.05
MAX_SAMPLES = 20_000  # the statistical check draws this many in one request


def family_model(name: str, seed: int) -> VAE:
    """A tiny VAE of the family with random flow, mixture and pseudo-input weights
    (`small_model(randomize="parts")`)."""
    posterior, prior = FAMILIES[name]
    return small_model(posterior, prior, False, seed, latent_dim=LATENT, prior_components=K)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{family: (model, folder)}: folder/encoder/1, folder/decoder/1 (each written and checked
    by `keras_vae.export.saved_model`) and folder/tflite (`write_tflite`, checked too)."""
    models = {name: family_model(name, seed) for seed, name in enumerate(FAMILIES)}
    return write_checked_exports(models, tmp_path_factory.mktemp("families"), MAX_SAMPLES)


@pytest.fixture(scope="module")
def loaded(exported):
    return load_saved_models(exported)


@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    """(model, export folder) of a real run: `train_and_evaluate` of an iaf + mixture VAE for
    four steps (learning rate 0.05, so the flow and the weights move well off their start),
    then `export_run(..., tflite=True)`."""
    folder = tmp_path_factory.mktemp("family_run")
    rng = np.random.default_rng(3)
    dataset = folder / "images.npz"
    np.savez(
        dataset,
        x_train=rng.random((64, *DATA_SHAPE), np.float32),
        x_test=rng.random((16, *DATA_SHAPE), np.float32),
    )
    config = {
        "model": {
            "latent_dim": LATENT,
            "hidden_units": [8],
            "posterior": "iaf",
            "flow_steps": 2,
            "flow_hidden_units": [8],
            "prior": "mixture",
            "prior_components": K,
        },
        "data": {"dataset": str(dataset)},
        # Without XLA: compiling these tiny train steps takes longer than the epoch.
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 0.05, "jit_compile": False},
        "runtime": {"seed": 3},
    }
    return trained_export(folder, config)


def inputs(seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *DATA_SHAPE)).astype(np.float32)
    return x, rng.standard_normal((batch, LATENT)).astype(np.float32)


def keras_posterior(model, x, noise) -> dict[str, np.ndarray]:
    """What ``posterior_sample`` must return: `model.posterior_layer.sample` on the encoder."""
    z_mean, z_stddev, context = model.encode_all(tf.constant(x))
    z, log_q = model.posterior_layer.sample(z_mean, z_stddev, noise[np.newaxis], context)
    return {"z": z[0], "log_q": log_q[0], "z_mean": z_mean, "z_stddev": z_stddev}


def prior_draws(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented eps (stateless normal, [seed, 0]) and u (stateless uniform, [seed, 1])."""
    eps = tf.random.stateless_normal([n, LATENT], seed=[seed, 0]).numpy()
    return eps, tf.random.stateless_uniform([n], seed=[seed, 1]).numpy()


def numpy_mixture_sample(model, eps: np.ndarray, u: np.ndarray):
    """(z, component) in NumPy from the Keras prior's parameters: c = #{j < K-1: u >= cdf_j},
    z = loc[c] + scale[c] * eps."""
    log_weights, loc, scale = (np.asarray(t) for t in model.prior_parameters())
    cdf = np.cumsum(np.exp(log_weights), dtype=np.float32)[:-1]
    component = (u[:, np.newaxis] >= cdf).sum(axis=1)
    return loc[component] + scale[component] * eps, component


# ---------------------------------------------------------------------------- the parts bite
def test_the_random_part_weights_make_every_part_matter(exported):
    """The flow is not the identity and the mixture weights are not equal, so every check
    below would fail for an export that dropped the flow or the weights."""
    x, noise = inputs(0, 4)
    for name in ("iaf-normal", "iaf-mixture"):
        model, _ = exported[name]
        got = keras_posterior(model, x, noise)
        gaussian = got["z_mean"] + got["z_stddev"] * noise
        assert np.abs(np.asarray(got["z"]) - gaussian).mean() > 0.01
    weights = np.exp(np.asarray(exported["iaf-mixture"][0].prior_parameters().log_weights))
    assert weights.max() - weights.min() > 0.3


# ---------------------------------------------------------------------------- SavedModels
@pytest.mark.parametrize("name", FAMILIES)
def test_signatures_of_every_family(exported, name):
    f32 = "float32"
    _, folder = exported[name]
    encoder = signature_io(folder / "encoder" / "1")
    assert sorted(encoder) == ["posterior_sample", "serving_default"], name
    assert encoder["posterior_sample"]["inputs"] == {
        "x": {"dtype": f32, "shape": [-1, *DATA_SHAPE]},
        "noise": {"dtype": f32, "shape": [-1, LATENT]},
    }
    latent = {"dtype": f32, "shape": [-1, LATENT]}
    assert encoder["posterior_sample"]["outputs"] == {
        "z": latent,
        "log_q": {"dtype": f32, "shape": [-1]},
        "z_mean": latent,
        "z_stddev": latent,
    }
    assert encoder["serving_default"]["outputs"] == {"z_mean": latent, "z_stddev": latent}
    decoder = signature_io(folder / "decoder" / "1")
    outputs = decoder["sample"]["outputs"]
    assert sorted(decoder) == ["generate", "sample", "serving_default"]
    assert sorted(decoder["sample"]["inputs"]) == ["num_samples", "seed"]
    if name in MIXTURES:
        assert outputs.pop("component") == {"dtype": "int32", "shape": [-1]}
    assert sorted(outputs) == ["x_mean", "z"], name


@pytest.mark.parametrize("name", FAMILIES)
def test_posterior_sample_equals_the_keras_posterior(exported, loaded, name):
    model, _ = exported[name]
    signature = loaded[name]["encoder"].signatures["posterior_sample"]
    for batch in (1, 5):
        x, noise = inputs(batch, batch)
        got = signature(x=tf.constant(x), noise=tf.constant(noise))
        for key, value in keras_posterior(model, x, noise).items():
            assert_scaled_close(got[key], value, err_msg=f"{name} {key}")
        z_mean, z_stddev = model.encode(x)
        np.testing.assert_array_equal(got["z_mean"], z_mean)
        np.testing.assert_array_equal(got["z_stddev"], z_stddev)


BAD_POSTERIOR_INPUTS = {
    "fewer noise rows": ((3, *DATA_SHAPE), (2, LATENT), "one noise row per example"),
    "more noise rows": ((2, *DATA_SHAPE), (3, LATENT), "one noise row per example"),
    "noise too wide": ((2, *DATA_SHAPE), (2, LATENT + 1), "Shape of tensor noise"),
    "noise a vector": ((1, *DATA_SHAPE), (LATENT,), "Shape of tensor noise"),
    "x flattened": ((2, 64), (2, LATENT), "Shape of tensor x"),
}


@pytest.mark.parametrize("case", sorted(BAD_POSTERIOR_INPUTS))
def test_posterior_sample_refuses_bad_inputs(loaded, case):
    x_shape, noise_shape, pattern = BAD_POSTERIOR_INPUTS[case]
    signature = loaded["iaf-mixture"]["encoder"].signatures["posterior_sample"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        signature(x=tf.zeros(x_shape), noise=tf.zeros(noise_shape))


@pytest.mark.parametrize("name", FAMILIES)
def test_decoder_sample_draws_from_the_baked_prior(exported, loaded, name):
    n, seed = 64, 5
    eps, u = prior_draws(n, seed)
    model, _ = exported[name]
    got = loaded[name]["decoder"].signatures["sample"](
        num_samples=tf.constant(n), seed=tf.constant(seed)
    )
    z = got["z"].numpy()
    if name in MIXTURES:
        component = got["component"].numpy()
        assert got["component"].dtype == tf.int32
        assert component.min() >= 0 and component.max() < K
        assert len(set(component.tolist())) == K  # 64 draws reach every component
        expected_z, expected_component = numpy_mixture_sample(model, eps, u)
        np.testing.assert_array_equal(component, expected_component)
        np.testing.assert_allclose(z, expected_z, rtol=0, atol=TOL, err_msg=name)
        baked, live = baked_prior(model), model.prior_parameters()
        for constant, value in zip(baked, live):
            np.testing.assert_array_equal(constant, value)
    else:
        assert "component" not in got
        np.testing.assert_array_equal(z, eps)  # bit-identical to the pre-parts export
    np.testing.assert_allclose(got["x_mean"], model.decode(z), rtol=0, atol=TOL)
    again = loaded[name]["decoder"].signatures["sample"](
        num_samples=tf.constant(n), seed=tf.constant(seed)
    )
    for key, value in got.items():
        np.testing.assert_array_equal(again[key], value)


def test_decoder_sample_follows_the_mixture_weights(exported, loaded):
    """20,000 draws: component counts against softmax(logits) (chi-square, and each within 4
    binomial standard errors), and z given each component with the component's mean."""
    n = MAX_SAMPLES
    for name in MIXTURES:
        model, _ = exported[name]
        got = loaded[name]["decoder"].signatures["sample"](
            num_samples=tf.constant(n), seed=tf.constant(2024)
        )
        params = [np.asarray(t, np.float64) for t in model.prior_parameters()]
        weights, loc, scale = np.exp(params[0]), params[1], params[2]
        weights /= weights.sum()  # float64 sum to 1, as chisquare requires
        component, z = got["component"].numpy(), got["z"].numpy()
        counts = np.bincount(component, minlength=K)
        assert counts.shape == (K,)
        assert stats.chisquare(counts, n * weights).pvalue > 1e-4, (name, counts, weights)
        binomial_se = np.sqrt(n * weights * (1 - weights))
        assert (np.abs(counts - n * weights) < 4 * binomial_se).all(), (name, counts)
        for k in range(K):
            mean_se = scale[k] / np.sqrt(counts[k])
            assert (np.abs(z[component == k].mean(axis=0) - loc[k]) < 4 * mean_se).all()


@pytest.mark.slow
def test_a_process_with_only_tensorflow_runs_every_signature_of_every_family(
    exported, real_export, tmp_path
):
    """Every signature of every family (and of the real run's export) through
    `tf.saved_model.load` and through a Session fed by the SignatureDefs, in a process that
    cannot import keras_vae, equals Keras to 1e-5."""
    folders = {name: str(folder) for name, (_, folder) in exported.items()}
    folders["run"] = str(real_export[1])
    models = {name: model for name, (model, _) in exported.items()}
    models["run"] = real_export[0]
    x, noise = inputs(99, 5)
    z = np.random.default_rng(98).standard_normal((5, LATENT)).astype(np.float32)
    got = run_in_pure_tensorflow(folders, {"x": x, "noise": noise, "z": z}, tmp_path)
    eps, u = prior_draws(7, 11)
    for name, model in models.items():
        z_mean, z_stddev = model.encode(x)
        expected = {
            "serving_default/z_mean": z_mean,
            "serving_default/z_stddev": z_stddev,
            "serving_default/x_mean": model.decode(z),
            **{f"posterior_sample/{k}": v for k, v in keras_posterior(model, x, noise).items()},
        }
        if model.prior_name == "normal":
            expected["sample/z"] = eps
        else:
            expected["sample/z"], expected["sample/component"] = numpy_mixture_sample(model, eps, u)
        expected["sample/x_mean"] = model.decode(expected["sample/z"])
        for outputs in assert_pure_tensorflow_close(got, name, expected).values():
            if model.prior_name == "normal":
                np.testing.assert_array_equal(outputs["sample/z"], eps)
            else:
                np.testing.assert_array_equal(
                    outputs["sample/component"], expected["sample/component"]
                )


def test_export_json_records_the_parts_and_the_new_signatures(real_export):
    model, folder = real_export
    record = json.loads((folder / "export.json").read_text())
    assert record["model"] == {
        "data_shape": list(DATA_SHAPE),
        "latent_dim": LATENT,
        "likelihood": "bernoulli",
        "x_mean": "Bernoulli probabilities",
        "posterior": "iaf",
        "flow_steps": 2,
        "prior": "mixture",
        "prior_components": K,
        "objective": "elbo",
    }
    encoder = record["models"]["encoder"]
    assert encoder["signatures"]["posterior_sample"]["outputs"]["log_q"]["shape"] == [-1]
    assert all(0 <= error <= TOL for error in encoder["max_abs_error"].values())
    assert "posterior_sample_log_q" in encoder["max_abs_error"]
    decoder = record["models"]["decoder"]["signatures"]["sample"]["outputs"]
    assert decoder["component"] == {"dtype": "int32", "shape": [-1]}
    for name in FILES:
        entry = record["tflite"]["files"][name]
        sample = entry["signatures"]["sample"]
        assert sample["inputs"] == {
            "noise": {"dtype": "float32", "shape": [-1, LATENT]},
            "uniform": {"dtype": "float32", "shape": [-1]},
        }
        assert sample["outputs"]["component"] == {"dtype": "int32", "shape": [-1]}
        refusals = 2 * len(litert_checks.wrong_latent_shapes(LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert entry["wrong_shapes_refused"] == refusals
    # The trained flow and weights moved off their start, so the export's checks had teeth.
    weights = np.exp(np.asarray(model.prior_parameters().log_weights))
    assert weights.max() - weights.min() > 0.01


# ---------------------------------------------------------------------------- LiteRT
@pytest.mark.parametrize("name", FAMILIES)
def test_tflite_files_use_builtin_ops_only(exported, name):
    _, folder = exported[name]
    for file_name in FILES:
        ops = litert_checks.operators((folder / "tflite" / file_name).read_bytes())
        assert "WHERE" in ops and "GATHER" in ops, (name, file_name, ops)
        if name in MIXTURES:  # the bit-pattern prior tables and comparison
            assert {"BITCAST", "GREATER_EQUAL", "SUM"} <= set(ops), (name, ops)


@pytest.mark.parametrize("name", FAMILIES)
def test_tflite_sample_and_decode_equal_the_saved_model(exported, loaded, name):
    """The SavedModel's ``sample`` (n, seed) and the LiteRT ``sample`` on that seed's eps
    (and u) agree: z and component exactly (to 1e-5) in every file, x_mean to 1e-5 in the
    float32 file; ``decode`` likewise against ``serving_default``."""
    n, seed = 32, 77
    eps, u = prior_draws(n, seed)
    _, folder = exported[name]
    signatures = loaded[name]["decoder"].signatures
    served = signatures["sample"](num_samples=tf.constant(n), seed=tf.constant(seed))
    decoded = signatures["serving_default"](z=tf.constant(eps))["x_mean"].numpy()
    for file_name, interp in interpreters(folder).items():
        tolerance = X_MEAN_TOLERANCE[file_name]
        runner = interp.get_signature_runner("sample")
        if name in MIXTURES:
            got = runner(noise=eps, uniform=u)
            np.testing.assert_array_equal(got["component"], served["component"])
            assert got["component"].dtype == np.int32
        else:
            got = runner(noise=eps)
            assert "component" not in got
        np.testing.assert_allclose(got["z"], served["z"], rtol=0, atol=TOL)
        np.testing.assert_allclose(got["x_mean"], served["x_mean"], rtol=0, atol=tolerance)
        assert not np.isnan(got["x_mean"]).any()
        again = runner(noise=eps, uniform=u) if name in MIXTURES else runner(noise=eps)
        for key, value in got.items():
            np.testing.assert_array_equal(again[key], value)
        from_decode = interp.get_signature_runner("decode")(z=eps)["x_mean"]
        np.testing.assert_allclose(from_decode, decoded, rtol=0, atol=tolerance)


def test_tflite_components_equal_tensorflow_at_the_cdf_boundaries(exported):
    """At each cdf value, the float32 just below and just above it, 0, -0.0, 1 and beyond
    [0, 1): the bit-pattern comparison of every LiteRT file picks the component
    `sample_from_noise` picks."""
    for name in MIXTURES:
        model, folder = exported[name]
        params = model.prior_parameters()
        cdf = np.asarray(tf.cumsum(tf.exp(params.log_weights))[:-1], np.float32)
        up, down = np.float32(np.inf), np.float32(-np.inf)
        u = np.concatenate(
            [cdf, np.nextafter(cdf, down), np.nextafter(cdf, up), [0.0, -0.0, 1.0, -0.5, 1.5]]
        ).astype(np.float32)
        eps = np.random.default_rng(4).standard_normal((len(u), LATENT)).astype(np.float32)
        z, component = sample_from_noise(params, eps, u)
        assert len(set(np.asarray(component).tolist())) == K
        for file_name, interp in interpreters(folder).items():
            got = interp.get_signature_runner("sample")(noise=eps, uniform=u)
            np.testing.assert_array_equal(got["component"], component, err_msg=file_name)
            np.testing.assert_allclose(got["z"], z, rtol=0, atol=TOL, err_msg=file_name)


def test_tflite_sample_refuses_uniforms_that_are_not_one_per_noise_row(exported):
    """Other ranks (a scalar, [n, 1], [1, n], [1, 1, n]) and other row counts (one off, one
    row against n, n rows against one), in every file, fail instead of running; the
    interpreter then still samples."""
    _, folder = exported["gaussian-vamp"]
    eps, u = prior_draws(4, 1)
    cases = [
        (eps, np.full(shape, 0.5, np.float32)) for shape in litert_checks.wrong_uniform_shapes(4)
    ]
    cases.append((eps[:1], u))  # one noise row, four uniforms
    for file_name, interp in interpreters(folder).items():
        runner = interp.get_signature_runner("sample")
        for noise, uniform in cases:
            with pytest.raises(RuntimeError, match="RESHAPE|GATHER|broadcast|XNNPack"):
                runner(noise=noise, uniform=uniform)
            assert runner(noise=eps, uniform=u)["z"].shape == (4, LATENT)
        refused = litert_checks.check_rejects_wrong_rank(interp, LATENT, file_name)
        expected = 2 * len(litert_checks.wrong_latent_shapes(LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert refused == expected


def test_a_sample_without_the_uniform_guard_never_passes(exported, tmp_path):
    """A mixture ``sample`` converted without `exact_uniform` runs a [n, 1] or one-row
    uniform (it broadcasts), and the export check refuses the file."""
    model, _ = exported["gaussian-vamp"]
    tables = litert_ops.prior_tables(baked_prior(model))

    def sample(noise, uniform):
        noise = litert_ops.exact_latents(noise, LATENT)
        z, component = litert_ops.sample_from_tables(tables, noise, uniform)
        return {"x_mean": model.decode(z, training=False), "z": z, "component": component}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(
        "sample",
        sample,
        [
            tf.TensorSpec([None, LATENT], tf.float32, name="noise"),
            tf.TensorSpec([None], tf.float32, name="uniform"),
        ],
    )
    archive.write_out(str(tmp_path / "unguarded"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(tmp_path / "unguarded"), signature_keys=["sample"]
    )
    content = converter.convert()
    with pytest.raises(ExportError, match=r"ran on uniform of shape .* it takes \[n\]"):
        litert_checks.check_rejects_wrong_rank(litert_checks.interpreter(content), LATENT)


# ---------------------------------------------------------------------------- the client
@pytest.fixture(scope="module")
def servers(exported):
    """A `FakeModelServer` (tests/serving_fakes.py) on the iaf-mixture and gaussian-normal
    exports: {family: server with .rest_port and .grpc_port}."""
    with contextlib.ExitStack() as stack:
        names = ("iaf-mixture", "gaussian-normal")
        yield {name: stack.enter_context(serving(exported[name][1])) for name in names}


@CLIENT_PROTOCOLS
def test_client_posterior_sample_and_components(exported, loaded, servers, protocol, rest_format):
    model, _ = exported["iaf-mixture"]
    x, noise = inputs(7, 3)
    with client_for(servers["iaf-mixture"], protocol, rest_format=rest_format) as client:
        drawn = client.posterior_sample(x, noise)
        for key, value in keras_posterior(model, x, noise).items():
            assert_scaled_close(getattr(drawn, key), value, err_msg=key)
        assert drawn.log_q.shape == (3,) and drawn.z.dtype == np.float32
        samples = client.sample(6, seed=9)
        x_mean, z = samples  # unpacks as before
        served = loaded["iaf-mixture"]["decoder"].signatures["sample"](
            num_samples=tf.constant(6), seed=tf.constant(9)
        )
        np.testing.assert_array_equal(samples.component, served["component"])
        assert samples.component.dtype == np.int32 and samples.component.shape == (6,)
        np.testing.assert_array_equal(z, served["z"])
        np.testing.assert_array_equal(x_mean, served["x_mean"])
    with client_for(servers["gaussian-normal"], protocol, rest_format=rest_format) as client:
        samples = client.sample(4, seed=9)
        assert samples.component is None
        np.testing.assert_array_equal(samples.z, tf.random.stateless_normal([4, LATENT], [9, 0]))


BAD_CLIENT_CALLS = {
    "fewer noise rows": (np.zeros((3, *DATA_SHAPE)), np.zeros((2, LATENT)), "2 rows but `x` has 3"),
    "noise too wide": (np.zeros((2, *DATA_SHAPE)), np.zeros((2, LATENT + 1)), "`noise` has shape"),
    "noise NaN": (np.zeros((1, *DATA_SHAPE)), np.full((1, LATENT), np.nan), "NaN"),
    "x wrong shape": (np.zeros((1, 64)), np.zeros((1, LATENT)), "`x` has shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLIENT_CALLS))
def test_client_posterior_sample_validates_before_sending(servers, case):
    x, noise, message = BAD_CLIENT_CALLS[case]
    server = servers["iaf-mixture"]
    server.requests.clear()
    client = client_for(server, data_shape=DATA_SHAPE, latent_dim=LATENT)
    with client, pytest.raises(ValueError, match=re.escape(message)):
        client.posterior_sample(x, noise)
    assert server.requests == []


def test_client_refuses_a_malformed_component(servers):
    server = servers["iaf-mixture"]

    def negative(payload):
        payload["outputs"]["component"] = [-1] * len(payload["outputs"]["component"])
        return payload

    server.tamper["rest", "predict"] = negative
    try:
        client = client_for(server, data_shape=DATA_SHAPE, latent_dim=LATENT)
        with client, pytest.raises(ServingError, match=r"output 'component' holds values"):
            client.sample(3, seed=0)
    finally:
        server.tamper.clear()
