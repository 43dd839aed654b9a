"""Resumable runs: back up the whole training state every epoch, and restore it.

`RunBackup` is a Keras callback that writes the WHOLE training state to ``RUN_DIR/backup`` at
the end of every epoch, as one file replaced atomically: model and optimizer variables, the
reparameterisation `SeedGenerator` state (which `model.save_weights`, and so Keras'
`BackupAndRestore`, does not save), the completed epoch count, the per-epoch logs and epoch
times. A run killed at any moment (``kill -9`` included) therefore finds either the previous
epoch's state or the new one, never a mixture, and continues from its last completed epoch.
`save_state` / `restore_state` are that file's format, also used by the benchmarks' resumable
runs (benchmarks/common.py).

What a rerun does with an existing RUN_DIR is decided by `keras_vae.run_setup.prepare`.

Example:

The training data of a resumed run is exact because every epoch is drawn from (seed, epoch)
alone (`keras_vae.data.epoch_batches`): the rerun starts the data at its next epoch.

>>> backup = RunBackup("runs/x/backup")                          # doctest: +SKIP
>>> initial_epoch = backup.restore(model)                        # doctest: +SKIP
>>> model.fit(pipelines.epochs(10, initial_epoch), epochs=10, initial_epoch=initial_epoch,
...           callbacks=[backup])                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vae.atomic import remove_temporaries, write_atomically
from keras_vae.callbacks.best_epoch import BestEpoch
from keras_vae.finite_weights import check_finite_weights
from keras_vae.npz_files import read_npz
from keras_vae.run_paths import FIGURES_DIR, STATE_FILE, RunDirError


def training_variables(model: keras.Model) -> list[keras.Variable]:
    """Every variable training changes: the model's (incl. seed generators) and the optimizer's."""
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


def save_state(
    path: str | Path,
    model: keras.Model,
    progress: dict[str, Any],
    extra_arrays: Sequence[np.ndarray] = (),
) -> None:
    """Every training variable of `model` (`training_variables`), a JSON-able `progress`
    dict and any `extra_arrays` (e.g. early stopping's best weights; `read_extra_arrays`) as
    ONE ``.npz`` file, replaced atomically: a kill leaves the old state or the new.

    Example:
        >>> import tempfile
        >>> from keras_vae.model import VAE
        >>> model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
        >>> model.compile(optimizer="sgd")
        >>> path = Path(tempfile.mkdtemp()) / "state.npz"
        >>> save_state(path, model, {"epoch": 3})
        >>> read_progress(path), restore_state(path, model, "delete it")
        ({'epoch': 3}, {'epoch': 3})
    """
    write_atomically(path, state_bytes(model, progress, extra_arrays))


def state_bytes(
    model: keras.Model, progress: dict[str, Any], extra_arrays: Sequence[np.ndarray] = ()
) -> bytes:
    """The content of `save_state`'s file: a snapshot of the variables taken now."""
    variables = training_variables(model)
    metadata = {**progress, "variables": [[v.path, list(v.shape)] for v in variables]}
    arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
    if len(extra_arrays):
        metadata["extra_arrays"] = len(extra_arrays)
        arrays.update({f"e{i}": np.asarray(a) for i, a in enumerate(extra_arrays)})
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(json.dumps(metadata)), **arrays)
    return buffer.getvalue()


def _read(
    path: Path, fix: str, what: str
) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """The metadata, the variables' arrays and the extra arrays, in one read of the file."""
    try:
        state = read_npz(path, stored_only=True)
        metadata = json.loads(str(state["metadata"]))
        variables = [state[f"v{i}"] for i in range(len(metadata["variables"]))]
        extras = [state[f"e{i}"] for i in range(int(metadata.get("extra_arrays", 0)))]
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"Cannot read {what} {path} ({error}); {fix}.") from None
    except RecursionError:  # metadata nested too deep for json
        raise RunDirError(f"Cannot read {what} {path} (nested too deep); {fix}.") from None
    return metadata, variables, extras


def _progress(metadata: dict[str, Any]) -> dict[str, Any]:
    """The `progress` part of a state file's metadata (without the format's own keys)."""
    return {k: v for k, v in metadata.items() if k not in ("variables", "extra_arrays")}


def read_extra_arrays(
    path: str | Path, fix: str = "delete it", what: str = "the state"
) -> list[np.ndarray]:
    """The `extra_arrays` `save_state` stored in `path` ([] when none)."""
    return _read(Path(path), fix, what)[2]


def read_progress(path: str | Path, fix: str = "delete it", what: str = "the state") -> dict:
    """The `progress` dict `save_state` stored in `path`, without loading any model."""
    return _progress(_read(Path(path), fix, what)[0])


def restore_state(
    path: str | Path, model: keras.Model, fix: str, what: str = "the state"
) -> dict[str, Any]:
    """Load the variables `save_state` wrote into `model` (compiled); return the progress.

    Raises:
        RunDirError: the file is unreadable, was written by a different model or holds a
            weight that is NaN or infinite (`fix` says what to do).
    """
    return _restore(Path(path), model, fix, what)[0]


