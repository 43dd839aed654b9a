"""The main job, callable from Python: train a VAE, evaluate it, write the run directory.

    >>> from keras_vae.config import Config
    >>> config = Config.from_dict({"training": {"epochs": 1}})
    >>> metrics = train_and_evaluate(config, "/tmp/run")      # doctest: +SKIP
    >>> sorted(metrics)[:3]                                    # doctest: +SKIP
    ['dataset', 'epochs', 'examples_per_second']

RUN_DIR then holds `model.keras`, `config.json` (enough to rerun) and `metrics.json`.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from keras_vae.config import Config
from keras_vae.data import DatasetInfo, make_datasets
from keras_vae.distribute import get_strategy
from keras_vae.model import VAE
from keras_vae.run_dir import CONFIG_FILE, METRICS_FILE, MODEL_FILE


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """An optimizer by name: "adam", "adagrad" (the paper's), "sgd" or "rmsprop"."""
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[name](learning_rate=learning_rate)


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_atomically(model: keras.Model, path: str | Path) -> None:
    """`model.save` into a temporary `.keras` file beside `path`, then rename it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each training epoch, to report examples per second."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def build_model(config: Config, info: DatasetInfo) -> VAE:
    """The compiled VAE for `config`; call inside the strategy's scope."""
    model = VAE.from_model_config(info.data_shape, config.model, seed=config.runtime.seed)
    model.compile(
        optimizer=make_optimizer(config.training.optimizer, config.training.learning_rate),
        jit_compile=config.training.jit_compile,
        steps_per_execution=config.training.steps_per_execution,
    )
    return model


def examples_per_second(epoch_seconds: list[float], examples_per_epoch: int) -> float:
    """Median rate over the epochs after the first (which pays for tracing and compiling)."""
    timed = epoch_seconds[1:] or epoch_seconds
    return examples_per_epoch / statistics.median(timed)


def train_and_evaluate(
    config: Config,
    run_dir: str | Path,
    *,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Train on `config.data`, evaluate on its held-out split and fill `run_dir`.

    Everything that can be wrong with the inputs (config, data) is checked before anything is
    written, so a failure leaves `run_dir` as it was.

    Args:
        config: the run's configuration.
        run_dir: output folder (created if missing).
        verbose: passed to `model.fit`.
        callbacks: extra Keras callbacks.

    Returns:
        The metrics written to `run_dir/metrics.json`.
    """
    keras.utils.set_random_seed(config.runtime.seed)
    batch_size = config.training.batch_size
    train_data, test_data, info = make_datasets(config.data, batch_size, config.runtime.seed)
    run_dir = Path(run_dir)
    strategy = get_strategy(config.runtime.strategy)
    with strategy.scope():
        model = build_model(config, info)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / CONFIG_FILE, config.to_json() + "\n")
    timer = EpochTimer()
    history = model.fit(
        train_data,
        epochs=config.training.epochs,
        validation_data=test_data,
        callbacks=[timer, *(callbacks or [])],
        verbose=verbose,
    )
    test = model.evaluate(test_data, return_dict=True, verbose=0)
    train = model.evaluate(train_data, return_dict=True, verbose=0)
    examples_per_epoch = (info.num_train // batch_size) * batch_size
    metrics = {
        "dataset": config.data.dataset,
        "data_shape": list(info.data_shape),
        "num_train": info.num_train,
        "num_test": info.num_test,
        "epochs": len(history.epoch),
        "train_elbo": float(train["elbo"]),
        "train_kl": float(train["kl"]),
        "train_reconstruction": float(train["reconstruction"]),
        "test_elbo": float(test["elbo"]),
        "test_kl": float(test["kl"]),
        "test_reconstruction": float(test["reconstruction"]),
        "examples_per_second": examples_per_second(timer.seconds, examples_per_epoch),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    save_model_atomically(model, run_dir / MODEL_FILE)
    write_atomically(run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return metrics
