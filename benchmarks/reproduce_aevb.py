"""Kingma & Welling (2014), Figure 2: the SGVB lower bound vs training samples seen.

The paper's setup: MNIST with one hidden layer of 500 tanh units (Bernoulli decoder) and
latent sizes 3, 5, 10, 20, 200; Frey faces with 200 tanh units (Gaussian decoder, means
squashed into (0, 1) by a sigmoid, learned variances) and latent sizes 2, 5, 10, 20; minibatch
M = 100, L = 1, the analytic-KL estimator, Adagrad with a global step size chosen from
{0.01, 0.02, 0.1} by the training bound after the first iterations, parameters initialised
from N(0, 0.01) (read as standard deviation 0.01) with a small weight decay, the N(0, I) prior
on the parameters (L2 of 1 / (2N) per datapoint, N the training set size).

Choices the paper leaves open, made here: MNIST is dynamically binarized (a new Bernoulli draw
of every training image per batch; the test set and a 10,000-image training subset used for
the training-set bound are binarized once), and 20% of the 1,965 Frey faces are held out as
the test set. The bound is the single-sample (L = 1) estimate, averaged over the evaluation
set, as in the paper's plots.

Resumable and budgeted: configurations take turns in slices of ``--slice-minutes`` (the one
with the least training time goes next) until ``--budget-minutes`` are spent; the state of
each (all variables, the curve so far) is kept in ``benchmarks/results/reproduce_aevb/`` and
the next invocation continues from it. Every invocation rewrites
``benchmarks/results/reproduce_aevb.json`` and ``reproduce_aevb.png`` from all the state.

    nice -n 10 python benchmarks/reproduce_aevb.py --budget-minutes 60
    python benchmarks/reproduce_aevb.py --quick            # two configs, one minute
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import common  # first: puts the repository on sys.path
import invocation
import keras
import numpy as np
import tensorflow as tf

from keras_vae.config import DataConfig, ModelConfig
from keras_vae.data import binarize, load_splits, make_datasets, to_unit_interval
from keras_vae.execution import DEFAULT_STEPS_PER_EXECUTION
from keras_vae.model import VAE

BATCH_SIZE = 100  # M
STEPS_PER_EXECUTION = DEFAULT_STEPS_PER_EXECUTION  # every fit runs whole executions
LEARNING_RATES = (0.01, 0.02, 0.1)  # the paper's Adagrad candidates
INIT_STDDEV = 0.01
TRAIN_EVAL_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class Setting:
    """One panel of Figure 2."""

    dataset: str  # "mnist" or "frey"
    latent_dim: int

    @property
    def name(self) -> str:
        """The setting's name, e.g. ``mnist-nz20``."""
        return f"{self.dataset}-nz{self.latent_dim}"

    @property
    def hidden_units(self) -> int:
        """The paper's hidden width: 500 for MNIST, 200 for Frey Face."""
        return 500 if self.dataset == "mnist" else 200

    def model_config(self) -> ModelConfig:
        """The paper's tanh MLP: Bernoulli (MNIST) or learned-scale Gaussian (Frey) decoder."""
        gaussian = self.dataset == "frey"
        return ModelConfig(
            latent_dim=self.latent_dim,
            hidden_units=(self.hidden_units,),
            activation="tanh",
            likelihood="gaussian" if gaussian else "bernoulli",
            likelihood_scale="learned" if gaussian else 1.0,
            estimator="analytic_kl",
            num_samples=1,
        )

    def data_config(self, data_dir: Path) -> DataConfig:
        """The dataset under `data_dir`: MNIST dynamically binarized, or Frey Face."""
        if self.dataset == "mnist":
            return DataConfig(dataset=str(data_dir / "mnist"), binarization="dynamic")
        return DataConfig(dataset=str(data_dir / "frey-face" / "frey_faces.npz"))


SETTINGS = [Setting("mnist", n) for n in (3, 5, 10, 20, 200)] + [
    Setting("frey", n) for n in (2, 5, 10, 20)
]


