"""The SGVB objective as pure functions of tensors (no model, no optimizer).

Kingma & Welling (2014) give two estimators of the evidence lower bound (ELBO)

    L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),   z_l = mu(x) + sigma(x) * eps_l.

* ``"monte_carlo"`` (their estimator A): 1/L sum_l [log p(x, z_l) - log q(z_l|x)].
* ``"analytic_kl"`` (their estimator B, the default): -KL in closed form
  + 1/L sum_l log p(x|z_l); same expectation, lower variance.
* ``"analytic_entropy"``: 1/L sum_l log p(x, z_l) + H[q(z|x)] with the entropy in closed
  form, for priors without a closed-form KL (mixtures, the VampPrior).

and Burda et al. (2015) the importance-weighted bound log 1/k sum_k p(x, z_k) / q(z_k|x)
(`iwae_from_terms`), which is the Monte Carlo ELBO at k = 1 and rises to log p(x) with k.
Each objective takes its terms from `LatentTerms` (log p(x|z), log p(z), log q(z|x) of the
samples and the closed forms that exist), whichever posterior and prior made them.

A decoder enters only through ``log_likelihood(z) -> log p(x|z)``, so the maths is testable
with any closed-form model:

    >>> import tensorflow as tf
    >>> terms = elbo_terms(
    ...     tf.zeros([2, 3]), tf.ones([2, 3]), tf.zeros([1, 2, 3]),
    ...     log_likelihood=lambda z: tf.zeros(z.shape[:2]), estimator="analytic_kl")
    >>> terms.kl.numpy().tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from keras_vae import distributions

LogLikelihoodFn = Callable[[tf.Tensor], tf.Tensor]


class ElboTerms(NamedTuple):
    """Per-example terms, each of shape [batch], in nats."""

    elbo: tf.Tensor
    reconstruction: tf.Tensor  # E_q[log p(x|z)], estimated with L samples
    kl: tf.Tensor  # KL(q || p): closed form, or its L-sample Monte Carlo estimate


def reparameterize(z_mean: tf.Tensor, z_stddev: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """z = mu + sigma * eps; `noise` is [L, batch, latent_dim], the result too."""
    return z_mean + z_stddev * noise


class LatentTerms(NamedTuple):
    """What every objective is made of, for L (or k) samples z_l ~ q(z|x) per example."""

    log_likelihood: tf.Tensor  # log p(x|z_l), [L, batch]
    log_prior: tf.Tensor  # log p(z_l), [L, batch]
    log_posterior: tf.Tensor  # log q(z_l|x), [L, batch]
    entropy: tf.Tensor | None = None  # H[q(z|x)] in closed form, [batch], where it exists
    kl: tf.Tensor | None = None  # KL(q || p) in closed form, [batch], where it exists
    # log q(z_l|x) with q's parameters held constant (z_l still depends on them): DReG's
    log_posterior_frozen: tf.Tensor | None = None


class IwaeTerms(NamedTuple):
    """The importance-weighted bound and the ELBO terms of the same k samples, [batch] each."""

    bound: tf.Tensor  # log (1/k) sum_k w_k, w_k = p(x, z_k) / q(z_k|x) (beta = 1)
    tempered_bound: tf.Tensor  # the same with log w_k = log p(x|z_k) + w (log p(z_k) - log q)
    elbo: tf.Tensor  # (1/k) sum_k log w_k: the Monte Carlo ELBO of the same samples
    reconstruction: tf.Tensor  # (1/k) sum_k log p(x|z_k)
    kl: tf.Tensor  # (1/k) sum_k [log q(z_k|x) - log p(z_k)]


ESTIMATOR_NAMES = ("analytic_kl", "monte_carlo", "analytic_entropy")


def elbo_from_terms(terms: LatentTerms, estimator: str) -> ElboTerms:
    """The ELBO per example, by one of its three estimators (the same expectation):

    * "analytic_kl": 1/L sum_l log p(x|z_l) - KL(q || p) (needs `terms.kl`);
    * "monte_carlo": 1/L sum_l [log p(x|z_l) + log p(z_l) - log q(z_l|x)];
    * "analytic_entropy": 1/L sum_l [log p(x|z_l) + log p(z_l)] + H[q] (needs `terms.entropy`).

    `kl` is reported as the matching estimate of KL(q || p) in every case.
    """
    reconstruction = tf.reduce_mean(terms.log_likelihood, axis=0)
    if estimator == "analytic_kl" and terms.kl is not None:
        kl = terms.kl
    elif estimator == "monte_carlo":
        kl = tf.reduce_mean(terms.log_posterior - terms.log_prior, axis=0)
    elif estimator == "analytic_entropy" and terms.entropy is not None:
        kl = -tf.reduce_mean(terms.log_prior, axis=0) - terms.entropy
    elif estimator in ESTIMATOR_NAMES:
        raise ValueError(
            f"The {estimator} estimator needs the closed form that these parts lack "
            f"(KL for analytic_kl, the entropy of q for analytic_entropy); use monte_carlo. "
            f"Received: estimator={estimator!r}"
        )
    else:
        raise ValueError(
            f"Unknown estimator {estimator!r}. Expected one of {list(ESTIMATOR_NAMES)}. "
            f"Received: estimator={estimator!r}"
        )
    return ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def iwae_from_terms(terms: LatentTerms, kl_weight: tf.Tensor | float = 1.0) -> IwaeTerms:
    """The IWAE bound of Burda et al. (2015, eq. 8) from k samples, log (1/k) sum_k w_k.

    `kl_weight` (beta, warm-up) tempers log p(z) - log q(z|x) inside each weight for the
    training loss (`tempered_bound`); `bound` is always the untempered one. With k = 1 both
    equal the Monte Carlo ELBO (with the same weight) exactly.

    Example:
        >>> t = LatentTerms(tf.zeros([1, 2]), tf.fill([1, 2], -1.0), tf.fill([1, 2], -1.5))
        >>> iwae_from_terms(t).bound.numpy().tolist()
        [0.5, 0.5]
    """
    log_ratio = terms.log_prior - terms.log_posterior
    log_w = terms.log_likelihood + log_ratio
    kl_weight = tf.cast(kl_weight, log_w.dtype)
    return IwaeTerms(
        bound=log_mean_exp(log_w, axis=0),
        tempered_bound=log_mean_exp(terms.log_likelihood + kl_weight * log_ratio, axis=0),
        elbo=tf.reduce_mean(log_w, axis=0),
        reconstruction=tf.reduce_mean(terms.log_likelihood, axis=0),
        kl=-tf.reduce_mean(log_ratio, axis=0),
    )


def dreg_surrogate(terms: LatentTerms, kl_weight: tf.Tensor | float = 1.0) -> tf.Tensor:
    """The doubly reparameterized IWAE surrogate (Tucker, Lawson, Gu & Maddison 2018, eq. 6),
    [batch]: sum_k stop(w~_k^2) log w_k, where log w_k uses `log_posterior_frozen`. Its value
    means nothing; its gradient with respect to the encoder, through z_k alone, is an unbiased
    estimate of the (tempered) IWAE bound's, whose variance falls as k grows.

    Example:
        >>> t = LatentTerms(tf.zeros([2, 1]), tf.zeros([2, 1]), None,
        ...                 log_posterior_frozen=tf.math.log([[1.0], [3.0]]))
        >>> round(float(dreg_surrogate(t)[0]), 4)  # w = [1, 1/3]: w~ = [.75, .25]
        -0.0687
    """
    log_w = terms.log_likelihood + kl_weight * (terms.log_prior - terms.log_posterior_frozen)
    normalized = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
    return tf.reduce_sum(tf.square(normalized) * log_w, axis=0)


def gaussian_latent_terms(
    z_mean: tf.Tensor,
    z_stddev: tf.Tensor,
    noise: tf.Tensor,
    log_likelihood: LogLikelihoodFn,
    estimator: str = "monte_carlo",
) -> LatentTerms:
    """`LatentTerms` of the paper's model: q = N(mu, sigma^2), p(z) = N(0, I).

    Only the closed form the estimator uses is computed (`kl` for "analytic_kl", `entropy`
    for "analytic_entropy").
    """
    q = distributions.posterior(z_mean, z_stddev)
    p = distributions.prior(z_mean.shape[-1], z_mean.dtype)
    z = reparameterize(z_mean, z_stddev, noise)
    log_px = log_likelihood(z)
    if estimator == "analytic_kl":
        return LatentTerms(log_px, None, None, kl=q.kl_divergence(p))
    entropy = q.entropy() if estimator == "analytic_entropy" else None
    return LatentTerms(log_px, p.log_prob(z), q.log_prob(z), entropy=entropy)


def elbo_terms(
    z_mean: tf.Tensor,
    z_stddev: tf.Tensor,
    noise: tf.Tensor,
    log_likelihood: LogLikelihoodFn,
    estimator: str = "analytic_kl",
) -> ElboTerms:
    """SGVB estimate of the ELBO and its two terms, per example, for the paper's model.

    Args:
        z_mean: posterior means, [batch, latent_dim].
        z_stddev: posterior standard deviations (> 0), [batch, latent_dim].
        noise: standard normal draws eps, [L, batch, latent_dim].
        log_likelihood: maps z of shape [L, batch, latent_dim] to log p(x|z), shape [L, batch].
        estimator: "analytic_kl", "monte_carlo" or "analytic_entropy".
    """
    if estimator not in ESTIMATOR_NAMES:
        raise ValueError(
            f"Unknown estimator {estimator!r}. Expected one of {list(ESTIMATOR_NAMES)}. "
            f"Received: estimator={estimator!r}"
        )
    terms = gaussian_latent_terms(z_mean, z_stddev, noise, log_likelihood, estimator)
    return elbo_from_terms(terms, estimator)


def log_importance_weights(
    z_mean: tf.Tensor,
    z_stddev: tf.Tensor,
    noise: tf.Tensor,
    log_likelihood: LogLikelihoodFn,
) -> tf.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), shape [K, batch]."""
    q = distributions.posterior(z_mean, z_stddev)
    p = distributions.prior(z_mean.shape[-1], z_mean.dtype)
    z = reparameterize(z_mean, z_stddev, noise)
    return log_likelihood(z) + p.log_prob(z) - q.log_prob(z)


