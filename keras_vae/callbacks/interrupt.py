"""`StopOnCtrlC`: training stops at the next batch or epoch end once Ctrl-C was pressed.

A Ctrl-C some code swallowed (see `keras_vae.ctrl_c`) is raised again here, so `train` stops.

>>> StopOnCtrlC().on_epoch_end(0)  # no Ctrl-C: training goes on
"""

from __future__ import annotations

from typing import Any

import keras

from keras_vae.ctrl_c import ctrl_c_pressed


class StopOnCtrlC(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at a batch or epoch end once Ctrl-C was pressed (see
    `remember_ctrl_c`), whether or not its first KeyboardInterrupt got through.

    Put it after the backup: the epoch that just ended is saved before training stops.

    >>> from unittest import mock
    >>> try:  # (doctest cannot expect a KeyboardInterrupt: it stops the whole run)
    ...     with mock.patch("keras_vae.callbacks.interrupt.ctrl_c_pressed", return_value=True):
    ...         StopOnCtrlC().on_epoch_end(0)
    ... except KeyboardInterrupt as stopped:
    ...     print(stopped)
    Ctrl-C was pressed during training
    """

    def _stop_if_pressed(self) -> None:
        if ctrl_c_pressed():
            raise KeyboardInterrupt("Ctrl-C was pressed during training")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._stop_if_pressed()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._stop_if_pressed()
