"""Early stopping on the validation bound that survives a killed and resumed run.

`BestEpoch` is Keras' `EarlyStopping(restore_best_weights=True)` for a run that may be
killed at any epoch and resumed: its whole state (the best value, its epoch, the epochs
waited, whether it stopped, the best weights) is saved with the run's backup
(`keras_vae.resume.RunBackup(early_stopping=...)`) and restored from it, so a resumed run
stops at the same epoch and keeps the same weights as an uninterrupted one.

It watches ``val_elbo`` (``val_iwae`` for an iwae model), which `fit` computes on the
validation split (`DataConfig.validation_examples`), never on the test split. As in
jmtomczak/vae_vampprior, epochs without improvement are not counted during the KL warm-up
(the bound still rises there because the KL weight does); unlike it, training stops once
`patience` such epochs have passed (Keras' convention; theirs waits one more).

Example:

>>> stopper = BestEpoch(patience=2)                                     # doctest: +SKIP
>>> model.fit(..., callbacks=[stopper, backup])                         # doctest: +SKIP
>>> stopper.restore_best(model)                                         # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_vae.config import Config


class BestEpoch(keras.callbacks.Callback):
    """Stop after `patience` epochs without a higher `monitor`; keep the best epoch's weights.

    Args:
        patience: epochs without improvement after which training stops (>= 1).
        monitor: the epoch log to maximise. Default "val_elbo".
        warmup_epochs: epochs during which no epoch counts against `patience`. Default 0.

    Attributes:
        best: the highest `monitor` so far (None before the first epoch).
        best_epoch: the number of epochs done when it was reached (1-based; 0 before).
        wait: epochs since then that count against `patience`.
        stopped: whether training was stopped.
        best_weights: the model's weights at `best_epoch` (None before the first epoch).

    Example:
        >>> dense = keras.layers.Dense(1)
        >>> model = keras.Sequential([keras.Input((1,)), dense])
        >>> model.stop_training = False  # as `fit` sets it
        >>> stopper = BestEpoch(patience=2)
        >>> stopper.set_model(model)
        >>> for epoch, val_elbo in enumerate([-10.0, -5.0, -7.0, -6.0, -1.0]):
        ...     _ = dense.bias.assign([epoch + 1.0])  # epoch n trains to bias n
        ...     stopper.on_epoch_end(epoch, {"val_elbo": val_elbo})
        ...     if model.stop_training:
        ...         break
        >>> stopper.best_epoch, stopper.best, stopper.wait, stopper.stopped, epoch + 1
        (2, -5.0, 2, True, 4)
        >>> stopper.restore_best(model)  # back from epoch 4's bias to epoch 2's
        >>> dense.bias.numpy().tolist()
        [2.0]
    """

    def __init__(self, patience: int, monitor: str = "val_elbo", warmup_epochs: int = 0) -> None:
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(
                "Received an invalid value for `patience`, expected a positive integer. "
                f"Received: patience={patience!r}"
            )
        self.patience = patience
        self.monitor = monitor
        self.warmup_epochs = warmup_epochs
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.stopped = False
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_seen = 0

    @classmethod
    def from_config(cls, config: Config) -> BestEpoch | None:
        """The callback `config` asks for (None without early stopping): it watches the
        validation ELBO (the IWAE bound for an iwae model) and counts no KL warm-up epoch.

        Example:

        >>> BestEpoch.from_config(Config()) is None
        True
        """
        training = config.training
        if not training.early_stopping_patience:
            return None
        monitor = "val_iwae" if config.model.objective == "iwae" else "val_elbo"
        return cls(training.early_stopping_patience, monitor, training.kl_warmup_epochs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs_seen = epoch + 1
        if logs is None or self.monitor not in logs:
            raise KeyError(
                f"Early stopping watches {self.monitor!r}, which the epoch logs lack (they have "
                f"{sorted(logs or {})}); validate with validation data."
            )
        value = float(logs[self.monitor])
        if math.isfinite(value) and (self.best is None or value > self.best):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            return
        if epoch + 1 > self.warmup_epochs:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped = True
            self.model.stop_training = True

    def restore_best(self, model: keras.Model) -> None:
        """Give `model` the best epoch's weights (nothing to do before any epoch)."""
        if self.best_weights is not None:
            model.set_weights(self.best_weights)

    # The state saved with the run's backup (`keras_vae.resume.RunBackup`).
    def state(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        """The JSON-able progress and the arrays to save: the best weights, or none when the
        last epoch was the best (they are then the model's own, saved anyway: a backup
        committed to a repository stays a third smaller while the bound improves)."""
        current = self.best_epoch == self.epochs_seen
        progress = {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped": self.stopped,
            "best_weights_are_current": current,
        }
        return progress, [] if current else list(self.best_weights or [])

    def load_state(
        self,
        progress: dict[str, Any],
        arrays: list[np.ndarray],
        model: keras.Model,
        epochs_done: int,
    ) -> None:
        """Continue from what `state` returned, for `model` restored to `epochs_done`.

        Example:
            >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
            >>> stopper = BestEpoch(patience=3)
            >>> stopper.set_model(model)
            >>> stopper.on_epoch_end(0, {"val_elbo": -5.0})
            >>> best = model.get_weights()
            >>> model.set_weights([w + 1.0 for w in best])  # epoch 2: other weights...
            >>> stopper.on_epoch_end(1, {"val_elbo": -6.0})  # ...and a lower bound
            >>> progress, arrays = stopper.state()  # saved with the backup; then killed
            >>> progress["best_epoch"], progress["wait"], len(arrays)
            (1, 1, 2)
            >>> resumed = BestEpoch(patience=3)  # the resumed run's
            >>> resumed.load_state(progress, arrays, model, epochs_done=2)
            >>> resumed.best, resumed.best_epoch, resumed.wait, resumed.stopped
            (-5.0, 1, 1, False)
            >>> resumed.restore_best(model)
            >>> all(np.array_equal(w, b) for w, b in zip(model.get_weights(), best))
            True
        """
        self.epochs_seen = epochs_done
        self.best = progress["best"]
        self.best_epoch = int(progress["best_epoch"])
        self.wait = int(progress["wait"])
        self.stopped = bool(progress["stopped"])
        if progress.get("best_weights_are_current"):
            arrays = model.get_weights()
        self.best_weights = [np.array(a) for a in arrays] or None
