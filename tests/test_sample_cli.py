"""`keras-vae sample` and `keras-vae reconstruct`: PNGs of the documented size, reproducible for a
seed, showing the run's model; bad input gives one line, exit code 2 and writes nothing."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_exit_2_and_unchanged
from PIL import Image

from keras_vae import figures
from keras_vae.cli import main
from keras_vae.run_reader import load_run, load_test_split

SCALE = 4  # 8x8 digits are drawn 4x enlarged


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())))


def test_sample_png_size_and_seed_reproducibility(tiny_run_dir, tmp_path, capsys):
    outs = {name: tmp_path / f"{name}.png" for name in ("a", "b", "other_seed")}
    for name, seed in (("a", 3), ("b", 3), ("other_seed", 4)):
        code, out, err = run_cli(
            capsys,
            "sample",
            str(tiny_run_dir),
            "-n",
            "10",
            "--seed",
            str(seed),
            "--out",
            str(outs[name]),
        )
        assert code == 0, err
    summary = json.loads(out)
    columns = math.ceil(math.sqrt(10))
    width, height = figures.grid_size(math.ceil(10 / columns), columns, (8, 8), SCALE)
    assert (summary["width"], summary["height"]) == (width, height)
    assert summary["num_samples"] == 10 and summary["seed"] == 4
    a = pixels(outs["a"])
    assert a.shape == (height, width) and a.std() > 0
    assert outs["a"].read_bytes() == outs["b"].read_bytes()  # same seed, same bytes
    assert not np.array_equal(a, pixels(outs["other_seed"]))
    # 10 samples fill 10 of the 4 x 3 cells; the last two stay empty
    for cell in (10, 11):
        row, column = divmod(cell, columns)
        top = figures.PAD + row * (8 * SCALE + figures.PAD)
        left = figures.PAD + column * (8 * SCALE + figures.PAD)
        assert (a[top : top + 32, left : left + 32] == figures.BACKGROUND).all()


def test_reconstruct_shows_inputs_above_reconstructions(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "r.png"
    code, stdout, err = run_cli(
        capsys, "reconstruct", str(tiny_run_dir), "--out", str(out), "-n", "12"
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["num_examples"] == 12 and summary["dataset"] == "digits"
    grid = pixels(out)
    assert grid.shape[::-1] == figures.grid_size(4, 10, (8, 8), SCALE)  # 2 blocks x 2 rows
    run = load_run(tiny_run_dir)
    x = load_test_split(run).images[:12]
    expected = figures.reconstruction_grid(x, np.asarray(run.model.reconstruct(x)), (8, 8))
    assert np.abs(grid.astype(int) - expected).max() <= 1  # +-1: float round-off at .5 levels
    inputs_only = figures.reconstruction_grid(x, x, (8, 8))
    rows = 8 * SCALE + figures.PAD
    top_rows = np.r_[0 : rows + 1, 2 * rows : 3 * rows + 1]  # the input rows of both blocks
    np.testing.assert_array_equal(grid[top_rows], inputs_only[top_rows])


def test_reconstruct_uses_at_most_the_held_out_examples(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "all.png"
    code, stdout, err = run_cli(
        capsys, "reconstruct", str(tiny_run_dir), "--out", str(out), "-n", "5000"
    )
    assert code == 0, err
    num_test = json.loads((tiny_run_dir / "metrics.json").read_text())["num_test"]
    assert json.loads(stdout)["num_examples"] == num_test


def test_reconstruct_from_another_dataset_of_the_same_shape(tiny_run_dir, tmp_path, capsys):
    data = tmp_path / "ones.npz"
    np.savez(data, x_train=np.full((4, 8, 8), 255, np.uint8), x_test=np.zeros((3, 8, 8), np.uint8))
    out = tmp_path / "r.png"
    code, stdout, err = run_cli(
        capsys, "reconstruct", str(tiny_run_dir), "--dataset", str(data), "--out", str(out)
    )
    assert code == 0, err
    assert json.loads(stdout)["num_examples"] == 3
    grid = pixels(out)
    assert (grid[figures.PAD : figures.PAD + 32, figures.PAD : figures.PAD + 32] == 0).all()


def _bad_dataset(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.npz"
    if kind == "shape":
        np.savez(
            path, x_train=np.zeros((4, 5, 5), np.float32), x_test=np.zeros((2, 5, 5), np.float32)
        )
    elif kind == "nan":
        x = np.full((2, 8, 8), 0.5, np.float32)
        x[1, 3, 3] = np.nan
        np.savez(path, x_train=x, x_test=x)
    elif kind == "range":
        x = np.full((2, 8, 8), 1.5, np.float32)
        np.savez(path, x_train=x, x_test=x)
    return str(path)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["sample", "{missing}", "--out", "{out}"], "not found"),
        (["sample", "{run}", "-n", "0", "--out", "{out}"], "-n/--num-samples"),
        (["sample", "{run}", "-n", "-3", "--out", "{out}"], "-n/--num-samples"),
        (["sample", "{run}", "-n", "many", "--out", "{out}"], "-n/--num-samples"),
        (["sample", "{run}", "--seed", "-1", "--out", "{out}"], "seed"),
        (["sample", "{run}", "--seed", "4294967296", "--out", "{out}"], "seed=4294967296"),
        (["sample", "{run}", "--seed", str(10**30), "--out", "{out}"], "[0, 4294967295]"),
        (["reconstruct", "{run}", "--seed", "1", "--out", "{out}"], "unrecognized arguments"),
        (["sample", "{run}", "--out", "{tmp}/picture.jpg"], ".png"),
        (["sample", "{run}", "--out", "{tmp}/no/such/folder/s.png"], "does not exist"),
        (["sample", "{run}", "--out", "{tmp}"], "is a folder"),
        (["sample", "{run}"], "--out"),
        (["reconstruct", "{missing}", "--out", "{out}"], "not found"),
        (["reconstruct", "{run}", "-n", "0", "--out", "{out}"], "-n/--num-examples"),
        (["reconstruct", "{run}", "--out", "{tmp}/no/such/r.png"], "does not exist"),
        (["reconstruct", "{run}", "--dataset", "{shape}", "--out", "{out}"], "shape (5, 5)"),
        (["reconstruct", "{run}", "--dataset", "{nan}", "--out", "{out}"], "NaN"),
        (["reconstruct", "{run}", "--dataset", "{range}", "--out", "{out}"], "[0, 1]"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(argv, fragment, tiny_run_dir, tmp_path, capsys):
    values = {
        "run": str(tiny_run_dir),
        "missing": str(tmp_path / "no_run"),
        "out": str(tmp_path / "out.png"),
        "tmp": str(tmp_path),
        **{kind: _bad_dataset(tmp_path, kind) for kind in ("shape", "nan", "range")},
    }
    argv = [a.format(**values) for a in argv]
    assert_exit_2_and_unchanged(argv, [tiny_run_dir, tmp_path], capsys, fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_exits_2(tiny_run_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    argv = ["sample", tiny_run_dir, "--out", locked / "s.png"]
    assert_exit_2_and_unchanged(argv, [locked], capsys, "permission denied")
    assert list(locked.iterdir()) == []


@pytest.mark.slow
def test_sample_command_in_a_fresh_process(tiny_run_dir, tmp_path):
    out = tmp_path / "s.png"
    argv = [sys.executable, "-m", "keras_vae.cli", "sample", str(tiny_run_dir), "-n", "4"]
    result = subprocess.run(
        [*argv, "--seed", "3", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["out"] == str(out)
    # The same seed in this process gives the same picture: z depends only on the seed.
    again = tmp_path / "again.png"
    assert main(["sample", str(tiny_run_dir), "-n", "4", "--seed", "3", "--out", str(again)]) == 0
    assert out.read_bytes() == again.read_bytes()


def test_sample_seed_range_is_trains(tiny_run_dir, tmp_path, capsys):
    """--seed takes 0 to 2**32 - 1, like train; the help says so."""
    out = tmp_path / "s.png"
    code, stdout, err = run_cli(
        capsys, "sample", str(tiny_run_dir), "-n", "1", "--seed", str(2**32 - 1), "--out", str(out)
    )
    assert code == 0, err
    assert json.loads(stdout)["seed"] == 2**32 - 1 and out.is_file()
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "0 to 4294967295" in " ".join(capsys.readouterr().out.split())
