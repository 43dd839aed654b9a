"""`keras-vae score` and `keras-vae calibrate` on real runs: the scores detect a digit class
held out of training, a calibrated threshold flags the chosen rate of new normal data, and
bad input changes nothing."""

from __future__ import annotations

import csv
import json
import math
import pathlib
import re

import numpy as np
import pytest
from helpers import assert_exit_2_and_unchanged, train_run
from sklearn.metrics import roc_auc_score

from keras_vae.calibration import CALIBRATION_FILE, read_calibration
from keras_vae.cli import main
from keras_vae.ownership import MANIFEST_FILE

HELD_OUT = 0
TRAIN_IMAGES = 4000
RATE = 0.05


def hanley_mcneil_stderr(auc: float, positives: int, negatives: int) -> float:
    """The standard error of an AUROC (Hanley & McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return math.sqrt(variance)


def _npz(path: pathlib.Path, x_train, x_test, y_train, y_test) -> pathlib.Path:
    np.savez(path, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    return path


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory, shared_data_dir):
    """A short real training run on MNIST digits 1-9 (digit 0 held out of training), and
    npz datasets of (a) the first 2,000 test images, zeros included, (b) and (c) two disjoint
    sets of 1,000 normal (non-zero) test images."""
    from keras_vae.data import load_splits

    splits = load_splits(str(shared_data_dir / "mnist"))
    train, test = splits["train"], splits["test"]
    folder = tmp_path_factory.mktemp("held_out")
    normal_train = train.labels != HELD_OUT
    x_train = train.images[normal_train][:TRAIN_IMAGES]
    y_train = train.labels[normal_train][:TRAIN_IMAGES]
    mixed = slice(0, 2000)
    normal = np.flatnonzero(test.labels != HELD_OUT)
    normal = normal[normal >= 2000]
    sets = {"mixed": np.arange(2000), "normal_a": normal[:1000], "normal_b": normal[1000:2000]}
    data = {
        name: _npz(
            folder / f"{name}.npz",
            x_train[:100],
            test.images[rows],
            y_train[:100],
            test.labels[rows],
        )
        for name, rows in sets.items()
    }
    run_data = _npz(folder / "train.npz", x_train, test.images[mixed], y_train, test.labels[mixed])
    config = {
        "model": {"latent_dim": 20, "hidden_units": [128]},
        "data": {"dataset": str(run_data)},
        "training": {"epochs": 3, "batch_size": 100},
        "runtime": {"seed": 0},
    }
    return train_run(folder, config), data


def cli(*argv) -> int:
    """`keras-vae ARGV` in this process (paths as strings)."""
    return main([str(arg) for arg in argv])


def _read_csv(path: pathlib.Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    parsed = {}
    for key, values in columns.items():
        if key == "is_anomaly":
            assert set(values) <= {"true", "false"}
            parsed[key] = np.array([v == "true" for v in values])
        else:
            parsed[key] = np.array(values, dtype=np.float64)
    return parsed


@pytest.mark.slow
def test_a_digit_held_out_of_training_scores_as_anomalous(held_out_run, tmp_path, capsys):
    run_dir, data = held_out_run
    out = tmp_path / "scores.csv"
    assert cli("score", run_dir, "--dataset", data["mixed"], "--out", out, "--verbose", "0") == 0
    summary = json.loads(capsys.readouterr().out)
    scores = _read_csv(out)
    assert list(scores) == ["index", "label", "elbo", "log_likelihood", "reconstruction", "kl"]
    np.testing.assert_array_equal(scores["index"], np.arange(2000))
    held_out = scores["label"] == HELD_OUT
    positives, negatives = int(held_out.sum()), int((~held_out).sum())
    assert positives > 150
    for name in ("elbo", "log_likelihood", "reconstruction"):
        assert np.median(scores[name][held_out]) < np.median(scores[name][~held_out]), name
    auc = roc_auc_score(held_out, -scores["log_likelihood"])
    stderr = hanley_mcneil_stderr(auc, positives, negatives)
    print(f"\nheld-out digit {HELD_OUT}: AUROC of -log p(x) {auc:.3f} +- {stderr:.3f}")
    assert auc > 0.5 + 5 * stderr, (auc, stderr)
    assert summary["medians"]["log_likelihood"] == pytest.approx(
        np.median(scores["log_likelihood"]), rel=1e-6
    )


@pytest.mark.slow
def test_the_csv_holds_the_packages_scores(held_out_run, tmp_path, capsys):
    from keras_vae.run_reader import load_run, load_test_split

    run_dir, data = held_out_run
    out = tmp_path / "scores.csv"
    argv = ["score", run_dir, "--dataset", data["normal_a"], "--out", out, "--verbose", "0"]
    assert cli(*argv, "-k", "7", "--max-examples", "50") == 0
    capsys.readouterr()
    scores = _read_csv(out)
    run = load_run(run_dir)
    images = load_test_split(run, str(data["normal_a"])).images[:50]
    expected = run.model.score(images, num_samples=7)
    for name in ("elbo", "log_likelihood", "reconstruction", "kl"):
        np.testing.assert_allclose(scores[name], getattr(expected, name), rtol=1e-6, err_msg=name)


@pytest.mark.slow
def test_calibrate_then_score_flags_the_chosen_rate_of_new_normal_data(
    held_out_run, tmp_path, capsys
):
    run_dir, data = held_out_run
    argv = ["calibrate", run_dir, "--false-positive-rate", RATE, "--dataset", data["normal_a"]]
    assert cli(*argv, "--verbose", "0") == 0
    printed = json.loads(capsys.readouterr().out)
    record = read_calibration(run_dir)
    assert record["threshold"] == printed["threshold"]
    assert record["false_positive_rate"] == RATE and record["score"] == "log_likelihood"
    assert record["data"]["dataset"] == str(data["normal_a"]) and record["examples"] == 1000
    assert record["flagged"] == math.floor(RATE * 1000)
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    assert CALIBRATION_FILE in manifest["files"]  # train --overwrite removes it with the run

    out = tmp_path / "scores.csv"
    argv = ["score", run_dir, "--dataset", data["normal_b"], "--out", out, "--is-anomaly"]
    assert cli(*argv, "--verbose", "0") == 0
    summary = json.loads(capsys.readouterr().out)
    scores = _read_csv(out)
    flagged = scores["is_anomaly"]
    np.testing.assert_array_equal(flagged, scores["log_likelihood"] < record["threshold"])
    # the flagged fraction of new normal data: binomial, widened by the threshold's own
    # sampling error on 1,000 calibration examples
    n = flagged.size
    stderr = math.sqrt(RATE * (1 - RATE) * (1 / n + 1 / record["examples"]))
    print(f"\nflagged {flagged.mean():.3f} of new normal data at rate {RATE} (+- {stderr:.3f})")
    assert abs(flagged.mean() - RATE) < 4 * stderr, flagged.mean()
    assert summary["flagged"] == int(flagged.sum())

    mixed = tmp_path / "mixed.csv"
    assert cli("score", run_dir, "--dataset", data["mixed"], "--out", mixed, "--verbose", "0") == 0
    capsys.readouterr()
    mixed_scores = _read_csv(mixed)
    held_out = mixed_scores["label"] == HELD_OUT
    assert mixed_scores["is_anomaly"][held_out].mean() > 3 * RATE  # the held-out digit


def test_the_kl_score_flags_high_values(run_copy, capsys, tmp_path):
    argv = ["calibrate", run_copy, "--false-positive-rate", "0.1", "--score", "kl"]
    assert cli(*argv, "--verbose", "0") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["anomaly_if"] == "above"
    out = tmp_path / "s.csv"
    assert cli("score", run_copy, "--out", out, "--verbose", "0") == 0
    capsys.readouterr()
    scores = _read_csv(out)
    np.testing.assert_array_equal(scores["is_anomaly"], scores["kl"] > record["threshold"])
    assert scores["is_anomaly"].sum() == record["flagged"] == math.floor(0.1 * len(scores["kl"]))


def test_a_loaded_run_scores_as_its_folder_does(run_copy, tmp_path, capsys):
    """`score_run` takes a run folder's `Run` (`load_run`) as well as its path: the same CSV,
    with the folder's calibration (it used to refuse it as an empty path)."""
    from keras_vae.anomaly import score_run
    from keras_vae.run_reader import load_run

    assert cli("calibrate", run_copy, "--false-positive-rate", "0.1", "--verbose", "0") == 0
    capsys.readouterr()
    by_path, by_run = tmp_path / "path.csv", tmp_path / "run.csv"
    score_run(run_copy, by_path, max_examples=20, require_calibration=True)
    score_run(load_run(run_copy), by_run, max_examples=20, require_calibration=True)
    assert by_run.read_bytes() == by_path.read_bytes()
    assert "is_anomaly" in by_run.read_text().splitlines()[0]


