"""Shared pytest fixtures."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


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
