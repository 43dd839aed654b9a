"""`keras-vae score RUN_DIR --out scores.csv`: per-example anomaly scores -> CSV.

$ keras-vae score runs/mnist --dataset mnist --out scores.csv --importance-samples 100
{"out": "scores.csv", "importance_samples": 100, "medians": {"elbo": -98.1, ...}, ...}
$ keras-vae score --preset mnist_vae_quick --out scores.csv    # uncalibrated: no is_anomaly
"""

from __future__ import annotations

import argparse
import json
import sys

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_run_or_preset_arguments,
    run_or_preset,
)
from keras_vae.limits import MAX_SEED
from keras_vae.signatures import DEFAULT_SCORE_SAMPLES, MAX_SCORE_SAMPLES

HELP = (
    "Score every held-out example of a dataset with a trained run: one CSV row per example "
    "with its index, label (where known), elbo, log_likelihood (importance-weighted, K "
    "samples), reconstruction and kl, in nats, and is_anomaly once the run is calibrated "
    "(`keras-vae calibrate`). The same example always gets the same scores."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_or_preset_arguments(parser)
    add_dataset_arguments(parser, "score")
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="the CSV to write")
    parser.add_argument(
        "--importance-samples",
        "-k",
        type=int,
        default=None,
        metavar="K",
        help=f"importance samples per example, 1 to {MAX_SCORE_SAMPLES:,} (default: the "
        f"calibration's K, else {DEFAULT_SCORE_SAMPLES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seeds the score noise, 0 to {MAX_SEED} (default: the calibration's, else 0)",
    )
    parser.add_argument(
        "--max-examples", type=int, default=None, metavar="N", help="score only the first N"
    )
    parser.add_argument(
        "--is-anomaly",
        dest="require_calibration",
        action="store_true",
        help="require the is_anomaly column: fail (exit 2) unless the run is calibrated for "
        "this K and seed",
    )
    parser.add_argument("--verbose", type=int, choices=(0, 1), default=1)


def _progress(done: int, total: int) -> None:
    print(f"score: {done}/{total} examples", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from keras_vae.anomaly import score_run  # imports TensorFlow: after parsing

    result = score_run(
        run_or_preset(args),
        args.out,
        dataset=args.dataset,
        importance_samples=args.importance_samples,
        data_dir=args.data_dir,
        seed=args.seed,
        max_examples=args.max_examples,
        require_calibration=args.require_calibration,
        progress=_progress if args.verbose else None,
    )
    print(json.dumps(result, indent=2))
    return 0
