"""The number a user gets: `keras-vae train` itself, paired with PyTorch's example and JAX.

Each round runs, one after the other on the same idle machine:

- ``keras-vae train`` (the CLI, in a subprocess, exactly as a user types it) on the MNIST IDX
  folder, reading ``examples_per_second`` from its ``metrics.json``: the median over the
  epochs after the first of whole epochs, per-epoch validation on the 10,000 test images and
  the progress callbacks included (the backup write of an epoch is counted in the next one);
  and the wall seconds of the whole command (start-up, compilation, final evaluation,
  figures and saving included);
- the PyTorch example's model, loss and input loop (`pytorch_baseline.py`, ``example`` loop:
  PIL image per example + ToTensor + DataLoader), in its own virtualenv;
- a hand-written JAX reference, one jitted `lax.scan` per epoch over device-resident batches
  (`jax_reference.py`), in its own virtualenv (classic model only: XLA's CPU transposed
  convolutions run the conv VAE at 37 examples/s there, which would say nothing of PyTorch).

Cases: the classic 784-400-20 ReLU VAE at batch 128 and 512, the conv VAE (32-64 filters)
at batch 128, and the reproductions' 784-200-200-50 tanh VAE with dynamic binarization at
batch 20 (`--recipe burda2015`'s network and batch; JAX only: PyTorch's example has no such
network), and that network on the IWAE bound with 50 draws per example (the iwae_k50
reproduction's step). Each keras-vae run also gives its first epoch's seconds (tracing and
compilation included), read from its progress line. Rounds are interleaved (keras, torch, jax, then
again), so a change of the background load hits all alike; the JSON keeps every round, and
the summary gives medians over rounds and their ratios.

    python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch==2.13.0 numpy pillow
    python3 -m venv /work/jaxvenv && /work/jaxvenv/bin/pip install jax jaxlib numpy
    python benchmarks/train_job.py --torch /work/torchvenv/bin/python --jax /work/jaxvenv/bin/python

Writes ``benchmarks/results/train_job.json`` (about 20 minutes on 2 cores); ``--cases`` reruns
some cases and keeps the others' results in the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import common  # first: puts the repository on sys.path
import invocation

# torch_examples: None runs no PyTorch example (it has no such network), 0 all 60,000 images.
CASES: dict[str, dict[str, Any]] = {
    "classic_b128": {"model": "classic", "batch_size": 128, "epochs": 4, "torch_examples": 0},
    "classic_b512": {"model": "classic", "batch_size": 512, "epochs": 4, "torch_examples": 0},
    "conv_b128": {"model": "conv", "batch_size": 128, "epochs": 3, "torch_examples": 15000},
    "burda_b20": {"model": "burda", "batch_size": 20, "epochs": 4, "torch_examples": None},
    # the same network on the IWAE bound with 50 draws per example (the iwae_k50 reproduction)
    "iwae_k50_b20": {
        "model": "burda",
        "batch_size": 20,
        "epochs": 3,
        "torch_examples": None,
        "num_samples": 50,
    },
}
MODEL_FLAGS = {
    "classic": ["--hidden-units", "400", "--activation", "relu", "--latent-dim", "20"],
    "conv": ["--architecture", "conv", "--latent-dim", "20"],
    # the reproductions' network and input (recipe burda2015), at its batch of 20
    "burda": [
        *("--hidden-units", "200,200", "--activation", "tanh", "--latent-dim", "50"),
        *("--binarization", "dynamic"),
    ],
}
JAX_MODELS = ("classic", "burda")  # XLA's CPU transposed convolutions: see the docstring
TARGETS = {"vs_pytorch": 2.0, "vs_jax": 1.0}


def keras_vae_train(case: dict, mnist: Path) -> dict:
    """`keras-vae train` as a user runs it; examples/s from metrics.json and the wall time."""
    run_dir = Path(tempfile.mkdtemp(prefix="train-job-"))
    command = [
        sys.executable,
        "-m",
        "keras_vae.cli",
        "train",
        "--dataset",
        str(mnist),
        "--epochs",
        str(case["epochs"]),
        "--batch-size",
        str(case["batch_size"]),
        *MODEL_FLAGS[case["model"]],
        *objective_flags(case),
        "--output",
        str(run_dir / "run"),
        "--verbose",
        "2",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"keras-vae train failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "run" / "metrics.json").read_text())
    # The progress line of epoch 1 ("3000/3000 - 8.1s - ..."): tracing and compilation in it.
    epoch_seconds = [float(s) for s in re.findall(r"^\d+/\d+ - ([\d.]+)s", done.stdout, re.M)]
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "examples_per_second": round(metrics["examples_per_second"]),
        "command_seconds": round(wall, 2),
        "first_epoch_seconds": epoch_seconds[0],
        "later_epoch_seconds": epoch_seconds[1:],
        "test_elbo": round(metrics["test_elbo"], 3),
        "epochs": metrics["epochs"],
        "command": " ".join(["keras-vae", *command[3:-4]]),
    }


def objective_flags(case: dict) -> list[str]:
    """`--objective iwae --num-samples K` for a case with K > 1 draws per example, else none."""
    samples = case.get("num_samples", 1)
    return ["--objective", "iwae", "--num-samples", str(samples)] if samples > 1 else []


def reference(python: str, script: str, case: dict, mnist: Path, extra: list[str]) -> dict:
    """One reference run in its own interpreter; its JSON."""
    out = Path(tempfile.mkdtemp(prefix="reference-")) / "result.json"
    command = [python, str(common.BENCHMARKS_DIR / script), "--data", str(mnist)]
    command += ["--batch-size", str(case["batch_size"]), *extra]
    done = subprocess.run(
        command + ["--out", str(out)] if "pytorch" in script else command,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
    if "pytorch" in script:
        payload = json.loads(out.read_text())
        loop = payload["loops"]["example"]
        return {
            "examples_per_second": loop["examples_per_second_median"],
            "epoch_seconds": loop["epoch_seconds"],
            "torch": payload["machine"]["torch"],
        }
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "examples_per_second": payload["examples_per_second_median"],
        "epoch_seconds": payload["epoch_seconds"],
        "jax": payload["jax"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--torch", default="/work/torchvenv/bin/python")
    parser.add_argument("--jax", default="/work/jaxvenv/bin/python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "train_job.json")
    args, run = invocation.start("train_job", parser, argv, as_text=False)
    mnist = common.shared_data_dir() / "mnist"
    results: dict[str, dict] = {}
    for name in args.cases.split(","):
        case = CASES[name]
        rounds = []
        for index in range(args.rounds if case["model"] != "conv" else max(1, args.rounds - 1)):
            row = {"round": index + 1, "load_average": common.load_average()}
            row["keras_vae_train"] = keras_vae_train(case, mnist)
            if case["torch_examples"] is not None:
                torch_extra = ["--model", case["model"], "--loops", "example", "--epochs", "2"]
                if case["torch_examples"]:
                    torch_extra += ["--examples", str(case["torch_examples"])]
                row["pytorch_example"] = reference(
                    args.torch, "pytorch_baseline.py", case, mnist, torch_extra
                )
            if case["model"] in JAX_MODELS:
                jax_extra = ["--model", case["model"], "--epochs", str(case["epochs"] - 1)]
                jax_extra += ["--num-samples", str(case.get("num_samples", 1))]
                row["jax_scan"] = reference(args.jax, "jax_reference.py", case, mnist, jax_extra)
            rounds.append(row)
            print(name, json.dumps(row), flush=True)
        summary = summarize(rounds)
        results[name] = {**case, "rounds": rounds, "summary": summary}
        print(name, json.dumps(summary), flush=True)
    payload = {"cases": results, "targets": TARGETS, "cpu_count": os.cpu_count()}
    return invocation.finish(run, payload, args.out, merge="cases")  # keeps the other cases


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds of each runner's examples/s, and the ratios of the medians."""

    def median(key: str) -> float | None:
        values = [row[key]["examples_per_second"] for row in rounds if key in row]
        return statistics.median(values) if values else None

    # every round has keras_vae_train: not None
    ours = cast(float, median("keras_vae_train"))
    torch, jax = median("pytorch_example"), median("jax_scan")
    summary = {
        "keras_vae_train": round(ours),
        "command_seconds": statistics.median(
            row["keras_vae_train"]["command_seconds"] for row in rounds
        ),
        "first_epoch_seconds": statistics.median(
            row["keras_vae_train"]["first_epoch_seconds"] for row in rounds
        ),
    }
    if torch is not None:
        summary |= {"pytorch_example": round(torch), "vs_pytorch": round(ours / torch, 2)}
    if jax is not None:
        summary |= {"jax_scan": round(jax), "vs_jax": round(ours / jax, 2)}
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
