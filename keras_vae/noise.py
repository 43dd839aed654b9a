"""Reparameterisation noise: stateless, the same for any replica count and with or without XLA.

- `stateless_seed`: the step's seed pair, from the model's `keras.random.SeedGenerator`;
- `standard_normal`: N(0, 1) draws that XLA changes by at most an ulp or two;
- `replica_normal`: the draw for the GLOBAL batch, sliced at this replica's offset, so
  replicas never share noise and one replica trains like many.

>>> standard_normal([2, 3], tf.constant([1, 2])).shape
TensorShape([2, 3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from keras_vae.compat import in_xla_on_cpu
from keras_vae.replicas import BatchLayout

if TYPE_CHECKING:
    import keras

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


def standard_normal(shape: Sequence[int | tf.Tensor], seed: tf.Tensor) -> tf.Tensor:
    """float32 N(0, 1) draws: Box-Muller on stateless Philox bits, the same bits with or
    without XLA.

    `tf.random.stateless_normal` (and `stateless_uniform`) give different numbers when XLA
    compiles them with a seed known only at run time (TF 2.21), so a run's noise would depend
    on `jit_compile`; the raw 32-bit draws agree. From the same bits, XLA's log and cos round
    a quarter of the draws differently, by at most 5e-7 (tests/test_noise.py). Uniforms are
    built from their top 24 bits, u = (k + 1/2) / 2**24, so |z| <= 5.8 (P(|z| > 5.8) is 7e-9
    under N(0, 1)).

    Example:
        >>> standard_normal([2, 3], tf.constant([1, 2])).shape
        TensorShape([2, 3])
    """
    bits = philox_bits([2, *shape], seed)
    uniform = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * 2.0**-24
    radius = tf.sqrt(-2.0 * tf.math.log(uniform[0]))
    draws = radius * tf.cos((2.0 * math.pi) * uniform[1])
    return _computed_once(draws) if in_xla_on_cpu() else draws


def philox_bits(shape: Sequence[int | tf.Tensor] | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Raw uint32 stateless Philox draws of `seed`: `tf.random.stateless_uniform(shape, seed,
    dtype=tf.uint32, alg="philox")`, the same bits with and without XLA.

    Outside XLA, and on a GPU or TPU, this is that op; inside XLA on a CPU, `philox_in_graph`:
    the same bits, in 34 instead of 82 us for a batch of 20 MNIST images' binarization draws
    (XLA's CPU lowering of the op is slow; docs/performance.md).

    Example:
        >>> philox_bits([3], tf.constant([1, 2])).dtype
        tf.uint32
    """
    if in_xla_on_cpu():
        return philox_in_graph(shape, seed)
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=RNG_ALG
    )


# Philox-4x32-10 (Salmon et al. 2011) as tensorflow/core/lib/random/philox_random.h runs it,
# and the key and counter its stateless ops derive from a seed (stateless_random_ops.cc).
_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
_SEED_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)


def philox_in_graph(shape: Sequence[int | tf.Tensor] | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`tf.random.stateless_uniform(shape, seed, dtype=tf.uint32, alg="philox")` bit for bit,
    written as uint32/uint64 graph ops (tests/test_noise.py compares the two).

    The seed's two 64-bit words (int32 seeds sign-extended) go through one Philox block under
    a fixed key; its output is the key and the high half of the counter, and draw i is lane
    i % 4 of the block whose low counter word is i // 4 (up to 2**34 draws).

    Example:
        >>> bool(tf.reduce_all(philox_in_graph([5], tf.constant([1, 2]))
        ...                    == philox_bits([5], tf.constant([1, 2]))))
        True
    """
    seed = tf.bitcast(tf.cast(seed, tf.int64), tf.uint64)
    words = (*_halves(seed[0]), *_halves(seed[1]))
    scramble = tuple(tf.constant(k, tf.uint32) for k in _SEED_SCRAMBLE_KEY)
    key0, key1, high0, high1 = tf.unstack(_computed_once(tf.stack(_philox_rounds(words, scramble))))
    count = tf.reduce_prod(tf.cast(shape, tf.int32))
    block = tf.cast(tf.range((count + 3) // 4), tf.uint32)
    zero = tf.zeros_like(block)
    lanes = _philox_rounds((block, zero, zero + high0, zero + high1), (key0, key1))
    return tf.reshape(tf.reshape(tf.stack(lanes, axis=-1), [-1])[:count], shape)


def _computed_once(tensor: tf.Tensor) -> tf.Tensor:
    """`tensor` (uint32 or float32, finite) unchanged, through a reduction: XLA does not fuse a
    reduction into the elementwise loops that read it, so what made `tensor` runs once.

    Fused into its readers instead, XLA on a CPU recomputed it in each of them: the ten rounds
    of Philox seed mixing for every draw (1,600 against 34 us for a batch of 20 MNIST images),
    and the Box-Muller cosine in each of the five loops that read an IWAE step's noise.
    """
    floor = tf.fill(tf.shape(tensor), tf.constant(tensor.dtype.min, tensor.dtype))
    return tf.reduce_max(tf.stack([tensor, floor]), axis=0)


def _halves(word: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The low and high uint32 halves of a uint64."""
    high = tf.bitwise.right_shift(word, tf.constant(32, tf.uint64))
    return tf.cast(word, tf.uint32), tf.cast(high, tf.uint32)


def _philox_rounds(counter: tuple, key: tuple) -> tuple:
    """Ten Philox rounds on counter blocks (4 uint32 tensors) under `key` (2 uint32)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    xor = tf.bitwise.bitwise_xor
    multiplier0, multiplier1 = (tf.constant(m, tf.uint64) for m in _PHILOX_MULTIPLIERS)
    step0, step1 = (tf.constant(w, tf.uint32) for w in _PHILOX_KEY_STEPS)
    for _ in range(10):
        low0, high0 = _halves(tf.cast(c0, tf.uint64) * multiplier0)
        low1, high1 = _halves(tf.cast(c2, tf.uint64) * multiplier1)
        c0, c1, c2, c3 = xor(xor(high1, c1), k0), low1, xor(xor(high0, c3), k1), low0
        k0, k1 = k0 + step0, k1 + step1
    return c0, c1, c2, c3


def unit_uniform(shape: Sequence[int | tf.Tensor] | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
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


def stateless_seed(seed_generator: keras.random.SeedGenerator) -> tf.Tensor:
    """The next int32 seed pair of a `keras.random.SeedGenerator` (as `keras.random` draws it).

    Example:
        >>> import keras
        >>> stateless_seed(keras.random.SeedGenerator(0)).dtype
        tf.int32
    """
    state = seed_generator.next()
    return tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)
