"""One writer per run folder: an exclusive `flock` on the folder itself, held while
`keras-vae train` writes into it.

Rerunning a train command resumes its run, so a second terminal (or a second session) that
reruns it while the first still trains would have two processes writing one backup, each
undoing the other's epochs. The lock is taken on the folder's own file descriptor, so no lock
file is created, and the kernel drops it when its holder exits, however it exits (a killed
run leaves no stale lock). Where it cannot lock (Windows, a filesystem without `flock`, a
folder it may not read) training goes on unlocked, as it did before there was a lock.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder).acquire():
    ...     FolderLock(folder).acquire()
    Traceback (most recent call last):
    ...
    keras_vae.folder_lock.FolderBusyError: ... is being written by another keras-vae process ...
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]  # mypy types the name as the module only


class FolderBusyError(ValueError):
    """Another process holds the folder's lock; the message says what to do."""


class FolderLock:
    """An exclusive, non-blocking lock on `folder`, taken by `acquire` (once the folder
    exists) and held until `release`, the end of its ``with`` block or of the process.

    Example:
        >>> import tempfile
        >>> with FolderLock(tempfile.mkdtemp()) as lock:
        ...     lock.acquire().held
        True
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this lock holds the folder (False where it cannot lock)."""
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock (again: nothing); returns self.

        Raises:
            FolderBusyError: another process (or another `FolderLock` here) holds it.
        """
        if self._fd is not None or fcntl is None:
            return self
        try:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:  # a folder it may write but not read: it cannot be locked; go on
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(
                f"{self.folder} is being written by another keras-vae process (a train of "
                "this run still going?); wait for it to end or stop it, then rerun this "
                "command: it resumes from the last completed epoch."
            ) from None
        except OSError:  # a filesystem without flock (some network mounts): go on unlocked
            os.close(fd)
            return self
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (again: nothing)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases its flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
