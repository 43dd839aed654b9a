"""The SGVB maths (objectives.py, distributions.py) against closed forms, without a model.

The reference model is linear-Gaussian, p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I), where
log p(x) = log N(x; b, WW^T + s^2 I) and the exact posterior are known in closed form; tolerances
are a few standard errors computed from the Monte Carlo draws themselves.
"""

import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from helpers import standard_error

from keras_vae import distributions, objectives

D_X, D_Z, NOISE_SCALE = 5, 2, 0.5
Z_SCORE = 4.5  # |error| < 4.5 standard errors: a false alarm has probability < 1e-5


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I) with closed-form evidence and posterior."""

    def __init__(self, orthogonal: bool, seed: int = 0):
        rng = np.random.default_rng(seed)
        if orthogonal:  # orthogonal columns: W^T W is diagonal, so is the exact posterior
            q, _ = np.linalg.qr(rng.normal(size=(D_X, D_Z)))
            self.W = q * np.array([1.5, 0.7])
        else:
            self.W = rng.normal(size=(D_X, D_Z))
        self.b = rng.normal(size=D_X)
        self.s = NOISE_SCALE
        z = rng.normal(size=(3, D_Z))
        self.x = z @ self.W.T + self.b + self.s * rng.normal(size=(3, D_X))

    def log_evidence(self) -> np.ndarray:
        """log p(x) = log N(x; b, WW^T + s^2 I), per example (SciPy)."""
        cov = self.W @ self.W.T + self.s**2 * np.eye(D_X)
        return scipy.stats.multivariate_normal(self.b, cov).logpdf(self.x)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """p(z|x) = N(mean, cov): cov = (I + W^T W / s^2)^-1, mean = cov W^T (x - b) / s^2."""
        cov = np.linalg.inv(np.eye(D_Z) + self.W.T @ self.W / self.s**2)
        mean = (self.x - self.b) @ self.W @ cov / self.s**2
        return mean, cov

    def log_likelihood_fn(self, x: np.ndarray):
        """z [L, batch, D_Z] -> log p(x|z) [L, batch], through distributions.likelihood."""
        W, b = tf.constant(self.W, tf.float32), tf.constant(self.b, tf.float32)
        x = tf.constant(x, tf.float32)

        def log_likelihood(z):
            location = tf.einsum("lbk,dk->lbd", z, W) + b
            return distributions.likelihood("gaussian", location, 1, scale=self.s).log_prob(x)

        return log_likelihood


def kl_gaussians(mean_q, var_q, mean_p, cov_p) -> np.ndarray:
    """KL(N(mean_q, diag(var_q)) || N(mean_p, cov_p)) per row, NumPy."""
    precision = np.linalg.inv(cov_p)
    diff = mean_p - mean_q
    return 0.5 * (
        np.einsum("ij,bj->b", precision * np.eye(D_Z), var_q)
        + np.einsum("bi,ij,bj->b", diff, precision, diff)
        - D_Z
        + np.log(np.linalg.det(cov_p))
        - np.log(var_q).sum(-1)
    )


def single_draw_elbos(z_mean, z_stddev, log_likelihood_fn, x, n, estimator, num_samples=1, seed=0):
    """`n` independent estimates per example from `objectives.elbo_terms`, shape [batch, n].

    Each example is repeated `n` times along the batch axis, so one call yields n i.i.d.
    estimates (each averaging `num_samples` draws) whose spread gives the standard error.
    """
    batch = len(z_mean)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((num_samples, batch * n, z_mean.shape[-1])).astype(np.float32)
    terms = objectives.elbo_terms(
        tf.constant(np.repeat(z_mean, n, axis=0), tf.float32),
        tf.constant(np.repeat(z_stddev, n, axis=0), tf.float32),
        tf.constant(noise),
        log_likelihood_fn(np.repeat(x, n, axis=0)),
        estimator=estimator,
    )
    return {k: np.asarray(v, np.float64).reshape(batch, n) for k, v in terms._asdict().items()}


def random_posterior(seed: int, batch: int = 4, dim: int = 3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, dim)), rng.uniform(0.2, 2.0, size=(batch, dim))


# ------------------------------------------------------------------------------ KL
def test_analytic_kl_equals_numpy_closed_form():
    mu, sigma = random_posterior(seed=1)
    terms = objectives.elbo_terms(
        tf.constant(mu, tf.float32),
        tf.constant(sigma, tf.float32),
        tf.zeros([1, *mu.shape]),
        log_likelihood=lambda z: tf.zeros(tf.shape(z)[:2]),
        estimator="analytic_kl",
    )
    expected = 0.5 * np.sum(mu**2 + sigma**2 - 1 - np.log(sigma**2), axis=-1)
    assert expected.min() > 0.1  # a non-trivial check
    np.testing.assert_allclose(terms.kl.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms.elbo.numpy(), -expected, rtol=1e-5, atol=1e-5)


def test_analytic_kl_equals_its_monte_carlo_estimate():
    mu, sigma = random_posterior(seed=2)
    zero = lambda x: lambda z: tf.zeros(tf.shape(z)[:2])  # noqa: E731
    draws = single_draw_elbos(mu, sigma, zero, mu, n=20000, estimator="monte_carlo")["kl"]
    closed = 0.5 * np.sum(mu**2 + sigma**2 - 1 - np.log(sigma**2), axis=-1)
    error = np.abs(draws.mean(axis=1) - closed)
    se = standard_error(draws, axis=1)
    assert np.all(error < Z_SCORE * se), (error, se)
    assert np.all(se < 0.05 * closed)  # the check is sharp: 4.5 SE is a few % of the KL


# ------------------------------------------------------------------------------ estimators
@pytest.fixture(scope="module")
def off_posterior_draws():
    """20,000 single-draw estimates of both estimators, same noise, for an imperfect encoder:
    q's means 1 away from the posterior's in each latent, its scales 0.6 of the posterior's
    (too narrow, as VAEs' posteriors tend to be)."""
    model = LinearGaussian(orthogonal=True, seed=3)
    mean, cov = model.posterior()
    z_mean = mean + 1.0
    z_stddev = 0.6 * np.sqrt(np.diag(cov)) * np.ones((3, 1))
    draws = {
        estimator: single_draw_elbos(
            z_mean, z_stddev, model.log_likelihood_fn, model.x, 20000, estimator, seed=4
        )["elbo"]
        for estimator in ("analytic_kl", "monte_carlo")
    }
    gap = kl_gaussians(z_mean, z_stddev**2, mean, cov)
    return model, draws, gap


def test_estimators_share_expectation_the_closed_form_elbo(off_posterior_draws):
    model, draws, gap = off_posterior_draws
    exact_elbo = model.log_evidence() - gap  # log p(x) - KL(q || p(z|x))
    a, b = draws["monte_carlo"], draws["analytic_kl"]
    for estimate in (a, b):
        error = np.abs(estimate.mean(1) - exact_elbo)
        assert np.all(error < Z_SCORE * standard_error(estimate, 1)), error
    # Same noise for both: their difference has mean KL_mc - KL, zero in expectation.
    difference = a - b
    assert np.all(np.abs(difference.mean(1)) < Z_SCORE * standard_error(difference, 1))


def test_analytic_kl_estimator_has_lower_variance(off_posterior_draws):
    """The paper's claim for estimator B: the closed-form KL removes the KL's sampling noise.

    It is a claim about imperfect encoders (training): at the exact posterior, estimator A has
    zero variance (see `test_elbo_equals_log_evidence_at_the_exact_posterior`). Paired test on
    the same noise: u = (A - mean A)^2 - (B - mean B)^2 has mean Var A - Var B, which must
    exceed 4.5 of its standard errors.
    """
    _, draws, _ = off_posterior_draws
    a, b = draws["monte_carlo"], draws["analytic_kl"]
    u = (a - a.mean(1, keepdims=True)) ** 2 - (b - b.mean(1, keepdims=True)) ** 2
    assert np.all(u.mean(1) > Z_SCORE * standard_error(u, 1)), (b.var(1), a.var(1))
    assert np.all(b.var(1) < 0.85 * a.var(1)), b.var(1) / a.var(1)  # not by a hair: ~0.73


def test_num_samples_averages_draws():
    """L samples per datapoint: the estimator's variance falls as 1/L, its mean is unchanged."""
    model = LinearGaussian(orthogonal=True, seed=5)
    mean, cov = model.posterior()
    z_mean, z_stddev = mean - 0.5, np.sqrt(np.diag(cov)) * np.ones((3, 1))
    one, five = (
        single_draw_elbos(
            z_mean,
            z_stddev,
            model.log_likelihood_fn,
            model.x,
            20000,
            "analytic_kl",
            num_samples=L,
            seed=L,
        )["elbo"]
        for L in (1, 5)
    )
    diff_se = np.hypot(standard_error(one, 1), standard_error(five, 1))
    assert np.all(np.abs(one.mean(1) - five.mean(1)) < Z_SCORE * diff_se)
    ratio = one.var(1, ddof=1) / five.var(1, ddof=1)
    # Each sample variance has relative SE ~ sqrt((kurtosis - 1) / n); kurtosis < 10 here.
    relative_se = math.sqrt(2 * 9 / 20000)
    assert np.all(np.abs(ratio / 5 - 1) < Z_SCORE * relative_se), ratio


def test_unknown_estimator_is_rejected():
    expected = r"estimator.*\['analytic_kl', 'monte_carlo', 'analytic_entropy'\].*'mc'"
    with pytest.raises(ValueError, match=expected):
        objectives.elbo_terms(
            tf.zeros([1, 2]),
            tf.ones([1, 2]),
            tf.zeros([1, 1, 2]),
            lambda z: tf.zeros(tf.shape(z)[:2]),
            estimator="mc",
        )


# ------------------------------------------------------------------------------ ELBO <= log p(x)
def test_elbo_equals_log_evidence_at_the_exact_posterior():
    """q = p(z|x) makes the bound tight: estimator A is then log p(x) for EVERY draw (zero
    variance), estimator B equals it in expectation."""
    model = LinearGaussian(orthogonal=True, seed=6)
    mean, cov = model.posterior()
    assert np.allclose(cov, np.diag(np.diag(cov)))  # orthogonal W: a diagonal q can be exact
    z_stddev = np.sqrt(np.diag(cov)) * np.ones((3, 1))
    log_px = model.log_evidence()

    mc = single_draw_elbos(mean, z_stddev, model.log_likelihood_fn, model.x, 2000, "monte_carlo")[
        "elbo"
    ]
    np.testing.assert_allclose(mc, np.broadcast_to(log_px[:, None], mc.shape), rtol=2e-5, atol=2e-4)

    analytic = single_draw_elbos(
        mean, z_stddev, model.log_likelihood_fn, model.x, 20000, "analytic_kl"
    )["elbo"]
    error = np.abs(analytic.mean(1) - log_px)
    assert np.all(error < Z_SCORE * standard_error(analytic, 1)), error


@pytest.mark.parametrize("orthogonal", [True, False], ids=["diagonal_posterior", "full_posterior"])
@pytest.mark.parametrize("estimator", ["analytic_kl", "monte_carlo"])
def test_elbo_is_below_log_evidence_by_the_kl_to_the_posterior(orthogonal, estimator):
    """For any q: log p(x) - ELBO = KL(q || p(z|x)) >= 0 (checked within 4.5 SE)."""
    model = LinearGaussian(orthogonal=orthogonal, seed=7)
    mean, cov = model.posterior()
    rng = np.random.default_rng(8)
    for _ in range(3):  # three arbitrary encoders
        z_mean = mean + rng.normal(scale=0.7, size=mean.shape)
        z_stddev = rng.uniform(0.1, 1.5, size=mean.shape)
        draws = single_draw_elbos(
            z_mean,
            z_stddev,
            model.log_likelihood_fn,
            model.x,
            5000,
            estimator,
            seed=int(rng.integers(1 << 30)),
        )["elbo"]
        se = standard_error(draws, 1)
        gap = kl_gaussians(z_mean, z_stddev**2, mean, cov)
        log_px = model.log_evidence()
        assert np.all(np.abs(log_px - draws.mean(1) - gap) < Z_SCORE * se)
        assert np.all(draws.mean(1) < log_px + Z_SCORE * se)


def test_importance_weights_are_constant_at_the_exact_posterior():
    """log w = log p(x, z) - log q(z|x) = log p(x) for every z when q = p(z|x)."""
    model = LinearGaussian(orthogonal=True, seed=9)
    mean, cov = model.posterior()
    z_stddev = np.sqrt(np.diag(cov)) * np.ones((3, 1))
    noise = np.random.default_rng(0).standard_normal((64, 3, D_Z)).astype(np.float32)
    log_w = objectives.log_importance_weights(
        tf.constant(mean, tf.float32),
        tf.constant(z_stddev, tf.float32),
        tf.constant(noise),
        model.log_likelihood_fn(model.x),
    ).numpy()
    assert log_w.shape == (64, 3)
    np.testing.assert_allclose(
        log_w, np.broadcast_to(model.log_evidence(), log_w.shape), rtol=2e-5, atol=2e-4
    )


# ------------------------------------------------------------------------------ warm-up
def test_kl_weight_ramps_linearly_then_stays_at_beta():
    steps = np.arange(16)
    weights = [float(objectives.kl_weight(0.5, 10, tf.constant(k))) for k in steps]
    np.testing.assert_allclose(weights, 0.5 * np.minimum(1.0, (steps + 1) / 10), rtol=1e-6)
    assert float(objectives.kl_weight(0.5, 0, tf.constant(3))) == 0.5


# ------------------------------------------------------------------------------ distributions
def test_distribution_shapes():
    q = distributions.posterior(tf.zeros([3, 2]), tf.ones([3, 2]))
    p = distributions.prior(2)
    lik = distributions.likelihood("bernoulli", tf.zeros([4, 7, 5]), event_ndims=2)
    assert (q.batch_shape.as_list(), q.event_shape.as_list()) == ([3], [2])
    assert (p.batch_shape.as_list(), p.event_shape.as_list()) == ([], [2])
    assert (lik.batch_shape.as_list(), lik.event_shape.as_list()) == ([4], [7, 5])


def test_likelihoods_match_independent_formulas():
    rng = np.random.default_rng(10)
    location = rng.normal(size=(4, 3, 2)).astype(np.float32)
    x = rng.uniform(size=(4, 3, 2)).astype(np.float32)  # continuous x in [0, 1], as un-binarized
    p = 1 / (1 + np.exp(-location.astype(np.float64)))
    bernoulli = (x * np.log(p) + (1 - x) * np.log1p(-p)).sum((1, 2))
    got = distributions.likelihood("bernoulli", tf.constant(location), 2).log_prob(x).numpy()
    np.testing.assert_allclose(got, bernoulli, rtol=1e-5)

    scale = rng.uniform(0.1, 2, size=location.shape).astype(np.float32)
    gaussian = scipy.stats.norm(location, scale).logpdf(x).sum((1, 2))
    got = distributions.likelihood("gaussian", tf.constant(location), 2, scale=scale)
    np.testing.assert_allclose(got.log_prob(x).numpy(), gaussian, rtol=1e-5)
    np.testing.assert_allclose(
        distributions.likelihood_mean("bernoulli", tf.constant(location)).numpy(), p, rtol=1e-5
    )


def test_likelihood_rejects_unknown_names_and_missing_scale():
    with pytest.raises(ValueError, match=r"likelihood.*\['bernoulli', 'gaussian'\].*'poisson'"):
        distributions.likelihood("poisson", tf.zeros([1, 2]), 1)
    with pytest.raises(ValueError, match="scale"):
        distributions.likelihood("gaussian", tf.zeros([1, 2]), 1)
