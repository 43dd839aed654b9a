"""Atomic file writes: a temporary file beside the target, flushed, then renamed over it.

A reader (or a rerun after `kill -9`) sees either the old file or the new one, never half of
one, because `os.replace` within one folder is atomic on POSIX and Windows. The file gets the
mode a plain `open` would give it (0666 less the umask, usually 0644), and JSON is written
strictly: NaN or infinity raise instead of producing text that is not JSON.

Temporary files are named ``.<target>.<random>.keras-vae-tmp`` (``...keras-vae-tmp.keras``
for models), so the clean-up after a kill (`is_temporary`) can never match a file of the
user's, and the next write of a file removes the leftovers of its killed writes
(`remove_leftovers`).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> write_json_atomically(path, {"elbo": -90.0})
    >>> path.read_text()
    '{\\n  "elbo": -90.0\\n}\\n'
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_vae.limits import user_path

if TYPE_CHECKING:
    import keras

TEMPORARY_MARK = ".keras-vae-tmp"
# A temporary untouched this long is a killed write's leftover (`remove_leftovers`).
LEFTOVER_AGE_SECONDS = 60.0
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0666 less the umask (0644 under 022)."""
    return 0o666 & ~current_umask()


def is_temporary(name: str) -> bool:
    """Whether a file name is one of this module's temporary files.

    Example:
        >>> is_temporary(".metrics.json.x8k2.keras-vae-tmp"), is_temporary(".settings.json.bak")
        (True, False)
    """
    return name.startswith(".") and (
        name.endswith(TEMPORARY_MARK) or name.endswith(f"{TEMPORARY_MARK}.keras")
    )


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete this module's temporary files (left by a killed write) in `folder`; return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if is_temporary(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_leftovers(path: str | Path, min_age_seconds: float = LEFTOVER_AGE_SECONDS) -> list[Path]:
    """Delete the temporary files of `path` that an earlier, killed write left beside it
    (``.<name>.<random>.keras-vae-tmp``, untouched for `min_age_seconds`: a write in flight
    keeps its own fresh); return them. Nothing else is touched.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / ".s.csv.x8k2.keras-vae-tmp").write_text("half")
        >>> [p.name for p in remove_leftovers(folder / "s.csv", min_age_seconds=0)]
        ['.s.csv.x8k2.keras-vae-tmp']
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    now = time.time()
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{TEMPORARY_MARK}"):
        try:
            info = leftover.lstat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= min_age_seconds:
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`, first
    removing what killed writes of `path` left (`remove_leftovers`).

    Concurrent writers (e.g. several workers writing the same content) are safe: each writes
    its own uniquely named temporary file, and the last rename wins.
    """
    path = Path(path)
    remove_leftovers(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_MARK, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_text(values: Any) -> str:
    """`values` as indented JSON text; `ValueError` for NaN or infinity (which JSON lacks)."""
    return json.dumps(values, indent=2, allow_nan=False) + "\n"


def finite_or_null(values: Any) -> Any:
    """`values` with every NaN or infinite float replaced by None (JSON null), so a diverged
    run still writes valid JSON.

    Example:
        >>> finite_or_null({"elbo": float("nan"), "history": {"kl": [1.0, float("inf")]}})
        {'elbo': None, 'history': {'kl': [1.0, None]}}
    """
    if isinstance(values, dict):
        return {key: finite_or_null(value) for key, value in values.items()}
    if isinstance(values, (list, tuple)):
        return [finite_or_null(value) for value in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values


def write_json_atomically(path: str | Path, values: Any) -> None:
    """`write_atomically` of `json_text(values)`."""
    write_atomically(path, json_text(values))


def save_model_atomically(model: keras.Model, path: str | Path) -> None:
    """`model.save` into a temporary `.keras` file beside `path`, then rename it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_MARK}.keras")
    try:
        model.save(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_file(
    path: str | os.PathLike, example: str, inputs: Sequence[str | os.PathLike] = ()
) -> Path:
    """The output path a command was given (`--out`), as a `Path`, after checking what it
    names; `example` says what to pass instead (e.g. "such as scores.csv").

    The rules of every `--out` (written by `write_output`): a new or regular file is replaced
    atomically; a symlink is followed (its target is written, the link kept); a FIFO or a
    character device (`/dev/stdout`, `/dev/null`) is written into directly, never replaced;
    anything else (a folder, a block device, a socket) is refused, as is a path that is one
    of the command's `inputs` (files, or folders whose existing files are all inputs).

    Raises:
        ValueError: the path is refused, or its folder is missing or not writable.

    Example:
        >>> check_output_file("/nonexistent-folder/scores.csv", "such as scores.csv")
        Traceback (most recent call last):
        ...
        ValueError: The folder of the output path does not exist: /nonexistent-folder; \
create it first or write elsewhere.
    """
    path = user_path("out", path)
    target = Path(os.path.realpath(path))  # through symlinks (a dangling one: its target)
    if target.is_dir():
        raise ValueError(f"Output path {path} is a folder; pass a file name {example}.")
    if target.exists() and not written_in_place(target) and not target.is_file():
        raise ValueError(
            f"Output path {path} is neither a regular file, a FIFO nor a character device; "
            f"pass a file name {example}."
        )
    # as written first: realpath collapses "missing/.." as if the folder were there
    for folder in (path.parent, target.parent):
        if not folder.is_dir():
            raise ValueError(
                f"The folder of the output path does not exist: {folder}; create it first "
                "or write elsewhere."
            )
    writable = os.access(target, os.W_OK) if target.exists() else True
    if not writable or not os.access(target.parent, os.W_OK):
        raise ValueError(f"Cannot write {path} (permission denied); write elsewhere.")
    for source in inputs:
        source = Path(os.path.realpath(os.path.expanduser(str(source))))
        inside = source.is_dir() and target.is_relative_to(source) and target.exists()
        if target == source or inside:
            raise ValueError(
                f"Output path {path} is an input of this command ({source}); write the output "
                "elsewhere."
            )
    return path


def write_output(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a command's output file by `check_output_file`'s rules: a regular (or new) file
    atomically through any symlink, a FIFO or character device directly. A full disk is an
    `OSError` saying so, with the previous file left as it was.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
        >>> write_output(path, "index,elbo")
        >>> path.read_text()
        'index,elbo'
    """
    target = Path(os.path.realpath(user_path("out", path)))
    try:
        if written_in_place(target):
            with open(target, "wb" if isinstance(data, bytes) else "w") as handle:
                handle.write(data)
        else:
            write_atomically(target, data)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(
                f"No space left to write {path} (nothing of it was kept); free some space or "
                "write elsewhere."
            ) from None
        raise


def written_in_place(path: str | os.PathLike) -> bool:
    """Whether `path` is (or links to) a FIFO or character device: written into directly,
    never replaced by a rename.

    Example:
        >>> written_in_place("/nonexistent/out.png")
        False
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@contextlib.contextmanager
def folders_removed_on_failure(
    path: str | os.PathLike, own_files: Sequence[str] = ()
) -> Iterator[None]:
    """Undo the folders a write creates (`path` and its missing parents) when it fails.

    On an exception each folder missing on entry is removed, deepest first, once it holds
    nothing but `own_files` (deleted) or nothing; a folder that existed before, or holds
    anything else, stays as it is. The exception propagates.

    Example:
        >>> import pathlib, tempfile
        >>> base = pathlib.Path(tempfile.mkdtemp())
        >>> try:
        ...     with folders_removed_on_failure(base / "a" / "b"):
        ...         (base / "a" / "b").mkdir(parents=True)
        ...         raise OSError("disk full")
        ... except OSError:
        ...     pass
        >>> list(base.iterdir())
        []
    """
    created = []
    folder = Path(path).absolute()
    while not os.path.lexists(folder):
        created.append(folder)
        folder = folder.parent
    try:
        yield
    except BaseException:
        for folder in created:
            if not folder.is_dir() or folder.is_symlink():
                break
            names = os.listdir(folder)
            if not set(names) <= set(own_files):
                break
            for name in names:
                (folder / name).unlink()
            folder.rmdir()
        raise
