"""Resumable runs: back up the training state every epoch, and decide what a rerun does.

`RunBackup` is a Keras callback that writes the WHOLE training state to ``RUN_DIR/backup`` at
the end of every epoch, as one file replaced atomically: model and optimizer variables, the
reparameterisation `SeedGenerator` state (which `model.save_weights`, and so Keras'
`BackupAndRestore`, does not save), the completed epoch count, the per-epoch logs and epoch
times. A run killed at any moment (``kill -9`` included) therefore finds either the previous
epoch's state or the new one, never a mixture, and continues from its last completed epoch.

What a rerun of ``train`` does with an existing RUN_DIR (`inspect_run_dir`):

- missing or empty: a new run;
- a run this program wrote (its manifest, `keras_vae.ownership`) or an older keras-vae run
  with the same ``config.json``:
  - the same config and a backup: resume from the backup's epoch;
  - the same config, ``model.keras`` + ``metrics.json`` and no backup: finished, nothing to
    do (the stored metrics are returned);
  - the same config and nothing else: started but no epoch completed, so start again;
  - a different config: refused with a `RunDirError` naming the differing keys, unless
    ``overwrite=True``, which starts over after deleting exactly the files the previous run
    listed in its manifest (`clear_run_outputs`);
- anything else (a folder of the user's): refused, ``--overwrite`` included; nothing touched.

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
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vae import ownership
from keras_vae.atomic import remove_temporaries, write_atomically
from keras_vae.config import Config
from keras_vae.run_dir import CONFIG_FILE, METRICS_FILE, MODEL_FILE, RunDirError

BACKUP_DIR = "backup"
LOGS_DIR = "logs"
FIGURES_DIR = "figures"
STATE_FILE = "state.npz"
# The files a run of an older keras-vae (before manifests) wrote, adopted when it is resumed.
LEGACY_RUN_FILES = (MODEL_FILE, METRICS_FILE, CONFIG_FILE, f"{BACKUP_DIR}/{STATE_FILE}")
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
        """Remove the backup (after the run's outputs are all written): its state file, its
        temporaries and the folder once empty; nothing else."""
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


def _previous_config(config_path: Path, fix: str) -> Config:
    try:
        return Config.from_json(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise RunDirError(f"Cannot read {config_path} ({message}); {fix}.") from None


def inspect_run_dir(run_dir: str | Path, config: Config, overwrite: bool = False) -> str:
    """What training `config` into `run_dir` means: NEW, RESUME or FINISHED (see the module doc).

    Reads only; raises `RunDirError` (nothing written) when `run_dir` is not ours to write
    (a folder of the user's, whatever `overwrite` says) or holds another run.
    """
    run_dir = Path(run_dir)
    try:
        ownership.check_writable_folder(run_dir, "run")
        manifest = ownership.Manifest.read(run_dir, "run") if run_dir.is_dir() else None
    except ownership.FolderNotOursError as error:
        raise RunDirError(str(error)) from None
    foreign = [] if manifest else ownership.foreign_entries(run_dir, "run")
    if not run_dir.exists() or (manifest is None and not foreign):
        return NEW
    fix = "pass --overwrite to start over, or choose another --output"
    config_path = run_dir / CONFIG_FILE
    if manifest is None:  # not written by this program; only an older run of the same config
        previous = None
        if config_path.is_file():
            with contextlib.suppress(RunDirError):
                previous = _previous_config(config_path, fix)
        if previous is None or config_differences(previous, config):
            raise RunDirError(str(ownership.not_ours_error(run_dir, "run", foreign)))
    elif overwrite:
        return NEW
    has_backup = (run_dir / BACKUP_DIR / STATE_FILE).is_file()
    if not config_path.is_file():
        if has_backup:
            raise RunDirError(f"{run_dir} holds a training backup but no {CONFIG_FILE}; {fix}.")
        return NEW
    differences = config_differences(_previous_config(config_path, fix), config)
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


def take_run_dir(run_dir: str | Path, overwrite: bool = False) -> ownership.Manifest:
    """Claim `run_dir` for writing (after `inspect_run_dir` accepted it): its manifest, created
    in a new folder; with `overwrite`, the previous run's files deleted first
    (`clear_run_outputs`)."""
    run_dir = Path(run_dir)
    has_manifest = (run_dir / ownership.MANIFEST_FILE).exists()
    older_run = (run_dir / CONFIG_FILE).is_file() and not has_manifest
    try:
        manifest = ownership.Manifest.take(
            run_dir, "run", adopt=LEGACY_RUN_FILES if older_run else ()
        )
    except ownership.FolderNotOursError as error:
        raise RunDirError(str(error)) from None
    if overwrite:
        clear_run_outputs(manifest)
    manifest.claim(
        CONFIG_FILE,
        f"{BACKUP_DIR}/{STATE_FILE}",
        folders=(BACKUP_DIR,),
    )
    return manifest


def clear_run_outputs(manifest: ownership.Manifest) -> list[Path]:
    """Delete the files a previous run listed in its manifest; every other file stays."""
    return manifest.remove_owned()
