"""Datasets: load a source into memory (`load_splits`), then build tf.data pipelines
(`make_datasets`).

Sources, chosen from the one string `DataConfig.dataset`:

- ``"digits"``: scikit-learn's bundled 8x8 digits (no download; for smoke tests).
- an existing folder: the four MNIST-layout IDX files (gzip or not).
- a path ending in ``.npz``: the `keras.datasets` layout (``x_train``, ``x_test``, optional
  ``y_train``, ``y_test``), the binarized-MNIST layout (``train``, ``test``; ``valid`` is ignored,
  as in the Larochelle split's usual 50,000 training images) or one ``images`` array (Frey faces),
  from which `test_fraction` is held out.
- anything else: a TFDS name (``"mnist"``, ``"binarized_mnist"``, ``"emnist/letters"``, ...).

Images come out as ``(N, *data_shape)``, grey images as HxW (a trailing channel axis of 1 is
dropped), either uint8 intensities 0..255 or float32 already in [0, 1]. Integer data that is
binary ({0, 1}, as in binarized MNIST) is stored as uint8 {0, 255}, so that dividing by 255
gives {0, 1} whatever the source.

Example:

>>> splits = load_splits("digits")
>>> splits["train"].images.shape, splits["test"].images.shape
((1437, 8, 8), (360, 8, 8))
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_vae.config import DataConfig

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
SOURCES_HINT = "Pass --dataset digits, a TFDS name, a folder of IDX files or an .npz file."
# Second word of the stateless seed of dynamic binarization; the first is drawn per batch.
_DYNAMIC_BINARIZATION_STREAM = 0x5EED
_CHUNK = 8192  # rows per step when binarizing in NumPy or reading TFDS


class DataError(ValueError):
    """A data source is missing, corrupt or not in a supported layout; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in memory.

    Attributes:
        images: ``(N, *data_shape)``, uint8 intensities 0..255 or float32 already in [0, 1].
        labels: ``(N,)`` int64 class indices, or None.
    """

    images: np.ndarray
    labels: np.ndarray | None


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
    """

    name: str
    data_shape: tuple[int, ...]
    num_train: int
    num_test: int
    has_labels: bool
    num_classes: int | None


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def load_splits(
    dataset: str, data_dir: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, Split]:
    """Load a source into memory as ``{"train": Split, "test": Split}``.

    Args:
        dataset: "digits", a folder of MNIST IDX files, an ``.npz`` file or a TFDS name.
        data_dir: TFDS's ``data_dir`` (None: TFDS's default); unused by the other sources.
        test_fraction: fraction held out as "test" by sources without a test split (digits,
            an ``images``-only npz). Defaults to 0.2.
        seed: seeds that hold-out split. Defaults to 0.

    Returns:
        The two splits, with the same example shape and, if any, labels in both.

    Raises:
        DataError: the source is missing, corrupt or in an unsupported layout.

    Example:

    >>> splits = load_splits("digits", test_fraction=0.5)
    >>> len(splits["train"].images) + len(splits["test"].images)
    1797
    """
    path = os.path.expanduser(dataset)
    if dataset == "digits":
        train, test = _load_digits(test_fraction, seed)
    elif os.path.isdir(path):
        train, test = _load_idx_folder(path)
    elif path.endswith(".npz"):
        if not os.path.isfile(path):
            raise DataError(f"Dataset file not found: {path}. {SOURCES_HINT}")
        train, test = _load_npz(path, test_fraction, seed)
    elif os.path.exists(path):
        raise DataError(f"Dataset file {path} is not a folder or an .npz file. {SOURCES_HINT}")
    elif _looks_like_path(dataset):
        raise DataError(f"Dataset path not found: {path}. {SOURCES_HINT}")
    else:
        train, test = _load_tfds(dataset, data_dir)
    return _finish(train, test, dataset)