class ImportanceWeightedTerms(NamedTuple):
    """Per-example results of K importance samples, each of shape [batch], in nats."""

    log_likelihood: tf.Tensor  # log (1/K) sum_k w_k: the importance-weighted estimate of log p(x)
    elbo: tf.Tensor  # (1/K) sum_k log w_k: a K-sample estimate of the ELBO (estimator A)
    mc_stderr: tf.Tensor  # delta-method Monte Carlo standard error of `log_likelihood`


def log_mean_exp(values: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """log(mean(exp(values))) along `axis`, computed stably with log-sum-exp.

    Example:
        >>> float(log_mean_exp(tf.constant([-1000.0, -1000.0])))
        -1000.0
    """
    count = tf.cast(tf.shape(values)[axis], values.dtype)
    return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(count)


def log_add_exp(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """log(exp(a) + exp(b)) elementwise, exact for -inf inputs and without overflow.

    Example:
        >>> float(log_add_exp(tf.constant(-float("inf")), tf.constant(-800.0)))
        -800.0
    """
    high = tf.maximum(a, b)
    # Both -inf: shift by 0 so that exp(-inf - 0) = 0 rather than exp(nan).
    shift = tf.where(tf.math.is_finite(high), high, tf.zeros_like(high))
    return shift + tf.math.log(tf.exp(a - shift) + tf.exp(b - shift))


def importance_weighted_terms(
    z_mean: tf.Tensor,
    z_stddev: tf.Tensor,
    log_likelihood: LogLikelihoodFn,
    num_samples: int,
    chunk_size: int,
    noise_fn: Callable[[tf.Tensor], tf.Tensor],
    log_weights_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> ImportanceWeightedTerms:
    """Importance-weighted estimate of log p(x) with K samples, in chunks of `chunk_size`.

    log p(x) ~ log (1/K) sum_k w_k,  w_k = p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)
    (Burda et al., 2015). Memory is that of ONE chunk whatever K: the sum runs as a log-sum-exp
    accumulator over chunks in a `tf.while_loop`, so nothing underflows even when log w is
    around -10^4. Samples past K in the last chunk are masked out (weight 0).

    Args:
        z_mean: posterior means, [batch, latent_dim].
        z_stddev: posterior standard deviations, [batch, latent_dim].
        log_likelihood: maps z of shape [chunk, batch, latent_dim] to log p(x|z), [chunk, batch].
        num_samples: K >= 1.
        chunk_size: samples per chunk (>= 1; more than K wastes the masked part of a chunk).
        noise_fn: maps a chunk index (int32 scalar tensor) to standard normal draws of shape
            [chunk_size, batch, latent_dim]; chunk i holds samples i * chunk_size + (0, 1, ...).
        log_weights_fn: maps those draws to log w [chunk_size, batch] for models other than
            the paper's (any posterior and prior part). Default None: `log_importance_weights`
            of the Gaussian posterior and N(0, I) prior.

    Returns:
        `ImportanceWeightedTerms`: the log-likelihood estimate, the K-sample ELBO estimate
        (never above it, by Jensen's inequality) and the estimate's Monte Carlo standard error
        sqrt((mean(w^2) / mean(w)^2 - 1) / K) (delta method; unreliable when few weights dominate).

    Example:
        >>> terms = importance_weighted_terms(
        ...     tf.zeros([2, 3]), tf.ones([2, 3]), lambda z: tf.zeros(tf.shape(z)[:2]),
        ...     num_samples=10, chunk_size=4, noise_fn=lambda i: tf.zeros([4, 2, 3]))
        >>> terms.log_likelihood.numpy().tolist()  # q = p(z), p(x|z) = 1: log p(x) = 0
        [0.0, 0.0]
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            "Received an invalid value for `num_samples`, expected a positive integer. "
            f"Received: num_samples={num_samples!r}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            "Received an invalid value for `chunk_size`, expected a positive integer. "
            f"Received: chunk_size={chunk_size!r}"
        )
    num_chunks = -(-num_samples // chunk_size)
    dtype = z_mean.dtype
    batch = tf.shape(z_mean)[0]
    minus_inf = tf.fill([batch], tf.constant(-float("inf"), dtype))
    offsets = tf.range(chunk_size)

    def step(
        i: tf.Tensor, log_sum_w: tf.Tensor, log_sum_w2: tf.Tensor, sum_log_w: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        noise = noise_fn(i)
        if noise.shape[0] is not None and noise.shape[0] != chunk_size:
            raise ValueError(
                f"`noise_fn` must return [chunk_size={chunk_size}, batch, latent_dim] draws. "
                f"Received: shape {noise.shape}"
            )
        if log_weights_fn is None:
            log_w = log_importance_weights(z_mean, z_stddev, noise, log_likelihood)
        else:
            log_w = log_weights_fn(noise)
        valid = (i * chunk_size + offsets < num_samples)[:, tf.newaxis]
        masked = tf.where(valid, log_w, -float("inf"))
        log_sum_w = log_add_exp(log_sum_w, tf.reduce_logsumexp(masked, axis=0))
        log_sum_w2 = log_add_exp(log_sum_w2, tf.reduce_logsumexp(2.0 * masked, axis=0))
        sum_log_w += tf.reduce_sum(tf.where(valid, log_w, tf.zeros_like(log_w)), axis=0)
        return i + 1, log_sum_w, log_sum_w2, sum_log_w

    _, log_sum_w, log_sum_w2, sum_log_w = tf.while_loop(
        lambda i, *_: i < num_chunks,
        step,
        (tf.constant(0), minus_inf, minus_inf, tf.zeros([batch], dtype)),
        maximum_iterations=num_chunks,
    )
    log_k = tf.math.log(tf.constant(num_samples, dtype))
    log_mean_w = log_sum_w - log_k
    # mean(w^2) / mean(w)^2 >= 1 in exact arithmetic; clip rounding below 1.
    relative_variance = tf.maximum(tf.exp(log_sum_w2 - log_k - 2.0 * log_mean_w) - 1.0, 0.0)
    return ImportanceWeightedTerms(
        log_likelihood=log_mean_w,
        elbo=sum_log_w / tf.cast(num_samples, dtype),
        mc_stderr=tf.sqrt(relative_variance / tf.cast(num_samples, dtype)),
    )


def kl_weight(beta: float, warmup_steps: int, step: tf.Tensor | int) -> tf.Tensor:
    """beta * min(1, (step + 1) / warmup_steps): linear KL warm-up, `beta` once warm."""
    beta = tf.constant(beta, tf.float32)
    if warmup_steps <= 0:
        return beta
    progress = (tf.cast(step, tf.float32) + 1.0) / float(warmup_steps)
    return beta * tf.minimum(1.0, progress)
