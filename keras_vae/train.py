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
import math
import statistics
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_vae import device_data, resume, run_paths, run_setup, visualize
from keras_vae.atomic import (
    finite_or_null,
    save_model_atomically,
    write_atomically,
    write_json_atomically,
)
from keras_vae.blocks import (
    DEVICE_BLOCK_STEPS,
    block_steps,
    largest_divisor_at_most,
    stack_evaluation_steps,
    stack_steps,
    with_length,
)
from keras_vae.callbacks import (
    BestEpoch,
    BlockValidation,
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
from keras_vae.device_data import limit_megabytes, split_megabytes
from keras_vae.distribute import (
    check_same_on_all_workers,
    get_strategy,
    model_inputs,
    shard_by_data,
    worker_output_dir,
)
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
        steps_per_execution = largest_divisor_at_most(steps_per_epoch, steps_per_execution)
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


@dataclasses.dataclass(frozen=True)
class Feed:
    """How the train job feeds Keras (see `make_feed`).

    Attributes:
        train: `fit`'s training input: the epochs still to train as ONE dataset.
        steps: `fit`'s steps_per_epoch (calls, blocks when `block` > 1).
        optimizer_steps: optimizer steps per epoch.
        block: training steps per `{"x_steps": xs}` block, 1 when not blocked.
        validation: what `fit` validates on: the validation split, else the test split.
        pipelines: the data pipelines fed.
        labels: whether the inputs carry labels (a conditional model).
        validator: with blocks, the `BlockValidation` callback that validates instead of
            `fit(validation_data=...)`; else None.
        test: the test split for the final `evaluate` (`validation` when there is no
            validation split).
        tester: with blocks, the `BlockValidation` of `test`; else None.
        data_path: "device" (the training split on the device, batches drawn in the
            compiled loop: `keras_vae.device_data`) or "stream" (tf.data batches).
        stacked_block: batches per block of stacked images (the streaming path's `block`,
            also the final `evaluate` of the training set's), 1 when not blocked.
    """

    train: tf.data.Dataset
    steps: int
    optimizer_steps: int
    block: int
    validation: tf.data.Dataset
    pipelines: Pipelines
    labels: bool = False
    validator: BlockValidation | None = None
    test: tf.data.Dataset | None = None
    tester: BlockValidation | None = None
    data_path: str = "stream"
    stacked_block: int = 1

    def fit_validation(self) -> dict[str, Any]:
        """`fit`'s validation arguments: validation_data, or the validator callback."""
        if self.validator is None:
            return {"validation_data": self.validation, "callbacks": []}
        return {"validation_data": None, "callbacks": [self.validator]}

    def evaluate_held_out(self, model: VAE, split: str = "test") -> dict[str, float]:
        """The metrics of the "test" or "validation" split, as
        `model.evaluate(return_dict=True)`."""
        data, blocks = (
            (self.test, self.tester) if split == "test" else (self.validation, self.validator)
        )
        if blocks is None:
            return model.evaluate(data, return_dict=True, verbose=0)
        blocks.set_model(model)  # also when no `fit` ran (a run killed after training)
        return blocks.evaluate()

    def training_set(self) -> tf.data.Dataset:
        """Epoch 0's training batches for the final `evaluate`, in `stacked_block` blocks."""
        batches = model_inputs(self.pipelines.epochs(1), labels=self.labels)
        if self.stacked_block > 1:
            batches = stack_steps(batches, self.stacked_block)
        return with_length(batches, self.optimizer_steps // self.stacked_block)


def make_feed(model: VAE, pipelines: Pipelines, initial_epoch: int, config: Config) -> Feed:
    """What `fit` and `evaluate` get from the pipelines of `keras_vae.data`.

    All epochs still to train are ONE dataset (`Pipelines.epochs`, each epoch shuffled from
    (seed, epoch) alone), so `fit` keeps one iterator for the whole run: its prefetching runs
    on across epoch ends, no iterator is built per epoch (each costs 0.2-1 s here in pipeline
    start-up), and a resumed run simply starts at its next epoch. With one replica and XLA
    the steps come in `{"x_steps": xs}` blocks of `steps_per_execution` batches, each trained
    in one compiled loop (`VAE.train_step`, `keras_vae.blocks.block_steps`), the held-out
    batches in blocks too (`keras_vae.blocks.stack_evaluation_steps`), validated by
    `BlockValidation`: the same steps and numbers without Keras' per-step work between them
    (benchmarks/profile_train.py).
    """
    batch_size, info = config.training.batch_size, pipelines.info
    steps_per_epoch = info.num_train // batch_size
    labels = model.conditional
    held_out = model_inputs(pipelines.held_out, labels)
    test_inputs = model_inputs(pipelines.test, labels)
    separate_test = pipelines.validation is not None
    train_split = pipelines.splits["train"]
    on_device = split_megabytes(train_split) <= limit_megabytes(config.runtime.device_data_limit_mb)
    replicas, jit = model.distribute_strategy.num_replicas_in_sync, bool(model.jit_compile)
    stacked = block_steps(model.compiled_steps_per_execution, steps_per_epoch, replicas, jit)
    block = stacked
    if on_device and config.training.steps_per_execution == "auto":  # a block of indices
        block = block_steps(DEVICE_BLOCK_STEPS, steps_per_epoch, replicas, jit)
    epochs = config.training.epochs
    remaining = max(0, epochs - initial_epoch)
    if block == 1:
        train = shard_by_data(model_inputs(pipelines.epochs(epochs, initial_epoch), labels))
        train = with_length(train, steps_per_epoch * remaining)
        return Feed(
            train,
            steps_per_epoch,
            steps_per_epoch,
            1,
            held_out,
            pipelines,
            labels,
            test=test_inputs,
        )

    steps = steps_per_epoch // block  # block divides it
    if on_device:  # one replica: blocks are never split over replicas
        dynamic = config.data.binarization == "dynamic"
        with model.distribute_strategy.scope():  # on the strategy's device
            device_data.attach(model, device_data.DeviceData(train_split, dynamic))
        train = device_data.index_blocks(
            info.num_train, config.data, batch_size, pipelines.seed, epochs, initial_epoch, block
        )
    else:
        epoch_inputs = model_inputs(pipelines.epochs(epochs, initial_epoch), labels)
        train = shard_by_data(stack_steps(epoch_inputs, block))
    train = with_length(train, steps * remaining)
    example_size = math.prod(info.data_shape)
    num_held_out = info.num_validation if separate_test else info.num_test
    validation = stack_evaluation_steps(held_out, num_held_out, batch_size, example_size)
    validator = BlockValidation(validation)
    test, tester = validation, validator
    if separate_test:
        test = stack_evaluation_steps(test_inputs, info.num_test, batch_size, example_size)
        tester = BlockValidation(test)
    return Feed(
        train,
        steps,
        steps_per_epoch,
        block,
        validation,
        pipelines,
        labels,
        validator,
        test,
        tester,
        "device" if on_device else "stream",
        stacked,
    )


DATA_PATH_NOTES = {
    "device": "Training data: on the device, batches drawn inside the compiled loop",
    "stream": "Training data: streamed through tf.data",
}  # what the progress output says of `Feed.data_path`


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

    Returns the metrics written to `run_dir/metrics.json`.
    """
    plan = plan or run_setup.prepare(run_dir, config, overwrite)  # reads only; may refuse
    if plan.status == run_setup.FINISHED:
        return load_metrics(plan.folder.root)
    # The first TensorFlow call: MultiWorkerMirroredStrategy must configure the runtime.
    strategy = strategy or get_strategy(config.runtime.strategy)
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
    # Every worker runs all that follows; only the chief's files land in run_dir. All
    # workers restored the chief's backup above; each now backs up into its own out_dir.
    out = run_paths.RunFolder(worker_output_dir(plan.folder.root, strategy))
    backup.backup_dir = out.backup

    manifest = plan.take(out.root)  # lists each file before it is written
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
            *([stopper] if stopper is not None else []),  # before the backup, which saves it
            backup,  # the backup last: it commits the epoch
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
