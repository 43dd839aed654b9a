"""Per-example anomaly scores of a trained VAE: ELBO, importance-weighted log p(x), the
reconstruction term and the KL term, in nats.

Every example is scored with the SAME K standard normal draws eps_1..eps_K (`score_noise`, a
fixed function of a seed): z_k = the posterior part's sample of eps_k, w_k = p(x|z_k) p(z_k) /
q(z_k|x), and

* ``log_likelihood`` = log (1/K) sum_k w_k (Burda et al., 2015; rises to log p(x) with K);
* ``reconstruction`` = (1/K) sum_k log p(x|z_k), the expected log-likelihood term;
* ``kl`` = KL(q(z|x) || p(z)) by the model's estimator (closed form for the paper's model,
  else its Monte Carlo or analytic-entropy estimate on the same draws);
* ``elbo`` = reconstruction - kl, the model's own ELBO (what `test_step` reports).

So a row's scores depend on that row alone: the same x gets the same numbers whatever else is
in its batch, and exported scorers (TF Serving, LiteRT) reproduce them with the noise baked in.
``elbo``, ``log_likelihood`` and ``reconstruction`` are high for normal data and ``kl`` is low
(`ANOMALY_IF` says which way each score points to an anomaly).

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> scores = score(vae, tf.fill((3, 4), 0.5), num_samples=10)
>>> [tuple(s.shape) for s in scores]
[(3,), (3,), (3,), (3,)]
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae import distributions, objectives
from keras_vae.parts.priors import MixtureParams
from keras_vae.signatures import ANOMALY_IF, DEFAULT_SCORE_SAMPLES, MAX_SCORE_SAMPLES, SCORE_NAMES

if TYPE_CHECKING:
    from keras_vae.tensor_types import LabelsLike, TensorLike

__all__ = [
    "ANOMALY_IF",
    "DEFAULT_SCORE_SAMPLES",
    "MAX_SCORE_SAMPLES",
    "SCORE_NAMES",
    "Scores",
    "bounded_score_graph",
    "score",
    "score_graph",
    "score_noise",
]

DEFAULT_SCORE_SEED = 0
# Second word of the Philox key [seed, 2] of the score noise (the exported decoder's sample
# noise uses 0 and its component uniforms 1).
SCORE_SEED_STREAM = 2
# A chunk of rows x samples is scored at once; its decoder output is about this big.
CHUNK_BYTES = 8 * 2**20
_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Scores(NamedTuple):
    """Per-example scores, each [batch] float32, in nats (see the module docstring)."""

    elbo: tf.Tensor
    log_likelihood: tf.Tensor
    reconstruction: tf.Tensor
    kl: tf.Tensor


def check_score_samples(value: Any) -> int:
    """`value` once it is an integer in [1, MAX_SCORE_SAMPLES] (importance samples K).

    Example:
        >>> check_score_samples(100)
        100
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        value_ok = False
    else:
        value_ok = 1 <= int(value) <= MAX_SCORE_SAMPLES
    if not value_ok:
        raise ValueError(
            "Received an invalid value for the number of score samples, expected an integer "
            f"in [1, {MAX_SCORE_SAMPLES}] (importance samples K per example). "
            f"Received: {value!r}"
        )
    return int(value)


def check_seed(seed: Any) -> int:
    """`seed` once it is an int64 integer.

    Example:
        >>> check_seed(0)
        0
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected `seed` to be an integer. Received: seed={seed!r}")
    if not -(2**63) <= int(seed) < 2**63:
        raise ValueError(f"Expected `seed` in the int64 range. Received: seed={seed!r}")
    return int(seed)


def score_noise(latent_dim: int, num_samples: int, seed: int = DEFAULT_SCORE_SEED) -> tf.Tensor:
    """The K standard normal draws every example is scored with, [K, latent_dim] float32:
    ``tf.random.stateless_normal([K, latent_dim], seed=[seed, 2], alg="philox")``, the same in
    any process and on any machine with the same TensorFlow.

    Example:
        >>> bool(tf.reduce_all(score_noise(3, 5, seed=1) == score_noise(3, 5, seed=1)))
        True
    """
    key = tf.constant([check_seed(seed), SCORE_SEED_STREAM], tf.int64)
    shape = [check_score_samples(num_samples), int(latent_dim)]
    return tf.random.stateless_normal(shape, seed=key, dtype=tf.float32, alg="philox")


def _values_per_sample(model: keras.Model) -> int:
    """Floats one (row, sample) pair holds at its largest: the decoder output, or a mixture
    prior's per-component densities."""
    prior_values = getattr(model, "prior_components", 0) * model.latent_dim
    return max(math.prod(model.data_shape), prior_values, 1)


