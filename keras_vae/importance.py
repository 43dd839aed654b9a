"""The importance-weighted log-likelihood of a trained VAE, in compiled chunks of samples.

log p(x) ~ log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al., 2015): a lower
bound in expectation that rises to log p(x) as K grows; K = 5000 is the standard protocol.
The maths is `keras_vae.objectives.importance_weighted_terms`; this module draws the noise,
picks the chunk size and caches one compiled function per model and setting.
`estimate_log_likelihood` runs it over a whole dataset, batch by batch, with the means and
standard errors that `keras-vae evaluate` (`keras_vae.evaluate`) reports; `VAE.log_likelihood`
and `VAE.importance_weighted_terms` call it on one batch.

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> importance_weighted_terms(vae, tf.zeros((3, 4)), num_samples=100, seed=0).log_likelihood.shape
TensorShape([3])
"""

from __future__ import annotations

import dataclasses
import functools
import math
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_vae import objectives
from keras_vae.data.checks import check_model_input
from keras_vae.execution import resolve_importance_jit_compile
from keras_vae.limits import (
    MAX_EVALUATION_BATCH_SIZE,
    MAX_IMPORTANCE_SAMPLES,
    MAX_SEED,
    check_at_least,
)
from keras_vae.noise import RNG_ALG

if TYPE_CHECKING:
    from keras_vae.model import VAE
    from keras_vae.tensor_types import LabelsLike, TensorLike

# Importance sampling runs in chunks whose decoder output is about this big (see
# `default_chunk_size`).
CHUNK_BYTES = 8 * 2**20
# Compiled functions per model and setting, kept outside the model so that SavedModel exports
# of it do not pick them up.
_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
DEFAULT_BATCH_SIZE = 100
# One step's decoder output, chunk_size x batch_size x D, must stay below TensorFlow's int32
# element count limit of GPU kernels (and 8 GiB of float32).
MAX_STEP_ELEMENTS = 2**31 - 1
ProgressFn = Callable[[int, int], None]


def importance_weighted_terms(
    model: keras.Model,
    x: TensorLike,
    num_samples: int = 5000,
    chunk_size: int | None = None,
    seed: int | Sequence[int] | tf.Tensor | None = None,
    noise: TensorLike | None = None,
    jit_compile: bool | str = "auto",
    labels: LabelsLike = None,
) -> objectives.ImportanceWeightedTerms:
    """Importance-weighted log p(x), the K-sample ELBO and the Monte Carlo error, per example.

    Args:
        model: a `keras_vae.VAE`.
        x: a batch, [batch, *data_shape].
        num_samples: K, importance samples per example. Default 5000.
        chunk_size: samples drawn at once (memory is one chunk's, whatever K). Default:
            `default_chunk_size(model, batch)`. The draws depend on it (noise comes per chunk).
        seed: an int or a pair of ints: the same seed, chunk size and `jit_compile` give
            the same draws (XLA has its own stateless RNG). Default None: the next draw
            of the model's seed generator.
        noise: optional standard normal draws [batch, K, latent_dim] to use instead of a
            seed (common random numbers; results then do not depend on `chunk_size`).
        jit_compile: XLA-compile the loop over chunks. Default "auto": on a GPU or TPU
            only (`keras_vae.execution.resolve_importance_jit_compile`).
        labels: the class labels [batch] of a conditional model (then log p(x|y)).

    Returns:
        `objectives.ImportanceWeightedTerms` of [batch] tensors.

    Example:
        >>> from keras_vae.model import VAE
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> terms = importance_weighted_terms(vae, tf.zeros((3, 4)), num_samples=10, seed=1)
        >>> bool(tf.reduce_all(terms.elbo <= terms.log_likelihood))
        True
    """
    x = tf.convert_to_tensor(x, tf.float32)
    batch = int(x.shape[0])
    chunk_size = default_chunk_size(model, batch) if chunk_size is None else chunk_size
    for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"Received an invalid value for `{name}`, expected a positive integer. "
                f"Received: {name}={value!r}"
            )
    given_noise = noise is not None
    if given_noise:
        noise = tf.convert_to_tensor(noise, tf.float32)
        # mypy keeps the hint's non-tensor types for a tensor assigned to an Optional argument
        if noise.shape != (batch, num_samples, model.latent_dim):  # type: ignore[union-attr]
            raise ValueError(
                f"Expected `noise` of shape {(batch, num_samples, model.latent_dim)} "
                f"(batch, num_samples, latent_dim). Received: noise.shape={noise.shape}"  # type: ignore[union-attr]
            )
    else:
        noise = _seed_pair(model, seed)
    jit_compile = resolve_importance_jit_compile(jit_compile)
    labels = model.checked_labels(labels, batch)
    if labels is None:
        labels = tf.zeros([batch], tf.int32)  # unused by an unconditional model
    key = (num_samples, min(chunk_size, num_samples), jit_compile, given_noise)
    functions = _FUNCTIONS.setdefault(model, {})
    if key not in functions:
        graph = functools.partial(
            _importance_weighted_graph,
            model,
            num_samples=num_samples,
            chunk_size=key[1],
            given_noise=given_noise,
        )
        functions[key] = tf.function(graph, jit_compile=jit_compile, reduce_retracing=True)
    return functions[key](x, noise, labels)


