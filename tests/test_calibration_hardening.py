"""calibration.json is checked on every read (issue 24, classes 2, 3 and 5): its numbers by
the command line's rules, its ownership by the run's manifest, and before `export` creates
anything. Each refusal: exit code 2, one stderr line, every watched folder byte-identical."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from helpers import assert_exit_2_and_unchanged, tree_digest

from keras_vae.calibration import CALIBRATION_FILE, calibration_record, write_calibration
from keras_vae.ownership import MANIFEST_FILE

# Edited values of calibration.json fields (raw JSON text) that were used as they came.
BAD_FIELDS = [
    ("threshold", "NaN"),
    ("threshold", "Infinity"),
    ("threshold", "-Infinity"),
    ("threshold", "1e999"),
    ("threshold", "1e39"),  # inf in the scorer's float32
    ("threshold", "true"),
    ("threshold", '"-10.5"'),
    ("seed", "-1"),
    ("seed", "4294967296"),
    ("seed", "1.5"),
    ("importance_samples", "0"),
    ("importance_samples", "1.5"),
    ("importance_samples", "1e999"),
    ("importance_samples", "100001"),
    ("importance_samples", '"100"'),
    ("false_positive_rate", "0"),
    ("false_positive_rate", '"0.2"'),
    ("score", '"elbow"'),
    ("anomaly_if", '"above"'),
    ("format_version", "2"),
    ("format_version", "true"),
]


def calibrated_copy(tiny_run_dir, folder: pathlib.Path) -> pathlib.Path:
    """A copy of the tiny run with a calibration.json that keras-vae wrote (K 100, seed 0)."""
    run = pathlib.Path(shutil.copytree(tiny_run_dir, folder / "run"))
    record = calibration_record(np.arange(10.0), "log_likelihood", 0.2, 100, 0, {"dataset": "t"})
    write_calibration(run, record)
    return run


def edit_field(run: pathlib.Path, field: str, raw: str) -> None:
    """Rewrite one field of the run's calibration.json as the raw JSON text `raw`."""
    path = run / CALIBRATION_FILE
    record = json.loads(path.read_text())
    record[field] = "@@"
    path.write_text(json.dumps(record).replace('"@@"', raw))


@pytest.mark.parametrize(("field", "raw"), BAD_FIELDS)
def test_class_2_every_read_checks_the_fields(tiny_run_dir, tmp_path, capsys, field, raw):
    """score --is-anomaly refuses an edited field, naming the file and the fix; the old code
    used NaN, Infinity, true, seed -1 ... as they came (exit 0, or a traceback)."""
    run = calibrated_copy(tiny_run_dir, tmp_path)
    edit_field(run, field, raw)
    out = tmp_path / "out"
    out.mkdir()
    line = assert_exit_2_and_unchanged(
        ["score", run, "--out", out / "s.csv", "--is-anomaly", "--verbose", "0"],
        [tmp_path],
        capsys,
        str(run / CALIBRATION_FILE),
        "keras-vae calibrate",
    )
    assert field in line or "format_version" in line


def test_class_2_export_refuses_a_seed_the_command_line_refuses(tiny_run_dir, tmp_path, capsys):
    """export used to bake seed -1 into the scorer; now it refuses, creating nothing."""
    run = calibrated_copy(tiny_run_dir, tmp_path)
    edit_field(run, "seed", "-1")
    assert_exit_2_and_unchanged(
        ["export", run, "--out", tmp_path / "export"], [tmp_path], capsys, "seed=-1"
    )


def copied_in(tiny_run_dir, tmp_path: pathlib.Path) -> pathlib.Path:
    """A run whose calibration.json was copied from another (calibrated) run."""
    other = calibrated_copy(tiny_run_dir, tmp_path / "other")
    run = pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    shutil.copy(other / CALIBRATION_FILE, run / CALIBRATION_FILE)
    return run


