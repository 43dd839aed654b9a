"""`keras_vae.folder_lock.FolderLock`: one holder per folder, across processes; no file
created; released by `release`, the ``with`` block's end, or its process dying (even by
SIGKILL). The train job's use of it: tests/test_resume.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from keras_vae.folder_lock import FolderBusyError, FolderLock

HOLDER = textwrap.dedent("""
    import sys, time
    from keras_vae.folder_lock import FolderLock
    lock = FolderLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_one_holder_at_a_time_and_nothing_created(tmp_path):
    with FolderLock(tmp_path) as first:
        assert first.acquire().held and first.acquire().held  # acquiring again: nothing
        with pytest.raises(FolderBusyError, match="is being written by another keras-vae"):
            FolderLock(tmp_path).acquire()
    assert not first.held
    second = FolderLock(tmp_path).acquire()
    second.release()
    second.release()  # again: nothing
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holder_lets_go(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError):
            FolderLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with FolderLock(tmp_path) as lock:
        assert lock.acquire().held


@pytest.mark.parametrize("failing", ["open", "flock"])
def test_where_it_cannot_lock_it_goes_on_unlocked(failing, tmp_path, monkeypatch):
    """A filesystem without flock (ENOLCK on some network mounts) or a folder it may write
    but not read must not stop a train: the lock is then simply not held."""
    import errno
    import fcntl
    import os

    def refuse(*_args, **_kwargs):
        raise OSError(errno.ENOLCK if failing == "flock" else errno.EACCES, "refused")

    if failing == "flock":
        monkeypatch.setattr(fcntl, "flock", refuse)
    else:
        monkeypatch.setattr(os, "open", refuse)
    with FolderLock(tmp_path) as lock:
        assert not lock.acquire().held
