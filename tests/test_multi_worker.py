"""Multi-worker training: two `MultiWorkerMirroredStrategy` processes on 127.0.0.1.

Each worker runs tests/multi_worker_main.py (the real `train_and_evaluate`) with its own
TF_CONFIG on free local ports. One worker per process, one CPU device each: 2 replicas.
Every subprocess is bounded by a timeout and killed in a `finally`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_vae.config import Config
from keras_vae.data import make_datasets
from keras_vae.run_reader import load_model
from keras_vae.train import train_and_evaluate

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER = REPO_ROOT / "tests" / "multi_worker_main.py"
LAUNCH_TIMEOUT = 300  # seconds for one launch of the cluster (about 30 s on 2 busy cores)
CONFIG = {
    "model": {"latent_dim": 2, "hidden_units": [16]},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.05},
    "runtime": {"seed": 4, "strategy": "multi_worker"},
}
# The index file: pixel values encode example indices; batches of 8 (see multi_worker_main).
NUM_TRAIN_IDS, NUM_TEST_IDS, IDS_BATCH = 44, 17, 8

pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """Two worker processes of one training run; `kill` leaves nothing running."""

    def __init__(self, tmp: Path, name: str, config: dict, run_dir: Path, extra=()):
        self.logs = [tmp / f"{name}_worker{i}.log" for i in range(2)]
        self.weights = [tmp / f"{name}_worker{i}.npz" for i in range(2)]
        config_path = tmp / f"{name}_config.json"
        config_path.write_text(json.dumps(config))
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
        # The non-chief's temporary output dir lands here, even when it is killed.
        scratch = tmp / f"{name}_tmp"
        scratch.mkdir()
        self.procs = []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), PYTHONPATH=str(REPO_ROOT))
            env["TMPDIR"] = str(scratch)
            command = [sys.executable, str(WORKER), "--config", str(config_path)]
            command += ["--run-dir", str(run_dir), "--weights-out", str(self.weights[index])]
            with open(self.logs[index], "w") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*command, *extra], env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )

    def wait(self, timeout: float = LAUNCH_TIMEOUT) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"a worker did not finish in {timeout} s:\n{self.tail()}")
        return codes

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    def results(self, index: int) -> dict:
        found = {}
        for line in self.logs[index].read_text().splitlines():
            if line.startswith("RESULT "):
                found.update(json.loads(line[len("RESULT ") :]))
        return found

    def epochs_done(self, index: int) -> list[int]:
        lines = self.logs[index].read_text().splitlines()
        return [int(line.split()[1]) for line in lines if line.startswith("EPOCH_DONE ")]

    def tail(self) -> str:
        return "\n".join(log.read_text()[-3000:] for log in self.logs)


@pytest.fixture(scope="module")
def index_file(tmp_path_factory) -> Path:
    """Examples whose two uint8 pixels encode their index: (i % 256, i // 256)."""
    ids = np.arange(NUM_TRAIN_IDS + NUM_TEST_IDS)
    pixels = np.stack([ids % 256, ids // 256], axis=1).astype("uint8")
    path = tmp_path_factory.mktemp("ids") / "ids.npz"
    np.savez(path, x_train=pixels[:NUM_TRAIN_IDS], x_test=pixels[NUM_TRAIN_IDS:])
    return path


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, index_file) -> dict:
    """Two workers train 3 epochs; a single process trains the same config meanwhile."""
    tmp = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(tmp, "run", CONFIG, tmp / "run", extra=["--checks", str(index_file)])
    try:
        single_config = Config.from_dict(
            {**CONFIG, "runtime": {"seed": 4, "strategy": "one_device"}}
        )
        single = train_and_evaluate(single_config, tmp / "single", verbose=0)
        codes = cluster.wait()
    finally:
        cluster.kill()
    assert codes == [0, 0], cluster.tail()
    return {
        "cluster": cluster,
        "run_dir": tmp / "run",
        "single": single,
        "single_dir": tmp / "single",
        "workers": [cluster.results(i) for i in range(2)],
    }


def test_exactly_one_chief(cluster_run):
    assert [w["worker"]["chief"] for w in cluster_run["workers"]] == [True, False]


def test_both_workers_end_with_identical_weights(cluster_run):
    first, second = (np.load(path) for path in cluster_run["cluster"].weights)
    assert first.files == second.files and len(first.files) > 0
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])


def test_reported_elbo_equals_the_single_process_one(cluster_run):
    """Same global batches (DATA sharding keeps them), same noise (drawn for the global batch):
    the 2-worker ELBO must equal the single process' within Monte Carlo error; in fact only
    the all-reduce's summation order differs, so it agrees to float precision (1e-4).
    """
    single = cluster_run["single"]
    vae = load_model(cluster_run["single_dir"])
    _, test_data, _ = make_datasets(Config().data, 64, 4)
    per_example = np.concatenate([vae.elbo_terms(x).elbo.numpy() for x, _ in test_data])
    mc_error = per_example.std(ddof=1) / math.sqrt(len(per_example))
    for worker in cluster_run["workers"]:
        metrics = worker["metrics"]
        assert abs(metrics["test_elbo"] - single["test_elbo"]) < 3 * mc_error
        for key in ("test_elbo", "train_elbo", "test_kl"):
            np.testing.assert_allclose(metrics[key], single[key], rtol=1e-4, err_msg=key)
        np.testing.assert_allclose(metrics["history"]["elbo"], single["history"]["elbo"], rtol=1e-4)
        assert metrics["epochs"] == 3


