"""`keras-vae evaluate RUN_DIR`: the JSON it prints, what it adds to metrics.json, bad input."""

import json
import math
import os
import sys

import keras
import numpy as np
import pytest
from helpers import (
    assert_exit_2_and_unchanged,
    assert_one_line_error,
    run_command,
    tree_digest,
)

import keras_vae.evaluate as evaluate_module
from keras_vae.cli import main
from keras_vae.evaluate import HEADLINE_KEYS, evaluate_run
from keras_vae.importance import estimate_log_likelihood
from keras_vae.run_reader import load_model, load_run, load_test_split


def run_cli(capsys, *argv):
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_json_and_adds_the_estimate_to_metrics(run_copy, capsys):
    before = json.loads((run_copy / "metrics.json").read_text())
    files_before = set(os.listdir(run_copy))
    code, out, err = run_cli(capsys, run_copy, "--importance-samples", 100, "--verbose", 0)
    assert code == 0, err
    result = json.loads(out)  # stdout is exactly one JSON object
    assert err == ""

    assert result["importance_samples"] == result["test_log_likelihood_k"] == 100
    assert result["num_examples"] == before["num_test"] == 360
    assert result["data_dims"] == 64
    assert result["dataset"] == "digits"
    ll, elbo = result["test_log_likelihood"], result["test_elbo"]
    # Same draws: log-mean-exp >= mean-log, example by example (Jensen).
    assert ll >= elbo and result["test_log_likelihood_minus_elbo"] >= 0
    # Bits per dimension and their standard error are the nats rescaled by D log 2.
    assert result["test_bits_per_dim"] == pytest.approx(-ll / (64 * math.log(2)), rel=1e-12)
    ratio = result["test_bits_per_dim_stderr"] / result["test_log_likelihood_stderr"]
    assert ratio == pytest.approx(1 / (64 * math.log(2)), rel=1e-12)
    # Digits are grey values in [0, 1]: a Bernoulli "likelihood" of them is a cross-entropy.
    assert result["bits_per_dim_kind"] == "bernoulli_on_non_binary_data"
    # The Monte Carlo error of the mean is far below the spread over test examples.
    assert 0 < result["test_log_likelihood_mc_stderr"] < result["test_log_likelihood_stderr"]

    after = json.loads((run_copy / "metrics.json").read_text())
    assert {key: after[key] for key in before} == before  # train's numbers are kept
    assert {key: after[key] for key in HEADLINE_KEYS} == {key: result[key] for key in HEADLINE_KEYS}
    assert after["evaluation"] == {k: v for k, v in result.items() if k != "run_dir"}
    assert set(os.listdir(run_copy)) == files_before  # no temporary file left behind


def test_estimate_is_above_the_elbo_that_train_reported(run_copy):
    """The K=500 estimate exceeds the ELBO of train's own estimator (independent draws).

    train's test ELBO uses one sample per example, so it is noisy: 20 repeats of that
    estimator give its spread, which must cover train's number, and their mean, whose
    standard error is spread / sqrt(20), which the log-likelihood estimate must exceed.
    """
    metrics = json.loads((run_copy / "metrics.json").read_text())
    result = evaluate_run(run_copy, importance_samples=500, write_metrics=False)
    model = load_model(run_copy)
    images = load_test_split(load_run(run_copy, with_model=False)).images
    repeats = [float(model.elbo_terms(images).elbo.numpy().mean()) for _ in range(20)]
    spread = np.std(repeats, ddof=1)
    assert abs(np.mean(repeats) - metrics["test_elbo"]) < 4 * spread
    stderr = spread / math.sqrt(len(repeats))
    assert result["test_log_likelihood"] > np.mean(repeats) + 4 * stderr, (result, repeats)