class Experiment:
    """One setting's data, its model and its evaluation: train and test lower bounds."""

    def __init__(self, setting: Setting, data_dir: Path, seed: int = 0) -> None:
        self.setting, self.seed = setting, seed
        config = setting.data_config(data_dir)
        self.train, self.test, self.info = make_datasets(config, BATCH_SIZE, seed=seed)
        self.train = self.train.repeat()
        train_images = load_splits(config.dataset, test_fraction=config.test_fraction)["train"]
        images = train_images.images
        if len(images) > TRAIN_EVAL_SIZE:
            pick = np.random.default_rng(seed).choice(len(images), TRAIN_EVAL_SIZE, replace=False)
            images = images[np.sort(pick)]
        if config.binarization != "none":
            images = binarize(images, (seed, 2))
        self.train_eval = tf.data.Dataset.from_tensor_slices(to_unit_interval(images)).batch(1000)

    def build(self, learning_rate: float) -> VAE:
        """The paper's model: N(0, 0.01) initial parameters, N(0, I) prior on them, Adagrad."""
        vae = VAE.from_model_config(
            self.info.data_shape, self.setting.model_config(), seed=self.seed
        )
        rng = np.random.default_rng(self.seed)
        for variable in vae.trainable_variables:
            variable.assign(rng.normal(0.0, INIT_STDDEV, variable.shape).astype(np.float32))
            # log N(theta; 0, I) per datapoint: the gradient of the loss gets theta / N.
            variable.regularizer = keras.regularizers.L2(0.5 / self.info.num_train)
        vae.compile(
            optimizer=keras.optimizers.Adagrad(learning_rate),
            steps_per_execution=STEPS_PER_EXECUTION,
        )
        return vae

    def train_steps(self, vae: VAE, steps: int) -> None:
        """Train `vae` for `steps` steps on the repeated training pipeline."""
        vae.fit(self.train, epochs=1, steps_per_epoch=steps, verbose=0)

    def bounds(self, vae: VAE) -> tuple[float, float]:
        """(train, test) lower bound per datapoint, nats (L = 1 estimate)."""
        train = vae.evaluate(self.train_eval, return_dict=True, verbose=0)["elbo"]
        test = vae.evaluate(self.test, return_dict=True, verbose=0)["elbo"]
        return float(train), float(test)


def whole_executions(steps: int) -> int:
    """`steps` rounded up to whole executions: any other count makes `VAE.fit` lower
    steps_per_execution for that call (a new compiled function each time)."""
    return math.ceil(steps / STEPS_PER_EXECUTION) * STEPS_PER_EXECUTION


