"""The speed work must not change the numbers: fast paths against their references.

benchmarks/throughput.py measures the speed; these tests check that each thing that made
training faster computes exactly what it replaced (no timing assertions here):

- the closed-form log-likelihood against TFP's `log_prob` and SciPy;
- the index-gather input pipeline against tf.data's per-example shuffle;
- naming the Philox RNG against the default algorithm, with and without XLA;
- several steps per execution against one, and a train step with no Python in it.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from keras_vae import distributions, execution
from keras_vae.config import DataConfig, TrainingConfig
from keras_vae.data import load_splits, make_datasets, to_unit_interval
from keras_vae.model import VAE
from keras_vae.noise import RNG_ALG

F32_EPS = float(np.finfo(np.float32).eps)


def sum_tolerance(terms: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Bound on the float32 rounding of a sum of `terms` over `axes`: n * eps * sum |term|
    (each of n additions rounds by at most eps relative to the running sum), plus eps for
    each term's own evaluation."""
    n = math.prod(terms.shape[a] for a in axes)
    return (n + 4) * F32_EPS * np.sum(np.abs(terms), axis=axes) + 1e-6


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_log_likelihood_matches_tfp_and_scipy(binary):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(3, 5, 7, 6)).astype(np.float32)  # [L, batch, H, W]
    x = rng.uniform(size=(5, 7, 6)).astype(np.float32)  # broadcast over L
    if binary:
        x = (x < 0.3).astype(np.float32)
    fast = distributions.log_likelihood("bernoulli", tf.constant(logits), x, event_ndims=2)
    reference = distributions.likelihood("bernoulli", tf.constant(logits), 2).log_prob(x)
    assert fast.shape == reference.shape == (3, 5)
    # Independent reference in float64: x log p + (1 - x) log(1 - p), p = sigmoid(logits).
    l64 = logits.astype(np.float64)
    terms = x * -np.logaddexp(0, -l64) + (1 - x) * -np.logaddexp(0, l64)
    if binary:
        terms = scipy.stats.bernoulli.logpmf(np.broadcast_to(x, l64.shape), 1 / (1 + np.exp(-l64)))
    expected = terms.sum(axis=(-2, -1))
    tolerance = sum_tolerance(terms, (-2, -1))
    np.testing.assert_array_less(np.abs(fast.numpy() - expected), tolerance)
    np.testing.assert_array_less(np.abs(reference.numpy() - expected), tolerance)


