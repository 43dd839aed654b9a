"""Ctrl-C: one line, exit code 130, the backup kept, and never lost on the way.

`keras-vae train` interrupted must say how to resume and keep every completed epoch; a Ctrl-C
that something swallows (seen in CI: train went on 120 s after SIGINT) must still stop it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import add_training_callback

from keras_vae import resume
from keras_vae.callbacks import StopOnCtrlC
from keras_vae.cli import main
from keras_vae.ctrl_c import ctrl_c_pressed, remember_ctrl_c
from keras_vae.model import VAE

# `keras-vae train` flags for a small digits run, all but --epochs.
FLAGS = [
    "--dataset=digits",
    "--latent-dim=2",
    "--hidden-units=16",
    "--batch-size=64",
    "--seed=3",
    "--verbose=0",
]


@pytest.fixture
def python_sigint():
    """SIGINT handled by Python's own handler, as in a terminal (whatever started pytest)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class SwallowsCtrlC(keras.callbacks.Callback):
    """Presses Ctrl-C at the end of epoch `epoch` and swallows its KeyboardInterrupt, as an
    extension that checks for signals and clears the error would."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch
        self.swallowed = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                self.swallowed += 1


def tiny_model() -> VAE:
    model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
    model.compile(optimizer="adam")
    return model


def test_a_swallowed_ctrl_c_still_stops_fit_at_the_epoch_end(python_sigint):
    swallower = SwallowsCtrlC(epoch=1)
    epochs = keras.callbacks.History()
    with remember_ctrl_c(), pytest.raises(KeyboardInterrupt):
        tiny_model().fit(
            np.full((8, 4), 0.5), epochs=50, verbose=0, callbacks=[swallower, epochs, StopOnCtrlC()]
        )
    assert swallower.swallowed == 1
    assert len(epochs.history["loss"]) == 2  # stopped at the end of the epoch it was pressed in
    assert ctrl_c_pressed()
    with remember_ctrl_c():  # each block starts with nothing pressed
        assert not ctrl_c_pressed()


def test_without_remember_ctrl_c_a_swallowed_ctrl_c_is_lost(python_sigint):
    """What the CI saw: the same swallowed Ctrl-C and nothing remembers it."""
    history = tiny_model().fit(
        np.full((8, 4), 0.5), epochs=3, verbose=0, callbacks=[SwallowsCtrlC(epoch=0), StopOnCtrlC()]
    )
    assert len(history.history["loss"]) == 3


def test_keras_vae_train_stops_on_a_swallowed_ctrl_c_with_the_epoch_backed_up(
    tmp_path, monkeypatch, capsys, python_sigint
):
    """The whole command: Ctrl-C swallowed at the end of epoch 2 of 1,000; train stops there,
    says how to resume (exit 130), and its backup holds the 2 epochs."""
    swallower = SwallowsCtrlC(epoch=1)
    add_training_callback(monkeypatch, swallower)
    run_dir = tmp_path / "run"
    assert main(["train", f"--output={run_dir}", *FLAGS, "--epochs=1000"]) == 130
    assert swallower.swallowed == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "keras-vae train: interrupted; every completed epoch is in its backup: rerun the same "
        "command to resume."
    )
    assert resume.read_progress(run_dir / "backup" / "state.npz")["epoch"] == 2
    assert not (run_dir / "metrics.json").exists()


def test_a_sigint_ignored_from_the_start_stays_ignored():
    """A background job starts with SIGINT ignored; remember_ctrl_c must not turn it on."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with remember_ctrl_c():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_one_line_exit_130_and_keeps_the_backup(tmp_path):
    """Ctrl-C during training printed TensorFlow's stack; now one line saying how to resume,
    exit code 130 (as a shell reports SIGINT), and the backup of the completed epochs kept."""
    run_dir = tmp_path / "run"
    flags = [*FLAGS, "--epochs=100000"]
    command = [sys.executable, "-m", "keras_vae.cli", "train", f"--output={run_dir}", *flags]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C reaches a command run in a terminal's foreground, which handles SIGINT. A suite
    # started in the background (`pytest &` in a script) passes SIGINT down ignored, as POSIX
    # has it, and a Python started that way keeps ignoring it: restore the default here.
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    state = run_dir / "backup" / "state.npz"
    try:
        deadline = time.monotonic() + 240
        while not state.exists():  # an epoch has been backed up
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # show where it was: faulthandler prints each thread
            process.send_signal(signal.SIGABRT)
            _, err = process.communicate(timeout=60)
            pytest.fail(f"train went on 120 s after Ctrl-C; its threads then:\n{err[-8000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("keras-vae")]
    assert lines == [
        "keras-vae train: interrupted; every completed epoch is in its backup: rerun the same "
        "command to resume."
    ], err[-2000:]
    assert "Traceback" not in err
    assert resume.read_progress(state)["epoch"] >= 1


def test_an_interrupted_command_says_what_it_left(monkeypatch, capsys):
    from keras_vae.cli import sample

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample, "run", interrupted)
    assert main(["sample", "RUN", "--out", "s.png"]) == 130
    assert capsys.readouterr().err == (
        "keras-vae sample: interrupted; no file was left half-written.\n"
    )


@pytest.mark.parametrize("cleanup_error", [ValueError, RuntimeError, OSError])
def test_a_cleanup_that_fails_under_ctrl_c_is_still_the_ctrl_c(cleanup_error, monkeypatch, capsys):
    """A Ctrl-C inside NumPy's zip writer (the backup's state) made it raise "Can't close the
    ZIP file while there is an open writing handle" on its way out: train reported that as
    bad input, exit 2 (found stress-testing Ctrl-C, once in 30). An error raised while a
    KeyboardInterrupt is handled is the Ctrl-C: one line, 130. Without one it is an error."""
    from keras_vae.cli import train

    def interrupted(_args):
        try:
            raise KeyboardInterrupt
        finally:
            raise cleanup_error("Can't close the ZIP file while there is an open writing handle")

    monkeypatch.setattr(train, "run", interrupted)
    assert main(["train", "--output", "RUN"]) == 130
    assert capsys.readouterr().err == (
        "keras-vae train: interrupted; every completed epoch is in its backup: rerun the same "
        "command to resume.\n"
    )

    def failed(_args):
        raise cleanup_error("disk on fire")

    monkeypatch.setattr(train, "run", failed)
    if cleanup_error is RuntimeError:  # not bad input: the stack is shown
        with pytest.raises(RuntimeError, match="disk on fire"):
            main(["train", "--output", "RUN"])
    else:
        assert main(["train", "--output", "RUN"]) == 2
        assert capsys.readouterr().err == "keras-vae train: error: disk on fire\n"
