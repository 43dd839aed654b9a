"""Test NLL of one-stochastic-layer VAEs and their families on MNIST, against the papers.

Families (``--families``): the VAE and IWAE with k = 5 and k = 50 against Burda et al. (2015),
Table 1; the VampPrior and the IAF posterior on the same network (their papers' numbers are
for other networks: the README says which). Every family trains the same 784-200-200-50 tanh
network with the same optimizer and schedule, so the rows differ only in their part.

Burda et al.'s VAE with one stochastic layer (trained with k = 1): 784-200-200-50 with tanh
units, Bernoulli decoder; Adam (beta1 0.9, beta2 0.999, epsilon 1e-4), minibatches of 20, and
the schedule of 8 stages, stage i running 3^i epochs at learning rate 0.001 * 10^(-i/7)
(3,280 epochs in all). Test NLL is -log p(x) estimated with k = 5000 importance samples. Their
numbers: 86.76 nats on dynamically binarized MNIST, 88.71 on the statically binarized set of
Larochelle & Murray (2011) (50,000 training images; the 10,000 validation images unused).

Here the same model and schedule run for as long as the budget allows; the curve (test ELBO
on all 10,000 test images, and the k = 5000 NLL on the first ``--curve-examples`` of them) is
recorded at log-spaced epochs, and the NLL on the whole test set once the budget is spent.

Resumable and budgeted like reproduce_aevb.py: the two settings take turns in slices of
``--slice-minutes`` (least training time first) until ``--budget-minutes`` are spent; state
lives in ``benchmarks/results/reproduce_nll/``; every invocation rewrites
``benchmarks/results/reproduce_nll.json`` and ``reproduce_nll.png``.

    nice -n 10 python benchmarks/reproduce_nll.py --budget-minutes 60
    nice -n 10 python benchmarks/reproduce_nll.py --families vae iwae_k5 iwae_k50 vamp iaf \
        --settings dynamic-mnist --budget-minutes 30 --slice-minutes 5 --final-examples 1000 \
        --curve-examples 200 --name reproduce_nll_families
    python benchmarks/reproduce_nll.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import common  # first: puts the repository on sys.path
import keras
import numpy as np

from keras_vae.config import DataConfig, ModelConfig
from keras_vae.data import binarize, load_splits, make_datasets, to_unit_interval
from keras_vae.evaluate import estimate_log_likelihood
from keras_vae.model import VAE

BATCH_SIZE = 20
IMPORTANCE_SAMPLES = 5000
MODEL = ModelConfig(latent_dim=50, hidden_units=(200, 200), activation="tanh")
PAPER_NLL = {"dynamic": 86.76, "static": 88.71}


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: its parts on top of `MODEL`, and the published number it is set beside."""

    name: str
    parts: dict  # ModelConfig fields
    paper_nll: dict  # binarization -> nats (where published)
    paper: str  # where the number comes from, and for which network


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "vae",
            {},
            PAPER_NLL,
            "Burda et al. 2015, VAE k=1: Table 1 (dynamic), Table 3 (static); this network",
        ),
        Family(
            "iwae_k5",
            {"objective": "iwae", "num_samples": 5},
            {"dynamic": 85.54, "static": 87.63},
            "Burda et al. 2015, IWAE k=5: Table 1 (dynamic), Table 3 (static); this network",
        ),
        Family(
            "iwae_k50",
            {"objective": "iwae", "num_samples": 50},
            {"dynamic": 84.78, "static": 87.10},
            "Burda et al. 2015, IWAE k=50: Table 1 (dynamic), Table 3 (static); this network",
        ),
        Family(
            "vamp",
            {"prior": "vamp", "prior_components": 500},
            {"static": 85.57},
            "Tomczak & Welling 2018 as quoted by Pythae's reproducibility README (static "
            "'Binary MNIST'; not checked in the paper), K=500, their gated 300-300 MLP with "
            "latent 40; here the 200-200 tanh MLP",
        ),
        Family(
            "iaf",
            {"posterior": "iaf", "flow_steps": 2, "flow_hidden_units": (320, 320)},
            {},
            "no published one-stochastic-layer MLP number (Kingma et al. 2016 report ResNet "
            "conv VAEs)",
        ),
    )
}
EVAL_EPOCHS = [1, 2, 4, 7, 13, 20, 30, 40, 60, 80, 121, 160, 240, 364, 550, 800, 1093, 3280]


