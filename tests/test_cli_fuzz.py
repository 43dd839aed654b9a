"""Every numeric flag of every subcommand, over a grid of bad values (non-finite, out of range,
wrong type): exit code 2, one line on stderr naming the problem, nothing on stdout, and every
watched folder byte-identical (the output folders never created)."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import assert_exit_2_and_unchanged

HUGE = "9" * 30  # above every bound: int64, seeds, counts, sizes
WRONG_TYPE = ["abc", "", "1.5", "1e3", "0x10", "NaN"]
NON_FINITE = ["nan", "inf", "-inf", "Infinity", "1e999", "-1e999"]
INTEGER_BAD = [*WRONG_TYPE, "inf", "-inf", "-1", HUGE]
FLOAT_BAD = ["abc", "", "0x1p3", *NON_FINITE, "-1", "1e39"]  # 1e39: inf in float32

TRAIN_INTEGERS = {
    "--latent-dim": INTEGER_BAD + ["0"],
    "--hidden-units": INTEGER_BAD + ["0", "16,0", "16,abc", ","],
    "--num-samples": INTEGER_BAD + ["0"],
    "--kl-warmup-steps": INTEGER_BAD,
    "--epochs": INTEGER_BAD + ["0"],
    "--batch-size": INTEGER_BAD + ["0"],
    "--steps-per-execution": INTEGER_BAD + ["0"],
    "--seed": INTEGER_BAD + [str(2**32)],
    "--verbose": INTEGER_BAD + ["3"],
    # 0 steps / components is what the gaussian posterior / normal prior have (accepted);
    # 0 with the part is refused (tests/test_cli_train.py)
    "--flow-steps": INTEGER_BAD,
    "--flow-hidden-units": INTEGER_BAD + ["0", "16,0"],
    "--prior-components": INTEGER_BAD,
    "--num-classes": INTEGER_BAD + ["0"],
    "--kl-warmup-epochs": INTEGER_BAD,
    "--early-stopping-patience": INTEGER_BAD,
    "--validation-examples": INTEGER_BAD,  # HUGE: more than the training set
    "--device-data-limit-mb": INTEGER_BAD,
    "--memory-limit-mb": INTEGER_BAD,
}
TRAIN_FLOATS = {
    "--beta": FLOAT_BAD,
    "--learning-rate": FLOAT_BAD + ["0"],
    "--likelihood-scale": FLOAT_BAD + ["0"],
    # refused without their schedule too; tests/test_recipes.py checks them with it
    "--learning-rate-decay": FLOAT_BAD + ["0", "1.5"],
    "--learning-rate-alpha": FLOAT_BAD + ["1.5"],
    "--adam-beta-1": FLOAT_BAD + ["1"],
    "--adam-beta-2": FLOAT_BAD + ["1"],
    "--adam-epsilon": FLOAT_BAD + ["0"],
}
EVALUATE = {
    "--importance-samples": INTEGER_BAD + ["0"],
    "--batch-size": INTEGER_BAD + ["0"],
    "--seed": INTEGER_BAD + [str(2**32)],
    "--chunk-size": INTEGER_BAD + ["0"],
    "--max-examples": [v for v in INTEGER_BAD if v != HUGE] + ["0"],  # huge = the whole split
    "--verbose": INTEGER_BAD + ["2"],
}
TEMPERATURE = {"--temperature": FLOAT_BAD + ["0", "1001"]}
SAMPLE = {
    "--num-samples": INTEGER_BAD + ["0"],
    "--seed": INTEGER_BAD + [str(2**32)],
    "--label": INTEGER_BAD + ["0", "alll"],  # the run is not conditional: any label is refused
    **TEMPERATURE,
}
RECONSTRUCT = {"--num-examples": INTEGER_BAD + ["0"]}
EXPORT = {
    "--version": INTEGER_BAD + ["0", str(2**63)],
    "--max-samples-per-request": INTEGER_BAD + ["0", str(2**31)],
    "--score-samples": INTEGER_BAD + ["0", "100001"],
    **TEMPERATURE,
}
SCORE = {
    "--importance-samples": INTEGER_BAD + ["0", "100001"],
    "--seed": INTEGER_BAD + [str(2**32)],
    "--max-examples": [v for v in INTEGER_BAD if v != HUGE] + ["0"],  # huge = the whole split
    "--verbose": INTEGER_BAD + ["2"],
}
CALIBRATE = {**SCORE, "--false-positive-rate": FLOAT_BAD + ["0", "1", "1.0", "2"]}
FIT_SAMPLER = {
    "--components": INTEGER_BAD + ["0", "1001"],
    "--seed": INTEGER_BAD + [str(2**32)],
}


# calibration.json fields edited by hand (raw JSON text): every reader refuses them.
JSON_WRONG_TYPE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "true", "null", '"1"', "[]"]
# Issue 24 item 6: nested 100,000 deep, and an integer of 5,000 digits
JSON_HOSTILE = ["[" * 100_000 + "]" * 100_000, "9" * 5000]
CALIBRATION_JSON = {
    "threshold": [*JSON_WRONG_TYPE[:6], "1e39", "-1e39", "null", '"-10.5"', str(10**400)],
    "seed": [*JSON_WRONG_TYPE, "-1", str(2**32), "1.5", "0.0", *JSON_HOSTILE],
    "importance_samples": [*JSON_WRONG_TYPE, "0", "1.5", "100.0", "100001"],
    "false_positive_rate": [*JSON_WRONG_TYPE, "0", "1", "-0.1", '"0.2"'],
    "examples": [*JSON_WRONG_TYPE, "0", "1.5"],
    "flagged": [*JSON_WRONG_TYPE, "-1", "11"],  # 11: more than the 10 examples
    "format_version": ["0", "2", "true", '"1"', "1.5", "null"],
    "score": ['"elbow"', "null", "1", '"ELBO"'],
    "anomaly_if": ['"above"', "null", "1"],
}


# config.json fields edited by hand: `evaluate` (and every reader of the run) refuses them.
CONFIG_JSON = {
    "training.epochs": [*JSON_WRONG_TYPE, "0", *JSON_HOSTILE],
    "model.latent_dim": [*JSON_WRONG_TYPE, "0", *JSON_HOSTILE],
    "runtime.seed": ["-1", str(2**32), "1.5", *JSON_HOSTILE],
    "runtime.device_data_limit_mb": ["-1", '"AUTO"', "1.5", "true", *JSON_HOSTILE],
}


def grid(flags: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(flag, value) for flag, values in flags.items() for value in values]


@pytest.fixture(scope="module")
def workspace(tiny_run_dir, tmp_path_factory):
    """A copy of a finished run and the places the commands would write to, all watched."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    shutil.copytree(tiny_run_dir, run)
    return root, run