def _restore(
    path: Path, model: keras.Model, fix: str, what: str
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """`restore_state`, also returning the file's extra arrays (one read of the file)."""
    metadata, arrays, extras = _read(path, fix, what)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = training_variables(model)
    # Shapes, not paths: Keras numbers auto-named layers per process ("adam" vs "adam_1").
    saved_shapes = [shape for _, shape in metadata["variables"]]
    if saved_shapes != [list(v.shape) for v in variables]:
        raise RunDirError(
            f"{what.capitalize()} {path} was written by a different model "
            f"({len(saved_shapes)} variables, expected {len(variables)} with the same "
            f"shapes); {fix}."
        )
    for variable, value in zip(variables, arrays):
        variable.assign(value)
    try:  # what the backup saves is finite (StopWhenDiverged): NaN is damage
        check_finite_weights(model)
    except ValueError as error:
        raise RunDirError(f"{what.capitalize()} {path}: {error}; {fix}.") from None
    return _progress(metadata), extras


class RunBackup(keras.callbacks.Callback):
    """Save the training state atomically at every epoch end; `restore` it before `fit`.

    Args:
        backup_dir: the folder holding the state (``RUN_DIR/backup``); created when needed.
        early_stopping: a `keras_vae.callbacks.BestEpoch` whose state (best weights
            included) is saved and restored with the rest; place it before this callback.
            Default None.

    Attributes:
        epochs_done: epochs completed so far, over all launches of the run.
        history: per-epoch logs over all launches, like `History.history`.
        epoch_seconds: wall time of each completed epoch, over all launches.

    Example:
        >>> import numpy as np, tempfile
        >>> from keras_vae.model import VAE
        >>> model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
        >>> model.compile(optimizer="sgd")
        >>> backup = RunBackup(tempfile.mkdtemp())
        >>> backup.restore(model)
        0
        >>> _ = model.fit(np.full((8, 4), 0.5), epochs=2, callbacks=[backup], verbose=0)
        >>> RunBackup(backup.backup_dir).restore(model), backup.history["elbo"][1] < 0
        (2, True)
    """

    def __init__(self, backup_dir: str | Path, early_stopping: BestEpoch | None = None) -> None:
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.early_stopping = early_stopping
        self.epochs_done = 0
        self.history: dict[str, list[float]] = {}
        self.epoch_seconds: list[float] = []
        self._epoch_start = time.perf_counter()
        self._writer: threading.Thread | None = None
        self._write_error: BaseException | None = None

    @property
    def state_path(self) -> Path:
        """The backup's state file in `backup_dir`."""
        return self.backup_dir / STATE_FILE

    def exists(self) -> bool:
        """Whether the backup's state file exists."""
        return self.state_path.is_file()

    # ----------------------------------------------------------------- saving
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1
        self.save(self.model)

    def save(self, model: keras.Model) -> None:
        """Write the state of `model` and the run's progress as ONE atomically replaced file.

        The state is snapshotted here; the file is written (and synced to disk) by a thread
        while the next epoch trains, one write at a time. A kill before it lands resumes from
        the epoch before, to the same numbers. `wait` returns once it has landed, and raises
        its error if it failed.
        """
        progress = {
            "epoch": self.epochs_done,
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
        }
        extra: list[np.ndarray] = []
        if self.early_stopping is not None:
            progress["early_stopping"], extra = self.early_stopping.state()
        payload = state_bytes(model, progress, extra)
        self.wait()
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        writer = threading.Thread(
            target=self._write, args=(self.state_path, payload), name="keras-vae-backup"
        )
        # Recorded once started: a Ctrl-C inside `start` would leave a thread `wait` cannot
        # join ("cannot join thread before it is started"), hiding the KeyboardInterrupt. A
        # write it did start still lands before the interpreter exits (not a daemon thread).
        writer.start()
        self._writer = writer

    def _write(self, path: Path, payload: bytes) -> None:
        try:
            write_atomically(path, payload)
        except BaseException as error:  # raised on the training thread by `wait`
            self._write_error = error

    def wait(self) -> None:
        """Block until the last backup is on disk; raise the error its write met, if any."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self._write_error = self._write_error, None
        if error is not None:
            raise error

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.wait()

    # ----------------------------------------------------------------- restoring
    def restore(self, model: keras.Model) -> int:
        """Load the saved state into `model` (compiled) and return the epochs already done.

        Returns 0 and changes nothing when there is no backup.

        Raises:
            RunDirError: the backup is unreadable or was written by a different model.
        """
        self.wait()
        remove_stale_temporaries(self.backup_dir)
        if not self.exists():
            return 0
        fix = f"delete {self.backup_dir} to start the run over (or pass --overwrite)"
        progress, extras = _restore(self.state_path, model, fix, what="the backup")
        self.epochs_done = int(progress["epoch"])
        self.history = {k: list(v) for k, v in progress["history"].items()}
        self.epoch_seconds = list(progress["epoch_seconds"])
        if self.early_stopping is not None:
            if "early_stopping" not in progress:
                raise RunDirError(
                    f"The backup {self.state_path} holds no early-stopping state, which this "
                    f"run's config asks for; {fix}."
                )
            early = progress["early_stopping"]
            self.early_stopping.load_state(early, extras, model, self.epochs_done)
        return self.epochs_done

    def delete(self) -> None:
        """Remove the backup (after the run's outputs are all written): its state file, its
        temporaries and the folder once empty; nothing else."""
        self.wait()
        self.state_path.unlink(missing_ok=True)
        remove_temporaries(self.backup_dir)
        with contextlib.suppress(OSError):  # missing, or holds a file of the user's
            self.backup_dir.rmdir()


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files an atomic write killed half-way leaves in `folder` (a run
    directory or its backup) and in its ``figures`` subfolder: only files named the way
    `keras_vae.atomic` names them, never a file of the user's."""
    for directory in (Path(folder), Path(folder) / FIGURES_DIR):
        remove_temporaries(directory)
