"""`keras-vae train`'s flags and the config dataclasses agree: every field has a flag or says
why not, every flag (but the command-line only ones) lands in config.json under its field, and
docs/flags.md's flag table is the one `flag_table()` renders."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import pytest

from keras_vae import config as cfg
from keras_vae.cli import build_parser
from keras_vae.cli.train import config_from_args, flag_table, shown_default

FLAGS_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "flags.md"
BEGIN, END = "<!-- train-flags:begin", "<!-- train-flags:end -->"
CLI_ONLY = {"help", "output", "overwrite", "verbose"}  # dests that are not config fields
BASE = ["train", "--output", "unused"]
# Command-line values (and the config.json value they give) where the default does not
# suggest one: a new field of a simple type (int, float, str, a choice, a bool) needs none.
# A part's size needs its part (the config refuses --flow-steps without --posterior iaf).
OTHER_VALUES = {
    "hidden_units": (["7,5"], [7, 5]),
    "steps_per_execution": (["7"], 7),
    "device_data_limit_mb": (["7"], 7),
    "memory_limit_mb": (["7000"], 7000),
    "estimator": (["monte_carlo"], "monte_carlo"),  # "auto" resolves to analytic_kl
    "flow_steps": (["3", "--posterior", "iaf"], 3),
    "flow_hidden_units": (["7,5", "--posterior", "iaf"], [7, 5]),
    "prior_components": (["4", "--prior", "mixture"], 4),
    "num_classes": (["4", "--conditional"], 4),
    "learning_rate_decay": (["0.5", "--learning-rate-schedule", "exponential"], 0.5),
    "learning_rate_alpha": (["0.1", "--learning-rate-schedule", "cosine"], 0.1),
    "adam_beta_1": (["0.5"], 0.5),
    "adam_beta_2": (["0.5"], 0.5),
    "early_stopping_patience": (["3", "--validation-examples", "10"], 3),
    "gradient_estimator": (["dreg", "--objective", "iwae"], "dreg"),
}


def train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    return subparsers["train"]


def fields() -> list[tuple[str, dataclasses.Field]]:
    return [(name, f) for name, s in cfg.SECTIONS.items() for f in dataclasses.fields(s)]


def flag_actions() -> dict[str, argparse.Action]:
    """The train parser's optional arguments by dest."""
    return {a.dest: a for a in train_parser()._actions if a.option_strings}


def test_the_sections_are_the_config_s():
    assert list(cfg.SECTIONS) == [f.name for f in dataclasses.fields(cfg.Config)]
    assert set(cfg.SECTIONS) == set(json.loads(cfg.Config().to_json()))


@pytest.mark.parametrize(("section", "field"), fields(), ids=lambda x: getattr(x, "name", x))
def test_every_field_has_a_flag_or_says_why_not(section, field):
    meta = field.metadata
    assert meta["help"] and not meta["help"].endswith("."), field.name
    assert (meta["flag"] is None) != (meta["no_flag"] is None), field.name
    owner = cfg.SECTIONS[section]
    assert f"{field.name}: {meta['help']}" in owner.__doc__  # the docstring shows the help
    actions = flag_actions()
    if meta["flag"] is None:
        assert len(meta["no_flag"]) > 20 and field.name not in actions, field.name
        return
    action = actions[field.name]  # dest = the field's name
    assert meta["flag"] in action.option_strings
    assert meta["help"] in action.help
    # Only the flags given reach the namespace (they override --recipe); help shows the default.
    assert action.default == argparse.SUPPRESS
    assert f"(default: {shown_default(field.default, field)})" in action.help
    if meta["choices"] is not None:
        assert tuple(action.choices) == meta["choices"]


def test_every_flag_is_a_field_or_command_line_only():
    names = [f.name for _, f in fields()]
    assert len(names) == len(set(names)), "two sections share a field name: one flag dest"
    assert set(flag_actions()) - set(names) == CLI_ONLY


def test_no_flags_give_the_default_config():
    args = train_parser().parse_args(BASE[1:])
    assert config_from_args(args) == cfg.Config()


def other_value(action: argparse.Action, field: dataclasses.Field) -> tuple[list[str], object]:
    """Flags that set `field` to something other than its default, and its config.json value."""
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [f"--no-{flag[2:]}"], False
    if action.nargs == 0:  # store_true
        return [flag], True
    if field.name in OTHER_VALUES:
        args, value = OTHER_VALUES[field.name]
        return [flag, *args], value
    if action.choices:
        choice = next(c for c in action.choices if c != field.default)
        return [flag, str(choice)], choice
    default = field.default
    if isinstance(default, int):
        return [flag, str(default + 3)], default + 3
    if isinstance(default, float):
        return [flag, repr(default * 3)], default * 3
    return [flag, "other"], "other"  # text: a str field, or one whose default is None


@pytest.mark.parametrize(
    ("section", "field"),
    [(s, f) for s, f in fields() if f.metadata["flag"] is not None],
    ids=lambda x: getattr(x, "name", x),
)
def test_every_flag_is_stored_in_config_json(section, field):
    action = flag_actions()[field.name]
    argv, expected = other_value(action, field)
    config = config_from_args(build_parser().parse_args([*BASE, *argv]))
    stored = json.loads(config.to_json())[section][field.name]
    assert stored == expected != json.loads(cfg.Config().to_json())[section][field.name], argv
    assert cfg.Config.from_json(config.to_json()) == config


def test_the_flags_page_lists_every_flag():
    text = FLAGS_PAGE.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "docs/flags.md lost its table markers"
    start = text.index("\n", text.index(BEGIN)) + 1
    table = text[start : text.index(END)]
    assert table == flag_table(), (
        "docs/flags.md's flag table is stale: put keras_vae.cli.train.flag_table() between the "
        "train-flags markers"
    )
    for action in flag_actions().values():
        if action.dest != "help":
            assert all(f"`{option}`" in table for option in action.option_strings), action.dest
