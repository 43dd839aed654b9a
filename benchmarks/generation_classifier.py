"""The MNIST classifier the generation benchmark judges samples with: a small Keras conv net
trained once on the real training images, cached outside the repository with its test
accuracy beside it, and its penultimate layer as the feature space of the Fréchet distance
and of precision/recall.

The network: 28x28x1 -> conv 3x3 32 ReLU -> max-pool 2 -> conv 3x3 64 ReLU -> max-pool 2 ->
flatten -> dropout 0.25 -> dense 128 ReLU (the features) -> dense 10 softmax. Adam 1e-3,
batch 128, `keras.utils.set_random_seed(seed)` before building.

Images everywhere are float32 intensities in [0, 1], given as [n, 784], [n, 28, 28] or
[n, 28, 28, 1] (reshaped to [n, 28, 28, 1]).

Example:

>>> as_classifier_input(np.zeros((2, 784), np.float32)).shape
(2, 28, 28, 1)
>>> model, info = load_or_train_classifier(DEFAULT_CACHE, data_dir)  # doctest: +SKIP
>>> features(model, images).shape  # doctest: +SKIP
(10000, 128)
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import common  # first: puts the repository on sys.path
import numpy as np

if TYPE_CHECKING:
    import keras
    import numpy.typing as npt

DEFAULT_CACHE = Path.home() / ".cache" / "keras-vae" / "generation_classifier.keras"
DEFAULT_EPOCHS = 5
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
FEATURE_LAYER = "features"
FEATURE_UNITS = 128
BATCH_SIZE = 128
PREDICT_BATCH_SIZE = 1000
ARCHITECTURE = (
    "conv 3x3 32 ReLU, max-pool 2, conv 3x3 64 ReLU, max-pool 2, dropout 0.25, dense 128 ReLU "
    "(features), dense 10 softmax; Adam 1e-3, batch 128"
)


def as_classifier_input(images: npt.ArrayLike) -> np.ndarray:
    """`images` ([n, 784], [n, 28, 28] or [n, 28, 28, 1], values in [0, 1]) as float32
    [n, 28, 28, 1]; a one-line ValueError for any other shape or value."""
    array = np.asarray(images, np.float32)
    if array.ndim < 2 or int(np.prod(array.shape[1:])) != int(np.prod(IMAGE_SHAPE)):
        raise ValueError(
            f"images must be [n, 784], [n, 28, 28] or [n, 28, 28, 1]. Received: shape {array.shape}"
        )
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(
            "images must be finite intensities in [0, 1]. Received: values from "
            f"{np.nanmin(array)} to {np.nanmax(array)}"
        )
    return array.reshape(-1, *IMAGE_SHAPE)


def build_classifier(seed: int) -> keras.Model:
    """The untrained, compiled conv net (its weights drawn from `seed`)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Dense(FEATURE_UNITS, activation="relu", name=FEATURE_LAYER)(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name="generation_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def predict_labels(model: keras.Model, images: npt.ArrayLike) -> np.ndarray:
    """The predicted class of each image, int64 [n], in batches of 1,000."""
    probabilities = model.predict(
        as_classifier_input(images), batch_size=PREDICT_BATCH_SIZE, verbose=0
    )
    return np.argmax(probabilities, axis=1).astype(np.int64)


@functools.lru_cache(maxsize=4)
def feature_extractor(model: keras.Model) -> keras.Model:
    """The model from `model`'s input to its penultimate layer, built once per classifier (so
    its compiled predict function is reused)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(FEATURE_LAYER).output)


def features(model: keras.Model, images: npt.ArrayLike) -> np.ndarray:
    """The penultimate layer's activations, float32 [n, 128], in batches of 1,000."""
    batches = as_classifier_input(images)
    return np.asarray(
        feature_extractor(model).predict(batches, batch_size=PREDICT_BATCH_SIZE, verbose=0),
        np.float32,
    )


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> list[float]:
    """For each class c in 0..9: the fraction of the examples labelled c predicted as c.

    >>> per_class_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))[:2]
    [0.5, 1.0]
    """
    labels = np.asarray(labels)
    return [
        float(np.mean(predicted[labels == c] == c)) if np.any(labels == c) else float("nan")
        for c in range(NUM_CLASSES)
    ]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def info_path(cache: Path) -> Path:
    """Where the record of the cached classifier `cache` lives: the same name, .json."""
    return Path(cache).with_suffix(".json")


def load_cached(
    cache: Path, epochs: int, seed: int, train_examples: int | None
) -> tuple[keras.Model, dict[str, Any]] | None:
    """(model, info) of a valid cached classifier trained as asked, else None: both files
    present, the record's digest, settings and accuracies as expected, the model's input
    [None, 28, 28, 1], its output [None, 10] and its features 128 wide."""
    import keras

    cache, record = Path(cache), info_path(cache)
    if not (cache.is_file() and record.is_file()):
        return None
    try:
        info = json.loads(record.read_text())
        asked = {"epochs": epochs, "seed": seed, "train_examples": train_examples}
        if any(info.get(key) != value for key, value in asked.items()):
            return None
        if info.get("sha256") != file_digest(cache):
            return None
        accuracy, per_class = info["test_accuracy"], info["per_class_test_accuracy"]
        if not (0.0 <= accuracy <= 1.0 and len(per_class) == NUM_CLASSES):
            return None
        model = keras.saving.load_model(cache)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile):
        return None
    shapes = (
        tuple(model.input_shape),
        tuple(model.output_shape),
        model.get_layer(FEATURE_LAYER).units if FEATURE_LAYER in model_layer_names(model) else 0,
    )
    if shapes != ((None, *IMAGE_SHAPE), (None, NUM_CLASSES), FEATURE_UNITS):
        return None
    return model, {**info, "reused": True}


