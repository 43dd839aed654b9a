"""`keras-vae sample RUN_DIR -n N --seed S --out FILE.png`: samples of a trained run, z drawn
from the prior (default) or the aggregate sampler (`keras-vae fit-sampler`), at a temperature.

$ keras-vae sample runs/mnist -n 100 --seed 1 --out samples.png
{"out": "samples.png", "num_samples": 100, "seed": 1, "sampler": "prior", "temperature": 1.0, ...}
$ keras-vae sample runs/mnist --sampler aggregate --out aggregate.png
$ keras-vae sample runs/cvae --label 7 -n 16 --seed 0 --out sevens.png
$ keras-vae sample --preset mnist_vae_quick -n 64 --out samples.png
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_image_count_argument,
    add_out_argument,
    add_run_or_preset_arguments,
    add_sampler_arguments,
    add_seed_argument,
    integer_or_word,
    run_or_preset,
)
from keras_vae.limits import MAX_SEED, check_at_least, check_sampler

HELP = (
    "Draw N samples x = E[x|z], z ~ p(z) (or --sampler aggregate), from a trained run and "
    "write them as a PNG grid (the same --seed gives the same image)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae sample`'s arguments to `parser`."""
    add_run_or_preset_arguments(parser)
    add_image_count_argument(parser, "--num-samples", 64, "samples")
    add_seed_argument(parser, "z")
    parser.add_argument(
        "--label",
        type=class_label,
        default=None,
        metavar="K",
        help="conditional runs: the class to sample, 0 to K-1, or 'all' for one row of N "
        "samples per class (the same z down each column)",
    )
    add_sampler_arguments(parser, "the samples")
    add_out_argument(parser)


def class_label(text: str) -> int | str:
    """'all' or a class index >= 0 (the run's class count is checked once it is loaded)."""
    return integer_or_word(text, "label", "all", 0, "a class index (an integer >= 0)")


def run(args: argparse.Namespace) -> int:
    """Write the sample figure and print the result as JSON; returns 0."""
    check_at_least("seed", args.seed, 0, maximum=MAX_SEED)  # before loading anything
    check_sampler(args.sampler, args.temperature)
    from keras_vae.visualize import sample_run  # imports TensorFlow: after parsing

    result = sample_run(
        run_or_preset(args),
        args.out,
        args.num_samples,
        args.seed,
        args.label,
        sampler=args.sampler,
        temperature=args.temperature,
    )
    print(json.dumps(result))
    return 0
