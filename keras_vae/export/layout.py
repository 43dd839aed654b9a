"""The export folder TF Serving reads, and how versions appear in it only complete.

Layout of an export folder ``DIR`` (each ``DIR/<model>`` is a TF Serving model base path)::

    DIR/encoder/<version>/   SavedModel
    DIR/decoder/<version>/   SavedModel
    DIR/tflite/              decoder.tflite, decoder_float16.tflite, decoder_dynamic_int8.tflite
    DIR/export.json          what was exported, from which run, with which signatures

Everything is first written into a staging folder ``DIR/.tmp-export-<pid>-<random>`` (same
filesystem), flushed to disk, and then moved into place with `os.rename`, which is atomic:
TF Serving, which polls ``DIR/<model>`` for numeric folder names, never sees half a version.
An export killed before that point leaves only its staging folder, which the next export
deletes.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> resolve_version(out, version=None, overwrite=False)
    1
    >>> (out / "decoder" / "3").mkdir(parents=True)
    >>> resolve_version(out, version=None, overwrite=False)
    4
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

MODEL_NAMES = ("encoder", "decoder")
TFLITE_DIR = "tflite"
EXPORT_JSON = "export.json"
STAGING_PREFIX = ".tmp-export-"


class VersionExistsError(ValueError):
    """The requested version already exists and `overwrite` was not given."""


def check_version(version: object) -> int:
    """`version` as an int after checking it is a positive integer (TF Serving's version).

    Example:
        >>> check_version(2)
        2
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            "Received an invalid value for `version`, expected a positive integer (TF Serving "
            f"loads numbered folders 1, 2, ...). Received: version={version!r}"
        )
    return version


def list_versions(model_dir: str | os.PathLike) -> list[int]:
    """The numbered version folders in one model base path, ascending ([] if it is missing)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def existing_versions(out_dir: str | os.PathLike, models: Sequence[str] = MODEL_NAMES) -> set[int]:
    """Every version number any of `models` has under `out_dir`."""
    return {v for name in models for v in list_versions(Path(out_dir) / name)}


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """`out_dir` as a Path, after checking it is (or can become) a writable folder.

    Raises:
        ValueError: it is a file, or the nearest existing folder is not writable.
    """
    path = Path(os.path.expanduser(str(out_dir)))
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; pass a folder (it is created if missing).")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot write to {existing}; choose another --out or fix permissions.")
    return path


def resolve_version(
    out_dir: str | os.PathLike,
    version: int | None,
    overwrite: bool,
    models: Sequence[str] = MODEL_NAMES,
) -> int:
    """The version to write: `version`, or one above the highest existing one (1 if none).

    Encoder and decoder share version numbers, so ``encoder/3`` and ``decoder/3`` always come
    from the same export.

    Raises:
        ValueError: `version` is not a positive integer.
        VersionExistsError: `version` exists for some model and `overwrite` is False.
    """
    taken = existing_versions(out_dir, models)
    if version is None:
        return max(taken, default=0) + 1
    version = check_version(version)
    if version in taken and not overwrite:
        where = ", ".join(str(Path(out_dir) / m / str(version)) for m in models)
        raise VersionExistsError(
            f"Version {version} already exists ({where}); pass --overwrite to replace it, or "
            f"omit --version to write version {max(taken) + 1}."
        )
    return version


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_staging(out_dir: str | os.PathLike) -> list[Path]:
    """Delete staging folders of exports whose process is gone (killed midway); return them."""
    removed = []
    for path in Path(out_dir).glob(f"{STAGING_PREFIX}*"):
        pid_text = path.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if path.is_dir() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staging_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder inside `out_dir` (same filesystem, so renames out of it are atomic),
    deleted on exit whatever happens; stale ones of killed exports are removed first."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    path = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush every file and folder under `path` to disk, so a rename publishes full content."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(root)


def _fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync folders
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(staged: Path, target: Path, trash: Path, overwrite: bool) -> None:
    """Move the complete folder `staged` to `target` with one atomic rename.

    An existing `target` is refused unless `overwrite`; then it is first moved into `trash`
    (inside the staging folder, deleted with it) and restored if the final rename fails.
    """
    fsync_tree(staged)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        if not overwrite:
            raise VersionExistsError(
                f"{target} appeared while exporting (another export?); nothing was replaced."
            )
        old = Path(tempfile.mkdtemp(prefix="old-", dir=trash))
        os.rename(target, old / target.name)
    try:
        os.rename(staged, target)
    except OSError:
        if old is not None:
            os.rename(old / target.name, target)
        raise
    _fsync_dir(target.parent)
