"""The IAF posterior (keras_vae/parts/posteriors.py, made.py) against independent references.

A fresh IAF is the identity (zero output layers), so every test but the identity one first
sets all MADE weights to random nonzero values. References: a NumPy float64 re-implementation
of the flow (masks from Germain et al.'s degree rule, written out here) with a central-difference
Jacobian and `np.linalg.slogdet`, and TFP's `tfb.Invert(tfb.MaskedAutoregressiveFlow)` built
from the same MADEs (its inverse is TFP's own sequential while loop).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.model import VAE
from keras_vae.parts import GaussianPosterior, IAFPosterior
from keras_vae.parts.made import MADE
from keras_vae.parts.posteriors import MAX_LOG_SCALE

tfb, tfd = tfp.bijectors, tfp.distributions

D, STEPS, HIDDEN, CONTEXT, BATCH, SAMPLES = 4, 2, (8, 8), 3, 5, 2


def perturb(layer: keras.layers.Layer, seed: int, scale: float = 0.5) -> None:
    """Every weight of `layer` to N(0, scale^2) draws (a fresh IAF is the identity)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape).astype(weight.dtype))


def inputs(seed: int = 1):
    """mu, sigma [B, D], noise [L, B, D], context [B, C], float32."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(BATCH, D)).astype("float32")
    sigma = rng.uniform(0.3, 2.0, size=(BATCH, D)).astype("float32")
    noise = rng.standard_normal((SAMPLES, BATCH, D)).astype("float32")
    context = rng.normal(size=(BATCH, CONTEXT)).astype("float32")
    return mu, sigma, noise, context


@pytest.fixture(scope="module")
def flow() -> IAFPosterior:
    q = IAFPosterior(D, STEPS, HIDDEN, context_units=CONTEXT)
    perturb(q, seed=0)
    return q


# ------------------------------------------------------------------ NumPy float64 reference
def reference_masks(event_size: int, hidden: tuple[int, ...], reverse: bool):
    """Germain et al. (2015): inputs 1..D (D..1 reversed), hidden (k mod (D-1)) + 1;
    hidden mask degree(out) >= degree(in), output mask degree(out) > degree(in)."""
    degree_in = np.arange(1, event_size + 1)[:: -1 if reverse else 1]
    layers = [degree_in] + [np.arange(w) % max(1, event_size - 1) + 1 for w in hidden]
    result = [(b[None, :] >= a[:, None]).astype(float) for a, b in zip(layers[:-1], layers[1:])]
    result.append((degree_in[None, :] > layers[-1][:, None]).astype(float))
    return result


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def numpy_step(made: MADE, z: np.ndarray, context: np.ndarray | None):
    """(shift, log_scale) of one IAF step in float64, from the layer's weights."""
    masks = reference_masks(made.event_size, made.hidden_units, made.reverse)
    h = z
    for i, (kernel, bias) in enumerate(zip(made.hidden_kernels, made.hidden_biases)):
        pre = h @ (np.float64(kernel.numpy()) * masks[i]) + np.float64(bias.numpy())
        if i == 0 and context is not None:
            pre = pre + context @ np.float64(made.context_kernel.numpy())
        h = elu(pre)
    shift = h @ (np.float64(made.shift_kernel.numpy()) * masks[-1]) + made.shift_bias.numpy()
    raw = h @ (np.float64(made.log_scale_kernel.numpy()) * masks[-1])
    raw = raw + made.log_scale_bias.numpy()
    return shift, MAX_LOG_SCALE * np.tanh(raw / MAX_LOG_SCALE)


def numpy_flow(q: IAFPosterior, z0: np.ndarray, context: np.ndarray | None, steps=slice(None)):
    """z_T for z_0 [N, D] (only the steps `q.steps[steps]`, if given), float64."""
    z = z0
    for made in q.steps[steps]:
        shift, log_scale = numpy_step(made, z, context)
        z = shift + np.exp(log_scale) * z
    return z


