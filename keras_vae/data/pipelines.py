"""Pipelines: the loaded splits as tf.data batches of float32 in [0, 1], shuffled per epoch.

`prepared_splits` applies the binarization rules to the loaded splits; `make_pipelines` (and
`make_datasets`) turn them into a training pipeline, reshuffled every epoch and drawn from
(seed, epoch) alone (`epoch_batches`, `training_epochs`), and a held-out pipeline in order.

Example:

>>> pipelines = make_pipelines(DataConfig("digits"), batch_size=32)
>>> first_two_epochs = pipelines.epochs(2)
>>> sum(1 for _ in first_two_epochs) == 2 * (pipelines.info.num_train // 32)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_vae.config import SOURCE_VALIDATION, DataConfig
from keras_vae.data.checks import DataError
from keras_vae.data.sources import Split, load_splits, to_unit_interval
from keras_vae.noise import unit_uniform

# Second word of the stateless seed of dynamic binarization; the first is drawn per batch.
_DYNAMIC_BINARIZATION_STREAM = 0x5EED
SPLITS = ("train", "test", "validation")  # index = the stream of a split's binarization draw
# float32(v) / 255 for each uint8 v, correctly rounded as TensorFlow's and NumPy's kernels give it
_UINT8_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)
_BINARIZE_CHUNK = 8192  # rows per NumPy step of `binarize` (bounds its float32 temporaries)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the report need to know about the data.

    Attributes:
        name: the source as asked for (`DataConfig.dataset`).
        data_shape: one example's shape, e.g. (28, 28) for MNIST, (784,) for binarized-MNIST npz.
        num_train: training examples (the pipeline skips the last incomplete batch each epoch).
        num_test: test examples (the test pipeline yields each exactly once).
        has_labels: whether pipeline elements are ``(x, y)`` rather than ``x``.
        num_classes: 1 + the largest label, or None without labels.
        num_validation: examples of the validation split (0: none).

    Example:

    >>> DatasetInfo("digits", (8, 8), 1437, 360, True, 10).data_shape
    (8, 8)
    """

    name: str
    data_shape: tuple[int, ...]
    num_train: int
    num_test: int
    has_labels: bool
    num_classes: int | None
    num_validation: int = 0


# ----------------------------------------------------------------------------------------------
# Binarization and the prepared splits
# ----------------------------------------------------------------------------------------------


def binarize(images: np.ndarray, seed: int | Sequence[int]) -> np.ndarray:
    """One Bernoulli draw per pixel with p = intensity, as uint8 {0, 255}; binary data is kept.

    Args:
        images: a `Split`'s images (uint8 0..255 or float32 in [0, 1]).
        seed: seeds `np.random.default_rng`; the same seed gives the same draw.

    Example:

    >>> binarize(np.array([[0, 255]], np.uint8), seed=0)
    array([[  0, 255]], dtype=uint8)
    """
    rng = np.random.default_rng(seed)
    out = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), _BINARIZE_CHUNK):
        p = to_unit_interval(images[start : start + _BINARIZE_CHUNK])
        chunk = (rng.random(p.shape, dtype=np.float32) < p) * np.uint8(255)
        out[start : start + _BINARIZE_CHUNK] = chunk
    return out


