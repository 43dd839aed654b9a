"""Anomaly detection with a VAE's four scores: MNIST digits held out of training, and OOD data.

    python benchmarks/anomaly.py --epochs 4 --out benchmarks/results/anomaly.json

1. **Held-out class.** For each digit d in 0..9 a run is trained by the job users run
   (`keras_vae.train.train_and_evaluate`: 784-400-20 ReLU MLP, Bernoulli decoder, Adam 1e-3,
   batch 128) on the MNIST training images of the OTHER nine digits; then ALL 10,000 test
   images are scored with `keras_vae.anomaly.score_examples` (K = 100 importance samples) and,
   for each score (elbo, log_likelihood, reconstruction, kl), the held-out digit is the
   positive class: AUROC and AUPRC (average precision), with standard errors, and the
   held-out digit's median score against the normal digits'.
2. **Out of distribution.** A run trained on all of MNIST scores the MNIST test set (normal)
   against Fashion-MNIST (TFDS ``fashion_mnist``, where TFDS can load it: it downloads it on a
   machine with network access; otherwise the JSON says why not) and inputs made here that
   show where likelihood scores fail (Nalisnick et al., 2019, "Do deep generative models know
   what they don't know?"): blank images, sparse images (a few random pixels on), inverted
   MNIST (1 - x) and uniform noise. AUROC < 0.5 means the model rates that data as MORE
   normal than real test digits.
3. **A published reference** beside ours: Tonnaer's PhD thesis (Tables 3.3 and 3.4), a
   convolutional VAE's ELBO on the one-digit-out MNIST protocol, read at the source cited in
   `REFERENCE`.
   An & Cho (2015)'s per-digit numbers could not be read from any source available here, so
   they are not quoted.

Scores point to an anomaly as `keras_vae.scores.ANOMALY_IF` says (low elbo, log_likelihood
and reconstruction; high kl); a NaN score counts as the most anomalous (as `is_anomaly`
does). AUROC ties get average ranks; AUPRC is average precision over distinct thresholds
(scikit-learn's definition); both are checked against scikit-learn on every row of the run.
Standard errors: Hanley & McNeil (1982) for AUROC, a stratified bootstrap over test examples
(fixed seed) for both; the metrics are NumPy functions in `detection_metrics`. Runs live in
``benchmarks/results/runs/anomaly/`` (git-ignored); a finished run there is reused, so a rerun
only scores.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import common  # first: puts the repository on sys.path
import invocation
import numpy as np
from detection_metrics import SCORES, anomaly_oriented, detection, sklearn_differences, summarize

if TYPE_CHECKING:
    from keras_vae.data import Split
    from keras_vae.model import VAE

MODEL = {"latent_dim": 20, "hidden_units": [400], "activation": "relu"}
BATCH_SIZE = 128
IMPORTANCE_SAMPLES = 100
WORK_DIR = common.RESULTS_DIR / "runs" / "anomaly"
OOD_EXAMPLES = 2000
SPARSE_PIXELS = 20
REFERENCE = {
    "source": "Loek Tonnaer, PhD thesis, chapter 3 'Anomaly Detection with Variational "
    "Autoencoders', Table 3.3 (auROC) and Table 3.4 (auPRC), read at "
    "https://books.ipskampprinting.nl/thesis/603556-Tonnaer/65 (protocol: section 3.4.1, "
    "page .../58); a paper by L. Tonnaer, J. Li, V. Osin, M. Holenderski and V. Menkovski "
    "on the same experiments (MNIST and 3D-printed products; abstract read at "
    "https://vlamen.github.io/publication/publication-anomaly3d) calls the VAE "
    "convolutional",
    "setup": "convolutional VAE with latent dimension 2 or 32 and a Gaussian decoder of fixed "
    "scale 1/sqrt(2); anomaly score = the ELBO from 128 posterior samples; trained on the "
    "MNIST training images of the nine normal digits; normal test set: their MNIST test "
    "images; anomalies: the held-out digit's MNIST TRAINING images (about 6,000, so its "
    "AUPRC baseline is about 0.4, not our 0.1)",
    "auroc": {
        "latent 2": [0.96, 0.73, 0.97, 0.94, 0.73, 0.92, 0.95, 0.77, 0.92, 0.66],
        "latent 32": [0.81, 0.09, 0.92, 0.87, 0.78, 0.86, 0.87, 0.51, 0.89, 0.58],
    },
    "auprc": {
        "latent 2": [0.75, 0.21, 0.76, 0.64, 0.23, 0.45, 0.69, 0.27, 0.47, 0.15],
        "latent 32": [0.27, 0.06, 0.57, 0.38, 0.24, 0.31, 0.46, 0.11, 0.45, 0.17],
    },
    "not_verified": "An & Cho (2015), 'Variational Autoencoder based Anomaly Detection using "
    "Reconstruction Probability' (Special Lecture on IE 2(1), 2015; SNUDM-TR-2015-03): only "
    "its abstract and summaries could be read here (https://amytabb.com/today-i-read/2023/"
    "10/09/tir/, https://study.space/p/Variational_Autoencoder_based_Anomaly_Detection_"
    "using_Reconstruction_Probability), not its MNIST table, so its per-digit AUROCs are not "
    "quoted",
}


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


def write_held_out_data(splits: dict[str, Split], digit: int, path: Path) -> dict[str, int]:
    """An npz (keras.datasets layout) of the training images of every digit but `digit` and
    ALL test images, with labels; rewritten only when missing."""
    train = splits["train"]
    train_labels = cast(np.ndarray, train.labels)  # MNIST's splits have labels
    keep = train_labels != digit
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        test = splits["test"]
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(
            partial,
            x_train=train.images[keep],
            y_train=train_labels[keep],
            x_test=test.images,
            y_test=cast(np.ndarray, test.labels),
        )
        partial.replace(path)
    return {"train_images": int(keep.sum()), "test_images": len(splits["test"].images)}


def display_path(path: Path) -> str:
    """`path` relative to the repository when it lies inside it."""
    path = Path(path).resolve()
    return (
        str(path.relative_to(common.REPO_ROOT))
        if path.is_relative_to(common.REPO_ROOT)
        else str(path)
    )


def run_config(dataset: str, epochs: int) -> dict[str, Any]:
    """The `Config` dict of one run: the 784-400-20 ReLU MLP on `dataset`, `epochs` epochs."""
    return {
        "model": dict(MODEL),
        "data": {"dataset": dataset},
        "training": {"epochs": epochs, "batch_size": BATCH_SIZE},
    }


def train_and_score(dataset: str, run_dir: Path, epochs: int, samples: int) -> dict[str, Any]:
    """Train (or reuse) the run of `dataset`, then score its test split: the scores, labels,
    test images and the training summary."""
    from keras_vae import run_reader as rd
    from keras_vae.anomaly import score_examples
    from keras_vae.config import Config
    from keras_vae.train import train_and_evaluate

    reused = (run_dir / "metrics.json").exists()
    start = time.perf_counter()
    metrics = train_and_evaluate(Config.from_dict(run_config(dataset, epochs)), run_dir, verbose=0)
    train_seconds = time.perf_counter() - start
    run = rd.load_run(run_dir)
    split = rd.load_test_split(run)
    start = time.perf_counter()
    scores = score_examples(run.model, split.images, None, samples, seed=0)
    return {
        "model": run.model,
        "images": split.images,
        "labels": split.labels,
        "scores": scores,
        "summary": {
            "dataset": display_path(Path(dataset)),
            "run_dir": display_path(run_dir),
            "reused_finished_run": reused,
            "train_seconds": round(train_seconds, 1),
            "examples_per_second": metrics.get("examples_per_second"),
            "test_elbo": metrics.get("test_elbo"),
            "score_seconds": round(time.perf_counter() - start, 1),
        },
    }


# ----------------------------------------------------------------------------------------------
# Out-of-distribution inputs
# ----------------------------------------------------------------------------------------------


def constructed_ood(test_images: np.ndarray, count: int, seed: int) -> dict[str, dict]:
    """Inputs in [0, 1] of MNIST's shape that no digit looks like, `count` of each."""
    rng = np.random.default_rng(seed)
    shape = test_images.shape[1:]
    size = int(np.prod(shape))
    sparse = np.zeros((count, size), np.float32)
    for row in sparse:
        row[rng.choice(size, SPARSE_PIXELS, replace=False)] = 1.0
    return {
        "blank": {
            "images": np.zeros((count, *shape), np.float32),
            "what": "all-zero images",
        },
        "sparse": {
            "images": sparse.reshape(count, *shape),
            "what": f"{SPARSE_PIXELS} random pixels at 1, the rest 0",
        },
        "inverted": {
            "images": (1.0 - test_images[:count]).astype(np.float32),
            "what": f"1 - x of the first {count:,} MNIST test images",
        },
        "uniform_noise": {
            "images": rng.uniform(0.0, 1.0, (count, *shape)).astype(np.float32),
            "what": "independent U(0, 1) pixels",
        },
    }


