"""Atomic file writes: a temporary file beside the target, flushed, then renamed over it.

A reader (or a rerun after `kill -9`) sees either the old file or the new one, never half of
one, because `os.replace` within one folder is atomic on POSIX and Windows.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> write_atomically(path, '{"elbo": -90.0}')
    >>> path.read_text()
    '{"elbo": -90.0}'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    Concurrent writers (e.g. several workers writing the same content) are safe: each writes
    its own uniquely named temporary file, and the last rename wins.
    """
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_atomically(model: keras.Model, path: str | Path) -> None:
    """`model.save` into a temporary `.keras` file beside `path`, then rename it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
