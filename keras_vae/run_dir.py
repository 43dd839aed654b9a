"""Read a run directory and check data against its model, with one-line errors that say the fix.

A run directory (``keras-vae train --output RUN_DIR``) holds ``model.keras``, ``config.json``
and ``metrics.json``. Every command that reads one (evaluate, sample, reconstruct, export) goes
through this module, so a missing folder, a corrupt model or data that does not fit the model
fails the same way everywhere: a `RunDirError` (a `ValueError`) raised before anything is
written, which the CLI prints as one line with exit code 2.

Example:

>>> run = load_run("runs/mnist")                       # doctest: +SKIP
>>> test = load_test_split(run)                        # doctest: +SKIP
>>> run.model.log_likelihood(test.images[:10], 100)    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.config import Config
from keras_vae.data import Split, prepared_splits, to_unit_interval

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
TRAIN_HINT = "pass the folder written by `keras-vae train --output RUN_DIR`"


class RunDirError(ValueError):
    """A run directory or the data given with it is unusable; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run directory.

    Attributes:
        path: the run directory.
        config: its validated `Config` (from ``config.json``).
        metrics: the contents of ``metrics.json`` ({} if the file does not exist yet).
        model: the trained `VAE` (None when loaded with ``with_model=False``).
    """

    path: Path
    config: Config
    metrics: dict[str, Any]
    model: Any = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        """One example's shape, from the model (or ``metrics.json`` without a model)."""
        if self.model is not None:
            return tuple(self.model.data_shape)
        if "data_shape" in self.metrics:
            return tuple(int(d) for d in self.metrics["data_shape"])
        raise RunDirError(f"{self.path}: the data shape is unknown until the model is loaded.")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """The run directory as a `Path`, after checking it exists, is a folder and is readable.

    Raises:
        RunDirError: it is missing, a file, or cannot be listed.

    Example:

    >>> try:
    ...     check_run_dir("/no/such/run")
    ... except RunDirError as error:
    ...     print(str(error)[:40])
    Run directory not found: /no/such/run; p
    """
    path = Path(os.path.expanduser(str(run_dir)))
    if not path.exists():
        raise RunDirError(f"Run directory not found: {path}; {TRAIN_HINT}.")
    if not path.is_dir():
        raise RunDirError(f"{path} is a file, not a run directory; {TRAIN_HINT}.")
    try:
        os.listdir(path)
    except OSError as error:
        raise RunDirError(
            f"Cannot read run directory {path} ({_one_line(error)}); fix its permissions."
        ) from None
    return path


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RunDirError(
            f"Cannot read {path} ({_one_line(error)}); fix its permissions."
        ) from None
    except UnicodeDecodeError:
        raise RunDirError(
            f"{path} is not UTF-8 text; restore the {what} written by train."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}); restore the {what} "
            "written by `keras-vae train` or retrain the run."
        ) from None


