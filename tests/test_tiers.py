"""The test tiers tests/conftest.py marks from what the code does (CONTRIBUTING.md): a test is
`integration` when a fixture it uses trains a run, exports, or starts a server or a process,
`slow` when its own code trains, fits, saves or exports; the rest is the fast tier,
`pytest -m "not slow and not integration"`."""

from __future__ import annotations

import sys

import pytest
from helpers import REPO_ROOT, run_command, train_run

TIERS = {"slow", "integration"}
# One test of each kind, in files whose subject is something else:
USES_A_TRAINED_RUN = "tests/test_sample_cli.py::test_sample_png_size_and_seed_reproducibility"
PURE_ARITHMETIC = "tests/test_recipes.py::test_burda_schedule_at_every_stage_boundary"
FITS_A_MODEL = "tests/test_dreg.py::test_dreg_lowers_the_encoder_gradient_variance_at_k_50"
# Docstring examples: one trains a run (slow), one builds a config (fast).
TRAINING_EXAMPLE = "keras_vae/train.py::keras_vae.train.train_and_evaluate"
CONFIG_EXAMPLE = "keras_vae/config/runtime.py::keras_vae.config.runtime.RuntimeConfig"
EXAMPLES = (USES_A_TRAINED_RUN, PURE_ARITHMETIC, FITS_A_MODEL, TRAINING_EXAMPLE, CONFIG_EXAMPLE)


def tiers(node) -> set[str]:
    return {mark.name for mark in node.iter_markers()} & TIERS


@pytest.fixture
def train_on_demand(tmp_path):
    """Trains a run only when called (no test here calls it): the marks come from the code."""
    return lambda: train_run(tmp_path, {"training": {"epochs": 1}})


def test_a_pure_unit_test_carries_no_tier_mark(request):
    assert tiers(request.node) == set()


def test_a_fixture_that_trains_makes_its_tests_integration(request, train_on_demand):
    assert callable(train_on_demand)
    assert tiers(request.node) == {"integration"}


def selected(expression: str) -> set[str]:
    """The node ids among the examples that `pytest -m EXPRESSION` selects."""
    paths = [str(REPO_ROOT / test) for test in EXAMPLES]
    options = ["--collect-only", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts="]
    options.append("--doctest-modules")
    done = run_command([sys.executable, "-m", "pytest", *options, "-m", expression, *paths])
    assert done.returncode in (0, 5), done.stdout[-2000:] + done.stderr[-2000:]  # 5: none
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def test_the_real_fixtures_and_tests_land_in_their_tiers():
    """Two collections (each imports TensorFlow): the run user is neither fast nor slow, so it
    is integration only."""
    assert selected("not slow and not integration") == {PURE_ARITHMETIC, CONFIG_EXAMPLE}
    assert selected("slow") == {FITS_A_MODEL, TRAINING_EXAMPLE}