@pytest.mark.parametrize("rate", ["0", "1", "-0.1", "1.5", "nan", "inf", "abc"])
def test_a_false_positive_rate_outside_0_1_is_refused(run_copy, capsys, rate):
    assert_exit_2_and_unchanged(
        ["calibrate", run_copy, "--false-positive-rate", rate],
        [run_copy],
        capsys,
        "--false-positive-rate",
        "strictly between 0 and 1",
    )


def test_a_rate_that_flags_no_example_is_refused(run_copy, capsys):
    line = assert_exit_2_and_unchanged(
        ["calibrate", run_copy, "--false-positive-rate", "0.0001"],
        [run_copy],
        capsys,
        "flags fewer than one",
    )
    suggested = float(re.search(r"a rate of at least ([0-9.e-]+) ", line).group(1))
    assert 0 < suggested < 1  # a rate the command line accepts


@pytest.mark.parametrize("examples", [1, 2, 3, 7, 101, 10007])
def test_the_suggested_rate_is_valid_and_flags_one(examples):
    from keras_vae.calibration import CalibrationError, check_rate_flags_one, smallest_rate

    if examples == 1:  # no rate in (0, 1) flags one of one example
        with pytest.raises(CalibrationError, match="more held-out data .at least 2"):
            check_rate_flags_one(0.5, 1)
        return
    rate = smallest_rate(examples)
    assert 0 < rate < 1 and check_rate_flags_one(rate, examples) == 1