def assert_refused(argv: list[str], workspace, capsys) -> None:
    root, _ = workspace
    assert_exit_2_and_unchanged(argv, [root], capsys, "error")


@pytest.mark.parametrize(("flag", "value"), grid({**TRAIN_INTEGERS, **TRAIN_FLOATS}))
def test_train(flag, value, workspace, capsys):
    root, _ = workspace
    base = ["--dataset=digits", "--epochs=1", "--latent-dim=2", "--hidden-units=8", "--verbose=0"]
    assert_refused(
        ["train", f"--output={root / 'new_run'}", *base, f"{flag}={value}"], workspace, capsys
    )
    assert not (root / "new_run").exists()


@pytest.mark.parametrize(("flag", "value"), grid(EVALUATE))
def test_evaluate(flag, value, workspace, capsys):
    _, run = workspace
    assert_refused(["evaluate", str(run), "-k", "2", f"{flag}={value}"], workspace, capsys)


# The commands that write an --out file or folder: its name under the workspace, their flags.
WRITERS = {
    "sample": ("samples.png", SAMPLE),
    "reconstruct": ("reconstructions.png", RECONSTRUCT),
    "export": ("export", EXPORT),
    "score": ("scores.csv", SCORE),
}


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [(command, *bad) for command, (_, flags) in WRITERS.items() for bad in grid(flags)],
)
def test_a_writing_command(command, flag, value, workspace, capsys):
    root, run = workspace
    out = root / WRITERS[command][0]
    assert_refused([command, str(run), "--out", str(out), f"{flag}={value}"], workspace, capsys)
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value"), grid(CALIBRATE))
def test_calibrate(flag, value, workspace, capsys):
    _, run = workspace
    rate = [] if flag == "--false-positive-rate" else ["--false-positive-rate=0.1"]
    assert_refused(["calibrate", str(run), *rate, f"{flag}={value}"], workspace, capsys)


