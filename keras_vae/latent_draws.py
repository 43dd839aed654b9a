"""The draws of z: the seeded noise of the decoder's ``sample`` and ``generate`` signatures
(`prior_noise`, `prior_uniform`, and per row `row_prior_noise`, `row_prior_uniform`), the
Gaussian mixture they are mapped through (`LatentMixture`: the model's prior, or the
`aggregate` sampler fitted to the training codes, baked in as constants so that a decoder needs
neither the encoder nor the pseudo-inputs) and the mapping itself (`draw_latent`), which
`VAE.sample`, the SavedModel and, in builtin ops, the LiteRT decoder share.

    >>> import tensorflow as tf
    >>> prior_noise(tf.constant(2), tf.constant(5), 3).shape
    TensorShape([2, 3])
    >>> mixture = LatentMixture(np.log([[0.5, 0.5]]), np.array([[[-1.0], [1.0]]]),
    ...                         np.array([[[0.1], [0.1]]]))
    >>> z, component = draw_latent(mixture, tf.zeros([2, 1]), tf.constant([0.2, 0.7]))
    >>> z.numpy().ravel().tolist(), component.numpy().tolist()
    ([-1.0, 1.0], [0, 1])
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_vae.parts.priors import MixtureParams, component_cdf

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


def keras_seed(seed: int) -> int:
    """The int32 that Keras makes of an integer seed in [0, 2^32) (its bits, as
    `keras.random.normal(shape, seed=seed)` takes them), which the export's int32 ``seed``
    receives.

    Example:
        >>> keras_seed(5), keras_seed(2**32 - 1)
        (5, -1)
    """
    return ((int(seed) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


class LatentMixture(NamedTuple):
    """A Gaussian mixture over z per class row: `log_weights` [C, K], `loc` [C, K, D] and
    `scale` [C, K, D] (diagonal) or [C, K, D, D] (lower-triangular: z = loc + scale @ eps).
    C = 1 draws every row from one mixture; C = num_classes draws row i from row label_i.
    Float32 NumPy arrays: an export holds them as constants."""

    log_weights: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    @classmethod
    def of_prior(cls, params: MixtureParams) -> LatentMixture:
        """The prior's mixture (`baked_prior`) as one class row."""
        return cls(*(np.asarray(a, np.float32)[np.newaxis] for a in params))

    @property
    def num_classes(self) -> int:
        """C, the class rows of the mixture (1 for the prior's)."""
        return int(self.log_weights.shape[0])


def mixture_cdf(mixture: LatentMixture) -> np.ndarray:
    """float32 [C, K-1]: each class row's cumulative weights but the last, as
    `keras_vae.parts.priors.component_from_uniform` computes them (a float32 cumsum of
    exp(log_weights)), so that component c = #{j: u >= cdf_j} is drawn with probability pi_c.
    The LiteRT tables hold the same numbers (`keras_vae.export.litert_ops.mixture_tables`).

    Example:
        >>> mixture_cdf(LatentMixture(np.log([[0.25, 0.75]]), np.zeros((1, 2, 1)),
        ...                           np.ones((1, 2, 1)))).tolist()
        [[0.25]]
    """
    with tf.init_scope():  # eagerly, also while an export traces its graph: constants
        rows = [component_cdf(tf.constant(row, tf.float32)) for row in mixture.log_weights]
        return np.stack([np.asarray(row, np.float32) for row in rows])


def mixture_index(component: tf.Tensor, label: tf.Tensor | None, components: int) -> tf.Tensor:
    """Each row's component as a row of the flattened [C * K, ...] tables: `component`
    itself for one class row, label * K + component for one mixture per class."""
    return component if label is None else tf.cast(label, tf.int32) * components + component


def mixture_rows(
    mixture: LatentMixture, component: tf.Tensor, label: tf.Tensor | None
) -> tuple[tf.Tensor, tf.Tensor]:
    """(loc [n, D], scale [n, D] or [n, D, D]) of each row's component (of its class row)."""
    classes, components = mixture.log_weights.shape
    index = mixture_index(component, label, components)
    flat = classes * components

    def gathered(a: np.ndarray) -> tf.Tensor:
        table = tf.constant(np.reshape(a, (flat, *a.shape[2:])), tf.float32)
        return tf.gather(table, index)

    return gathered(mixture.loc), gathered(mixture.scale)


def scaled_noise(scale: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """scale * noise for a diagonal scale [n, D], scale @ noise for a triangular one
    [n, D, D] (as a product and a sum, which LiteRT has as builtins)."""
    if scale.shape.rank == 2:
        return scale * noise
    return tf.reduce_sum(scale * noise[:, tf.newaxis, :], axis=-1)


def draw_latent(
    mixture: LatentMixture | None,
    noise: tf.Tensor,
    uniform: tf.Tensor | None = None,
    label: tf.Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(z [n, D], component int32 [n] or None) from standard normal `noise` [n, D] and
    `uniform` [n] in [0, 1): z = T * noise for N(0, I) (`mixture` None); else component
    c = #{j < K-1: u >= cdf_j} of the mixture (of row label_i's class when it has one per
    class) and z = loc_c + scale_c (T * noise). The temperature T scales the Gaussian noise
    only (z's variance T^2 for N(0, I)); T = 1 leaves it untouched, bit for bit."""
    if temperature != 1.0:
        noise = noise * tf.constant(temperature, tf.float32)
    if mixture is None:
        return noise, None
    cdf = mixture_cdf(mixture)
    uniform = tf.convert_to_tensor(uniform, tf.float32)
    if mixture.num_classes == 1:  # one mixture for every row (the prior's draws)
        label, cdf_rows = None, tf.constant(cdf[0])
    else:
        cdf_rows = tf.gather(tf.constant(cdf), label)
    component = tf.reduce_sum(tf.cast(uniform[:, tf.newaxis] >= cdf_rows, tf.int32), axis=-1)
    loc, scale = mixture_rows(mixture, component, label)
    return loc + scaled_noise(scale, noise), component