def numerical_jacobian(f, z: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """[N, D, D] central differences: J[n, i, j] = d f(z)[n, i] / d z[n, j]."""
    columns = []
    for j in range(z.shape[-1]):
        step = np.zeros_like(z)
        step[:, j] = h
        columns.append((f(z + step) - f(z - step)) / (2 * h))
    return np.stack(columns, axis=-1)


def gaussian_log_density(z, mu, sigma):
    return np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), -1)


# ------------------------------------------------------------------ tests
def test_log_q_is_the_change_of_variables_density(flow):
    """log q(z_T|x) = log N(z_0; mu, sigma) - log|det dz_T/dz_0|, with the determinant of a
    float64 central-difference Jacobian: the layer's log-det is the true one."""
    mu, sigma, noise, context = inputs()
    z, log_q = (t.numpy() for t in flow.sample(mu, sigma, noise, context))
    assert z.shape == (SAMPLES, BATCH, D) and log_q.shape == (SAMPLES, BATCH)

    z0 = (np.float64(mu) + np.float64(sigma) * noise).reshape(-1, D)
    tiled = np.tile(np.float64(context), (SAMPLES, 1))  # row l * B + b holds example b
    expected_z = numpy_flow(flow, z0, tiled)
    np.testing.assert_allclose(z.reshape(-1, D), expected_z, rtol=1e-5, atol=1e-5)
    assert np.abs(expected_z - z0).max() > 0.1  # the perturbed flow is not the identity

    jacobian = numerical_jacobian(lambda v: numpy_flow(flow, v, tiled), z0)
    sign, log_abs_det = np.linalg.slogdet(jacobian)
    assert np.all(sign > 0)  # each step scales by exp(s) > 0 on the diagonal
    assert np.abs(log_abs_det).max() > 0.5  # a volume change the test can see
    tiled_mu, tiled_sigma = (np.tile(np.float64(a), (SAMPLES, 1)) for a in (mu, sigma))
    expected = gaussian_log_density(z0, tiled_mu, tiled_sigma) - log_abs_det
    np.testing.assert_allclose(log_q.reshape(-1), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("step", range(STEPS))
def test_each_step_is_triangular_in_its_made_order(flow, step):
    """Step t: z_t[d] depends on z_{t-1}[j] only for j before d in the MADE order (1..D for
    even t, D..1 for odd t): lower- then upper-triangular Jacobians, nonzero where allowed,
    with diagonal exp(s_t) (autodiff of the layer: masked entries are exactly zero)."""
    made = flow.steps[step]
    assert made.reverse is bool(step % 2)
    _, _, _, context = inputs()
    z = tf.constant(np.random.default_rng(2).normal(size=(BATCH, D)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        shift, raw = made(z, context)
        log_scale = MAX_LOG_SCALE * tf.tanh(raw / MAX_LOG_SCALE)
        z_next = shift + tf.exp(log_scale) * z
    made_jacobian = np.concatenate(
        [tape.batch_jacobian(shift, z).numpy(), tape.batch_jacobian(raw, z).numpy()], axis=0
    )
    jacobian = tape.batch_jacobian(z_next, z).numpy()

    order = np.arange(D)[::-1] if made.reverse else np.arange(D)
    position = np.empty(D, int)
    position[order] = np.arange(D)  # position[d]: where input d comes in the MADE order
    earlier = position[np.newaxis, :] < position[:, np.newaxis]  # [i, j]: j before i
    # MADE outputs: strictly autoregressive (a zero diagonal too)
    assert np.all(made_jacobian[:, ~earlier] == 0)
    assert np.all(np.abs(made_jacobian[:, earlier]) > 1e-6)
    # the step: triangular with diagonal exp(s)
    assert np.all(jacobian[:, ~earlier & ~np.eye(D, dtype=bool)] == 0)
    assert np.all(np.abs(jacobian[:, earlier]) > 1e-6)
    np.testing.assert_allclose(
        np.diagonal(jacobian, axis1=1, axis2=2), np.exp(log_scale.numpy()), rtol=1e-6
    )
    triangle = np.tril if not made.reverse else np.triu
    np.testing.assert_array_equal(jacobian, triangle(jacobian))

    # the same structure in the float64 reference, which shares no code with the layer
    numeric = numerical_jacobian(
        lambda v: numpy_flow(flow, v, np.float64(context), steps=slice(step, step + 1)),
        np.float64(z.numpy()),
    )
    assert np.abs(numeric[:, ~earlier & ~np.eye(D, dtype=bool)]).max() < 1e-8


def test_flow_depends_on_the_context(flow):
    mu, sigma, noise, context = inputs()
    z, _ = flow.sample(mu, sigma, noise, context)
    other, _ = flow.sample(mu, sigma, noise, context + 1.0)
    assert np.abs(z.numpy() - other.numpy()).min() > 1e-4


def test_fresh_flow_is_the_identity_and_the_gaussian():
    """Zero-initialised output layers: z_T == z_0 exactly and log q == the Gaussian's log q
    (bit-exact z; log q to float32 rounding: tfd standardises (z - mu) / sigma, the flow
    uses eps itself)."""
    mu, sigma, noise, context = inputs(seed=3)
    fresh = IAFPosterior(D, STEPS, HIDDEN, context_units=CONTEXT)
    assert any(np.any(w.numpy() != 0) for w in fresh.weights)  # hidden kernels are random
    z, log_q = fresh.sample(mu, sigma, noise, context)
    z_gauss, log_q_gauss = GaussianPosterior().sample(mu, sigma, noise)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_gauss))
    np.testing.assert_array_equal(np.asarray(z), mu + sigma * noise)
    np.testing.assert_allclose(np.asarray(log_q), np.asarray(log_q_gauss), rtol=1e-6, atol=1e-6)
    _, log_det = fresh.transform(tf.constant(mu + sigma * noise), tf.constant(context))
    np.testing.assert_array_equal(log_det.numpy(), 0.0)


def test_each_posterior_called_as_a_layer_is_its_sample_and_round_trips(flow):
    """`posterior(...)` (the shared base class's `call`) returns `sample(...)` bit for bit, and
    each posterior serialises under its own registered name and rebuilds to the same draws."""
    mu, sigma, noise, context = inputs(seed=5)
    for q, ctx in ((flow, context), (GaussianPosterior(), None)):
        called, sampled = q(mu, sigma, noise, ctx), q.sample(mu, sigma, noise, ctx)
        for a, b in zip(called, sampled):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        config = keras.saving.serialize_keras_object(q)
        assert config["registered_name"] == f"keras_vae>{type(q).__name__}"
        rebuilt = keras.saving.deserialize_keras_object(config)
        rebuilt.set_weights(q.get_weights())
        assert rebuilt.closed_form_entropy is q.closed_form_entropy
        assert rebuilt.context_units == q.context_units
        for a, b in zip(rebuilt.sample(mu, sigma, noise, ctx), sampled):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def tfp_flow(q: IAFPosterior, context) -> tfb.Bijector:
    """The flow as TFP bijectors: step t is `Invert(MAF)` whose forward is
    (x - shift') exp(-log_scale') = m + exp(s) x with shift' = -m exp(-s), log_scale' = -s."""

    def shift_and_log_scale_fn(made):
        def fn(x):
            shift, raw = made(x, context)
            log_scale = MAX_LOG_SCALE * tf.tanh(raw / MAX_LOG_SCALE)
            return -shift * tf.exp(-log_scale), -log_scale

        return fn

    bijectors = [
        tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale_fn(m)))
        for m in q.steps
    ]
    return tfb.Chain(bijectors[::-1])  # Chain applies its last bijector first