@pytest.mark.parametrize("learned", [True, False])
def test_gaussian_log_likelihood_matches_tfp_and_scipy(learned):
    rng = np.random.default_rng(1)
    mean = rng.uniform(size=(4, 10)).astype(np.float32)
    scale = rng.uniform(0.05, 2.0, size=(4, 10)).astype(np.float32) if learned else 0.3
    x = rng.uniform(size=(4, 10)).astype(np.float32)
    fast = distributions.log_likelihood("gaussian", tf.constant(mean), x, 1, scale)
    reference = distributions.likelihood("gaussian", tf.constant(mean), 1, scale).log_prob(x)
    terms = scipy.stats.norm.logpdf(x, loc=mean, scale=np.asarray(scale, np.float64))
    expected, tolerance = terms.sum(axis=-1), sum_tolerance(terms, (-1,))
    np.testing.assert_array_less(np.abs(fast.numpy() - expected), tolerance)
    np.testing.assert_array_less(np.abs(reference.numpy() - expected), tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_softplus_and_its_gradient_match_float64_references(dtype, jit_compile):
    """Under XLA on a CPU, log(1 + e) in place of log1p(e) costs at most an ulp of 1 absolute;
    the gradient is the sigmoid in every branch (0.5 at 0, no NaN from the branches not
    taken). Without XLA it is `tf.nn.softplus`, bit for bit."""
    eps = float(np.finfo(dtype).eps)
    high = -(math.log(eps) + 2.0)
    logits = np.concatenate(
        [np.linspace(-120, 120, 4801), [0.0, high, -high, 1e4, -1e4, 700.0, -700.0]]
    ).astype(dtype)

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = distributions.softplus(x)
        return y, tape.gradient(y, x)

    value, gradient = (t.numpy() for t in value_and_gradient(tf.constant(logits)))
    if not jit_compile:
        np.testing.assert_array_equal(value, tf.nn.softplus(logits).numpy())
    exact = np.logaddexp(0.0, logits.astype(np.float64))
    np.testing.assert_allclose(value, exact, rtol=2 * eps, atol=eps)
    sigmoid = scipy.special.expit(logits.astype(np.float64))
    # A few ulps; below -high, exp(l) is the sigmoid to within exp(-high) = e^2 eps relative
    np.testing.assert_allclose(gradient, sigmoid, rtol=12 * eps, atol=np.finfo(dtype).tiny)
    assert gradient[np.flatnonzero(logits == 0.0)[0]] == pytest.approx(0.5, abs=eps)
    special = value_and_gradient(tf.constant([np.nan, np.inf, -np.inf], dtype))[0].numpy()
    np.testing.assert_array_equal(special, [np.nan, np.inf, 0.0])


def test_bernoulli_log_likelihood_under_xla_has_no_log1p():
    """The reason for `distributions.softplus`: XLA's CPU log1p took the IWAE k=50 step's
    log-likelihood and gradient from 1.2 to 2.1 ms; a return to it would show here."""
    logits = tf.random.stateless_normal([5, 4, 6], seed=[1, 2])
    x = tf.cast(tf.random.stateless_uniform([4, 6], seed=[3, 4]) < 0.5, tf.float32)

    @tf.function(jit_compile=True)
    def loss_and_gradient(logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_sum(distributions.log_likelihood("bernoulli", logits, x, 1))
        return loss, tape.gradient(loss, logits)

    hlo = loss_and_gradient.experimental_get_compiler_ir(logits)(stage="optimized_hlo")
    assert "log-plus-one" not in hlo
    assert " log(" in hlo  # the log(1 + e) that replaced it


def test_log_likelihood_rejects_unknown_names_and_missing_scale():
    with pytest.raises(ValueError, match="Unknown likelihood 'bernouli'"):
        distributions.log_likelihood("bernouli", tf.zeros([2, 3]), tf.zeros([2, 3]), 1)
    with pytest.raises(ValueError, match="needs a `scale`"):
        distributions.log_likelihood("gaussian", tf.zeros([2, 3]), tf.zeros([2, 3]), 1)


def test_model_loss_uses_the_same_log_likelihood_as_its_distribution():
    vae = VAE(data_shape=(6, 5), latent_dim=3, hidden_units=(16,))
    x = tf.constant(np.random.default_rng(2).uniform(size=(4, 6, 5)), tf.float32)
    z = tf.random.stateless_normal([2, 4, 3], seed=[1, 2])
    fast = vae.log_likelihood_given_z(x, z)
    reference = vae.likelihood_from_z(z).log_prob(x)
    np.testing.assert_allclose(fast.numpy(), reference.numpy(), rtol=30 * F32_EPS, atol=1e-5)


def per_example_batches(images, labels, batch_size, seed, epochs):
    """The reference pipeline: shuffle examples, then batch (what make_datasets replaced)."""
    data = images if labels is None else (images, labels)
    dataset = tf.data.Dataset.from_tensor_slices(data)
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return [list(dataset.as_numpy_iterator()) for _ in range(epochs)]


@pytest.mark.parametrize("with_labels", [True, False])
def test_gather_pipeline_yields_the_per_example_shuffle_batches(tmp_path, with_labels):
    if with_labels:
        dataset, splits = "digits", load_splits("digits")
    else:
        images = np.random.default_rng(3).integers(0, 256, size=(150, 4, 3), dtype=np.uint8)
        dataset = str(tmp_path / "images.npz")
        np.savez(dataset, images=images)
        splits = load_splits(dataset)
    train, test, info = make_datasets(DataConfig(dataset), batch_size=32, seed=5)
    train_split = splits["train"]
    expected = per_example_batches(train_split.images, train_split.labels, 32, 5, epochs=2)
    for epoch in range(2):  # a new permutation per epoch, the same as the reference's
        got = list(train.as_numpy_iterator())
        assert len(got) == len(expected[epoch]) == info.num_train // 32
        for ours, theirs in zip(got, expected[epoch]):
            ours_x = ours[0] if with_labels else ours
            theirs_x = theirs[0] if with_labels else theirs
            np.testing.assert_array_equal(ours_x, to_unit_interval(theirs_x))
            if with_labels:
                np.testing.assert_array_equal(ours[1], theirs[1])
    test_x = np.concatenate([b[0] if with_labels else b for b in test.as_numpy_iterator()])
    np.testing.assert_array_equal(test_x, to_unit_interval(splits["test"].images))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_named_rng_algorithm_draws_the_default_numbers(jit_compile):
    def draw(alg):
        fn = tf.function(
            lambda seed: tf.random.stateless_normal([3, 64, 5], seed=seed, alg=alg),
            jit_compile=jit_compile,
        )
        return fn(tf.constant([11, 4])).numpy()

    np.testing.assert_array_equal(draw(RNG_ALG), draw("auto_select"))


def fit_weights(
    steps_per_execution: int, x: np.ndarray, steps_per_epoch: int | None = None
) -> tuple[list[np.ndarray], int]:
    keras.utils.set_random_seed(0)
    vae = VAE(data_shape=x.shape[1:], latent_dim=2, hidden_units=(8,), seed=3)
    vae.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        jit_compile=False,
        steps_per_execution=steps_per_execution,
    )
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(10, drop_remainder=True)
    vae.fit(dataset, epochs=2, steps_per_epoch=steps_per_epoch, verbose=0)
    return [w.numpy() for w in vae.trainable_weights], int(vae.optimizer.iterations)


def test_several_steps_per_execution_train_exactly_like_one():
    # 7 batches per epoch: an execution of 3 steps ends early in every epoch.
    x = np.random.default_rng(4).uniform(size=(75, 6)).astype(np.float32)
    one, one_steps = fit_weights(1, x)
    three, three_steps = fit_weights(3, x)
    counted, counted_steps = fit_weights(3, x, steps_per_epoch=7)  # as train_and_evaluate
    assert one_steps == three_steps == counted_steps == 2 * 7
    for a, b, c in zip(one, three, counted):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_train_step_runs_no_python():
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.optimizer.build(vae.trainable_variables)
    graph = (
        tf.function(vae.train_step)
        .get_concrete_function(tf.TensorSpec([16, 6], tf.float32))
        .graph.as_graph_def()
    )
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    assert {"MatMul", "AssignAddVariableOp"} <= ops  # the walk sees the step's ops
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def load_benchmark_common():
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("benchmarks_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_flop_count_matches_a_hand_count():
    common = load_benchmark_common()
    vae = VAE(data_shape=(28, 28), latent_dim=20, hidden_units=(400,))
    flops = common.training_flops_per_example(vae)
    encoder = 2 * (784 * 400 + 2 * 400 * 20)  # hidden layer, z_mean and z_stddev heads
    decoder = 2 * (20 * 400 + 400 * 784)
    assert flops["forward"] == encoder + decoder
    assert flops["train"] == 3 * (encoder + decoder) - 2 * 784 * 400
    assert flops["parameters"] == vae.count_params()
    conv = VAE(data_shape=(28, 28), latent_dim=20, architecture="conv")
    first_conv = 2 * 14 * 14 * 3 * 3 * 1 * 32  # stride 2, 'same': 14x14 outputs
    assert common.training_flops_per_example(conv)["train"] > first_conv
    assert common.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_step_matmuls_run_the_decoder_on_every_draw():
    """step_breakdown's matmul count for the IWAE k=50 step: the encoder on the batch, the
    decoder on batch x draws rows, by hand."""
    from helpers import load_benchmark_modules

    (throughput,) = load_benchmark_modules("throughput")
    vae = VAE(data_shape=(28, 28), latent_dim=50, hidden_units=(200, 200), num_samples=50)
    vae(tf.zeros([1, 28, 28]))
    shapes = throughput.step_matmuls(vae, 20, samples=50)
    flops = sum(2 * m * k * n for m, k, n in shapes)
    encoder = 784 * 200 + 200 * 200 + 2 * 200 * 50  # two hidden layers, z_mean and z_stddev
    decoder = 50 * 200 + 200 * 200 + 200 * 784
    input_gradients = 200 * 200 + 2 * 200 * 50  # the encoder's, but not its first layer's
    assert flops == 2 * (20 * (2 * encoder + input_gradients) + 1000 * 3 * decoder)
    assert throughput.step_matmuls(vae, 20) == throughput.step_matmuls(vae, 20, samples=1)


def test_the_ablations_tfp_likelihood_model_trains_to_the_same_loss():
    """throughput.py's "TFP log_prob" ablation row measures the same objective, and its model
    still takes every argument training passes (it broke once when fit began passing labels)."""
    from helpers import load_benchmark_modules

    (throughput,) = load_benchmark_modules("throughput")
    x = np.random.default_rng(3).uniform(size=(8, 6, 5)).astype("float32")
    losses, weights = [], None
    for cls in (VAE, throughput.TFPLikelihoodVAE):
        vae = cls(data_shape=(6, 5), latent_dim=3, hidden_units=(16,), seed=0)
        vae(x)  # built, then both start from the same weights
        weights = weights or vae.get_weights()
        vae.set_weights(weights)
        vae.compile(optimizer=keras.optimizers.SGD(0.1))
        history = vae.fit(x, batch_size=8, epochs=2, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][1] != losses[0][0]  # it trained


def test_auto_settings_resolve_to_the_measured_fastest():
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert vae.jit_compile is True  # the MLP: XLA even on CPU
    assert vae.steps_per_execution == execution.DEFAULT_STEPS_PER_EXECUTION > 1
    conv = VAE(data_shape=(8, 8), latent_dim=2, architecture="conv", hidden_units=(4,))
    conv.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert conv.jit_compile is bool(tf.config.list_logical_devices("GPU"))
    assert conv.steps_per_execution == execution.DEFAULT_STEPS_PER_EXECUTION
    explicit = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    explicit.compile(optimizer="adam", jit_compile=False, steps_per_execution=3)
    assert (explicit.jit_compile, explicit.steps_per_execution) == (False, 3)


class _Mirrored(tf.distribute.MirroredStrategy):
    """Only its type and replica count matter to `resolve_steps_per_execution`."""

    def __init__(self, replicas):  # no super().__init__: no devices are touched
        self._replicas = replicas

    @property
    def num_replicas_in_sync(self):
        return self._replicas


def test_auto_steps_per_execution_is_one_over_several_mirrored_replicas():
    assert execution.resolve_steps_per_execution("auto", _Mirrored(2)) == 1
    assert execution.resolve_steps_per_execution("auto", _Mirrored(1)) > 1
    assert execution.resolve_steps_per_execution(7, _Mirrored(1)) == 7
    with pytest.raises(ValueError, match=r"integer >= 1 or 'auto'.*steps_per_execution=0"):
        execution.resolve_steps_per_execution(0, _Mirrored(1))


def test_train_config_accepts_auto_and_integers_only():
    assert TrainingConfig().steps_per_execution == "auto"
    assert TrainingConfig(steps_per_execution=4).steps_per_execution == 4
    for bad in (0, "fast", 2.5, True):
        with pytest.raises(ValueError, match=r"`steps_per_execution`, expected an integer"):
            TrainingConfig(steps_per_execution=bad)


def test_cli_steps_per_execution_flag_takes_auto_or_a_positive_integer(capsys):
    from keras_vae.cli import build_parser, main
    from keras_vae.cli.train import config_from_args

    parser = build_parser()
    base = ["train", "--output", "unused"]
    assert config_from_args(parser.parse_args(base)).training.steps_per_execution == "auto"
    assert parser.parse_args([*base, "--steps-per-execution", "7"]).steps_per_execution == 7
    for bad in ("0", "fast"):
        assert main([*base, "--steps-per-execution", bad]) == 2
        error = capsys.readouterr().err
        assert "positive integer or 'auto'" in error and len(error.strip().splitlines()) == 1
