"""The `keras-vae` command line: argparse -> config -> one library call per subcommand.

Each subcommand lives in its own module exposing `HELP`, `add_arguments(parser)` and
`run(args) -> int`; the arguments several of them share are in `keras_vae.cli.arguments`, and
`train`'s config flags are made from the config dataclasses. Bad input (a ValueError or
OSError raised before any output is written) becomes one line on stderr and exit code 2; an
error with an `exit_code` (a diverged training: 1) one line and that code; Ctrl-C one line
saying what was kept, and exit code 130.

    $ keras-vae train --dataset digits --epochs 5 --output runs/digits
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from keras_vae import __version__
from keras_vae.ctrl_c import remember_ctrl_c

# Subcommand name -> module under keras_vae.cli (imported only when that subcommand runs).
SUBCOMMANDS = {
    "train": "train",
    "export": "export",
    "evaluate": "evaluate",
    "sample": "sample",
    "reconstruct": "reconstruct",
    "score": "score",
    "calibrate": "calibrate",
    "fit-sampler": "fit_sampler",
}
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
# What an interrupted command leaves, by command (every file is written atomically).
INTERRUPTED = {
    "train": "every completed epoch is in its backup: rerun the same command to resume",
    "export": "the export was rolled back, its folder left as it was",
}


class UsageError(Exception):
    """Bad command-line input; the message says what was wrong and how to fix it."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (no usage dump), raised as `UsageError`.

    Subparsers inherit the class, so `keras-vae train --likelihood x` fails like every other
    bad input: one line on stderr and exit code 2.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The `keras-vae` parser, with one subparser per subcommand."""
    parser = OneLineErrorParser(
        prog="keras-vae",
        description="Variational Autoencoders (Kingma & Welling, 2014) with Keras 3: train, "
        "evaluate, sample and export for TF Serving and LiteRT.",
    )
    parser.add_argument("--version", action="version", version=f"keras-vae {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"keras_vae.cli.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-vae` on `argv` (default: sys.argv[1:]); returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    try:
        with remember_ctrl_c():  # a Ctrl-C something swallows still stops `train`
            return int(args.run(args) or 0)
    except BaseException as error:
        if interrupted_by_ctrl_c(error):  # one line, not TensorFlow's stack
            left = INTERRUPTED.get(args.command, "no file was left half-written")
            print(f"keras-vae {args.command}: interrupted; {left}.", file=sys.stderr)
            return EXIT_INTERRUPTED
        # An error that carries its exit code (a diverged training) is one line, like bad input.
        exit_code = getattr(error, "exit_code", None)
        if not isinstance(error, (UsageError, ValueError, OSError)) and exit_code is None:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"keras-vae {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE if exit_code is None else int(exit_code)


def interrupted_by_ctrl_c(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt or was raised while one was being handled: a
    library's cleanup that fails under a Ctrl-C (NumPy's zip writer: "Can't close the ZIP
    file while there is an open writing handle") is the Ctrl-C, not bad input.

    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt
    ...     finally:
    ...         raise ValueError("Can't close the ZIP file while there is an open writing handle")
    ... except ValueError as error:
    ...     interrupted_by_ctrl_c(error), interrupted_by_ctrl_c(ValueError("bad input"))
    (True, False)
    """
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt):
            return True
        seen.add(id(found))
        found = found.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
