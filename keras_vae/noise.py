"""Reparameterisation noise: stateless, the same for any replica count and with or without XLA.

- `stateless_seed`: the step's seed pair, from the model's `keras.random.SeedGenerator`;
- `standard_normal`: N(0, 1) draws that XLA does not change;
- `replica_normal`: the draw for the GLOBAL batch, sliced at this replica's offset, so
  replicas never share noise and one replica trains like many.

>>> standard_normal([2, 3], tf.constant([1, 2])).shape
TensorShape([2, 3])
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_vae.replicas import BatchLayout

# The stateless RNG algorithm of the reparameterisation and importance-sampling noise. The
# default, "auto_select", is Philox on CPU and GPU (the same raw bits with and without XLA;
# see `standard_normal` for the floats), but under XLA it passes the algorithm as a runtime
# tensor and the compiled kernel is an order of magnitude slower, a sizeable part of a small
# VAE's train step (benchmarks/throughput.py). Naming it keeps the numbers
# (tests/test_performance.py checks that they are the default's).
RNG_ALG = "philox"


def replica_normal(
    num_samples: int,
    local_batch: int | tf.Tensor,
    latent_dim: int,
    seed: tf.Tensor,
    layout: BatchLayout | None = None,
) -> tf.Tensor:
    """Standard normal noise [num_samples, local_batch, latent_dim] for this replica.

    Drawn for the GLOBAL batch from the step's stateless `seed` and sliced at this replica's
    offset: replicas get different noise (a seed generator alone gives every replica the same
    draws) and the noise of an example depends only on the seed and its position in the global
    batch (not on the replica count, nor on XLA: see `standard_normal`), so one replica and
    many replicas train identically for the same seed.

    Args:
        num_samples: L, draws per example.
        local_batch: this replica's batch size.
        latent_dim: size of z.
        seed: int32 [2] stateless seed (one per step).
        layout: this replica's `keras_vae.replicas.BatchLayout`. Default None: one replica.

    Example:
        >>> replica_normal(1, 4, 2, tf.constant([1, 2])).shape
        TensorShape([1, 4, 2])
    """
    context = tf.distribute.get_replica_context()
    if layout is None or context is None or context.num_replicas_in_sync == 1:
        return standard_normal([num_samples, local_batch, latent_dim], seed)
    noise = standard_normal([num_samples, layout.global_size, latent_dim], seed)
    return tf.slice(noise, [0, layout.offset, 0], [num_samples, local_batch, latent_dim])


def standard_normal(shape, seed: tf.Tensor) -> tf.Tensor:
    """float32 N(0, 1) draws: Box-Muller on stateless Philox bits, the same with or without XLA.

    `tf.random.stateless_normal` (and `stateless_uniform`) give different numbers when XLA
    compiles them with a seed known only at run time (TF 2.21), so a run's noise would depend
    on `jit_compile`; the raw 32-bit draws agree. Uniforms are built from their top 24 bits,
    u = (k + 1/2) / 2**24, so |z| <= 5.8 (P(|z| > 5.8) is 7e-9 under N(0, 1)).

    Example:
        >>> standard_normal([2, 3], tf.constant([1, 2])).shape
        TensorShape([2, 3])
    """
    bits = philox_bits([2, *shape], seed)
    uniform = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * 2.0**-24
    radius = tf.sqrt(-2.0 * tf.math.log(uniform[0]))
    return radius * tf.cos((2.0 * math.pi) * uniform[1])


def philox_bits(shape, seed: tf.Tensor) -> tf.Tensor:
    """Raw uint32 stateless Philox draws of `seed`: the same bits with and without XLA.

    Example:
        >>> philox_bits([3], tf.constant([1, 2])).dtype
        tf.uint32
    """
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=RNG_ALG
    )


def unit_uniform(shape, seed: tf.Tensor) -> tf.Tensor:
    """float32 U[0, 1) draws, bit for bit `tf.random.stateless_uniform(shape, seed,
    alg="philox")` as TensorFlow's kernel computes it (each draw's low 23 bits as the
    mantissa: k / 2**23), but made from the raw bits, so XLA gives the same numbers (its own
    stateless_uniform does not).

    Example:
        >>> u = unit_uniform([1000], tf.constant([1, 2]))
        >>> bool(tf.reduce_all((u >= 0.0) & (u < 1.0)))
        True
    """
    low_bits = tf.bitwise.bitwise_and(philox_bits(shape, seed), 0x7FFFFF)
    return tf.cast(low_bits, tf.float32) * 2.0**-23


def stateless_seed(seed_generator) -> tf.Tensor:
    """The next int32 seed pair of a `keras.random.SeedGenerator` (as `keras.random` draws it).

    Example:
        >>> import keras
        >>> stateless_seed(keras.random.SeedGenerator(0)).dtype
        tf.int32
    """
    state = seed_generator.next()
    return tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)