def score_sample_chunk(model: keras.Model, num_samples: int) -> int:
    """Samples scored at once per row so that one row's chunk is at most `CHUNK_BYTES`.

    Example:
        >>> from keras_vae.model import VAE
        >>> score_sample_chunk(VAE(data_shape=(784,), latent_dim=2), 100)
        100
    """
    per_sample = _values_per_sample(model) * 4
    return max(1, min(int(num_samples), CHUNK_BYTES // per_sample))


def score_rows_per_chunk(model: keras.Model, num_samples: int) -> int:
    """Rows scored at once (each with `score_sample_chunk` samples) within `CHUNK_BYTES`.

    Example:
        >>> from keras_vae.model import VAE
        >>> score_rows_per_chunk(VAE(data_shape=(784,), latent_dim=2), 100)
        26
    """
    chunk = score_sample_chunk(model, num_samples) * _values_per_sample(model) * 4
    return max(1, CHUNK_BYTES // chunk)


def score_graph(
    model: keras.Model,
    x: tf.Tensor,
    noise: tf.Tensor,
    labels: tf.Tensor | None = None,
    sample_chunk: int | None = None,
    prior: MixtureParams | None = None,
) -> Scores:
    """The scores of a batch `x` [batch, *data_shape] with `noise` [K, latent_dim] shared by
    every row, in TensorFlow ops only (what the exported scorers trace).

    Args:
        model: a `keras_vae.VAE`.
        x: the batch, float32.
        noise: standard normal draws [K, latent_dim] (`score_noise`).
        labels: int32 [batch] class labels of a conditional model (ignored otherwise).
        sample_chunk: None scores all K samples at once (no loop: LiteRT); an int scores
            them in a `tf.while_loop` over chunks of that many (memory of one chunk).
        prior: the prior's `MixtureParams` (e.g. baked constants); default: the model's.

    Returns:
        `Scores` of [batch] float32 tensors.

    Example:
        >>> from keras_vae.model import VAE
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> s = score_graph(vae, tf.fill((2, 4), 0.5), score_noise(2, 6), sample_chunk=4)
        >>> s.log_likelihood.shape
        TensorShape([2])
    """
    x = tf.cast(x, tf.float32)
    labels = labels if model.conditional else None
    z_mean, z_stddev, context = model.encode_all(x, False, labels)
    noise = tf.cast(noise, z_mean.dtype)
    paper_model = model.posterior_name == "gaussian" and model.prior_name == "normal"
    if not paper_model and prior is None:
        prior = model.prior_parameters(training=False)
    batch = tf.shape(z_mean)[0]

    def sample_terms(eps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """log p(x|z), log p(z), log q(z|x), each [S, batch], for eps [S, latent_dim]."""
        rows = tf.broadcast_to(eps[:, tf.newaxis, :], [tf.shape(eps)[0], batch, model.latent_dim])
        if paper_model:
            terms = objectives.gaussian_latent_terms(
                z_mean,
                z_stddev,
                rows,
                lambda z: model.log_likelihood_given_z(x, z, labels=labels),
                "monte_carlo",
            )
        else:
            encoded = (z_mean, z_stddev, context)
            terms = model.sampled_terms(x, encoded, rows, prior, labels=labels)
        return terms.log_likelihood, terms.log_prior, terms.log_posterior

    num_samples = int(noise.shape[0])
    if sample_chunk is None or sample_chunk >= num_samples:
        log_px, log_p, log_q = sample_terms(noise)
        log_sum_w = tf.reduce_logsumexp(log_px + log_p - log_q, axis=0)
        sums = [tf.reduce_sum(v, axis=0) for v in (log_px, log_p, log_q)]
    else:
        log_sum_w, sums = _chunked_sums(sample_terms, noise, int(sample_chunk), batch, z_mean)
    count = tf.constant(num_samples, z_mean.dtype)
    log_likelihood = log_sum_w - tf.math.log(count)
    reconstruction, mean_log_p, mean_log_q = (s / count for s in sums)
    if model.estimator == "analytic_kl":
        q = distributions.posterior(z_mean, z_stddev)
        kl = q.kl_divergence(distributions.prior(model.latent_dim, z_mean.dtype))
    elif model.estimator == "analytic_entropy":
        kl = -mean_log_p - model.posterior_layer.entropy(z_stddev)
    else:
        kl = mean_log_q - mean_log_p
    values = (reconstruction - kl, log_likelihood, reconstruction, kl)
    # A row with a NaN or infinite value gets NaN scores, never a number (a ReLU maps NaN
    # to 0, so the encoder alone would give it a finite KL). Not `not (|x| <= max)`: grappler
    # rewrites it to `|x| > max`, which is False for NaN.
    data_axes = list(range(1, 1 + len(model.data_shape)))
    bad = tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.float32)
    bad_rows = tf.reduce_sum(bad, axis=data_axes) > 0
    return Scores(*(tf.where(bad_rows, np.float32(np.nan), tf.cast(v, tf.float32)) for v in values))


def _chunked_sums(
    sample_terms: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]],
    noise: tf.Tensor,
    chunk: int,
    batch: tf.Tensor,
    like: tf.Tensor,
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """log sum_k w_k and the sums of log p(x|z), log p(z), log q over K samples, in a
    `tf.while_loop` over chunks of `chunk` samples (the last one masked past K)."""
    num_samples = int(noise.shape[0])
    num_chunks = -(-num_samples // chunk)
    padded = tf.pad(noise, [[0, num_chunks * chunk - num_samples], [0, 0]])
    zeros = tf.zeros([batch], like.dtype)
    minus_inf = tf.fill([batch], tf.constant(-np.inf, like.dtype))

    def body(
        i: tf.Tensor, log_sum_w: tf.Tensor, sum_px: tf.Tensor, sum_p: tf.Tensor, sum_q: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        eps = tf.slice(padded, [i * chunk, 0], [chunk, -1])
        log_px, log_p, log_q = sample_terms(eps)
        valid = (i * chunk + tf.range(chunk) < num_samples)[:, tf.newaxis]
        log_w = tf.where(valid, log_px + log_p - log_q, -np.inf)
        log_sum_w = objectives.log_add_exp(log_sum_w, tf.reduce_logsumexp(log_w, axis=0))

        def total(v: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(tf.where(valid, v, tf.zeros_like(v)), axis=0)

        return i + 1, log_sum_w, sum_px + total(log_px), sum_p + total(log_p), sum_q + total(log_q)

    _, log_sum_w, *sums = tf.while_loop(
        lambda i, *_: i < num_chunks,
        body,
        (tf.constant(0), minus_inf, zeros, zeros, zeros),
    )
    return log_sum_w, sums


def bounded_score_graph(
    model: keras.Model,
    x: tf.Tensor,
    noise: tf.Tensor,
    labels: tf.Tensor | None = None,
    prior: MixtureParams | None = None,
) -> Scores:
    """`score_graph` over any batch in memory of one chunk (`score_rows_per_chunk` rows x
    `score_sample_chunk` samples): a `tf.while_loop` over row chunks, the last one padded, so
    every row is scored by the same computation whatever the batch; 0 rows give 0 scores.

    Example:
        >>> from keras_vae.model import VAE
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> bounded_score_graph(vae, tf.fill((5, 4), 0.5), score_noise(2, 3)).kl.shape
        TensorShape([5])
    """
    num_samples = int(noise.shape[0])
    rows = score_rows_per_chunk(model, num_samples)
    sample_chunk = score_sample_chunk(model, num_samples)
    x = tf.cast(x, tf.float32)
    batch = tf.shape(x)[0]
    num_chunks = (batch + rows - 1) // rows
    padding = num_chunks * rows - batch
    rank = len(model.data_shape)
    padded_x = tf.pad(x, [[0, padding]] + [[0, 0]] * rank)
    if model.conditional:
        padded_labels = tf.pad(tf.cast(labels, tf.int32), [[0, padding]])
    if not (model.posterior_name == "gaussian" and model.prior_name == "normal") and prior is None:
        prior = model.prior_parameters(training=False)  # once, not per chunk
    # A known element shape lets an empty batch (no chunk written) stack to [0, rows].
    arrays = [
        tf.TensorArray(tf.float32, size=num_chunks, element_shape=[rows]) for _ in SCORE_NAMES
    ]

    def body(i: tf.Tensor, *arrays: tf.TensorArray) -> tuple[tf.Tensor | tf.TensorArray, ...]:
        start = i * rows
        x_rows = padded_x[start : start + rows]
        label_rows = padded_labels[start : start + rows] if model.conditional else None
        scores = score_graph(model, x_rows, noise, label_rows, sample_chunk, prior)
        return (i + 1, *(a.write(i, s) for a, s in zip(arrays, scores)))

    _, *arrays = tf.while_loop(lambda i, *_: i < num_chunks, body, (tf.constant(0), *arrays))
    return Scores(*(tf.reshape(a.stack(), [-1])[:batch] for a in arrays))


def score(
    model: keras.Model,
    x: TensorLike,
    num_samples: int = DEFAULT_SCORE_SAMPLES,
    seed: int = DEFAULT_SCORE_SEED,
    labels: LabelsLike = None,
) -> Scores:
    """Per-example `Scores` of `x` [batch, *data_shape]: deterministic (the noise is
    `score_noise(latent_dim, num_samples, seed)`), independent of the batch's other rows, in
    compiled chunks of bounded memory.

    Args:
        model: a `keras_vae.VAE`.
        x: the examples, [batch, *data_shape] (NumPy or tensor).
        num_samples: K importance samples per example, in [1, 100000]. Default 100.
        seed: the noise's seed (any int64). Default 0.
        labels: class labels [batch] of a conditional model (then the scores are of x given y).

    Returns:
        `Scores` of [batch] float32 tensors.

    Example:
        >>> from keras_vae.model import VAE
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> a = score(vae, tf.fill((3, 4), 0.5), num_samples=20).log_likelihood
        >>> b = score(vae, tf.fill((1, 4), 0.5), num_samples=20).log_likelihood
        >>> bool(a[0] == b[0])
        True
    """
    num_samples = check_score_samples(num_samples)
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank is None or tuple(x.shape[1:]) != tuple(model.data_shape):
        raise ValueError(
            f"Expected `x` of shape [batch, {', '.join(map(str, model.data_shape))}] "
            f"(batch, *data_shape) for this model. Received: x.shape={tuple(x.shape)}"
        )
    labels = cast("tf.Tensor | None", model.checked_labels(labels, int(x.shape[0])))
    if labels is not None and int(labels.shape[0]) != int(x.shape[0]):
        raise ValueError(
            f"Expected one label per example: {int(x.shape[0])} examples, "
            f"{int(labels.shape[0])} labels."
        )
    if labels is None:
        labels = tf.zeros([int(x.shape[0])], tf.int32)  # unused by an unconditional model
    noise = score_noise(model.latent_dim, num_samples, seed)
    functions = _FUNCTIONS.setdefault(model, {})
    if num_samples not in functions:
        spec = tf.TensorSpec([None, *model.data_shape], tf.float32)
        functions[num_samples] = tf.function(
            lambda x, noise, labels: bounded_score_graph(model, x, noise, labels),
            input_signature=[
                spec,
                tf.TensorSpec([num_samples, model.latent_dim], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
        )
    return Scores(*functions[num_samples](x, noise, labels))
