"""The importance-weighted estimate of log p(x): closed-form checks, chunking, real MNIST.

The linear-Gaussian model p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I) has the closed form
log p(x) = log N(x; b, W W^T + s^2 I) (scipy.stats), and with a diagonal Gaussian q(z|x) the
ELBO is closed-form too. That is the reference the estimator must meet: E[estimate] = ELBO for
K = 1, it rises with K, and for large K it reaches log p(x) within its standard error.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from scipy.special import logsumexp

from keras_vae import execution, objectives
from keras_vae.data import load_splits, to_unit_interval
from keras_vae.model import VAE

F32_EPS = float(np.finfo(np.float32).eps)


class LinearGaussian:
    """p(z) = N(0, I_L), p(x|z) = N(W z + b, s^2 I_D), with a deliberately imperfect q(z|x).

    q(z|x) has the exact posterior's mean and its marginal standard deviations inflated by
    `inflation`: a diagonal Gaussian, as a VAE's encoder would give, whose importance weights
    have finite variance (q is wider than the correlated posterior in every direction).
    """

    def __init__(self, data_dim=4, latent_dim=2, scale=0.5, inflation=1.3, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(data_dim, latent_dim))
        self.b = rng.normal(size=data_dim)
        self.s = scale
        self.latent_dim = latent_dim
        precision = np.eye(latent_dim) + self.W.T @ self.W / scale**2
        self.post_cov = np.linalg.inv(precision)
        self.inflation = inflation

    def sample_x(self, n, seed):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.latent_dim))
        return z @ self.W.T + self.b + self.s * rng.normal(size=(n, len(self.b)))

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * np.eye(len(self.b))
        return stats.multivariate_normal(self.b, cov).logpdf(x)

    def q(self, x):
        mean = (x - self.b) @ self.W @ self.post_cov.T / self.s**2
        stddev = self.inflation * np.sqrt(np.diag(self.post_cov))
        return mean, np.broadcast_to(stddev, mean.shape).copy()

    def elbo(self, x):
        """E_q[log p(x|z) + log p(z) - log q(z)] in closed form."""
        mean, stddev = self.q(x)
        d, latent = len(self.b), self.latent_dim
        residual = x - self.b - mean @ self.W.T
        trace = np.einsum("dl,nl,dl->n", self.W, stddev**2, self.W)
        log_lik = -0.5 * d * math.log(2 * math.pi * self.s**2)
        log_lik -= (np.sum(residual**2, axis=1) + trace) / (2 * self.s**2)
        log_prior = -0.5 * latent * math.log(2 * math.pi)
        log_prior -= 0.5 * (np.sum(mean**2, axis=1) + np.sum(stddev**2, axis=1))
        entropy = 0.5 * latent * math.log(2 * math.pi * math.e) + np.sum(np.log(stddev), axis=1)
        return log_lik + log_prior + entropy

    def log_likelihood_fn(self, x):
        x = tf.constant(x, tf.float32)
        W, b = tf.constant(self.W, tf.float32), tf.constant(self.b, tf.float32)

        def log_likelihood(z):  # z: [K, batch, L] -> [K, batch]
            mean = tf.einsum("kbl,dl->kbd", z, W) + b
            return tf.reduce_sum(
                -0.5 * ((x - mean) / self.s) ** 2 - math.log(self.s * math.sqrt(2 * math.pi)),
                axis=-1,
            )

        return log_likelihood

    def estimate(self, x, num_samples, chunk_size=None, seed=0):
        """`objectives.importance_weighted_terms` on the rows of `x`, each with its own noise."""
        mean, stddev = self.q(x)
        chunk_size = chunk_size or num_samples
        seed = tf.constant([seed, 0], tf.int32)
        shape = [chunk_size, len(x), self.latent_dim]

        def noise_fn(i):
            return tf.random.stateless_normal(shape, seed=tf.random.fold_in(seed, i))

        terms = objectives.importance_weighted_terms(
            tf.constant(mean, tf.float32),
            tf.constant(stddev, tf.float32),
            self.log_likelihood_fn(x),
            num_samples,
            chunk_size,
            noise_fn,
        )
        return {name: value.numpy().astype(np.float64) for name, value in terms._asdict().items()}


@pytest.fixture(scope="module")
def model():
    return LinearGaussian()


@pytest.fixture(scope="module")
def x_one(model):
    """One data point, replicated: every row gets independent noise, so rows are replicates."""
    return model.sample_x(1, seed=1)


def mean_and_stderr(values):
    return values.mean(), values.std(ddof=1) / math.sqrt(len(values))


def test_closed_forms_agree(model, x_one):
    """The reference itself: ELBO = log p(x) - KL(q || posterior) < log p(x)."""
    _, stddev = model.q(x_one)  # q's mean is the exact posterior mean: only covariances differ
    q = np.diag(stddev[0] ** 2)
    p = model.post_cov
    kl = 0.5 * (
        np.trace(np.linalg.inv(p) @ q)
        - model.latent_dim
        + np.log(np.linalg.det(p) / np.linalg.det(q))
    )
    np.testing.assert_allclose(model.elbo(x_one)[0], model.log_px(x_one) - kl, rtol=1e-10)
    assert kl > 0.05


def test_single_sample_estimate_is_the_elbo_below_log_px(model, x_one):
    """K = 1: E[estimate] is the ELBO, detectably below log p(x)."""
    replicates = 4000
    x = np.repeat(x_one, replicates, axis=0)
    estimate = model.estimate(x, num_samples=1, seed=2)["log_likelihood"]
    mean, stderr = mean_and_stderr(estimate)
    log_px, elbo = model.log_px(x_one), model.elbo(x_one)[0]
    assert abs(mean - elbo) < 4 * stderr, (mean, elbo, stderr)
    assert mean + 4 * stderr < log_px, (mean, stderr, log_px)


def test_estimate_rises_with_k_and_stays_below_log_px(model, x_one):
    """E[estimate_K] <= log p(x) for every K, weakly increasing in K (within noise)."""
    replicates = 1000
    x = np.repeat(x_one, replicates, axis=0)
    log_px = model.log_px(x_one)
    means, stderrs = [], []
    for i, k in enumerate([1, 3, 10, 30, 100, 300]):
        estimate = model.estimate(x, num_samples=k, chunk_size=50, seed=10 + i)
        mean, stderr = mean_and_stderr(estimate["log_likelihood"])
        assert mean <= log_px + 4 * stderr, (k, mean, stderr, log_px)
        # Jensen's inequality for the same draws: log mean w >= mean log w, always.
        assert np.all(estimate["log_likelihood"] >= estimate["elbo"] - 1e-5)
        means.append(mean)
        stderrs.append(stderr)
    for i in range(len(means) - 1):
        tolerance = 4 * math.hypot(stderrs[i], stderrs[i + 1])
        assert means[i + 1] >= means[i] - tolerance, (i, means, stderrs)
    assert means[-1] - means[0] > 4 * math.hypot(stderrs[0], stderrs[-1])


def test_large_k_converges_to_log_px_within_its_standard_error(model):
    """K = 5000 on 20 data points: each within 4 of its own (delta-method) standard errors.

    The bias of log-mean-exp is about -se^2 / 2, far below se at this K, so the check is a
    plain z-test. The reported standard error must also match the spread of replicates.
    """
    x = model.sample_x(20, seed=3)
    estimate = model.estimate(x, num_samples=5000, chunk_size=500, seed=4)
    error = estimate["log_likelihood"] - model.log_px(x)
    se = estimate["mc_stderr"]
    assert np.all(se > 0) and np.all(se < 0.05), se
    assert np.all(np.abs(error) < 4 * se), (error, se)
    assert abs(error.mean()) < 4 * math.sqrt(np.sum(se**2)) / len(x)

    replicates = np.repeat(x[:1], 200, axis=0)
    spread = model.estimate(replicates, num_samples=5000, chunk_size=500, seed=5)
    empirical = spread["log_likelihood"].std(ddof=1)
    reported = np.median(spread["mc_stderr"])
    # The sample std of 200 replicates is within ~10% of the truth (its own relative error is
    # 1/sqrt(2 * 199) = 5%); the delta method is exact to first order at this K.
    assert 0.75 < empirical / reported < 1.33, (empirical, reported)


def test_chunked_equals_unchunked(model):
    """Same draws in chunks of 1, 7, 64, K or more equal one log-mean-exp over all K draws.

    Tolerance: float32 rounding of a log-sum-exp over K terms of size |log w| <= M is a few
    ulps of M per accumulation step, so 32 * eps * M bounds it with a wide margin.
    """
    x = model.sample_x(5, seed=6)
    mean, stddev = model.q(x)
    num_samples = 1000
    noise = tf.random.stateless_normal([num_samples, len(x), model.latent_dim], seed=[7, 0])
    args = (tf.constant(mean, tf.float32), tf.constant(stddev, tf.float32))
    log_likelihood = model.log_likelihood_fn(x)
    log_w = objectives.log_importance_weights(*args, noise, log_likelihood).numpy()
    reference = logsumexp(log_w.astype(np.float64), axis=0) - math.log(num_samples)
    tolerance = 32 * F32_EPS * np.abs(log_w).max()
    for chunk_size in (1, 7, 64, 1000, 5000):
        padding = -(-num_samples // chunk_size) * chunk_size - num_samples
        padded = tf.pad(noise, [[0, padding], [0, 0], [0, 0]])

        def noise_fn(i, padded=padded, chunk_size=chunk_size):
            return tf.slice(padded, [i * chunk_size, 0, 0], [chunk_size, -1, -1])

        terms = tf.function(objectives.importance_weighted_terms)(
            *args, log_likelihood, num_samples, chunk_size, noise_fn
        )
        np.testing.assert_allclose(terms.log_likelihood.numpy(), reference, rtol=0, atol=tolerance)
        np.testing.assert_allclose(terms.elbo.numpy(), log_w.mean(axis=0), rtol=0, atol=tolerance)


def test_stable_when_log_weights_are_huge_and_negative(model):
    """log w near -10^4: exp underflows to 0 in float32 and float64, the estimate must not."""
    x = model.sample_x(3, seed=8)
    mean, stddev = model.q(x)
    shift = -1.0e4
    base = model.log_likelihood_fn(x)
    noise = tf.random.stateless_normal([200, 3, model.latent_dim], seed=[9, 0])
    terms = {}
    for name, fn in (("base", base), ("shifted", lambda z: base(z) + shift)):
        terms[name] = objectives.importance_weighted_terms(
            tf.constant(mean, tf.float32),
            tf.constant(stddev, tf.float32),
            fn,
            200,
            64,
            lambda i: tf.pad(noise, [[0, 56], [0, 0], [0, 0]])[i * 64 : (i + 1) * 64],
        )
    with np.errstate(divide="ignore"):
        naive = np.log(np.mean(np.exp(np.full(200, shift))))
    assert naive == -np.inf  # what a direct computation gives
    shifted = terms["shifted"].log_likelihood.numpy()
    assert np.all(np.isfinite(shifted))
    np.testing.assert_allclose(
        shifted, terms["base"].log_likelihood.numpy() + shift, rtol=0, atol=8 * F32_EPS * 1e4
    )
    # After the shift float32 keeps log w only to +-ulp(1e4)/2 = 5e-4, which moves each
    # weight by 0.05% and the weights' relative spread (hence the standard error) by ~1%.
    np.testing.assert_allclose(terms["shifted"].mc_stderr, terms["base"].mc_stderr, rtol=2e-2)


def test_log_add_exp_and_log_mean_exp():
    a = tf.constant([-np.inf, -np.inf, 0.0, -1000.0, 800.0])
    b = tf.constant([-np.inf, 3.0, 0.0, -1001.0, 800.0])
    expected = np.logaddexp(a.numpy().astype(np.float64), b.numpy().astype(np.float64))
    np.testing.assert_allclose(objectives.log_add_exp(a, b), expected, rtol=1e-6)
    values = tf.constant([[-2000.0, 1.0], [-2001.0, 2.0]])
    expected = logsumexp(values.numpy(), axis=0) - math.log(2)
    np.testing.assert_allclose(objectives.log_mean_exp(values, axis=0), expected, rtol=1e-6)


def test_invalid_sample_counts_are_rejected():
    args = (tf.zeros([1, 2]), tf.ones([1, 2]), lambda z: tf.zeros(tf.shape(z)[:2]))
    for num_samples, chunk_size in ((0, 1), (-5, 1), (2.5, 1), (10, 0), (True, 1)):
        with pytest.raises(ValueError, match="expected a positive integer"):
            objectives.importance_weighted_terms(
                *args, num_samples, chunk_size, lambda i: tf.zeros([1, 1, 2])
            )


# ---------------------------------------------------------------------------- the VAE method
@pytest.fixture(scope="module")
def small_vae():
    vae = VAE(data_shape=(6, 5), latent_dim=3, hidden_units=(16,), seed=1)
    x = (np.random.default_rng(0).random((4, 6, 5)) < 0.4).astype(np.float32)
    return vae, x


def reference_terms(vae, x, noise):
    """log p(x) estimate in float64 NumPy/SciPy from the encoder's and decoder's outputs."""
    z_mean, z_stddev = (t.numpy().astype(np.float64) for t in vae.encode(x))
    z = z_mean[:, None] + z_stddev[:, None] * noise.astype(np.float64)  # [batch, K, latent]
    logits = vae.decoder(z.reshape(-1, vae.latent_dim).astype(np.float32)).numpy()
    logits = logits.astype(np.float64).reshape(len(x), noise.shape[1], -1)
    flat = x.reshape(len(x), 1, -1)
    log_px_z = np.sum(flat * logits - np.logaddexp(0, logits), axis=-1)
    log_pz = stats.norm.logpdf(z).sum(-1)
    log_qz = stats.norm.logpdf(z, z_mean[:, None], z_stddev[:, None]).sum(-1)
    log_w = log_px_z + log_pz - log_qz
    return logsumexp(log_w, axis=1) - math.log(noise.shape[1]), log_w


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_vae_log_likelihood_matches_a_numpy_reference_for_any_chunk(small_vae, jit_compile):
    vae, x = small_vae
    noise = np.random.default_rng(2).standard_normal((len(x), 300, 3)).astype(np.float32)
    reference, log_w = reference_terms(vae, x, noise)
    tolerance = 32 * F32_EPS * np.abs(log_w).max()
    for chunk_size in (1, 16, 300, None):
        terms = vae.importance_weighted_terms(
            x, 300, chunk_size, noise=noise, jit_compile=jit_compile
        )
        np.testing.assert_allclose(terms.log_likelihood, reference, rtol=0, atol=tolerance)
        np.testing.assert_allclose(terms.elbo, log_w.mean(axis=1), rtol=0, atol=tolerance)


def test_importance_sampling_uses_xla_only_on_accelerators(small_vae):
    """Measured on CPU, the graph beats XLA for this loop (benchmarks/evaluate_speed.py)."""
    vae, x = small_vae
    assert execution.resolve_importance_jit_compile("auto") is execution.has_accelerator()
    assert execution.resolve_importance_jit_compile(True) is True
    with pytest.raises(ValueError, match="jit_compile"):
        execution.resolve_importance_jit_compile("xla")
    auto = vae.log_likelihood(x, 200, chunk_size=30, seed=5).numpy()
    chosen = vae.log_likelihood(
        x, 200, chunk_size=30, seed=5, jit_compile=execution.has_accelerator()
    ).numpy()
    np.testing.assert_array_equal(auto, chosen)  # the same compiled function, the same draws


def test_vae_log_likelihood_seeds(small_vae):
    vae, x = small_vae
    first = vae.log_likelihood(x, 200, chunk_size=30, seed=5).numpy()
    np.testing.assert_array_equal(first, vae.log_likelihood(x, 200, chunk_size=30, seed=5))
    other = vae.log_likelihood(x, 200, chunk_size=30, seed=6).numpy()
    assert not np.array_equal(first, other)
    fresh = [vae.log_likelihood(x, 200, chunk_size=30).numpy() for _ in range(2)]
    assert not np.array_equal(*fresh)  # seed=None advances the model's seed generator


def test_vae_log_likelihood_rejects_bad_arguments(small_vae):
    vae, x = small_vae
    with pytest.raises(ValueError, match="num_samples=0"):
        vae.log_likelihood(x, 0)
    with pytest.raises(ValueError, match="chunk_size=-1"):
        vae.log_likelihood(x, 10, chunk_size=-1)
    with pytest.raises(ValueError, match=r"noise.shape=\(4, 9, 3\)"):
        vae.log_likelihood(x, 10, noise=np.zeros((4, 9, 3)))
    with pytest.raises(ValueError, match="pair of ints"):
        vae.log_likelihood(x, 10, seed=[1, 2, 3])


def test_default_chunk_keeps_a_chunk_near_the_memory_budget():
    vae = VAE(data_shape=(28, 28), latent_dim=2, hidden_units=(8,))
    from keras_vae.importance import CHUNK_BYTES

    for batch in (1, 100, 1000, 10**6):
        chunk = vae.default_chunk_size(batch)
        assert chunk >= 1
        assert chunk * batch * 784 * 4 <= max(CHUNK_BYTES, batch * 784 * 4)
        assert (chunk + 1) * batch * 784 * 4 > CHUNK_BYTES


# ---------------------------------------------------------------------------- real MNIST
@pytest.mark.slow
def test_log_likelihood_is_above_the_elbo_on_binarized_mnist(shared_data_dir):
    """A briefly trained 784-200-10 VAE: the K=500 estimate exceeds an independent ELBO estimate.

    The ELBO here is the model's own estimator (analytic KL, fresh noise, averaged over 8
    draws), independent of the importance samples; the paired difference must exceed 4 of its
    standard errors. Log-probabilities of binary data are <= 0, so the estimate must be too.
    """
    splits = load_splits(str(shared_data_dir / "binarized-mnist" / "binarized_mnist.npz"))
    train = to_unit_interval(splits["train"].images[:10000])
    test = to_unit_interval(splits["test"].images[::20])  # 500 images of every class
    vae = VAE(data_shape=(784,), latent_dim=10, hidden_units=(200,), seed=0)
    vae.compile(optimizer="adam")
    vae.fit(train, batch_size=100, epochs=2, verbose=0, shuffle=True)

    log_px = vae.log_likelihood(test, num_samples=500, seed=0).numpy().astype(np.float64)
    elbo = np.mean([vae.elbo_terms(tf.constant(test)).elbo.numpy() for _ in range(8)], axis=0)
    gap = log_px - elbo
    mean, stderr = mean_and_stderr(gap)
    assert mean > 4 * stderr, (mean, stderr)
    assert np.all(log_px < 0)
    assert -250 < log_px.mean() < -80, log_px.mean()  # trained: far above 784 log 0.5 = -543
