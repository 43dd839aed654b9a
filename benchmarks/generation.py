"""Generation quality of each model and sampler: Fréchet distance, precision, recall and label
accuracy of 10,000 samples, in the features of an MNIST classifier trained here.

    python benchmarks/generation.py --epochs 10   # writes benchmarks/results/generation.json

1. **The judge.** A small conv net (`generation_classifier`) trained once on the 60,000 real
   MNIST training images and cached outside the repository (`--classifier`); its accuracy on
   the 10,000 real test digits, overall and per class, is measured and recorded.
2. **The models**, each trained by the command a user runs, `keras-vae train --dataset
   <shared>/mnist --epochs E --output WORK/<name> --verbose 2 ...` (the default 784-400-d ReLU
   MLP, Bernoulli decoder, Adam 1e-3, batch 128, seed 0): the VAE and the conditional VAE at
   latent 2 and 20, and at latent 20 each family (IWAE k = 5, IAF posterior, VampPrior,
   mixture prior); then `keras-vae fit-sampler WORK/<name> --components K` fits the
   `aggregate` sampler (a Gaussian mixture on the training images' posterior means, per class
   for a conditional model). A finished run in WORK is reused (the same command does nothing).
3. **The samples**: `load_run(WORK/<name>).model.sample(n, seed=0, labels, sampler,
   temperature)` for each sampler (prior at T = 1, prior at T = 0.7, aggregate), E[x|z] in
   [0, 1]; a conditional model is asked for n/10 samples of each class.
4. **The metrics**, against the 10,000 real test images, in the classifier's 128 penultimate
   features: Fréchet distance (`generation_metrics.frechet_distance`), precision and recall
   (k-NN balls, k = 3, Kynkäänniemi et al. 2019); for a conditional model, per class the
   fraction of samples the classifier calls the class they were asked for. The floor: the
   same metrics between two random halves of the real test set (5,000 each, so the Fréchet
   distance's finite-sample bias is about twice that of 10,000 vs 10,000).

The two targets of issue 26 are recorded under "targets" and judged by the report
(`report_generation`). `--quick` is a smoke check: 1 epoch, 1,000 samples, two models, a
1-epoch classifier, in folders of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import common  # first: puts the repository on sys.path
import invocation
import numpy as np
from generation_classifier import (
    DEFAULT_CACHE,
    DEFAULT_EPOCHS,
    NUM_CLASSES,
    features,
    load_or_train_classifier,
    per_class_accuracy,
    predict_labels,
)
from generation_metrics import frechet_distance, precision_recall

if TYPE_CHECKING:
    import keras

    from keras_vae.model import VAE

WORK_DIR = common.RESULTS_DIR / "runs" / "generation"
QUICK_WORK_DIR = common.RESULTS_DIR / "runs" / "generation-quick"
QUICK_CLASSIFIER = DEFAULT_CACHE.with_name("generation_classifier_quick.keras")
MODELS: dict[str, dict[str, Any]] = {
    "vae-z20": {"what": "VAE", "latent_dim": 20, "flags": []},
    "vae-z2": {"what": "VAE", "latent_dim": 2, "flags": []},
    "cvae-z20": {"what": "conditional VAE", "latent_dim": 20, "flags": ["--conditional"]},
    "cvae-z2": {"what": "conditional VAE", "latent_dim": 2, "flags": ["--conditional"]},
    "iwae-k5": {
        "what": "IWAE, k = 5",
        "latent_dim": 20,
        "flags": ["--objective", "iwae", "--num-samples", "5"],
    },
    "iaf": {"what": "IAF posterior (2 steps)", "latent_dim": 20, "flags": ["--posterior", "iaf"]},
    "vamp": {
        "what": "VampPrior (500 pseudo-inputs)",
        "latent_dim": 20,
        "flags": ["--prior", "vamp"],
    },
    "mixture": {
        "what": "mixture prior (10 components)",
        "latent_dim": 20,
        "flags": ["--prior", "mixture"],
    },
}
SAMPLERS: dict[str, dict[str, Any]] = {
    "prior T=1": {"sampler": "prior", "temperature": 1.0},
    "prior T=0.7": {"sampler": "prior", "temperature": 0.7},
    "aggregate": {"sampler": "aggregate"},
    "aggregate T=0.7": {"sampler": "aggregate", "temperature": 0.7},
}
TARGETS = {
    "label_accuracy": {
        "model": "cvae-z20",
        "samplers": ["aggregate", "aggregate T=0.7"],  # judged for each
        "epochs": 10,
        "rule": "per-class label accuracy >= the classifier's own accuracy on real test digits "
        "of that class, for every class",
    },
    "frechet_distance": {
        "model": "vae-z20",
        "sampler": "aggregate",
        "baseline": "prior T=1",
        "reduction": 0.30,
        "rule": "Fréchet distance with aggregate at least 30% below prior at T = 1",
    },
}
SAMPLE_SEED = 0
NEIGHBOURS = 3


def keras_vae_program() -> str:
    """The `keras-vae` beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "keras-vae"
    found = str(beside) if beside.exists() else shutil.which("keras-vae")
    if found is None:
        raise OSError("keras-vae is not installed: run `pip install -e .` first.")
    return found


