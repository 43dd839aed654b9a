"""Arguments that several `keras-vae` subcommands share, integer parsing for argparse, and
the keyword arguments and progress lines of the commands that read a held-out split.

The ranges are `keras_vae.limits.check_at_least`'s, so a flag and the config (or library call)
behind it refuse the same values with the same words.

Example:

    >>> parser = argparse.ArgumentParser()
    >>> add_max_examples_argument(parser, "use only the first N")
    >>> parser.parse_args(["--max-examples", "5"]).max_examples
    5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from keras_vae.limits import MAX_SEED, MAX_TEMPERATURE, SAMPLERS, check_at_least, user_path

if TYPE_CHECKING:
    from keras_vae.run_reader import Run

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
    return cast(int, value)  # an int: check_at_least refuses text


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


def path_text(text: str) -> str:
    """argparse type of every path flag: `text` as given, refused when empty or blank (it
    would silently mean the working folder), with `keras_vae.limits.user_path`'s message.

    >>> path_text("runs/mnist")
    'runs/mnist'
    """
    try:
        user_path("path", text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def image_count(text: str) -> int:
    """argparse type of `-n` of sample and reconstruct: an integer from 1 to `MAX_IMAGES`."""
    return integer_argument(text, "N", 1, MAX_IMAGES)


def add_image_count_argument(
    parser: argparse.ArgumentParser, flag: str, default: int, what: str
) -> None:
    """`-n`/`flag` of sample and reconstruct: how many images, 1 to `MAX_IMAGES`; `what`
    names them in the help ("samples")."""
    parser.add_argument(
        "-n",
        flag,
        type=image_count,
        default=default,
        metavar="N",
        help=f"{what}, 1 to {MAX_IMAGES:,} (default {default})",
    )


def add_run_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The positional RUN_DIR of the commands that read a trained run."""
    parser.add_argument(
        "run_dir", type=path_text, metavar="RUN_DIR", help="a folder written by `keras-vae train`"
    )


def add_run_or_preset_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, or --preset in its place (exactly one of the two), for the commands that read
    a trained model without writing into its folder; `run_or_preset` reads what was given."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "run_dir",
        type=path_text,
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
    `keras_vae.run_reader.Run` (`keras_vae.presets.preset_run`; imports TensorFlow)."""
    if args.preset is None:
        return args.run_dir
    from keras_vae.presets import preset_run

    return preset_run(args.preset)


def add_dataset_arguments(
    parser: argparse.ArgumentParser, use: str, split: str = "held-out"
) -> None:
    """--dataset and --data-dir of a command reading a run's data; `use`: "evaluate on",
    `split`: which split ("held-out" or "training")."""
    parser.add_argument(
        "--dataset",
        default=None,
        help=f"{use} this dataset's {split} split, prepared as the run's (default: the run's "
        "own dataset); any form train --dataset accepts",
    )
    parser.add_argument(
        "--data-dir", type=path_text, default=None, help="TFDS data_dir for --dataset"
    )


def add_out_argument(
    parser: argparse.ArgumentParser,
    metavar: str = "FILE.png",
    help: str = "the PNG to write (its folder must exist)",
) -> None:
    """The required --out of the commands that write a file or folder (default: a picture)."""
    parser.add_argument("--out", type=path_text, required=True, metavar=metavar, help=help)


def add_seed_argument(
    parser: argparse.ArgumentParser,
    what: str,
    default: int | None = 0,
    default_text: str = "2**32 - 1, as for train; default 0",
) -> None:
    """--seed, 0 to `MAX_SEED` like train's (the range is checked by the library call); `what`
    it seeds and `default_text` (the help's parenthesis) go into the help."""
    parser.add_argument(
        "--seed", type=int, default=default, help=f"seeds {what}, 0 to {MAX_SEED} ({default_text})"
    )


def add_sampler_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--sampler and --temperature: what `what` draws z from (`VAE.sample_latent`)."""
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="prior",
        help=f"what {what} draws z from: prior (p(z), the default) or aggregate (the Gaussian "
        "mixture `keras-vae fit-sampler RUN_DIR` fitted to the training images' codes)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help=f"scales the sampler's Gaussian noise (z ~ N(0, T^2 I) for a normal prior), in "
        f"(0, {MAX_TEMPERATURE:g}]; default 1",
    )


def add_importance_samples_argument(
    parser: argparse.ArgumentParser, maximum: int, default: int | None, default_text: str
) -> None:
    """--importance-samples/-k: K, 1 to `maximum` (checked by the library call)."""
    parser.add_argument(
        "--importance-samples",
        "-k",
        type=int,
        default=default,
        metavar="K",
        help=f"importance samples per example, 1 to {maximum:,} ({default_text})",
    )


def add_max_examples_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--max-examples N: only the first N held-out examples (default: all)."""
    parser.add_argument("--max-examples", type=int, default=None, metavar="N", help=help)


def add_verbose_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """--verbose 0 or 1 (default 1): progress lines on stderr or none."""
    parser.add_argument("--verbose", type=int, choices=(0, 1), default=1, help=help)


def progress_printer(command: str) -> Callable[[int, int], None]:
    """A progress callback printing "COMMAND: done/total examples" on stderr (stdout carries
    only the JSON result)."""

    def progress(done: int, total: int) -> None:
        print(f"{command}: {done}/{total} examples", file=sys.stderr)

    return progress


def held_out_options(
    args: argparse.Namespace, progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """The keyword arguments that calibrate, score and evaluate pass on to their library call
    from the flags they share: the held-out data, K, the seed, the example cap, and `progress`
    when --verbose is 1 (else None)."""
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "importance_samples": args.importance_samples,
        "seed": args.seed,
        "max_examples": args.max_examples,
        "progress": progress if args.verbose else None,
    }
