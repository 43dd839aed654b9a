"""The conditional VAE (issue 15) through the real job on real MNIST: the label carries
information (log p(x|y) above the unconditional log p(x) after the same steps, a positive
label-swap gap), samples obey their label, the `.keras` round trip holds, and bad labels or
flags are refused with one line, exit 2 and nothing written."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest
from helpers import (
    EPOCHS,
    HIDDEN_UNITS,
    LATENT_DIM,
    SEED,
    assert_exit_2_and_unchanged,
    standard_error,
    train_run,
)

from keras_vae.data.sources import to_unit_interval

IMPORTANCE_SAMPLES = 500  # k >= 500, the same draws for both models (paired)
# The sampling check: a conditional model with a 2-d latent trained 5 epochs on all 60,000
# MNIST images (~30 s here), and a softmax-regression classifier of real MNIST digits.
SAMPLES_PER_CLASS = 200
MIN_AGREEMENT = 0.8


def _held_out(run_dir: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    dataset = json.loads((run_dir / "config.json").read_text())["data"]["dataset"]
    with np.load(dataset) as arrays:
        return to_unit_interval(arrays["x_test"]), arrays["y_test"].astype(np.int64)


@pytest.fixture(scope="module")
def conditional_run(mnist_run, tmp_path_factory) -> pathlib.Path:
    """`mnist_run`'s config and data (its npz holds the labels) with --conditional."""
    base = json.loads((mnist_run / "config.json").read_text())
    config = {
        "model": {"latent_dim": LATENT_DIM, "hidden_units": list(HIDDEN_UNITS)},
        "data": {"dataset": base["data"]["dataset"]},
        "training": {"epochs": EPOCHS, "batch_size": base["training"]["batch_size"]},
        "runtime": {"seed": SEED},
    }
    config["model"]["conditional"] = True
    return train_run(tmp_path_factory.mktemp("conditional"), config)


def test_the_label_carries_information(conditional_run, mnist_run, mnist_model):
    from keras_vae.evaluate import label_swap_gap
    from keras_vae.importance import estimate_log_likelihood
    from keras_vae.run_reader import load_run

    run = load_run(conditional_run)
    assert run.model.conditional and run.model.num_classes == 10
    assert run.metrics["num_classes"] == 10
    assert run.config.model.conditional and run.config.model.num_classes is None  # from data
    x, y = _held_out(mnist_run)
    given = estimate_log_likelihood(run.model, x, IMPORTANCE_SAMPLES, seed=SEED, labels=y)
    plain = estimate_log_likelihood(mnist_model, x, IMPORTANCE_SAMPLES, seed=SEED)
    difference = given.log_likelihood.astype(np.float64) - plain.log_likelihood
    margin, error = float(difference.mean()), float(standard_error(difference))
    swap = label_swap_gap(run.model, x, y, given, IMPORTANCE_SAMPLES, 100, None, SEED)
    gap, gap_error = swap["test_label_swap_gap"], swap["test_label_swap_gap_stderr"]
    print(
        f"log p(x|y) {given.log_likelihood.mean():.2f} vs log p(x) "
        f"{plain.log_likelihood.mean():.2f}: paired {margin:+.2f} +- {error:.2f} nats; "
        f"label-swap gap {gap:.2f} +- {gap_error:.2f} nats"
    )
    assert margin > 3 * error  # up to log 10 = 2.3 nats: the label is information
    assert margin < np.log(10) + 3 * error + 2.0  # and not more than the label can give
    assert gap > 10 * gap_error  # the model uses the label


