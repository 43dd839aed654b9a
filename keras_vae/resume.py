"""Resumable runs: back up the training state every epoch, and decide what a rerun does.

`RunBackup` is a Keras callback that writes the WHOLE training state to ``RUN_DIR/backup`` at
the end of every epoch, as one file replaced atomically: model and optimizer variables, the
reparameterisation `SeedGenerator` state (which `model.save_weights`, and so Keras'
`BackupAndRestore`, does not save), the completed epoch count, the per-epoch logs and epoch
times. A run killed at any moment (``kill -9`` included) therefore finds either the previous
epoch's state or the new one, never a mixture, and continues from its last completed epoch.

What a rerun of ``train`` does with an existing RUN_DIR (`inspect_run_dir`):

- no ``config.json``: a new run;
- the same config and a backup: resume from the backup's epoch;
- the same config, ``model.keras`` + ``metrics.json`` and no backup: finished, nothing to do
  (the stored metrics are returned);
- the same config and nothing else: started but no epoch completed, so start again;
- a different config: refused with a `RunDirError` naming the differing keys, unless
  ``overwrite=True``, which starts over after deleting the run's previous outputs.

Example:

The training data of a resumed run is exact because every epoch is drawn from (seed, epoch)
alone (`keras_vae.data.epoch_batches`): the rerun starts the data at its next epoch.

>>> backup = RunBackup("runs/x/backup")                          # doctest: +SKIP
>>> initial_epoch = backup.restore(model)                        # doctest: +SKIP
>>> model.fit(pipelines.epochs(10, initial_epoch), epochs=10, initial_epoch=initial_epoch,
...           callbacks=[backup])                                # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vae.atomic import write_atomically
from keras_vae.config import Config
from keras_vae.run_dir import CONFIG_FILE, METRICS_FILE, MODEL_FILE, RunDirError

BACKUP_DIR = "backup"
LOGS_DIR = "logs"
FIGURES_DIR = "figures"
STATE_FILE = "state.npz"
# What `overwrite=True` deletes: the outputs of a previous run, nothing else.
RUN_OUTPUTS = (MODEL_FILE, METRICS_FILE, CONFIG_FILE, BACKUP_DIR, LOGS_DIR, FIGURES_DIR)
# Temporary files `keras_vae.atomic` leaves behind when killed mid-write.
STALE_TEMPORARY_PATTERNS = (".*.json.*", ".*.tmp*.keras", ".*.png.*", f".{STATE_FILE}.*")
NEW, RESUME, FINISHED = "new", "resume", "finished"


def training_variables(model: keras.Model) -> list[keras.Variable]:
    """Every variable training changes: the model's (incl. seed generators) and the optimizer's."""
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    return variables


class RunBackup(keras.callbacks.Callback):
    """Save the training state atomically at every epoch end; `restore` it before `fit`.

    Args:
        backup_dir: the folder holding the state (``RUN_DIR/backup``); created when needed.

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

    def __init__(self, backup_dir: str | Path):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.epochs_done = 0
        self.history: dict[str, list[float]] = {}
        self.epoch_seconds: list[float] = []
        self._epoch_start = time.perf_counter()

    @property
    def state_path(self) -> Path:
        return self.backup_dir / STATE_FILE

    def exists(self) -> bool:
        return self.state_path.is_file()

    # ----------------------------------------------------------------- saving
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1
        self.save(self.model)

    def save(self, model: keras.Model) -> None:
        """Write the state of `model` and the run's progress as ONE atomically replaced file."""
        variables = training_variables(model)
        metadata = {
            "epoch": self.epochs_done,
            "history": self.history,
            "epoch_seconds": self.epoch_seconds,
            "variables": [[v.path, list(v.shape)] for v in variables],
        }
        arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        buffer = io.BytesIO()
        np.savez(buffer, metadata=np.array(json.dumps(metadata)), **arrays)
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.state_path, buffer.getvalue())

    # ----------------------------------------------------------------- restoring
    def restore(self, model: keras.Model) -> int:
        """Load the saved state into `model` (compiled) and return the epochs already done.

        Returns 0 and changes nothing when there is no backup.

        Raises:
            RunDirError: the backup is unreadable or was written by a different model.
        """
        remove_stale_temporaries(self.backup_dir)
        if not self.exists():
            return 0
        fix = f"delete {self.backup_dir} to start the run over (or pass --overwrite)"
        try:
            with np.load(self.state_path, allow_pickle=False) as state:
                metadata = json.loads(str(state["metadata"]))
                arrays = [state[f"v{i}"] for i in range(len(metadata["variables"]))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise RunDirError(
                f"Cannot read the backup {self.state_path} ({error}); {fix}."
            ) from None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        variables = training_variables(model)
        # Shapes, not paths: Keras numbers auto-named layers per process ("adam" vs "adam_1").
        saved_shapes = [shape for _, shape in metadata["variables"]]
        if saved_shapes != [list(v.shape) for v in variables]:
            raise RunDirError(
                f"The backup {self.state_path} was written by a different model "
                f"({len(saved_shapes)} variables, expected {len(variables)} with the same "
                f"shapes); {fix}."
            )
        for variable, value in zip(variables, arrays):
            variable.assign(value)
        self.epochs_done = int(metadata["epoch"])
        self.history = {k: list(v) for k, v in metadata["history"].items()}
        self.epoch_seconds = list(metadata["epoch_seconds"])
        return self.epochs_done

    def delete(self) -> None:
        """Remove the backup (after the run's outputs are all written)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the hidden temporary files an atomic write killed half-way leaves in `folder`
    (a run directory or its backup) and in its ``figures`` subfolder."""
    for directory in (Path(folder), Path(folder) / FIGURES_DIR):
        if not directory.is_dir():
            continue
        for pattern in STALE_TEMPORARY_PATTERNS:
            for path in directory.glob(pattern):
                if path.is_file():
                    path.unlink(missing_ok=True)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(old: Config, new: Config) -> list[str]:
    """'section.key: old -> new' for every setting that differs.

    Example:
        >>> config_differences(Config(), Config.from_dict({"training": {"epochs": 3}}))
        ['training.epochs: 10 -> 3']
    """
    before, after = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [f"{k}: {before[k]!r} -> {after[k]!r}" for k in sorted(after) if before[k] != after[k]]


def inspect_run_dir(run_dir: str | Path, config: Config, overwrite: bool = False) -> str:
    """What training `config` into `run_dir` means: NEW, RESUME or FINISHED (see the module doc).

    Reads only; raises `RunDirError` (nothing written) when `run_dir` holds another run.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file; pass a folder as the run directory (--output).")
    if overwrite or not run_dir.exists():
        return NEW
    fix = "pass --overwrite to start over, or choose another --output"
    config_path = run_dir / CONFIG_FILE
    has_backup = (run_dir / BACKUP_DIR / STATE_FILE).is_file()
    if not config_path.is_file():
        if has_backup:
            raise RunDirError(f"{run_dir} holds a training backup but no {CONFIG_FILE}; {fix}.")
        return NEW
    try:
        previous = Config.from_json(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise RunDirError(f"Cannot read {config_path} ({message}); {fix}.") from None
    differences = config_differences(previous, config)
    if differences:
        state = "an unfinished run (with a backup)" if has_backup else "a run"
        raise RunDirError(
            f"{run_dir} holds {state} with a different config ({'; '.join(differences)}); "
            f"rerun with the same flags to continue it, {fix}."
        )
    if has_backup:
        return RESUME
    if (run_dir / MODEL_FILE).is_file() and (run_dir / METRICS_FILE).is_file():
        return FINISHED
    return NEW


def clear_run_outputs(run_dir: str | Path) -> None:
    """Delete a previous run's outputs (`RUN_OUTPUTS`) from `run_dir`; other files stay."""
    run_dir = Path(run_dir)
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
