"""Read a finished run directory and check data against its model, with one-line errors.

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

import contextlib
import dataclasses
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_vae import ownership
from keras_vae.config import Config
from keras_vae.data import Split, prepared_splits, to_unit_interval
from keras_vae.data.checks import (
    DataError,
    check_model_input,
    check_shape,
    check_values,
    one_line,
)
from keras_vae.json_files import MAX_JSON_BYTES, JSONFileError, parse_json_text, read_json_file
from keras_vae.limits import user_path
from keras_vae.run_paths import (  # the layout lives there; re-exported for the commands
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TRAIN_HINT,
    RunDirError,
    RunFolder,
)

if TYPE_CHECKING:
    from keras_vae.model import VAE

# A .keras archive (written by Keras' saving_lib): its model's config and its own metadata;
# every other member holds weights.
ARCHIVE_CONFIG = "config.json"
ARCHIVE_JSON = (ARCHIVE_CONFIG, "metadata.json")

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "Run",
    "RunDirError",
    "check_data",
    "check_data_shape",
    "check_data_values",
    "check_run_dir",
    "load_config",
    "load_metrics",
    "load_model",
    "load_run",
    "load_split",
    "load_test_split",
]


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run directory, or a preset read as one (`keras_vae.presets.preset_run`).

    Attributes:
        path: the run directory (a preset's folder, never written into).
        config: its validated `Config` (from ``config.json``).
        metrics: the contents of ``metrics.json`` ({} if the file does not exist yet).
        model: the trained `VAE` (None when loaded with ``with_model=False``).
        preset: the preset's name or folder, for a preset; None for a run directory.
    """

    path: Path
    config: Config
    metrics: dict[str, Any]
    model: Any = None
    preset: str | None = None

    def __str__(self) -> str:
        """How messages name it: the run directory, or "preset NAME"."""
        return str(self.path) if self.preset is None else f"preset {self.preset}"

    @property
    def data_shape(self) -> tuple[int, ...]:
        """One example's shape, from the model (or ``metrics.json`` without a model)."""
        if self.model is not None:
            return tuple(self.model.data_shape)
        if "data_shape" in self.metrics:
            return tuple(int(d) for d in self.metrics["data_shape"])
        raise RunDirError(f"{self.path}: the data shape is unknown until the model is loaded.")


_one_line = one_line  # the package's one helper (keras_vae.data.checks)


def check_run_dir(run_dir: str | os.PathLike | Run) -> Path:
    """The run directory (a loaded `Run`'s folder) as a `Path`, checked: a readable folder.

    Raises:
        RunDirError: it is missing, a file, or cannot be listed.

    Example:

    >>> try:
    ...     check_run_dir("/no/such/run")
    ... except RunDirError as error:
    ...     print(str(error)[:40])
    Run directory not found: /no/such/run; p
    """
    path = run_dir.path if isinstance(run_dir, Run) else user_path("run_dir", run_dir)
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
    fix = f"restore the {what} written by `keras-vae train` or retrain the run"
    try:
        return read_json_file(path, fix)
    except JSONFileError as error:
        raise RunDirError(str(error)) from None


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


def load_model(run_dir: str | os.PathLike, compile: bool = False) -> VAE:
    """The trained `VAE` from ``RUN_DIR/model.keras``.

    Args:
        run_dir: the run directory.
        compile: also restore the optimizer (only needed to continue training). Default False.

    Raises:
        RunDirError: the file is missing, unreadable, corrupt (a NaN weight too), or not a VAE.
    """
    import keras

    from keras_vae.finite_weights import check_finite_weights
    from keras_vae.model import VAE

    path = check_run_dir(run_dir) / MODEL_FILE
    if not path.exists():
        backup = " (it has a backup/ folder: rerun the same train command to finish it)"
        resumable = RunFolder(path.parent).backup.is_dir()
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
    _check_archive_config(path, fix)
    try:
        model = keras.saving.load_model(path, compile=compile)
        check_finite_weights(model)
    except Exception as error:  # Keras and h5py raise many types; all mean "cannot load"
        raise RunDirError(f"Cannot load {path} ({_one_line(error)[:300]}); {fix}.") from None
    if not isinstance(model, VAE):
        raise RunDirError(
            f"{path} holds a {type(model).__name__}, not a keras_vae VAE; {TRAIN_HINT}."
        )
    return model


def _check_archive_config(path: Path, fix: str) -> None:
    """Refuse a .keras archive whose config.json is not bounded JSON describing a VAE that its
    weights can hold (`keras_vae.memory.check_saved_weights_fit`), before Keras builds it."""
    from keras_vae.memory import check_saved_weights_fit

    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            config = members.get(ARCHIVE_CONFIG)
            if config is None or config.file_size > MAX_JSON_BYTES:
                raise ValueError(f"no {ARCHIVE_CONFIG} of at most {MAX_JSON_BYTES:,} bytes")
            text = archive.read(config).decode("utf-8")
        values = parse_json_text(text, f"{path}:{ARCHIVE_CONFIG}", fix)
        weights = sum(m.file_size for m in members.values() if m.filename not in ARCHIVE_JSON)
        check_saved_weights_fit(values, weights)
    except JSONFileError as error:
        raise RunDirError(str(error)) from None
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # UnicodeDecodeError: a ValueError
        raise RunDirError(f"Cannot load {path} ({_one_line(error)[:300]}); {fix}.") from None


