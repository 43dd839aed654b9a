"""The mixture and VampPrior parts (keras_vae/parts/priors.py) against NumPy float64 references.

log p(z) is checked against a weighted logsumexp (mixture) / log-mean-exp (vamp) of SciPy's
component log-densities and against `tfd.MixtureSameFamily`; sampling against the mixture's
closed-form mean and variance (4 standard errors per dimension, 100,000 draws). Every prior
starts from perturbed, non-uniform weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from keras_vae.model import VAE
from keras_vae.networks import MIN_POSTERIOR_STDDEV, build_encoder
from keras_vae.parts import MixturePrior, NormalPrior, VampPrior, priors

D, K, DATA = 3, 4, (6,)
N_SAMPLES = 100_000
Z_SCORE = 4.0


def perturbed_mixture(seed: int = 0) -> MixturePrior:
    prior = MixturePrior(D, K)
    rng = np.random.default_rng(seed)
    prior.logits.assign(rng.normal(scale=1.0, size=K))
    prior.loc.assign(rng.normal(scale=2.0, size=(K, D)))
    prior.raw_scale.assign(rng.normal(scale=0.7, size=(K, D)))
    return prior


def perturbed_vamp(seed: int = 1):
    """A VampPrior (pseudo-inputs partly outside [0, 1], so the clip matters) and an encoder."""
    encoder = build_encoder(DATA, D, hidden_units=(8,))
    prior = VampPrior(D, K, DATA)
    rng = np.random.default_rng(seed)
    prior.raw_pseudo_inputs.assign(rng.normal(0.5, 0.6, size=(K, *DATA)))
    for weight in encoder.weights:  # biases too: the components must differ visibly
        weight.assign(rng.normal(scale=0.8, size=weight.shape))
    raw = prior.raw_pseudo_inputs.numpy()
    assert (raw < 0).any() and (raw > 1).any()
    return prior, encoder


def numpy_log_prob(z: np.ndarray, log_weights, loc, scale) -> np.ndarray:
    """log sum_k pi_k N(z; loc_k, scale_k) in float64, for z [..., D]."""
    z = np.float64(z)[..., np.newaxis, :]
    log_n = scipy.stats.norm(np.float64(loc), np.float64(scale)).logpdf(z).sum(-1)
    return scipy.special.logsumexp(log_n + np.float64(log_weights), axis=-1)


def test_mixture_log_prob_equals_weighted_logsumexp():
    prior = perturbed_mixture()
    params = prior.components()
    logits, raw = np.float64(prior.logits.numpy()), np.float64(prior.raw_scale.numpy())
    log_pi = logits - scipy.special.logsumexp(logits)
    scale = np.log1p(np.exp(raw)) + MIN_POSTERIOR_STDDEV  # softplus + floor
    loc = np.float64(prior.loc.numpy())
    assert np.ptp(np.exp(log_pi)) > 0.1  # clearly non-uniform weights
    np.testing.assert_allclose(params.log_weights.numpy(), log_pi, atol=1e-6)
    np.testing.assert_allclose(params.scale.numpy(), scale, rtol=1e-6)

    z = np.random.default_rng(2).normal(scale=2.5, size=(2, 7, D)).astype("float32")
    got = prior.log_prob(tf.constant(z), params).numpy()
    assert got.shape == (2, 7)
    expected = numpy_log_prob(z, log_pi, loc, scale)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    tfd_value = prior.distribution(params).log_prob(z).numpy()
    np.testing.assert_allclose(got, tfd_value, rtol=1e-6, atol=1e-5)
    # the weights matter: the unweighted mixture is a different density
    assert np.abs(numpy_log_prob(z, np.full(K, -math.log(K)), loc, scale) - expected).max() > 0.1


def test_vamp_log_prob_is_the_log_mean_of_the_encoder_posteriors():
    prior, encoder = perturbed_vamp()

    def encode(u):
        return tuple(encoder(u)[:2])

    params = prior.components(encode)
    u = np.clip(prior.raw_pseudo_inputs.numpy(), 0.0, 1.0)  # hard-tanh into [0, 1]
    loc, scale = (np.float64(t.numpy()) for t in encoder(u)[:2])
    np.testing.assert_array_equal(params.log_weights.numpy(), np.full(K, -math.log(K), "f4"))
    np.testing.assert_allclose(params.loc.numpy(), loc, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(params.scale.numpy(), scale, rtol=1e-6, atol=1e-6)
    assert np.ptp(loc, axis=0).min() > 0.1  # distinct components

    z = np.random.default_rng(3).normal(scale=2.0, size=(2, 9, D)).astype("float32")
    got = prior.log_prob(tf.constant(z), params).numpy()
    log_n = scipy.stats.norm(loc, scale).logpdf(np.float64(z)[..., np.newaxis, :]).sum(-1)
    expected = scipy.special.logsumexp(log_n, axis=-1) - math.log(K)  # log-mean-exp
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(
        got, prior.distribution(params).log_prob(z).numpy(), rtol=1e-6, atol=1e-5
    )

    # the pseudo-inputs learn through the clip: gradient where 0 < raw < 1, none outside
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(prior.log_prob(tf.constant(z), prior.components(encode)))
    gradient = tape.gradient(value, prior.raw_pseudo_inputs).numpy()
    raw = prior.raw_pseudo_inputs.numpy()
    inside = (raw > 0) & (raw < 1)
    assert np.all(gradient[~inside] == 0) and np.all(gradient[inside] != 0)


def test_vamp_needs_the_encoder():
    with pytest.raises(ValueError, match="encode"):
        VampPrior(D, K, DATA).components(None)


def test_normal_prior_is_the_standard_normal():
    prior = NormalPrior(D)
    z = np.random.default_rng(4).normal(size=(5, D)).astype("float32")
    expected = scipy.stats.norm.logpdf(np.float64(z)).sum(-1)
    np.testing.assert_allclose(prior.log_prob(tf.constant(z)).numpy(), expected, rtol=1e-6)
    params = prior.components()
    np.testing.assert_allclose(
        priors.mixture_log_prob(tf.constant(z), params).numpy(), expected, rtol=1e-6
    )


# ------------------------------------------------------------------ sampling
def test_component_from_uniform_draws_k_with_probability_pi_k():
    """On an even grid of u the frequencies are pi_k to 1/N; a zero weight is never drawn;
    random u: counts within 4 binomial SE."""
    pi = np.array([0.2, 0.0, 0.5, 0.3, 0.0])
    log_weights = tf.math.log(tf.constant(pi, tf.float32))
    n = N_SAMPLES
    grid = (np.arange(n) + 0.5) / n
    components = priors.component_from_uniform(log_weights, tf.constant(grid, tf.float32))
    counts = np.bincount(components.numpy(), minlength=len(pi))
    assert len(counts) == len(pi)
    np.testing.assert_allclose(counts / n, pi, atol=2 / n)

    edges = priors.component_from_uniform(log_weights, tf.constant([0.0, 0.2, 1 - 2**-24]))
    assert edges.numpy().tolist() == [0, 2, 3]

    mixture = perturbed_mixture(seed=5)
    log_pi = mixture.components().log_weights
    u = np.random.default_rng(6).uniform(size=n).astype("float32")
    counts = np.bincount(priors.component_from_uniform(log_pi, u).numpy(), minlength=K)
    p = np.exp(np.float64(log_pi.numpy()))
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) < Z_SCORE * se), (counts / n, p)


def mixture_moments(log_weights, loc, scale):
    """Mean and variance per dimension of a diagonal Gaussian mixture (float64)."""
    pi = np.exp(np.float64(log_weights))[:, np.newaxis]
    loc, scale = np.float64(loc), np.float64(scale)
    mean = (pi * loc).sum(0)
    return mean, (pi * (scale**2 + loc**2)).sum(0) - mean**2


def moment_errors(z: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """|sample mean - mean| and |sample var - var| in standard errors, [2, D]; the variance's
    SE from the sample's fourth central moment."""
    z = np.float64(z)
    n = len(z)
    centred = z - z.mean(0)
    sample_var = centred.var(0)
    se_var = np.sqrt(((centred**4).mean(0) - sample_var**2) / n)
    return np.stack(
        [np.abs(z.mean(0) - mean) / np.sqrt(var / n), np.abs(sample_var - var) / se_var]
    )


