"""Atomic file writes: a temporary file beside the target, flushed, then renamed over it.

A reader (or a rerun after `kill -9`) sees either the old file or the new one, never half of
one, because `os.replace` within one folder is atomic on POSIX and Windows. The file gets the
mode a plain `open` would give it (0666 less the umask, usually 0644), and JSON is written
strictly: NaN or infinity raise instead of producing text that is not JSON.

Temporary files are named ``.<target>.<random>.keras-vae-tmp`` (``...keras-vae-tmp.keras``
for models), so the clean-up after a kill (`is_temporary`) can never match a file of the
user's.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> write_json_atomically(path, {"elbo": -90.0})
    >>> path.read_text()
    '{\\n  "elbo": -90.0\\n}\\n'
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

TEMPORARY_MARK = ".keras-vae-tmp"
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


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    Concurrent writers (e.g. several workers writing the same content) are safe: each writes
    its own uniquely named temporary file, and the last rename wins.
    """
    path = Path(path)
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


def check_output_file(path: str | os.PathLike, example: str) -> Path:
    """The output path a command was given, as a `Path`, after checking it names a file in an
    existing, writable folder; `example` says what to pass instead of a folder (e.g. "such as
    scores.csv").

    Raises:
        ValueError: the path is a folder, or its folder is missing or not writable.

    Example:
        >>> check_output_file("/nonexistent-folder/scores.csv", "such as scores.csv")
        Traceback (most recent call last):
        ...
        ValueError: The folder of the output path does not exist: /nonexistent-folder; \
create it first or write elsewhere.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        raise ValueError(f"Output path {path} is a folder; pass a file name {example}.")
    if not path.parent.is_dir():
        raise ValueError(
            f"The folder of the output path does not exist: {path.parent}; create it first "
            "or write elsewhere."
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"Cannot write {path} (permission denied); write elsewhere.")
    return path