def test_flow_equals_tfp_inverse_masked_autoregressive_flow(flow):
    mu, sigma, noise, context = inputs(seed=4)
    eps = noise[0]
    z, log_q = (t.numpy() for t in flow.sample(mu, sigma, eps[np.newaxis], context))
    z0 = mu + sigma * eps

    bijector = tfp_flow(flow, tf.constant(context))
    np.testing.assert_allclose(bijector.forward(z0).numpy(), z[0], rtol=1e-5, atol=1e-5)
    _, log_det = flow.transform(tf.constant(z0), tf.constant(context))
    np.testing.assert_allclose(
        bijector.forward_log_det_jacobian(z0, event_ndims=1).numpy(), log_det, atol=1e-5
    )
    # log_prob of z_T through TFP's inverse (the sequential while loop, D passes), with a
    # new bijector and a new tensor so that no cached forward pass is reused
    base = tfd.MultivariateNormalDiag(loc=mu, scale_diag=sigma)
    q_tfp = tfd.TransformedDistribution(base, tfp_flow(flow, tf.constant(context)))
    z_copy = tf.constant(np.array(z[0]))
    np.testing.assert_allclose(q_tfp.log_prob(z_copy).numpy(), log_q[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        tfp_flow(flow, tf.constant(context)).inverse(z_copy).numpy(), z0, rtol=1e-5, atol=1e-5
    )


def test_xla_equals_eager(flow):
    mu, sigma, noise, context = inputs(seed=5)
    eager = flow.sample(mu, sigma, noise, context)
    compiled = tf.function(flow.sample, jit_compile=True)(mu, sigma, noise, context)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6)


