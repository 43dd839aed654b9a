"""`prepare`: what training a config into a run directory means, decided once, reading only.

`prepare(run_dir, config, overwrite)` reads the folder (nothing is written) and returns a
`RunPlan` whose status says what `train` does:

- missing or empty: NEW;
- a run this program wrote (its manifest) or an older keras-vae run with the same
  ``config.json``: RESUME with a backup, FINISHED with ``model.keras`` + ``metrics.json`` and no
  backup (nothing to do), NEW when it started but finished no epoch; a different config is
  refused (`RunDirError` naming the differing keys) unless `overwrite`, which starts over after
  deleting exactly the files the previous run listed in its manifest;
- anything else (a folder of the user's): refused, `overwrite` included; nothing touched.

`RunPlan.take` then claims the folder for writing (the manifest first). The folder's paths are
`keras_vae.run_paths.RunFolder`'s.

    >>> import tempfile
    >>> from keras_vae.config import Config
    >>> plan = prepare(Path(tempfile.mkdtemp()) / "run", Config())
    >>> plan.status, plan.folder.model.name
    ('new', 'model.keras')
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from keras_vae import ownership
from keras_vae.config import Config
from keras_vae.json_files import JSONFileError, read_json_file
from keras_vae.limits import user_path
from keras_vae.run_paths import (
    BACKUP_DIR,
    CONFIG_FILE,
    LEGACY_RUN_FILES,
    STATE_FILE,
    RunDirError,
    RunFolder,
)

NEW, RESUME, FINISHED = "new", "resume", "finished"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Settings that choose how a run computes, not what: a run may resume with other values. The
# device-resident and streaming paths train on the same numbers bit for bit
# (tests/test_device_data.py), so the device data limit only chooses where batches are made;
# the memory limit only decides whether training starts.
EXECUTION_ONLY = ("runtime.device_data_limit_mb", "runtime.memory_limit_mb")


def config_differences(old: Config, new: Config) -> list[str]:
    """'section.key: old -> new' for every setting that differs (but the `EXECUTION_ONLY` ones).

    Example:
        >>> config_differences(Config(), Config.from_dict({"training": {"epochs": 3}}))
        ['training.epochs: 10 -> 3']
    """
    before, after = _flatten(old.to_dict()), _flatten(new.to_dict())
    return [
        f"{k}: {before[k]!r} -> {after[k]!r}"
        for k in sorted(after)
        if before[k] != after[k] and k not in EXECUTION_ONLY
    ]


def _previous_config(path: Path, fix: str) -> Config:
    try:
        values = read_json_file(path, fix)
    except JSONFileError as error:
        raise RunDirError(str(error)) from None
    try:
        return Config.from_dict(values)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise RunDirError(f"Cannot read {path} ({message}); {fix}.") from None


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What training into a run directory means (from `prepare`).

    Attributes:
        folder: the run directory's paths.
        status: NEW, RESUME or FINISHED.
        overwrite: start over, deleting the previous run's files (only with status NEW).
    """

    folder: RunFolder
    status: str
    overwrite: bool = False

    def take(self, root: str | os.PathLike | None = None) -> ownership.Manifest:
        """Claim the folder for writing: its manifest, created in a new folder; with
        `overwrite`, the previous run's files deleted first.

        Args:
            root: the folder this process writes (a non-chief worker writes a temporary
                one); default: the run directory.
        """
        root = Path(root) if root is not None else self.folder.root
        target = RunFolder(root)
        older_run = target.config.is_file() and not target.manifest.exists()
        try:
            manifest = ownership.Manifest.take(
                root, "run", adopt=LEGACY_RUN_FILES if older_run else ()
            )
        except ownership.FolderNotOursError as error:
            raise RunDirError(str(error)) from None
        if self.overwrite:
            manifest.remove_owned()
        manifest.claim(CONFIG_FILE, f"{BACKUP_DIR}/{STATE_FILE}", folders=(BACKUP_DIR,))
        return manifest


def prepare(run_dir: str | os.PathLike, config: Config, overwrite: bool = False) -> RunPlan:
    """Decide, reading only, what training `config` into `run_dir` means (module docstring).

    Raises:
        RunDirError: `run_dir` is not ours to write (a file, not writable, a folder of the
            user's whatever `overwrite` says) or holds another run; nothing is written.
    """
    folder = RunFolder(user_path("run_dir", run_dir))
    root = folder.root
    try:
        ownership.check_writable_folder(root, "run")
        manifest = ownership.Manifest.read(root, "run") if root.is_dir() else None
    except ownership.FolderNotOursError as error:
        raise RunDirError(str(error)) from None
    foreign = [] if manifest else ownership.foreign_entries(root, "run")
    if not root.exists() or (manifest is None and not foreign):
        return RunPlan(folder, NEW, overwrite)
    fix = "pass --overwrite to start over, or choose another --output"
    if manifest is None:  # not written by this program; only an older run of the same config
        previous = None
        if folder.config.is_file():
            with contextlib.suppress(RunDirError):
                previous = _previous_config(folder.config, fix)
        if previous is None or config_differences(previous, config):
            raise RunDirError(str(ownership.not_ours_error(root, "run", foreign)))
    elif overwrite:
        return RunPlan(folder, NEW, overwrite)
    if not folder.config.is_file():
        if folder.has_backup():
            raise RunDirError(f"{root} holds a training backup but no {CONFIG_FILE}; {fix}.")
        return RunPlan(folder, NEW, overwrite)
    differences = config_differences(_previous_config(folder.config, fix), config)
    if differences:
        state = "an unfinished run (with a backup)" if folder.has_backup() else "a run"
        raise RunDirError(
            f"{root} holds {state} with a different config ({'; '.join(differences)}); "
            f"rerun with the same flags to continue it, {fix}."
        )
    if folder.has_backup():
        return RunPlan(folder, RESUME, overwrite)
    if folder.is_finished():
        return RunPlan(folder, FINISHED, overwrite)
    return RunPlan(folder, NEW, overwrite)