def test_only_the_chief_writes_the_run_dir(cluster_run):
    files = sorted(p.name for p in cluster_run["run_dir"].iterdir())
    hidden = [f for f in files if f.startswith(".") and f != ".keras-vae-manifest.json"]
    assert "backup" not in files and not hidden  # no temporaries left
    assert {"config.json", "metrics.json", "model.keras"} <= set(files)
    written = json.loads((cluster_run["run_dir"] / "metrics.json").read_text())
    assert written["test_elbo"] == cluster_run["workers"][0]["metrics"]["test_elbo"]


def test_sharding_splits_each_global_batch_without_drops_or_duplicates(cluster_run):
    """At step t the workers hold the two halves of the single-process batch t; each epoch
    uses (N // B) * B distinct training examples; every test example is seen exactly once
    (17 = 8 + 8 + 1: the last batch gives one worker 1 example and the other none).
    """
    first, second = (w["ids"] for w in cluster_run["workers"])
    assert first["global"] == second["global"]
    for split in ("train", "test"):
        batches = first["global"][split]
        assert len(first["local"][split]) == len(second["local"][split]) == len(batches)
        for a, b, whole in zip(first["local"][split], second["local"][split], batches):
            assert a + b == whole
    train = [i for batch in first["global"]["train"] for i in batch]
    assert len(train) == len(set(train)) == (NUM_TRAIN_IDS // IDS_BATCH) * IDS_BATCH
    assert set(train) <= set(range(NUM_TRAIN_IDS))
    test = [i for batch in first["global"]["test"] for i in batch]
    assert sorted(test) == list(range(NUM_TRAIN_IDS, NUM_TRAIN_IDS + NUM_TEST_IDS))


def test_keras_still_needs_the_multi_worker_logs_workaround(cluster_run):
    """keras-team/keras#20585, tensorflow/tensorflow#72388: without `reducible_logs`, Keras
    cannot reduce scalar logs across workers. When this fails, Keras is fixed: remove
    `compat.reducible_logs` (and this test)."""
    for worker in cluster_run["workers"]:
        assert "Invalid reduction dimension 0" in (worker["raw_keras_error"] or "")


def test_workers_that_disagree_are_stopped_with_the_fix(cluster_run):
    """`check_same_on_all_workers` (e.g. the epoch to resume from, with a RUN_DIR not every
    worker can read) raises the same clear error on every worker instead of hanging."""
    for worker in cluster_run["workers"]:
        error = worker["disagreement_error"] or ""
        assert "disagree on the worker index: from 0 to 1" in error
        assert "storage all workers share" in error


def backup_epoch(run_dir: Path) -> int | None:
    """The epoch count in RUN_DIR/backup/state.npz, or None while there is none."""
    try:
        with np.load(run_dir / "backup" / "state.npz") as state:
            return int(json.loads(str(state["metadata"]))["epoch"])
    except (OSError, KeyError, ValueError):
        return None


def test_killed_worker_then_restarted_cluster_resumes_from_the_backup(tmp_path, cluster_run):
    """kill -9 one worker mid-run, stop the other, restart both: they continue from the last
    backed-up epoch (the second launch trains only the remaining epochs), finish at the
    requested count, and end with the very weights of the uninterrupted `cluster_run`."""
    epochs = CONFIG["training"]["epochs"]
    run_dir = tmp_path / "run"
    first = Cluster(tmp_path, "first", CONFIG, run_dir, extra=["--epoch-delay", "1.0"])
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while (backup_epoch(run_dir) or 0) < 1:
            assert time.monotonic() < deadline, first.tail()
            assert all(p.poll() is None for p in first.procs), first.tail()
            time.sleep(0.1)
        os.kill(first.procs[1].pid, signal.SIGKILL)
        first.procs[1].wait(timeout=30)
        if first.procs[0].poll() is None:  # the chief hangs in a collective, or errors out
            os.kill(first.procs[0].pid, signal.SIGKILL)
        chief_code = first.procs[0].wait(timeout=30)
    finally:
        first.kill()
    assert chief_code != 0  # the chief cannot finish without its peer
    resumed_from = backup_epoch(run_dir)
    assert 1 <= resumed_from < epochs
    assert not (run_dir / "metrics.json").exists()

    second = Cluster(tmp_path, "second", CONFIG, run_dir)
    try:
        codes = second.wait()
    finally:
        second.kill()
    assert codes == [0, 0], second.tail()
    for index in range(2):
        assert second.epochs_done(index) == list(range(resumed_from + 1, epochs + 1))
        metrics = second.results(index)["metrics"]
        assert metrics["resumed_from_epoch"] == resumed_from
        assert metrics["epochs"] == epochs
        assert len(metrics["history"]["elbo"]) == epochs
    uninterrupted = np.load(cluster_run["cluster"].weights[0])
    for path in second.weights:
        resumed = np.load(path)
        for name in uninterrupted.files:
            np.testing.assert_array_equal(resumed[name], uninterrupted[name])
    assert not (run_dir / "backup").exists()
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == epochs
