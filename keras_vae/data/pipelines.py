"""Pipelines: the loaded splits as tf.data batches of float32 in [0, 1], shuffled per epoch.

`prepared_splits` applies the binarization rules to the loaded splits; `make_pipelines` (and
`make_datasets`) turn them into a training pipeline, reshuffled every epoch and drawn from
(seed, epoch) alone (`keras_vae.data.epochs`), and a held-out pipeline in order.

Example:

>>> pipelines = make_pipelines(DataConfig("digits"), batch_size=32)
>>> first_two_epochs = pipelines.epochs(2)
>>> sum(1 for _ in first_two_epochs) == 2 * (pipelines.info.num_train // 32)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import cast

import numpy as np
import tensorflow as tf

from keras_vae.config import SOURCE_VALIDATION, DataConfig
from keras_vae.data.checks import DataError
from keras_vae.data.epochs import split_batches, training_epochs
from keras_vae.data.sources import Split, load_splits, to_unit_interval

SPLITS = ("train", "test", "validation")  # index = the stream of a split's binarization draw
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
        held_out = cast("int", config.validation_examples)  # not SOURCE_VALIDATION: a count
        loaded = _hold_out(loaded, held_out, config.dataset)
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
        splits: the prepared "train", "test" and (with one) "validation" `Split`s the pipelines
            read.
        config: the data config.
        batch_size: the batch size of both pipelines.
        seed: the seed of shuffling and binarization.
        validation: the validation split's batches, in order like `test`; None without one.

    Example:

    >>> config = DataConfig("digits", validation_examples=100)
    >>> pipelines = make_pipelines(config, batch_size=64)
    >>> {name: len(split.images) for name, split in pipelines.splits.items()}
    {'train': 1337, 'test': 360, 'validation': 100}
    >>> [len(x) for x, _ in pipelines.held_out]  # the validation split, in order
    [64, 36]
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
    return split_batches(train, indices)


def held_out_pipeline(test: Split, batch_size: int) -> tf.data.Dataset:
    """The held-out batches of `make_datasets`: in order, every example once, last one smaller.

    Example:

    >>> split = prepared_splits(DataConfig("digits"), splits=["test"])["test"]
    >>> [len(x) for x, _ in held_out_pipeline(split, 256)]
    [256, 104]
    """
    return split_batches(test, tf.data.Dataset.range(len(test.images)).batch(batch_size))
