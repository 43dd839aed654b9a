"""An export as one transaction: every model's new version, the TFLite files and export.json
appear together, or (after a kill at any point) none of them does once the folder is next
used, and an ``--overwrite`` never loses the old version before the new one is in place.

How (``DIR`` is the export folder):

1. Everything is written into a staging folder ``DIR/.tmp-export-<pid>-<random>`` (same
   filesystem), checked against Keras, and flushed to disk.
2. A journal (``journal.json`` in the staging folder) records each move (staged source ->
   target) and the inode of each staged source, which renames keep.
3. Each target is published with one rename. A target that exists (``--overwrite``, or the
   ``tflite`` folder and ``export.json``) is swapped with its replacement in one atomic
   ``renameat2(RENAME_EXCHANGE)`` where the kernel supports it (else moved aside first), and
   the old one is kept in the staging folder until the end. ``export.json`` is published last.
4. The staging folder (with the replaced versions) is deleted.

`recover` (run by `export_run` before it starts) finds staging folders of exports whose
process is gone. If all their targets hold the new content (by inode) the export had
completed and only the staging folder is deleted; otherwise every published target is
moved back out and every replaced one restored, so the folder is as before that export.

What TF Serving may observe: it polls each model's base path on its own, so for the
microseconds between the renames of ``encoder/<v>`` and ``decoder/<v>`` (and, after a
``kill -9`` exactly there, until the next export or `recover`) one model can have version
``<v>`` while the other does not; it never sees a half-written version folder.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with ExportTransaction(out) as transaction:
    ...     _ = (transaction.staging / "export.json").write_text("{}")
    ...     transaction.add("export.json", "export.json")
    ...     transaction.commit()
    >>> sorted(p.name for p in out.iterdir())
    ['export.json']
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from keras_vae import ownership
from keras_vae.atomic import write_json_atomically
from keras_vae.json_files import read_json_file

STAGING_PREFIX = ".tmp-export-"
JOURNAL = "journal.json"
# Test-only: SIGKILL this process at the named point (see tests/test_export_transaction.py).
KILL_POINT_ENV = "KERAS_VAE_TEST_KILL_AT"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def kill_point(name: str) -> None:
    """SIGKILL this process here when the test-only `KILL_POINT_ENV` names `name`."""
    if os.environ.get(KILL_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _renameat2() -> Callable[..., int] | None:
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        function.argtypes += [ctypes.c_uint]
        return function
    return None


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the kernel or filesystem
    cannot (the caller then moves one aside first)."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush every file and folder under `path` to disk, so a rename publishes full content."""
    path = Path(path)
    if path.is_file():
        _fsync(path)
        return
    for root, _, files in os.walk(path):
        for name in files:
            _fsync(Path(root) / name)
        fsync_dir(root)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush the folder `path` (its entries) to disk, where the filesystem can."""
    with contextlib.suppress(OSError):  # some filesystems cannot fsync folders
        _fsync(Path(path))


def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


class ExportTransaction:
    """Stage files and folders, then publish them all (see the module docstring).

    Use as a context manager: leaving it without `commit` (an exception) deletes the staging
    folder and leaves the export folder as it was. Call `recover` on the folder first (as
    `export_run` does, before it counts the versions) so a killed export's leftovers go.

    Args:
        out_dir: the export folder (created if missing).
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.staging = Path()
        self.steps: list[dict[str, Any]] = []

    def __enter__(self) -> ExportTransaction:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        prefix = f"{STAGING_PREFIX}{os.getpid()}-"
        self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.out_dir))
        return self

    def __exit__(
        self, *exc_info: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        if exc_info[0] is not None and self.steps and (self.staging / JOURNAL).exists():
            rollback(self.out_dir, self.staging)  # failed half-way through `commit`
        shutil.rmtree(self.staging, ignore_errors=True)
        if exc_info[0] is not None:
            forget_missing_versions(self.out_dir)

    def add(self, source: str, target: str) -> None:
        """Publish ``staging/source`` (a file or folder) as ``out_dir/target`` on `commit`."""
        self.steps.append({"source": source, "target": target, "old": f"old-{len(self.steps)}"})

    def commit(self, overwrite: bool = True, replaceable: tuple[str, ...] = ()) -> None:
        """Publish every added step, in order.

        Args:
            overwrite: replace existing targets. False: a target that appeared meanwhile
                raises `FileExistsError` (after undoing the steps already published), except
                the targets in `replaceable` (export.json and the tflite folder).
        """
        for step in self.steps:
            source = self.staging / step["source"]
            fsync_tree(source)
            step["inode"] = _inode(source)
        write_json_atomically(self.staging / JOURNAL, {"pid": os.getpid(), "steps": self.steps})
        fsync_dir(self.staging)
        kill_point("journal")
        for index, step in enumerate(self.steps):
            source = self.staging / step["source"]
            target = self.out_dir / step["target"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(target):
                if not overwrite and step["target"] not in replaceable:
                    raise FileExistsError(
                        f"{target} appeared while exporting (another export?); nothing was "
                        "replaced."
                    )
                if exchange(source, target):  # new at target, old at source
                    kill_point(f"exchanged-{index}")
                    os.rename(source, self.staging / step["old"])
                else:
                    os.rename(target, self.staging / step["old"])
                    kill_point(f"aside-{index}")
                    os.rename(source, target)
            else:
                os.rename(source, target)
            fsync_dir(target.parent)
            kill_point(f"published-{index}")
        (self.staging / JOURNAL).unlink()
        fsync_dir(self.staging)
        kill_point("committed")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _staging_pid(path: Path) -> int | None:
    text = path.name[len(STAGING_PREFIX) :].split("-", 1)[0]
    return int(text) if text.isdigit() else None


def rollback(out_dir: Path, staging: Path) -> str:
    """Undo a journaled export: "completed" (all targets new: kept) or "rolled back"."""
    try:
        steps = read_json_file(staging / JOURNAL, "it is ignored")["steps"]
    except (ValueError, KeyError, TypeError):
        return "no journal"  # killed before publishing anything
    if all(_inode(out_dir / s["target"]) == s["inode"] for s in steps):
        return "completed"
    for index, step in reversed(list(enumerate(steps))):
        source, target = staging / step["source"], out_dir / step["target"]
        old = staging / step["old"]
        if _inode(target) == step["inode"]:  # the new content is published: take it back
            os.rename(target, staging / f"undone-{index}")
        if os.path.lexists(source) and _inode(source) != step["inode"]:
            os.rename(source, target)  # exchanged: the old content sits at the source
        elif os.path.lexists(old):
            os.rename(old, target)
        fsync_dir(target.parent)
    return "rolled back"


def recover(out_dir: str | os.PathLike) -> dict[str, str]:
    """Finish or undo the exports into `out_dir` whose process is gone; delete their staging
    folders. Returns {staging folder name: what was done}."""
    out_dir = Path(out_dir)
    done = {}
    for path in sorted(out_dir.glob(f"{STAGING_PREFIX}*")):
        pid = _staging_pid(path)
        if not path.is_dir() or path.is_symlink() or pid is None or _pid_alive(pid):
            continue
        done[path.name] = rollback(out_dir, path)
        shutil.rmtree(path, ignore_errors=True)
    if "rolled back" in done.values():
        forget_missing_versions(out_dir)
    return done


def forget_missing_versions(out_dir: Path) -> None:
    """Drop from the folder's manifest the version folders a rollback took back."""
    manifest = ownership.Manifest.read(out_dir, "export")
    if manifest is not None:
        missing = [t for t in manifest.entries["trees"] if not (out_dir / t).exists()]
        manifest.release(*missing)