def input_paths(run: str | os.PathLike | Run, dataset: str | None = None) -> list[Path]:
    """What a command reads from, which its `--out` must not replace
    (`keras_vae.atomic.check_output_file`): the run's files (those its manifest lists; for a
    preset or a run from before manifests, every file in its folder) and the data (`dataset`,
    else the run's own) when it is a file or folder on disk.

    Raises:
        RunDirError: `run` is a folder whose config.json cannot be read (with no `dataset`).

    Example:
        >>> input_paths("runs/none", "digits")
        [PosixPath('runs/none')]
    """
    folder = run.path if isinstance(run, Run) else user_path("run_dir", run)
    manifest = None
    if not is_preset(run) and folder.is_dir():
        manifest = ownership.Manifest.read(folder, "run")
    paths = [folder] if manifest is None else manifest.owned_paths()
    if dataset is None and folder.is_dir():
        config = run.config if isinstance(run, Run) else load_config(folder)
        dataset = config.data.dataset
    if dataset is not None and Path(os.path.expanduser(dataset)).exists():
        paths.append(Path(os.path.expanduser(dataset)))
    return paths


def is_preset(run: str | os.PathLike | Run) -> bool:
    """Whether a command's run argument is a preset (a `Run` from `presets.preset_run`)."""
    return isinstance(run, Run) and run.preset is not None


def load_run(run_dir: str | os.PathLike | Run, with_model: bool = True) -> Run:
    """Config, metrics and (by default) the model of a run directory, all checked; a `Run`
    already loaded (e.g. a preset's) is returned as it is.

    Raises:
        RunDirError: anything is missing or corrupt; nothing is written either way.
    """
    if isinstance(run_dir, Run):
        return run_dir
    path = check_run_dir(run_dir)
    config = load_config(path)
    metrics = load_metrics(path)
    model = load_model(path) if with_model else None
    if model is not None:
        from keras_vae.aggregate_sampler import attach_aggregate_sampler

        attach_aggregate_sampler(model, path)
    return Run(path=path, config=config, metrics=metrics, model=model)


@contextlib.contextmanager
def _as_run_dir_error() -> Iterator[None]:
    """Re-raise a `DataError` of the data checks as a `RunDirError` with the same message."""
    try:
        yield
    except DataError as error:
        raise RunDirError(str(error)) from None


def check_data_shape(
    data_shape: Sequence[int], model_data_shape: Sequence[int], source: str = "the data"
) -> None:
    """Raise `RunDirError` unless one example of `source` has the model's `data_shape`.

    `keras_vae.data.checks.check_shape`, the check and message that training uses too.

    Example:

    >>> try:
    ...     check_data_shape((28, 28), (8, 8), "mnist: test images")
    ... except RunDirError as error:
    ...     print(str(error)[:54])
    mnist: test images have shape (28, 28) per example but
    """
    with _as_run_dir_error():
        check_shape(data_shape, model_data_shape, source)


def check_data_values(images: np.ndarray, likelihood: str, source: str = "the data") -> None:
    """Raise `RunDirError` for NaN or inf anywhere, or values outside [0, 1] for Bernoulli.

    `keras_vae.data.checks.check_values`, the checks and messages that training uses too.

    Example:

    >>> try:
    ...     check_data_values(np.array([0.0, 2.0]), "bernoulli", "x")
    ... except RunDirError as error:
    ...     print(str(error)[:44])
    x have values in [0.0, 2.0], expected [0, 1]
    """
    with _as_run_dir_error():
        check_values(images, likelihood, source)


def check_data(images: np.ndarray, model: VAE, source: str = "the data") -> np.ndarray:
    """`images` as float32 after checking shape and values against `model`.

    `keras_vae.data.checks.check_model_input`, raising `RunDirError`.

    Args:
        images: ``(N, *data_shape)`` floats (already scaled as the model was trained).
        model: the run's `VAE` (only `data_shape` and `likelihood` are read).
        source: how the message names the data (a plural noun phrase, e.g. "the data").

    Example:

    >>> import types
    >>> model = types.SimpleNamespace(data_shape=(2,), likelihood="bernoulli")
    >>> check_data(np.array([[0, 1]]), model).dtype
    dtype('float32')
    """
    with _as_run_dir_error():
        return check_model_input(images, model.data_shape, model.likelihood, source)


def load_split(
    run: Run, dataset: str | None = None, data_dir: str | None = None, split: str = "test"
) -> Split:
    """The held-out split a run is evaluated on (or its ``split``: "train" for the training
    images, "validation"), as float32 in [0, 1], checked against its model.

    The same examples as `keras_vae.data.make_datasets` yields for the run's test pipeline
    (same hold-out, same binarization draw), from the run's own dataset unless `dataset` names
    another one, which is then prepared the same way (the run's binarization and seed).

    Args:
        run: from `load_run` (with its model).
        dataset: a dataset in any form `keras-vae train --dataset` accepts; None: the run's.
        data_dir: TFDS `data_dir` for `dataset`; None: the run's when the dataset is the run's.

    Raises:
        DataError: the data cannot be loaded, or fails the checks loading makes for training.
        RunDirError: the data do not fit the model (shape, or values for its likelihood).
    """
    config = run.config.data
    if dataset is None and not config.dataset:  # a preset saved from a model alone
        raise RunDirError(f"{run} does not record the data it was trained on; pass --dataset.")
    if dataset is not None:
        config = dataclasses.replace(config, dataset=dataset, data_dir=data_dir)
    elif data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    test = prepared_splits(config, run.config.runtime.seed, [split])[split]
    source = f"{config.dataset}: {split} images"  # as loading names them
    likelihood = run.model.likelihood if run.model is not None else run.config.model.likelihood
    with _as_run_dir_error():
        check_shape(test.images.shape[1:], run.data_shape, source)
        images = to_unit_interval(test.images)
        check_values(images, likelihood, source)
    return Split(images, test.labels)


load_test_split = load_split  # the name callers use for the held-out split (its default)
