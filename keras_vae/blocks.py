"""Blocks of steps: several batches in one `train_step` / `test_step` call, one compiled loop.

A block is a dict, one element of the dataset `fit` or `evaluate` is given:

- ``{STEPS_KEY: xs}``, xs [steps, batch, *data_shape]: the batches themselves (`stack_steps`
  for training, `stack_evaluation_steps` for held-out data), with ``LABEL_STEPS_KEY`` [steps,
  batch] for a conditional model;
- ``{INDEX_STEPS_KEY: indices}``, [steps, batch] int64: the example indices of a split placed
  on the device (`keras_vae.device_data`), with ``SEED_STEPS_KEY`` for dynamic binarization.

`VAE.train_step` and `test_step` run a block's steps in order, each exactly the step its batch
alone would make (`keras_vae.device_data.block_batches` reads a block); `block_steps` says how
many steps a training block holds.

>>> data = tf.data.Dataset.range(12).map(lambda i: tf.fill([4, 3], i)).take(5)
>>> [block[STEPS_KEY].shape.as_list() for block in stack_steps(data, 2)]
[[2, 4, 3], [2, 4, 3], [1, 4, 3]]
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

# `{STEPS_KEY: xs}`, xs of shape [steps, batch, *data_shape]: several training steps in one
# `train_step` call (one compiled loop), what `keras-vae train` feeds `fit` (`stack_steps`).
# A conditional model's blocks also hold their labels, [steps, batch], under LABEL_STEPS_KEY.
STEPS_KEY = "x_steps"
LABEL_STEPS_KEY = "label_steps"
# `{INDEX_STEPS_KEY: indices}`, [steps, batch] int64: a block of steps as the example indices
# of a device-resident split (`keras_vae.device_data`), with SEED_STEPS_KEY for binarization.
INDEX_STEPS_KEY = "index_steps"
SEED_STEPS_KEY = "seed_steps"
# Evaluation blocks hold at most this many bytes of float32 inputs (one block is one
# compiled loop over its batches; the whole MNIST test set is 31 MB).
EVALUATION_BLOCK_BYTES = 64 * 2**20


# Training steps per block on the device path when steps_per_execution is "auto": a block there
# is only example indices (8 bytes an example), so it can be a whole epoch (MNIST down to batch
# 15). Paired here (2026-12-05, one device): whole-epoch blocks trained 7-9% faster than 39-50
# step blocks at batch 128 and 20 (the per-call sync and launch, and the step loop's restart).
# The progress bar advances once per block.
DEVICE_BLOCK_STEPS = 4000


def largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest divisor of `number` that is <= `limit` (at least 1).

    Example:
        >>> largest_divisor_at_most(468, 50)
        39
    """
    if number < 1 or limit < 1:
        raise ValueError(f"Expected positive integers, received number={number}, limit={limit}.")
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def is_stepped_dataset(data: Any) -> bool:
    """Whether `data` is a `tf.data.Dataset` of blocks of steps: `{STEPS_KEY: xs}`, or
    `{INDEX_STEPS_KEY: indices}` (`keras_vae.device_data`).

    Example:
        >>> is_stepped_dataset(tf.data.Dataset.range(3))
        False
    """
    if not isinstance(data, tf.data.Dataset):
        return False
    spec = data.element_spec
    return isinstance(spec, dict) and bool({STEPS_KEY, INDEX_STEPS_KEY} & set(spec))


def block_steps(
    steps_per_execution: int,
    steps_per_epoch: int,
    replicas: int = 1,
    jit_compile: bool = True,
) -> int:
    """Training steps per `{"x_steps": xs}` block for `keras-vae train` (1: no blocks).

    The largest divisor of `steps_per_epoch` not above `steps_per_execution`, so that blocks
    never straddle two epochs and all have one shape (one XLA compilation); the numbers do not
    depend on it. One replica only: a mirrored strategy splits every element along axis 0,
    which for a block is the step axis (and Keras cannot run several steps per call there
    either). With XLA only: without it, TF's graph runs the steps inside a `tf.while_loop`
    slower than Keras' own multi-step loop calls them (the conv VAE on CPU:
    benchmarks/profile_train.py), so Keras' loop keeps them.

    Example:
        >>> block_steps(50, steps_per_epoch=468)
        39
        >>> block_steps(50, steps_per_epoch=468, replicas=2)
        1
    """
    if replicas > 1 or not jit_compile:
        return 1
    return largest_divisor_at_most(steps_per_epoch, steps_per_execution)


def stack_steps(dataset: tf.data.Dataset, steps: int) -> tf.data.Dataset:
    """Blocks `{"x_steps": xs}` of `steps` consecutive batches of `dataset` (the last may be
    shorter), xs of shape [steps, batch, *data_shape]: the same batches in the same order,
    for `VAE.train_step` to run in one compiled loop.

    Example:
        >>> data = tf.data.Dataset.range(12).map(lambda i: tf.fill([4, 3], i)).take(5)
        >>> [block["x_steps"].shape.as_list() for block in stack_steps(data, 2)]
        [[2, 4, 3], [2, 4, 3], [1, 4, 3]]
    """
    blocks = dataset.batch(steps, drop_remainder=False)
    return blocks.map(_as_block).prefetch(1)


def _as_block(batches: tf.Tensor | dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Stacked batches -> `{"x_steps": xs}`, and `"label_steps": ys` for labelled dicts."""
    if isinstance(batches, dict):
        return {STEPS_KEY: batches["x"], LABEL_STEPS_KEY: batches["label"]}
    return {STEPS_KEY: batches}


def stack_evaluation_steps(
    dataset: tf.data.Dataset,
    num_examples: int,
    batch_size: int,
    example_size: int,
    max_block_bytes: int = EVALUATION_BLOCK_BYTES,
) -> tf.data.Dataset:
    """`dataset` (batches of `batch_size`, the last one smaller) as `{"x_steps": xs}` blocks.

    The full batches come in blocks of at most `max_block_bytes` of float32 inputs, the last,
    smaller batch in a block of its own, so every batch is evaluated exactly as alone (same
    shape, same noise draw, same order) in a few calls: MNIST's 10,000 test images at batch
    128 are two calls, [78, 128, 28, 28] and [1, 16, 28, 28] (two XLA compilations, then
    cached), instead of 79.

    Args:
        dataset: finite batches, in order.
        num_examples: examples in `dataset`.
        batch_size: its batch size.
        example_size: numbers in one example (e.g. 784).
        max_block_bytes: the cap on a block's float32 size.

    Example:
        >>> data = tf.data.Dataset.range(10).batch(4).map(lambda x: tf.cast(x, tf.float32))
        >>> blocks = stack_evaluation_steps(data, num_examples=10, batch_size=4, example_size=1)
        >>> [block["x_steps"].shape.as_list() for block in blocks]
        [[2, 4], [1, 2]]
    """
    full_batches = num_examples // batch_size
    per_batch = max(1, batch_size * example_size * 4)
    cap = max(1, max_block_bytes // per_batch)
    blocks_needed = max(1, -(-full_batches // cap))
    steps = max(1, -(-full_batches // blocks_needed))
    blocks = dataset.take(full_batches).batch(steps)
    if num_examples % batch_size:
        blocks = blocks.concatenate(dataset.skip(full_batches).batch(1))
    return blocks.map(_as_block).prefetch(1)


def with_length(dataset: tf.data.Dataset, length: int) -> tf.data.Dataset:
    """`dataset` with its known number of elements declared (a joined `flat_map` of epochs has
    none), so Keras expects its end instead of warning that the data "ran out"."""
    return dataset.apply(tf.data.experimental.assert_cardinality(length))