def load_fashion_mnist(data_dir: str | None) -> dict[str, Any]:
    """Fashion-MNIST's test images from TFDS, or why they cannot be had here."""
    from keras_vae.data import load_splits, to_unit_interval

    try:
        images = load_splits("fashion_mnist", data_dir=data_dir)["test"].images
    except Exception as error:  # DataError from TFDS: no network, no prepared copy
        return {"available": False, "why": f"not available on this machine: {error}"}
    return {
        "available": True,
        "images": to_unit_interval(images),
        "what": "TFDS fashion_mnist, all test images",
    }


def ood_rows(
    normal: dict[str, np.ndarray], model: VAE, sets: dict, samples: int, resamples: int
) -> tuple[dict[str, dict[str, Any]], list[tuple[np.ndarray, np.ndarray]]]:
    """Per OOD set: AUROC/AUPRC of each score with the MNIST test images as the negatives."""
    from keras_vae.anomaly import score_examples

    rows, cases = {}, []
    for name, entry in sets.items():
        if not entry.get("available", True):
            rows[name] = {"available": False, "why": entry["why"]}
            print(f"{name}: {entry['why']}", flush=True)
            continue
        ood = score_examples(model, entry["images"], None, samples, seed=0)
        combined = {k: np.r_[ood[k], normal[k]] for k in SCORES}
        positive = np.r_[np.ones(len(ood["elbo"]), bool), np.zeros(len(normal["elbo"]), bool)]
        rows[name] = {
            "available": True,
            "what": entry["what"],
            "examples": len(ood["elbo"]),
            "scores": detection(combined, positive, resamples, seed=0),
        }
        cases += [(anomaly_oriented(k, combined[k]), positive) for k in SCORES]
        print(name, {k: round(v["auroc"], 3) for k, v in rows[name]["scores"].items()}, flush=True)
    return rows, cases


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--importance-samples", type=int, default=IMPORTANCE_SAMPLES)
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--ood-examples", type=int, default=OOD_EXAMPLES)
    parser.add_argument("--no-ood", action="store_true", help="skip the OOD part")
    parser.add_argument("--tfds-data-dir", help="TFDS data_dir for fashion_mnist")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "anomaly.json")
    args, run = invocation.start("anomaly", parser, argv)
    from keras_vae.config import Config
    from keras_vae.data import load_splits

    mnist = str(common.shared_data_dir() / "mnist")
    splits = load_splits(mnist)
    samples, resamples = args.importance_samples, args.bootstrap
    # TFDS's download attempt waits on the network, not the CPU: let it run meanwhile.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    fashion = None if args.no_ood else pool.submit(load_fashion_mnist, args.tfds_data_dir)
    digits, cases = {}, []
    for digit in args.digits:
        data = args.work_dir / f"mnist-without-{digit}.npz"
        sizes = write_held_out_data(splits, digit, data)
        job = train_and_score(str(data), args.work_dir / f"without-{digit}", args.epochs, samples)
        positive = job["labels"] == digit
        rows = detection(job["scores"], positive, resamples, seed=digit)
        cases += [(anomaly_oriented(k, job["scores"][k]), positive) for k in SCORES]
        digits[str(digit)] = {
            **sizes,
            "held_out_test_images": int(positive.sum()),
            **job["summary"],
            "scores": rows,
        }
        print(digit, {k: round(v["auroc"], 3) for k, v in rows.items()}, job["summary"], flush=True)
    ood = None
    if not args.no_ood:
        job = train_and_score(mnist, args.work_dir / "all-digits", args.epochs, samples)
        future = cast("concurrent.futures.Future[dict[str, Any]]", fashion)  # None: --no-ood
        sets = {"fashion_mnist": future.result()}
        sets.update(constructed_ood(job["images"], args.ood_examples, seed=0))
        rows, ood_cases = ood_rows(job["scores"], job["model"], sets, samples, resamples)
        cases += ood_cases
        ood = {"training": job["summary"], "normal": "MNIST test images (10,000)", "sets": rows}
    pool.shutdown(wait=False)
    check = sklearn_differences(cases)
    if max(check.values()) > 1e-9:
        raise AssertionError(f"AUROC/AUPRC disagree with scikit-learn: {check}")
    return invocation.finish(
        run,
        {
            "command": "python benchmarks/anomaly.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "config": Config.from_dict(run_config("<each run's dataset>", args.epochs)).to_dict(),
            "training": f"train_and_evaluate, 784-400-20 ReLU MLP, Bernoulli decoder on grey "
            f"levels (no binarization), Adam 1e-3, batch {BATCH_SIZE}, {args.epochs} epochs",
            "scoring": f"keras_vae.anomaly.score_examples, K = {samples} importance samples, "
            "seed 0",
            "metrics": "positive = the held-out digit (or the OOD set); higher anomaly score = "
            "lower elbo / log_likelihood / reconstruction, higher kl (keras_vae.scores."
            "ANOMALY_IF); AUROC with average ranks for ties, its stderr by Hanley & McNeil "
            f"(1982); AUPRC = average precision; bootstrap stderrs from {resamples} stratified "
            "resamples",
            "sklearn_max_abs_difference": check,
            "held_out_digits": digits,
            "summary": summarize(digits) if digits else {},
            "ood": ood,
            "reference": REFERENCE,
        },
        args.out,
    )


if __name__ == "__main__":
    sys.exit(main())
