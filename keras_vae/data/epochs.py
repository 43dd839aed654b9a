"""Epochs drawn from (seed, epoch) alone: the order, the index batches, the batches of images.

Epoch e of a run is a function of (seed, e) only, never of the epochs before it, so a resumed
run and an uninterrupted one see the same batches, and `keras_vae.device_data` can gather the
same batches on the device from `epoch_indices`. `keras_vae.data.pipelines` builds the
training and held-out pipelines from these.

>>> order = epoch_order(5, None, tf.constant([0, 1], tf.int64))
>>> sorted(order.numpy().tolist())
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vae.config import DataConfig
from keras_vae.data.sources import Split
from keras_vae.noise import unit_uniform

# Second word of the stateless seed of dynamic binarization; the first is drawn per batch.
DYNAMIC_BINARIZATION_STREAM = 0x5EED
# float32(v) / 255 for each uint8 v, correctly rounded as TensorFlow's and NumPy's kernels give it
UINT8_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


def epoch_indices(
    num_examples: int, config: DataConfig, batch_size: int, seed: int, epoch: int | tf.Tensor
) -> tf.data.Dataset:
    """Epoch `epoch`'s index batches (with dynamic binarization, (indices, noise seed) pairs),
    drawn from (`seed`, `epoch`) alone. Small: it holds no images (see `training_epochs`).

    Example:

    >>> batches = epoch_indices(10, DataConfig("digits"), 4, seed=0, epoch=1)
    >>> [len(b) for b in batches]
    [4, 4]
    """
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    order = epoch_order(num_examples, config.shuffle_buffer, key)
    indices = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, True)
    if config.binarization != "dynamic":
        return indices
    epoch_seed = tf.random.stateless_uniform([], seed=key, minval=0, maxval=2**62, dtype=tf.int64)
    noise_seeds = tf.data.Dataset.range(num_examples // batch_size).map(lambda i: epoch_seed + i)
    return tf.data.Dataset.zip(indices, noise_seeds)


def epoch_batches(
    train: Split, config: DataConfig, batch_size: int, seed: int, epoch: int | tf.Tensor
) -> tf.data.Dataset:
    """The training batches of epoch `epoch` (0, 1, ...): shuffled and binarized from
    (`seed`, `epoch`) alone, whatever was read before, so a resumed run that starts at epoch
    k sees what an uninterrupted run saw there. `training_epochs` joins them.

    Example:

    >>> from keras_vae.data import prepared_splits
    >>> split = prepared_splits(DataConfig("digits"))["train"]
    >>> first = next(iter(epoch_batches(split, DataConfig("digits"), 32, seed=0, epoch=3)))
    >>> again = next(iter(epoch_batches(split, DataConfig("digits"), 32, seed=0, epoch=3)))
    >>> bool(tf.reduce_all(first[0] == again[0]))
    True
    """
    indices = epoch_indices(len(train.images), config, batch_size, seed, epoch)
    return split_batches(train, indices)


def epoch_order(num_examples: int, shuffle_buffer: int | None, key: tf.Tensor) -> tf.Tensor:
    """The example order of one epoch, int64 [num_examples], a function of `key` alone.

    A uniform permutation, or with `shuffle_buffer` below `num_examples` a local shuffle:
    windows of `shuffle_buffer` consecutive examples in a random order, each shuffled within.

    Example:

    >>> order = epoch_order(10, None, tf.constant([0, 1], tf.int64))
    >>> sorted(order.numpy().tolist()) == list(range(10))
    True
    """
    uniform = tf.random.stateless_uniform([num_examples], seed=key, dtype=tf.float64)
    if shuffle_buffer is None or shuffle_buffer >= num_examples:
        return tf.cast(tf.argsort(uniform, stable=True), tf.int64)
    windows = -(-num_examples // shuffle_buffer)
    window_key = tf.random.stateless_uniform([windows], seed=key[::-1], dtype=tf.float64)
    window_rank = tf.cast(tf.argsort(tf.argsort(window_key)), tf.float64)
    window_of = tf.range(num_examples, dtype=tf.int64) // shuffle_buffer
    keys = tf.gather(window_rank, window_of) + uniform
    return tf.cast(tf.argsort(keys, stable=True), tf.int64)


def training_epochs(
    train: Split,
    config: DataConfig,
    batch_size: int,
    seed: int,
    epochs: int,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Epochs `first_epoch`, ..., `epochs - 1` of `epoch_batches`, one after the other, as ONE
    finite dataset (one iterator for a whole `fit`).

    Only the index batches are made per epoch (`epoch_indices`, inside `flat_map`); the images
    are gathered outside it, so the in-memory split is not copied into every epoch's function,
    which made each new iterator slow to start (see the pipeline-start wait that
    benchmarks/profile_train.py measures).

    Example:

    >>> from keras_vae.data import prepared_splits
    >>> split = prepared_splits(DataConfig("digits"))["train"]
    >>> len(list(training_epochs(split, DataConfig("digits"), 512, seed=0, epochs=3)))
    6
    """
    num_examples = len(train.images)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        return epoch_indices(num_examples, config, batch_size, seed, epoch)

    return split_batches(train, tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch))


def split_batches(train: Split, indices: tf.data.Dataset) -> tf.data.Dataset:
    """Float batches of `train` at the index batches `indices`, one `tf.gather` per batch (the
    batches of ``from_tensor_slices(...).shuffle(...).batch(...)`` with less per-example
    work); elements that are (indices, noise seed) pairs are binarized with that seed
    (dynamic binarization)."""
    images = tf.constant(train.images)
    labels = None if train.labels is None else tf.constant(train.labels)

    def batch(*element: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        x, y = batch_from_split(images, labels, *element)
        return x if y is None else (x, y)

    return indices.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def batch_from_split(
    images: tf.Tensor,
    labels: tf.Tensor | None,
    index: tf.Tensor,
    seed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The float32 batch of the examples `index` of a split's `images` (uint8 0..255 or float
    in [0, 1]) and its labels (None without): Bernoulli-binarized with the stateless `seed`
    when given (dynamic binarization), else scaled to [0, 1]. The one definition of a training
    batch, for tf.data (`training_epochs`) and for the device-resident path
    (`keras_vae.device_data`, inside XLA): both give the same numbers, bit for bit.

    Example:

    >>> x, y = batch_from_split(tf.constant([[0, 255], [255, 0]], tf.uint8), None, [1])
    >>> x.numpy().tolist(), y
    ([[1.0, 0.0]], None)
    """
    x = tf.gather(images, index)
    if x.dtype == tf.uint8:  # v / 255 looked up: XLA's division is not always TF's, to 1 ulp
        x = tf.gather(tf.constant(UINT8_UNIT), tf.cast(x, tf.int32))
    x = tf.cast(x, tf.float32)
    if seed is not None:
        key = tf.stack([seed, tf.constant(DYNAMIC_BINARIZATION_STREAM, tf.int64)])
        # The draws of earlier versions (stateless_uniform's, Philox), and the same inside
        # XLA (the device path), where stateless_uniform itself would give other numbers.
        x = tf.cast(unit_uniform(tf.shape(x), key) < x, tf.float32)
    return x, None if labels is None else tf.gather(labels, index)
