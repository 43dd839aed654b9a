"""The draws of an export graph from the model's prior: the seeded noise of the decoder's
``sample`` and ``generate`` signatures (`prior_noise`, `prior_uniform`, and per row
`row_prior_noise`, `row_prior_uniform`) and the prior's mixture parameters baked in as
constants (`baked_prior`, `sample_baked`), so the decoder needs neither the encoder nor the
pseudo-inputs.

    >>> import tensorflow as tf
    >>> prior_noise(tf.constant(2), tf.constant(5), 3).shape
    TensorShape([2, 3])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_vae.parts.priors import MixtureParams, sample_from_noise

SAMPLE_SEED_STREAM = 0  # second word of the stateless seed [seed, 0] of eps
COMPONENT_SEED_STREAM = 1  # second word of the stateless seed [seed, 1] of u (mixture priors)


def _seed_pair(seed: tf.Tensor, stream: int) -> tf.Tensor:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(stream, tf.int32)])


def prior_noise(num_samples: tf.Tensor, seed: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """eps ~ N(0, I), [num_samples, latent_dim], a pure function of the int32 `seed`.

    Example:
        >>> a = prior_noise(tf.constant(2), tf.constant(5), 3)
        >>> bool(tf.reduce_all(a == prior_noise(tf.constant(2), tf.constant(5), 3)))
        True
    """
    return tf.random.stateless_normal(
        tf.stack([num_samples, latent_dim]),
        seed=_seed_pair(seed, SAMPLE_SEED_STREAM),
        dtype=tf.float32,
    )


def prior_uniform(num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """u ~ U[0, 1), [num_samples] float32, a pure function of the int32 `seed` (seed [seed, 1]):
    what picks a mixture prior's component.

    Example:
        >>> u = prior_uniform(tf.constant(3), tf.constant(5))
        >>> u.shape, bool(tf.reduce_all((u >= 0) & (u < 1)))
        (TensorShape([3]), True)
    """
    return tf.random.stateless_uniform(
        tf.reshape(num_samples, [1]),
        seed=_seed_pair(seed, COMPONENT_SEED_STREAM),
        dtype=tf.float32,
    )


def baked_prior(model: keras.Model) -> MixtureParams | None:
    """The prior's mixture parameters (log_weights [K], loc and scale [K, latent_dim]) as
    float32 NumPy arrays, evaluated once (training=False) for an export to hold as constants;
    None for p(z) = N(0, I), whose draws need no parameters."""
    if model.prior_name == "normal":
        return None
    params = model.prior_parameters(training=False)
    return MixtureParams(*(np.asarray(t, np.float32) for t in params))


def sample_baked(
    params: MixtureParams, noise: tf.Tensor, uniform: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(z [n, D], component int32 [n]) of `baked_prior` constants: `sample_from_noise`."""
    constants = MixtureParams(*(tf.constant(a, tf.float32) for a in params))
    z, component = sample_from_noise(constants, noise, uniform)
    return z, tf.cast(component, tf.int32)


def row_prior_noise(seeds: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """eps ~ N(0, I), [n, latent_dim], row i a pure function of the int64 ``seeds[i]`` alone:
    ``tf.random.stateless_normal([latent_dim], seed=[seeds[i], 0], alg="philox")`` (every
    int64 seed, negative ones included, is its own Philox key), so a row does not depend on
    the other rows of its batch.

    Example:
        >>> both = row_prior_noise(tf.constant([7, -1], tf.int64), 3)
        >>> alone = row_prior_noise(tf.constant([-1], tf.int64), 3)
        >>> bool(tf.reduce_all(both[1] == alone[0]))
        True
    """

    def row(seed: tf.Tensor) -> tf.Tensor:
        pair = tf.stack([seed, tf.constant(SAMPLE_SEED_STREAM, tf.int64)])
        return tf.random.stateless_normal([latent_dim], seed=pair, dtype=tf.float32, alg="philox")

    spec = tf.TensorSpec([latent_dim], tf.float32)
    return tf.map_fn(row, tf.cast(seeds, tf.int64), fn_output_signature=spec)


def row_prior_uniform(seeds: tf.Tensor) -> tf.Tensor:
    """u ~ U[0, 1), [n] float32, u[i] = ``tf.random.stateless_uniform([], seed=[seeds[i], 1],
    alg="philox")``: what picks each row's mixture component (`row_prior_noise`'s twin).

    Example:
        >>> u = row_prior_uniform(tf.constant([3, 4], tf.int64))
        >>> u.shape, bool(tf.reduce_all((u >= 0) & (u < 1)))
        (TensorShape([2]), True)
    """

    def row(seed: tf.Tensor) -> tf.Tensor:
        pair = tf.stack([seed, tf.constant(COMPONENT_SEED_STREAM, tf.int64)])
        return tf.random.stateless_uniform([], seed=pair, dtype=tf.float32, alg="philox")

    spec = tf.TensorSpec([], tf.float32)
    return tf.map_fn(row, tf.cast(seeds, tf.int64), fn_output_signature=spec)