def shown(command: list[str]) -> str:
    """A command as the results record it: `keras-vae ...`, paths inside the repository
    relative to it."""
    root = str(common.REPO_ROOT) + "/"
    return " ".join(["keras-vae", *(part.replace(root, "") for part in command[1:])])


def model_commands(
    name: str, mnist: Path, work: Path, epochs: int, components: int
) -> tuple[list[str], list[str]]:
    """The `keras-vae train` and `keras-vae fit-sampler` commands of model `name`."""
    spec, program, run_dir = MODELS[name], keras_vae_program(), str(work / name)
    train = [program, "train", "--dataset", str(mnist), "--epochs", str(epochs)]
    train += ["--output", run_dir, "--verbose", "2", "--seed", "0"]
    train += ["--latent-dim", str(spec["latent_dim"]), *spec["flags"]]
    fit = [program, "fit-sampler", run_dir, "--components", str(components), "--seed", "0"]
    return train, fit


def train_model(name: str, mnist: Path, work: Path, epochs: int, components: int) -> dict:
    """Run model `name`'s two commands (a finished run's `train` does nothing); their record."""
    train, fit = model_commands(name, mnist, work, epochs, components)
    reused = (work / name / "metrics.json").exists()
    record: dict[str, Any] = {"reused_finished_run": reused}
    for key, command in {"train": train, "fit_sampler": fit}.items():
        print("$", shown(command), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True)
        record[f"{key}_command"] = shown(command)
        record[f"{key}_seconds"] = round(time.perf_counter() - start, 1)
    return record


def class_labels(count: int) -> np.ndarray:
    """`count` / 10 labels of each class in order, int32."""
    return np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), count // NUM_CLASSES)


def draw_samples(model: VAE, count: int, conditional: bool, sampler: dict) -> np.ndarray:
    """`count` samples E[x|z] of `model` as float32 [count, 784], seed SAMPLE_SEED."""
    labels = class_labels(count) if conditional else None
    images = model.sample(count, seed=SAMPLE_SEED, labels=labels, **sampler)
    return np.asarray(images, np.float32).reshape(count, -1)


def judged(
    classifier: keras.Model, real: np.ndarray, images: np.ndarray, asked: np.ndarray | None
) -> dict:
    """Fréchet distance, precision, recall of `images` vs the `real` features, and with the
    `asked` labels each class's label accuracy and their mean."""
    fake = features(classifier, images)
    precision, recall = precision_recall(real, fake, NEIGHBOURS)
    row: dict[str, Any] = {"frechet_distance": frechet_distance(real, fake), "precision": precision}
    row["recall"] = recall
    if asked is not None:
        accuracy = per_class_accuracy(predict_labels(classifier, images), asked)
        row["label_accuracy"] = accuracy
        row["mean_label_accuracy"] = float(np.mean(accuracy))
    return row


