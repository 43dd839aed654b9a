"""The one set of data checks: dtype, emptiness, NaN, inf, value ranges and shape vs a model.

Loading (`keras_vae.data.load_splits`, hence training) and every command that reads a run
directory (`keras_vae.run_reader`) call these functions, so the same bad data gets the same
one-line message everywhere. `what` names the data as a plural noun phrase ("the data",
"mnist.npz: train images"); each message begins with it.

Example:

>>> try:
...     check_values(np.array([0.5, np.nan]), "bernoulli", "the data")
... except DataError as error:
...     print(error)
the data contain NaN (1 NaN of 2 values); expected finite values: remove or impute them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from keras_vae.limits import MAX_NUM_CLASSES

if TYPE_CHECKING:
    from keras_vae.data.sources import Split

ONE_LINE_LIMIT = 300  # characters of a wrapped error's text kept in a one-line message


class DataError(ValueError):
    """A data source is missing, corrupt or not in a supported layout; the message says the fix.

    >>> from keras_vae.data import load_splits
    >>> try:
    ...     load_splits("/no/such/data.npz")
    ... except DataError as error:
    ...     print(type(error).__name__, isinstance(error, ValueError))
    DataError True
    """


def one_line(error: BaseException, limit: int = ONE_LINE_LIMIT) -> str:
    """``"Type: text"`` of `error` on one line (whitespace collapsed), at most `limit` characters.

    The one helper that quotes a caught error inside a keras-vae message.

    Example:

    >>> one_line(OSError("disk\\n  full"))
    'OSError: disk full'
    """
    text = " ".join(str(error).split())
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_dtype(images: np.ndarray, what: str = "the data") -> None:
    """Raise `DataError` unless `images` holds bools, integers or floats.

    Example:

    >>> check_dtype(np.array(["a"]), "x")
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x have dtype <U1, expected bool, integer or float numbers.
    """
    if not any(np.issubdtype(images.dtype, kind) for kind in (np.bool_, np.integer, np.floating)):
        raise DataError(
            f"{what} have dtype {images.dtype}, expected bool, integer or float numbers."
        )


def check_not_empty(images: np.ndarray, what: str = "the data") -> None:
    """Raise `DataError` when `images` holds no values.

    Example:

    >>> check_not_empty(np.zeros((0, 3)), "x")
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x are empty (shape (0, 3)); pass at least one example.
    """
    if images.size == 0:
        raise DataError(f"{what} are empty (shape {images.shape}); pass at least one example.")


def check_finite(images: np.ndarray, what: str = "the data") -> None:
    """Raise `DataError` for NaN or inf anywhere in `images` (integers and bools always pass).

    Example:

    >>> check_finite(np.array([1.0, np.inf]), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x contain inf (1 of 2 values); expected finite values: ...
    """
    if not np.issubdtype(images.dtype, np.floating):
        return
    nans = np.isnan(images)
    if nans.any():
        raise DataError(
            f"{what} contain NaN ({int(nans.sum())} NaN of {images.size} values); expected "
            "finite values: remove or impute them."
        )
    infinite = np.isinf(images)
    if infinite.any():
        raise DataError(
            f"{what} contain inf ({int(infinite.sum())} of {images.size} values); expected "
            "finite values: remove or clip them."
        )


def check_unit_interval(images: np.ndarray, what: str = "the data") -> None:
    """Raise `DataError` unless every value of (non-empty, finite) `images` is in [0, 1].

    Example:

    >>> check_unit_interval(np.array([0.0, 1.5]), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x have values in [0.0, 1.5], expected [0, 1]: rescale ...
    """
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise DataError(
            f"{what} have values in [{low}, {high}], expected [0, 1]: rescale them (uint8 "
            "intensities: divide by 255)."
        )


def check_intensities(images: np.ndarray, what: str = "the data") -> np.ndarray:
    """Loaded images as stored in a `Split`: uint8 0..255 or float32 in [0, 1], after checks.

    Bools become uint8 {0, 1}, integers uint8, floats float32 (then checked for NaN, inf and
    [0, 1]).

    Raises:
        DataError: another dtype, no values, NaN or inf, floats outside [0, 1] or integers
            outside 0..255.

    Example:

    >>> check_intensities(np.array([0.0, 0.5]), "x").dtype
    dtype('float32')
    >>> check_intensities(np.array([0, 300]), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x have integer values in [0, 300], expected 0..255: ...
    """
    check_dtype(images, what)
    check_not_empty(images, what)
    if images.dtype == np.bool_:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32, copy=False)
        check_finite(images, what)
        check_unit_interval(images, what)
        return images
    low, high = int(images.min()), int(images.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{what} have integer values in [{low}, {high}], expected 0..255: store uint8 "
            "intensities or floats in [0, 1]."
        )
    return images.astype(np.uint8, copy=False)


def check_values(images: np.ndarray, likelihood: str, what: str = "the data") -> None:
    """Raise `DataError` unless `images` are numbers, not empty, finite, and in [0, 1] for a
    Bernoulli likelihood (a Gaussian density needs no range).

    Example:

    >>> check_values(np.array([-3.0, 7.0]), "gaussian")
    >>> check_values(np.array([0.0, 2.0]), "bernoulli", "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x have values in [0.0, 2.0], expected [0, 1]: rescale ...
    """
    images = np.asarray(images)
    check_dtype(images, what)
    check_not_empty(images, what)
    check_finite(images, what)
    if likelihood == "bernoulli":
        check_unit_interval(images, what)


def check_shape(
    data_shape: Sequence[int], model_data_shape: Sequence[int], what: str = "the data"
) -> None:
    """Raise `DataError` unless one example's shape `data_shape` is the model's.

    Example:

    >>> check_shape((28, 28), (8, 8), "mnist: test images")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: mnist: test images have shape (28, 28) per example but ...
    """
    data_shape = tuple(int(d) for d in data_shape)
    model_data_shape = tuple(int(d) for d in model_data_shape)
    if data_shape != model_data_shape:
        raise DataError(
            f"{what} have shape {data_shape} per example but the model was trained on shape "
            f"{model_data_shape}; pass data whose examples have shape {model_data_shape}."
        )


def check_model_input(
    images: np.ndarray, data_shape: Sequence[int], likelihood: str, what: str = "the data"
) -> np.ndarray:
    """`images` as float32 after checking them against a model's `data_shape` and likelihood.

    Args:
        images: ``(N, *data_shape)`` numbers, already scaled as the model was trained.
        data_shape: the model's example shape.
        likelihood: the model's likelihood ("bernoulli" needs values in [0, 1]).
        what: how messages name the data.

    Raises:
        DataError: see `check_shape` and `check_values`.

    Example:

    >>> check_model_input(np.array([[0, 1]]), (2,), "bernoulli").dtype
    dtype('float32')
    """
    images = np.asarray(images)
    if images.ndim < 1:
        raise DataError(
            f"{what} are a single number; expected an array of shape (N, *{tuple(data_shape)})."
        )
    check_shape(images.shape[1:], data_shape, what)
    check_values(images, likelihood, what)
    return images.astype(np.float32, copy=False)


def check_class_labels(splits: Mapping[str, Split], num_classes: int | None, source: str) -> int:
    """The number of classes K of a conditional model's data; a `DataError` when the splits
    have no labels, or labels outside [0, `num_classes`) when K is given.

    The sources already check that labels are integers >= 0, one per image.

    Example:

    >>> from keras_vae.data.sources import Split
    >>> splits = {"train": Split(np.zeros((2, 3)), np.array([0, 4])),
    ...           "test": Split(np.zeros((1, 3)), np.array([1]))}
    >>> check_class_labels(splits, None, "x.npz")
    5
    >>> check_class_labels(splits, 4, "x.npz")
    Traceback (most recent call last):
    ...
    keras_vae.data.checks.DataError: x.npz: train labels reach 4, outside [0, 4) for \
--num-classes 4: pass --num-classes 5 or more, or fix the labels.
    """
    labelled = {name: split.labels for name, split in splits.items()}
    if any(labels is None for labels in labelled.values()):
        raise DataError(
            f"{source} has no labels, so --conditional has nothing to condition on: use a "
            "source with labels (IDX label files, an .npz with y_train and y_test, a TFDS "
            "dataset with 'label', digits) or drop --conditional."
        )
    largest = {
        name: int(labels.max()) if len(labels) else -1
        for name, labels in cast("dict[str, np.ndarray]", labelled).items()  # None refused
    }
    needed = 1 + max(largest.values())
    if num_classes is None:
        if needed > MAX_NUM_CLASSES:
            raise DataError(
                f"{source}: the largest label is {needed - 1}, so --conditional would need "
                f"{needed:,} classes, more than the {MAX_NUM_CLASSES:,} allowed; number the "
                "classes 0..K-1."
            )
        return needed
    for name, top in largest.items():
        if top >= num_classes:
            raise DataError(
                f"{source}: {name} labels reach {top}, outside [0, {num_classes}) for "
                f"--num-classes {num_classes}: pass --num-classes {needed} or more, or fix the "
                "labels."
            )
    return num_classes