def test_same_seed_same_numbers(run_copy):
    """Draws depend on the seed only; evaluate_run is estimate_log_likelihood on the test split."""
    model = load_model(run_copy)
    images = load_test_split(load_run(run_copy, with_model=False)).images
    first, again, other = (
        estimate_log_likelihood(model, images, num_samples=30, seed=seed).summary()
        for seed in (4, 4, 5)
    )
    for key in ("test_log_likelihood", "test_elbo", "test_log_likelihood_mc_stderr"):
        assert first[key] == again[key]
        assert first[key] != other[key]
    # Different draws estimate the same number: they agree within their Monte Carlo errors.
    mc = math.hypot(first["test_log_likelihood_mc_stderr"], other["test_log_likelihood_mc_stderr"])
    assert abs(first["test_log_likelihood"] - other["test_log_likelihood"]) < 5 * mc
    result = evaluate_run(run_copy, importance_samples=30, seed=4, write_metrics=False)
    assert {key: result[key] for key in first} == first


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing_run_dir",
        "run_dir_is_a_file",
        "corrupt_model",
        "truncated_model",
        "model_is_a_folder",
        "nan_weight",
        "corrupt_metrics",
        "corrupt_config",
        "mismatched_shape",
        "outside_unit_interval",
        "nan_in_data",
        "zero_k",
        "negative_k",
        "non_integer_k",
        "zero_batch_size",
        "zero_max_examples",
        "seed_2_to_the_32",
        "negative_seed",
        "too_many_importance_samples",
        "too_large_batch_size",
        "too_large_chunk_size",
        "too_large_step",
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case, run_copy, tmp_path, capsys):
    target, extra = run_copy, []
    data = tmp_path / "data"
    data.mkdir()
    good = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    if case == "missing_run_dir":
        target = tmp_path / "no_such_run"
    elif case == "run_dir_is_a_file":
        target = data / "file.txt"
        target.write_text("not a run")
    elif case == "corrupt_model":
        (run_copy / "model.keras").write_bytes(b"\x00garbage")
    elif case == "truncated_model":
        model = run_copy / "model.keras"
        model.write_bytes(model.read_bytes()[:2000])
    elif case == "model_is_a_folder":
        (run_copy / "model.keras").unlink()
        (run_copy / "model.keras").mkdir()
    elif case == "nan_weight":  # a diverged training, or an edit: loads, and gives numbers
        model = keras.saving.load_model(run_copy / "model.keras")
        kernel = model.decoder.weights[0]
        kernel.assign(np.where(np.eye(*kernel.shape) > 0, np.nan, kernel.numpy()))
        model.save(run_copy / "model.keras")
    elif case == "corrupt_metrics":
        (run_copy / "metrics.json").write_text('{"test_elbo": ')
    elif case == "corrupt_config":
        (run_copy / "config.json").write_text("[]")
    elif case == "mismatched_shape":
        npz = write_npz(data / "small.npz", x_train=good[:, :5], x_test=good[:, :5])
        extra = ["--dataset", npz]
    elif case == "outside_unit_interval":
        npz = write_npz(data / "wide.npz", x_train=good, x_test=good * 3)
        extra = ["--dataset", npz]
    elif case == "nan_in_data":
        bad = good.copy()
        bad[2, 3, 4] = np.nan
        extra = ["--dataset", write_npz(data / "nan.npz", x_train=good, x_test=bad)]
    elif case == "zero_k":
        extra = ["--importance-samples", 0]
    elif case == "negative_k":
        extra = ["-k", -5]
    elif case == "non_integer_k":
        extra = ["--importance-samples", "2.5"]
    elif case == "zero_batch_size":
        extra = ["--batch-size", 0]
    elif case == "zero_max_examples":
        extra = ["--max-examples", 0]
    elif case == "seed_2_to_the_32":  # used to wrap around to --seed 0's numbers
        extra = ["--seed", 2**32, "-k", 2]
    elif case == "negative_seed":
        extra = ["--seed", -1, "-k", 2]
    elif case == "too_many_importance_samples":
        extra = ["-k", 1_000_001, "--max-examples", 1]
    elif case == "too_large_batch_size":
        extra = ["--batch-size", 100_001, "-k", 2]
    elif case == "too_large_chunk_size":
        extra = ["--chunk-size", 1_000_001, "-k", 2, "--max-examples", 1]
    elif case == "too_large_step":  # 1e6 samples x 360 examples x 64 dims at once: 92 GB
        extra = ["-k", 1_000_000, "--chunk-size", 1_000_000]
    if case == "mismatched_shape":  # a readable npz whose test split is 5x8, not 8x8
        expected = "(5, 8)"
    else:
        expected = {
            "missing_run_dir": "not found",
            "run_dir_is_a_file": "is a file",
            "corrupt_model": "corrupt",
            "truncated_model": "corrupt",
            "model_is_a_folder": "not a file",
            "nan_weight": "are NaN or infinite, the first in decoder/",
            "corrupt_metrics": "not valid JSON",
            "corrupt_config": "expected an object",
            "outside_unit_interval": "expected [0, 1]",
            "nan_in_data": "NaN",
            "zero_k": "importance_samples=0",
            "negative_k": "importance_samples=-5",
            "non_integer_k": "invalid int value",
            "zero_batch_size": "batch_size=0",
            "zero_max_examples": "max_examples=0",
            "seed_2_to_the_32": "expected an integer in [0, 4294967295]. Received: seed=4294967296",
            "negative_seed": "seed=-1",
            "too_many_importance_samples": "in [1, 1000000]. Received: importance_samples=1000001",
            "too_large_batch_size": "in [1, 100000]. Received: batch_size=100001",
            "too_large_chunk_size": "in [1, 1000000]. Received: chunk_size=1000001",
            "too_large_step": "pass a smaller --chunk-size or --batch-size",
        }[case]
    argv = ["evaluate", target, *extra, "--verbose", 0]
    assert_exit_2_and_unchanged(argv, [run_copy, data], capsys, expected)
    assert not (tmp_path / "no_such_run").exists()


