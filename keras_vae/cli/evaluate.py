"""`keras-vae evaluate RUN_DIR`: importance-weighted test log-likelihood -> JSON + metrics.json.

$ keras-vae evaluate runs/mnist --importance-samples 5000
{"test_log_likelihood": -88.1, "test_log_likelihood_stderr": 0.27, ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = (
    "Estimate a trained run's held-out log-likelihood log p(x) by importance sampling, print "
    "it as JSON (nats per example, bits per dimension, standard errors) and add it to "
    "RUN_DIR/metrics.json."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by keras-vae train")
    parser.add_argument(
        "--dataset",
        default=None,
        help="evaluate on this dataset's held-out split (default: the run's own dataset); "
        "any form train --dataset accepts",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir for --dataset")
    parser.add_argument(
        "--importance-samples",
        "-k",
        type=int,
        default=5000,
        metavar="K",
        help="importance samples per example (default 5000, the standard protocol)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step")
    parser.add_argument("--seed", type=int, default=0, help="seeds the importance samples")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="importance samples per step (default: a few MB of decoder output per step)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N held-out examples (default: all)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: progress lines on stderr; 0: only the JSON result",
    )


class _Progress:
    """One stderr line about every 10% of the examples (stdout carries only the JSON)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.next_fraction = 0.1

    def __call__(self, done: int, total: int) -> None:
        if done / total + 1e-9 >= self.next_fraction or done == total:
            seconds = time.perf_counter() - self.start
            print(f"evaluate: {done}/{total} examples, {seconds:.0f} s", file=sys.stderr)
            self.next_fraction = (int(done / total * 10) + 1) / 10


def run(args: argparse.Namespace) -> int:
    from keras_vae.evaluate import evaluate_run  # imports TensorFlow: after parsing

    result = evaluate_run(
        args.run_dir,
        dataset=args.dataset,
        importance_samples=args.importance_samples,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        seed=args.seed,
        chunk_size=args.chunk_size,
        max_examples=args.max_examples,
        progress=_Progress() if args.verbose else None,
    )
    print(json.dumps(result, indent=2))
    return 0
