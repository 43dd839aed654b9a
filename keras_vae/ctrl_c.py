"""A Ctrl-C that training cannot lose: `remember_ctrl_c` and `ctrl_c_pressed`.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread is. Code that
swallows it (an extension that checks for signals and clears the error, a finalizer whose
exception is ignored) makes `train` go on as if Ctrl-C had not been pressed: seen in CI,
where `keras-vae train` was still training 120 s after SIGINT. Inside `remember_ctrl_c` a
Ctrl-C is also remembered: `keras_vae.callbacks.StopOnCtrlC` raises it again at the next
batch or epoch end. (No Keras here: the command line installs this before it imports Keras.)

>>> from keras_vae.ctrl_c import remember_ctrl_c  # around `train`, by `keras-vae train`
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_PRESSED = threading.Event()


def ctrl_c_pressed() -> bool:
    """Whether Ctrl-C was pressed inside the current `remember_ctrl_c` block."""
    return _PRESSED.is_set()


def _remember_and_raise(signum: int, frame: FrameType | None) -> None:
    _PRESSED.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def remember_ctrl_c() -> Iterator[None]:
    """Inside: a Ctrl-C raises KeyboardInterrupt as usual and is also remembered.

    Only Python's own SIGINT handler is replaced, and only on the main thread: a SIGINT the
    process was started ignoring (a background job's) stays ignored, and a handler someone
    else installed is kept. The handler from before is back on exit.

    >>> import signal
    >>> before = signal.getsignal(signal.SIGINT)
    >>> with remember_ctrl_c():
    ...     ctrl_c_pressed()
    False
    >>> signal.getsignal(signal.SIGINT) is before
    True
    """
    _PRESSED.clear()
    replace = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if replace:
        signal.signal(signal.SIGINT, _remember_and_raise)
    try:
        yield
    finally:
        if replace:
            signal.signal(signal.SIGINT, signal.default_int_handler)
