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


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> pathlib.Path:
    """A finished run of the real train job on the bundled 8x8 digits (2 epochs, latent 2).

    Shared by the tests of commands that read a run; treat it as read-only and
    `shutil.copytree` it before changing anything inside.
    """
    from keras_vae.config import Config
    from keras_vae.train import train_and_evaluate

    config = Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "training": {"epochs": 2, "batch_size": 64},
        }
    )
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    train_and_evaluate(config, run_dir, verbose=0)
    return run_dir
