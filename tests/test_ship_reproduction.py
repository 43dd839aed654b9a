"""benchmarks/ship_reproduction.py ships a finished, evaluated reproduction row as a preset, and
refuses (one line, exit 2, nothing written) a row that is unfinished, unevaluated, or misses
its target or the row it must beat; tiny rows on digits, trained by the real commands."""

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from keras_vae.model import VAE
from keras_vae.presets import SHIPPED, load_preset
from keras_vae.run_paths import RunFolder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import reproduction_rows as rows
    import reproduction_status as status
    import ship_reproduction as ship
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

TINY = "--epochs 3 --hidden-units 16 --latent-dim 4 --batch-size 64 --no-jit-compile"
K = 50


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> rows.Plan:
    """Rows vae and iwae_k5 trained to their end on digits and evaluated with k = K."""
    output = tmp_path_factory.mktemp("reproductions")
    plan = rows.Plan(
        dataset="digits", train_flags=tuple(TINY.split()), output_dir=str(output),
        importance_samples=K,
    )  # fmt: skip
    for row in (rows.ROWS["vae"], rows.ROWS["iwae_k5"]):
        for command in (plan.train_command(row), plan.evaluate_command(row)):
            subprocess.run(
                [sys.executable, "-m", "keras_vae.cli", *command[1:]], check=True, cwd=ROOT,
                capture_output=True,
            )  # fmt: skip
    return plan


@pytest.fixture
def at_root(monkeypatch) -> None:
    """main() moves to the repository's root (the rows' paths are relative to it); restored."""
    monkeypatch.chdir(ROOT)


def metrics_of(plan: rows.Plan, name: str) -> dict:
    return json.loads((Path(plan.run_dir(rows.ROWS[name])) / "metrics.json").read_text())


def refused(capsys, argv: list[str], *words: str) -> None:
    """`argv` is refused: exit 2, one line on stderr holding `words`."""
    assert ship.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(word in err for word in words), err


def test_a_finished_row_ships_with_its_numbers_and_command(plan, tmp_path, capsys, at_root):
    out = tmp_path / "preset"
    assert ship.main(["vae", "--out", str(out), *plan.flags()]) == 0
    metrics = metrics_of(plan, "vae")
    preset = load_preset(out)
    metadata = preset.metadata
    assert metadata["command"] == shlex.join(plan.train_command(rows.ROWS["vae"]))
    for key in ("test_log_likelihood", "test_log_likelihood_stderr", "test_log_likelihood_k"):
        assert metadata["run_metrics"][key] == metrics[key]
    nll, stderr = -metrics["test_log_likelihood"], metrics["test_log_likelihood_stderr"]
    assert metadata["description"] == (
        f"VAE, dynamic MNIST (64-16-4 tanh MLPs): 3 epochs of `keras-vae train --recipe "
        f"burda2015`; test NLL {nll:.2f} +- {stderr:.2f} nats (k = {K}, all "
        f"{metrics['num_test']:,} test images; published 86.76, Burda et al. 2015, Table 1)"
    )
    assert metadata["data"]["dataset"] == "digits"  # a --dataset plan keeps the run's own
    assert metadata["measured"]["examples"] == min(500, metrics["num_test"])
    assert isinstance(preset.model, VAE)
    assert f"shipped row 'vae' as {out}" in capsys.readouterr().out


def test_a_row_that_does_not_beat_its_baseline_is_refused_unless_asked(
    plan, tmp_path, capsys, at_root
):
    iwae = Path(plan.run_dir(rows.ROWS["iwae_k5"])) / "metrics.json"
    kept = iwae.read_text()
    worse = {**json.loads(kept)}
    worse["test_log_likelihood"] = metrics_of(plan, "vae")["test_log_likelihood"] - 0.01
    iwae.write_text(json.dumps(worse))
    try:
        out = tmp_path / "preset"
        refused(capsys, ["iwae_k5", "--out", str(out), *plan.flags()], "not below row 'vae'")
        assert not out.exists()
        argv = ["iwae_k5", "--out", str(out), "--even-if-missed", *plan.flags()]
        assert ship.main(argv) == 0
        assert load_preset(out).metadata["run_metrics"]["test_log_likelihood_k"] == K
    finally:
        iwae.write_text(kept)


def test_unfinished_unevaluated_or_foreign_targets_are_refused(plan, tmp_path, capsys, at_root):
    out = tmp_path / "preset"
    # iwae_k50 never ran; vae evaluated with another K does not count.
    refused(capsys, ["iwae_k50", "--out", str(out), *plan.flags()], "has not finished")
    other_k = dataclasses.replace(plan, importance_samples=100)
    refused(capsys, ["vae", "--out", str(out), *other_k.flags()], "k = 100")
    assert not out.exists()
    # A folder keras-vae did not write is left as it was.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused(capsys, ["vae", "--out", str(foreign), *plan.flags()], str(foreign))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_every_evaluated_row_of_the_repository_ships_as_its_preset():
    """benchmarks/reproductions' evaluated rows, each shipped with its own train command and
    evaluation: a finished row cannot be left unshipped, nor its preset be another run's."""
    plan, shipped = rows.Plan(), []
    for row in rows.ROWS.values():
        metrics = status.finished_metrics(RunFolder(ROOT / plan.run_dir(row)))
        if status.is_evaluated(metrics, plan.importance_samples):
            metadata = json.loads((SHIPPED / row.preset / "metadata.json").read_text())
            assert metadata["command"] == shlex.join(plan.train_command(row))
            assert metadata["run_metrics"]["test_log_likelihood"] == metrics["test_log_likelihood"]
            assert metadata["epochs"] == metrics["epochs"]
            shipped.append(row.name)
    assert {"vae", "vampprior"} <= set(shipped)
