"""Training throughput of `VAE.fit` on MNIST, against this machine's matrix-multiply rate.

Models (Bernoulli likelihood, analytic KL, latent 20, MNIST 28x28 grey levels in [0, 1]):

- ``classic``: 784-400-20 ReLU, Adam 1e-3 (the PyTorch/Keras example VAE);
- ``paper``: 784-500-20 tanh, Adagrad 0.01 (Kingma & Welling's MNIST MLP);
- ``conv``: two stride-2 3x3 conv blocks (32, 64 filters) and their transposes, Adam 1e-3.

Each case (model, batch size, XLA on/off, steps per execution) is built the way `keras-vae
train` builds it (`keras_vae.train.build_model`, `keras_vae.data.make_datasets`) and trained
with `fit` for one warm-up round and then ``--epochs`` timed rounds of one epoch (a quarter
epoch for the slow conv model). The cases take turns round by round, so a change in the
background load hits all of them alike; the JSON records the load average before and after,
each case's CPU utilisation (CPU seconds per wall second: 2.0 means both cores were ours) and
examples per CPU-second (less sensitive to the load than examples per second).

The ablation walks from the old defaults (per-example shuffle, TFP's `log_prob` in the loss, no
XLA on CPU, one step per execution) to the new, one change at a time; two cases try bfloat16.

The FLOPs of one training example are counted analytically from the layer shapes (see
`common.training_flops_per_example`); the matrix-multiply limit is measured: the rate of the
model's own training matmuls at that batch size (forward, input- and weight-gradients, each
with distinct operands), and a large square matmul as the machine's peak.

    python benchmarks/throughput.py            # the full grid (about 30-40 min on 2 cores)
    python benchmarks/throughput.py --quick    # the classic model only, a few minutes

Writes ``benchmarks/results/throughput.json`` (``throughput_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # first: puts the repository on sys.path
import invocation
import keras
import numpy as np
import tensorflow as tf

from keras_vae.config import Config, DataConfig, ModelConfig, RuntimeConfig, TrainingConfig
from keras_vae.data import DatasetInfo, load_splits, make_datasets
from keras_vae.model import VAE
from keras_vae.precision import dtype_policy
from keras_vae.schedules import make_optimizer
from keras_vae.tensor_types import LabelsLike
from keras_vae.train import build_model

MODELS = {
    "classic": (ModelConfig(latent_dim=20, hidden_units=(400,), activation="relu"), "adam", 1e-3),
    "paper": (ModelConfig(latent_dim=20, hidden_units=(500,), activation="tanh"), "adagrad", 1e-2),
    "conv": (ModelConfig(latent_dim=20, architecture="conv"), "adam", 1e-3),
}
PIPELINES = ("current", "per_example")
PEAK_SHAPE = (2048, 2048, 2048)


@dataclasses.dataclass(frozen=True)
class Case:
    model: str
    batch_size: int
    jit_compile: bool
    steps_per_execution: int
    pipeline: str = "current"  # or "per_example": the pipeline before this work
    log_likelihood: str = "closed_form"  # or "tfp": `tfd.Bernoulli.log_prob`, as before
    mixed_precision: str = "none"

    @property
    def name(self) -> str:
        extras = [x for x in (self.pipeline, self.log_likelihood, self.mixed_precision)]
        extras = [x for x in extras if x not in ("current", "closed_form", "none")]
        return (
            f"{self.model} b={self.batch_size} xla={'on' if self.jit_compile else 'off'} "
            f"spe={self.steps_per_execution} {' '.join(extras)}"
        ).strip()


# The defaults before this work, then one change at a time up to the new defaults (classic
# model, batch 128). Keras' "auto" meant no XLA on CPU, and one step per execution.
ABLATION = [
    (
        "before: per-example pipeline, TFP log_prob, no XLA, 1 step/execution",
        Case("classic", 128, False, 1, "per_example", "tfp"),
    ),
    ("+ closed-form log p(x|z)", Case("classic", 128, False, 1, "per_example")),
    ("+ index-gather pipeline", Case("classic", 128, False, 1)),
    ("+ 50 steps per execution", Case("classic", 128, False, 50)),
    ("+ XLA = the new defaults", Case("classic", 128, True, 50)),
]


class TFPLikelihoodVAE(VAE):
    """The VAE with its loss's log p(x|z) from TFP's `Bernoulli.log_prob` (the code before
    `keras_vae.distributions.log_likelihood`), to measure what the closed form saves."""

    def log_likelihood_given_z(
        self, x: tf.Tensor, z: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> tf.Tensor:
        return self.likelihood_from_z(z, training=training, labels=labels).log_prob(x)


class EpochClock(keras.callbacks.Callback):
    """Wall and CPU seconds of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._wall, self._cpu = time.perf_counter(), common.cpu_seconds()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(common.cpu_seconds() - self._cpu)


