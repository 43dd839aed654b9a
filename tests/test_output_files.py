"""Every `--out` (sample, reconstruct, score) by one rule (`keras_vae.atomic.check_output_file`
and `write_output`): a regular or new file is replaced atomically; a symlink is followed (the
target written, the link kept); a FIFO or character device is written into, never replaced;
a folder, socket or block device is refused, as is an input of the command; a full disk is
one line and leaves the previous file as it was.
"""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import stat
import threading
import time

import numpy as np
import pytest
from helpers import assert_exit_2_and_unchanged, tree_digest

from keras_vae import atomic
from keras_vae.cli import main

PNG = b"\x89PNG"


def commands(run, out):
    """The three commands with an --out, each writing `out`."""
    return {
        "sample": ["sample", run, "-n", "4", "--out", out],
        "reconstruct": ["reconstruct", run, "-n", "4", "--out", out],
        "score": ["score", run, "--importance-samples", "2", "--max-examples", "5", "--out", out],
    }


def png_or_csv(name: str) -> str:
    return "out.csv" if name == "score" else "out.png"


@pytest.mark.parametrize("name", ["sample", "reconstruct", "score"])
def test_a_fifo_is_written_into_and_stays_a_fifo(name, tiny_run_dir, tmp_path, capsys):
    fifo = tmp_path / png_or_csv(name)
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert main([str(a) for a in commands(tiny_run_dir, fifo)[name]]) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    data = received[0]
    assert data.startswith(PNG) if name != "score" else data.startswith(b"index,")


