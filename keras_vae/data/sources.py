"""Sources: load raw arrays into memory as checked ``{"train": Split, "test": Split}``.

Chosen from the one string `DataConfig.dataset` (see `load_splits`):

- ``"digits"``: scikit-learn's bundled 8x8 digits (no download; for smoke tests).
- an existing folder: the four MNIST-layout IDX files (gzip or not; `keras_vae.data.idx`).
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
import math
import os
from typing import Any, cast

import numpy as np

from keras_vae.data.checks import DataError, check_intensities, one_line
from keras_vae.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from keras_vae.npz_files import read_npz

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SOURCES_HINT = "Pass --dataset digits, a TFDS name, a folder of IDX files or an .npz file."
_TFDS_BATCH = 8192  # rows per batch when reading a TFDS split into memory


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in memory.

    Attributes:
        images: ``(N, *data_shape)``, uint8 intensities 0..255 or float32 already in [0, 1].
        labels: ``(N,)`` int64 class indices, or None.

    Example:

    >>> Split(np.zeros((2, 3), np.uint8), None).images.shape
    (2, 3)
    """

    images: np.ndarray
    labels: np.ndarray | None


def load_splits(
    dataset: str | os.PathLike,
    data_dir: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    validation: bool = False,
) -> dict[str, Split]:
    """Load a source into memory as ``{"train": Split, "test": Split}``.

    Args:
        dataset: "digits", a folder of MNIST IDX files, an ``.npz`` file or a TFDS name.
        data_dir: TFDS's ``data_dir`` (None: TFDS's default); unused by the other sources.
        test_fraction: fraction held out as "test" by sources without a test split (digits,
            an ``images``-only npz). Defaults to 0.2.
        seed: seeds that hold-out split. Defaults to 0.
        validation: also return the source's own validation split as "validation" (binarized
            MNIST's ``valid`` array; TFDS's "validation" split beside a "test" split); a
            `DataError` for a source without one. Defaults to False.

    Returns:
        The splits, with the same example shape and, if any, labels in all.

    Raises:
        DataError: the source is missing, corrupt or in an unsupported layout, or its values
            fail `keras_vae.data.checks.check_intensities`.

    Example:

    >>> splits = load_splits("digits", test_fraction=0.5)
    >>> len(splits["train"].images) + len(splits["test"].images)
    1797
    """
    dataset = os.fspath(dataset) if isinstance(dataset, os.PathLike) else dataset
    if not isinstance(dataset, str):
        raise TypeError(
            "`dataset` is a dataset's name or path: 'digits', a folder of MNIST IDX files, an "
            f".npz file or a TFDS name (a DataConfig goes to make_datasets). Received: dataset "
            f"of type {type(dataset).__name__}"
        )
    path = os.path.expanduser(dataset)
    if dataset == "digits":
        splits: tuple[Split, ...] = _load_digits(test_fraction, seed)
    elif os.path.isdir(path):
        splits = _load_idx_folder(path)
    elif path.endswith(".npz"):
        if not os.path.isfile(path):
            raise DataError(f"Dataset file not found: {path}. {SOURCES_HINT}")
        splits = _load_npz(path, test_fraction, seed, validation)
    elif os.path.exists(path):
        raise DataError(f"Dataset file {path} is not a folder or an .npz file. {SOURCES_HINT}")
    elif _looks_like_path(dataset):
        raise DataError(f"Dataset path not found: {path}. {SOURCES_HINT}")
    else:
        splits = _load_tfds(dataset, data_dir, validation)
    named = dict(zip(("train", "test", "validation"), splits))
    if validation and "validation" not in named:
        raise DataError(
            f"{dataset} has no validation split of its own (binarized MNIST's .npz and TFDS "
            "datasets with 'validation' and 'test' splits have); hold out part of the training "
            "split with --validation-examples N instead."
        )
    return _finish(named, dataset)


