"""What `model.fit` and `evaluate` get from the pipelines of `keras_vae.data` in the train job:
the training epochs as one dataset (on the device or streamed, in compiled blocks of steps where
they apply) and the held-out splits, with the callbacks that validate blocks (`make_feed`).

    >>> sorted(DATA_PATH_NOTES)
    ['device', 'stream']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import tensorflow as tf

from keras_vae import device_data
from keras_vae.blocks import (
    DEVICE_BLOCK_STEPS,
    block_steps,
    stack_evaluation_steps,
    stack_steps,
    with_length,
)
from keras_vae.callbacks import BlockValidation
from keras_vae.config import Config
from keras_vae.data import Pipelines
from keras_vae.device_data import limit_megabytes, split_megabytes
from keras_vae.distribute import model_inputs, shard_by_data
from keras_vae.model import VAE


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