def test_samples_obey_their_label(shared_data_dir, tmp_path):
    from keras_vae.data import load_splits
    from keras_vae.run_reader import load_model

    config = {
        "model": {"latent_dim": 2, "hidden_units": [400], "conditional": True},
        "data": {"dataset": str(shared_data_dir / "mnist")},
        "training": {"epochs": 5, "batch_size": 128},
        "runtime": {"seed": SEED},
    }
    model = load_model(train_run(tmp_path, config))
    train = load_splits(str(shared_data_dir / "mnist"))["train"]
    images = to_unit_interval(train.images).reshape(len(train.images), -1)
    keras.utils.set_random_seed(SEED)
    classifier = keras.Sequential([keras.Input((images.shape[1],)), keras.layers.Dense(10)])
    classifier.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    classifier.fit(images, train.labels, batch_size=256, epochs=2, verbose=0)
    agreement = {}
    for label in range(10):
        samples = np.asarray(model.sample(SAMPLES_PER_CLASS, seed=label, labels=label))
        predicted = classifier.predict(samples.reshape(SAMPLES_PER_CLASS, -1), verbose=0)
        agreement[label] = float(np.mean(np.argmax(predicted, axis=1) == label))
    print("share of sample(label=k) classified as k:", agreement)
    assert min(agreement.values()) >= MIN_AGREEMENT, agreement


def test_the_same_z_down_a_column_changes_only_the_class(conditional_run):
    """samples.png's rows: one class each, the same z in a column; rows differ."""
    from keras_vae.run_reader import load_model
    from keras_vae.visualize import class_sample_pixels

    model = load_model(conditional_run)
    z = np.asarray(model.sample_prior(4, seed=1))
    rows = [np.asarray(model.decode(z, k)) for k in (3, 7)]
    # the class changes the image (an unconditional decoder would give exactly 0; after
    # these 32 steps the mean change is about 0.01)
    assert np.abs(rows[0] - rows[1]).mean() > 1e-3
    np.testing.assert_array_equal(np.asarray(model.sample(4, seed=1, labels=3)), rows[0])
    grid = class_sample_pixels(model, columns=4, seed=1, classes=[3, 7])
    again = class_sample_pixels(model, columns=4, seed=1, classes=[3, 7])
    np.testing.assert_array_equal(grid, again)
    figures = sorted(p.name for p in (conditional_run / "figures").iterdir())
    assert "samples.png" in figures and "traversals.png" in figures


def test_a_conditional_model_round_trips_through_keras_files(conditional_run, tmp_path):
    from keras_vae.run_reader import load_model

    model = load_model(conditional_run)
    path = tmp_path / "copy.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, y = _held_out(conditional_run)
    x, y = x[:8], y[:8]
    assert loaded.num_classes == 10
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(x, y)), model.reconstruct(x, y))
    np.testing.assert_array_equal(
        np.asarray(loaded.sample(5, seed=2, labels=y[:5])), model.sample(5, seed=2, labels=y[:5])
    )


# ---------------------------------------------------------------------- bad input
def _npz(path: pathlib.Path, **arrays) -> pathlib.Path:
    rng = np.random.default_rng(0)
    images = {
        "x_train": rng.integers(0, 256, (40, 6, 6)).astype(np.uint8),
        "x_test": rng.integers(0, 256, (10, 6, 6)).astype(np.uint8),
    }
    np.savez(path, **{**images, **arrays})
    return path


BAD_DATA = {
    "no-labels": ({}, ["has no labels", "--conditional"]),
    "label-count": (
        {"y_train": np.zeros(39, np.int64), "y_test": np.zeros(10, np.int64)},
        ["39", "labels for 40 images"],
    ),
    "float-labels": (
        {"y_train": np.full(40, 0.5), "y_test": np.zeros(10)},
        ["y_train", "integer class indices"],
    ),
    "negative-labels": (
        {"y_train": np.full(40, -1, np.int64), "y_test": np.zeros(10, np.int64)},
        ["negative labels"],
    ),
    # no --num-classes: the label itself is named, not a num_classes the user never passed
    "huge-label": (
        {"y_train": np.full(40, 2**40, np.int64), "y_test": np.zeros(10, np.int64)},
        ["largest label is 1099511627776", "100,000 allowed"],
    ),
}


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_labels_exit_2_and_write_nothing(name, tmp_path, capsys):
    arrays, fragments = BAD_DATA[name]
    dataset = _npz(tmp_path / "data.npz", **arrays)
    output = tmp_path / "run"
    argv = ["train", "--dataset", dataset, "--conditional", "--epochs", "1", "--batch-size", "8"]
    argv += ["--output", output]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, *fragments)
    assert not output.exists()