def default_chunk_size(model: keras.Model, batch_size: int) -> int:
    """Importance samples per chunk so that a chunk's decoder output is about `CHUNK_BYTES`.

    Example:
        >>> from keras_vae.model import VAE
        >>> default_chunk_size(VAE(data_shape=(784,), latent_dim=2), 100)
        26
    """
    # a mixture prior's densities are [chunk, batch, K, D] before their reduction
    prior_values = getattr(model, "prior_components", 0) * model.latent_dim
    per_sample = max(1, batch_size) * max(math.prod(model.data_shape), prior_values) * 4
    return max(1, CHUNK_BYTES // per_sample)


@dataclasses.dataclass(frozen=True)
class LogLikelihoodEstimate:
    """Per-example results of the importance-weighted estimate on a dataset.

    Attributes:
        log_likelihood: [N] estimates of log p(x_i), nats.
        elbo: [N] K-sample estimates of the ELBO from the same draws (<= `log_likelihood`).
        mc_stderr: [N] Monte Carlo standard errors of `log_likelihood` (delta method).
        num_samples: K.
        data_dims: D, the number of data dimensions per example.
    """

    log_likelihood: np.ndarray
    elbo: np.ndarray
    mc_stderr: np.ndarray
    num_samples: int
    data_dims: int

    def summary(self) -> dict[str, float | int | None]:
        """Means and standard errors over the examples, in nats and bits per dimension.

        Example:

        >>> est = LogLikelihoodEstimate(
        ...     np.array([-1.0, -3.0]), np.array([-2.0, -4.0]), np.zeros(2), 10, 1)
        >>> est.summary()["test_log_likelihood"], est.summary()["test_log_likelihood_stderr"]
        (-2.0, 1.0)
        """
        ll, elbo = self.log_likelihood.astype(np.float64), self.elbo.astype(np.float64)
        nats_to_bpd = 1.0 / (self.data_dims * math.log(2))
        ll_stderr = standard_error(ll)
        return {
            "num_examples": int(len(ll)),
            "data_dims": self.data_dims,
            "importance_samples": self.num_samples,
            "test_log_likelihood": float(ll.mean()),
            "test_log_likelihood_stderr": ll_stderr,
            "test_log_likelihood_mc_stderr": float(np.sqrt(np.sum(self.mc_stderr**2))) / len(ll),
            "test_log_likelihood_k": self.num_samples,
            "test_elbo": float(elbo.mean()),
            "test_elbo_stderr": standard_error(elbo),
            "test_log_likelihood_minus_elbo": float((ll - elbo).mean()),
            "test_log_likelihood_minus_elbo_stderr": standard_error(ll - elbo),
            "test_bits_per_dim": float(-ll.mean() * nats_to_bpd),
            "test_bits_per_dim_stderr": None if ll_stderr is None else ll_stderr * nats_to_bpd,
        }


def standard_error(values: np.ndarray) -> float | None:
    """std(values, ddof=1) / sqrt(N); None for fewer than two values (undefined)."""
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def estimate_log_likelihood(
    model: VAE,
    images: np.ndarray,
    num_samples: int = 5000,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_size: int | None = None,
    seed: int = 0,
    jit_compile: bool | str = "auto",
    progress: ProgressFn | None = None,
    labels: np.ndarray | None = None,
) -> LogLikelihoodEstimate:
    """`importance_weighted_terms` over a whole dataset, batch by batch.

    Batch b draws its noise from the seed pair fold_in([seed, 0], b), so results depend only on
    (seed, batch_size, chunk_size) and examples in different batches never share draws. The
    last batch is padded to the full size (padded rows are dropped), so XLA compiles once.

    Args:
        model: a `keras_vae.VAE`.
        images: float32 ``(N, *data_shape)`` data as the model was trained on (checked).
        num_samples: K. Default 5000.
        batch_size: examples per step. Default 100.
        chunk_size: importance samples per step (None:
            `default_chunk_size(model, batch_size)`, a few MB of decoder output).
        seed: seeds the draws. Default 0.
        jit_compile: XLA-compile the loop over chunks. Default "auto": on a GPU or TPU only
            (see `importance_weighted_terms`).
        progress: called as ``progress(examples_done, total)`` after every batch.
        labels: [N] class labels for a conditional model: then the estimates are of
            log p(x|y).

    Example:

    >>> from keras_vae.model import VAE
    >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
    >>> est = estimate_log_likelihood(vae, np.zeros((5, 4), np.float32), num_samples=20)
    >>> est.log_likelihood.shape, bool(np.all(est.log_likelihood >= est.elbo))
    ((5,), True)
    """
    images = check_model_input(images, model.data_shape, model.likelihood, "the data")
    check_at_least("num_samples", num_samples, 1, maximum=MAX_IMPORTANCE_SAMPLES)
    check_at_least("batch_size", batch_size, 1, maximum=MAX_EVALUATION_BATCH_SIZE)
    check_at_least("seed", seed, 0, maximum=MAX_SEED)
    batch_size = min(batch_size, len(images))
    if chunk_size is None:
        chunk_size = default_chunk_size(model, batch_size)
    check_at_least("chunk_size", chunk_size, 1, maximum=MAX_IMPORTANCE_SAMPLES)
    check_step_size(min(chunk_size, num_samples), batch_size, int(np.prod(model.data_shape)))
    parts: dict[str, list[np.ndarray]] = {"log_likelihood": [], "elbo": [], "mc_stderr": []}
    base_seed = tf.constant([seed, 0], tf.int32)
    if getattr(model, "conditional", False) and (labels is None or len(labels) != len(images)):
        raise ValueError(
            "A conditional model's log p(x|y) needs one label per image. Received: "
            f"{'no labels' if labels is None else f'{len(labels)} labels'} for "
            f"{len(images)} images"
        )
    for batch_index, start in enumerate(range(0, len(images), batch_size)):
        batch = images[start : start + batch_size]
        size = len(batch)
        batch_labels = None if labels is None else np.asarray(labels[start : start + size])
        if size < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - size, axis=0)])
            if batch_labels is not None:
                padding = np.repeat(batch_labels[:1], batch_size - size)
                batch_labels = np.concatenate([batch_labels, padding])
        terms = importance_weighted_terms(
            model,
            batch,
            num_samples=num_samples,
            chunk_size=chunk_size,
            seed=tf.random.fold_in(base_seed, batch_index),
            jit_compile=jit_compile,
            labels=batch_labels if getattr(model, "conditional", False) else None,
        )
        for name in parts:
            parts[name].append(getattr(terms, name).numpy()[:size])
        if progress is not None:
            progress(start + size, len(images))
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    return LogLikelihoodEstimate(
        **arrays, num_samples=num_samples, data_dims=int(np.prod(model.data_shape))
    )


