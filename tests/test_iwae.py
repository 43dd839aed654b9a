"""The IWAE bound and the three ELBO estimators (objectives.py) on a linear-Gaussian model.

p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I): log p(x) = log N(x; b, WW^T + s^2 I) and the exact
posterior N(m, C) are closed forms (W with orthogonal columns: C is diagonal, so a diagonal q
can be exact). Everything runs in float64 through `gaussian_latent_terms`, `iwae_from_terms`
and `elbo_from_terms`; Monte Carlo claims are checked within 3 standard errors of the draws
themselves, and each comes with a sharpness check that a wrong bound would fail.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
from helpers import standard_error

from keras_vae import objectives
from keras_vae.model import VAE
from keras_vae.objectives import (
    LatentTerms,
    elbo_from_terms,
    gaussian_latent_terms,
    iwae_from_terms,
)
from keras_vae.parts import GaussianPosterior, MixturePrior

D_X, D_Z, S = 5, 2, 0.5
Z = 3.0  # standard errors


class LinearGaussian:
    """The closed-form model, float64; three data points x drawn from it."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        columns, _ = np.linalg.qr(rng.normal(size=(D_X, D_Z)))
        self.W = columns * np.array([1.5, 0.7])  # orthogonal columns: W^T W diagonal
        self.b = rng.normal(size=D_X)
        z = rng.normal(size=(3, D_Z))
        self.x = z @ self.W.T + self.b + S * rng.normal(size=(3, D_X))

    def log_evidence(self) -> np.ndarray:
        cov = self.W @ self.W.T + S**2 * np.eye(D_X)
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(self.x)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean [3, D_Z] and the (diagonal) standard deviations [3, D_Z] of p(z|x)."""
        cov = np.linalg.inv(np.eye(D_Z) + self.W.T @ self.W / S**2)
        assert np.allclose(cov, np.diag(np.diag(cov)))
        mean = (self.x - self.b) @ self.W @ cov / S**2
        return mean, np.sqrt(np.diag(cov)) * np.ones((3, 1))

    def kl_to_posterior(self, z_mean, z_stddev) -> np.ndarray:
        """KL(q || p(z|x)) for diagonal q: log p(x) - ELBO(q)."""
        mean, stddev = self.posterior()
        ratio = (z_stddev / stddev) ** 2
        return 0.5 * np.sum(ratio + ((mean - z_mean) / stddev) ** 2 - 1 - np.log(ratio), -1)

    def log_likelihood_fn(self, repeats: int = 1, dtype=tf.float64):
        """z [L, n, D_Z] -> log p(x|z) [L, n], the examples repeated `repeats` times."""
        W, b = tf.constant(self.W, dtype), tf.constant(self.b, dtype)
        x = tf.constant(np.repeat(self.x, repeats, axis=0), dtype)

        def log_likelihood(z):
            location = tf.einsum("lnk,dk->lnd", z, W) + b
            residual = (x - location) / S
            return tf.reduce_sum(-0.5 * residual**2 - math.log(S) - 0.5 * math.log(2 * math.pi), -1)

        return log_likelihood


MODEL = LinearGaussian()


def perturbed_q():
    """q: means 0.6 posterior SDs off, SDs 1.3 times the posterior's (wider: bounded weights)."""
    mean, stddev = MODEL.posterior()
    return mean + 0.6 * stddev * np.array([1.0, -1.0]), 1.3 * stddev


def latent_terms(z_mean, z_stddev, k, repeats, seed, estimator="monte_carlo", dtype=tf.float64):
    """`gaussian_latent_terms` of k draws for each of `repeats` copies of the 3 examples
    (copies are independent estimates: their spread is the standard error)."""
    noise = np.random.default_rng(seed).standard_normal((k, 3 * repeats, D_Z))
    return gaussian_latent_terms(
        tf.constant(np.repeat(z_mean, repeats, axis=0), dtype),
        tf.constant(np.repeat(z_stddev, repeats, axis=0), dtype),
        tf.constant(noise, dtype),
        MODEL.log_likelihood_fn(repeats, dtype),
        estimator,
    )


def per_example(values, repeats: int) -> np.ndarray:
    """[3 * repeats] -> [3, repeats]."""
    return np.asarray(values, np.float64).reshape(3, repeats)


