"""The SGVB objective as pure functions of tensors (no model, no optimizer).

Kingma & Welling (2014) give two estimators of the evidence lower bound (ELBO)

    L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),   z_l = mu(x) + sigma(x) * eps_l.

* ``"monte_carlo"`` (their estimator A): 1/L sum_l [log p(x, z_l) - log q(z_l|x)].
* ``"analytic_kl"`` (their estimator B, the default): -KL in closed form
  + 1/L sum_l log p(x|z_l); same expectation, lower variance.

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


def elbo_terms(
    z_mean: tf.Tensor,
    z_stddev: tf.Tensor,
    noise: tf.Tensor,
    log_likelihood: LogLikelihoodFn,
    estimator: str = "analytic_kl",
) -> ElboTerms:
    """SGVB estimate of the ELBO and its two terms, per example.

    Args:
        z_mean: posterior means, [batch, latent_dim].
        z_stddev: posterior standard deviations (> 0), [batch, latent_dim].
        noise: standard normal draws eps, [L, batch, latent_dim].
        log_likelihood: maps z of shape [L, batch, latent_dim] to log p(x|z), shape [L, batch].
        estimator: "analytic_kl" or "monte_carlo".
    """
    q = distributions.posterior(z_mean, z_stddev)
    p = distributions.prior(z_mean.shape[-1], z_mean.dtype)
    z = reparameterize(z_mean, z_stddev, noise)
    reconstruction = tf.reduce_mean(log_likelihood(z), axis=0)
    if estimator == "analytic_kl":
        kl = q.kl_divergence(p)
    elif estimator == "monte_carlo":
        kl = tf.reduce_mean(q.log_prob(z) - p.log_prob(z), axis=0)
    else:
        raise ValueError(
            f"Unknown estimator {estimator!r}. Expected one of ['analytic_kl', 'monte_carlo']. "
            f"Received: estimator={estimator!r}"
        )
    return ElboTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


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


def kl_weight(beta: float, warmup_steps: int, step: tf.Tensor) -> tf.Tensor:
    """beta * min(1, (step + 1) / warmup_steps): linear KL warm-up, `beta` once warm."""
    beta = tf.constant(beta, tf.float32)
    if warmup_steps <= 0:
        return beta
    progress = (tf.cast(step, tf.float32) + 1.0) / float(warmup_steps)
    return beta * tf.minimum(1.0, progress)
