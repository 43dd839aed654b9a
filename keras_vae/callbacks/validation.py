"""`BlockValidation`: the held-out ELBO at every epoch end, without Keras' per-call setup.

Keras' `fit(validation_data=...)` builds a new distributed iterator and resets its evaluation
loop every epoch, a sizeable share of a small model's epoch (benchmarks/profile_train.py
measures it; results in benchmarks/results/). This callback keeps the held-out
batches in memory as a few `{"x_steps": xs}` blocks and evaluates them with ONE compiled
function that runs `VAE.test_step` on each block, so validation costs the forward passes and
little else. The numbers are those of `model.evaluate` on the same batches: the same batches
in the same order, the same noise draws, the same metrics.

It adds ``val_loss``, ``val_elbo``, ``val_reconstruction`` and ``val_kl`` to the epoch logs,
so put it FIRST in the callback list: callbacks after it (EarlyStopping, ModelCheckpoint,
TensorBoard, `RunBackup`) see them as if Keras had validated. One replica only (the blocks
are not split over replicas).

Example:

>>> blocks = stack_evaluation_steps(test_batches, 10000, 128, 784)          # doctest: +SKIP
>>> model.fit(train, epochs=10, callbacks=[BlockValidation(blocks), ...])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf


class BlockValidation(keras.callbacks.Callback):
    """Evaluate `blocks` at the end of every epoch and add ``val_*`` to the logs.

    Args:
        blocks: a finite `tf.data.Dataset` of `{"x_steps": xs}` blocks (see
            `keras_vae.blocks.stack_evaluation_steps`); read into memory once.
    """

    def __init__(self, blocks: tf.data.Dataset) -> None:
        super().__init__()
        self.blocks = [block for block in blocks]
        self._function: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]] | None = None

    def _compiled(self) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
        if self._function is None:
            model = self.model

            def evaluate_block(block: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
                return model.test_step(block)

            self._function = tf.function(evaluate_block, jit_compile=model.jit_compile)
        return self._function

    def evaluate(self) -> dict[str, float]:
        """The metrics of `model.test_step` over all blocks, as `evaluate(return_dict=True)`."""
        self.model.reset_metrics()
        logs = {}
        function = self._compiled()
        with self.model.distribute_strategy.scope():
            for block in self.blocks:
                logs = function(block)
        return {name: float(value) for name, value in logs.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        logs.update({f"val_{name}": value for name, value in self.evaluate().items()})