def _looks_like_path(dataset: str) -> bool:
    """True for strings that cannot be TFDS names ("name", "name/config", "name:1.*.*")."""
    return (
        dataset.startswith(("/", ".", "~"))
        or "\\" in dataset
        or dataset.count("/") > 1
        or dataset.endswith((".gz", ".npy", ".zip", "/"))
    )


def _load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return Split(x_train, y_train), Split(x_test, y_test)


def _find_idx_file(folder: str, base: str) -> str | None:
    dotted = base.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte, as some mirrors name it
    for name in (base, base + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _load_idx_folder(folder: str) -> tuple[Split, Split]:
    paths = {key: _find_idx_file(folder, base) for key, base in IDX_FILES.items()}
    expected = ", ".join(f"{base}(.gz)" for base in IDX_FILES.values())
    if not any(paths.values()):
        raise DataError(f"No MNIST IDX files in {folder}: expected {expected}. {SOURCES_HINT}")
    missing = [IDX_FILES[key] + "(.gz)" for key, path in paths.items() if path is None]
    if missing:
        raise DataError(
            f"Missing {', '.join(missing)} in {folder}: an MNIST-layout folder needs all of "
            f"{expected}."
        )
    splits = []
    for prefix in ("train", "test"):
        images = read_idx(paths[f"{prefix}_images"], IDX_IMAGES_MAGIC)
        labels = read_idx(paths[f"{prefix}_labels"], IDX_LABELS_MAGIC)
        if len(labels) != len(images):
            raise DataError(
                f"{paths[f'{prefix}_labels']} has {len(labels)} labels but "
                f"{paths[f'{prefix}_images']} has {len(images)} images: the files do not belong "
                "together; re-download both."
            )
        splits.append(Split(images, labels.astype(np.int64)))
    return splits[0], splits[1]


def read_idx(path: str, magic: int) -> np.ndarray:
    """Read one unsigned-byte IDX file (gzip or not) after checking its header.

    Args:
        path: the file; gzip-compressed if its name ends in ``.gz`` or its content says so.
        magic: the expected magic number, `IDX_IMAGES_MAGIC` or `IDX_LABELS_MAGIC`.

    Returns:
        A uint8 array of the shape the header gives.

    Example:

    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.gz")
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path, IDX_LABELS_MAGIC)
    array([7, 2, 1], dtype=uint8)
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".gz") or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"Cannot read {path} ({_one_line(error)}): the file is corrupt or not gzip; "
            "re-download it."
        ) from None
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', raw[:4])[0]:08X}" if len(raw) >= 4 else "nothing"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {found}, "
            f"expected 0x{magic:08X}; check the file name and re-download it."
        )
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its IDX header; re-download it.")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = math.prod(dims)
    found = len(raw) - header_size
    if found != expected:
        problem = "is truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: header says {dims} = {expected} bytes of data, found {found}; "
            "re-download it."
        )
    if dims[0] == 0:
        raise DataError(f"{path} holds no examples; re-download it.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _load_npz(path: str, test_fraction: float, seed: int) -> tuple[Split, Split]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(
            f"Cannot read {path} ({_one_line(error)}): expected an uncorrupted .npz of "
            "numeric arrays (np.savez, no pickled objects)."
        ) from None
    keys = set(arrays)
    if {"x_train", "x_test"} <= keys:
        has_y = {"y_train", "y_test"} & keys
        if has_y and has_y != {"y_train", "y_test"}:
            raise DataError(
                f"{path} has {sorted(has_y)} but not both y_train and y_test: save both label "
                "arrays or neither."
            )
        return (
            Split(arrays["x_train"], _labels(arrays.get("y_train"), path, "y_train")),
            Split(arrays["x_test"], _labels(arrays.get("y_test"), path, "y_test")),
        )
    if {"train", "test"} <= keys:  # binarized MNIST (Larochelle); "valid" is not used
        return Split(arrays["train"], None), Split(arrays["test"], None)
    if keys == {"images"}:
        images = arrays["images"]
        if images.ndim < 2 or len(images) < 2:
            raise DataError(
                f"{path}: 'images' has shape {images.shape}, expected (N, ...) with N >= 2."
            )
        order = np.random.default_rng(seed).permutation(len(images))
        num_test = min(max(1, math.ceil(len(images) * test_fraction)), len(images) - 1)
        return Split(images[order[num_test:]], None), Split(images[order[:num_test]], None)
    raise DataError(
        f"Unrecognised arrays {sorted(keys)} in {path}: expected x_train, x_test[, y_train, "
        "y_test] (keras.datasets), train, test[, valid] (binarized MNIST) or a single images "
        "array."
    )


def _labels(labels: np.ndarray | None, source: str, what: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim == 2 and labels.shape[1] == 1:  # keras.datasets.cifar10 style (N, 1)
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{source}: {what} has shape {labels.shape} and dtype {labels.dtype}, expected (N,) "
            "integer class indices."
        )
    if len(labels) and labels.min() < 0:
        raise DataError(f"{source}: {what} has negative labels, expected class indices >= 0.")
    return labels.astype(np.int64)


def _load_tfds(name: str, data_dir: str | None) -> tuple[Split, Split]:
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.registered import DatasetNotFoundError

    fix = (
        "Check the name (tfds.list_builders()) and network access, or pass --data-dir with a "
        "prepared copy, a folder of IDX files or an .npz file."
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except DatasetNotFoundError:
        raise DataError(
            f"Dataset {name!r} not found: it is no file or folder, and TFDS has no dataset of "
            f"that name. {SOURCES_HINT}"
        ) from None
    except Exception as error:  # TFDS raises many types; all of them mean "cannot load"
        raise DataError(f"TFDS cannot open {name!r} ({_one_line(error)}). {fix}") from None
    features = builder.info.features
    names = sorted(features.keys())
    if "image" not in names:
        raise DataError(
            f"TFDS dataset {name!r} has no 'image' feature (it has {names}); use an image dataset."
        )
    has_labels = "label" in names and np.issubdtype(
        np.dtype(features["label"].np_dtype), np.integer
    )
    try:
        builder.download_and_prepare()
        test_split = pick_test_split(list(builder.info.splits.keys()), name)
        splits = []
        for split in ("train", test_split):
            dataset = builder.as_dataset(split=split, shuffle_files=False)
            if has_labels:
                dataset = dataset.map(lambda example: (example["image"], example["label"]))
            else:
                dataset = dataset.map(lambda example: (example["image"],))
            parts = list(tfds.as_numpy(dataset.batch(_CHUNK)))
            if not parts:
                raise DataError(f"TFDS split {name}:{split} is empty.")
            images = np.concatenate([part[0] for part in parts])
            labels = np.concatenate([part[1] for part in parts]) if has_labels else None
            splits.append(Split(images, labels))
    except DataError:
        raise
    except ModuleNotFoundError as error:  # e.g. tensorflow/datasets#11212: importlib_resources
        raise DataError(
            f"TFDS cannot load {name!r}: module {error.name!r} is missing; install it "
            f"(pip install {error.name})."
        ) from None
    except Exception as error:
        raise DataError(f"TFDS cannot load {name!r} ({_one_line(error)}). {fix}") from None
    return splits[0], splits[1]


def pick_test_split(available: list[str], name: str = "dataset") -> str:
    """The split used as "test": "test", else "validation"; "test" when TFDS lists none.

    Example:

    >>> pick_test_split(["train", "validation"])
    'validation'
    """
    if not available or "test" in available:
        return "test"
    if "validation" in available:
        return "validation"
    raise DataError(
        f"TFDS dataset {name!r} has splits {sorted(available)} but no 'test' or 'validation': "
        "export it to an .npz with x_train/x_test instead."
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------------------------
# Checking and scaling
# ----------------------------------------------------------------------------------------------


def _finish(train: Split, test: Split, source: str) -> dict[str, Split]:
    """Drop grey channel axes, check values and shapes, store binary data as uint8 {0, 255}."""
    checked = {}
    for key, split in (("train", train), ("test", test)):
        images = np.asarray(split.images)
        if images.ndim < 2 or len(images) == 0:
            raise DataError(
                f"{source}: {key} images have shape {images.shape}, expected (N, ...) with N >= 1."
            )
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        images = _check_pixels(images, f"{source}: {key} images")
        if split.labels is not None and len(split.labels) != len(images):
            raise DataError(
                f"{source}: {len(split.labels)} {key} labels for {len(images)} images; labels "
                "must match images one to one."
            )
        checked[key] = Split(images, split.labels)
    if checked["train"].images.shape[1:] != checked["test"].images.shape[1:]:
        raise DataError(
            f"{source}: train examples have shape {checked['train'].images.shape[1:]} but test "
            f"examples {checked['test'].images.shape[1:]}; both splits need the same shape."
        )
    if (checked["train"].labels is None) != (checked["test"].labels is None):
        raise DataError(f"{source}: only one split has labels; give both or neither.")
    images = [split.images for split in checked.values()]
    if all(x.dtype == np.uint8 for x in images) and max(int(x.max()) for x in images) <= 1:
        checked = {
            key: Split(split.images * np.uint8(255), split.labels) for key, split in checked.items()
        }
    return checked


def _check_pixels(images: np.ndarray, what: str) -> np.ndarray:
    if images.dtype == bool:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32, copy=False)
        if np.isnan(images).any():
            raise DataError(f"{what} contain NaN; expected finite values in [0, 1].")
        if not np.isfinite(images).all():
            raise DataError(f"{what} contain inf; expected finite values in [0, 1].")
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise DataError(
                f"{what} have values in [{low}, {high}], expected [0, 1]: rescale them, or "
                "store uint8 0..255."
            )
        return images
    if np.issubdtype(images.dtype, np.integer):
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(
                f"{what} have integer values in [{low}, {high}], expected 0..255: store uint8 "
                "intensities or floats in [0, 1]."
            )
        return images.astype(np.uint8, copy=False)
    raise DataError(f"{what} have dtype {images.dtype}, expected uint8 or floats in [0, 1].")


def to_unit_interval(images: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from a `Split`'s images (uint8 divided by 255, floats unchanged).

    Example:

    >>> to_unit_interval(np.array([0, 255], np.uint8))
    array([0., 1.], dtype=float32)
    """
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


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
    for start in range(0, len(images), _CHUNK):
        p = to_unit_interval(images[start : start + _CHUNK])
        out[start : start + _CHUNK] = (rng.random(p.shape, dtype=np.float32) < p) * np.uint8(255)
    return out


# ----------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------


def prepared_splits(
    config: DataConfig, seed: int = 0, splits: Sequence[str] = ("train", "test")
) -> dict[str, Split]:
    """The splits exactly as `make_datasets` feeds them, before scaling to [0, 1].

    "static" binarization is drawn here for both splits, "dynamic" only for the test split (the
    training images stay grey: they are drawn anew for every batch). The one place these rules
    live, so the train job and `keras-vae evaluate` see the same held-out examples.

    Args:
        config: the data section of a run config.
        seed: the run's seed (the binarization draws).
        splits: which of "train" and "test" to return.

    Example:

    >>> prepared_splits(DataConfig("digits"), splits=["test"])["test"].images.shape
    (360, 8, 8)
    """
    unknown = sorted(set(splits) - {"train", "test"})
    if unknown:
        raise ValueError(f"Unknown splits {unknown}; expected 'train' and/or 'test'.")
    loaded = load_splits(config.dataset, config.data_dir, config.test_fraction, seed=0)
    prepared = {}
    for name in splits:
        images = loaded[name].images
        draw = {"train": config.binarization == "static", "test": config.binarization != "none"}
        if draw[name]:
            images = binarize(images, (seed, 0 if name == "train" else 1))
        prepared[name] = Split(images, loaded[name].labels)
    return prepared


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
        test: the held-out batches (see `test_pipeline`).
        info: what the data holds.
        splits: the prepared "train" and "test" `Split`s the pipelines read.
        config: the data config.
        batch_size: the batch size of both pipelines.
        seed: the seed of shuffling and binarization.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo
    splits: dict[str, Split]
    config: DataConfig
    batch_size: int
    seed: int

    def epochs(self, epochs: int, first_epoch: int = 0) -> tf.data.Dataset:
        """`training_epochs` over the training split: epochs `first_epoch`..`epochs - 1`."""
        split = self.splits["train"]
        return training_epochs(split, self.config, self.batch_size, self.seed, epochs, first_epoch)


def make_pipelines(config: DataConfig, batch_size: int, seed: int = 0) -> Pipelines:
    """`make_datasets`, keeping the prepared splits (see `Pipelines`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(
            "Received an invalid value for `batch_size`, expected a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    splits = prepared_splits(config, seed)
    train, test = splits["train"], splits["test"]
    if batch_size > len(train.images):
        raise DataError(
            f"batch_size={batch_size} exceeds the {len(train.images)} training examples of "
            f"{config.dataset!r}; use a batch size <= {len(train.images)}."
        )
    train_ds = training_pipeline(train, config, batch_size, seed)
    test_ds = held_out_pipeline(test, batch_size)

    labels = [split.labels for split in (train, test) if split.labels is not None]
    info = DatasetInfo(
        name=config.dataset,
        data_shape=tuple(int(d) for d in train.images.shape[1:]),
        num_train=len(train.images),
        num_test=len(test.images),
        has_labels=bool(labels),
        num_classes=1 + max(int(y.max()) for y in labels) if labels else None,
    )
    return Pipelines(train_ds, test_ds, info, splits, config, batch_size, seed)


def training_pipeline(
    train: Split, config: DataConfig, batch_size: int, seed: int = 0
) -> tf.data.Dataset:
    """The training batches of `make_datasets` for a prepared split (see `prepared_splits`).

    Each pass over it (each new iterator) is reshuffled, and with dynamic binarization drawn
    anew, from generators that start afresh with each call of this function.
    """
    buffer = config.shuffle_buffer or len(train.images)
    order = tf.data.Dataset.range(len(train.images))
    order = order.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    indices = order.batch(batch_size, True)
    if config.binarization == "dynamic":
        noise_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        indices = tf.data.Dataset.zip(indices, noise_seeds)
    return _split_batches(train, indices)


def epoch_indices(
    num_examples: int, config: DataConfig, batch_size: int, seed: int, epoch: int | tf.Tensor
) -> tf.data.Dataset:
    """Epoch `epoch`'s index batches (with dynamic binarization, (indices, noise seed) pairs),
    drawn from (`seed`, `epoch`) alone. Small: it holds no images (see `training_epochs`)."""
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
    are gathered outside it, so the in-memory split is not copied into every epoch's function
    (that made each new iterator take 4 s for MNIST).
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
    dynamic = isinstance(indices.element_spec, tuple)

    def batch(*element):
        index = element[0]
        x = tf.gather(images, index)
        x = _dynamic_binarize(x, element[1]) if dynamic else _float(x)
        return x if labels is None else (x, tf.gather(labels, index))

    return indices.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def held_out_pipeline(test: Split, batch_size: int) -> tf.data.Dataset:
    """The held-out batches of `make_datasets`: in order, every example once, last one smaller."""
    return _split_batches(test, tf.data.Dataset.range(len(test.images)).batch(batch_size))


def _float(x: tf.Tensor) -> tf.Tensor:
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def _dynamic_binarize(
    batch: tf.Tensor | tuple[tf.Tensor, tf.Tensor], draw: tf.Tensor
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    x, y = batch if isinstance(batch, tuple) else (batch, None)
    x = _float(x)
    seed = tf.stack([draw, tf.constant(_DYNAMIC_BINARIZATION_STREAM, tf.int64)])
    x = tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) < x, tf.float32)
    return x if y is None else (x, y)