def check_step_size(chunk_size: int, batch_size: int, data_dims: int) -> None:
    """Raise a `ValueError` when one step's decoder output exceeds `MAX_STEP_ELEMENTS`."""
    elements = chunk_size * batch_size * data_dims
    if elements > MAX_STEP_ELEMENTS:
        raise ValueError(
            f"One evaluation step would decode chunk_size={chunk_size} x batch_size="
            f"{batch_size} x {data_dims} dims = {elements} values, more than {MAX_STEP_ELEMENTS}; "
            "pass a smaller --chunk-size or --batch-size."
        )


def _seed_pair(model: keras.Model, seed: int | Sequence[int] | None) -> tf.Tensor:
    """A stateless-RNG seed pair (int32, as XLA requires) from an int, a pair or None."""
    if seed is None:
        return keras.random.randint((2,), 0, 2**31 - 1, seed=model.seed_generator, dtype="int32")
    pair = [seed, 0] if isinstance(seed, int) else list(seed)
    if len(pair) != 2:
        raise ValueError(f"Expected `seed` to be an int or a pair of ints. Received: {seed!r}")
    return tf.cast(tf.stack(pair), tf.int32)


def _importance_weighted_graph(
    model: keras.Model,
    x: tf.Tensor,
    noise_or_seed: tf.Tensor,
    labels: tf.Tensor,
    num_samples: int,
    chunk_size: int,
    given_noise: bool,
) -> objectives.ImportanceWeightedTerms:
    """The traced body of `importance_weighted_terms`: encode once, then K samples in chunks."""
    labels = labels if model.conditional else None
    z_mean, z_stddev, context = model.encode_all(x, False, labels)
    batch = tf.shape(z_mean)[0]
    if given_noise:
        num_chunks = -(-num_samples // chunk_size)
        noise = tf.transpose(noise_or_seed, [1, 0, 2])
        noise = tf.pad(noise, [[0, num_chunks * chunk_size - num_samples], [0, 0], [0, 0]])

        def noise_fn(i: tf.Tensor) -> tf.Tensor:
            return tf.slice(noise, [i * chunk_size, 0, 0], [chunk_size, -1, -1])
    else:

        def noise_fn(i: tf.Tensor) -> tf.Tensor:
            return tf.random.stateless_normal(
                [chunk_size, batch, model.latent_dim],
                seed=tf.random.fold_in(noise_or_seed, i),
                dtype=z_mean.dtype,
                alg=RNG_ALG,  # the default's numbers, without its XLA slowdown
            )

    def log_likelihood_fn(z: tf.Tensor) -> tf.Tensor:
        return model.log_likelihood_given_z(x, z, training=False, labels=labels)

    log_weights_fn = None  # the paper's model: `objectives.log_importance_weights`
    if model.posterior_name != "gaussian" or model.prior_name != "normal":
        prior = model.prior_parameters(training=False)  # once, not per chunk

        def log_weights_fn(noise: tf.Tensor) -> tf.Tensor:
            encoded = (z_mean, z_stddev, context)
            terms = model.sampled_terms(x, encoded, noise, prior, labels=labels)
            return terms.log_likelihood + terms.log_prior - terms.log_posterior

    return objectives.importance_weighted_terms(
        z_mean, z_stddev, log_likelihood_fn, num_samples, chunk_size, noise_fn, log_weights_fn
    )