def test_class_3_a_copied_in_calibration_is_not_used(tiny_run_dir, tmp_path, capsys):
    """score --is-anomaly and export refuse a calibration.json the run's manifest does not
    list (the old code scored and exported with it, exit 0)."""
    run = copied_in(tiny_run_dir, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for argv in (
        ["score", run, "--out", out / "s.csv", "--is-anomaly", "--verbose", "0"],
        ["export", run, "--out", tmp_path / "export"],
    ):
        assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "keras-vae did not write it")


def test_class_3_calibrate_leaves_a_users_file_in_a_run_without_manifest(
    tiny_run_dir, tmp_path, capsys
):
    """calibrate used to overwrite a user's calibration.json where the run has no manifest."""
    run = pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    (run / MANIFEST_FILE).unlink()
    (run / CALIBRATION_FILE).write_text('{"mine": true}')
    assert_exit_2_and_unchanged(
        ["calibrate", run, "--false-positive-rate", "0.1", "--verbose", "0"],
        [tmp_path],
        capsys,
        "keras-vae did not write it",
    )


def test_class_5_a_refused_export_leaves_no_folder(tiny_run_dir, tmp_path, capsys):
    """A threshold of NaN used to be refused only by the scorer's builder, after NEW and its
    manifest were created; now it is refused before, and NEW (and NEW's parent) never exist."""
    run = calibrated_copy(tiny_run_dir, tmp_path)
    edit_field(run, "threshold", "NaN")
    assert_exit_2_and_unchanged(
        ["export", run, "--out", tmp_path / "new" / "export"], [tmp_path], capsys, "threshold"
    )
    assert not (tmp_path / "new").exists()


def test_class_5_a_late_refusal_removes_the_folders_it_created(
    tiny_run_dir, tmp_path, capsys, monkeypatch
):
    """Any refusal raised after the export folder was claimed removes the folders this export
    created (manifest included), and leaves an existing folder as it was."""
    from keras_vae.export import scorer

    def refuse(*args, **kwargs):
        raise ValueError("refused late")

    monkeypatch.setattr(scorer, "write_scorer", refuse)
    run = pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    assert_exit_2_and_unchanged(
        ["export", run, "--out", tmp_path / "a" / "b"], [tmp_path], capsys, "refused late"
    )
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    before = tree_digest(existing)
    assert_exit_2_and_unchanged(["export", run, "--out", existing], [run], capsys, "refused late")
    # an existing empty folder becomes ours with a manifest (as before); nothing else is left
    assert set(tree_digest(existing)) - set(before) <= {MANIFEST_FILE}


def test_class_5_a_calibrated_k_above_the_scorer_budget_creates_nothing(
    tiny_run_dir, tmp_path, capsys
):
    """A K read from calibration.json (valid: 100,000) times the default row cap is above the
    scorer's budget: refused before the export folder is made (it was made, then refused)."""
    run = calibrated_copy(tiny_run_dir, tmp_path)
    edit_field(run, "importance_samples", "100000")
    assert_exit_2_and_unchanged(
        ["export", run, "--out", tmp_path / "export"], [tmp_path], capsys, "100000 score samples"
    )


def test_class_3_calibrating_a_run_without_manifest_makes_it_readable(
    tiny_run_dir, tmp_path, capsys
):
    """A run of an older keras-vae (no manifest) gets one listing its files and the new
    calibration.json, so score --is-anomaly then reads the calibration it wrote."""
    from keras_vae.cli import main
    from keras_vae.run_paths import LEGACY_RUN_FILES

    run = pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    (run / MANIFEST_FILE).unlink()
    assert main(["calibrate", str(run), "--false-positive-rate", "0.1", "--verbose", "0"]) == 0
    listed = json.loads((run / MANIFEST_FILE).read_text())["files"]
    assert set(listed) == {*LEGACY_RUN_FILES, CALIBRATION_FILE}
    out = tmp_path / "s.csv"
    argv = ["score", str(run), "--out", str(out), "--is-anomaly", "--verbose", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    assert out.read_text().splitlines()[0].endswith(",is_anomaly")