def test_num_classes_below_the_labels_exits_2(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--conditional", "--num-classes", "5"]
    argv += ["--output", tmp_path / "run"]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "reach 9", "--num-classes 10")


@pytest.fixture(scope="module")
def tiny_conditional_run(tmp_path_factory) -> pathlib.Path:
    config = {
        "model": {"latent_dim": 2, "hidden_units": [16], "conditional": True},
        "training": {"epochs": 1, "batch_size": 64},
    }
    return train_run(tmp_path_factory.mktemp("tiny_conditional"), config)


@pytest.mark.parametrize(
    ("label", "fragments"),
    [("10", ["--label 10", "[0, 9]"]), (None, ["conditional", "--label K"])],
)
def test_sample_refuses_a_label_the_run_lacks(
    tiny_conditional_run, label, fragments, tmp_path, capsys
):
    out = tmp_path / "samples.png"
    argv = ["sample", tiny_conditional_run, "--out", out]
    argv += ["--label", label] if label is not None else []
    assert_exit_2_and_unchanged(argv, [tmp_path, tiny_conditional_run], capsys, *fragments)
    assert not out.exists()


def test_sample_label_and_label_all_write_class_grids(tiny_conditional_run, tmp_path, capsys):
    from keras_vae.cli import main

    assert (
        main(
            [
                "sample",
                str(tiny_conditional_run),
                "--label",
                "7",
                "-n",
                "16",
                "--seed",
                "0",
                "--out",
                str(tmp_path / "sevens.png"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["label"] == 7
    assert (
        main(
            [
                "sample",
                str(tiny_conditional_run),
                "--label",
                "all",
                "-n",
                "3",
                "--out",
                str(tmp_path / "all.png"),
            ]
        )
        == 0
    )
    from PIL import Image

    with Image.open(tmp_path / "all.png") as image:
        width, height = image.size
    assert height > 3 * width  # 10 rows of 3


def test_fit_takes_pairs_dicts_numpy_and_tf_data_alike_and_uses_the_labels():
    """(x, y) NumPy, {"x", "label"} NumPy, and tf.data of either: the same steps, bitwise
    the same weights; other labels give other weights (they are used, not ignored)."""
    import tensorflow as tf

    from keras_vae.model import VAE

    rng = np.random.default_rng(0)
    x = (rng.random((64, 6)) < 0.5).astype(np.float32)
    y = rng.integers(0, 3, 64)
    initial = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), num_classes=3).get_weights()

    def trained(data, labels=None):
        vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), num_classes=3, seed=5)
        vae.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        vae.set_weights(initial)
        batching = {} if isinstance(data, tf.data.Dataset) else {"batch_size": 16}
        vae.fit(data, labels, epochs=1, verbose=0, shuffle=False, **batching)
        return [w.numpy() for w in vae.trainable_weights]

    reference = trained(x, y)
    others = {
        "numpy dict": trained({"x": x, "label": y}),
        "tf.data dict": trained(tf.data.Dataset.from_tensor_slices({"x": x, "label": y}).batch(16)),
        "tf.data pairs": trained(tf.data.Dataset.from_tensor_slices((x, y)).batch(16)),
    }
    for name, got in others.items():
        for a, b in zip(got, reference):
            np.testing.assert_array_equal(a, b, err_msg=name)
    shifted = trained(x, (y + 1) % 3)
    assert max(np.abs(a - b).max() for a, b in zip(shifted, reference)) > 1e-4