@pytest.mark.parametrize(("flag", "value"), grid(FIT_SAMPLER))
def test_fit_sampler(flag, value, workspace, capsys):
    _, run = workspace
    assert_refused(["fit-sampler", str(run), f"{flag}={value}"], workspace, capsys)


@pytest.fixture(scope="module")
def calibrated_workspace(tiny_run_dir, tmp_path_factory):
    """A copy of a run with a calibration.json keras-vae wrote (its text kept to edit)."""
    import numpy as np

    from keras_vae.calibration import CALIBRATION_FILE, calibration_record, write_calibration

    root = tmp_path_factory.mktemp("fuzz_calibration")
    run = root / "run"
    shutil.copytree(tiny_run_dir, run)
    record = calibration_record(np.arange(10.0), "log_likelihood", 0.2, 100, 0, {"dataset": "t"})
    write_calibration(run, record)
    return root, run, json.loads((run / CALIBRATION_FILE).read_text())


@pytest.mark.parametrize(("field", "raw"), grid(CALIBRATION_JSON))
def test_calibration_json(field, raw, calibrated_workspace, capsys):
    """score --is-anomaly and export refuse an edited calibration.json field; nothing made."""
    root, run, record = calibrated_workspace
    text = json.dumps({**record, field: "@@"}).replace('"@@"', raw)
    (run / "calibration.json").write_text(text)
    out = root / "scores.csv"
    for argv in (
        ["score", str(run), "--out", str(out), "--is-anomaly", "--verbose=0"],
        ["export", str(run), "--out", str(root / "export")],
    ):
        assert_exit_2_and_unchanged(argv, [root], capsys, "calibration.json")
    assert not out.exists() and not (root / "export").exists()


@pytest.mark.parametrize(("field", "raw"), grid(CONFIG_JSON), ids=lambda v: str(v)[:20])
def test_config_json(field, raw, workspace, capsys):
    """evaluate refuses an edited config.json field with one line naming the file."""
    root, run = workspace
    path = run / "config.json"
    original = path.read_text()
    section, key = field.split(".")
    values = json.loads(original)
    values[section][key] = "@@"
    try:
        path.write_text(json.dumps(values).replace('"@@"', raw))
        assert_exit_2_and_unchanged(
            ["evaluate", str(run), "-k", "2"], [root], capsys, "config.json"
        )
    finally:
        path.write_text(original)


def test_the_grid_covers_every_numeric_flag():
    """A new numeric flag must join the grid: compare with the parsers' own arguments."""
    from keras_vae.cli import build_parser

    covered = {
        "train": {*TRAIN_INTEGERS, *TRAIN_FLOATS},
        "evaluate": set(EVALUATE),
        "sample": set(SAMPLE),
        "reconstruct": set(RECONSTRUCT),
        "export": set(EXPORT),
        "score": set(SCORE),
        "calibrate": set(CALIBRATE),
        "fit-sampler": set(FIT_SAMPLER),
    }
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        numeric = {
            max(action.option_strings, key=len)
            for action in sub._actions
            if action.option_strings
            and (
                action.type in (int, float) or getattr(action.type, "__name__", "") in NUMERIC_TYPES
            )
        }
        assert numeric <= covered[name], (name, numeric - covered[name])
        assert covered[name] <= numeric | STRING_PARSED_NUMBERS, (name, covered[name] - numeric)


