"""The code rules of CONTRIBUTING.md, checked on every run of the suite instead of by memory:
`ruff` clean (lint, type hints on every function of the package and the benchmarks, format),
`mypy` agreeing with those hints, every module of `keras_vae/` and `benchmarks/` under 400
lines with a docstring saying its job."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_command

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MODULES = sorted(
    path for folder in ("keras_vae", "benchmarks") for path in (ROOT / folder).rglob("*.py")
)


def tool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m ARGS` from the repository's root, where pyproject.toml configures it."""
    return run_command([sys.executable, "-m", *args], cwd=ROOT, timeout=timeout)


def ruff(*args: str, target: str = ".") -> subprocess.CompletedProcess:
    """`ruff ARGS TARGET` with pyproject.toml's rules, writing no cache."""
    return tool("ruff", *args, "--no-cache", target)


@pytest.mark.parametrize("args", [("check",), ("format", "--check")], ids=["check", "format"])
def test_ruff_is_clean(args):
    result = ruff(*args)
    assert result.returncode == 0, f"run: ruff {' '.join(args)} .\n{result.stdout}{result.stderr}"


def test_ruff_requires_type_hints_on_the_package_and_benchmarks():
    """pyproject.toml keeps the annotation rules on (a dropped rule would pass the test above)."""
    result = ruff("check", "--show-settings", target="keras_vae/model.py")
    assert result.returncode == 0, result.stderr
    for rule in (
        "missing-type-function-argument",
        "missing-return-type-public-function",
    ):
        assert rule in result.stdout, rule


def test_mypy_agrees_with_the_type_hints(tmp_path):
    """pyproject.toml's [tool.mypy]: the package and the benchmarks, against their own hints
    (TensorFlow, Keras and TFP have none: their values are Any)."""
    result = tool("mypy", "--cache-dir", str(tmp_path), "--no-error-summary", timeout=600)
    assert result.returncode == 0, f"run: mypy\n{result.stdout[-5000:]}{result.stderr[-2000:]}"


def test_modules_are_short_with_a_docstring():
    assert len(MODULES) > 50
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) >= MAX_MODULE_LINES
    }
    assert not long, f"split these modules (one job each, under {MAX_MODULE_LINES} lines): {long}"
    bare = [
        str(p.relative_to(ROOT))
        for p in MODULES
        if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not bare, f"give these modules a docstring saying their job: {bare}"
