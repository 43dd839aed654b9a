"""The main job, callable from Python: train a VAE, evaluate it, write the run directory.

    >>> from keras_vae.config import Config
    >>> config = Config.from_dict({"training": {"epochs": 1}})
    >>> metrics = train_and_evaluate(config, "/tmp/run")      # doctest: +SKIP
    >>> sorted(metrics)[:3]                                    # doctest: +SKIP
    ['dataset', 'epochs', 'examples_per_second']

RUN_DIR then holds `model.keras`, `config.json` (enough to rerun) and `metrics.json`.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any, cast

import keras
import tensorflow as tf

from keras_vae import resume, run_paths, run_setup, visualize
from keras_vae.atomic import (
    finite_or_null,
    save_model_atomically,
    write_atomically,
    write_json_atomically,
)
from keras_vae.blocks import (
    largest_divisor_at_most,
)
from keras_vae.callbacks import (
    BestEpoch,
    StopOnCtrlC,
    StopWhenDiverged,
    TrainingProgress,
    training_callbacks,
)
from keras_vae.config import Config
from keras_vae.data import (
    DatasetInfo,
    Pipelines,
    check_class_labels,
    make_pipelines,
)
from keras_vae.distribute import (
    check_same_on_all_workers,
    get_strategy,
    worker_output_dir,
)
from keras_vae.feed import DATA_PATH_NOTES, make_feed
from keras_vae.folder_lock import FolderLock
from keras_vae.memory import check_training_memory
from keras_vae.model import VAE
from keras_vae.networks import OUTPUT_BIAS_LAYER, initial_output_bias
from keras_vae.precision import dtype_policy
from keras_vae.replicas import check_global_batch
from keras_vae.run_reader import load_metrics
from keras_vae.schedules import make_optimizer


def build_model(config: Config, info: DatasetInfo, pipelines: Pipelines | None = None) -> VAE:
    """The compiled VAE for `config`; call inside the strategy's scope and dtype policy (a
    conditional model takes K from `config.model.num_classes`, else from the data). The KL
    warm-up in epochs becomes steps here (epochs x steps per epoch); with
    ``init_output_bias="data-mean"`` the decoder's output bias starts at the logit of the mean
    of `pipelines`' training split (`keras_vae.networks.initial_output_bias`)."""
    training = config.training
    steps_per_epoch = info.num_train // training.batch_size
    model_config = config.model
    if training.kl_warmup_epochs:
        warmup_steps = training.kl_warmup_epochs * steps_per_epoch
        model_config = dataclasses.replace(model_config, kl_warmup_steps=warmup_steps)
    model = VAE.from_model_config(
        info.data_shape, model_config, seed=config.runtime.seed, num_classes=info.num_classes
    )
    if training.init_output_bias == "data-mean":
        if pipelines is None:
            raise ValueError("init_output_bias='data-mean' needs the pipelines' training split.")
        bias = initial_output_bias(pipelines.splits["train"].images)
        model.decoder.get_layer(OUTPUT_BIAS_LAYER).bias.assign(bias.reshape(-1))
    steps_per_execution = training.steps_per_execution
    if steps_per_execution != "auto":  # at most N: executions never straddle two epochs
        limit = cast("int", steps_per_execution)  # not "auto": a count
        steps_per_execution = largest_divisor_at_most(steps_per_epoch, limit)
    model.compile(
        optimizer=make_optimizer(training, steps_per_epoch),
        jit_compile=training.jit_compile,  # "auto" values resolved by VAE.compile
        steps_per_execution=steps_per_execution,
    )
    return model


def examples_per_second(epoch_seconds: list[float], examples_per_epoch: int) -> float:
    """Median rate over the epochs after the first (which pays for tracing and compiling)."""
    timed = epoch_seconds[1:] or epoch_seconds
    return examples_per_epoch / statistics.median(timed)


def _verbosity(verbose: int | str) -> int:
    """fit's `verbose` ("auto" is 1) as a `TrainingProgress` verbosity."""
    return 1 if verbose == "auto" else int(verbose)