def prepared_splits(
    config: DataConfig, seed: int = 0, splits: Sequence[str] = ("train", "test")
) -> dict[str, Split]:
    """The splits exactly as `make_datasets` feeds them, before scaling to [0, 1].

    "static" binarization is drawn here for every split, "dynamic" only for the held-out ones
    (the training images stay grey: they are drawn anew for every batch). The one place these
    rules live, so the train job and `keras-vae evaluate` see the same held-out examples.

    A "validation" split (`DataConfig.validation_examples`) is the last N examples of the
    source's training split, which then keeps the rest, or the source's own validation split.

    Args:
        config: the data section of a run config.
        seed: the run's seed (the binarization draws).
        splits: which of "train", "test" and (with a validation split) "validation" to return.

    Raises:
        DataError: the source cannot be loaded, or the validation split would leave no
            training example.

    Example:

    >>> prepared_splits(DataConfig("digits"), splits=["test"])["test"].images.shape
    (360, 8, 8)
    >>> held_out = DataConfig("digits", validation_examples=100)
    >>> [len(s.images) for s in prepared_splits(held_out, splits=SPLITS).values()]
    [1337, 360, 100]
    """
    allowed = available_splits(config)
    unknown = sorted(set(splits) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown splits {unknown}; expected some of {list(allowed)}.")
    from_source = config.validation_examples == SOURCE_VALIDATION
    loaded = load_splits(
        config.dataset, config.data_dir, config.test_fraction, seed=0, validation=from_source
    )
    if config.has_validation and not from_source:
        loaded = _hold_out(loaded, config.validation_examples, config.dataset)
    prepared = {}
    for name in splits:
        images = loaded[name].images
        drawn = ("static",) if name == "train" else ("static", "dynamic")
        if config.binarization in drawn:
            images = binarize(images, (seed, SPLITS.index(name)))
        prepared[name] = Split(images, loaded[name].labels)
    return prepared


def available_splits(config: DataConfig) -> tuple[str, ...]:
    """The splits `config` defines: "train", "test" and, when held out, "validation"."""
    return SPLITS if config.has_validation else SPLITS[:2]


def _hold_out(splits: dict[str, Split], count: int, dataset: str) -> dict[str, Split]:
    """`splits` with the last `count` training examples moved to a "validation" split."""
    train = splits["train"]
    if count >= len(train.images):
        raise DataError(
            f"--validation-examples {count} would leave no training example: {dataset} has "
            f"{len(train.images)}; hold out fewer than {len(train.images)}."
        )
    cut = len(train.images) - count

    def part(rows: slice) -> Split:
        return Split(train.images[rows], None if train.labels is None else train.labels[rows])

    return {**splits, "train": part(slice(None, cut)), "validation": part(slice(cut, None))}


# ----------------------------------------------------------------------------------------------
# Train and test pipelines
# ----------------------------------------------------------------------------------------------


def make_datasets(
    config: DataConfig, batch_size: int, seed: int = 0
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """Train and test pipelines of float32 images in [0, 1], and what they hold.

    Train: reshuffled every epoch (deterministic for a `seed`), batched with
    ``drop_remainder=True`` so every batch has the static size `batch_size` (XLA compiles one
    shape); each epoch therefore skips at most ``batch_size - 1`` examples, a different random
    subset every epoch. Test: in order, every example exactly once, last batch smaller.
    Elements are ``(x, y)`` when the source has labels, else ``x``.

    Binarization (`config.binarization`): "static" draws once per image (NumPy, `seed`) for both
    splits; "dynamic" draws anew for every training batch each epoch, and once (fixed, `seed`)
    for the test set, as in the literature. Data that is already binary is unchanged.

    The held-out split of sources without a test split (digits, images-only npz) is always
    drawn with seed 0, so runs with different seeds are evaluated on the same test set.

    Args:
        config: the data section of the run config.
        batch_size: global batch size of both pipelines.
        seed: seeds shuffling and binarization. Defaults to 0.

    Raises:
        DataError: the source cannot be loaded, or `batch_size` exceeds the training set.

    Example:

    >>> train, test, info = make_datasets(DataConfig("digits"), batch_size=32)
    >>> info.data_shape, info.num_train, info.num_test
    ((8, 8), 1437, 360)
    >>> x, y = next(iter(train))
    >>> x.shape, x.dtype.name, y.dtype.name
    (TensorShape([32, 8, 8]), 'float32', 'int64')
    """
    pipelines = make_pipelines(config, batch_size, seed)
    return pipelines.train, pipelines.test, pipelines.info


@dataclasses.dataclass(frozen=True)
class Pipelines:
    """What `make_pipelines` returns: the pipelines of `make_datasets`, and their splits.

    Attributes:
        train: the training batches (see `training_pipeline`).
        test: the held-out batches (see `held_out_pipeline`).
        info: what the data holds.
        splits: the prepared "train" and "test" `Split`s the pipelines read.
        config: the data config.
        batch_size: the batch size of both pipelines.
        seed: the seed of shuffling and binarization.
        validation: the validation split's batches, in order like `test`; None without one.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo
    splits: dict[str, Split]
    config: DataConfig
    batch_size: int
    seed: int
    validation: tf.data.Dataset | None = None

    @property
    def held_out(self) -> tf.data.Dataset:
        """What training validates on: the validation split, else (as before) the test split."""
        return self.test if self.validation is None else self.validation

    def epochs(self, epochs: int, first_epoch: int = 0) -> tf.data.Dataset:
        """`training_epochs` over the training split: epochs `first_epoch`..`epochs - 1`."""
        split = self.splits["train"]
        return training_epochs(split, self.config, self.batch_size, self.seed, epochs, first_epoch)


def make_pipelines(config: DataConfig, batch_size: int, seed: int = 0) -> Pipelines:
    """`make_datasets`, keeping the prepared splits (see `Pipelines`).

    Example:

    >>> pipelines = make_pipelines(DataConfig("digits"), batch_size=32)
    >>> pipelines.splits["train"].images.dtype, pipelines.info.num_classes
    (dtype('float32'), 10)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(
            "Received an invalid value for `batch_size`, expected a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    splits = prepared_splits(config, seed, available_splits(config))
    train, test = splits["train"], splits["test"]
    if batch_size > len(train.images):
        raise DataError(
            f"batch_size={batch_size} exceeds the {len(train.images)} training examples of "
            f"{config.dataset!r}; use a batch size <= {len(train.images)}."
        )
    train_ds = training_pipeline(train, config, batch_size, seed)
    test_ds = held_out_pipeline(test, batch_size)

    validation = splits.get("validation")
    validation_ds = None if validation is None else held_out_pipeline(validation, batch_size)
    labels = [split.labels for split in splits.values() if split.labels is not None]
    info = DatasetInfo(
        name=config.dataset,
        data_shape=tuple(int(d) for d in train.images.shape[1:]),
        num_train=len(train.images),
        num_test=len(test.images),
        has_labels=bool(labels),
        num_classes=1 + max(int(y.max()) for y in labels) if labels else None,
        num_validation=0 if validation is None else len(validation.images),
    )
    return Pipelines(train_ds, test_ds, info, splits, config, batch_size, seed, validation_ds)


def training_pipeline(
    train: Split, config: DataConfig, batch_size: int, seed: int = 0
) -> tf.data.Dataset:
    """The training batches of `make_datasets` for a prepared split (see `prepared_splits`).

    Each pass over it (each new iterator) is reshuffled, and with dynamic binarization drawn
    anew, from generators that start afresh with each call of this function.

    Example:

    >>> split = prepared_splits(DataConfig("digits"))["train"]
    >>> len(list(training_pipeline(split, DataConfig("digits"), 512)))
    2
    """
    buffer = config.shuffle_buffer or len(train.images)
    order = tf.data.Dataset.range(len(train.images))
    order = order.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    indices = order.batch(batch_size, True)
    if config.binarization == "dynamic":
        noise_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        indices = tf.data.Dataset.zip(indices, noise_seeds)
    return _split_batches(train, indices)


def held_out_pipeline(test: Split, batch_size: int) -> tf.data.Dataset:
    """The held-out batches of `make_datasets`: in order, every example once, last one smaller.

    Example:

    >>> split = prepared_splits(DataConfig("digits"), splits=["test"])["test"]
    >>> [len(x) for x, _ in held_out_pipeline(split, 256)]
    [256, 104]
    """
    return _split_batches(test, tf.data.Dataset.range(len(test.images)).batch(batch_size))


# ----------------------------------------------------------------------------------------------
# Epochs drawn from (seed, epoch) alone
# ----------------------------------------------------------------------------------------------


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

    >>> split = prepared_splits(DataConfig("digits"))["train"]
    >>> first = next(iter(epoch_batches(split, DataConfig("digits"), 32, seed=0, epoch=3)))
    >>> again = next(iter(epoch_batches(split, DataConfig("digits"), 32, seed=0, epoch=3)))
    >>> bool(tf.reduce_all(first[0] == again[0]))
    True
    """
    indices = epoch_indices(len(train.images), config, batch_size, seed, epoch)
    return _split_batches(train, indices)


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

    >>> split = prepared_splits(DataConfig("digits"))["train"]
    >>> len(list(training_epochs(split, DataConfig("digits"), 512, seed=0, epochs=3)))
    6
    """
    num_examples = len(train.images)

    def one_epoch(epoch):
        return epoch_indices(num_examples, config, batch_size, seed, epoch)

    return _split_batches(train, tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch))


def _split_batches(train: Split, indices: tf.data.Dataset) -> tf.data.Dataset:
    """Float batches of `train` at the index batches `indices`, one `tf.gather` per batch (the
    batches of ``from_tensor_slices(...).shuffle(...).batch(...)`` with less per-example
    work); elements that are (indices, noise seed) pairs are binarized with that seed
    (dynamic binarization)."""
    images = tf.constant(train.images)
    labels = None if train.labels is None else tf.constant(train.labels)

    def batch(*element):
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
        x = tf.gather(tf.constant(_UINT8_UNIT), tf.cast(x, tf.int32))
    x = tf.cast(x, tf.float32)
    if seed is not None:
        key = tf.stack([seed, tf.constant(_DYNAMIC_BINARIZATION_STREAM, tf.int64)])
        # The draws of earlier versions (stateless_uniform's, Philox), and the same inside
        # XLA (the device path), where stateless_uniform itself would give other numbers.
        x = tf.cast(unit_uniform(tf.shape(x), key) < x, tf.float32)
    return x, None if labels is None else tf.gather(labels, index)