def stage(epoch: int) -> tuple[int, float]:
    """(i, learning rate) of 0-based `epoch` in Burda et al.'s schedule: 3^i epochs per stage.

    >>> stage(0), stage(1)[0], stage(3)[0], stage(4)[0]
    ((0, 0.001), 1, 1, 2)
    """
    i, end = 0, 1
    while epoch >= end and i < 7:
        i += 1
        end += 3**i
    return i, 1e-3 * 10 ** (-i / 7)


TOTAL_EPOCHS = sum(3**i for i in range(8))  # 3280


@dataclasses.dataclass(frozen=True)
class Setting:
    binarization: str  # "dynamic" (MNIST) or "static" (Larochelle's binarized MNIST)
    family: str = "vae"

    @property
    def data_name(self) -> str:
        return f"{self.binarization}-mnist"

    @property
    def name(self) -> str:
        """ "dynamic-mnist" for the VAE (as earlier results), else e.g. "iwae_k5-dynamic-mnist"."""
        return self.data_name if self.family == "vae" else f"{self.family}-{self.data_name}"

    @property
    def model(self) -> ModelConfig:
        # "auto": the estimator that applies to the part (the VAE keeps analytic_kl)
        return dataclasses.replace(MODEL, estimator="auto", **FAMILIES[self.family].parts)

    @property
    def paper_nll(self) -> float | None:
        return FAMILIES[self.family].paper_nll.get(self.binarization)

    def data_config(self, data_dir: Path) -> DataConfig:
        if self.binarization == "dynamic":
            return DataConfig(dataset=str(data_dir / "mnist"), binarization="dynamic")
        return DataConfig(dataset=str(data_dir / "binarized-mnist" / "binarized_mnist.npz"))


DATA_SETTINGS = ("dynamic-mnist", "static-mnist")


def settings_for(families: list[str], data: list[str]) -> list[Setting]:
    """Every (family, data) pair asked for, the VAE first."""
    return [
        Setting(name.split("-")[0], family)
        for family in FAMILIES
        if family in families
        for name in DATA_SETTINGS
        if name in data
    ]


SETTINGS = settings_for(list(FAMILIES), list(DATA_SETTINGS))


