"""Every JSON file keras-vae reads back goes through `keras_vae.json_files.read_json_file`:
nesting 100,000 deep, a 5,000-digit integer, an oversized file, bytes that are not UTF-8 are
each one line naming the file, exit 2, nothing written; `ServingClient.from_export` raises a
`ValueError` naming export.json (no RecursionError).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from helpers import assert_exit_2_and_unchanged

from keras_vae.json_files import MAX_JSON_DEPTH, JSONFileError, nesting_depth, read_json_file

HOSTILE = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep_object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "huge_integer": '{"seed": ' + "9" * 5000 + "}",
    "not_utf8": b"\xff\xfe{}",
    "fifo": "fifo",
}


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a read that blocks (a FIFO opened for reading) after 60 s instead of hanging."""

    def hung(*_):
        raise TimeoutError("the reader blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def write(path, content) -> None:
    if content == "fifo":  # a reader that opened it blocked until a writer came: a hang
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_the_reader_refuses_hostile_json_naming_the_file(kind, tmp_path):
    path = tmp_path / "metrics.json"
    write(path, HOSTILE[kind])
    with pytest.raises(JSONFileError, match=r"metrics\.json.*; retrain\.$") as raised:
        read_json_file(path, "retrain")
    assert "\n" not in str(raised.value)


def test_only_a_regular_file_is_read(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(JSONFileError, match=r"folder is not a regular file; fix\.$"):
        read_json_file(tmp_path / "folder", "fix")
    with pytest.raises(JSONFileError, match="/dev/null is not a regular file"):
        read_json_file("/dev/null", "fix")


def test_size_and_depth_bounds(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"a": "x" * 100}))
    with pytest.raises(JSONFileError, match="over the 50 allowed"):
        read_json_file(path, "fix", max_bytes=50)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert nesting_depth(nested.read_text()) == MAX_JSON_DEPTH
    read_json_file(nested, "fix")  # the bound itself is fine
    nested.write_text('["[[[[", {"k": "]}"}]')
    assert read_json_file(nested, "fix") == ["[[[[", {"k": "]}"}]


# Which command reads which file of a finished run, and what it must say.
READERS = [
    ("config.json", ["evaluate", "{run}", "-k", "2"]),
    ("metrics.json", ["sample", "{run}", "-n", "2", "--out", "{tmp}/s.png"]),
    ("calibration.json", ["score", "{run}", "--importance-samples", "2", "--out", "{tmp}/s.csv"]),
    (".keras-vae-manifest.json", ["calibrate", "{run}", "--false-positive-rate", "0.1"]),
    ("calibration.json", ["export", "{run}", "--out", "{tmp}/export"]),
]


@pytest.mark.parametrize("kind", ["deep", "huge_integer", "fifo"])
@pytest.mark.parametrize(("name", "argv"), READERS, ids=[f"{n}-{a[0]}" for n, a in READERS])
def test_a_hostile_run_file_is_one_line_and_writes_nothing(
    kind, name, argv, run_copy, tmp_path, capsys
):
    from keras_vae.cli import main

    if name == "calibration.json":
        assert main(["calibrate", str(run_copy), "--false-positive-rate", "0.1"]) == 0
        capsys.readouterr()
    write(run_copy / name, HOSTILE[kind])
    argv = [a.format(run=run_copy, tmp=tmp_path / "out") for a in argv]
    (tmp_path / "out").mkdir()
    assert_exit_2_and_unchanged(argv, [run_copy, tmp_path], capsys, name)


def test_the_client_reads_a_hostile_export_json_as_a_value_error(tmp_path):
    from keras_vae.serving import ServingClient

    write(tmp_path / "export.json", HOSTILE["deep"])
    with pytest.raises(ValueError, match=r"export\.json is nested deeper"):
        ServingClient.from_export(tmp_path)