def measure_model(
    name: str, work: Path, classifier: keras.Model, real: np.ndarray, count: int
) -> dict:
    """Every sampler of the trained model `name`: its metrics, and the run's test ELBO."""
    from keras_vae.run_reader import load_run

    run = load_run(work / name)
    conditional = bool(run.model.conditional)
    samplers = {}
    for label, sampler in SAMPLERS.items():
        start = time.perf_counter()
        images = draw_samples(run.model, count, conditional, sampler)
        asked = class_labels(count) if conditional else None
        samplers[label] = judged(classifier, real, images, asked)
        samplers[label]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, label, {k: v for k, v in samplers[label].items() if k != "label_accuracy"})
    return {
        "conditional": conditional,
        "test_elbo": run.metrics.get("test_elbo"),
        "samplers": samplers,
    }


def floor(real_features: np.ndarray, seed: int) -> dict[str, Any]:
    """The metrics between two random halves of the real test features."""
    order = np.random.default_rng(seed).permutation(len(real_features))
    half = len(order) // 2
    a, b = real_features[order[:half]], real_features[order[half : 2 * half]]
    precision, recall = precision_recall(a, b, NEIGHBOURS)
    return {
        "what": f"two random halves of the real test images ({half:,} each, seed {seed})",
        "frechet_distance": frechet_distance(a, b),
        "precision": precision,
        "recall": recall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(
        __doc__, quick="1 epoch, 1,000 samples, two models, a 1-epoch classifier"
    )
    parser.add_argument("--epochs", type=int, default=10, help="each model's training epochs")
    parser.add_argument("--samples", type=int, default=10_000, help="samples per sampler")
    parser.add_argument("--components", type=int, default=10, help="fit-sampler's K")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--classifier", type=Path, default=DEFAULT_CACHE, help="its cache")
    parser.add_argument("--classifier-epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="the runs' folder")
    quick = {
        "epochs": 1,
        "samples": 1000,
        "models": ["vae-z20", "cvae-z20"],
        "classifier": QUICK_CLASSIFIER,
        "classifier_epochs": 1,
        "work_dir": QUICK_WORK_DIR,
    }
    args, run = invocation.start("generation", parser, argv, quick=quick)
    if args.samples < 2 * NUM_CLASSES or args.samples % NUM_CLASSES:
        raise ValueError(
            f"--samples must be a multiple of {NUM_CLASSES}, at least {2 * NUM_CLASSES}. "
            f"Received: {args.samples}"
        )
    from keras_vae.data import load_splits, to_unit_interval

    mnist = common.shared_data_dir() / "mnist"
    classifier, info = load_or_train_classifier(
        args.classifier, mnist, args.classifier_epochs, seed=0
    )
    test = load_splits(str(mnist))["test"]
    real_images = to_unit_interval(test.images)
    real = features(classifier, real_images)
    test_labels = cast(np.ndarray, test.labels)  # MNIST's test split has labels
    accuracy = per_class_accuracy(predict_labels(classifier, real_images), test_labels)
    if not np.allclose(accuracy, info["per_class_test_accuracy"], rtol=0, atol=1e-9):
        raise AssertionError(f"{args.classifier}: its recorded accuracy is not what it scores")
    floor_row = floor(real, seed=0)
    print("classifier", info["test_accuracy"], "floor", floor_row, flush=True)
    models = {}
    for name in args.models:
        record = train_model(name, mnist, args.work_dir, args.epochs, args.components)
        models[name] = {
            **MODELS[name],
            "flags": " ".join(MODELS[name]["flags"]),
            **record,
            **measure_model(name, args.work_dir, classifier, real, args.samples),
        }
    return invocation.finish(
        run,
        {
            "command": "python benchmarks/generation.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "epochs": args.epochs,
            "samples": args.samples,
            "components": args.components,
            "sample_seed": SAMPLE_SEED,
            "neighbours": NEIGHBOURS,
            "classifier": {
                **{k: v for k, v in info.items() if k != "sha256"},
                "cache": str(args.classifier),
            },
            "features": "the classifier's 128 penultimate (dense ReLU) activations",
            "real": f"the {len(real_images):,} MNIST test images",
            "floor": floor_row,
            "samplers": SAMPLERS,
            "models": models,
            "targets": TARGETS,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
