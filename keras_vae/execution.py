"""How many training steps `fit` runs per call into the compiled function, per epoch.

Keras runs `steps_per_execution` steps per call for as long as the data lasts: with
`steps_per_epoch` not a multiple of it, the last call of every epoch runs a whole execution
anyway, unless the end of the data cuts it short. On a repeated (infinite) dataset,
`fit(steps_per_epoch=117)` with `steps_per_execution=50` trains 150 steps per epoch and reports
117. `fit_steps_per_execution` picks a setting that trains exactly `steps_per_epoch` steps, or
says why it cannot.

Example:
    >>> fit_steps_per_execution(50, steps_per_epoch=117, num_batches=None, auto=True)
    39
    >>> fit_steps_per_execution(50, steps_per_epoch=117, num_batches=117, auto=False)
    50
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

KERAS_DEFAULT_BATCH_SIZE = 32


def largest_divisor_at_most(number: int, limit: int) -> int:
    """The largest divisor of `number` that is <= `limit` (at least 1).

    Example:
        >>> largest_divisor_at_most(468, 50)
        39
    """
    if number < 1 or limit < 1:
        raise ValueError(f"Expected positive integers, received number={number}, limit={limit}.")
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def batches_per_epoch(x: Any, batch_size: int | None = None) -> int | None:
    """Batches one pass over `fit`'s `x` yields, or None when unknown or infinite.

    A `tf.data.Dataset` tells its cardinality; arrays (or dicts/lists of them) give
    ceil(examples / batch_size); a `keras.utils.PyDataset` gives its length. Generators, lists
    of plain values and distributed datasets are unknown.

    Example:
        >>> batches_per_epoch(tf.data.Dataset.range(10).batch(4))
        3
        >>> batches_per_epoch(tf.data.Dataset.range(10).repeat()) is None
        True
    """
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        return cardinality if cardinality >= 0 else None
    if isinstance(x, Mapping):
        x = next(iter(x.values()), None)
    elif isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape"):
        x = x[0]
    if hasattr(x, "shape") and getattr(x, "ndim", len(x.shape)) >= 1:
        examples = x.shape[0]
        if examples is None:
            return None
        return math.ceil(int(examples) / (batch_size or KERAS_DEFAULT_BATCH_SIZE))
    if isinstance(x, keras.utils.PyDataset):
        try:
            return len(x)
        except TypeError:
            return None
    return None


def fit_steps_per_execution(
    steps_per_execution: int, steps_per_epoch: int | None, num_batches: int | None, auto: bool
) -> int:
    """`steps_per_execution` for a `fit` that must train exactly `steps_per_epoch` steps.

    Unchanged when every epoch already ends on an execution boundary: no `steps_per_epoch`
    (the data's end ends the epoch), a multiple of `steps_per_execution`, or exactly one pass
    over finite data (its end cuts the last execution). Otherwise "auto" settles for the largest
    divisor of `steps_per_epoch` not above `steps_per_execution`, and an explicit setting raises.

    Args:
        steps_per_execution: the compiled setting ("auto" already resolved to an integer).
        steps_per_epoch: `fit`'s argument.
        num_batches: `batches_per_epoch` of the data, None if unknown or infinite.
        auto: whether the user asked for "auto" (then it may be changed).

    Raises:
        ValueError: an explicit `steps_per_execution` that would train extra steps.
    """
    if steps_per_epoch is None or steps_per_execution == 1:
        return steps_per_execution
    if steps_per_epoch % steps_per_execution == 0 or num_batches == steps_per_epoch:
        return steps_per_execution
    if auto:
        return largest_divisor_at_most(steps_per_epoch, steps_per_execution)
    executions = math.ceil(steps_per_epoch / steps_per_execution)
    raise ValueError(
        f"steps_per_epoch={steps_per_epoch} is not a multiple of "
        f"steps_per_execution={steps_per_execution}: on this data Keras would train "
        f"{executions * steps_per_execution} steps per epoch, not {steps_per_epoch} (each call "
        "runs whole executions while data lasts). Pass a steps_per_epoch that is a multiple of "
        f"{steps_per_execution}, compile with steps_per_execution="
        f"{largest_divisor_at_most(steps_per_epoch, steps_per_execution)} (a divisor of "
        f"{steps_per_epoch}) or 'auto', or give fit exactly {steps_per_epoch} batches of "
        "finite data."
    )


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
    slower than Keras' own multi-step loop calls them (conv VAE, 2 CPU cores: 2.1-2.5k
    against 2.4-3.0k examples/s; benchmarks/profile_train.py), so Keras' loop keeps them.

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
    from keras_vae.model import STEPS_KEY

    blocks = dataset.batch(steps, drop_remainder=False)
    return blocks.map(lambda x: {STEPS_KEY: x}).prefetch(1)


# Evaluation blocks hold at most this many bytes of float32 inputs (one block is one
# compiled loop over its batches; the whole MNIST test set is 31 MB).
EVALUATION_BLOCK_BYTES = 64 * 2**20


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
    from keras_vae.model import STEPS_KEY

    full_batches = num_examples // batch_size
    per_batch = max(1, batch_size * example_size * 4)
    cap = max(1, max_block_bytes // per_batch)
    blocks_needed = max(1, -(-full_batches // cap))
    steps = max(1, -(-full_batches // blocks_needed))
    blocks = dataset.take(full_batches).batch(steps)
    if num_examples % batch_size:
        blocks = blocks.concatenate(dataset.skip(full_batches).batch(1))
    return blocks.map(lambda x: {STEPS_KEY: x}).prefetch(1)
