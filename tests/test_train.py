"""`train_and_evaluate`, the whole main job: it learns on real MNIST, its run directory is
enough to rerun, and bad data stops it before anything is written."""

import json

import keras
import numpy as np
import pytest

from keras_vae import Config, DataError, train_and_evaluate
from keras_vae.data import load_splits, make_datasets, to_unit_interval
from keras_vae.train import build_model

PIXEL_LOG_FLOOR = 1e-3  # keeps log p finite for pixels never lit in the training set


def independent_pixel_log_likelihood(mnist_dir: str, test_data) -> float:
    """Mean test log-likelihood of the best model that ignores z: a Bernoulli per pixel whose
    probability is that pixel's mean intensity over the training set."""
    train = load_splits(mnist_dir)["train"]
    p = to_unit_interval(train.images).mean(axis=0).astype(np.float64)
    p = np.clip(p, PIXEL_LOG_FLOOR, 1 - PIXEL_LOG_FLOOR)
    x = np.concatenate([x for x, _ in test_data.as_numpy_iterator()]).astype(np.float64)
    return float((x * np.log(p) + (1 - x) * np.log1p(-p)).sum(axis=(1, 2)).mean())


@pytest.mark.slow
def test_a_few_hundred_steps_on_real_mnist_raise_the_test_elbo(shared_data_dir, tmp_path):
    """300 Adam steps (1 epoch, batch 200) of the 784-400-20 MLP on MNIST read through the
    IDX-folder source, dynamically binarized.

    Margins, both measured with room to spare (seeds 0 and 1: test ELBO -134.7 and -136.5):
    - from the untrained model (about -784 log 2 = -543 nats; measured -549 / -552): up by
      more than 300 nats;
    - above the best model that ignores z (a Bernoulli per pixel at the training mean,
      -206 nats, computed here) by more than 40 nats, so the latent code is being used.
    """
    mnist = str(shared_data_dir / "mnist")
    config = Config.from_dict(
        {
            "data": {"dataset": mnist, "binarization": "dynamic"},
            "training": {"epochs": 1, "batch_size": 200, "learning_rate": 1e-3},
            "runtime": {"seed": 0},
        }
    )
    _, test_data, info = make_datasets(config.data, 200, config.runtime.seed)
    assert (info.num_train, info.num_test, info.data_shape) == (60000, 10000, (28, 28))
    keras.utils.set_random_seed(config.runtime.seed)
    untrained = build_model(config, info).evaluate(test_data, return_dict=True, verbose=0)
    no_latent = independent_pixel_log_likelihood(mnist, test_data)
    assert -560 < untrained["elbo"] < -530
    assert -215 < no_latent < -195

    metrics = train_and_evaluate(config, tmp_path / "run", verbose=0)
    assert metrics["epochs"] == 1
    assert len(metrics["history"]["elbo"]) == 1
    assert metrics["test_elbo"] > untrained["elbo"] + 300, (metrics, untrained)
    assert metrics["test_elbo"] > no_latent + 40, (metrics["test_elbo"], no_latent)
    assert metrics["test_kl"] > 5  # the posterior moved away from the prior
    assert abs(metrics["train_elbo"] - metrics["test_elbo"]) < 10  # no overfitting in 1 epoch


@pytest.mark.slow
def test_config_json_is_enough_to_rerun(tiny_run_dir, tmp_path):
    """Rerunning RUN_DIR/config.json reproduces metrics.json (CPU runs are deterministic)."""
    config = Config.from_json((tiny_run_dir / "config.json").read_text())
    written = json.loads((tiny_run_dir / "metrics.json").read_text())
    again = train_and_evaluate(config, tmp_path / "rerun", verbose=0)
    assert json.loads((tmp_path / "rerun" / "metrics.json").read_text()) == again
    for key in ("train_elbo", "test_elbo", "test_kl", "test_reconstruction", "epochs"):
        assert again[key] == written[key], key
    assert again["history"] == written["history"]


def test_bad_data_stops_the_job_before_it_writes(tmp_path):
    run_dir = tmp_path / "run"
    config = Config.from_dict({"data": {"dataset": str(tmp_path / "missing.npz")}})
    with pytest.raises(DataError, match="missing.npz"):
        train_and_evaluate(config, run_dir, verbose=0)
    assert not run_dir.exists()