def to_unit_interval(images: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from a `Split`'s images (uint8 divided by 255, floats unchanged).

    Example:

    >>> to_unit_interval(np.array([0, 255], np.uint8))
    array([0., 1.], dtype=float32)
    """
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


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


def _looks_like_path(dataset: str) -> bool:
    """True for strings that cannot be TFDS names ("name", "name/config", "name:1.*.*")."""
    return (
        dataset.startswith(("/", ".", "~"))
        or "\\" in dataset
        or dataset.count("/") > 1
        or dataset.endswith((".gz", ".npy", ".zip", "/"))
    )


# ----------------------------------------------------------------------------------------------
# One loader per source
# ----------------------------------------------------------------------------------------------


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
        images = read_idx(cast("str", paths[f"{prefix}_images"]), IDX_IMAGES_MAGIC)  # none missing
        labels = read_idx(cast("str", paths[f"{prefix}_labels"]), IDX_LABELS_MAGIC)
        if len(labels) != len(images):
            raise DataError(
                f"{paths[f'{prefix}_labels']} has {len(labels)} labels but "
                f"{paths[f'{prefix}_images']} has {len(images)} images: the files do not belong "
                "together; re-download both."
            )
        splits.append(Split(images, labels.astype(np.int64)))
    return splits[0], splits[1]


def _load_npz(
    path: str, test_fraction: float, seed: int, validation: bool = False
) -> tuple[Split, ...]:
    """keras.datasets layout, binarized MNIST (Larochelle) or one ``images`` array (Frey faces):
    (train, test), and binarized MNIST's ``valid`` third when `validation`."""
    try:
        arrays = read_npz(path)
    except ValueError as error:
        raise DataError(
            f"Cannot read {path} ({one_line(error)}): expected an uncorrupted .npz of "
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
    if {"train", "test"} <= keys:  # binarized MNIST (Larochelle); "valid" only if asked for
        splits: tuple[Split, ...] = Split(arrays["train"], None), Split(arrays["test"], None)
        if validation and "valid" in keys:
            splits += (Split(arrays["valid"], None),)
        return splits
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


def _load_tfds(name: str, data_dir: str | None, validation: bool = False) -> tuple[Split, ...]:
    import tensorflow_datasets as tfds

    DatasetNotFoundError = tfds.core.DatasetNotFoundError  # its public name

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
        raise DataError(f"TFDS cannot open {name!r} ({one_line(error)}). {fix}") from None
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
        available = list(builder.info.splits.keys())
        test_split = pick_test_split(available, name)
        wanted = ["train", test_split]
        if validation and test_split == "test" and "validation" in available:
            wanted.append("validation")
        splits = []
        for split in wanted:
            dataset = builder.as_dataset(split=split, shuffle_files=False)
            if has_labels:
                dataset = dataset.map(lambda example: (example["image"], example["label"]))
            else:
                dataset = dataset.map(lambda example: (example["image"],))
            parts = list(tfds.as_numpy(dataset.batch(_TFDS_BATCH)))
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
        raise DataError(f"TFDS cannot load {name!r} ({one_line(error)}). {fix}") from None
    return tuple(splits)


# ----------------------------------------------------------------------------------------------
# Checking and storing
# ----------------------------------------------------------------------------------------------


def _finish(splits: dict[str, Split], source: str) -> dict[str, Split]:
    """Drop grey channel axes, check values and shapes, store binary data as uint8 {0, 255}."""
    checked = {}
    for key, split in splits.items():
        images: Any = np.asarray(split.images)  # below the loop: all splits' arrays
        what = f"{source}: {key} images"
        if images.ndim < 2:
            raise DataError(f"{what} have shape {images.shape}, expected (N, ...) with N >= 1.")
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        images = check_intensities(images, what)
        if split.labels is not None and len(split.labels) != len(images):
            raise DataError(
                f"{source}: {len(split.labels)} {key} labels for {len(images)} images; labels "
                "must match images one to one."
            )
        checked[key] = Split(images, split.labels)
    for key in set(checked) - {"train"}:
        if checked["train"].images.shape[1:] != checked[key].images.shape[1:]:
            raise DataError(
                f"{source}: train examples have shape {checked['train'].images.shape[1:]} but "
                f"{key} examples {checked[key].images.shape[1:]}; all splits need the same "
                "shape."
            )
        if (checked["train"].labels is None) != (checked[key].labels is None):
            raise DataError(f"{source}: only one split has labels; give both or neither.")
    images = [split.images for split in checked.values()]
    if all(x.dtype == np.uint8 for x in images) and max(int(x.max()) for x in images) <= 1:
        checked = {
            key: Split(split.images * np.uint8(255), split.labels) for key, split in checked.items()
        }
    return checked
