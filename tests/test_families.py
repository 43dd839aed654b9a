"""The model families through the real job: each family trained by `train_and_evaluate` on
real MNIST reaches a test log p(x) at least as high as the plain VAE's after the same steps,
and run folders written before the parts existed still load, resume and count as finished."""

from __future__ import annotations

import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from helpers import (
    EPOCHS,
    HIDDEN_UNITS,
    LATENT_DIM,
    SEED,
    FailAt,
    assert_same_results,
    standard_error,
    train_run,
)

from keras_vae.config import Config
from keras_vae.data.sources import to_unit_interval

# k >= 500 importance samples on the held-out images of `mnist_run`, one fixed seed: the
# same draws for every model, so the paired difference has a small standard error.
IMPORTANCE_SAMPLES = 500
FAMILIES = {
    "iwae_k5": {"objective": "iwae", "num_samples": 5},
    "iaf": {"posterior": "iaf", "flow_hidden_units": [128]},
    "vamp": {"prior": "vamp", "prior_components": 50},
    "mixture": {"prior": "mixture", "prior_components": 10},
}
NEW_MODEL_KEYS = (
    "posterior",
    "flow_steps",
    "flow_hidden_units",
    "prior",
    "prior_components",
    "objective",
)


def held_out_images(run_dir: pathlib.Path) -> np.ndarray:
    dataset = json.loads((run_dir / "config.json").read_text())["data"]["dataset"]
    with np.load(dataset) as arrays:
        return to_unit_interval(arrays["x_test"])  # as the job feeds them


def test_log_likelihood(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.log_likelihood(x, num_samples=IMPORTANCE_SAMPLES, seed=SEED))


test_log_likelihood.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def plain(mnist_run, mnist_model):
    x = held_out_images(mnist_run)
    return x, test_log_likelihood(mnist_model, x)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_beats_the_plain_vae_after_the_same_steps(family, plain, mnist_run, tmp_path):
    from keras_vae.run_reader import load_run

    x, plain_ll = plain
    base = json.loads((mnist_run / "config.json").read_text())
    config = {
        "model": {
            "latent_dim": LATENT_DIM,
            "hidden_units": list(HIDDEN_UNITS),
            **FAMILIES[family],
        },
        "data": {"dataset": base["data"]["dataset"]},
        "training": {"epochs": EPOCHS, "batch_size": base["training"]["batch_size"]},
        "runtime": {"seed": SEED},
    }
    run = load_run(train_run(tmp_path, config))
    assert run.config.model.posterior == FAMILIES[family].get("posterior", "gaussian")
    assert run.metrics["history"]["elbo"] and len(run.metrics["history"]["elbo"]) == EPOCHS
    family_ll = test_log_likelihood(run.model, x)
    difference = family_ll - plain_ll  # paired: the same images and importance seed
    margin, error = float(difference.mean()), float(standard_error(difference))
    print(
        f"{family}: log p(x) {family_ll.mean():.2f} vs {plain_ll.mean():.2f}, "
        f"paired difference {margin:+.2f} +- {error:.2f} nats"
    )
    assert np.all(np.isfinite(family_ll))
    assert margin >= -error, (family, margin, error)
    if family == "iwae_k5":
        assert run.metrics["test_iwae"] >= run.metrics["test_elbo"]


def _strip_part_keys(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in NEW_MODEL_KEYS}


def test_a_run_written_before_the_parts_existed_loads_and_stays_finished(
    tiny_run_dir, tmp_path, capsys
):
    """config.json and model.keras without the part keys (as version 1 wrote them): the
    same model, and the same train command finds the run finished and changes nothing."""
    from helpers import tree_digest

    from keras_vae.cli import main
    from keras_vae.run_reader import load_model

    run = pathlib.Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    config_path = run / "config.json"
    values = json.loads(config_path.read_text())
    values["model"] = _strip_part_keys(values["model"])
    config_path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    archive = run / "model.keras"
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                model = json.loads(data)
                model["config"] = _strip_part_keys(model["config"])
                data = json.dumps(model).encode()
            target.writestr(item, data)
    x = np.random.default_rng(0).uniform(size=(5, 8, 8)).astype(np.float32)
    expected = np.asarray(load_model(run)(x))
    shutil.move(old, archive)
    loaded = load_model(run)
    np.testing.assert_array_equal(np.asarray(loaded(x)), expected)
    assert (loaded.posterior_name, loaded.prior_name, loaded.objective) == (
        "gaussian",
        "normal",
        "elbo",
    )
    assert Config.from_dict(values) == Config.from_dict(json.loads(config_path.read_text()))
    before = tree_digest(run, modes=True)
    argv = ["train", "--output", str(run), "--dataset", "digits", "--latent-dim", "2"]
    argv += ["--hidden-units", "16", "--epochs", "2", "--batch-size", "64"]
    assert main(argv) == 0, capsys.readouterr().err[-500:]
    assert tree_digest(run, modes=True) == before