class Experiment:
    """One setting's data (the test images exactly as the model's test split), its model."""

    def __init__(self, setting: Setting, data_dir: Path, seed: int = 0):
        self.setting, self.seed = setting, seed
        config = setting.data_config(data_dir)
        self.train, self.test, self.info = make_datasets(config, BATCH_SIZE, seed=seed)
        images = load_splits(config.dataset)["test"].images
        if config.binarization != "none":
            images = binarize(images, (seed, 1))  # the fixed draw make_datasets uses
        self.test_images = to_unit_interval(images)

    def build(self) -> VAE:
        keras.utils.set_random_seed(self.seed)
        vae = VAE.from_model_config(self.info.data_shape, self.setting.model, seed=self.seed)
        optimizer = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-4)
        vae.compile(optimizer=optimizer)
        return vae

    def train_epoch(self, vae: VAE, epoch: int) -> float:
        vae.optimizer.learning_rate.assign(stage(epoch)[1])
        began = time.perf_counter()
        vae.fit(self.train, epochs=1, steps_per_epoch=self.info.num_train // BATCH_SIZE, verbose=0)
        return time.perf_counter() - began

    def nll(self, vae: VAE, examples: int | None) -> dict[str, Any]:
        """k = 5000 NLL on the test set, or on a fixed random subset of `examples` images
        (random: the binarized set's test images are sorted by class)."""
        images = self.test_images
        if examples is not None and examples < len(images):
            pick = np.random.default_rng(self.seed).choice(len(images), examples, replace=False)
            images = images[np.sort(pick)]
        began = time.perf_counter()
        estimate = estimate_log_likelihood(vae, images, num_samples=IMPORTANCE_SAMPLES, seed=1)
        summary = estimate.summary()
        return {
            "nll": -summary["test_log_likelihood"],
            "nll_stderr": summary["test_log_likelihood_stderr"],
            "elbo_k": summary["test_elbo"],
            "examples": summary["num_examples"],
            "seconds": time.perf_counter() - began,
        }


def curve_point(experiment: Experiment, vae: VAE, progress: dict, examples: int) -> None:
    elbo = vae.evaluate(experiment.test, return_dict=True, verbose=0)["elbo"]
    nll = experiment.nll(vae, examples)
    progress["points"].append(
        {
            "epochs": progress["epochs"],
            "samples": progress["epochs"] * experiment.info.num_train,
            "test_elbo": float(elbo),
            "test_nll_subset": nll["nll"],
            "test_nll_subset_stderr": nll["nll_stderr"],
            "subset_examples": nll["examples"],
            "nll_seconds": round(nll["seconds"], 1),
        }
    )
    print(
        f"  {progress['setting']}: epoch {progress['epochs']}, test ELBO {elbo:.2f}, NLL "
        f"(k={IMPORTANCE_SAMPLES}, {nll['examples']} images) {nll['nll']:.2f} "
        f"+- {nll['nll_stderr']:.2f} ({nll['seconds']:.0f} s)",
        flush=True,
    )


def plot(all_progress: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    colours = dict(zip(FAMILIES, ["r", "b", "g", "m", "c"]))
    for ax, data_name in zip(axes[0], DATA_SETTINGS):
        ax.set_title(data_name)
        for setting in SETTINGS:
            progress = all_progress.get(setting.name)
            if setting.data_name != data_name:
                continue
            colour = colours[setting.family]
            if setting.paper_nll is not None:
                ax.axhline(setting.paper_nll, color=colour, ls=":", lw=1)
            if progress and progress["points"]:
                epochs = [p["epochs"] for p in progress["points"]]
                nll = [p["test_nll_subset"] for p in progress["points"]]
                err = [p["test_nll_subset_stderr"] for p in progress["points"]]
                ax.errorbar(epochs, nll, yerr=err, fmt=f"{colour}-o", ms=3, label=setting.family)
                if progress.get("final"):
                    final = progress["final"]
                    ax.plot([final["epochs"]], [final["nll"]], f"{colour}*", ms=12)
        ax.set_xscale("log")
        ax.set_xlim(0.8, TOTAL_EPOCHS)
        ax.set_ylim(80, 130)
        ax.set_xlabel("epochs (Burda et al. train for 3,280)")
        ax.set_ylabel("test NLL, k=5000 (nats); dotted: published")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("One stochastic layer (784-200-200-50 tanh) on MNIST: test NLL by family")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="this invocation")
    parser.add_argument("--slice-minutes", type=float, default=10.0, help="per turn and setting")
    parser.add_argument("--curve-examples", type=int, default=1000, help="NLL curve subset")
    parser.add_argument(
        "--final-evaluation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, the k=5000 NLL on the whole test set (if the budget allows)",
    )
    parser.add_argument("--settings", nargs="+", choices=DATA_SETTINGS, help="data")
    parser.add_argument(
        "--families", nargs="+", choices=list(FAMILIES), default=["vae"], help="models"
    )
    parser.add_argument(
        "--final-examples",
        type=int,
        default=None,
        help="images of the final NLL (a fixed random subset; default: all 10,000)",
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch of one setting, 100 imgs")
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder")
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    parser.add_argument(
        "--name",
        default="reproduce_nll",
        help="results <name>.json / .png and state folder <name>/ (another name keeps "
        "another comparison apart, e.g. reproduce_nll_families for every family on one budget)",
    )
    args = parser.parse_args(argv)
    name = args.name
    final_examples = args.final_examples
    if args.quick:
        name = "reproduce_nll_quick"
        args.settings = args.settings or ["static-mnist"]
        args.budget_minutes, args.slice_minutes, args.curve_examples = 3.0, 1.0, 100
        final_examples = 200
    data_dir = args.data or common.shared_data_dir()
    settings = settings_for(args.families, args.settings or list(DATA_SETTINGS))
    run = common.ResultsRun(name, {k: str(v) for k, v in vars(args).items()})
    state_dir = args.results / name
    budget = common.Budget(args.budget_minutes)
    live: dict[str, tuple[Experiment, VAE, dict]] = {}

    def saved(setting: Setting) -> dict[str, Any]:
        if setting.name in live:
            return live[setting.name][2]
        progress = common.TrainingState(state_dir, setting.name).load_progress()
        return progress or {"epochs": 0, "train_seconds": 0.0}

    def ensure_live(setting: Setting) -> tuple[Experiment, VAE, dict]:
        if setting.name not in live:
            experiment = Experiment(setting, data_dir)
            vae = experiment.build()
            state = common.TrainingState(state_dir, setting.name)
            progress = state.restore(vae) or {
                "setting": setting.name,
                "epochs": 0,
                "train_seconds": 0.0,
                "points": [],
            }
            live[setting.name] = (experiment, vae, progress)
        return live[setting.name]

    reserve = 0.0  # seconds kept for the final whole-test-set evaluations
    while budget.remaining() > reserve + 5:
        pending = [s for s in settings if saved(s)["epochs"] < TOTAL_EPOCHS]
        if not pending:
            break
        setting = min(pending, key=lambda s: saved(s)["train_seconds"])
        experiment, vae, progress = ensure_live(setting)
        state = common.TrainingState(state_dir, setting.name)
        deadline = time.monotonic() + min(60 * args.slice_minutes, budget.remaining() - reserve)
        epoch_seconds = progress.get("last_epoch_seconds", 0.0)
        print(f"{setting.name}: from epoch {progress['epochs']}", flush=True)
        while progress["epochs"] < TOTAL_EPOCHS and time.monotonic() + epoch_seconds < deadline:
            epoch_seconds = experiment.train_epoch(vae, progress["epochs"])
            progress["epochs"] += 1
            progress["train_seconds"] += epoch_seconds
            progress["last_epoch_seconds"] = epoch_seconds
            progress["learning_rate"] = stage(progress["epochs"] - 1)[1]
            progress.pop("final", None)  # the model changed
            if progress["epochs"] in EVAL_EPOCHS:
                curve_point(experiment, vae, progress, args.curve_examples)
            state.save(vae, progress)
        if args.final_evaluation and progress["points"]:
            per_example = progress["points"][-1]["nll_seconds"] / args.curve_examples
            final_count = min(
                final_examples or len(experiment.test_images), len(experiment.test_images)
            )
            reserve = per_example * final_count * len(settings) * 1.2
        if progress["epochs"] == 0:
            break  # not even one epoch fits in the budget

    if args.final_evaluation:
        for setting in settings:
            if saved(setting)["epochs"] == 0 or saved(setting).get("final"):
                continue
            experiment, vae, progress = ensure_live(setting)
            if progress["points"] and progress["points"][-1]["epochs"] != progress["epochs"]:
                curve_point(experiment, vae, progress, args.curve_examples)
            print(f"{setting.name}: NLL on the whole test set", flush=True)
            final = experiment.nll(vae, final_examples)
            progress["final"] = {"epochs": progress["epochs"], **final}
            common.TrainingState(state_dir, setting.name).save(vae, progress)
            print(f"  {setting.name}: NLL {final['nll']:.2f} +- {final['nll_stderr']:.2f}")

    all_progress = {
        s.name: p
        for s in SETTINGS
        if (p := common.TrainingState(state_dir, s.name).load_progress()) is not None
    }
    figure = args.results / f"{name}.png"
    plot(all_progress, figure)
    summary = {}
    for setting in SETTINGS:
        progress = all_progress.get(setting.name)
        if not progress:
            continue
        summary[setting.name] = {
            "family": setting.family,
            "data": setting.data_name,
            "parts": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in FAMILIES[setting.family].parts.items()
            },
            "paper": FAMILIES[setting.family].paper,
            "paper_nll": setting.paper_nll,
            "epochs": progress["epochs"],
            "paper_epochs": TOTAL_EPOCHS,
            "samples": progress["points"][-1]["samples"] if progress["points"] else 0,
            "train_seconds_total": round(progress["train_seconds"], 1),
            "learning_rate_now": progress.get("learning_rate"),
            "final": progress.get("final"),
            "points": progress["points"],
        }
    run.save(
        {
            "paper": "Burda, Grosse & Salakhutdinov 2015, Table 1 (1 stochastic layer); per row",
            "setup": {
                "model": "784-200-200-50 tanh, Bernoulli; VAE: analytic KL, L=1; the other rows "
                "add their part (see each row's parts)",
                "optimizer": "Adam(beta1=0.9, beta2=0.999, eps=1e-4), batch 20",
                "schedule": "stage i: 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7",
                "importance_samples": IMPORTANCE_SAMPLES,
            },
            "settings": summary,
            "figure": figure.name,
        },
        args.results / f"{name}.json",
    )
    print("wrote", args.results / f"{name}.json", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