def test_made_under_mixed_precision_is_autoregressive():
    """A MADE built under "mixed_bfloat16" (its outputs in bfloat16) runs and keeps its order."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        made = MADE(D, (8,))
        made.build((None, D), (None, CONTEXT))
    finally:
        keras.config.set_dtype_policy(previous)
    assert (made.compute_dtype, made.variable_dtype) == ("bfloat16", "float32")
    perturb(made, seed=6)
    z = tf.constant(np.random.default_rng(7).normal(size=(BATCH, D)), tf.float32)
    rows = []
    for d in range(D):  # row by row: batch_jacobian's pfor returns zeros through bfloat16
        with tf.GradientTape() as tape:
            tape.watch(z)
            shift, log_scale = made(z, tf.ones([BATCH, CONTEXT]))
            output = tf.reduce_sum(tf.cast(shift[:, d], tf.float32))
        rows.append(tape.gradient(output, z).numpy())
    assert shift.dtype == log_scale.dtype == tf.bfloat16
    jacobian = np.stack(rows, axis=1)  # [batch, output d, input j]
    np.testing.assert_array_equal(jacobian, np.tril(jacobian, k=-1))
    below = np.tril(np.ones((D, D), bool), k=-1)
    assert np.all(np.isfinite(jacobian)) and np.abs(jacobian[:, below]).min() > 0


def test_every_weight_of_an_iaf_vae_is_trainable_by_keras():
    """The tf-keras trap: a part whose weights Keras 3 does not track (TFP's
    AutoregressiveNetwork) would train nothing and save nothing. Every variable the loss reads
    is in `vae.trainable_weights`, each gets a nonzero gradient, and no layer is tf-keras."""
    import tf_keras

    vae = VAE(
        data_shape=(6,),
        latent_dim=D,
        hidden_units=(8,),
        posterior="iaf",
        flow_steps=STEPS,
        flow_hidden_units=HIDDEN,
        seed=0,
    )
    perturb(vae.posterior_layer, seed=8)
    layers = list(vae._flatten_layers(include_self=False, recursive=True))
    assert not any(isinstance(layer, tf_keras.layers.Layer) for layer in layers)
    assert all(isinstance(layer, keras.layers.Layer) for layer in layers)
    trainable = {id(v.value) for v in vae.trainable_weights}
    flow_weights = vae.posterior_layer.weights
    # per step: hidden kernel + bias per hidden layer, the context kernel, 2 x (kernel, bias)
    assert len(flow_weights) == STEPS * (2 * len(HIDDEN) + 1 + 4)
    assert len({id(w.value) for w in flow_weights}) == len(flow_weights)
    assert {id(w.value) for w in flow_weights} <= trainable

    x = np.random.default_rng(9).uniform(size=(4, 6)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(vae.objective_values(vae.latent_terms(x, training=True))["loss"])
    used = tape.watched_variables()
    assert {id(v) for v in used} <= trainable  # nothing the loss reads escapes Keras
    gradients = tape.gradient(loss, [w.value for w in flow_weights])
    for weight, gradient in zip(flow_weights, gradients):
        assert gradient is not None, weight.path
        assert np.all(np.isfinite(gradient)) and np.abs(gradient.numpy()).max() > 0, weight.path
