"""The type aliases of keras-vae's signatures: what its functions take and return.

A public method takes NumPy arrays, TensorFlow tensors (eager or symbolic, inside a
`tf.function`) or nested lists of numbers, and returns tensors; the aliases name those
families once, so every signature says the same thing the same way.

>>> import numpy as np
>>> from keras_vae.tensor_types import TensorLike
>>> def mean(x: TensorLike) -> tf.Tensor:
...     return tf.reduce_mean(tf.convert_to_tensor(x, tf.float32))
>>> float(mean(np.ones((2, 3))))
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import keras
import numpy as np
import tensorflow as tf

# Data, z, noise: anything `tf.convert_to_tensor` takes.
TensorLike: TypeAlias = tf.Tensor | tf.Variable | np.ndarray | Sequence | float | int
# A conditional model's class indices: one per example, or one int for the whole batch.
LabelsLike: TypeAlias = TensorLike | int | None
# A seed: an int for a reproducible draw, None for the model's own seed generator, a
# `keras.random.SeedGenerator`, or a stateless seed tensor where the function says so.
SeedLike: TypeAlias = int | keras.random.SeedGenerator | tf.Tensor | None
# The seeds of drawn samples: one int (the exported `sample`'s draws), one int per row (the
# exported `generate`'s: row i from seeds[i] alone), or None for the model's seed generator.
SampleSeeds: TypeAlias = int | Sequence[int] | np.ndarray | None

__all__ = ["LabelsLike", "SampleSeeds", "SeedLike", "TensorLike"]