def start(experiment: Experiment, trial_samples: int) -> tuple[VAE, dict[str, Any]]:
    """Pick the Adagrad step size as the paper did: the best training bound after
    `trial_samples` samples; training continues from the winner (its samples count)."""
    trials, best = {}, None
    steps = whole_executions(max(1, trial_samples // BATCH_SIZE))
    for learning_rate in LEARNING_RATES:
        keras.utils.set_random_seed(experiment.seed)
        vae = experiment.build(learning_rate)
        began = time.perf_counter()
        experiment.train_steps(vae, steps)
        seconds = time.perf_counter() - began
        train, test = experiment.bounds(vae)
        trials[str(learning_rate)] = round(train, 3)
        print(f"  lr {learning_rate}: train bound {train:.2f} after {steps * BATCH_SIZE} samples")
        if not math.isfinite(train):
            continue
        if best is None or train > best[0]:
            best = (train, learning_rate, vae, test, seconds)
    if best is None:
        raise RuntimeError(f"{experiment.setting.name}: every step size diverged: {trials}")
    train, learning_rate, vae, test, seconds = best
    samples = steps * BATCH_SIZE
    progress = {
        "setting": experiment.setting.name,
        "learning_rate": learning_rate,
        "lr_trials": trials,
        "samples": samples,
        "train_seconds": seconds,
        "points": [[samples, train, test]],
    }
    return vae, progress


def run_slice(
    experiment: Experiment,
    vae: VAE,
    progress: dict[str, Any],
    state: invocation.TrainingState,
    seconds: float,
    grid: list[int],
    max_samples: int,
) -> None:
    """Train for about `seconds`, evaluating at the grid points crossed and at the end."""
    deadline = time.monotonic() + seconds
    rate = None  # steps per second, from the last chunk
    while time.monotonic() < deadline and progress["samples"] < max_samples:
        upcoming = [p for p in grid if p > progress["samples"]] or [max_samples]
        steps = math.ceil((min(upcoming[0], max_samples) - progress["samples"]) / BATCH_SIZE)
        left = deadline - time.monotonic()
        steps = min(steps, 200 if rate is None else max(1, int(rate * min(left, 30.0))))
        steps = whole_executions(steps)  # points record the samples actually trained on
        began, cpu = time.perf_counter(), common.cpu_seconds()
        experiment.train_steps(vae, steps)
        elapsed = time.perf_counter() - began
        rate = steps / elapsed
        progress["samples"] += steps * BATCH_SIZE
        progress["train_seconds"] += elapsed
        progress["train_cpu_seconds"] = progress.get("train_cpu_seconds", 0.0) + (
            common.cpu_seconds() - cpu
        )
        if progress["samples"] >= upcoming[0]:
            record(experiment, vae, progress, state)
    if progress["points"][-1][0] != progress["samples"]:
        record(experiment, vae, progress, state)


def record(
    experiment: Experiment, vae: VAE, progress: dict[str, Any], state: invocation.TrainingState
) -> None:
    """Evaluate both bounds, add the point to `progress`, save the state and print it."""
    train, test = experiment.bounds(vae)
    progress["points"].append([progress["samples"], train, test])
    state.save(vae, progress)
    print(
        f"  {progress['setting']}: {progress['samples']:.3g} samples, train {train:.2f}, "
        f"test {test:.2f} ({progress['train_seconds']:.0f} s training)",
        flush=True,
    )


def plot(progress_by_setting: dict[str, dict], path: Path) -> None:
    """Figure 2's panels (train and test bound vs samples seen) as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"mnist": [s for s in SETTINGS if s.dataset == "mnist"]}
    rows["frey"] = [s for s in SETTINGS if s.dataset == "frey"]
    fig, axes = plt.subplots(2, 5, figsize=(17, 6.5), squeeze=False)
    for r, (dataset, settings) in enumerate(rows.items()):
        for c in range(5):
            ax = axes[r][c]
            if c >= len(settings):
                ax.axis("off")
                continue
            setting = settings[c]
            title = "MNIST" if dataset == "mnist" else "Frey Face"
            ax.set_title(f"{title}, $N_z$ = {setting.latent_dim}")
            ax.set_xscale("log")
            ax.set_xlim(1e4, 1e8)
            ax.grid(True, which="both", alpha=0.3)
            progress = progress_by_setting.get(setting.name)
            if progress:
                points = np.array(progress["points"])
                ax.plot(points[:, 0], points[:, 1], "r-", label="AEVB (train)")
                ax.plot(points[:, 0], points[:, 2], "r--", label="AEVB (test)")
                late = points[points[:, 0] >= 1e5] if (points[:, 0] >= 1e5).any() else points
                low, high = late[:, 1:].min(), late[:, 1:].max()
                ax.set_ylim(low - 0.1 * (high - low) - 1, high + 0.1 * (high - low) + 1)
            if c == 0:
                ax.set_ylabel(r"$\mathcal{L}$ (nats per datapoint)")
            if r == 1 or (r == 0 and c >= len(rows["frey"])):
                ax.set_xlabel("# training samples evaluated")
            if progress and not any(a.get_legend() for a in axes.flat):
                ax.legend(loc="lower right")
    fig.suptitle("Kingma & Welling (2014), Figure 2, reproduced with keras-vae (AEVB only)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__, quick="2 settings, 2 minutes, tiny")
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="this invocation")
    parser.add_argument("--slice-minutes", type=float, default=5.0, help="per turn and config")
    parser.add_argument("--max-samples", type=float, default=1e8, help="the paper's x-axis end")
    parser.add_argument("--trial-samples", type=int, default=100_000, help="step-size choice")
    parser.add_argument("--settings", nargs="+", choices=[s.name for s in SETTINGS])
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    quick = {"budget_minutes": 2.0, "slice_minutes": 0.25, "max_samples": 2e5}
    args = invocation.parse(parser, argv, quick=quick | {"trial_samples": 20_000})
    if args.quick:
        args.settings = args.settings or ["mnist-nz20", "frey-nz2"]
    name = invocation.results_name("reproduce_aevb", args)
    run = invocation.ResultsRun(name, invocation.arguments_record(args))
    data_dir = args.data or common.shared_data_dir()
    settings = [s for s in SETTINGS if args.settings is None or s.name in args.settings]
    state_dir = args.results / name
    budget = invocation.Budget(args.budget_minutes)
    grid = common.log_spaced_points(1e4, args.max_samples)
    max_samples = int(args.max_samples)
    live: dict[str, tuple[Experiment, VAE, dict]] = {}
    this_run_seconds: dict[str, float] = {}

    def saved(setting: Setting) -> dict[str, Any]:
        if setting.name in live:
            return live[setting.name][2]
        progress = invocation.TrainingState(state_dir, setting.name).load_progress()
        return progress or {"samples": 0, "train_seconds": 0.0}

    while budget.remaining() > 5:
        pending = [s for s in settings if saved(s)["samples"] < max_samples]
        if not pending:
            break
        setting = min(pending, key=lambda s: saved(s)["train_seconds"])
        state = invocation.TrainingState(state_dir, setting.name)
        began = time.monotonic()
        if setting.name not in live:
            print(f"{setting.name}: building", flush=True)
            experiment = Experiment(setting, data_dir)
            progress = state.load_progress()
            if progress is None:
                vae, progress = start(experiment, args.trial_samples)
                state.save(vae, progress)
            else:
                vae = experiment.build(progress["learning_rate"])
                state.restore(vae)
            live[setting.name] = (experiment, vae, progress)
        experiment, vae, progress = live[setting.name]
        seconds = min(60 * args.slice_minutes, budget.remaining())
        print(f"{setting.name}: training for {seconds:.0f} s", flush=True)
        run_slice(experiment, vae, progress, state, seconds, grid, max_samples)
        this_run_seconds[setting.name] = this_run_seconds.get(setting.name, 0.0) + (
            time.monotonic() - began
        )

    all_progress = {
        s.name: p
        for s in SETTINGS
        if (p := invocation.TrainingState(state_dir, s.name).load_progress()) is not None
    }
    figure = args.results / f"{name}.png"
    plot(all_progress, figure)
    summary = {}
    for setting_name, progress in all_progress.items():
        samples, train, test = progress["points"][-1]
        summary[setting_name] = {
            "samples": samples,
            "train_bound": round(train, 3),
            "test_bound": round(test, 3),
            "train_seconds_total": round(progress["train_seconds"], 1),
            "train_cpu_seconds_counted": round(progress.get("train_cpu_seconds", 0.0), 1),
            "samples_per_second": round(samples / progress["train_seconds"]),
            "learning_rate": progress["learning_rate"],
            "lr_trials": progress["lr_trials"],
            "points": [[int(s), round(a, 3), round(b, 3)] for s, a, b in progress["points"]],
        }
    print("figure", figure)
    return invocation.finish(
        run,
        {
            "paper": "Kingma & Welling 2014, Figure 2 (curves; no table of numbers)",
            "setup": {
                "batch_size": BATCH_SIZE,
                "L": 1,
                "estimator": "analytic_kl",
                "optimizer": "Adagrad, step size chosen from 0.01, 0.02, 0.1",
                "init": f"N(0, {INIT_STDDEV}^2)",
                "weight_prior": "N(0, I): L2 1/(2N) per datapoint",
                "mnist": "500 tanh, Bernoulli, dynamic binarization, 60k train / 10k test",
                "frey": "200 tanh, Gaussian learned scale, sigmoid mean, 20% held out",
                "train_bound_on": f"{TRAIN_EVAL_SIZE} training images (MNIST), all (Frey)",
            },
            "seconds_this_run": {k: round(v, 1) for k, v in this_run_seconds.items()},
            "settings": summary,
            "figure": figure.name,
        },
        args.results / f"{name}.json",
    )


if __name__ == "__main__":
    sys.exit(main())