def train_and_evaluate(
    config: Config,
    run_dir: str | Path,
    *,
    verbose: int | str = "auto",
    callbacks: list[keras.callbacks.Callback] | None = None,
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    plan: run_setup.RunPlan | None = None,
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
        plan: what `keras_vae.run_setup.prepare(run_dir, config, overwrite)` decided, when
            the caller has already asked (the CLI does, to print "finished"); None: ask it.

    Distributed runs (see `keras_vae.distribute`): `config.training.batch_size` is the global
    batch, split over the replicas; every worker of a multi-worker run calls this function
    with the same arguments, and only the chief writes into `run_dir`.

    Returns the metrics written to `run_dir/metrics.json`. Raises `DivergedError` (from
    `keras_vae.callbacks`) at the first epoch whose loss is NaN or infinite, its backup kept.

    Example (what `keras-vae train --dataset digits --epochs 1 ...` runs):
        >>> import tempfile
        >>> from keras_vae.config import Config, DataConfig, ModelConfig, TrainingConfig
        >>> config = Config(
        ...     model=ModelConfig(latent_dim=2, hidden_units=(16,)),
        ...     data=DataConfig(dataset="digits"),
        ...     training=TrainingConfig(epochs=1, batch_size=64),
        ... )
        >>> with tempfile.TemporaryDirectory() as run_dir:
        ...     metrics = train_and_evaluate(config, run_dir, verbose=0)
        >>> metrics["epochs"], metrics["num_train"], metrics["test_elbo"] < 0
        (1, 1437, True)
    """
    plan = plan or run_setup.prepare(run_dir, config, overwrite)  # reads only; may refuse
    if plan.status == run_setup.FINISHED:
        return load_metrics(plan.folder.root)
    # The first TensorFlow call: MultiWorkerMirroredStrategy must configure the runtime.
    strategy = strategy or get_strategy(config.runtime.strategy)
    # Every worker runs all that follows; only the chief's files land in run_dir (the others
    # write a temporary folder). A train already writing there is refused before any work
    # (`FolderLock`); a new folder is locked as soon as `plan.take` has made it.
    out = run_paths.RunFolder(worker_output_dir(plan.folder.root, strategy))
    with FolderLock(out.root) as lock:
        if out.root.is_dir():
            lock.acquire()
        return _train(config, plan, strategy, out, lock, verbose, callbacks)


def _train(
    config: Config,
    plan: run_setup.RunPlan,
    strategy: tf.distribute.Strategy,
    out: run_paths.RunFolder,
    lock: FolderLock,
    verbose: int | str,
    callbacks: list[keras.callbacks.Callback] | None,
) -> dict[str, Any]:
    """`train_and_evaluate` once the run is planned and this process's folder `out` chosen:
    check the inputs, build, write (`lock` taken when the folder is made), fit, evaluate."""
    keras.utils.set_random_seed(config.runtime.seed)
    batch_size = config.training.batch_size
    check_global_batch(strategy, batch_size)
    pipelines = make_pipelines(config.data, batch_size, config.runtime.seed)
    test_data, info = pipelines.test, pipelines.info
    if config.model.conditional:  # before anything is written
        check_class_labels(pipelines.splits, config.model.num_classes, config.data.dataset)
    check_training_memory(config, info.data_shape)  # before anything is built or written
    stopper = BestEpoch.from_config(config)
    backup = resume.RunBackup(plan.folder.backup, stopper)
    with dtype_policy(config.runtime.mixed_precision), strategy.scope():
        model = build_model(config, info, pipelines)
        initial_epoch = backup.restore(model) if plan.status == run_setup.RESUME else 0
    check_same_on_all_workers(strategy, initial_epoch, "the epoch to resume from")
    # All workers restored the chief's backup above; each now backs up into its own folder.
    backup.backup_dir = out.backup

    manifest = plan.take(out.root)  # lists each file before it is written
    lock.acquire()  # a new folder now exists
    if config.runtime.tensorboard:
        manifest.claim(run_paths.LOG_FILES, folders=run_paths.LOG_FOLDERS)
    resume.remove_stale_temporaries(out.root)
    write_atomically(out.config, config.to_json() + "\n")
    feed = make_feed(model, pipelines, initial_epoch, config)
    stopped = stopper is not None and stopper.stopped
    if initial_epoch < config.training.epochs and not stopped:  # else killed after the backup
        validation = feed.fit_validation()
        fit_callbacks = [
            *validation["callbacks"],  # first: it adds val_* to the epoch logs
            *(callbacks or []),
            *training_callbacks(out.root, test_data, config.runtime.tensorboard),
            TrainingProgress(
                feed.optimizer_steps,
                batch_size,
                config.training.epochs,
                _verbosity(verbose),
                note=DATA_PATH_NOTES[feed.data_path],
            ),
            StopWhenDiverged(),  # before anything saves the epoch's weights
            *([stopper] if stopper is not None else []),  # before the backup, which saves it
            backup,  # the backup after the others: it commits the epoch
            StopOnCtrlC(),  # then a Ctrl-C that was swallowed stops training
        ]
        try:
            model.fit(
                feed.train,
                epochs=config.training.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=feed.steps,
                validation_data=validation["validation_data"],
                shuffle=False,  # the tf.data pipeline shuffles, seeded per epoch
                callbacks=fit_callbacks,
                verbose=0,  # TrainingProgress prints
            )
        finally:  # also when fit raised: the last epoch's backup is on disk
            backup.wait()
    if stopper is not None:
        stopper.restore_best(model)
    test = feed.evaluate_held_out(model)
    train = model.evaluate(feed.training_set(), return_dict=True, verbose=0)
    splits = [("train", train), ("test", test)]
    if info.num_validation:
        splits.append(("validation", feed.evaluate_held_out(model, "validation")))
    examples_per_epoch = (info.num_train // batch_size) * batch_size
    metrics = {
        "dataset": config.data.dataset,
        "data_shape": list(info.data_shape),
        "num_train": info.num_train,
        "num_test": info.num_test,
        **({"num_classes": model.num_classes} if model.conditional else {}),
        **({"num_validation": info.num_validation} if info.num_validation else {}),
        "epochs": backup.epochs_done,
        "resumed_from_epoch": initial_epoch,
        "data_path": feed.data_path,
        **(
            {"best_epoch": stopper.best_epoch, "stopped_early": stopper.stopped}
            if stopper is not None
            else {}
        ),
        **{
            f"{split}_{name}": float(values[name])
            for split, values in splits
            for name in model.metric_names_reported
        },
        "examples_per_second": examples_per_second(backup.epoch_seconds, examples_per_epoch),
        "history": backup.history,
    }
    figures = visualize.render_figures(model, test_data, backup.history)
    manifest.claim(
        run_paths.MODEL_FILE,
        run_paths.METRICS_FILE,
        *(f"{run_paths.FIGURES_DIR}/{name}" for name in figures),
        folders=(run_paths.FIGURES_DIR,),
    )
    visualize.save_figures(figures, out.figures)
    save_model_atomically(model, out.model)
    write_json_atomically(out.metrics, finite_or_null(metrics))
    backup.delete()  # only now: a kill before this line resumes and rewrites the outputs
    return metrics