def per_example_pipeline(images: np.ndarray, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """The pipeline keras-vae used before this benchmark: shuffle, batch and scale per example.

    Kept here (not in the package) to measure what the index-gather pipeline of
    `keras_vae.data.make_datasets` saves.
    """
    dataset = tf.data.Dataset.from_tensor_slices(images)
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(
        lambda x: tf.cast(x, tf.float32) / 255.0, num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def run_config(case: Case, mnist: str) -> Config:
    model, optimizer, learning_rate = MODELS[case.model]
    return Config(
        model=model,
        data=DataConfig(dataset=mnist),
        training=TrainingConfig(
            batch_size=case.batch_size,
            optimizer=optimizer,
            learning_rate=learning_rate,
            jit_compile=case.jit_compile,
            steps_per_execution=case.steps_per_execution,
        ),
        runtime=RuntimeConfig(seed=0),
    )


def step_matmuls(vae: VAE, batch_size: int, samples: int = 1) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul of one MLP training step: forward, input and weight gradients.

    Only for MLPs (all hidden layers Dense); the first layer has no input gradient, and the
    decoder's layers run on `samples` draws of z per example.
    """
    dense = [
        (rows, layer)
        for rows, network in ((batch_size, vae.encoder), (batch_size * samples, vae.decoder))
        for layer in network.layers
        if isinstance(layer, keras.layers.Dense)
    ]
    shapes = []
    for i, (rows, layer) in enumerate(dense):
        fan_in, units = (int(d) for d in layer.kernel.shape)
        shapes.append((rows, fan_in, units))  # forward
        shapes.append((fan_in, rows, units))  # weight gradient x^T @ dy
        if i > 0:
            shapes.append((rows, units, fan_in))  # input gradient dy @ W^T
    return shapes


def step_matmul_gflops(shapes: list[tuple[int, int, int]], repeats: int) -> float:
    """GFLOP/s of running all `shapes` once, each with its own operands (median of `repeats`)."""
    operands = [
        (tf.random.normal([m, k], seed=i), tf.random.normal([k, n], seed=i + 1))
        for i, (m, k, n) in enumerate(shapes)
    ]

    @tf.function
    def step() -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(tf.matmul(a, b)) for a, b in operands])

    def chained() -> np.float32:  # ten steps per timed call, to average out the call overhead
        for _ in range(10):
            step()
        return step().numpy()

    seconds = common.time_calls(chained, repeats)
    flops = 11 * sum(2 * m * k * n for m, k, n in shapes)
    return flops / statistics.median(seconds) / 1e9


def measure_limits(models: dict[str, VAE], batch_sizes: list[int], repeats: int) -> dict:
    """The peak (large square matmul) and, for MLPs, each model's step-matmul rate."""
    peak = common.matmul_gflops([PEAK_SHAPE], repeats=max(5, repeats // 2), chain=2)[0]
    limits: dict[str, Any] = {"peak": peak, "step_matmul_gflops": {}}
    for name, vae in models.items():
        if vae.architecture != "mlp":
            continue
        limits["step_matmul_gflops"][name] = {
            str(b): round(step_matmul_gflops(step_matmuls(vae, b), repeats), 1) for b in batch_sizes
        }
    return limits


def grid(args: argparse.Namespace) -> list[Case]:
    cases = []
    for model in args.models:
        batch_sizes = args.conv_batch_sizes if model == "conv" else args.batch_sizes
        for batch, jit, spe in itertools.product(batch_sizes, (False, True), args.spe):
            cases.append(Case(model, batch, jit, spe))
    if "classic" in args.models:
        cases += [case for _, case in ABLATION]
        cases += [Case("classic", 128, j, 50, mixed_precision="bfloat16") for j in (False, True)]
    return list(dict.fromkeys(cases))  # unique, in order


def train_job_rates(mnist: str, epochs: int) -> dict[str, Any]:
    """`metrics.json`'s examples_per_second of the whole `keras-vae train` job (per-epoch
    validation and backup included) for the classic model: the defaults, and XLA off with one
    step per execution (the settings before this work; the code is today's)."""
    from keras_vae.train import train_and_evaluate

    rates = {}
    for label, training in (
        ("defaults", {}),  # **training below: mypy checks each value against every keyword
        ("xla off, 1 step/execution", {"jit_compile": False, "steps_per_execution": 1}),
    ):
        model, _, _ = MODELS["classic"]
        config = Config(
            model=model,
            data=DataConfig(dataset=mnist),
            training=TrainingConfig(epochs=epochs, **training),  # type: ignore[arg-type]
        )
        with tempfile.TemporaryDirectory() as run_dir:
            metrics = train_and_evaluate(config, run_dir, verbose=0)
        rates[label] = {
            "examples_per_second": round(metrics["examples_per_second"]),
            "epochs": epochs,
            "test_elbo": round(metrics["test_elbo"], 2),
        }
        print(f"keras-vae train, {label}: {rates[label]}", flush=True)
    return rates


def pytorch_baseline(python: str, quick: bool) -> dict | None:
    """Run benchmarks/pytorch_baseline.py in the interpreter `python` (a venv with torch)."""
    out = common.RESULTS_DIR / ("pytorch_baseline_quick.json" if quick else "pytorch_baseline.json")
    command = [python, str(common.BENCHMARKS_DIR / "pytorch_baseline.py"), "--out", str(out)]
    if quick:
        command.append("--quick")
    print("running", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__, quick="classic model, batch 128, 3 epochs")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per case")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--conv-batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument(
        "--spe", type=int, nargs="+", default=[1, 50], help="steps_per_execution values"
    )
    parser.add_argument("--pytorch-python", help="a python with torch: also run the baseline")
    parser.add_argument("--data", default=None, help="MNIST IDX folder (default: shared data)")
    parser.add_argument("--out", type=Path, default=None)
    quick = {"models": ["classic"], "batch_sizes": [128], "epochs": 3}
    args, run = invocation.start("throughput", parser, argv, quick=quick, as_text=False)
    mnist = args.data or str(common.shared_data_dir() / "mnist")
    keras.utils.set_random_seed(0)

    cases = grid(args)
    legacy_images = load_splits(mnist)["train"].images
    num_train = len(legacy_images)
    trainers = []
    for case in cases:
        config = run_config(case, mnist)
        train, _, info = make_datasets(config.data, case.batch_size, seed=0)
        if case.pipeline == "per_example":
            train = per_example_pipeline(legacy_images, case.batch_size)
        with dtype_policy(case.mixed_precision):
            vae = build(config, info, case)
        steps = info.num_train // case.batch_size
        if case.model == "conv":  # slow on CPU: time a quarter of an epoch per round
            steps = max(1, steps // 4)
        # Whole executions only: on repeated data Keras would run a full last execution
        # (117 steps asked, 150 run at 50 per execution), and VAE.fit refuses that.
        spe = case.steps_per_execution
        steps = max(spe, steps // spe * spe)
        trainers.append((case, vae, train.repeat(), steps, EpochClock()))
    reference = {c.model: v for c, v, *_ in trainers}
    all_batches = sorted({c.batch_size for c in cases})
    print(f"{len(cases)} cases; measuring the matmul limits", flush=True)
    limits_before = measure_limits(reference, all_batches, repeats=10)

    for round_ in range(1 + args.epochs):
        for case, vae, train, steps, clock in trainers:
            done = int(vae.optimizer.iterations)
            vae.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[clock])
            ran = int(vae.optimizer.iterations) - done
            if ran != steps:  # the rate must count every step
                raise RuntimeError(f"{case.name}: {ran} steps ran, not {steps}")
            rate = steps * case.batch_size / clock.wall[-1]
            utilisation = clock.cpu[-1] / clock.wall[-1]
            print(
                f"round {round_} {case.name:52s} {rate:9.0f} ex/s  cpu {utilisation:.2f}",
                flush=True,
            )
    limits_after = measure_limits(reference, all_batches, repeats=10)

    rows = [
        summarize(case, vae, steps, clock, limits_before, limits_after)
        for case, vae, _, steps, clock in trainers
    ]
    by_case = {(row["model"], row["name"]): row for row in rows}
    ablation = []
    for label, case in ABLATION:
        row = by_case.get((case.model, case.name))
        if row:
            ablation.append({"step": label, "case": case.name, **pick(row)})
    results: dict[str, Any] = {
        "num_train": num_train,
        "limits_before": limits_before,
        "limits_after": limits_after,
        "ablation": ablation,
        "cases": rows,
    }
    if "classic" in args.models:
        results["train_job"] = train_job_rates(mnist, epochs=1 + args.epochs)
    if args.pytorch_python:
        results["pytorch_baseline"] = pytorch_baseline(args.pytorch_python, args.quick)
    return invocation.finish(run, results, args.out)


def build(config: Config, info: DatasetInfo, case: Case) -> VAE:
    """`keras_vae.train.build_model`, with the old TFP log-likelihood if the case asks."""
    if case.log_likelihood == "closed_form":
        return build_model(config, info)
    vae = TFPLikelihoodVAE.from_model_config(info.data_shape, config.model, seed=0)
    vae.compile(
        optimizer=make_optimizer(config.training, info.num_train // config.training.batch_size),
        jit_compile=case.jit_compile,
        steps_per_execution=case.steps_per_execution,
    )
    return vae


def pick(row: dict) -> dict:
    keys = ("examples_per_second_median", "examples_per_second_best", "examples_per_cpu_second")
    return {key: row[key] for key in (*keys, "cpu_utilisation")}


def summarize(
    case: Case, vae: VAE, steps: int, clock: EpochClock, before: dict, after: dict
) -> dict[str, Any]:
    examples = steps * case.batch_size
    timed_wall, timed_cpu = clock.wall[1:], clock.cpu[1:]
    median_rate = examples / statistics.median(timed_wall)
    flops = common.training_flops_per_example(vae)
    achieved = median_rate * flops["train"] / 1e9
    # The limit is the better of the two measurements: the load can only slow a matmul down.
    peak = max(before["peak"]["gflops_median"], after["peak"]["gflops_median"])
    row = {
        "name": case.name,
        **dataclasses.asdict(case),
        "examples_per_round": examples,
        "examples_per_second_median": round(median_rate),
        "examples_per_second_best": round(examples / min(timed_wall)),
        "examples_per_cpu_second": round(examples * len(timed_cpu) / sum(timed_cpu)),
        "round_seconds": [round(s, 3) for s in clock.wall],
        "cpu_utilisation": round(sum(timed_cpu) / sum(timed_wall), 2),
        "flops_per_example": flops,
        "achieved_gflops": round(achieved, 1),
        "fraction_of_peak": round(achieved / peak, 3),
    }
    step_limits = [
        limits["step_matmul_gflops"].get(case.model, {}).get(str(case.batch_size))
        for limits in (before, after)
    ]
    if None not in step_limits:
        limit = max(step_limits)
        row["step_matmul_limit_gflops"] = round(limit, 1)
        row["fraction_of_step_matmul_limit"] = round(achieved / limit, 3)
    return row


if __name__ == "__main__":
    sys.exit(main())
