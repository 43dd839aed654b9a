"""`keras-vae sample RUN_DIR -n N --seed S --out FILE.png`: prior samples of a trained run.

$ keras-vae sample runs/mnist -n 100 --seed 1 --out samples.png
{"out": "samples.png", "num_samples": 100, "seed": 1, "width": 302, "height": 302}
"""

from __future__ import annotations

import argparse
import json

from keras_vae.config import MAX_SEED, check_at_least

HELP = (
    "Draw N samples x = E[x|z], z ~ p(z), from a trained run and write them as a PNG grid "
    "(the same --seed gives the same image)."
)

MAX_IMAGES = 10_000  # keras_vae.visualize.MAX_GRID_IMAGES, without importing TensorFlow


def image_count(text: str) -> int:
    """argparse type of -n: an integer from 1 to `MAX_IMAGES`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_IMAGES:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {MAX_IMAGES}; received {text!r}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by keras-vae train")
    parser.add_argument(
        "-n",
        "--num-samples",
        type=image_count,
        default=64,
        metavar="N",
        help="samples (default 64)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help=f"seeds z, 0 to {MAX_SEED} (2**32 - 1, as for train; default 0)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE.png", help="the PNG to write (its folder must exist)"
    )


def run(args: argparse.Namespace) -> int:
    check_at_least("seed", args.seed, 0, maximum=MAX_SEED)  # before loading anything
    from keras_vae.visualize import sample_run  # imports TensorFlow: after parsing

    print(json.dumps(sample_run(args.run_dir, args.out, args.num_samples, args.seed)))
    return 0
