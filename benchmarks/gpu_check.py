"""The GPU check: what a lent GPU must confirm, in one run of a few minutes, as one JSON file.

Sections (each on the path users run):

- ``train``: `keras-vae train`'s job (`train_and_evaluate`) for the classic 784-400-20 MLP and
  the conv VAE, with XLA ("auto" is on with a GPU) in float32, mixed bfloat16 and mixed
  float16: examples/s from metrics.json, the test ELBO, the wall seconds;
- ``mirrored``: plain SGD with injected noise on one device vs `MirroredStrategy` over two
  logical GPUs carved out of the one GPU (two logical CPUs in ``--smoke``): the max absolute
  weight difference (the exactness of the global-batch loss scaling) and the step counts;
- ``evaluate``: the importance-weighted log-likelihood, K = 5000 on the 10,000 MNIST test
  images (`keras_vae.evaluate.evaluate_run`), with its time;
- ``export``: `keras_vae.export.export_run` of the GPU-trained classic run with ``--tflite``,
  which reloads every SavedModel signature and LiteRT file and compares it with Keras
  (it raises past the tolerance); the JSON keeps the max errors.

    bash benchmarks/gpu_check.sh [OUT_DIR]          # on a GPU machine, about 5 minutes
    bash benchmarks/gpu_check.sh --smoke [OUT_DIR]  # on CPU: tiny sizes, every section (CI)

Writes ``OUT_DIR/gpu_check.json`` (OUT_DIR: the argument, else $OUT, else benchmarks/results).
`REQUIRED_KEYS` lists what the file always holds; a failing section records its error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common  # first: puts the repository on sys.path
import invocation

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

REQUIRED_KEYS = ("mode", "device", "train", "mirrored", "evaluate", "export", "seconds")
PRECISIONS = ("none", "bfloat16", "float16")  # `--mixed-precision` values
MODELS = {
    "classic": {"hidden_units": [400], "activation": "relu", "latent_dim": 20},
    "conv": {"architecture": "conv", "latent_dim": 20},
}


def sizes(smoke: bool) -> dict:
    """The data, epochs, batch size and K of every section: tiny ones with `smoke`."""
    if smoke:  # the bundled digits: no data files, seconds per section; no XLA compiles
        return {
            "dataset": "digits",
            "epochs": 2,
            "batch_size": 64,
            "k": 20,
            "examples": 50,
            "jit_compile": False,
            "smoke": True,
        }
    mnist = str(common.shared_data_dir() / "mnist")
    return {"dataset": mnist, "epochs": 3, "batch_size": 128, "k": 5000, "examples": None}


# --smoke (on CPU, in the test suite) trains two of the six cases: both models and both code
# paths of the precision policy; the GPU check trains all six.
SMOKE_CASES = (("classic", "none"), ("conv", "bfloat16"))


def train_cases(smoke: bool) -> list[tuple[str, str]]:
    """(model, precision) pairs the train section runs."""
    if smoke:
        return list(SMOKE_CASES)
    return [(model, precision) for model in MODELS for precision in PRECISIONS]


def train_section(size: dict, root: Path) -> dict:
    """`train_and_evaluate` of each (model, precision) case under `root`: rate, ELBO, time."""
    from keras_vae.config import Config
    from keras_vae.train import train_and_evaluate

    results = {}
    for model, precision in train_cases(size.get("smoke", False)):
        flags = MODELS[model]
        config = Config.from_dict(
            {
                "data": {"dataset": size["dataset"]},
                "model": flags,
                "training": {
                    "epochs": size["epochs"],
                    "batch_size": size["batch_size"],
                    "jit_compile": size.get("jit_compile", "auto"),
                },
                "runtime": {"mixed_precision": precision},
            }
        )
        run_dir = root / f"{model}-{precision}"
        start = time.perf_counter()
        metrics = train_and_evaluate(config, run_dir, verbose=0)
        results[f"{model}/{precision}"] = {
            "examples_per_second": round(metrics["examples_per_second"]),
            "test_elbo": round(metrics["test_elbo"], 3),
            "seconds": round(time.perf_counter() - start, 2),
            "run_dir": str(run_dir),
        }
        print("train", model, precision, results[f"{model}/{precision}"], flush=True)
    return results


def mirrored_section(smoke: bool) -> dict:
    """In a fresh process: logical devices must be set before TensorFlow starts."""
    command = [sys.executable, __file__, "--mirrored-child"] + (["--smoke"] if smoke else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"mirrored child failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def mirrored_child(smoke: bool) -> dict:
    """One device vs two mirrored logical devices on the same SGD steps: weight differences."""
    import tensorflow as tf

    kind = "CPU" if smoke else "GPU"
    physical = tf.config.list_physical_devices(kind)[0]
    logical = tf.config.LogicalDeviceConfiguration
    limit = None if smoke else 4096
    tf.config.set_logical_device_configuration(
        physical, [logical(memory_limit=limit), logical(memory_limit=limit)]
    )
    import keras
    import numpy as np

    from keras_vae.model import VAE

    devices = [d.name for d in tf.config.list_logical_devices(kind)][:2]
    rng = np.random.default_rng(0)
    x = (rng.random((256, 784)) < 0.3).astype("float32")
    noise = rng.standard_normal((256, 1, 20)).astype("float32")
    spec: dict[str, Any] = dict(data_shape=(784,), latent_dim=20, hidden_units=(64,), seed=1)
    initial = VAE(**spec).get_weights()

    def train(strategy: tf.distribute.Strategy) -> tuple[list[np.ndarray], int]:
        with strategy.scope():
            vae = VAE(**spec)
            # A small step: with SGD(0.05) on 784 summed pixels, training is unstable enough
            # to amplify float rounding (per-replica matmul blocking) to 1e-3-1 in 16 steps.
            vae.compile(optimizer=keras.optimizers.SGD(1e-3), steps_per_execution=1)
        vae.set_weights(initial)
        data = tf.data.Dataset.from_tensor_slices({"x": x, "noise": noise}).batch(32, True)
        vae.fit(data, epochs=2, verbose=0)
        return vae.get_weights(), int(vae.optimizer.iterations.numpy())

    one, one_steps = train(tf.distribute.OneDeviceStrategy(devices[0]))
    two, two_steps = train(tf.distribute.MirroredStrategy(devices))
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(one, initial))
    return {
        "devices": devices,
        "steps_one_replica": one_steps,
        "steps_two_replicas": two_steps,
        "max_abs_weight_difference": difference,
        "max_abs_weight_change": moved,
        "exact_within_1e-5": difference < 1e-5,
    }


def evaluate_section(size: dict, run_dir: str) -> dict:
    """`evaluate_run` of the run at `run_dir` with K importance samples, and its time."""
    from keras_vae.evaluate import evaluate_run

    start = time.perf_counter()
    result = evaluate_run(
        run_dir, importance_samples=size["k"], max_examples=size["examples"], write_metrics=False
    )
    return {
        "importance_samples": size["k"],
        "examples": result.get("num_examples", size["examples"]),
        "test_log_likelihood": result["test_log_likelihood"],
        "seconds": round(time.perf_counter() - start, 2),
    }


def export_section(run_dir: str, root: Path) -> dict:
    """`export_run` of `run_dir` with LiteRT: the max errors of every exported model."""
    from keras_vae.export.exporter import export_run

    start = time.perf_counter()
    record = export_run(run_dir, root / "export", tflite=True)
    tflite = record.get("tflite") or {}
    return {
        "version": record["version"],
        "max_abs_error": {name: m["max_abs_error"] for name, m in record["models"].items()},
        "tflite": {k: v for k, v in tflite.items() if k not in ("path",)},
        "seconds": round(time.perf_counter() - start, 2),
    }


def run_section(name: str, function: Callable[..., dict], *args: object) -> dict:
    """`function(*args)`, or the error it raised as ``{"error": ...}``."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - one failing section must not hide the others
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {error}"}


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("out_dir", nargs="?", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs on CPU")
    parser.add_argument("--mirrored-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mirrored_child:
        print("RESULT " + json.dumps(mirrored_child(args.smoke)), flush=True)
        return 0
    out_dir = Path(args.out_dir or os.environ.get("OUT") or common.RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    size = sizes(args.smoke)
    import tensorflow as tf

    results: dict = {
        "mode": "smoke" if args.smoke else "full",
        "device": {
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "details": [
                tf.config.experimental.get_device_details(d)
                for d in tf.config.list_physical_devices("GPU")
            ],
        },
        "sizes": size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["train"] = run_section("train", train_section, size, root)
        classic = results["train"].get("classic/none", {}).get("run_dir")
        results["mirrored"] = run_section("mirrored", mirrored_section, args.smoke)
        if classic:
            results["evaluate"] = run_section("evaluate", evaluate_section, size, classic)
            results["export"] = run_section("export", export_section, classic, root)
        else:
            results["evaluate"] = results["export"] = {"error": "no trained classic run"}
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["machine"] = common.machine_info()
    path = out_dir / "gpu_check.json"
    common.write_json_atomically(path, results)
    print(f"wrote {path}")
    sections = [results.get(key) for key in REQUIRED_KEYS]
    return 1 if any(isinstance(s, dict) and "error" in s for s in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
