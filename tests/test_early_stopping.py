"""The validation split and early stopping: held out of the training data, never the test split;
the best validation epoch's weights are kept; a killed run resumes to the same stop.

The strongest check of "never reads the test split": two datasets that differ ONLY in their
test images train to bitwise the same weights and history, early stop included.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FailAt, assert_same_results

from keras_vae import resume
from keras_vae.callbacks import BestEpoch
from keras_vae.config import Config, DataConfig
from keras_vae.data import DataError, load_splits, prepared_splits
from keras_vae.model import VAE
from keras_vae.train import train_and_evaluate


def digits_npz(path, test_images: np.ndarray | None = None):
    """The digits splits as a keras.datasets-layout .npz, optionally with other test images."""
    splits = load_splits("digits")
    x_test = splits["test"].images if test_images is None else test_images
    np.savez(path, x_train=splits["train"].images, x_test=x_test)
    return str(path)


def stopping_config(dataset: str, epochs: int = 40) -> Config:
    """A run whose validation ELBO stops rising within a few epochs (a large Adam step)."""
    return Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "data": {"dataset": dataset, "validation_examples": 300},
            "training": {
                "epochs": epochs,
                "batch_size": 64,
                "learning_rate": 0.05,
                "early_stopping_patience": 2,
            },
            "runtime": {"seed": 3},
        }
    )


# ------------------------------------------------------------------------------ the split
def test_the_validation_split_is_the_last_n_training_examples():
    loaded = load_splits("digits")
    prepared = prepared_splits(
        DataConfig("digits", validation_examples=100), splits=["train", "test", "validation"]
    )
    np.testing.assert_array_equal(prepared["train"].images, loaded["train"].images[:-100])
    np.testing.assert_array_equal(prepared["validation"].images, loaded["train"].images[-100:])
    np.testing.assert_array_equal(prepared["validation"].labels, loaded["train"].labels[-100:])
    np.testing.assert_array_equal(prepared["test"].images, loaded["test"].images)


def test_a_source_validation_split_is_the_sources_own(shared_data_dir):
    path = str(shared_data_dir / "binarized-mnist" / "binarized_mnist.npz")
    config = DataConfig(path, binarization="static", validation_examples="source")
    prepared = prepared_splits(config, splits=["train", "test", "validation"])
    with np.load(path) as npz:
        for split, key in (("train", "train"), ("validation", "valid"), ("test", "test")):
            np.testing.assert_array_equal(prepared[split].images // 255, npz[key])
    with pytest.raises(DataError, match="no validation split of its own"):
        prepared_splits(DataConfig("digits", validation_examples="source"))


# ------------------------------------------------------------------------------ the callback
def fed(stopper: BestEpoch, values: list[float]) -> list[list[np.ndarray]]:
    """Feed `values` as val_elbo, with the weights changed every epoch; the weights seen."""
    model = VAE(data_shape=(3,), latent_dim=1, hidden_units=(2,))
    model.stop_training = False  # as `fit` sets it
    stopper.set_model(model)
    seen = []
    for epoch, value in enumerate(values):
        model.set_weights([w + 1.0 for w in model.get_weights()])
        seen.append(model.get_weights())
        stopper.on_epoch_end(epoch, {"val_elbo": value})
        if model.stop_training:
            break
    stopper.restore_best(model)
    seen.append(model.get_weights())  # last: what restore_best left
    return seen


def test_stops_after_patience_epochs_and_restores_the_best():
    stopper = BestEpoch(patience=2)
    seen = fed(stopper, [-10.0, -5.0, -7.0, -6.0, -1.0])
    assert (stopper.best, stopper.best_epoch, stopper.stopped) == (-5.0, 2, True)
    assert len(seen) == 5  # 4 epochs trained: the stop came before -1.0
    for restored, best in zip(seen[-1], seen[1]):
        np.testing.assert_array_equal(restored, best)


def test_warmup_epochs_and_nan_never_count_as_better():
    stopper = BestEpoch(patience=1, warmup_epochs=3)
    fed(stopper, [-10.0, -11.0, float("nan"), -12.0, -13.0])
    assert (stopper.best_epoch, stopper.stopped, stopper.wait) == (1, True, 1)
    with pytest.raises(KeyError, match="val_elbo"):
        BestEpoch(patience=1).on_epoch_end(0, {"elbo": -1.0})
    with pytest.raises(ValueError, match="patience"):
        BestEpoch(patience=0)


# ------------------------------------------------------------------------------ the job
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stop")
    dataset = digits_npz(folder / "digits.npz")
    return dataset, train_and_evaluate(stopping_config(dataset), folder / "run", verbose=0)


def test_the_job_stops_early_and_keeps_the_best_validation_weights(stopped_run):
    _, metrics = stopped_run
    curve = metrics["history"]["val_elbo"]
    assert metrics["stopped_early"] and metrics["epochs"] < 40, metrics["epochs"]
    assert metrics["best_epoch"] == int(np.argmax(curve)) + 1 < metrics["epochs"]
    assert metrics["epochs"] - metrics["best_epoch"] == 2  # the patience
    # The saved model is the best epoch's: its validation ELBO is the curve's maximum, up to
    # the Monte Carlo noise of one more pass (other draws of z), far closer than the last epoch.
    gap = abs(metrics["validation_elbo"] - max(curve))
    assert gap < 1e-3 * abs(max(curve)) and gap < abs(curve[-1] - max(curve)) / 4, curve
    assert metrics["num_validation"] == 300 and metrics["num_train"] == 1437 - 300


@pytest.mark.parametrize("after_best", [0, 1])
def test_a_killed_run_resumes_to_the_same_stop(stopped_run, tmp_path, after_best):
    """Killed with the best epoch the last one backed up (its weights are the model's: the
    backup holds no copy), or one epoch later (the backup holds the best weights too)."""
    dataset, uninterrupted = stopped_run
    config = stopping_config(dataset)
    kill_at = uninterrupted["best_epoch"] + after_best  # epoch index: before its backup
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="interrupted"):
        train_and_evaluate(config, run_dir, verbose=0, callbacks=[FailAt(epoch=kill_at)])
    state_path = run_dir / "backup" / "state.npz"
    state = resume.read_progress(state_path)["early_stopping"]
    assert state["best_epoch"] == uninterrupted["best_epoch"]
    assert state["best_weights_are_current"] == (after_best == 0)
    assert bool(resume.read_extra_arrays(state_path)) == (after_best == 1)
    assert_same_results(train_and_evaluate(config, run_dir, verbose=0), uninterrupted)


def test_the_test_split_chooses_nothing(stopped_run, tmp_path):
    """Other test images: the same training, stop and weights; only test_* differ."""
    dataset, metrics = stopped_run
    other_test = np.random.default_rng(1).uniform(size=(360, 8, 8)).astype(np.float32)
    other = digits_npz(tmp_path / "other.npz", other_test)
    again = train_and_evaluate(stopping_config(other), tmp_path / "run", verbose=0)
    for key, value in metrics.items():
        if key.startswith("test_"):
            assert again[key] != value, key  # the test split did change
        elif key not in ("dataset", "examples_per_second", "history"):
            assert again[key] == value, key
    for name, curve in metrics["history"].items():
        np.testing.assert_array_equal(again["history"][name], curve, err_msg=name)