def test_scoring_data_of_the_wrong_shape_is_refused(run_copy, tmp_path, capsys):
    other = _npz(
        tmp_path / "other.npz",
        np.zeros((4, 5, 5), np.uint8),
        np.zeros((4, 5, 5), np.uint8),
        np.zeros(4, np.int64),
        np.zeros(4, np.int64),
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for command in (
        ["score", run_copy, "--dataset", other, "--out", out_dir / "s.csv"],
        ["calibrate", run_copy, "--dataset", other, "--false-positive-rate", "0.1"],
    ):
        assert_exit_2_and_unchanged(command, [run_copy, out_dir], capsys, "shape")


def test_is_anomaly_on_an_uncalibrated_run_is_refused(run_copy, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "s.csv").write_text("mine\n")  # an existing file stays as it was
    assert_exit_2_and_unchanged(
        ["score", run_copy, "--out", out_dir / "s.csv", "--is-anomaly"],
        [run_copy, out_dir],
        capsys,
        "no calibration",
        "keras-vae calibrate",
    )


def test_is_anomaly_with_another_k_than_the_calibration_is_refused(run_copy, tmp_path, capsys):
    assert cli("calibrate", run_copy, "--false-positive-rate", "0.1", "--verbose", "0") == 0
    capsys.readouterr()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert_exit_2_and_unchanged(
        ["score", run_copy, "--out", out_dir / "s.csv", "-k", "7", "--is-anomaly"],
        [run_copy, out_dir],
        capsys,
        "calibrated with --importance-samples 100",
    )


def test_a_calibration_file_keras_vae_did_not_write_is_left_alone(run_copy, capsys):
    (run_copy / CALIBRATION_FILE).write_text('{"mine": true}')
    assert_exit_2_and_unchanged(
        ["calibrate", run_copy, "--false-positive-rate", "0.1"],
        [run_copy],
        capsys,
        "keras-vae did not write it",
    )


@pytest.mark.parametrize(
    "flags",
    [["-k", "0"], ["-k", "100001"], ["--seed", "-1"], ["--max-examples", "0"]],
)
def test_bad_counts_are_refused_before_anything_is_written(run_copy, tmp_path, capsys, flags):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert_exit_2_and_unchanged(
        ["score", run_copy, "--out", out_dir / "s.csv", *flags], [run_copy, out_dir], capsys
    )
    assert_exit_2_and_unchanged(
        ["calibrate", run_copy, "--false-positive-rate", "0.1", *flags], [run_copy], capsys
    )
