"""`keras-vae evaluate RUN_DIR`: importance-weighted test log-likelihood -> JSON + metrics.json.

$ keras-vae evaluate runs/mnist --importance-samples 5000
{"test_log_likelihood": -88.1, "test_log_likelihood_stderr": 0.27, ...}
$ keras-vae evaluate --preset mnist_vae_quick -k 500    # prints only: a preset has no run folder
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_importance_samples_argument,
    add_max_examples_argument,
    add_run_or_preset_arguments,
    add_seed_argument,
    add_verbose_argument,
    held_out_options,
    run_or_preset,
)
from keras_vae.limits import MAX_EVALUATION_BATCH_SIZE, MAX_IMPORTANCE_SAMPLES

HELP = (
    "Estimate a trained run's held-out log-likelihood log p(x) by importance sampling, print "
    "it as JSON (nats per example, bits per dimension, standard errors) and add it to "
    "RUN_DIR/metrics.json. Only an evaluation of the run's own dataset on its whole held-out "
    "split sets the headline test_log_likelihood (and 'evaluation'); any other (--dataset "
    "another, --max-examples below the split's size) is stored under "
    "'other_evaluations', keyed by e.g. 'dataset=mnist,max_examples=100'. With --preset "
    "instead of RUN_DIR it only prints (a preset has no run folder; it defaults to the "
    "dataset the preset was trained on)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae evaluate`'s arguments to `parser`."""
    add_run_or_preset_arguments(parser)
    add_dataset_arguments(parser, "evaluate on")
    add_importance_samples_argument(
        parser, MAX_IMPORTANCE_SAMPLES, 5000, "default 5000, the standard protocol"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help=f"examples per step, 1 to {MAX_EVALUATION_BATCH_SIZE:,} (default 100)",
    )
    add_seed_argument(parser, "the importance samples")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help=f"importance samples per step, 1 to {MAX_IMPORTANCE_SAMPLES:,}, with chunk x "
        "batch x data dims below 2**31 (default: a few MB of decoder output per step)",
    )
    add_max_examples_argument(
        parser,
        "evaluate only the first N >= 1 held-out examples (default: all; above the split's "
        "size: all); fewer than all is stored under 'other_evaluations', not as the headline",
    )
    parser.add_argument(
        "--no-write",
        dest="write_metrics",
        action="store_false",
        help="only print the result; leave RUN_DIR/metrics.json alone (without it, RUN_DIR "
        "and its metrics.json must be writable, checked before computing)",
    )
    add_verbose_argument(parser, "1: progress lines on stderr; 0: only the JSON result")


class _Progress:
    """One stderr line about every 10% of the examples (stdout carries only the JSON)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.next_fraction = 0.1

    def __call__(self, done: int, total: int) -> None:
        if done / total + 1e-9 >= self.next_fraction or done == total:
            seconds = time.perf_counter() - self.start
            print(f"evaluate: {done}/{total} examples, {seconds:.0f} s", file=sys.stderr)
            self.next_fraction = (int(done / total * 10) + 1) / 10


def run(args: argparse.Namespace) -> int:
    """Evaluate the run or preset and print the result as JSON; returns 0."""
    from keras_vae.evaluate import evaluate_run  # imports TensorFlow: after parsing

    write_metrics = args.write_metrics and args.preset is None  # a preset has no metrics.json
    result = evaluate_run(
        run_or_preset(args),
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        write_metrics=write_metrics,
        **held_out_options(args, _Progress()),
    )
    if args.verbose and write_metrics and not result["headline"]:
        print(
            "evaluate: not the run's own dataset on its whole held-out split: stored in "
            f"metrics.json under other_evaluations[{result['evaluated_on']!r}], headline "
            "test_log_likelihood unchanged",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=2))
    return 0
