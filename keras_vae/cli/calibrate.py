"""`keras-vae calibrate RUN_DIR --false-positive-rate 0.01`: an anomaly threshold on held-out
normal data -> RUN_DIR/calibration.json.

$ keras-vae calibrate runs/mnist --false-positive-rate 0.01
{"score": "log_likelihood", "anomaly_if": "below", "threshold": -131.2, ...}
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_importance_samples_argument,
    add_max_examples_argument,
    add_run_dir_argument,
    add_seed_argument,
    add_verbose_argument,
    held_out_options,
    progress_printer,
)
from keras_vae.signatures import DEFAULT_SCORE_SAMPLES, MAX_SCORE_SAMPLES, SCORE_NAMES

HELP = (
    "Pick the anomaly threshold of a score that flags the given fraction of the run's held-out "
    "normal data (its test split, or --dataset's) and record it, with the rate and the data, "
    "in RUN_DIR/calibration.json; `keras-vae score` and `keras-vae export` then add "
    "is_anomaly."
)


def _rate(text: str) -> float:
    from keras_vae.calibration import check_false_positive_rate

    try:
        return check_false_positive_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae calibrate`'s arguments to `parser`."""
    add_run_dir_argument(parser)
    parser.add_argument(
        "--false-positive-rate",
        type=_rate,
        required=True,
        metavar="RATE",
        help="the fraction of normal data to flag, strictly between 0 and 1 (e.g. 0.01)",
    )
    parser.add_argument(
        "--score",
        choices=SCORE_NAMES,
        default="log_likelihood",
        help="the score to threshold (default log_likelihood; kl flags high values, the "
        "others low ones)",
    )
    add_dataset_arguments(parser, "calibrate on")
    add_importance_samples_argument(
        parser, MAX_SCORE_SAMPLES, DEFAULT_SCORE_SAMPLES, f"default {DEFAULT_SCORE_SAMPLES}"
    )
    add_seed_argument(parser, "the score noise")
    add_max_examples_argument(parser, "use only the first N")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Calibrate the run's anomaly threshold and print the record as JSON; returns 0."""
    from keras_vae.anomaly import calibrate_run  # imports TensorFlow: after parsing

    options = held_out_options(args, progress_printer("calibrate"))
    record = calibrate_run(args.run_dir, args.false_positive_rate, score=args.score, **options)
    print(json.dumps(record, indent=2))
    return 0