# ------------------------------------------------------------------ (a) exact posterior
@pytest.mark.parametrize("k", [1, 5, 50, 500])
def test_iwae_at_the_exact_posterior_is_log_evidence_for_every_k(k):
    """q = p(z|x): every weight is p(x), so the bound is log p(x) whatever k (and noise)."""
    mean, stddev = MODEL.posterior()
    log_px = MODEL.log_evidence()
    terms = latent_terms(mean, stddev, k, repeats=4, seed=k)
    bound = per_example(iwae_from_terms(terms).bound, 4)
    np.testing.assert_allclose(bound, np.repeat(log_px[:, None], 4, 1), rtol=0, atol=1e-9)
    terms32 = latent_terms(mean, stddev, k, repeats=4, seed=k, dtype=tf.float32)
    bound32 = per_example(iwae_from_terms(terms32).bound, 4)
    np.testing.assert_allclose(bound32, np.repeat(log_px[:, None], 4, 1), rtol=0, atol=1e-4)


# ------------------------------------------------------------------ (b) perturbed q
@pytest.fixture(scope="module")
def perturbed_bounds() -> dict:
    """IWAE_k estimates (and the Monte Carlo ELBO of the same samples) over 1,000 independent
    copies for k = 1, 5, 50 (nested: IWAE_k uses the first k of the same 50 draws, so their
    differences are paired) and 24 copies for k = 5000."""
    z_mean, z_stddev = perturbed_q()
    terms = latent_terms(z_mean, z_stddev, 50, 1000, seed=100)
    results = {}
    for k in (1, 5, 50):
        first_k = LatentTerms(*(t[:k] for t in terms[:3]))
        bound = iwae_from_terms(first_k)
        results[k] = {name: per_example(v, 1000) for name, v in bound._asdict().items()}
    bound = iwae_from_terms(latent_terms(z_mean, z_stddev, 5000, 24, seed=101))
    results[5000] = {name: per_example(v, 24) for name, v in bound._asdict().items()}
    return results


def test_perturbed_q_has_a_visible_gap():
    gap = MODEL.kl_to_posterior(*perturbed_q())
    assert np.all(gap > 0.1), gap


def test_iwae_is_above_the_elbo_of_its_samples(perturbed_bounds):
    """log mean w >= mean log w for every draw (Jensen), and by more than 3 SE for k > 1."""
    for k, draws in perturbed_bounds.items():
        difference = draws["bound"] - draws["elbo"]
        assert np.all(difference >= -1e-12), k
        if k > 1:
            assert np.all(difference.mean(1) > Z * standard_error(difference, 1)), k
    one = perturbed_bounds[1]
    np.testing.assert_array_equal(one["bound"], one["elbo"])


def test_iwae_rises_with_k_to_log_evidence(perturbed_bounds):
    """E IWAE_1 = the ELBO = log p(x) - KL(q || p(z|x)); E IWAE_1 <= E IWAE_5 <= E IWAE_50
    <= log p(x) (3 SE), rising by more than 3 SE of the paired differences, and IWAE_5000
    within 3 SE of log p(x)."""
    log_px = MODEL.log_evidence()
    exact_elbo = log_px - MODEL.kl_to_posterior(*perturbed_q())

    def mean_se(k):
        bound = perturbed_bounds[k]["bound"]
        return bound.mean(1), standard_error(bound, 1)

    m1, se1 = mean_se(1)
    assert np.all(np.abs(m1 - exact_elbo) < Z * se1), (m1, exact_elbo, se1)
    for small, large in ((1, 5), (5, 50)):
        rise = perturbed_bounds[large]["bound"] - perturbed_bounds[small]["bound"]  # paired
        se = standard_error(rise, 1)
        assert np.all(rise.mean(1) >= -Z * se), (small, large)
        assert np.all(rise.mean(1) > Z * se), (small, large)  # it does rise
    m50, se50 = mean_se(50)
    assert np.all(m50 <= log_px + Z * se50)
    assert np.all(log_px - m50 + Z * se50 < 0.5 * (log_px - exact_elbo))  # most of the gap
    m5000, se5000 = mean_se(5000)
    assert np.all(np.abs(m5000 - log_px) < Z * se5000), (m5000 - log_px, se5000)
    # sharp: the bound closed (most of) the ELBO's gap; 3 SE are far below that gap
    assert np.all(Z * se5000 < 0.05 * (log_px - exact_elbo))


