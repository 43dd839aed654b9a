"""`keras-vae reconstruct RUN_DIR --out FILE.png`: held-out inputs above their reconstructions.

$ keras-vae reconstruct runs/mnist --out reconstructions.png -n 20
{"out": "reconstructions.png", "dataset": "...", "num_examples": 20, "width": 302, ...}
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.sample import image_count

HELP = (
    "Reconstruct the first N held-out examples with a trained run and write a PNG: rows of "
    "10 inputs, each above its reconstructions. Deterministic (the decoder mean at the "
    "posterior mean), so there is no --seed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by keras-vae train")
    parser.add_argument(
        "--out", required=True, metavar="FILE.png", help="the PNG to write (its folder must exist)"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="take the examples from this dataset's held-out split (default: the run's own); "
        "any form train --dataset accepts",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir for --dataset")
    parser.add_argument(
        "-n",
        "--num-examples",
        type=image_count,
        default=10,
        metavar="N",
        help="examples to reconstruct (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    from keras_vae.visualize import reconstruct_run  # imports TensorFlow: after parsing

    result = reconstruct_run(
        args.run_dir, args.out, args.dataset, args.data_dir, num_examples=args.num_examples
    )
    print(json.dumps(result))
    return 0