def test_a_family_run_killed_mid_training_resumes_to_the_same_numbers(tmp_path):
    """IAF posterior + VampPrior + IWAE in one run: interrupted after epoch index 1 (its
    backup holds the MADE, pseudo-input and optimizer state), rerun, equal to uninterrupted."""
    from keras_vae.train import train_and_evaluate

    config = Config.from_dict(
        {
            "model": {
                "latent_dim": 2,
                "hidden_units": [16],
                "posterior": "iaf",
                "flow_hidden_units": [8],
                "prior": "vamp",
                "prior_components": 5,
                "objective": "iwae",
                "num_samples": 3,
            },
            # without XLA: compiling these parts costs more than the test's training here;
            # the resume logic is the same (tests/test_fast_path.py covers XLA resumes)
            "training": {"epochs": 3, "batch_size": 64, "jit_compile": False},
            "runtime": {"seed": 3},
        }
    )
    uninterrupted = train_and_evaluate(config, tmp_path / "whole", verbose=0)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_and_evaluate(config, tmp_path / "resumed", verbose=0, callbacks=[FailAt(epoch=1)])
    resumed = train_and_evaluate(config, tmp_path / "resumed", verbose=0)
    assert resumed["resumed_from_epoch"] == 1
    assert "test_iwae" in resumed and "iwae" in resumed["history"]
    assert_same_results(resumed, uninterrupted)


ROUND_TRIP_PARTS = {
    "iwae": {"objective": "iwae", "num_samples": 3},
    "iaf": {"posterior": "iaf", "flow_hidden_units": [8]},
    "vamp": {"prior": "vamp", "prior_components": 4},
    "mixture": {"prior": "mixture", "prior_components": 3, "estimator": "monte_carlo"},
    "iaf_vamp_conv": {
        "posterior": "iaf",
        "flow_hidden_units": [8],
        "prior": "vamp",
        "prior_components": 2,
        "architecture": "conv",
        "hidden_units": [4],
    },
}


@pytest.mark.parametrize("parts", list(ROUND_TRIP_PARTS))
def test_each_part_round_trips_through_keras_files(parts, tmp_path):
    """`.keras` save and load: the same config and bitwise the same outputs, the parts'
    own (log q from the flow, log p(z) of the mixture, prior samples) included; weights
    perturbed first, since a fresh IAF is the identity and a fresh mixture uniform."""
    from helpers import assert_save_load_round_trip

    from keras_vae.model import VAE

    options = {"latent_dim": 2, "hidden_units": [8], **ROUND_TRIP_PARTS[parts]}
    vae = VAE(data_shape=(8, 8), seed=1, **options)
    rng = np.random.default_rng(0)
    for weight in vae.weights:
        if weight.trainable:
            weight.assign(weight.numpy() + rng.normal(scale=0.2, size=weight.shape))
    x = rng.uniform(size=(6, 8, 8)).astype(np.float32)
    loaded = assert_save_load_round_trip(vae, x, tmp_path)
    noise = rng.standard_normal((6, 2)).astype(np.float32)
    for a, b in zip(vae.posterior_sample(x, noise), loaded.posterior_sample(x, noise)):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    np.testing.assert_array_equal(
        np.asarray(loaded.log_likelihood(x, num_samples=16, seed=3)),
        np.asarray(vae.log_likelihood(x, num_samples=16, seed=3)),
    )
    np.testing.assert_array_equal(
        np.asarray(loaded.sample_prior(5, seed=4)), np.asarray(vae.sample_prior(5, seed=4))
    )
    assert (loaded.posterior_name, loaded.prior_name, loaded.objective) == (
        vae.posterior_name,
        vae.prior_name,
        vae.objective,
    )
