"""`keras-vae train`: flags -> `Config` -> `keras_vae.train.train_and_evaluate`.

The config flags are made from the config dataclasses (each field's `config.config_field`:
flag, help, choices, default), so a new field reaches `--help`, config.json and docs/flags.md's
flag table (`flag_table`) from one place; tests/test_cli_flags.py checks that they agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from keras_vae import config as cfg
from keras_vae import recipes
from keras_vae.cli.arguments import integer_argument, integer_or_word, path_text

HELP = (
    "Train a VAE, evaluate it on held-out data and write RUN_DIR (model.keras, config.json, "
    "metrics.json, figures/). Rerunning the same command continues an interrupted run from its "
    "last completed epoch; on a finished run it does nothing; a different config is refused "
    "unless --overwrite."
)


def hidden_units(text: str, name: str = "hidden_units") -> tuple[int, ...]:
    """'500' or '400,200' -> (500,) or (400, 200) (`name`: the field, for messages)."""
    parts = [part for part in text.split(",") if part.strip()]
    try:
        units = tuple(integer_argument(part, name) for part in parts)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (in {text!r})") from None
    if not units:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 400,200; received {text!r}"
        )
    return units


def flow_hidden_units(text: str) -> tuple[int, ...]:
    """`hidden_units` of the IAF steps' MADE: '128' or '320,320'."""
    return hidden_units(text, "flow_hidden_units")


def steps_per_execution(text: str) -> int | str:
    """'auto' or a positive integer (the config checks the upper bound)."""
    return integer_or_word(text, "steps_per_execution", "auto", 1, "a positive integer")


def megabytes_or_auto(name: str) -> Callable[[str], int | str]:
    """The argparse type of a limit in MB: 'auto' or an integer >= 0 (the config checks the
    upper bound); errors name the limit."""
    words = name.replace("_mb", "").replace("_", " ")

    def parse(text: str) -> int | str:
        return integer_or_word(text, name, "auto", 0, f"a {words} in MB (an integer >= 0)")

    parse.__name__ = name
    return parse


def validation_examples(text: str) -> int | str:
    """'source' or an integer >= 0 (the config checks it)."""
    word = cfg.SOURCE_VALIDATION
    return integer_or_word(text, "validation_examples", word, 0, "an integer >= 0")


# How a config field's flag reads its text: by the field's annotation, or, for a field of any
# other type, by its name (a new such field makes `add_arguments` fail until it is listed).
_PARSING_BY_TYPE: dict[object, dict[str, Any]] = {
    "int": {"type": int},
    "float": {"type": float},
    "str": {},
}
_PARSING_BY_FIELD: dict[str, dict[str, Any]] = {
    "hidden_units": {"type": hidden_units},
    "flow_hidden_units": {"type": flow_hidden_units},
    "flow_steps": {"type": int},  # None by default: resolved by the posterior
    "prior_components": {"type": int},  # None by default: resolved by the prior
    "num_classes": {"type": int},  # None by default: from the data's labels
    "conditional": {"action": "store_true"},
    "likelihood_scale": {},  # the text: the config reads a number or "learned"
    "data_dir": {},
    "jit_compile": {"action": argparse.BooleanOptionalAction},  # absent: "auto"
    "steps_per_execution": {"type": steps_per_execution},
    "device_data_limit_mb": {"type": megabytes_or_auto("device_data_limit_mb")},
    "memory_limit_mb": {"type": megabytes_or_auto("memory_limit_mb")},
    "tensorboard": {"action": "store_true"},
    "validation_examples": {"type": validation_examples},
    "learning_rate_decay": {"type": float},  # None by default: resolved by the schedule
    "learning_rate_alpha": {"type": float},  # None by default: resolved by the schedule
}


def flag_fields(section: type) -> list[dataclasses.Field]:
    """The fields of a config section that have a `keras-vae train` flag, in order."""
    return [f for f in dataclasses.fields(section) if f.metadata["flag"] is not None]