# Flags parsed by a named function rather than int/float, and flags read as text then
# converted by the config (so argparse's type is str).
NUMERIC_TYPES = {
    "hidden_units",
    "flow_hidden_units",
    "steps_per_execution",
    "device_data_limit_mb",
    "memory_limit_mb",
    "validation_examples",
    "image_count",
    "class_label",
    "_rate",
}
STRING_PARSED_NUMBERS = {"--likelihood-scale"}


# Every path argument given empty or blank, run from the watched folder: an empty path would
# silently mean that folder (export and train wrote into it, TFDS downloaded into it).
TRAIN_BASE = ["--dataset=digits", "--epochs=1", "--latent-dim=2", "--hidden-units=8"]
PATH_ARGUMENTS = {  # (command, dest): argv with P where the path goes; RUN the finished run
    ("train", "output"): ["train", "--output", "P", *TRAIN_BASE],
    ("train", "data_dir"): ["train", "--output", "new_run", *TRAIN_BASE, "--data-dir", "P"],
    ("evaluate", "run_dir"): ["evaluate", "P", "-k", "2"],
    ("evaluate", "data_dir"): ["evaluate", "RUN", "--dataset", "mnist", "--data-dir", "P"],
    ("sample", "run_dir"): ["sample", "P", "--out", "s.png"],
    ("sample", "out"): ["sample", "RUN", "--out", "P"],
    ("reconstruct", "run_dir"): ["reconstruct", "P", "--out", "r.png"],
    ("reconstruct", "out"): ["reconstruct", "RUN", "--out", "P"],
    ("reconstruct", "data_dir"): ["reconstruct", "RUN", "--out", "r.png", "--data-dir", "P"],
    ("export", "run_dir"): ["export", "P", "--out", "export"],
    ("export", "out"): ["export", "RUN", "--out", "P"],
    ("score", "run_dir"): ["score", "P", "--out", "s.csv"],
    ("score", "out"): ["score", "RUN", "--out", "P"],
    ("score", "data_dir"): ["score", "RUN", "--out", "s.csv", "--data-dir", "P"],
    ("calibrate", "run_dir"): ["calibrate", "P", "--false-positive-rate=0.1"],
    ("calibrate", "data_dir"): ["calibrate", "RUN", "--false-positive-rate=0.1", "--data-dir", "P"],
    ("fit-sampler", "run_dir"): ["fit-sampler", "P"],
    ("fit-sampler", "data_dir"): ["fit-sampler", "RUN", "--data-dir", "P"],
}


@pytest.mark.parametrize("value", ["", " "])
@pytest.mark.parametrize("case", sorted(PATH_ARGUMENTS), ids="-".join)
def test_an_empty_path_is_refused_by_name(case, value, workspace, capsys, monkeypatch):
    root, run = workspace
    monkeypatch.chdir(root)
    argv = [{"P": value, "RUN": str(run)}.get(arg, arg) for arg in PATH_ARGUMENTS[case]]
    assert_exit_2_and_unchanged(argv, [root], capsys, "expected a non-empty path")


def test_every_path_argument_is_checked_and_in_the_grid():
    """A new path argument must refuse an empty value and join PATH_ARGUMENTS."""
    from keras_vae.cli import build_parser
    from keras_vae.cli.arguments import path_text

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    paths = {"output", "out", "run_dir", "data_dir"}
    found = set()
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest in paths:
                found.add((name, action.dest))
                # train's --data-dir is a config field: DataConfig refuses it (same message)
                checked_by_config = (name, action.dest) == ("train", "data_dir")
                assert action.type is path_text or checked_by_config, (name, action)
    assert found == set(PATH_ARGUMENTS)
