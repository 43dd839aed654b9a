"""`keras-vae fit-sampler RUN_DIR [--components K]`: the aggregate sampler of a trained run
(a Gaussian mixture fitted to its training images' codes, per class for a conditional run)
-> RUN_DIR/aggregate_sampler.npz, which `sample --sampler aggregate` and `export --sampler
aggregate` draw from.

$ keras-vae fit-sampler runs/mnist --components 10
{"out": "runs/mnist/aggregate_sampler.npz", "components": 10, "covariance": "full", ...}
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_run_dir_argument,
    add_seed_argument,
)
from keras_vae.gaussian_mixture import COVARIANCE_TYPES
from keras_vae.limits import DEFAULT_SAMPLER_COMPONENTS, MAX_SAMPLER_COMPONENTS

HELP = (
    "Fit the aggregate sampler of a trained run: a Gaussian mixture over the codes of its "
    "training images (one per class for a conditional run), written to "
    "RUN_DIR/aggregate_sampler.npz; `sample` and `export` then take --sampler aggregate."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae fit-sampler`'s arguments to `parser`."""
    add_run_dir_argument(parser)
    parser.add_argument(
        "--components",
        type=int,
        default=DEFAULT_SAMPLER_COMPONENTS,
        metavar="K",
        help="mixture components (per class for a conditional run), 1 to "
        f"{MAX_SAMPLER_COMPONENTS:,}; default {DEFAULT_SAMPLER_COMPONENTS}",
    )
    parser.add_argument(
        "--covariance",
        choices=COVARIANCE_TYPES,
        default="full",
        help="each component's covariance: full (default) or diag",
    )
    add_seed_argument(parser, "the mixture's initialisation (and a dynamic binarization)")
    add_dataset_arguments(parser, "fit on", split="training")


def run(args: argparse.Namespace) -> int:
    """Fit the aggregate sampler of the run and print its record as JSON; returns 0."""
    from keras_vae.aggregate_sampler import fit_sampler_run  # imports TensorFlow

    record = fit_sampler_run(
        args.run_dir,
        components=args.components,
        covariance=args.covariance,
        seed=args.seed,
        dataset=args.dataset,
        data_dir=args.data_dir,
    )
    print(json.dumps(record))
    return 0