def shown_default(value: object, field: dataclasses.Field | None = None) -> str:
    """A default as `--help` and docs/flags.md show it: 400,200, on/off, or the field's words."""
    if value is None and field is not None:
        return field.metadata["default_text"]
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def flag_arguments(field: dataclasses.Field) -> dict:
    """The `add_argument` keywords of a config field's flag (dest = the field's name)."""
    annotation = getattr(field.type, "__name__", field.type)
    parsing = _PARSING_BY_FIELD.get(field.name, _PARSING_BY_TYPE.get(annotation))
    if parsing is None:
        raise TypeError(
            f"No parsing for the flag of `{field.name}` ({annotation}): add it to "
            "keras_vae.cli.train._PARSING_BY_FIELD."
        )
    meaning = f"{field.metadata['help']} (default: {shown_default(field.default, field)})"
    # Only the flags given reach the namespace: they override a --recipe's values.
    kwargs = {"dest": field.name, "default": argparse.SUPPRESS, **parsing}
    kwargs["help"] = meaning.replace("%", "%%")  # argparse %-formats help
    if field.metadata["choices"] is not None:
        kwargs["choices"] = field.metadata["choices"]
    return kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae train`'s arguments to `parser`: --output, --overwrite, the config flags."""
    parser.add_argument(
        "--output",
        "-o",
        type=path_text,
        required=True,
        metavar="RUN_DIR",
        help="run directory to write model.keras, config.json, metrics.json; rerunning the "
        "same command continues an interrupted run from its last completed epoch",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a RUN_DIR that holds another (or a finished) keras-vae run: "
        "delete the files that run wrote (its .keras-vae-manifest.json lists them) first; "
        "files keras-vae did not write are never touched",
    )
    groups = {}
    for name, section in cfg.SECTIONS.items():
        groups[name] = parser.add_argument_group(name)
        for field in flag_fields(section):
            groups[name].add_argument(field.metadata["flag"], **flag_arguments(field))
    groups["runtime"].add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="progress output: 0 silent, 1 a bar of the optimizer steps done with examples/s, "
        "2 one line per epoch",
    )


def config_from_args(args: argparse.Namespace) -> cfg.Config:
    """The validated `Config` the flags describe: the flags given, laid over the --recipe's
    values, laid over the defaults (raises ValueError naming a bad field)."""
    given = {
        name: {f.name: getattr(args, f.name) for f in flag_fields(section) if f.name in args}
        for name, section in cfg.SECTIONS.items()
    }
    return recipes.resolve(given)


def flag_table() -> str:
    """docs/flags.md's Markdown table of `keras-vae train`'s flags, then the fields without one.

    Made from the parser `add_arguments` builds and the config fields' metadata, as `--help`.
    """
    parser = argparse.ArgumentParser(prog="keras-vae train")
    add_arguments(parser)
    fields = {f.name: (name, f) for name, s in cfg.SECTIONS.items() for f in dataclasses.fields(s)}
    rows = ["| flag | config key | default | meaning |", "| --- | --- | --- | --- |"]
    for action in parser._actions:  # argparse lists its arguments nowhere public
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(f"`{option}`" for option in action.option_strings)
        if action.dest in fields:
            name, field = fields[action.dest]
            key, default = f"`{name}.{field.name}`", shown_default(field.default, field)
            meaning = field.metadata["help"]
        else:
            key, meaning = "(command line only)", action.help
            default = "required" if action.required else shown_default(action.default)
        cells = (flags, key, default, meaning)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    rows += ["", "Config fields without a flag, set from Python:", ""]
    for name, section in cfg.SECTIONS.items():
        for field in dataclasses.fields(section):
            if field.metadata["flag"] is None:
                rows.append(
                    f"- `{name}.{field.name}` (`{section.__name__}({field.name}=...)`, default "
                    f"{shown_default(field.default, field)}): {field.metadata['help']}. No flag: "
                    f"{field.metadata['no_flag']}."
                )
    return "\n".join(rows) + "\n"


def run(args: argparse.Namespace) -> int:
    """Train (or resume) the run and print its metrics as JSON; returns 0."""
    config = config_from_args(args)
    from keras_vae import run_setup  # reads the folder only
    from keras_vae.train import train_and_evaluate  # imports TensorFlow: after validation

    plan = run_setup.prepare(args.output, config, overwrite=args.overwrite)
    if plan.status == run_setup.FINISHED:
        print(
            f"{args.output} already holds this finished run; nothing to train "
            "(pass --overwrite to train it again).",
            file=sys.stderr,
        )
    metrics = train_and_evaluate(
        config, args.output, verbose=args.verbose, overwrite=args.overwrite, plan=plan
    )
    summary = {k: v for k, v in metrics.items() if k != "history"}
    print(json.dumps(summary, indent=2))
    return 0
