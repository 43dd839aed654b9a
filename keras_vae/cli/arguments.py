"""Arguments that several `keras-vae` subcommands share, and integer parsing for argparse.

The ranges are `keras_vae.limits.check_at_least`'s, so a flag and the config (or library call)
behind it refuse the same values with the same words.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from keras_vae.limits import MAX_SEED, check_at_least

if TYPE_CHECKING:
    from keras_vae.run_dir import Run

MAX_IMAGES = 10_000  # keras_vae.visualize.MAX_GRID_IMAGES, without importing TensorFlow


def integer_argument(text: str, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`text` as an integer from `minimum` to `maximum` (None: no upper bound), for argparse.

    Raises:
        argparse.ArgumentTypeError: with `check_at_least`'s message naming `name` (argparse
            prefixes the flag), for text that is not an integer or one out of range.

    Example:

    >>> integer_argument("0", "N")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: Received an invalid value for `N`, expected an integer >= 1. \
Received: N=0
    """
    try:
        value: int | str = int(text)
    except ValueError:
        value = text  # not an integer: check_at_least refuses it, quoting it
    try:
        check_at_least(name, value, minimum, maximum=maximum)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def integer_or_word(text: str, name: str, word: str, minimum: int, expected: str) -> int | str:
    """`word` as it is, else `text` as an integer >= `minimum`, for argparse; an error says
    what was `expected` (e.g. "a positive integer") or `word`.

    Example:

    >>> integer_or_word("auto", "steps", "auto", 1, "a positive integer")
    'auto'
    >>> integer_or_word("0", "steps", "auto", 1, "a positive integer")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer or 'auto'; received '0'
    """
    if text == word:
        return text
    try:
        return integer_argument(text, name, minimum=minimum)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected {expected} or {word!r}; received {text!r}"
        ) from None


def image_count(text: str) -> int:
    """argparse type of `-n` of sample and reconstruct: an integer from 1 to `MAX_IMAGES`."""
    return integer_argument(text, "N", 1, MAX_IMAGES)


def add_run_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The positional RUN_DIR of the commands that read a trained run."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `keras-vae train`")


def add_run_or_preset_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, or --preset in its place (exactly one of the two), for the commands that read
    a trained model without writing into its folder; `run_or_preset` reads what was given."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        nargs="?",
        help="a folder written by `keras-vae train` (or pass --preset instead)",
    )
    group.add_argument(
        "--preset",
        metavar="NAME_OR_FOLDER",
        help="use a trained preset instead of RUN_DIR: a name shipped with keras-vae (python "
        "-c 'import keras_vae; print(keras_vae.list_presets())'), a preset folder, or an "
        "hf:// or kaggle:// handle (needs keras-hub); nothing is written into it",
    )


def run_or_preset(args: argparse.Namespace) -> str | Run:
    """What `add_run_or_preset_arguments` parsed: RUN_DIR as given, or the preset read as a
    `keras_vae.run_dir.Run` (`keras_vae.presets.preset_run`; imports TensorFlow)."""
    if args.preset is None:
        return args.run_dir
    from keras_vae.presets import preset_run

    return preset_run(args.preset)


def add_dataset_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    """--dataset and --data-dir of a command reading a held-out split; `use`: "evaluate on"."""
    parser.add_argument(
        "--dataset",
        default=None,
        help=f"{use} this dataset's held-out split (default: the run's own dataset); any form "
        "train --dataset accepts",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir for --dataset")


def add_png_argument(parser: argparse.ArgumentParser) -> None:
    """The required --out FILE.png of the commands that draw a picture."""
    parser.add_argument(
        "--out", required=True, metavar="FILE.png", help="the PNG to write (its folder must exist)"
    )


def add_seed_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--seed, 0 to `MAX_SEED` like train's (the range is checked by the library call)."""
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help=f"seeds {what}, 0 to {MAX_SEED} (2**32 - 1, as for train; default 0)",
    )
