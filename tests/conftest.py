"""Shared pytest fixtures: the real datasets, and runs of the real train job made once per test
session (a tiny one on the bundled digits, one on 2,048 MNIST images) with one export of the
MNIST run. Treat the session fixtures as read-only: `shutil.copytree` a run (or take
`run_copy`) before changing anything inside; export into folders of your own."""

import inspect
import os
import pathlib
import re
import shutil

import helpers as shared_helpers
import numpy as np
import pytest
from helpers import (
    BATCH_SIZE,
    EPOCHS,
    HIDDEN_UNITS,
    LATENT_DIM,
    SEED,
    TEST_EXAMPLES,
    TRAIN_EXAMPLES,
    train_run,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Programs the tests start in their own processes, not test modules: `--doctest-modules` must
# not import them (mirrored_main.py configures logical devices at import).
collect_ignore = ["mirrored_main.py", "multi_worker_main.py", "train_driver.py"]


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


# The test files that take longest (serial seconds on the 2-core CI machine, pytest
# --durations), run first: pytest-xdist (`-n 2 --dist loadfile` in pyproject.toml) hands out
# whole files in collection order, so longest-first lets the two workers finish together
# instead of one finishing a long file alone at the end. Order only; every test still runs.
LONGEST_FILES_FIRST = (
    "test_export_transaction.py",
    "test_fast_path.py",
    "test_model.py",
    "test_families.py",
    "test_multi_worker.py",
    "test_resume.py",
    "test_conditional.py",
    "test_export_versions.py",
    "test_export_model_kinds.py",
    "test_distribute.py",
    "test_cli_train.py",
    "test_export_tflite.py",
    "test_train.py",
    "test_ownership.py",
    "test_export_scorer.py",
    "test_export_saved_model.py",
    "test_families_distribute.py",
    "test_anomaly.py",
    "test_export_limits.py",
)


# The test tiers (CONTRIBUTING.md): `pytest -m "not slow and not integration"` is the fast one,
# marked here by what the code does, read from its source:
# - integration: a fixture the test uses (directly or through other fixtures) trains a run,
#   exports a model, starts a (fake) server or another process, or runs a `keras-vae` command
#   (conftest's tiny_run_dir, mnist_run and mnist_export, the test modules' own runs, exports
#   and servers), or the test is in an export module (test_export_*.py: every test exports);
# - slow: the test's own code, or a function of the tests that it calls, trains a run,
#   exports, starts a server or a process, fits, evaluates or saves and reloads a model, or
#   runs a `keras-vae` command to success (a refused one, exit 2, is quick); or it reads the
#   real datasets (shared_data_dir); or it is a docstring example that trains, fits, saves
#   or exports.
# Everything else (config, argument and data checks, the maths on small tensors, the client
# against fakes) is the fast tier. Every test still runs in CI (`pytest -q`).
BUILDS = (
    r"train_run|train_and_evaluate|export_run|write_checked_exports|write_encoder|write_decoder"
    r"|write_scorer|write_litert_models|write_tflite|serving|run_python|run_command"
    r"|run_result_program|subprocess\.run|Popen|Cluster"
)
FITS = r"fit|train_on_batch|evaluate|save|save_to_preset|load_model|from_preset|RunBackup"
BUILDS_CALL = re.compile(rf"\b({BUILDS}|main)\(")
# ...and in a test's code: a command run to success (`main([...]) == 0`), fixtures chosen at
# run time (`request.getfixturevalue`: the rule cannot see which, so it assumes the worst)
COSTLY_CALL = re.compile(rf"\b({BUILDS}|{FITS}|getfixturevalue)\(|\bmain\(.*\) == 0")
# ...and in a docstring example: it trains a run, exports, starts a process, fits or saves
EXAMPLE_COSTLY_CALL = re.compile(rf"\b({BUILDS}|{FITS})\(")
CALLED_NAME = re.compile(r"\b([A-Za-z_]\w*)\(")
TESTS_DIR = pathlib.Path(__file__).resolve().parent
INTEGRATION_MODULES = "test_export_*.py"
REAL_DATA_FIXTURE = "shared_data_dir"


def source_of(function) -> str:
    """`function`'s source, "" without one (a builtin fixture such as tmp_path)."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def is_costly(function, namespace: dict, pattern: re.Pattern, depth: int = 2) -> bool:
    """Whether `function`'s source calls something `pattern` names, or calls a function of the
    tests (found in `namespace`, its module's globals, or in helpers.py) that does, `depth`
    calls down."""
    source = source_of(function)
    if pattern.search(source):
        return True
    if depth == 0:
        return False
    names = set(CALLED_NAME.findall(source))  # helpers.py's too: tests import it locally
    helpers = [namespace.get(name, getattr(shared_helpers, name, None)) for name in names]
    return any(
        is_costly(helper, helper.__globals__, pattern, depth - 1)
        for helper in helpers
        if inspect.isfunction(helper) and helper is not function and _in_tests(helper)
    )


def _in_tests(function) -> bool:
    return pathlib.Path(inspect.getsourcefile(function) or "").parent == TESTS_DIR


def tier_marks(item) -> set[str]:
    """The tier marks `item` gets: "integration" and/or "slow" (see the comment above)."""
    function = getattr(item, "function", None)
    if function is None:  # a docstring example of keras_vae
        examples = getattr(getattr(item, "dtest", None), "examples", [])
        return {"slow"} if any(EXAMPLE_COSTLY_CALL.search(e.source) for e in examples) else set()
    marks = set()
    # pytest's resolved closure of the test's fixtures (no public API gives their functions)
    fixtures = [defs[-1].func for defs in item._fixtureinfo.name2fixturedefs.values()]
    if item.path.match(INTEGRATION_MODULES) or any(
        is_costly(f, f.__globals__, BUILDS_CALL, depth=0) for f in fixtures
    ):
        marks.add("integration")
    if REAL_DATA_FIXTURE in item.fixturenames or is_costly(
        function, function.__globals__, COSTLY_CALL
    ):
        marks.add("slow")
    return marks


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in sorted(tier_marks(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, mark))
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: same order within


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The real datasets (MNIST IDX, binarized MNIST, Frey faces), never copied into the repo.

    `KERAS_VAE_SHARED_DATA` if set, else ``<repo>/../shared/data``. Missing: skip locally, fail
    in CI (env `CI` set), because CI must test the real data.
    """
    default = REPO_ROOT.parent / "shared" / "data"
    path = pathlib.Path(os.environ.get("KERAS_VAE_SHARED_DATA", default))
    if not path.is_dir():
        message = f"Real data not found at {path}; set KERAS_VAE_SHARED_DATA to its folder."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> pathlib.Path:
    """A finished run of the real train job on the bundled 8x8 digits (2 epochs, latent 2)."""
    config = {
        "model": {"latent_dim": 2, "hidden_units": [16]},
        "training": {"epochs": 2, "batch_size": 64},
    }
    return train_run(tmp_path_factory.mktemp("tiny_run"), config)


@pytest.fixture
def run_copy(tiny_run_dir, tmp_path) -> pathlib.Path:
    """A private copy of `tiny_run_dir` (8x8, Bernoulli, latent 2), free to change or damage."""
    return pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory, shared_data_dir) -> pathlib.Path:
    """A run of the real train job fitted for 2 epochs on the first 2,048 MNIST training
    images (held out: the first 512 test images), latent 20, one hidden layer of 128. The
    npz holds the labels too (ignored by this unconditional run; a conditional run of the
    same data is its comparison in tests/test_conditional.py)."""
    from keras_vae.data import load_splits

    splits = load_splits(str(shared_data_dir / "mnist"))
    folder = tmp_path_factory.mktemp("mnist_run")
    dataset = folder / f"mnist_{TRAIN_EXAMPLES}.npz"
    np.savez(
        dataset,
        x_train=splits["train"].images[:TRAIN_EXAMPLES],
        x_test=splits["test"].images[:TEST_EXAMPLES],
        y_train=splits["train"].labels[:TRAIN_EXAMPLES],
        y_test=splits["test"].labels[:TEST_EXAMPLES],
    )
    config = {
        "model": {"latent_dim": LATENT_DIM, "hidden_units": list(HIDDEN_UNITS)},
        "data": {"dataset": str(dataset)},
        "training": {"epochs": EPOCHS, "batch_size": BATCH_SIZE},
        "runtime": {"seed": SEED},
    }
    return train_run(folder, config)


@pytest.fixture(scope="session")
def mnist_model(mnist_run):
    """The `VAE` saved in `mnist_run`: the reference every export of it is compared with."""
    from keras_vae.run_reader import load_model

    return load_model(mnist_run)


@pytest.fixture(scope="session")
def mnist_export(mnist_run, tmp_path_factory) -> pathlib.Path:
    """`export_run(mnist_run, OUT, tflite=True)`: OUT holds version 1 (SavedModels, LiteRT
    files, export.json). Read-only; versioning tests export into folders of their own."""
    from keras_vae.export import export_run

    out = tmp_path_factory.mktemp("export") / "export"
    export_run(mnist_run, out, tflite=True)
    return out
