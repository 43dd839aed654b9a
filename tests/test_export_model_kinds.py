"""Exports of every model kind of `model_factory.MODEL_KINDS` (issues 14 and 15): the
encoder's ``serving_default`` and ``posterior_sample``, the decoder's ``sample`` from the
model's own prior (mixture parameters baked in, ``component`` output), the LiteRT ``decode``
and ``sample``, export.json, and the serving client. A conditional kind's signatures all take
``label`` (int32 [batch]), its ``sample`` one (label, int64 seed) per row, and out-of-range
labels fail everywhere.

Each kind is a tiny model with random weights (a fresh IAF is the identity, a fresh mixture
prior has equal weights and fresh biases are 0, which would let a broken export pass),
exported once per module (`exports`, the `exported` fixture over the kinds):
- the unconditional kinds (`FAMILIES`): 8x8 inputs, latent 3, 3 mixture components, the
  flow's and the prior's weights random, a cap of 20,000 rows (the statistical check draws
  that many in one request);
- the conditional kinds (`CONDITIONAL`): latent 2, 3 classes, one flow step, every weight
  random so the label changes every output (asserted first), a cap of 64 rows; the
  VampPrior's pseudo-input k has label k mod 3.
Two real runs (`runs`) go through `export_run(..., tflite=True)`: an iaf + mixture VAE
trained four steps, and a conditional VAE on the bundled digits (10 classes, one epoch),
served by a stand-in TF Serving (tests/serving_fakes.py) for the client and the serving
README's conditional curl.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import pytest
import requests
import tensorflow as tf
from helpers import load_saved_models, write_checked_exports
from model_factory import (
    CLIENT_PROTOCOLS,
    MODEL_KINDS,
    assert_pure_tensorflow_close,
    assert_scaled_close,
    interpreters,
    kind_model,
    run_in_pure_tensorflow,
    signature_io,
    trained_export,
)
from scipy import stats
from serving_fakes import client_for, serving

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
from keras_vae.latent_draws import LatentMixture, baked_prior
from keras_vae.model import VAE
from keras_vae.parts.priors import sample_from_noise
from keras_vae.serving import ServingClient, ServingError

TOL = 1e-5
DATA_SHAPE = (8, 8)
K = 3  # the conditional kinds' classes and the mixture priors' components
FAMILIES = [name for name, (_, _, conditional) in MODEL_KINDS.items() if not conditional]
CONDITIONAL = [name for name, (_, _, conditional) in MODEL_KINDS.items() if conditional]
MIXTURES = [name for name in FAMILIES if MODEL_KINDS[name][1] != "normal"]
FAMILY_LATENT = 3
CONDITIONAL_LATENT = 2
# small_model's settings and the sample cap, by whether the kind is conditional.
SETTINGS = {
    False: {"latent_dim": FAMILY_LATENT, "prior_components": K},
    True: {"latent_dim": CONDITIONAL_LATENT, "num_classes": K, "flow_steps": 1, "randomize": "all"},
}
MAX_SAMPLES = {False: 20_000, True: 64}
FILES = tuple(litert_models.VARIANTS)
# x_mean of the quantized files (their decoder weights); z and component are exact in all.
X_MEAN_TOLERANCE = {
    "decoder.tflite": TOL,
    "decoder_float16.tflite": 1e-2,
    "decoder_dynamic_int8.tflite": 0.05,
}
SEEDS = np.array([-(2**63), 2**63 - 1, -1, 0, 1, 12345678901234], np.int64)
SERVING_README = Path(__file__).resolve().parents[1] / "serving" / "README.md"


class Export(NamedTuple):
    """One kind's model, export folder and loaded SavedModels {"encoder", "decoder"}."""

    model: VAE
    folder: Path
    saved: dict


class Lazy(dict):
    """A dict that makes a missing key's value once, with `make(key)`, on first use."""

    def __init__(self, make: Callable[[str], Any]):
        super().__init__()
        self.make = make

    def __missing__(self, key: str):
        self[key] = value = self.make(key)
        return value


def kind_of(name: str) -> VAE:
    """The kind's tiny model: `SETTINGS` of its group, the seed its place in the group."""
    conditional = MODEL_KINDS[name][2]
    group = CONDITIONAL if conditional else FAMILIES
    return kind_model(name, group.index(name), **SETTINGS[conditional])


def over(kinds: list[str]):
    """Run a test with `exported` over these kinds only."""
    return pytest.mark.parametrize("exported", kinds, indirect=True)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Lazy:
    """{kind: Export}: folder/encoder/1 and folder/decoder/1 (written and checked by
    `keras_vae.export.saved_model`, cap `MAX_SAMPLES`) and folder/tflite (`write_tflite`,
    checked too), each kind exported on first use."""
    root = tmp_path_factory.mktemp("kinds")

    def export(name: str) -> Export:
        model = kind_of(name)
        written = write_checked_exports({name: model}, root, MAX_SAMPLES[model.conditional])
        return Export(model, written[name][1], load_saved_models(written)[name])

    return Lazy(export)


@pytest.fixture(scope="module", params=list(MODEL_KINDS))
def exported(request, exports) -> Export:
    """One kind's `Export` (every kind of `MODEL_KINDS`, or those `over` names)."""
    return exports[request.param]