# ------------------------------------------------------------------ (c) k = 1
@pytest.mark.parametrize("kl_weight", [1.0, 0.3, tf.constant(2.5)])
def test_k1_is_exactly_the_monte_carlo_elbo(kl_weight):
    """One sample: the bound is the Monte Carlo ELBO and the tempered bound its beta-weighted
    form reconstruction - beta * kl, bit for bit on the same noise."""
    terms = latent_terms(*perturbed_q(), k=1, repeats=50, seed=7, dtype=tf.float32)
    iwae = iwae_from_terms(terms, kl_weight)
    elbo = elbo_from_terms(terms, "monte_carlo")
    np.testing.assert_array_equal(iwae.bound.numpy(), elbo.elbo.numpy())
    np.testing.assert_array_equal(iwae.elbo.numpy(), elbo.elbo.numpy())
    np.testing.assert_array_equal(iwae.reconstruction.numpy(), elbo.reconstruction.numpy())
    np.testing.assert_array_equal(iwae.kl.numpy(), elbo.kl.numpy())
    beta = float(kl_weight)
    tempered = elbo.reconstruction - tf.constant(beta, tf.float32) * elbo.kl
    np.testing.assert_array_equal(iwae.tempered_bound.numpy(), tempered.numpy())
    if beta != 1.0:
        assert np.abs(iwae.tempered_bound.numpy() - iwae.bound.numpy()).min() > 1e-3


def test_tempered_bound_for_k_above_1_against_numpy():
    rng = np.random.default_rng(11)
    log_lik, log_prior, log_post = (rng.normal(scale=3.0, size=(7, 4)) for _ in range(3))
    terms = LatentTerms(*(tf.constant(t) for t in (log_lik, log_prior, log_post)))
    iwae = iwae_from_terms(terms, 0.4)
    log_ratio = log_prior - log_post
    lme = lambda v: scipy.special.logsumexp(v, axis=0) - math.log(7)  # noqa: E731
    np.testing.assert_allclose(iwae.bound.numpy(), lme(log_lik + log_ratio), rtol=1e-12)
    np.testing.assert_allclose(iwae.tempered_bound.numpy(), lme(log_lik + 0.4 * log_ratio))
    np.testing.assert_allclose(iwae.elbo.numpy(), (log_lik + log_ratio).mean(0))
    np.testing.assert_allclose(iwae.kl.numpy(), -log_ratio.mean(0))
    np.testing.assert_array_equal(
        iwae_from_terms(terms, 1.0).tempered_bound.numpy(), iwae_from_terms(terms).bound.numpy()
    )


# ------------------------------------------------------------------ (d) the ELBO estimators
def test_three_elbo_estimators_share_their_expectation():
    """analytic_kl, monte_carlo and analytic_entropy on the same noise (2,000 copies): each
    mean within 3 SE of the closed-form ELBO, paired differences within 3 SE of zero."""
    z_mean, z_stddev = perturbed_q()
    repeats = 2000
    estimates = {
        estimator: per_example(
            elbo_from_terms(
                latent_terms(z_mean, z_stddev, 1, repeats, seed=21, estimator=estimator),
                estimator,
            ).elbo,
            repeats,
        )
        for estimator in objectives.ESTIMATOR_NAMES
    }
    exact_elbo = MODEL.log_evidence() - MODEL.kl_to_posterior(z_mean, z_stddev)
    for estimator, draws in estimates.items():
        error = np.abs(draws.mean(1) - exact_elbo)
        assert np.all(error < Z * standard_error(draws, 1)), estimator
    names = list(estimates)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            difference = estimates[a] - estimates[b]
            assert np.abs(difference).max() > 1e-3, (a, b)  # different estimators, same mean
            assert np.all(np.abs(difference.mean(1)) < Z * standard_error(difference, 1)), (a, b)


def test_monte_carlo_and_analytic_entropy_agree_with_a_mixture_prior():
    """Where no closed-form KL exists (a mixture prior), the two remaining estimators built
    from the parts still share their expectation."""
    prior = MixturePrior(D_Z, 3)
    rng = np.random.default_rng(12)
    prior.logits.assign(rng.normal(size=3))
    prior.loc.assign(rng.normal(size=(3, D_Z)))
    posterior = GaussianPosterior()
    z_mean, z_stddev = (tf.constant(np.repeat(a, 2000, 0), tf.float32) for a in perturbed_q())
    noise = tf.constant(rng.standard_normal((1, 6000, D_Z)), tf.float32)
    z, log_q = posterior.sample(z_mean, z_stddev, noise)
    log_lik = MODEL.log_likelihood_fn(2000, tf.float32)(z)
    terms = LatentTerms(
        log_lik, prior.log_prob(z, prior.components()), log_q, entropy=posterior.entropy(z_stddev)
    )
    mc, ent = (
        per_example(elbo_from_terms(terms, e).elbo, 2000)
        for e in ("monte_carlo", "analytic_entropy")
    )
    difference = mc - ent
    assert np.abs(difference).max() > 1e-3
    assert np.all(np.abs(difference.mean(1)) < Z * standard_error(difference, 1))
    with pytest.raises(ValueError, match="monte_carlo"):
        elbo_from_terms(terms, "analytic_kl")  # no closed-form KL here


