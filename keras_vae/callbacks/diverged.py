"""`StopWhenDiverged`: training stops at the first epoch whose loss is NaN or infinite.

Without it a diverged run trained on to its last epoch (hours of a long recipe), wrote a
model.keras of NaN weights that every other command then refuses, and exited 0. Placed before
the backup, it keeps the backup at the last finite epoch and raises `DivergedError`, which
`keras-vae train` prints as one line with exit code 1.

>>> StopWhenDiverged().on_epoch_end(0, {"loss": 97.5})  # finite: training goes on
>>> StopWhenDiverged().on_epoch_end(2, {"loss": float("nan")})
Traceback (most recent call last):
...
keras_vae.callbacks.diverged.DivergedError: The training loss of epoch 3 is nan: the ...
"""

from __future__ import annotations

import math
from typing import Any

import keras


class DivergedError(RuntimeError):
    """Training stopped because its loss stopped being a finite number.

    `exit_code` is what `keras-vae` exits with after printing the message as one line.
    """

    exit_code = 1


class StopWhenDiverged(keras.callbacks.Callback):
    """Raise `DivergedError` at the end of an epoch whose ``loss`` is not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which ends `fit` normally (so the NaN weights
    would be evaluated and saved), this stops with an error; put it before the callbacks that
    save the epoch (`BestEpoch`, `RunBackup`).
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            kept = f"the backup keeps epochs 1-{epoch}" if epoch else "no epoch was backed up"
            raise DivergedError(
                f"The training loss of epoch {epoch + 1} is {float(loss)}: the model diverged "
                f"({kept}). Lower --learning-rate (or check the data) and train again with "
                "--overwrite."
            )
