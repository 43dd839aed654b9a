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