# ------------------------------------------------------------------ (e) the model
def small_vae(**kwargs) -> VAE:
    return VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), seed=0, **kwargs)


def test_iwae_vae_train_step_has_finite_gradients():
    vae = small_vae(objective="iwae", num_samples=5)
    x = (np.random.default_rng(13).random((8, 6)) < 0.5).astype("float32")
    with tf.GradientTape() as tape:
        values = vae.objective_values(vae.latent_terms(x, training=True))
        loss = tf.reduce_mean(values["loss"])
    gradients = tape.gradient(loss, vae.trainable_variables)
    assert len(gradients) == len(vae.trainable_variables) > 0
    for variable, gradient in zip(vae.trainable_variables, gradients):
        assert gradient is not None and np.all(np.isfinite(gradient)), variable.path
    assert all(np.abs(g.numpy()).max() > 0 for g in gradients)
    assert np.all(values["iwae"].numpy() >= values["elbo"].numpy())
    np.testing.assert_array_equal(values["loss"].numpy(), -values["iwae"].numpy())  # beta 1

    vae.compile(optimizer=keras.optimizers.SGD(0.01))
    before = [w.numpy() for w in vae.trainable_weights]
    logs = vae.train_on_batch(x, return_dict=True)
    assert set(logs) >= {"loss", "elbo", "iwae"} and np.isfinite(logs["loss"])
    assert all(np.isfinite(w.numpy()).all() for w in vae.trainable_weights)
    assert any(np.any(a != w.numpy()) for a, w in zip(before, vae.trainable_weights))


def test_iwae_vae_with_one_sample_trains_on_the_monte_carlo_elbo():
    """VAE(objective="iwae", num_samples=1, beta) has the loss of the monte_carlo ELBO VAE."""
    iwae = small_vae(objective="iwae", num_samples=1, beta=0.5)
    elbo = small_vae(estimator="monte_carlo", num_samples=1, beta=0.5)
    elbo.set_weights(iwae.get_weights())
    rng = np.random.default_rng(14)
    x = (rng.random((8, 6)) < 0.5).astype("float32")
    noise = rng.standard_normal((8, 1, 2)).astype("float32")
    a = iwae.objective_values(iwae.latent_terms(x, noise))
    b = elbo.objective_values(elbo.latent_terms(x, noise))
    for name in ("loss", "elbo", "reconstruction", "kl"):
        np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), err_msg=name)


@pytest.mark.parametrize(
    "parts",
    [
        {},
        {"posterior": "iaf", "flow_steps": 2, "flow_hidden_units": (8,)},
        {"prior": "vamp", "prior_components": 3},
        {"prior": "mixture", "prior_components": 3},
    ],
    ids=["gaussian", "iaf", "vamp", "mixture"],
)
def test_evaluation_and_training_share_the_iwae_bound(parts):
    """`log_likelihood` (importance sampling, `keras-vae evaluate`) with k draws is the IWAE
    bound that `objective="iwae"` trains on, for the same draws, whatever the parts."""
    vae = small_vae(objective="iwae", num_samples=5, **parts)
    rng = np.random.default_rng(15)
    for weight in vae.trainable_weights:  # a fresh IAF is the identity, a fresh mixture uniform
        weight.assign(weight.numpy() + rng.normal(scale=0.1, size=weight.shape))
    x = (rng.random((4, 6)) < 0.5).astype("float32")
    noise = rng.standard_normal((4, 5, 2)).astype("float32")
    trained = iwae_from_terms(vae.latent_terms(x, noise)).bound.numpy()
    evaluated = vae.importance_weighted_terms(x, 5, chunk_size=2, noise=noise, jit_compile=False)
    np.testing.assert_allclose(evaluated.log_likelihood.numpy(), trained, rtol=1e-6, atol=1e-5)
