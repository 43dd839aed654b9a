"""`TrainingProgress`: the progress bar of `keras-vae train`, counting training steps exactly.

Keras' own bar counts calls into the compiled function times `steps_per_execution`, which
overshoots its total when an epoch ends inside an execution (``500/468``), and it counts one
`{"x_steps": xs}` block as one step. This bar reads the optimizer's step counter instead, so
its count is the number of steps trained (never above the epoch's total), and it shows the
examples per second of the epoch so far.

Example:

>>> progress = TrainingProgress(steps_per_epoch=468, batch_size=128, epochs=10)  # doctest: +SKIP
>>> model.fit(data, epochs=10, verbose=0, callbacks=[progress])                  # doctest: +SKIP
Epoch 1/10
468/468 ━━━━━━━━━━━━━━━━━━━━ 2s 4ms/step - examples/s: 29980 - elbo: -122.0 - ...
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, TextIO

import keras

VERBOSITY = (0, 1, 2)  # silent, a bar updated during the epoch, one line per epoch


class TrainingProgress(keras.callbacks.Callback):
    """Print training progress: steps done of `steps_per_epoch`, examples/s and the logs.

    Args:
        steps_per_epoch: optimizer steps in one epoch.
        batch_size: examples per step (the global batch).
        epochs: the run's number of epochs (for the "Epoch 3/10" header).
        verbose: 1 a bar updated after every call into the compiled function, 2 one line
            per epoch, 0 nothing. Default 1.
        stream: where to write. Default `sys.stdout`.
        note: a line to print once when training begins (e.g. which data path runs).
            Default None.

    Attributes:
        steps_seen: the step count of the current epoch after the last update (a test can
            read it; it equals the optimizer's steps taken in the epoch).

    Example:
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd")
        >>> progress = TrainingProgress(steps_per_epoch=3, batch_size=8, epochs=2, verbose=2)
        >>> progress.set_model(model)
        >>> _ = model.optimizer.iterations.assign(3)  # the steps of epoch 1
        >>> progress.on_epoch_begin(1)
        Epoch 2/2
        >>> _ = model.optimizer.iterations.assign(6)  # 3 more optimizer steps
        >>> progress.on_epoch_end(1, {"elbo": -2.5})  # doctest: +ELLIPSIS
        3/3 - ...s - examples/s: ... - elbo: -2.5
        >>> progress.steps_seen
        3
    """

    def __init__(
        self,
        steps_per_epoch: int,
        batch_size: int,
        epochs: int,
        verbose: int = 1,
        stream: TextIO | None = None,
        note: str | None = None,
    ) -> None:
        super().__init__()
        self.note = note
        if verbose not in VERBOSITY:
            raise ValueError(f"Expected verbose in {VERBOSITY}. Received: verbose={verbose!r}")
        self.steps_per_epoch = int(steps_per_epoch)
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.verbose = verbose
        self.stream = stream
        self.steps_seen = 0
        self._bar: keras.utils.Progbar | None = None
        self._first_step = 0
        self._start = time.perf_counter()

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def _steps_done(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - self._first_step

    def _values(self, logs: dict | None) -> list[tuple[str, float]]:
        seconds = max(time.perf_counter() - self._start, 1e-9)
        rate = self.steps_seen * self.batch_size / seconds
        values = [("examples/s", round(rate))]
        return values + [(k, float(v)) for k, v in sorted((logs or {}).items())]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.verbose and self.note:
            self._write(f"{self.note}\n")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.verbose == 0:
            return
        self._first_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.steps_seen = 0
        self._start = time.perf_counter()
        self._write(f"Epoch {epoch + 1}/{self.epochs}\n")
        if self.verbose == 1:
            self._bar = _Progbar(self.steps_per_epoch, self.stream)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.verbose != 1 or self._bar is None:
            return
        self.steps_seen = min(self._steps_done(), self.steps_per_epoch)
        if self.steps_seen < self.steps_per_epoch:  # the last update comes with the epoch's logs
            self._bar.update(self.steps_seen, self._values(logs))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.verbose == 0:
            return
        self.steps_seen = min(self._steps_done(), self.steps_per_epoch)
        if self.verbose == 1 and self._bar is not None:
            self._bar.update(self.steps_seen, self._values(logs), finalize=True)
            self._bar = None
            return
        seconds = time.perf_counter() - self._start
        parts = [f"{self.steps_seen}/{self.steps_per_epoch}", f"{seconds:.1f}s"]
        parts += [f"{name}: {_format(value)}" for name, value in self._values(logs)]
        self._write(" - ".join(parts) + "\n")


def _format(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


class _Progbar(keras.utils.Progbar):
    """Keras' bar with every value shown as given (not averaged over updates)."""

    def __init__(self, target: int, stream: TextIO | None) -> None:
        super().__init__(target, verbose=1, stateful_metrics=None, unit_name="step")
        self._stream = stream

    def update(
        self,
        current: int,
        values: list[tuple[str, float]] | None = None,
        finalize: bool | None = None,
    ) -> None:
        names = [name for name, _ in values or ()]
        self.stateful_metrics = set(names)
        stdout = sys.stdout
        sys.stdout = _WholeRates(self._stream or stdout)
        try:
            return super().update(current, values, finalize)
        finally:
            sys.stdout = stdout


class _WholeRates:
    """A stream writing "examples/s: 12931" where Keras' bar formats "12931.0000"."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(re.sub(r"(examples/s: \d+)\.\d+", r"\1", text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")
