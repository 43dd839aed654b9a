"""`keras-vae score RUN_DIR --out scores.csv`: per-example anomaly scores -> CSV.

$ keras-vae score runs/mnist --dataset mnist --out scores.csv --importance-samples 100
{"out": "scores.csv", "importance_samples": 100, "medians": {"elbo": -98.1, ...}, ...}
$ keras-vae score --preset mnist_vae_quick --out scores.csv    # uncalibrated: no is_anomaly
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_importance_samples_argument,
    add_max_examples_argument,
    add_out_argument,
    add_run_or_preset_arguments,
    add_seed_argument,
    add_verbose_argument,
    held_out_options,
    progress_printer,
    run_or_preset,
)
from keras_vae.signatures import DEFAULT_SCORE_SAMPLES, MAX_SCORE_SAMPLES

HELP = (
    "Score every held-out example of a dataset with a trained run: one CSV row per example "
    "with its index, label (where known), elbo, log_likelihood (importance-weighted, K "
    "samples), reconstruction and kl, in nats, and is_anomaly once the run is calibrated "
    "(`keras-vae calibrate`). The same example always gets the same scores."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae score`'s arguments to `parser`."""
    add_run_or_preset_arguments(parser)
    add_dataset_arguments(parser, "score")
    add_out_argument(parser, "FILE.csv", "the CSV to write")
    add_importance_samples_argument(
        parser,
        MAX_SCORE_SAMPLES,
        None,
        f"default: the calibration's K, else {DEFAULT_SCORE_SAMPLES}",
    )
    add_seed_argument(parser, "the score noise", None, "default: the calibration's, else 0")
    add_max_examples_argument(parser, "score only the first N")
    parser.add_argument(
        "--is-anomaly",
        dest="require_calibration",
        action="store_true",
        help="require the is_anomaly column: fail (exit 2) unless the run is calibrated for "
        "this K and seed",
    )
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Score the held-out examples and print the result as JSON; returns 0."""
    from keras_vae.anomaly import score_run  # imports TensorFlow: after parsing

    result = score_run(
        run_or_preset(args),
        args.out,
        require_calibration=args.require_calibration,
        **held_out_options(args, progress_printer("score")),
    )
    print(json.dumps(result, indent=2))
    return 0
