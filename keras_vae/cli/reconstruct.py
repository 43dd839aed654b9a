"""`keras-vae reconstruct RUN_DIR --out FILE.png`: held-out inputs above their reconstructions.

$ keras-vae reconstruct runs/mnist --out reconstructions.png -n 20
{"out": "reconstructions.png", "dataset": "...", "num_examples": 20, "width": 302, ...}
$ keras-vae reconstruct --preset mnist_vae_quick --dataset mnist --out reconstructions.png
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_dataset_arguments,
    add_image_count_argument,
    add_out_argument,
    add_run_or_preset_arguments,
    run_or_preset,
)

HELP = (
    "Reconstruct the first N held-out examples with a trained run and write a PNG: rows of "
    "10 inputs, each above its reconstructions. Deterministic (the decoder mean at the "
    "posterior mean), so there is no --seed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae reconstruct`'s arguments to `parser`."""
    add_run_or_preset_arguments(parser)
    add_out_argument(parser)
    add_dataset_arguments(parser, "take the examples from")
    add_image_count_argument(parser, "--num-examples", 10, "examples to reconstruct")


def run(args: argparse.Namespace) -> int:
    """Write the reconstruction figure and print the result as JSON; returns 0."""
    from keras_vae.visualize import reconstruct_run  # imports TensorFlow: after parsing

    result = reconstruct_run(
        run_or_preset(args), args.out, args.dataset, args.data_dir, num_examples=args.num_examples
    )
    print(json.dumps(result))
    return 0
