"""benchmarks/reproduce_nll.py drives the real `keras-vae train` and `evaluate` commands on
tiny rows (digits, 16 hidden units): stopped mid-run, a row keeps a resumable backup and the
status says its epoch and ETA; the next invocation resumes it to the end and evaluates it."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_vae.resume import read_progress
from keras_vae.run_paths import RunFolder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import report_papers
    import reproduce_nll as driver
    import reproduction_status as status
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

pytestmark = pytest.mark.slow  # starts the real commands
EPOCHS = 30  # 0.05-0.15 s each: the stop at epoch 2 lands mid-run
TINY = f"--epochs {EPOCHS} --hidden-units 16 --latent-dim 4 --batch-size 64 --no-jit-compile"
K = 100


def plan_for(tmp_path: Path) -> driver.Plan:
    """The `vae` row's plan on digits, at the normal priority, everything under `tmp_path`."""
    return driver.Plan(
        dataset="digits",
        train_flags=tuple(TINY.split()),
        output_dir=str(tmp_path / "reproductions"),
        importance_samples=K,
        nice=0,
        results=str(tmp_path / "results"),
        log_dir=str(tmp_path / "logs"),
    )


def driver_args(tmp_path: Path, *more: str) -> list[str]:
    return ["--rows", "vae", *plan_for(tmp_path).flags(), *more]


def results_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results" / "reproduce_nll.json").read_text())


def stop_at_epoch(driver_process: subprocess.Popen, folder: RunFolder, epoch: int) -> None:
    """Once the run in `folder` has backed up `epoch` epochs, pause its trainer (SIGSTOP, as a
    sitting does to benchmark), then end the sitting: SIGTERM to the driver."""
    deadline, trainer = time.monotonic() + 120, None
    while time.monotonic() < deadline and driver_process.poll() is None:
        if trainer is None:  # found first, so that the pause follows the epoch at once
            trainer = status.trainers().get(folder.root.resolve())
        elif folder.has_backup() and read_progress(folder.backup_state)["epoch"] >= epoch:
            os.kill(trainer, signal.SIGSTOP)
            break
        time.sleep(0.01)
    driver_process.terminate()