def family_run_config(folder: Path) -> dict:
    """An iaf + mixture VAE on 64 random images for four steps (learning rate 0.05, so the
    flow and the weights move well off their start)."""
    rng = np.random.default_rng(3)
    dataset = folder / "images.npz"
    np.savez(
        dataset,
        x_train=rng.random((64, *DATA_SHAPE), np.float32),
        x_test=rng.random((16, *DATA_SHAPE), np.float32),
    )
    return {
        "model": {
            "latent_dim": FAMILY_LATENT,
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


def conditional_run_config(folder: Path) -> dict:
    """A conditional VAE on the bundled digits (K=10 from the labels), one epoch."""
    return {
        "model": {"latent_dim": CONDITIONAL_LATENT, "hidden_units": [8], "conditional": True},
        # Without XLA: compiling these tiny train steps takes longer than the epoch.
        "training": {"epochs": 1, "batch_size": 64, "jit_compile": False},
        "runtime": {"seed": 5},
    }


RUN_CONFIGS = {"family": family_run_config, "conditional": conditional_run_config}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Lazy:
    """{"family" or "conditional": (model, export folder)} of the real train job on
    `RUN_CONFIGS`, then `export_run(..., tflite=True)`, each run on first use."""

    def run(group: str):
        folder = tmp_path_factory.mktemp(f"{group}_run")
        return trained_export(folder, RUN_CONFIGS[group](folder))

    return Lazy(run)


def inputs(seed: int, batch: int, latent: int):
    """x in [0, 1], labels spread over [0, K), standard normal noise and z."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *DATA_SHAPE)).astype(np.float32)
    labels = (np.arange(batch) % K).astype(np.int32)
    noise = rng.standard_normal((batch, latent)).astype(np.float32)
    z = rng.standard_normal((batch, latent)).astype(np.float32)
    return x, labels, noise, z


def row_draws(seeds, latent: int = CONDITIONAL_LATENT):
    """The documented per-row eps (stateless normal, [seed, 0]) and u (stateless uniform,
    [seed, 1]), Philox, one seed at a time."""
    eps, u = [], []
    for seed in np.asarray(seeds, np.int64).tolist():
        normal, uniform = (tf.constant([seed, stream], tf.int64) for stream in (0, 1))
        eps.append(tf.random.stateless_normal([latent], normal, alg="philox").numpy())
        u.append(tf.random.stateless_uniform([], uniform, alg="philox").numpy())
    return np.stack(eps).astype(np.float32), np.asarray(u, np.float32)


def prior_draws(n: int, seed: int, latent: int = FAMILY_LATENT):
    """The documented eps (stateless normal, [seed, 0]) and u (stateless uniform, [seed, 1])."""
    eps = tf.random.stateless_normal([n, latent], seed=[seed, 0]).numpy()
    return eps, tf.random.stateless_uniform([n], seed=[seed, 1]).numpy()


def keras_sample(model, labels, seeds) -> dict[str, np.ndarray]:
    """What a conditional ``sample`` must return for (labels, seeds), from the Keras model."""
    eps, u = row_draws(seeds, int(model.latent_dim))
    expected = {"z": eps}
    if model.prior_name != "normal":
        z, component = sample_from_noise(model.prior_parameters(), eps, u)
        expected = {"z": np.asarray(z), "component": np.asarray(component)}
    expected["x_mean"] = np.asarray(model.decode(expected["z"], labels))
    return expected


def numpy_mixture_sample(model, eps: np.ndarray, u: np.ndarray):
    """(z, component) in NumPy from the Keras prior's parameters: c = #{j < K-1: u >= cdf_j},
    z = loc[c] + scale[c] * eps."""
    log_weights, loc, scale = (np.asarray(t) for t in model.prior_parameters())
    cdf = np.cumsum(np.exp(log_weights), dtype=np.float32)[:-1]
    component = (u[:, np.newaxis] >= cdf).sum(axis=1)
    return loc[component] + scale[component] * eps, component


def keras_posterior(model, x, noise) -> dict[str, np.ndarray]:
    """What ``posterior_sample`` must return: `model.posterior_layer.sample` on the encoder."""
    z_mean, z_stddev, context = model.encode_all(tf.constant(x))
    z, log_q = model.posterior_layer.sample(z_mean, z_stddev, noise[np.newaxis], context)
    return {"z": z[0], "log_q": log_q[0], "z_mean": z_mean, "z_stddev": z_stddev}


def keras_outputs(model, x, labels, noise, z) -> dict[str, np.ndarray]:
    """The encoder's and the decoder's signatures' outputs from the Keras API,
    'signature/output' (`labels` None for an unconditional model)."""
    z_mean, z_stddev = model.encode(x, labels)
    if model.conditional:
        drawn_z, log_q = model.posterior_sample(x, noise=noise, labels=labels)
        posterior = {"z": drawn_z, "log_q": log_q, "z_mean": z_mean, "z_stddev": z_stddev}
    else:
        posterior = keras_posterior(model, x, noise)
    return {
        "serving_default/z_mean": z_mean,
        "serving_default/z_stddev": z_stddev,
        **{f"posterior_sample/{key}": value for key, value in posterior.items()},
        "serving_default/x_mean": model.decode(z, labels),
    }


def signature_feeds(x, labels, noise, z) -> dict:
    """{(part, signature): feed} of the encoder's and the decoder's per-row signatures."""
    label = {} if labels is None else {"label": labels}
    return {
        ("encoder", "serving_default"): {"x": x, **label},
        ("encoder", "posterior_sample"): {"x": x, **label, "noise": noise},
        ("decoder", "serving_default"): {"z": z, **label},
    }


def run_sample(signature, labels, seeds) -> dict[str, np.ndarray]:
    labels, seeds = np.asarray(labels, np.int32), np.asarray(seeds, np.int64)
    out = signature(label=tf.constant(labels), seed=tf.constant(seeds))
    return {key: value.numpy() for key, value in out.items()}


def assert_same_rows(got: dict, expected: dict) -> None:
    """z and component bit for bit (each row's own draws), x_mean to 1e-6 (a matrix product
    of another batch size may round its last bit differently)."""
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if key == "x_mean":
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def convert_unguarded(model, key: str, function, specs, folder: Path) -> bytes:
    """The LiteRT file of `function` as the endpoint `key` of an archive tracking the
    decoder, converted without the export's guards."""
    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(key, function, specs)
    archive.write_out(str(folder), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[key])
    return converter.convert()


# ---------------------------------------------------------------------------- the parts bite
@over(CONDITIONAL)
def test_the_label_changes_every_output(exported):
    """Another label moves z_mean, z_stddev and x_mean by far more than the 1e-5 the checks
    allow, so an export that dropped or mixed up the label fails them."""
    x, labels, _, z = inputs(0, 4, CONDITIONAL_LATENT)
    model = exported.model
    other = (labels + 1) % K
    for a, b in zip(model.encode(x, labels), model.encode(x, other)):
        assert np.abs(np.asarray(a) - np.asarray(b)).mean() > 1e-2
    moved = np.abs(np.asarray(model.decode(z, labels)) - np.asarray(model.decode(z, other)))
    assert moved.mean() > 1e-2


def test_the_random_part_weights_make_every_part_matter(exports):
    """The flow is not the identity and the mixture weights are not equal, so every check
    below would fail for an export that dropped the flow or the weights."""
    x, _, noise, _ = inputs(0, 4, FAMILY_LATENT)
    for name in ("iaf-normal", "iaf-mixture"):
        got = keras_posterior(exports[name].model, x, noise)
        gaussian = got["z_mean"] + got["z_stddev"] * noise
        assert np.abs(np.asarray(got["z"]) - gaussian).mean() > 0.01
    weights = np.exp(np.asarray(exports["iaf-mixture"].model.prior_parameters().log_weights))
    assert weights.max() - weights.min() > 0.3


# ---------------------------------------------------------------------------- SavedModels
def test_signatures_of_every_kind(exported):
    model, folder = exported.model, exported.folder
    f32 = "float32"
    latent = {"dtype": f32, "shape": [-1, model.latent_dim]}
    x = {"dtype": f32, "shape": [-1, *DATA_SHAPE]}
    label_spec = {"dtype": "int32", "shape": [-1]}
    label = {"label": label_spec} if model.conditional else {}
    encoder = signature_io(folder / "encoder" / "1")
    assert sorted(encoder) == ["posterior_sample", "serving_default"]
    assert encoder["serving_default"]["inputs"] == {"x": x, **label}
    assert encoder["serving_default"]["outputs"] == {"z_mean": latent, "z_stddev": latent}
    assert encoder["posterior_sample"]["inputs"] == {"x": x, **label, "noise": latent}
    assert encoder["posterior_sample"]["outputs"] == {
        "z": latent,
        "log_q": {"dtype": f32, "shape": [-1]},
        "z_mean": latent,
        "z_stddev": latent,
    }
    decoder = signature_io(folder / "decoder" / "1")
    assert sorted(decoder) == ["generate", "sample", "serving_default"]
    assert decoder["serving_default"]["inputs"] == {"z": latent, **label}
    if model.conditional:
        assert decoder["sample"]["inputs"] == {
            "label": label_spec,
            "seed": {"dtype": "int64", "shape": [-1]},  # batched: TF Serving can merge them
        }
    else:
        assert sorted(decoder["sample"]["inputs"]) == ["num_samples", "seed"]
    outputs = decoder["sample"]["outputs"]
    if model.prior_name != "normal":
        assert outputs.pop("component") == label_spec
    assert sorted(outputs) == ["x_mean", "z"]
    assert outputs.pop("z") == latent
    assert outputs.pop("x_mean") == {"dtype": f32, "shape": [-1, *DATA_SHAPE]}


def test_saved_models_equal_keras(exported):
    """Every per-row signature equals the Keras model (to `assert_scaled_close`); an
    unconditional ``posterior_sample`` gives the encoder's z_mean and z_stddev bit for bit."""
    model, saved = exported.model, exported.saved
    for batch in (1, 5):
        x, labels, noise, z = inputs(batch, batch, model.latent_dim)
        labels = labels if model.conditional else None
        expected = keras_outputs(model, x, labels, noise, z)
        for (part, key), feed in signature_feeds(x, labels, noise, z).items():
            got = saved[part].signatures[key](**{k: tf.constant(v) for k, v in feed.items()})
            for output, value in got.items():
                assert_scaled_close(value, expected[f"{key}/{output}"], f"{key} {output}")
        if not model.conditional:
            got = saved["encoder"].signatures["posterior_sample"](
                x=tf.constant(x), noise=tf.constant(noise)
            )
            z_mean, z_stddev = model.encode(x)
            np.testing.assert_array_equal(got["z_mean"], z_mean)
            np.testing.assert_array_equal(got["z_stddev"], z_stddev)


@over(CONDITIONAL)
def test_sample_is_a_pure_function_of_each_rows_label_and_seed(exported):
    """Rows of (label, seed) over the whole int64 range equal the Keras model's, twice
    bit-identically; [r1, r2] equals [r1] and [r2] run apart, a row of a batch of 5 equals
    itself alone, one seed gives one z whatever the label, and the rows differ."""
    labels = np.array([0, 1, 2, 2, 0, 1], np.int32)
    model = exported.model
    sample = exported.saved["decoder"].signatures["sample"]
    got = run_sample(sample, labels, SEEDS)
    expected = keras_sample(model, labels, SEEDS)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=TOL, err_msg=key)
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


@over(FAMILIES)
def test_decoder_sample_draws_from_the_baked_prior(exported):
    n, seed = 64, 5
    eps, u = prior_draws(n, seed)
    model, sample = exported.model, exported.saved["decoder"].signatures["sample"]
    got = sample(num_samples=tf.constant(n), seed=tf.constant(seed))
    z = got["z"].numpy()
    if model.prior_name != "normal":
        component = got["component"].numpy()
        assert got["component"].dtype == tf.int32
        assert component.min() >= 0 and component.max() < K
        assert len(set(component.tolist())) == K  # 64 draws reach every component
        expected_z, expected_component = numpy_mixture_sample(model, eps, u)
        np.testing.assert_array_equal(component, expected_component)
        np.testing.assert_allclose(z, expected_z, rtol=0, atol=TOL)
        baked, live = baked_prior(model), model.prior_parameters()
        for constant, value in zip(baked, live):
            np.testing.assert_array_equal(constant, value)
    else:
        assert "component" not in got
        np.testing.assert_array_equal(z, eps)  # bit-identical to the pre-parts export
    np.testing.assert_allclose(got["x_mean"], model.decode(z), rtol=0, atol=TOL)
    again = sample(num_samples=tf.constant(n), seed=tf.constant(seed))
    for key, value in got.items():
        np.testing.assert_array_equal(again[key], value)


def test_sample_can_be_empty_and_is_capped(exports):
    sample = exports["conditional-iaf-vamp"].saved["decoder"].signatures["sample"]
    cap = MAX_SAMPLES[True]
    empty = run_sample(sample, np.zeros(0, np.int32), np.zeros(0, np.int64))
    assert empty["z"].shape == (0, CONDITIONAL_LATENT) and empty["x_mean"].shape == (0, *DATA_SHAPE)

    def rows(n: int) -> np.ndarray:
        return np.arange(n) % K

    assert run_sample(sample, rows(cap), rows(cap))["z"].shape[0] == cap
    pattern = rf"<= {cap} rows.*max_samples_per_request"
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        run_sample(sample, rows(cap + 1), rows(cap + 1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per row"):
        run_sample(sample, rows(2), rows(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per row"):
        run_sample(sample, rows(3), rows(2))


@pytest.mark.parametrize("bad", [K, -1])
def test_out_of_range_labels_fail_in_every_saved_model_signature(exports, bad):
    """A label of K or -1 in any row fails with InvalidArgumentError naming K: never the zero
    one-hot row that would decode as no class at all."""
    x, labels, noise, z = inputs(3, 3, CONDITIONAL_LATENT)
    labels = labels.copy()
    labels[1] = bad
    feeds = signature_feeds(x, labels, noise, z)
    feeds["decoder", "sample"] = {"label": labels, "seed": np.arange(3, dtype=np.int64)}
    pattern = re.escape(
        f"labels must be class indices in [0, {K}) (this model has num_classes={K})"
    )
    for name in CONDITIONAL:
        for (part, key), feed in feeds.items():
            signature = exports[name].saved[part].signatures[key]
            with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
                signature(**{k: tf.constant(v) for k, v in feed.items()})


def test_label_batches_of_another_size_fail(exports):
    x, labels, noise, z = inputs(4, 3, CONDITIONAL_LATENT)
    signatures = exports["conditional-gaussian-normal"].saved
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


def test_the_export_checks_refuse_a_decoder_that_swaps_labels(exports, tmp_path):
    """check_decoder compares with Keras per label: a decoder SavedModel of another model
    (the same weights but for the label's) fails it."""
    model = exports["conditional-gaussian-normal"].model
    other = kind_of("conditional-gaussian-normal")
    for weight in other.decoder.weights:
        if "hidden_0" in weight.path and "kernel" in weight.path:
            value = weight.numpy()
            value[CONDITIONAL_LATENT:] = value[CONDITIONAL_LATENT:][::-1]  # the one-hot's rows
            weight.assign(value)
    cap = MAX_SAMPLES[True]
    saved_model.write_decoder(other, tmp_path / "decoder", max_samples=cap)
    with pytest.raises(ExportError, match="differs from the Keras model"):
        saved_model_checks.check_decoder(model, tmp_path / "decoder", max_samples=cap)


BAD_POSTERIOR_INPUTS = {
    "fewer noise rows": ((3, *DATA_SHAPE), (2, FAMILY_LATENT), "one noise row per example"),
    "more noise rows": ((2, *DATA_SHAPE), (3, FAMILY_LATENT), "one noise row per example"),
    "noise too wide": ((2, *DATA_SHAPE), (2, FAMILY_LATENT + 1), "Shape of tensor noise"),
    "noise a vector": ((1, *DATA_SHAPE), (FAMILY_LATENT,), "Shape of tensor noise"),
    "x flattened": ((2, 64), (2, FAMILY_LATENT), "Shape of tensor x"),
}


@pytest.mark.parametrize("case", sorted(BAD_POSTERIOR_INPUTS))
def test_posterior_sample_refuses_bad_inputs(exports, case):
    x_shape, noise_shape, pattern = BAD_POSTERIOR_INPUTS[case]
    signature = exports["iaf-mixture"].saved["encoder"].signatures["posterior_sample"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        signature(x=tf.zeros(x_shape), noise=tf.zeros(noise_shape))


def test_decoder_sample_follows_the_mixture_weights(exports):
    """20,000 draws: component counts against softmax(logits) (chi-square, and each within 4
    binomial standard errors), and z given each component with the component's mean."""
    n = MAX_SAMPLES[False]
    for name in MIXTURES:
        model, _, saved = exports[name]
        got = saved["decoder"].signatures["sample"](
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
@pytest.mark.parametrize("group", ["family", "conditional"])
def test_a_process_with_only_tensorflow_runs_every_signature(exports, runs, group, tmp_path):
    """Every signature of every kind of the group (and of its real run's export), through
    `tf.saved_model.load` and through a Session fed by the SignatureDefs, in a process that
    cannot import keras_vae, equals Keras to 1e-5; a conditional export refuses an
    out-of-range label there."""
    conditional = group == "conditional"
    kinds = CONDITIONAL if conditional else FAMILIES
    folders = {name: exports[name].folder for name in kinds}
    models = {name: exports[name].model for name in kinds}
    models["run"], folders["run"] = runs[group]
    latent = SETTINGS[conditional]["latent_dim"]
    x, labels, noise, z = inputs(99, 5, latent)
    if conditional:
        seeds = SEEDS[:5]
        feed = {"x": x, "label": labels, "noise": noise, "z": z, "seed": seeds}
    else:
        labels = None
        z = np.random.default_rng(98).standard_normal((5, latent)).astype(np.float32)
        feed = {"x": x, "noise": noise, "z": z}
        eps, u = prior_draws(7, 11, latent)
    got = run_in_pure_tensorflow(folders, feed, tmp_path)
    for name, model in models.items():
        expected = keras_outputs(model, x, labels, noise, z)
        if conditional:
            sample = keras_sample(model, labels, seeds)
        elif model.prior_name == "normal":
            sample = {"z": eps}
        else:
            sample = dict(zip(("z", "component"), numpy_mixture_sample(model, eps, u)))
        if not conditional:
            sample["x_mean"] = model.decode(sample["z"])
        expected.update({f"sample/{key}": value for key, value in sample.items()})
        found = assert_pure_tensorflow_close(got, name, expected)
        if conditional:
            assert bool(got[f"refused/{name}"]), name
            continue
        for outputs in found.values():
            if model.prior_name == "normal":
                np.testing.assert_array_equal(outputs["sample/z"], eps)
            else:
                np.testing.assert_array_equal(outputs["sample/component"], sample["component"])


def test_export_json_records_the_parts_and_the_new_signatures(runs):
    model, folder = runs["family"]
    record = json.loads((folder / "export.json").read_text())
    assert record["model"] == {
        "data_shape": list(DATA_SHAPE),
        "latent_dim": FAMILY_LATENT,
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
            "noise": {"dtype": "float32", "shape": [-1, FAMILY_LATENT]},
            "uniform": {"dtype": "float32", "shape": [-1]},
        }
        assert sample["outputs"]["component"] == {"dtype": "int32", "shape": [-1]}
        refusals = 2 * len(litert_checks.wrong_latent_shapes(FAMILY_LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert entry["wrong_shapes_refused"] == refusals
    # The trained flow and weights moved off their start, so the export's checks had teeth.
    weights = np.exp(np.asarray(model.prior_parameters().log_weights))
    assert weights.max() - weights.min() > 0.01


def test_a_real_conditional_run_exports_with_num_classes(runs):
    model, folder = runs["conditional"]
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
        per_signature = len(litert_checks.wrong_latent_shapes(CONDITIONAL_LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert entry["wrong_shapes_refused"] == 2 * (per_signature + len(bad_labels(10)))
    assert "labels spread over [0, 10)" in record["tflite"]["checked_on"]
    # One image per class: the trained decoder tells the classes apart.
    z = np.zeros((10, CONDITIONAL_LATENT), np.float32)
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
        client.decode(np.zeros((1, CONDITIONAL_LATENT)), labels=[0])


# ---------------------------------------------------------------------------- LiteRT
def test_tflite_files_use_builtin_ops_only(exported):
    model, folder = exported.model, exported.folder
    label = {"dtype": "int32", "shape": [-1]}
    for file_name in FILES:
        content = (folder / "tflite" / file_name).read_bytes()
        ops = litert_checks.operators(content)  # ExportError on any custom or Flex op
        assert "WHERE" in ops and "GATHER" in ops, (file_name, ops)
        if not model.conditional and model.prior_name != "normal":
            assert {"BITCAST", "GREATER_EQUAL", "SUM"} <= set(ops), ops  # the bit-pattern tables
        if not model.conditional:
            continue
        assert "ONE_HOT" in ops, (file_name, ops)
        signatures = litert_checks.describe_signatures(litert_checks.interpreter(content))
        assert signatures["decode"]["inputs"]["label"] == label
        assert signatures["sample"]["inputs"]["label"] == label
        expected = ["label", "noise"] + (["uniform"] if model.prior_name != "normal" else [])
        assert sorted(signatures["sample"]["inputs"]) == expected


def test_tflite_sample_and_decode_equal_the_saved_model(exported):
    """LiteRT ``sample`` on the SavedModel's eps (and u; per row for a conditional kind, with
    the same labels) gives the SavedModel's ``sample``: z and component exactly (to 1e-5) in
    every file, x_mean to 1e-5 in the float32 file, twice the same; ``decode`` likewise
    against ``serving_default`` and Keras."""
    model, folder = exported.model, exported.folder
    signatures = exported.saved["decoder"].signatures
    labels = None
    if model.conditional:
        labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
        eps, u = row_draws(SEEDS)
        served = run_sample(signatures["sample"], labels, SEEDS)
    else:
        n, seed = 32, 77
        eps, u = prior_draws(n, seed)
        served = signatures["sample"](num_samples=tf.constant(n), seed=tf.constant(seed))
    label = {} if labels is None else {"label": labels}
    decoded = signatures["serving_default"](
        z=tf.constant(eps), **{k: tf.constant(v) for k, v in label.items()}
    )
    decoded = decoded["x_mean"].numpy()
    np.testing.assert_allclose(decoded, model.decode(eps, labels), rtol=0, atol=TOL)
    for file_name, interp in interpreters(folder).items():
        tolerance = X_MEAN_TOLERANCE[file_name]
        runner = interp.get_signature_runner("sample")
        feed = {"noise": eps, **label}
        if model.prior_name != "normal":
            feed["uniform"] = u
        got = runner(**feed)
        assert sorted(got) == sorted(served), file_name
        if model.prior_name != "normal":
            np.testing.assert_array_equal(got["component"], served["component"])
            assert got["component"].dtype == np.int32
        else:
            assert "component" not in got
        np.testing.assert_allclose(got["z"], served["z"], rtol=0, atol=TOL)
        np.testing.assert_allclose(got["x_mean"], served["x_mean"], rtol=0, atol=tolerance)
        assert not np.isnan(got["x_mean"]).any()
        again = runner(**feed)
        for key, value in got.items():
            np.testing.assert_array_equal(again[key], value)
        from_decode = interp.get_signature_runner("decode")(z=eps, **label)["x_mean"]
        np.testing.assert_allclose(from_decode, decoded, rtol=0, atol=tolerance)


def test_tflite_components_equal_tensorflow_at_the_cdf_boundaries(exports):
    """At each cdf value, the float32 just below and just above it, 0, -0.0, 1 and beyond
    [0, 1): the bit-pattern comparison of every LiteRT file picks the component
    `sample_from_noise` picks."""
    for name in MIXTURES:
        model, folder, _ = exports[name]
        params = model.prior_parameters()
        cdf = np.asarray(tf.cumsum(tf.exp(params.log_weights))[:-1], np.float32)
        up, down = np.float32(np.inf), np.float32(-np.inf)
        u = np.concatenate(
            [cdf, np.nextafter(cdf, down), np.nextafter(cdf, up), [0.0, -0.0, 1.0, -0.5, 1.5]]
        ).astype(np.float32)
        eps = np.random.default_rng(4).standard_normal((len(u), FAMILY_LATENT))
        eps = eps.astype(np.float32)
        z, component = sample_from_noise(params, eps, u)
        assert len(set(np.asarray(component).tolist())) == K
        for file_name, interp in interpreters(folder).items():
            got = interp.get_signature_runner("sample")(noise=eps, uniform=u)
            np.testing.assert_array_equal(got["component"], component, err_msg=file_name)
            np.testing.assert_allclose(got["z"], z, rtol=0, atol=TOL, err_msg=file_name)


def test_tflite_refuses_out_of_range_labels_and_recovers(exports):
    """A label of K or -1 (or the int32 ends) in one row makes the run fail in every file
    and both signatures, never an output; the next good run works."""
    folder = exports["conditional-iaf-vamp"].folder
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
        refused = litert_checks.check_rejects_wrong_rank(interp, CONDITIONAL_LATENT, file_name, K)
        label_cases = len(litert_checks.wrong_uniform_shapes()) + len(bad_labels(K))
        latent_cases = len(litert_checks.wrong_latent_shapes(CONDITIONAL_LATENT))
        # decode: z and label; sample: noise, label and uniform.
        assert refused == 2 * (latent_cases + label_cases) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert sample(noise=eps, label=good, uniform=u)["z"].shape == (4, CONDITIONAL_LATENT)


def test_tflite_sample_refuses_uniforms_that_are_not_one_per_noise_row(exports):
    """Other ranks (a scalar, [n, 1], [1, n], [1, 1, n]) and other row counts (one off, one
    row against n, n rows against one), in every file, fail instead of running; the
    interpreter then still samples."""
    folder = exports["gaussian-vamp"].folder
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
            assert runner(noise=eps, uniform=u)["z"].shape == (4, FAMILY_LATENT)
        refused = litert_checks.check_rejects_wrong_rank(interp, FAMILY_LATENT, file_name)
        expected = 2 * len(litert_checks.wrong_latent_shapes(FAMILY_LATENT)) + len(
            litert_checks.wrong_uniform_shapes()
        )
        assert refused == expected


def test_a_tflite_decoder_without_the_label_guard_never_passes(exports, tmp_path):
    """Converted with the shape checks but without `exact_labels`' table, ``decode`` runs label
    K (ONE_HOT gives a zero row: no class at all) and the export check refuses the file."""
    model = exports["conditional-gaussian-normal"].model
    latent = CONDITIONAL_LATENT

    def decode(z, label):
        z = litert_ops.exact_latents(z, latent)
        label = litert_ops.exact_uniform(label, tf.shape(z)[0])  # rank and rows, not the range
        return {"x_mean": model.decode(z, label, training=False)}

    specs = [
        tf.TensorSpec([None, latent], tf.float32, name="z"),
        tf.TensorSpec([None], tf.int32, name="label"),
    ]
    content = convert_unguarded(model, "decode", decode, specs, tmp_path / "unguarded")
    interp = litert_checks.interpreter(content)
    z = np.zeros((2, latent), np.float32)
    ran = interp.get_signature_runner("decode")(z=z, label=np.array([0, K], np.int32))
    assert ran["x_mean"].shape == (2, *DATA_SHAPE)  # what the guard exists to stop
    with pytest.raises(ExportError, match=r"ran on label values .* in \[0, 3\)"):
        litert_checks.check_rejects_wrong_rank(interp, latent, num_classes=K)
    with pytest.raises(ValueError, match="pass num_classes"):
        litert_checks.check_rejects_wrong_rank(interp, latent)


def test_a_sample_without_the_uniform_guard_never_passes(exports, tmp_path):
    """A mixture ``sample`` converted without `exact_uniform` runs a [n, 1] or one-row
    uniform (it broadcasts), and the export check refuses the file."""
    model = exports["gaussian-vamp"].model
    tables = litert_ops.mixture_tables(LatentMixture.of_prior(baked_prior(model)))

    def sample(noise, uniform):
        noise = litert_ops.exact_latents(noise, FAMILY_LATENT)
        z, component = litert_ops.sample_from_tables(tables, noise, uniform)
        return {"x_mean": model.decode(z, training=False), "z": z, "component": component}

    specs = [
        tf.TensorSpec([None, FAMILY_LATENT], tf.float32, name="noise"),
        tf.TensorSpec([None], tf.float32, name="uniform"),
    ]
    content = convert_unguarded(model, "sample", sample, specs, tmp_path / "unguarded")
    with pytest.raises(ExportError, match=r"ran on uniform of shape .* it takes \[n\]"):
        litert_checks.check_rejects_wrong_rank(litert_checks.interpreter(content), FAMILY_LATENT)


# ---------------------------------------------------------------------------- the client
@pytest.fixture(scope="module")
def server(runs):
    """A `FakeModelServer` (tests/serving_fakes.py) on the real conditional export."""
    with serving(runs["conditional"][1]) as fake:
        yield fake


@pytest.fixture(scope="module")
def servers(exports):
    """A `FakeModelServer` on the iaf-mixture and gaussian-normal exports: {kind: server with
    .rest_port and .grpc_port}."""
    with contextlib.ExitStack() as stack:
        names = ("iaf-mixture", "gaussian-normal")
        yield {name: stack.enter_context(serving(exports[name].folder)) for name in names}


@CLIENT_PROTOCOLS
def test_client_calls_with_labels_equal_keras(runs, server, protocol, rest_format):
    model, _ = runs["conditional"]
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(3, *DATA_SHAPE)).astype(np.float32)
    labels = np.array([7, 0, 9])
    noise = rng.standard_normal((3, CONDITIONAL_LATENT)).astype(np.float32)
    with client_for(server, protocol, from_export=True, rest_format=rest_format) as client:
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


BAD_LABEL_CALLS = {
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


@pytest.mark.parametrize("case", sorted(BAD_LABEL_CALLS))
def test_client_validates_labels_before_sending(server, case):
    method, kwargs, message = BAD_LABEL_CALLS[case]
    server.requests.clear()
    x, _, noise, z = inputs(1, 2, CONDITIONAL_LATENT)
    args = {"encode": (x,), "decode": (z,), "posterior_sample": (x, noise), "sample": ()}[method]
    client = client_for(server, "rest", from_export=True)
    with client, pytest.raises(ValueError, match=re.escape(message)):
        getattr(client, method)(*args, **kwargs)
    assert server.requests == []


def test_a_client_that_does_not_know_k_lets_the_server_refuse(server):
    """Without export.json's K the client still refuses negative labels; label 10 goes to the
    server, whose InvalidArgumentError comes back naming K."""
    client = ServingClient(
        "127.0.0.1",
        rest_port=server.rest_port,
        data_shape=DATA_SHAPE,
        latent_dim=CONDITIONAL_LATENT,
    )
    assert client.num_classes is None
    with client:
        with pytest.raises(ValueError, match="integer class indices >= 0"):
            client.decode(np.zeros((1, CONDITIONAL_LATENT)), labels=[-1])
        with pytest.raises(ServingError, match=r"HTTP 400.*num_classes=10"):
            client.decode(np.zeros((1, CONDITIONAL_LATENT)), labels=[10])


def conditional_curl_commands() -> list[str]:
    """The serving README's curl commands for a conditional export (its ```sh blocks)."""
    text = SERVING_README.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if "curl" in line and '"label"' in line]


def test_the_serving_readme_asks_a_conditional_decoder_for_three_sevens(runs, server):
    """The README's request runs against the stand-in server on the real conditional export:
    three images of class 7, the same on every request, equal to Keras's."""
    model, _ = runs["conditional"]
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
            sent = request["inputs"]
            assert sent["label"] == [7, 7, 7]
            expected = keras_sample(model, np.array(sent["label"]), sent["seed"])
            np.testing.assert_allclose(outputs["x_mean"], expected["x_mean"], rtol=0, atol=TOL)
            np.testing.assert_allclose(outputs["z"], expected["z"], rtol=0, atol=TOL)
            assert np.asarray(outputs["x_mean"]).shape == (3, *DATA_SHAPE)


@CLIENT_PROTOCOLS
def test_client_posterior_sample_and_components(exports, servers, protocol, rest_format):
    mixture = exports["iaf-mixture"]
    x, _, noise, _ = inputs(7, 3, FAMILY_LATENT)
    with client_for(servers["iaf-mixture"], protocol, rest_format=rest_format) as client:
        drawn = client.posterior_sample(x, noise)
        for key, value in keras_posterior(mixture.model, x, noise).items():
            assert_scaled_close(getattr(drawn, key), value, err_msg=key)
        assert drawn.log_q.shape == (3,) and drawn.z.dtype == np.float32
        samples = client.sample(6, seed=9)
        x_mean, z = samples  # unpacks as before
        served = mixture.saved["decoder"].signatures["sample"](
            num_samples=tf.constant(6), seed=tf.constant(9)
        )
        np.testing.assert_array_equal(samples.component, served["component"])
        assert samples.component.dtype == np.int32 and samples.component.shape == (6,)
        np.testing.assert_array_equal(z, served["z"])
        np.testing.assert_array_equal(x_mean, served["x_mean"])
    with client_for(servers["gaussian-normal"], protocol, rest_format=rest_format) as client:
        samples = client.sample(4, seed=9)
        assert samples.component is None
        expected = tf.random.stateless_normal([4, FAMILY_LATENT], [9, 0])
        np.testing.assert_array_equal(samples.z, expected)


BAD_POSTERIOR_CALLS = {
    "fewer noise rows": ((3, *DATA_SHAPE), np.zeros((2, FAMILY_LATENT)), "2 rows but `x` has 3"),
    "noise too wide": ((2, *DATA_SHAPE), np.zeros((2, FAMILY_LATENT + 1)), "`noise` has shape"),
    "noise NaN": ((1, *DATA_SHAPE), np.full((1, FAMILY_LATENT), np.nan), "NaN"),
    "x wrong shape": ((1, 64), np.zeros((1, FAMILY_LATENT)), "`x` has shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_POSTERIOR_CALLS))
def test_client_posterior_sample_validates_before_sending(servers, case):
    x_shape, noise, message = BAD_POSTERIOR_CALLS[case]
    server = servers["iaf-mixture"]
    server.requests.clear()
    client = client_for(server, data_shape=DATA_SHAPE, latent_dim=FAMILY_LATENT)
    with client, pytest.raises(ValueError, match=re.escape(message)):
        client.posterior_sample(np.zeros(x_shape), noise)
    assert server.requests == []


def test_client_refuses_a_malformed_component(servers):
    server = servers["iaf-mixture"]

    def negative(payload):
        payload["outputs"]["component"] = [-1] * len(payload["outputs"]["component"])
        return payload

    server.tamper["rest", "predict"] = negative
    try:
        client = client_for(server, data_shape=DATA_SHAPE, latent_dim=FAMILY_LATENT)
        with client, pytest.raises(ServingError, match=r"output 'component' holds values"):
            client.sample(3, seed=0)
    finally:
        server.tamper.clear()
