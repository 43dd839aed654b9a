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

    Example:
        >>> from keras_vae.blocks import stack_evaluation_steps
        >>> from keras_vae.model import VAE
        >>> batches = tf.data.Dataset.from_tensor_slices(tf.fill([8, 4], 0.5)).batch(4)
        >>> blocks = stack_evaluation_steps(batches, num_examples=8, batch_size=4, example_size=4)
        >>> model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
        >>> model.compile(optimizer="sgd", jit_compile=False)
        >>> validation = BlockValidation(blocks)
        >>> validation.set_model(model)
        >>> [block["x_steps"].shape.as_list() for block in validation.blocks]  # 2 batches of 4
        [[2, 4, 4]]
        >>> logs = {"elbo": -3.0}  # the epoch's training logs
        >>> validation.on_epoch_end(0, logs)
        >>> sorted(logs)
        ['elbo', 'val_elbo', 'val_kl', 'val_loss', 'val_reconstruction']
        >>> elbo, kl, reconstruction = logs["val_elbo"], logs["val_kl"], logs["val_reconstruction"]
        >>> abs(reconstruction - kl - elbo) < 1e-5, logs["val_loss"] == -elbo
        (True, True)
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
