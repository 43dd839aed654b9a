"""Files a command adds to a finished run folder after training (``calibrate``'s
calibration.json, ``fit-sampler``'s aggregate_sampler.npz): written only where keras-vae may
write, listed in the run's manifest before they are written (so ``train --overwrite`` removes
them with the run they belong to), and read back only when the manifest lists them.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_run_file(folder, "notes.json", b"{}", "keras-vae calibrate").name
    'notes.json'
    >>> check_run_file_owned(folder, "notes.json", "keras-vae calibrate")
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from keras_vae.atomic import write_atomically
from keras_vae.ownership import MANIFEST_FILE, Manifest


def check_run_file_owned(
    folder: str | os.PathLike,
    name: str,
    command: str,
    manifest: Manifest | None = None,
    error: type[ValueError] = ValueError,
) -> None:
    """Raise `error` unless the run's `manifest` (read from `folder` when None) lists `name`:
    a copy from another run, or a user's file, is never read or replaced.

    Args:
        folder: the run directory.
        name: the file, relative to it.
        command: the command that writes it (named in the fix).
        manifest: the run's manifest, if already read.
        error: the `ValueError` subclass to raise.
    """
    folder = Path(folder)
    if manifest is None:
        manifest = Manifest.read(folder, "run")
    if manifest is None or not manifest.owns(name):
        raise error(
            f"{folder / name} exists and keras-vae did not write it for this run "
            f"({folder / MANIFEST_FILE} does not list it): move it away, then run `{command}` "
            "on this run."
        )


def check_run_file_writable(
    folder: str | os.PathLike, name: str, command: str, error: type[ValueError] = ValueError
) -> Manifest | None:
    """The run's manifest (None for a run from before manifests), once ``folder/name`` may be
    (re)written: the folder is writable, the manifest readable, and an existing file is one
    keras-vae wrote (`check_run_file_owned`). Checked before any work.

    Raises:
        error: it may not; `keras_vae.ownership.FolderNotOursError`: the manifest is unreadable.
    """
    folder = Path(folder)
    manifest = Manifest.read(folder, "run")
    path = folder / name
    parent = path.parent if path.parent.is_dir() else folder  # e.g. figures/, made if missing
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise error(f"Cannot write {path} (permission denied); fix the permissions of {folder}.")
    if os.path.lexists(path):
        check_run_file_owned(folder, name, command, manifest, error)
    return manifest


def write_run_file(
    folder: str | os.PathLike,
    name: str,
    content: str | bytes,
    command: str,
    error: type[ValueError] = ValueError,
) -> Path:
    """Write ``folder/name`` atomically, listed in the run's manifest first (and its subfolder,
    e.g. ``figures``, made if missing and listed as ours to remove once empty). A run of an older
    keras-vae (no manifest) gets one, adopting that run's files as `train` would when
    resuming it."""
    from keras_vae.run_paths import LEGACY_RUN_FILES

    folder = Path(folder)
    manifest = check_run_file_writable(folder, name, command, error)
    if manifest is None:
        manifest = Manifest.take(folder, "run", adopt=LEGACY_RUN_FILES)
    subfolder = str(PurePosixPath(name).parent)
    manifest.claim(name, folders=[] if subfolder == "." else [subfolder])
    path = folder / name
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, content)
    return path