@pytest.mark.slow
def test_console_entry_point_in_a_subprocess(run_copy):
    """The installed command path end to end: JSON on stdout, exit 0; bad k: exit 2."""
    command = [sys.executable, "-m", "keras_vae.cli", "evaluate", str(run_copy)]
    done = run_command([*command, "-k", "20", "--max-examples", "50"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["num_examples"] == 50 and result["test_log_likelihood_k"] == 20
    assert "evaluate: 50/50 examples" in done.stderr  # progress goes to stderr, not stdout
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert "test_log_likelihood" not in metrics  # 50 of 360 examples: not the headline
    entry = metrics["other_evaluations"]["dataset=digits,max_examples=50"]
    assert entry["test_log_likelihood"] == result["test_log_likelihood"]

    before = tree_digest(run_copy)
    bad = run_command([*command, "-k", "0"])
    assert bad.returncode == 2 and bad.stdout == ""
    errors = [line for line in bad.stderr.splitlines() if line.startswith("keras-vae")]
    assert errors == [bad.stderr.splitlines()[-1]] and "importance_samples=0" in errors[0]
    assert tree_digest(run_copy) == before


def test_help_documents_the_limits_and_where_results_go(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("1 to 1,000,000", "1 to 100,000", "0 to 4294967295", "--no-write"):
        assert fragment in text
    assert "other_evaluations" in text and "dataset=mnist,max_examples=100" in text


class EstimateSpy:
    """Stands in for `estimate_log_likelihood`, counting calls (the minutes of work)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return estimate_log_likelihood(*args, **kwargs)


def deny_writes(monkeypatch, *paths):
    """`os.access` says W_OK is denied for `paths` (works as root too, unlike chmod)."""
    real_access = os.access
    denied = {os.path.realpath(p) for p in paths}

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.realpath(path) in denied:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("denied", ["folder", "metrics_file"])
def test_unwritable_run_is_refused_before_computing(denied, run_copy, monkeypatch, capsys):
    spy = EstimateSpy()
    monkeypatch.setattr(evaluate_module, "estimate_log_likelihood", spy)
    deny_writes(monkeypatch, run_copy if denied == "folder" else run_copy / "metrics.json")
    before = tree_digest(run_copy)
    argv = ["evaluate", run_copy, "-k", 2, "--max-examples", 3, "--verbose", 0]
    fragments = ("Cannot write", str(run_copy), "--no-write", "permission")
    line = assert_exit_2_and_unchanged(argv, [run_copy], capsys, *fragments)
    assert "fix the permissions" in line
    assert spy.calls == 0  # refused before computing anything

    # --no-write (write_metrics=False): no check, the result is printed, nothing is written
    code, out, err = run_cli(
        capsys, run_copy, "-k", 2, "--max-examples", 3, "--verbose", 0, "--no-write"
    )
    assert code == 0, err
    assert json.loads(out)["num_examples"] == 3 and spy.calls == 1
    assert tree_digest(run_copy) == before
    evaluate_run(run_copy, importance_samples=2, max_examples=3, write_metrics=False)
    assert spy.calls == 2


def test_a_loaded_run_is_evaluated_into_its_folders_metrics(run_copy):
    """`evaluate_run` takes a run folder's `Run` (`load_run`) as well as its path, and writes
    the same entry into its metrics.json (it used to refuse it as an empty path)."""
    by_path = evaluate_run(run_copy, importance_samples=2, max_examples=3)
    first = json.loads((run_copy / "metrics.json").read_text())["other_evaluations"]
    by_run = evaluate_run(load_run(run_copy), importance_samples=2, max_examples=3)
    second = json.loads((run_copy / "metrics.json").read_text())["other_evaluations"]
    drop = ("seconds",)
    assert {k: v for k, v in by_run.items() if k not in drop} == {
        k: v for k, v in by_path.items() if k not in drop
    }
    assert second.keys() == first.keys() and len(first) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_run_folder_is_refused(run_copy, capsys):
    run_copy.chmod(0o555)
    try:
        code, out, err = run_cli(capsys, run_copy, "-k", 2, "--verbose", 0)
    finally:
        run_copy.chmod(0o755)
    assert code == 2 and out == ""
    assert_one_line_error(err, "Cannot write", str(run_copy))


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_only_the_runs_own_whole_split_sets_the_headline(run_copy, tmp_path, capsys):
    """Another dataset or a subset goes under other_evaluations; the headline stays the run's."""
    code, out, err = run_cli(capsys, run_copy, "-k", 5, "--verbose", 0)
    assert code == 0, err
    headline = json.loads(out)
    assert headline["headline"] is True and headline["evaluated_on"] == "dataset=digits"
    metrics = read_metrics(run_copy)
    expected = {key: metrics[key] for key in (*HEADLINE_KEYS, "evaluation", "dataset")}
    assert expected["evaluation"] == {k: v for k, v in headline.items() if k != "run_dir"}
    assert "other_evaluations" not in metrics

    other = tmp_path / "other.npz"
    rng = np.random.default_rng(0)
    np.savez(other, x_train=rng.random((6, 8, 8)), x_test=rng.random((7, 8, 8)))
    results = {}
    for name, argv in {
        "subset": ["--max-examples", 50],
        "other": ["--dataset", other],
        "other_again": ["--dataset", other, "--seed", 1],  # the latest wins per description
    }.items():
        code, out, err = run_cli(capsys, run_copy, "-k", 5, *argv, "--verbose", 1)
        assert code == 0, err
        results[name] = json.loads(out)
        assert results[name]["headline"] is False
        assert "other_evaluations" in err and "unchanged" in err  # said on stderr
        metrics = read_metrics(run_copy)
        assert {key: metrics[key] for key in expected} == expected  # headline untouched
    assert results["other"]["dataset"] == str(other) and results["other"]["num_examples"] == 7
    assert results["other"]["test_log_likelihood"] != results["other_again"]["test_log_likelihood"]
    assert metrics["other_evaluations"] == {
        "dataset=digits,max_examples=50": {
            k: v for k, v in results["subset"].items() if k != "run_dir"
        },
        f"dataset={other}": {k: v for k, v in results["other_again"].items() if k != "run_dir"},
    }

    # The run's own dataset named explicitly, or a cap above the split's size: the headline.
    for argv in (["--dataset", "digits", "--seed", 2], ["--max-examples", 10_000, "--seed", 3]):
        code, out, err = run_cli(capsys, run_copy, "-k", 5, *argv, "--verbose", 0)
        assert code == 0, err
        result = json.loads(out)
        assert result["headline"] is True and result["num_examples"] == 360
        metrics = read_metrics(run_copy)
        assert metrics["test_log_likelihood"] == result["test_log_likelihood"]
        assert metrics["evaluation"]["seed"] == argv[-1]
        assert len(metrics["other_evaluations"]) == 2