def load_config(run_dir: str | os.PathLike) -> Config:
    """The run's validated `Config`, from ``RUN_DIR/config.json``."""
    path = check_run_dir(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{path.parent} has no {CONFIG_FILE}; {TRAIN_HINT}.")
    values = _read_json(path, "config")
    if not isinstance(values, dict):
        raise RunDirError(f"{path} holds a JSON {type(values).__name__}, expected an object.")
    try:
        return Config.from_dict(values)
    except (TypeError, ValueError) as error:
        raise RunDirError(
            f"{path} is not a valid keras-vae config ({_one_line(error)}); restore the file "
            "written by `keras-vae train`."
        ) from None


def load_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``RUN_DIR/metrics.json`` as a dict; {} when the run has not written it yet."""
    path = check_run_dir(run_dir) / METRICS_FILE
    if not path.exists():
        return {}
    values = _read_json(path, "metrics")
    if not isinstance(values, dict):
        raise RunDirError(
            f"{path} holds a JSON {type(values).__name__}, expected an object; restore it "
            "or delete it."
        )
    return values


def load_model(run_dir: str | os.PathLike, compile: bool = False):
    """The trained `VAE` from ``RUN_DIR/model.keras``.

    Args:
        run_dir: the run directory.
        compile: also restore the optimizer (only needed to continue training). Default False.

    Raises:
        RunDirError: the file is missing, unreadable, corrupt, or holds another kind of model.
    """
    import keras

    from keras_vae.model import VAE

    path = check_run_dir(run_dir) / MODEL_FILE
    if not path.exists():
        backup = " (it has a backup/ folder: rerun the same train command to finish it)"
        resumable = (path.parent / "backup").is_dir()
        raise RunDirError(
            f"{path.parent} has no {MODEL_FILE}{backup if resumable else ''}; {TRAIN_HINT} "
            "after training has finished."
        )
    fix = "retrain the run or restore the file written by `keras-vae train`"
    if not path.is_file():
        raise RunDirError(f"{path} is not a file; {fix}.")
    try:
        readable = zipfile.is_zipfile(path)
    except OSError as error:
        raise RunDirError(
            f"Cannot read {path} ({_one_line(error)}); fix its permissions."
        ) from None
    if not readable:
        raise RunDirError(f"{path} is corrupt (not a .keras zip archive); {fix}.")
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras and h5py raise many types; all mean "cannot load"
        raise RunDirError(f"Cannot load {path} ({_one_line(error)[:300]}); {fix}.") from None
    if not isinstance(model, VAE):
        raise RunDirError(
            f"{path} holds a {type(model).__name__}, not a keras_vae VAE; {TRAIN_HINT}."
        )
    return model


def load_run(run_dir: str | os.PathLike, with_model: bool = True) -> Run:
    """Config, metrics and (by default) the model of a run directory, all checked.

    Raises:
        RunDirError: anything is missing or corrupt; nothing is written either way.
    """
    path = check_run_dir(run_dir)
    config = load_config(path)
    metrics = load_metrics(path)
    model = load_model(path) if with_model else None
    return Run(path=path, config=config, metrics=metrics, model=model)


def check_data_shape(
    data_shape: Sequence[int], model_data_shape: Sequence[int], source: str = "the data"
) -> None:
    """Raise `RunDirError` unless one example of `source` has the model's `data_shape`.

    Example:

    >>> try:
    ...     check_data_shape((28, 28), (8, 8), "mnist")
    ... except RunDirError as error:
    ...     print(str(error)[:47])
    mnist has examples of shape (28, 28) but the mo
    """
    data_shape = tuple(int(d) for d in data_shape)
    model_data_shape = tuple(int(d) for d in model_data_shape)
    if data_shape != model_data_shape:
        raise RunDirError(
            f"{source} has examples of shape {data_shape} but the model was trained on shape "
            f"{model_data_shape}; pass a dataset whose examples have shape {model_data_shape}."
        )


def check_data_values(images: np.ndarray, likelihood: str, source: str = "the data") -> None:
    """Raise `RunDirError` for NaN or inf anywhere, or values outside [0, 1] for Bernoulli.

    Example:

    >>> try:
    ...     check_data_values(np.array([0.0, 2.0]), "bernoulli", "x")
    ... except RunDirError as error:
    ...     print(str(error)[:26])
    x has values in [0.0, 2.0]
    """
    images = np.asarray(images)
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise RunDirError(f"{source} has dtype {images.dtype}; expected numbers.")
    if images.size == 0:
        raise RunDirError(f"{source} is empty; pass at least one example.")
    if np.issubdtype(images.dtype, np.floating):
        nans = int(np.isnan(images).sum())
        if nans:
            raise RunDirError(
                f"{source} contains {nans} NaN values; remove or impute them before use."
            )
        if not np.isfinite(images).all():
            raise RunDirError(f"{source} contains inf values; expected finite numbers.")
    if likelihood == "bernoulli":
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            raise RunDirError(
                f"{source} has values in [{low}, {high}] but the Bernoulli likelihood needs data "
                "in [0, 1]; rescale it (uint8 intensities: divide by 255)."
            )


def check_data(images: np.ndarray, model, source: str = "the data") -> np.ndarray:
    """`images` as float32 after checking shape and values against `model`.

    Args:
        images: ``(N, *data_shape)`` floats (already scaled as the model was trained).
        model: the run's `VAE` (only `data_shape` and `likelihood` are read).
        source: how the message names the data.

    Example:

    >>> import types
    >>> model = types.SimpleNamespace(data_shape=(2,), likelihood="bernoulli")
    >>> check_data(np.array([[0, 1]]), model).dtype
    dtype('float32')
    """
    images = np.asarray(images)
    if images.ndim < 1:
        raise RunDirError(f"{source} is a scalar; expected (N, *{tuple(model.data_shape)}).")
    check_data_shape(images.shape[1:], model.data_shape, source)
    check_data_values(images, model.likelihood, source)
    return images.astype(np.float32, copy=False)


def load_test_split(run: Run, dataset: str | None = None, data_dir: str | None = None) -> Split:
    """The held-out split a run is evaluated on, as float32 in [0, 1], checked against its model.

    The same examples as `keras_vae.data.make_datasets` yields for the run's test pipeline
    (same hold-out, same binarization draw), from the run's own dataset unless `dataset` names
    another one, which is then prepared the same way (the run's binarization and seed).

    Args:
        run: from `load_run` (with its model).
        dataset: a dataset in any form `keras-vae train --dataset` accepts; None: the run's.
        data_dir: TFDS `data_dir` for `dataset`; None: the run's when the dataset is the run's.

    Raises:
        RunDirError or `keras_vae.data.DataError`: the data cannot be loaded or does not fit.
    """
    config = run.config.data
    if dataset is not None:
        config = dataclasses.replace(config, dataset=dataset, data_dir=data_dir)
    elif data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    test = prepared_splits(config, run.config.runtime.seed, ["test"])["test"]
    shape = test.images.shape[1:]
    source = f"dataset {config.dataset!r}"
    check_data_shape(shape, run.data_shape, source)
    likelihood = run.model.likelihood if run.model is not None else run.config.model.likelihood
    images = to_unit_interval(test.images)
    check_data_values(images, likelihood, source)
    return Split(images, test.labels)