def assert_mixture_moments(z: np.ndarray, params: priors.MixtureParams) -> None:
    log_weights, loc, scale = (t.numpy() for t in params)
    errors = moment_errors(z, *mixture_moments(log_weights, loc, scale))
    assert np.all(errors < Z_SCORE), errors
    # sharp: the same components with equal weights would fail
    uniform = np.full(len(log_weights), -math.log(len(log_weights)))
    assert np.any(moment_errors(z, *mixture_moments(uniform, loc, scale)) > 3 * Z_SCORE)


def test_sample_from_noise_has_the_mixture_moments():
    params = perturbed_mixture(seed=7).components()
    rng = np.random.default_rng(8)
    noise = rng.standard_normal((N_SAMPLES, D)).astype("float32")
    uniform = rng.uniform(size=N_SAMPLES).astype("float32")
    z, component = priors.sample_from_noise(params, noise, uniform)
    component = component.numpy()
    loc, scale = params.loc.numpy(), params.scale.numpy()
    np.testing.assert_allclose(z.numpy(), loc[component] + scale[component] * noise, rtol=1e-6)
    np.testing.assert_array_equal(
        component, priors.component_from_uniform(params.log_weights, uniform).numpy()
    )
    assert_mixture_moments(z.numpy(), params)


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_vae_sample_prior_has_the_mixture_moments(prior):
    vae = VAE(
        data_shape=DATA, latent_dim=D, hidden_units=(8,), prior=prior, prior_components=K, seed=0
    )
    rng = np.random.default_rng(9)
    if prior == "mixture":
        vae.prior_layer.logits.assign(rng.normal(scale=1.0, size=K))
        vae.prior_layer.loc.assign(rng.normal(scale=2.0, size=(K, D)))
    else:
        vae.prior_layer.raw_pseudo_inputs.assign(rng.uniform(size=(K, *DATA)))
        for weight in vae.encoder.weights:
            weight.assign(rng.normal(scale=0.8, size=weight.shape))
    params = vae.prior_parameters()
    if prior == "vamp":  # the VAE's VampPrior mixes its own encoder's Gaussians
        z_mean, z_stddev = vae.encode(vae.prior_layer.pseudo_inputs())
        np.testing.assert_allclose(params.loc.numpy(), z_mean.numpy(), rtol=1e-6)
        np.testing.assert_allclose(params.scale.numpy(), z_stddev.numpy(), rtol=1e-6)
    z = vae.sample_prior(N_SAMPLES, seed=3).numpy()
    assert z.shape == (N_SAMPLES, D)
    np.testing.assert_array_equal(vae.sample_prior(N_SAMPLES, seed=3).numpy(), z)
    if prior == "vamp":  # equal weights: the uniform-weight sharpness check does not apply
        log_weights, loc, scale = (t.numpy() for t in params)
        assert np.all(moment_errors(z, *mixture_moments(log_weights, loc, scale)) < Z_SCORE)
        assert np.any(moment_errors(z, *mixture_moments(log_weights, 0 * loc, scale)) > 12)
    else:
        assert_mixture_moments(z, params)