def model_layer_names(model: keras.Model) -> set[str]:
    """The names of a Keras model's layers."""
    return {layer.name for layer in model.layers}


def load_or_train_classifier(
    cache: Path,
    data_dir: Path,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    train_examples: int | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """The classifier cached at `cache` if it is valid and was trained as asked, else one
    trained now on the MNIST IDX folder `data_dir` and saved there (the `.keras` file and a
    `.json` record beside it: settings, SHA-256, test accuracy overall and per class).

    Args:
        cache: the `.keras` file to read or write (its folder is created).
        data_dir: the folder of the four MNIST IDX files.
        epochs: training epochs, >= 1. Defaults to 5.
        seed: seeds the weights and the shuffling. Defaults to 0.
        train_examples: train on the first N training images only (None: all 60,000).

    Returns:
        (model, info): info holds the record and "reused" (True when read from the cache).
    """
    from keras_vae.data import load_splits, to_unit_interval

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be an integer >= 1. Received: epochs={epochs!r}")
    cache = Path(cache).expanduser()
    if cache.suffix != ".keras":
        raise ValueError(f"`cache` must be a .keras file. Received: {cache}")
    cached = load_cached(cache, epochs, seed, train_examples)
    if cached is not None:
        return cached
    splits = load_splits(str(data_dir))
    train, test = splits["train"], splits["test"]
    # MNIST's IDX folders hold labels: neither split's are None
    train_labels, test_labels = cast(np.ndarray, train.labels), cast(np.ndarray, test.labels)
    count = len(train.images) if train_examples is None else train_examples
    model = build_classifier(seed)
    start = time.perf_counter()
    model.fit(
        as_classifier_input(to_unit_interval(train.images[:count])),
        train_labels[:count],
        batch_size=BATCH_SIZE,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    train_seconds = time.perf_counter() - start
    predicted = predict_labels(model, to_unit_interval(test.images))
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.stem + ".partial.keras")
    model.save(partial)
    partial.replace(cache)
    info = {
        "architecture": ARCHITECTURE,
        "data": str(data_dir),
        "epochs": epochs,
        "seed": seed,
        "train_examples": train_examples,
        "train_seconds": round(train_seconds, 1),
        "test_examples": len(test_labels),
        "test_accuracy": float(np.mean(predicted == test_labels)),
        "per_class_test_accuracy": per_class_accuracy(predicted, test_labels),
        "sha256": file_digest(cache),
    }
    common.write_json_atomically(info_path(cache), info)
    return model, {**info, "reused": False}
