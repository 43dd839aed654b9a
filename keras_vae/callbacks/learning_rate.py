"""`LearningRateLogger`: each epoch's learning rate in its logs (History, metrics, TensorBoard)."""

from __future__ import annotations

from typing import Any

import keras

from keras_vae.schedules import current_learning_rate


class LearningRateLogger(keras.callbacks.Callback):
    """Add the learning rate of the epoch's last step to the epoch logs as ``learning_rate``.

    It then appears in `History` (and `metrics.json`'s history), and in TensorBoard as
    ``epoch_learning_rate``; place it before callbacks that read the logs.

    Example:
        >>> import numpy as np
        >>> from keras_vae.model import VAE
        >>> model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
        >>> model.compile(optimizer=keras.optimizers.SGD(0.25))
        >>> history = model.fit(np.full((8, 4), 0.5), epochs=1, verbose=0,
        ...                     callbacks=[LearningRateLogger()])
        >>> history.history["learning_rate"]
        [0.25]
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)
