"""Builtin-op pieces of the LiteRT graphs: the input guards that make a run fail on a wrong
input (TFLite runtimes resize inputs non-strictly and have no assertion op) and the baked
prior as integer tables (no quantization touches them).

Every guard is built from two steps (`runtime_dims`, `zero_unless_equal`) that the converter
cannot fold away, since they depend on the runtime shape: WHERE rows of the shape RESHAPEd to
the expected rank, and GATHER of ``got - expected`` from a length-1 vector, out of bounds
unless they are equal. On a correct input every guard is the identity.

    >>> import tensorflow as tf
    >>> exact_latents(tf.zeros([3, 2]), latent_dim=2).shape
    TensorShape([3, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_vae.latent_draws import LatentMixture, mixture_cdf, mixture_index, scaled_noise

ONE_BITS = np.float32(1.0).view(np.int32)  # T = 1: the noise as it is


def runtime_dims(tensor: tf.Tensor, rank: int) -> tf.Tensor:
    """int32 [rank]: the runtime shape of `tensor`, failing at run time (RESHAPE) unless it
    has exactly `rank` dimensions (``tf.where(shape >= 0)`` has one row per dimension)."""
    shape = tf.shape(tensor)
    return tf.gather(shape, tf.reshape(tf.where(shape >= 0), [rank]))


def zero_unless_equal(got: tf.Tensor, expected: tf.Tensor | int) -> tf.Tensor:
    """int32 zeros shaped like `got`, failing at run time (GATHER out of bounds) unless
    `got` equals `expected` (GATHER of ``got - expected`` from a length-1 vector)."""
    return tf.gather(tf.zeros([1], tf.int32), got - expected)  # 0 or fails


def exact_latents(z: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """`z` itself, through builtin TFLite ops that fail at run time unless `z` is exactly
    [n, latent_dim] (TFLite runtimes resize a [-1, latent_dim] input to any shape, any rank).

    The converter folds everything it can derive from the static shape of the
    [None, latent_dim] spec, so ``tf.rank(z)``, ``tf.shape(z)[1]`` and ``tf.shape(tf.shape(z))``
    become constants and check nothing, and ``tf.debugging.assert_*`` / ``tf.ensure_shape`` are
    not builtins. What it cannot fold is a value that depends on the runtime batch size:

    * ``tf.where(shape >= 0)`` (WHERE) has one row per dimension `z` really has, so its
      RESHAPE to [2] fails unless the rank is 2 -- including ``(1, a, b)`` with
      ``a * b == latent_dim``, which a reshape of `z` itself would let through;
    * gathering the shape by those rows gives the runtime [n, width], and GATHER of index
      ``width - latent_dim`` from a length-1 vector is out of bounds unless the width is
      `latent_dim`, whatever n (also for an empty batch);
    * the final RESHAPE to [n, latent_dim] ties both checks into the graph (nothing else
      depends on them) and fails too when the element count is not ``n * latent_dim``.

    On a correct input every step is the identity, so the outputs are unchanged.
    """
    dims = runtime_dims(z, 2)
    width_ok = zero_unless_equal(dims[1], latent_dim)
    return tf.reshape(z, tf.stack([dims[0] + width_ok, latent_dim]))


def exact_uniform(uniform: tf.Tensor, num_rows: tf.Tensor) -> tf.Tensor:
    """`uniform` itself, through builtin TFLite ops that fail at run time unless it is exactly
    [num_rows] (rank 1, one value per row of the noise), as `exact_latents` does for z.

    * the WHERE rows of its runtime shape RESHAPE to [1] only for rank 1 (a scalar has none,
      a [n, 1] or [1, n] two);
    * GATHER of index ``rows - num_rows`` from a length-1 vector is out of bounds unless the
      counts agree;
    * adding that gathered 0 to `uniform` ties both checks into the graph. (A RESHAPE of a
      rank-1 input to [rows], as `exact_latents` ends, is an identity the converter folds
      away together with the checks.)
    """
    rows_ok = zero_unless_equal(runtime_dims(uniform, 1)[0], num_rows)
    return uniform + tf.cast(rows_ok, uniform.dtype)


def exact_labels(label: tf.Tensor, num_rows: tf.Tensor, num_classes: int) -> tf.Tensor:
    """`label` itself, through builtin TFLite ops that fail at run time unless it is exactly
    [num_rows] (rank 1, one label per row of z or noise) with every value in
    [0, num_classes): an out-of-range label must fail the run, not decode with the zero row
    that ONE_HOT gives it (a silent wrong class).

    * rank and row count as `exact_uniform` checks them (WHERE rows RESHAPEd to [1], GATHER
      of ``rows - num_rows`` from a length-1 vector);
    * GATHER of index ``label`` from the int32 table [0, 1, ..., num_classes - 1] is out of
      bounds (``gather index out of bounds``) for a label below 0 or at or above
      num_classes, and on the others returns the label itself, which the decoder then
      reads, so the check cannot be folded away or skipped. The table is integer, so no
      quantization touches it.
    """
    rows_ok = zero_unless_equal(runtime_dims(label, 1)[0], num_rows)
    classes = tf.range(num_classes, dtype=tf.int32)
    return tf.gather(classes, tf.cast(label, tf.int32) + rows_ok)  # label or fails


def exact_examples(x: tf.Tensor, example_shape: Sequence[int]) -> tf.Tensor:
    """`x` itself, through builtin ops that fail at run time unless `x` is exactly
    [n, *example_shape]: `exact_latents`' checks for any example rank (WHERE rows of the
    runtime shape RESHAPEd to the rank, GATHER of each ``dim - expected`` from a length-1
    vector, a final RESHAPE tying both into the graph)."""
    example_shape = [int(d) for d in example_shape]
    dims = runtime_dims(x, 1 + len(example_shape))
    ok = tf.reduce_sum(zero_unless_equal(dims[1:], tf.constant(example_shape, tf.int32)))
    return tf.reshape(x, tf.concat([tf.reshape(dims[0] + ok, [1]), example_shape], axis=0))


def same_rows(tensor: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """`tensor` itself, failing at run time unless its first dimension is `rows` (GATHER of
    ``rows_tensor - rows`` from a length-1 vector, added to `tensor`)."""
    offset = zero_unless_equal(tf.shape(tensor)[0], rows)
    return tensor + tf.cast(offset, tensor.dtype)


def mixture_tables(mixture: LatentMixture, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """The int32 bit patterns of a baked mixture (`keras_vae.latent_draws.LatentMixture`): its
    float32 ``cdf`` [C, K-1] (cumsum(exp(log_weights)) but the last, as
    `keras_vae.parts.priors.component_from_uniform` computes it), ``loc`` [C*K, D], ``scale``
    [C*K, D] or [C*K, D, D], and the ``temperature``: integer constants, which no
    quantization touches."""
    classes, components = mixture.log_weights.shape
    flat = classes * components
    tables = {
        "cdf": mixture_cdf(mixture),
        "loc": np.reshape(mixture.loc, (flat, -1)),
        "scale": np.reshape(mixture.scale, (flat, *mixture.scale.shape[2:])),
    }
    bits = {name: np.ascontiguousarray(a, np.float32).view(np.int32) for name, a in tables.items()}
    return {**bits, **temperature_table(temperature)}


def temperature_table(temperature: float) -> dict[str, np.ndarray]:
    """``{"temperature": [T, T] as float32 bits in int32}``: the table of `sample_from_tables`
    for z = T * noise (N(0, I)), and part of `mixture_tables`. Two copies, so that a row
    gathers T by an index the converter cannot fold (`sample_from_tables`)."""
    return {"temperature": np.full(2, temperature, np.float32).view(np.int32)}


def floats_at(table: np.ndarray, index: tf.Tensor) -> tf.Tensor:
    """The float32 rows `index` of an int32 bit-pattern `table`, gathered before the BITCAST:
    a bitcast of the whole constant would be folded into a float constant, which float16
    quantization would then round."""
    return tf.bitcast(tf.gather(tf.constant(table), index), tf.float32)


def component_from_bits(cdf_bits: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """#{j: u >= cdf_j} as int32 [n] for `cdf_bits` [K-1] or one row per u [n, K-1],
    comparing bit patterns: for float32 numbers >= 0 their order is that of their int32 bits,
    and a u < 0 (negative bits) reaches no cdf_j >= 0, so this equals the float comparison
    for every u but NaN (-0.0 is taken as 0)."""
    bits = tf.bitcast(uniform, tf.int32) * tf.cast(tf.abs(uniform) > 0, tf.int32)
    reached = tf.cast(bits[:, tf.newaxis] >= cdf_bits, tf.int32)
    return tf.reduce_sum(reached, axis=-1)


def sample_from_tables(
    tables: dict[str, np.ndarray],
    noise: tf.Tensor,
    uniform: tf.Tensor | None,
    label: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(z [n, D], component int32 [n] or None) from `mixture_tables` (only a ``temperature``
    for N(0, I)), in builtin ops: the same numbers as `keras_vae.latent_draws.draw_latent` of
    the same mixture and temperature (row i's class mixture is label_i's when there is one
    per class)."""
    if tables["temperature"][0] != ONE_BITS:
        # T gathered per row by an index the converter cannot fold (0, or 1 for a NaN noise
        # row, from the table [T, T]), so that no float16 quantization rounds it.
        rows = tf.cast(tf.math.is_nan(noise[:, 0]), tf.int32)
        noise = noise * floats_at(tables["temperature"], rows)[:, tf.newaxis]
    if "cdf" not in tables:
        return noise, None
    classes = tables["cdf"].shape[0]
    cdf = tf.constant(tables["cdf"])
    if classes == 1:
        label, cdf_rows = None, cdf[0]
    else:
        cdf_rows = tf.gather(cdf, tf.cast(label, tf.int32))
    component = component_from_bits(cdf_rows, uniform)
    index = mixture_index(component, label, tables["loc"].shape[0] // classes)
    loc = floats_at(tables["loc"], index)
    return loc + scaled_noise(floats_at(tables["scale"], index), noise), component
