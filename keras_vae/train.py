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
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from keras_vae import resume, visualize
from keras_vae.atomic import save_model_atomically, write_atomically
from keras_vae.callbacks import training_callbacks
from keras_vae.config import Config
from keras_vae.data import DatasetInfo, make_datasets
from keras_vae.distribute import (
    check_global_batch,
    check_same_on_all_workers,
    get_strategy,
    model_inputs,
    worker_output_dir,
)
from keras_vae.model import VAE
from keras_vae.precision import dtype_policy
from keras_vae.run_dir import CONFIG_FILE, METRICS_FILE, MODEL_FILE, load_metrics

if TYPE_CHECKING:
    import tensorflow as tf


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """An optimizer by name: "adam", "adagrad" (the paper's), "sgd" or "rmsprop"."""
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[name](learning_rate=learning_rate)


def build_model(config: Config, info: DatasetInfo) -> VAE:
    """The compiled VAE for `config`; call inside the strategy's scope and dtype policy."""
    model = VAE.from_model_config(info.data_shape, config.model, seed=config.runtime.seed)
    model.compile(
        optimizer=make_optimizer(config.training.optimizer, config.training.learning_rate),
        jit_compile=config.training.jit_compile,  # "auto" values resolved by VAE.compile
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
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, Any]:
    """Train on `config.data`, evaluate on its held-out split and fill `run_dir`.

    Everything that can be wrong with the inputs (config, data, a `run_dir` holding another
    run) is checked before anything is written, so a failure leaves `run_dir` as it was.

    Resumable: the training state is backed up to `run_dir/backup` after every epoch, so
    calling this again with the same config after the process died (even by `kill -9`)
    continues from the last completed epoch and ends after `config.training.epochs`, with the
    same results as an uninterrupted run. Calling it on a finished run returns its metrics
    without training; a different config raises `RunDirError` unless `overwrite`. See
    `keras_vae.resume`.

    Args:
        config: the run's configuration.
        run_dir: output folder (created if missing).
        verbose: passed to `model.fit`.
        callbacks: extra Keras callbacks.
        overwrite: delete a previous run's outputs in `run_dir` and start over. Default False.
        strategy: a `tf.distribute.Strategy` to use instead of `config.runtime.strategy`
            (e.g. a `TPUStrategy`, or `MirroredStrategy` over logical devices). Default None.

    Distributed runs (see `keras_vae.distribute`): `config.training.batch_size` is the global
    batch, split over the replicas; every worker of a multi-worker run calls this function
    with the same arguments, and only the chief writes into `run_dir`.

    Returns:
        The metrics written to `run_dir/metrics.json`.
    """
    run_dir = Path(run_dir)
    status = resume.inspect_run_dir(run_dir, config, overwrite=overwrite)
    if status == resume.FINISHED:
        return load_metrics(run_dir)
    # The first TensorFlow call: MultiWorkerMirroredStrategy must configure the runtime.
    strategy = strategy or get_strategy(config.runtime.strategy)
    keras.utils.set_random_seed(config.runtime.seed)
    batch_size = config.training.batch_size
    check_global_batch(strategy, batch_size)
    train_data, test_data, info = make_datasets(config.data, batch_size, config.runtime.seed)
    # What fit/evaluate see: DATA-sharded over workers, inputs only (see model_inputs).
    train_inputs, test_inputs = model_inputs(train_data), model_inputs(test_data)
    backup = resume.RunBackup(run_dir / resume.BACKUP_DIR)
    with dtype_policy(config.runtime.mixed_precision), strategy.scope():
        model = build_model(config, info)
        initial_epoch = backup.restore(model) if status == resume.RESUME else 0
    check_same_on_all_workers(strategy, initial_epoch, "the epoch to resume from")
    # Every worker runs all that follows; only the chief's files land in run_dir. All
    # workers restored the chief's backup above; each now backs up into its own out_dir.
    out_dir = worker_output_dir(run_dir, strategy)
    backup.backup_dir = out_dir / resume.BACKUP_DIR

    if overwrite:
        resume.clear_run_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume.remove_stale_temporaries(out_dir)
    write_atomically(out_dir / CONFIG_FILE, config.to_json() + "\n")
    remaining = initial_epoch < config.training.epochs  # False: killed after the last backup
    resume.replay_epochs(train_inputs, initial_epoch, fit_follows=remaining)
    if remaining:
        model.fit(
            train_inputs,
            epochs=config.training.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=info.num_train // batch_size,  # one iterator/epoch: replay_epochs
            validation_data=test_inputs,
            shuffle=False,  # the tf.data pipeline shuffles, seeded per epoch
            callbacks=[
                *(callbacks or []),
                *training_callbacks(out_dir, test_data, config.runtime.tensorboard),
                backup,  # the backup last: it commits the epoch
            ],
            verbose=verbose,
        )
    test = model.evaluate(test_inputs, return_dict=True, verbose=0)
    train = model.evaluate(train_inputs, return_dict=True, verbose=0)
    examples_per_epoch = (info.num_train // batch_size) * batch_size
    metrics = {
        "dataset": config.data.dataset,
        "data_shape": list(info.data_shape),
        "num_train": info.num_train,
        "num_test": info.num_test,
        "epochs": backup.epochs_done,
        "resumed_from_epoch": initial_epoch,
        "train_elbo": float(train["elbo"]),
        "train_kl": float(train["kl"]),
        "train_reconstruction": float(train["reconstruction"]),
        "test_elbo": float(test["elbo"]),
        "test_kl": float(test["kl"]),
        "test_reconstruction": float(test["reconstruction"]),
        "examples_per_second": examples_per_second(backup.epoch_seconds, examples_per_epoch),
        "history": backup.history,
    }
    figures = visualize.render_figures(model, test_data, backup.history)
    visualize.save_figures(figures, out_dir / resume.FIGURES_DIR)
    save_model_atomically(model, out_dir / MODEL_FILE)
    write_atomically(out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    backup.delete()  # only now: a kill before this line resumes and rewrites the outputs
    return metrics