def device_node(path: pathlib.Path, minor: int) -> pathlib.Path:
    """A private character device node: the kernel's null (minor 3) or full (7) device, made
    here rather than used at /dev, so that code which replaces the node (the bug this checks)
    damages a temporary file, not the machine's /dev/null. Root only."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make a device node here ({error})")
    return path


@pytest.mark.parametrize("name", ["sample", "score"])
def test_a_null_device_stays_a_device_and_a_full_one_is_one_line(
    name, tiny_run_dir, tmp_path, capsys
):
    null = device_node(tmp_path / "null", 3)
    before = os.stat(null)
    assert main([str(a) for a in commands(tiny_run_dir, null)[name]]) == 0
    after = os.stat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    capsys.readouterr()
    full = device_node(tmp_path / "full", 7)
    before = tree_digest(tiny_run_dir, modes=True)
    assert main([str(a) for a in commands(tiny_run_dir, full)[name]]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after score's progress line
    assert error.startswith(f"keras-vae {name}: error: No space left to write {full}")
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert tree_digest(tiny_run_dir, modes=True) == before


def test_a_symlink_is_followed_and_kept(tiny_run_dir, tmp_path, capsys):
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert main([str(a) for a in commands(tiny_run_dir, link)["sample"]]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes().startswith(PNG)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "made.png")
    assert main([str(a) for a in commands(tiny_run_dir, dangling)["sample"]]) == 0
    assert dangling.is_symlink() and (tmp_path / "made.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("name", ["sample", "reconstruct", "score"])
def test_a_missing_folder_in_the_path_as_written_is_refused(name, tiny_run_dir, tmp_path, capsys):
    """`missing/../out.png` names no file the shell could open (the kernel resolves `missing`
    first); `os.path.realpath` collapses it to `out.png`, which must not be written."""
    out = tmp_path / "missing" / ".." / png_or_csv(name)
    assert_exit_2_and_unchanged(
        commands(tiny_run_dir, out)[name], [tiny_run_dir, tmp_path], capsys, "does not exist"
    )
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["sample", "reconstruct", "score"])
def test_a_socket_is_refused_and_left_alone(name, tiny_run_dir, tmp_path, capsys):
    path = tmp_path / png_or_csv(name)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        assert_exit_2_and_unchanged(
            commands(tiny_run_dir, path)[name], [tiny_run_dir], capsys, "FIFO"
        )
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    finally:
        server.close()


def test_an_input_of_the_command_is_refused(run_copy, tmp_path, capsys):
    data = tmp_path / "data.npz"
    np.savez(data, x_test=np.full((5, 8, 8), 0.5, np.float32))
    argv = commands(run_copy, data)["score"] + ["--dataset", data]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "is an input", "data.npz")
    for owned in ("config.json", "metrics.json", "model.keras", "figures/samples.png"):
        argv = commands(run_copy, run_copy / owned)["score"]
        assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "is an input")
    # a file of its own in the run folder is the user's to write and rewrite
    for _ in range(2):
        assert main([str(a) for a in commands(run_copy, run_copy / "scores.csv")["score"]]) == 0


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "scores.csv"
    path.write_text("previous\n")
    before = tree_digest(tmp_path, modes=True)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError, match=r"No space left to write .*scores\.csv.*write elsewhere"):
        atomic.write_output(path, "new\n")
    assert tree_digest(tmp_path, modes=True) == before


def leftover(folder, target: str, age_seconds: float) -> pathlib.Path:
    """A temporary of `target` as a write killed `age_seconds` ago leaves it."""
    path = folder / f".{target}.k1ll3d{int(age_seconds)}{atomic.TEMPORARY_MARK}"
    path.write_text("half a file")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (["score", "{run}", "--importance-samples", "2", "--out", "{tmp}/s.csv"], "s.csv"),
        (
            ["calibrate", "{run}", "--false-positive-rate", "0.1", "--verbose", "0"],
            "calibration.json",
        ),
        (["evaluate", "{run}", "-k", "2"], "metrics.json"),
    ],
    ids=["score", "calibrate", "evaluate"],
)
def test_the_next_write_removes_what_a_killed_write_left(argv, target, run_copy, tmp_path):
    folder = tmp_path if target == "s.csv" else run_copy
    stale = leftover(folder, target, age_seconds=3600)
    in_flight = leftover(folder, target, age_seconds=0)  # another writer's, still fresh
    users = [folder / f".{target}.bak", folder / f"{target}.keras-vae-tmp"]
    for path in users:
        path.write_text("the user's")
    argv = [a.format(run=run_copy, tmp=tmp_path) for a in argv]
    assert main(argv) == 0
    assert not stale.exists()
    assert in_flight.exists() and all(p.read_text() == "the user's" for p in users)


def test_a_failure_removes_only_the_folders_it_created_and_only_when_empty(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()

    def fail_after(write) -> None:
        undo = atomic.folders_removed_on_failure(kept / "a" / "b", own_files=("ours",))
        with pytest.raises(OSError, match="disk full"), undo:
            (kept / "a" / "b").mkdir(parents=True)
            write(kept / "a" / "b")
            raise OSError("disk full")

    fail_after(lambda folder: (folder / "ours").write_text("ours"))  # only its own file
    assert list(kept.iterdir()) == []
    fail_after(lambda folder: (folder.parent / "theirs").write_text("theirs"))
    assert sorted(p.name for p in kept.rglob("*")) == ["a", "theirs"]  # b removed, a kept
    (kept / "a" / "theirs").unlink()
    (kept / "a").rmdir()
    fail_after(lambda folder: [(folder / n).write_text(n) for n in ("ours", "theirs")])
    assert sorted(p.name for p in (kept / "a" / "b").iterdir()) == ["ours", "theirs"]


def test_the_library_refuses_an_empty_path_and_expands_a_home_one(
    tiny_run_dir, tmp_path, monkeypatch
):
    """What the CLI refuses (tests/test_cli_fuzz.py) the library refuses too, from the
    working folder it would otherwise have written into; ``~`` means HOME everywhere."""
    from keras_vae.config import Config, DataConfig
    from keras_vae.export.exporter import export_run
    from keras_vae.run_reader import load_run
    from keras_vae.run_setup import NEW, prepare

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = load_run(tiny_run_dir)
    before = tree_digest(tmp_path, modes=True)
    calls = {
        "run_dir": lambda value: prepare(value, run.config),
        "out_dir": lambda value: export_run(run, value),
        "folder": lambda value: run.model.save_to_preset(value),
        "out": lambda value: atomic.check_output_file(value, "such as s.png"),
        "data_dir": lambda value: DataConfig(data_dir=value),
    }
    for name, call in calls.items():
        for value in ("", "  "):
            with pytest.raises(ValueError, match=f"`{name}`, expected a non-empty path"):
                call(value)
    assert tree_digest(tmp_path, modes=True) == before
    plan = prepare("~/runs/a", Config())
    assert plan.status == NEW and plan.folder.root == tmp_path / "home" / "runs" / "a"
