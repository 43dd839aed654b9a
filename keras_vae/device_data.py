"""The training split held on the device, its batches drawn inside the compiled training loop.

With blocks of steps (`keras_vae.blocks.block_steps`), `keras-vae train` feeds `fit` one
block per call. On the streaming path a block is the stacked float batches themselves
(`{"x_steps": xs}`), gathered, converted and stacked by tf.data threads that compete with the
compiled loop for the same cores. On the device path (`TrainingConfig.device_data_limit_mb`)
the split is placed on the device once (`DeviceData`) and a block is only the example
indices of its steps and, with dynamic binarization, each step's noise seed
(`{"index_steps": [steps, batch], "seed_steps": [steps]}`: a few KB); `VAE.train_step`
gathers each batch and binarizes it inside the compiled loop (`block_batches`).

The indices and seeds are those of the streaming path (`keras_vae.data.epoch_indices`: the
k-th batch of epoch e is a function of (seed, e, k) alone) and the batch is made by the same
function (`keras_vae.data.epochs.batch_from_split`, whose Bernoulli noise XLA computes bit
for bit as TensorFlow's kernel does: `keras_vae.noise.unit_uniform`), so both paths train on
the same numbers, and a resumed run equals an uninterrupted one on either: which path ran is
an execution detail, not part of what the run computes.

Example:

>>> data = DeviceData(split, dynamic=True)                              # doctest: +SKIP
>>> attach(model, data)                                                 # doctest: +SKIP
>>> model.fit(index_blocks(...), ...)                                   # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_vae.blocks import INDEX_STEPS_KEY, LABEL_STEPS_KEY, SEED_STEPS_KEY, STEPS_KEY
from keras_vae.config import DEVICE_DATA_AUTO_MB, DataConfig
from keras_vae.data import Split
from keras_vae.data import epochs as data_epochs  # a module attribute: tests patch it
from keras_vae.data.epochs import batch_from_split
from keras_vae.memory import machine_memory_bytes

_ATTACHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def limit_megabytes(setting: int | str) -> int:
    """The MB a training split may take to be placed on the device: `setting` as given, or
    for "auto" `DEVICE_DATA_AUTO_MB` or a quarter of the machine's memory, whichever is less.

    Example:

    >>> limit_megabytes(0), limit_megabytes("auto") <= 1024
    (0, True)
    """
    if setting != "auto":
        return int(setting)
    memory = machine_memory_bytes()
    if memory is None:  # no sysconf (Windows): the fixed limit
        return DEVICE_DATA_AUTO_MB
    return min(DEVICE_DATA_AUTO_MB, memory // 2**20 // 4)


def split_megabytes(split: Split) -> float:
    """The MB a split takes on the device, as stored (uint8 or float32 images, int64 labels)."""
    labels = 0 if split.labels is None else split.labels.nbytes
    return (split.images.nbytes + labels) / 2**20


class DeviceData:
    """A training split as device-resident variables (not tracked by any model, so never
    saved with it), and the batch of given indices made from it.

    Args:
        split: the prepared training split (`keras_vae.data.prepared_splits`).
        dynamic: draw a Bernoulli binarization per batch (with the batch's seed).
    """

    def __init__(self, split: Split, dynamic: bool) -> None:
        self.dynamic = dynamic
        with tf.init_scope():
            self.images = tf.Variable(split.images, trainable=False, name="device_images")
            self.labels = (
                None
                if split.labels is None
                else tf.Variable(split.labels, trainable=False, name="device_labels")
            )

    def batch(
        self, indices: tf.Tensor, seed: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The float32 batch of the examples `indices` (binarized with `seed` when dynamic)
        and its labels (None without labels)."""
        return batch_from_split(self.images, self.labels, indices, seed if self.dynamic else None)


def attach(model: keras.Model, data: DeviceData | None) -> None:
    """Make `data` the device split `model`'s index blocks draw from (None: detach)."""
    if data is None:
        _ATTACHED.pop(model, None)
    else:
        _ATTACHED[model] = data


def block_batches(
    model: keras.Model, data: Any
) -> tuple[tf.Tensor, Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor | None]]] | None:
    """For a block of steps, (its number of steps, index -> (x, labels) of that step); None
    for a plain batch. Handles stacked blocks (`{"x_steps": xs}`) and index blocks (drawn
    from the `DeviceData` attached to `model`).

    Raises:
        ValueError: an index block with no `DeviceData` attached to `model`.
    """
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    if not isinstance(x, dict):
        return None
    if STEPS_KEY in x:
        steps, label_steps = x[STEPS_KEY], x.get(LABEL_STEPS_KEY)

        def stacked(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
            labels = None if label_steps is None else label_steps[index]
            return tf.cast(steps[index], tf.float32), labels

        return tf.shape(steps)[0], stacked
    if INDEX_STEPS_KEY not in x:
        return None
    source = _ATTACHED.get(model)
    if source is None:
        raise ValueError(
            "An index block needs the training split on the device: call "
            "keras_vae.device_data.attach(model, DeviceData(split, dynamic)) before fit."
        )
    indices, seeds = x[INDEX_STEPS_KEY], x.get(SEED_STEPS_KEY)

    def gathered(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        return source.batch(indices[index], None if seeds is None else seeds[index])

    return tf.shape(indices)[0], gathered


def index_blocks(
    num_examples: int,
    config: DataConfig,
    batch_size: int,
    seed: int,
    epochs: int,
    first_epoch: int,
    steps: int,
) -> tf.data.Dataset:
    """Blocks of `steps` batches' indices (and seeds) of epochs `first_epoch`..`epochs - 1`,
    the streaming path's batches (`keras_vae.data.epoch_indices`) without their images.

    Example:

    >>> blocks = index_blocks(10, DataConfig("digits"), 2, 0, epochs=1, first_epoch=0, steps=5)
    >>> [block[INDEX_STEPS_KEY].shape.as_list() for block in blocks]
    [[5, 2]]
    """

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        return data_epochs.epoch_indices(num_examples, config, batch_size, seed, epoch)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    return batches.batch(steps).map(_as_index_block).prefetch(2)


def _as_index_block(*element: tf.Tensor) -> dict[str, tf.Tensor]:
    if len(element) == 2:  # (indices, noise seeds): dynamic binarization
        return {INDEX_STEPS_KEY: element[0], SEED_STEPS_KEY: element[1]}
    return {INDEX_STEPS_KEY: element[0]}