def test_an_interrupted_row_resumes_to_the_end_then_is_evaluated(tmp_path, monkeypatch, capsys):
    # The script, as a user runs it from the repository's root, stopped mid-run.
    script = [sys.executable, "benchmarks/reproduce_nll.py", *driver_args(tmp_path)]
    sitting = subprocess.Popen(script, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = RunFolder(tmp_path / "reproductions" / "vae")
    stop_at_epoch(sitting, folder, 2)
    _, err = sitting.communicate(timeout=120)
    assert sitting.returncode == 0, err.decode()[-2000:]

    # The backup of the last completed epoch, no outputs, no process left; the status says so.
    progress = read_progress(folder.backup_state)
    epoch = progress["epoch"]
    assert 2 <= epoch < EPOCHS and not folder.metrics.exists()
    assert folder.root.resolve() not in status.trainers()
    row = results_of(tmp_path)["rows"]["vae"]
    assert (row["state"], row["epoch"], row["epochs"]) == ("stopped: resumable", epoch, EPOCHS)
    per_epoch = statistics.median(progress["epoch_seconds"][1:][-status.SPEED_WINDOW :])
    assert row["eta_seconds"] == round((EPOCHS - epoch) * per_epoch)
    assert row["this_invocation"] == (
        f"trained epochs 0 -> {epoch}; stopped: the driver got SIGTERM (resumable)"
    )
    assert "test_nll" not in row  # never an NLL before the run's end
    page = (tmp_path / "reproductions" / "README.md").read_text()
    assert f"| `vae` | stopped: resumable | {epoch} of {EPOCHS} |" in page
    assert f"| {status.duration(row['eta_seconds'])} |" in page
    assert f"keras-vae train --recipe burda2015 {TINY} --dataset digits" in page

    # The next invocation reruns the same command, which resumes the row; then evaluates it.
    monkeypatch.chdir(ROOT)  # main() moves to the repository's root; restored after
    assert driver.main(driver_args(tmp_path, "--budget-minutes", "10")) == 0
    assert folder.is_finished()
    metrics = json.loads(folder.metrics.read_text())
    assert (metrics["epochs"], metrics["resumed_from_epoch"]) == (EPOCHS, epoch)
    assert metrics["test_log_likelihood_k"] == K
    row = results_of(tmp_path)["rows"]["vae"]
    assert (row["state"], row["epoch"], row["eta_seconds"]) == ("evaluated", EPOCHS, 0)
    assert row["test_nll"] == -metrics["test_log_likelihood"]
    assert row["test_examples"] == metrics["num_test"]
    assert row["this_invocation"] == f"trained epochs {epoch} -> {EPOCHS}: finished; evaluated"
    nll = f"{row['test_nll']:.2f} ± {row['test_nll_stderr']:.2f}"
    assert nll in capsys.readouterr().out  # the table it prints
    assert nll in (tmp_path / "reproductions" / "README.md").read_text()
    section = report_papers.nll(results_of(tmp_path))
    assert f"| VAE, dynamic MNIST (`vae`) | burda2015 | evaluated | {EPOCHS} of {EPOCHS} |" in (
        section
    )
    assert nll in section and row["command"] in section
    assert (tmp_path / "results" / "reproduce_nll.png").stat().st_size > 0


def test_a_spent_budget_stops_the_commands(tmp_path):
    plan = plan_for(tmp_path)
    began = time.monotonic()
    outcomes = driver.Sitting(plan, [driver.ROWS["iaf"]], budget_minutes=0.03).run()
    assert time.monotonic() - began < 2 + driver.GRACE_SECONDS
    assert outcomes == {"iaf": "trained epochs 0 -> 0; stopped: the budget was spent (resumable)"}
    assert (tmp_path / "reproductions" / "iaf").resolve() not in status.trainers()


def test_a_row_another_process_trains_is_left_alone(tmp_path):
    plan = plan_for(tmp_path)
    fake = tmp_path / "keras-vae"  # looks like `keras-vae train --output FOLDER` in /proc
    fake.write_text("import time\ntime.sleep(60)\n")
    output = plan.run_dir(driver.ROWS["vae"])
    other = subprocess.Popen([sys.executable, str(fake), "train", "--output", output])
    try:
        # /proc/PID/cmdline reads empty for a moment after Popen returns: wait until the
        # process shows its command line, as a trainer started earlier would.
        deadline = time.monotonic() + 30
        while Path(output).resolve() not in status.trainers() and time.monotonic() < deadline:
            time.sleep(0.05)
        outcomes = driver.Sitting(plan, [driver.ROWS["vae"]], budget_minutes=1).run()
        assert outcomes == {"vae": f"left alone: process {other.pid} trains it"}
        entry, _ = status.read_row(driver.ROWS["vae"], plan, status.trainers())
        assert (entry["state"], entry["pid"]) == ("training", other.pid)
    finally:
        other.kill()
        other.wait()
    assert not Path(output).exists()  # nothing written into its folder


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning two rows needs two CPUs",
)
def test_rows_side_by_side_are_each_pinned_to_their_own_cpus(tmp_path, monkeypatch):
    """`--parallel 2`: each command runs on its own half of the CPUs (what the fake command,
    standing in for keras-vae, reads from the OS); the driver itself stays unpinned."""
    fake = tmp_path / "fake_keras_vae.py"
    fake.write_text(
        "import json, os, sys, time\n"
        "out = sys.argv[sys.argv.index('--output') + 1]\n"
        "open(out + '.cpus', 'w').write(json.dumps(sorted(os.sched_getaffinity(0))))\n"
        "time.sleep(0.5)\n"
    )
    monkeypatch.setattr(driver, "keras_vae_executable", lambda: [sys.executable, str(fake)])
    plan = plan_for(tmp_path)
    (tmp_path / "reproductions").mkdir()
    rows = [driver.ROWS["vae"], driver.ROWS["iaf"]]
    before = os.sched_getaffinity(0)
    driver.Sitting(plan, rows, budget_minutes=1, parallel=2).run()
    pinned = [json.loads(Path(plan.run_dir(row) + ".cpus").read_text()) for row in rows]
    assert pinned == [list(cpus) for cpus in driver.cpu_slots(2)]
    assert pinned[0] and pinned[1] and not set(pinned[0]) & set(pinned[1])
    assert os.sched_getaffinity(0) == before
