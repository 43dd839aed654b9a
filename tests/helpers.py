"""Recurring checks shared by the test modules: save/load and config round trips, export parity,
Monte Carlo standard errors, one-line CLI errors and "exit 2 and nothing changed".

The fixtures themselves (a tiny digits run, one MNIST run, its model and one export) live in
conftest.py; the constants of the MNIST run are here, for the tests that check shapes.

Example:

    >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))     # doctest: +SKIP
    >>> assert_save_load_round_trip(vae, x, tmp_path)                   # doctest: +SKIP
    >>> assert_exit_2_and_unchanged(["sample", "run", "-n", "0"], [tmp_path], capsys, "-n")
    ...                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# The `mnist_run` fixture (conftest.py): a VAE fitted for two epochs on 2,048 MNIST images.
LATENT_DIM = 20  # the default, so the serving README's literal 20-number examples fit
HIDDEN_UNITS = (128,)
TRAIN_EXAMPLES = 2048
TEST_EXAMPLES = 512
EPOCHS = 2
BATCH_SIZE = 128
SEED = 0

# Lines TensorFlow's C++ runtime prints to stderr on import, whatever TF_CPP_MIN_LOG_LEVEL says.
_TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)"
)
_CLI_ERROR = re.compile(r"^keras-vae( [\w-]+)?: error: ")


# ---------------------------------------------------------------------------- numbers
def standard_error(draws: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean of i.i.d. `draws` along `axis` (ddof=1)."""
    draws = np.asarray(draws, np.float64)
    return np.std(draws, axis=axis, ddof=1) / math.sqrt(draws.shape[axis])


def rng_inputs(vae, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x uniform in [0, 1] shaped like the data and z ~ N(0, I), float32, from one seed."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *vae.data_shape)).astype(np.float32)
    z = rng.standard_normal((batch, vae.latent_dim)).astype(np.float32)
    return x, z


# ---------------------------------------------------------------------------- models
def numpy_outputs(vae, x: np.ndarray, z: np.ndarray, seed: int = 7) -> dict[str, np.ndarray]:
    """Everything a VAE's inference API returns for `x` and latent codes `z`, as NumPy."""
    z_mean, z_stddev = vae.encode(x)
    return {
        "predict": vae.predict(x, verbose=0),
        "reconstruct": np.asarray(vae.reconstruct(x)),
        "z_mean": np.asarray(z_mean),
        "z_stddev": np.asarray(z_stddev),
        "decode": np.asarray(vae.decode(z)),
        "sample": np.asarray(vae.sample(3, seed=seed)),
    }


def assert_save_load_round_trip(vae, x: np.ndarray, directory: pathlib.Path):
    """`vae.save("m.keras")` then `keras.saving.load_model`: same config, identical outputs.

    Returns the reloaded model.
    """
    import keras

    path = pathlib.Path(directory) / "m.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(vae)
    assert loaded.get_config() == vae.get_config()
    z = np.random.default_rng(0).normal(size=(5, vae.latent_dim)).astype(np.float32)
    before, after = numpy_outputs(vae, x, z), numpy_outputs(loaded, x, z)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    return loaded


def assert_config_round_trip(vae, x: np.ndarray):
    """`from_config(get_config())` rebuilds the same architecture: same config, same outputs
    once given the same weights."""
    config = vae.get_config()
    clone = type(vae).from_config(config)
    assert clone.get_config() == config
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in vae.get_weights()]
    clone.set_weights(vae.get_weights())
    # A compiled MLP VAE predicts with XLA (its "auto" default), the uncompiled clone without:
    # the two may round differently, by a few float32 ulps.
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(
        clone.predict(x, verbose=0), vae.predict(x, verbose=0), rtol=8 * eps, atol=8 * eps
    )
    return clone


# ---------------------------------------------------------------------------- exports
def keras_reference(vae, x: np.ndarray | None = None, z: np.ndarray | None = None) -> dict:
    """What an export must serve: the Keras model's z_mean and z_stddev of `x`, x_mean of `z`."""
    expected = {}
    if x is not None:
        expected["z_mean"], expected["z_stddev"] = (np.asarray(t) for t in vae.encode(x))
    if z is not None:
        expected["x_mean"] = np.asarray(vae.decode(z))
    return expected


def assert_export_parity(got: Mapping[str, Any], expected: Mapping[str, Any], atol: float):
    """Every output in `expected` (e.g. `keras_reference`) is in `got` (what a SavedModel
    signature, a LiteRT runner or a served request returned) within `atol`, rtol 0."""
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(got[name]), np.asarray(value), rtol=0, atol=atol, err_msg=name
        )


# ---------------------------------------------------------------------------- the commands
def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not TensorFlow's C++ start-up log."""
    return [line for line in stderr.splitlines() if line.strip() and not _TF_LOG_LINE.match(line)]


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    """stderr holds exactly one error line (besides TF's start-up log) containing `fragments`."""
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {lines}"
    line = lines[0]
    assert _CLI_ERROR.match(line), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def tree_digest(
    folder: pathlib.Path, *, modes: bool = False, skip_prefix: str | None = None
) -> dict[str, Any] | None:
    """Every path under `folder` -> sha256 of its bytes (None for a folder, its kind and inode
    for a FIFO or socket), to prove that a command wrote, deleted or changed nothing; None
    when `folder` does not exist.

    Args:
        folder: the folder to digest.
        modes: also record each path's mode (`key + ":mode"`). Default False.
        skip_prefix: leave out the top-level entries whose names start with it (and all
            below them). Default None.
    """
    folder = pathlib.Path(folder)
    if not folder.exists():
        return None
    digest: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if skip_prefix is not None and key.startswith(skip_prefix):
            continue
        if path.is_dir():
            digest[key] = None
        elif path.is_file():
            digest[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:  # a FIFO or socket: reading it could block; its kind and inode say it is there
            digest[key] = f"special {stat.S_IFMT(path.lstat().st_mode)} {path.lstat().st_ino}"
        if modes:
            digest[key + ":mode"] = oct(path.stat().st_mode)
    return digest


def assert_exit_2_and_unchanged(
    argv: Sequence[Any], folders: Sequence[pathlib.Path], capsys, *fragments: str
) -> str:
    """`keras-vae ARGV` (in this process) exits 2, prints nothing on stdout and exactly one
    line on stderr, ``keras-vae[ CMD]: error: ...`` holding `fragments`, and leaves every one
    of `folders` as it was: the same paths, bytes and modes. Returns the error line."""
    from keras_vae.cli import main

    argv = [str(arg) for arg in argv]
    before = [tree_digest(folder, modes=True) for folder in folders]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (argv, code, captured.err[-500:])
    assert captured.out == "", (argv, captured.out[-500:])
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.err.endswith("\n"), (argv, lines)
    line = assert_one_line_error(captured.err, *fragments)
    assert [tree_digest(folder, modes=True) for folder in folders] == before, argv
    return line


def assert_train_refused(
    flags: Sequence[Any], tmp_path: pathlib.Path, capsys, *fragments: str
) -> str:
    """`keras-vae train FLAGS --output TMP_PATH/run` fails as `assert_exit_2_and_unchanged`
    says (TMP_PATH unchanged) and creates no run folder. Returns the error line."""
    out = tmp_path / "run"
    line = assert_exit_2_and_unchanged(
        ["train", *flags, "--output", out], [tmp_path], capsys, *fragments
    )
    assert not out.exists()
    return line


def run_command(
    command: Sequence[str],
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run `command` (in `cwd`) with TF's C++ logging kept quiet (`env` adds or replaces
    variables)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def run_python(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -c code args...` with this interpreter; TF's C++ logging kept quiet."""
    return run_command([sys.executable, "-c", code, *args], timeout=timeout)


def run_result_program(script: pathlib.Path, *args: str, timeout: float = 600) -> dict:
    """Run the test program `script` (e.g. tests/mirrored_main.py) with this interpreter in a
    fresh process, from the repository (on its PYTHONPATH, TF_CONFIG unset), and return the
    JSON of the last line it prints that starts with ``RESULT ``. Fails with its stderr's
    tail unless it exits 0 having printed one."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def load_benchmark_modules(*names: str) -> list:
    """benchmarks/<name>.py as modules (their sibling imports from beside them)."""
    import importlib

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))


def console_script(name: str = "keras-vae") -> pathlib.Path:
    """An installed console script beside this interpreter (`keras-vae`, `saved_model_cli`)."""
    script = pathlib.Path(sys.executable).parent / name
    assert script.is_file(), f"{name} not found beside {sys.executable}"
    return script


# ---------------------------------------------------------------------------- runs
def train_run(folder: pathlib.Path, config: Mapping[str, Any]) -> pathlib.Path:
    """`folder/run` written by the real `train_and_evaluate` for `Config.from_dict(config)`."""
    from keras_vae.config import Config
    from keras_vae.train import train_and_evaluate

    run_dir = pathlib.Path(folder) / "run"
    train_and_evaluate(Config.from_dict(config), run_dir, verbose=0)
    return run_dir


def add_training_callback(monkeypatch, callback: keras.callbacks.Callback) -> None:
    """Have `keras-vae train` pass `callback` to `fit` too, with `training_callbacks`' own
    (so before the progress bar, the divergence check and the backup)."""
    from keras_vae import train as train_module

    made = train_module.training_callbacks
    monkeypatch.setattr(
        train_module, "training_callbacks", lambda *a, **k: [*made(*a, **k), callback]
    )


# ---------------------------------------------------------------------------- resuming
RTOL = 1e-6
TIMING_KEYS = {"examples_per_second", "resumed_from_epoch"}


def assert_same_results(resumed: dict, uninterrupted: dict) -> None:
    assert set(resumed) == set(uninterrupted)
    for key, value in uninterrupted.items():
        if key in TIMING_KEYS:
            continue
        if key == "history":
            assert set(resumed[key]) == set(value)
            for name, curve in value.items():
                np.testing.assert_allclose(resumed[key][name], curve, rtol=RTOL, err_msg=name)
        elif isinstance(value, float):
            np.testing.assert_allclose(resumed[key], value, rtol=RTOL, err_msg=key)
        else:
            assert resumed[key] == value, key


class FailAt(keras.callbacks.Callback):
    """Raise at the end of epoch `epoch` (before that epoch's backup), or at train end."""

    def __init__(self, epoch: int | None = None, at_train_end: bool = False):
        super().__init__()
        self.epoch, self.at_train_end = epoch, at_train_end

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"interrupted after epoch {epoch}")

    def on_train_end(self, logs=None):
        if self.at_train_end:
            raise RuntimeError("interrupted after training")


# ---------------------------------------------------------------------------- TF-only processes
# The start of every script that checks an export in a fresh interpreter which cannot import
# keras_vae: what TF Serving or any user gets (the export must need nothing of ours).
TENSORFLOW_ONLY_PRELUDE = r"""
import sys


class NoKerasVae:
    def find_spec(self, name, path=None, target=None):
        if name == "keras_vae" or name.startswith("keras_vae."):
            raise ImportError("keras_vae must not be needed to load the export")


sys.meta_path.insert(0, NoKerasVae())
"""


# ---------------------------------------------------------------------------- exports
def write_checked_exports(models: Mapping[str, Any], root: pathlib.Path, max_samples: int) -> dict:
    """{name: (model, folder)}: folder/encoder/1 and folder/decoder/1 written and checked by
    `keras_vae.export.saved_model` (sample cap `max_samples`), folder/tflite by
    `write_tflite` (checked too), for each of `models`."""
    from keras_vae.export import saved_model, saved_model_checks
    from keras_vae.export.litert import write_tflite

    exported = {}
    for name, model in models.items():
        folder = pathlib.Path(root) / name
        saved_model.write_encoder(model, folder / "encoder" / "1")
        saved_model_checks.check_encoder(model, folder / "encoder" / "1")
        saved_model.write_decoder(model, folder / "decoder" / "1", max_samples=max_samples)
        saved_model_checks.check_decoder(model, folder / "decoder" / "1", max_samples=max_samples)
        write_tflite(model, folder / "tflite", folder / "work")
        exported[name] = (model, folder)
    return exported


def load_saved_models(exported: Mapping[str, Any]) -> dict:
    """{name: {"encoder": loaded, "decoder": loaded}} of `write_checked_exports`' folders."""
    import tensorflow as tf

    return {
        name: {
            part: tf.saved_model.load(str(folder / part / "1")) for part in ("encoder", "decoder")
        }
        for name, (_, folder) in exported.items()
    }


# ---------------------------------------------------------------------------- README requests
def readme_curl_lines(text: str, fence: str = "bash") -> list[str]:
    """The curl lines to localhost:8501 of the ```fence blocks of a README `text`."""
    blocks = re.findall(rf"```{fence}\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if "curl" in line and "localhost:8501" in line]


def send_readme_curl(command: str, rest_port: int) -> tuple[str, str | None, Any]:
    """Send one README curl line as curl would, to 127.0.0.1:`rest_port` instead of
    localhost:8501: a POST of its ``-d`` body (``-d @-`` reads the stdout of the
    ``python3 -c ... |`` before it), else a GET. Returns (url, body, the response)."""
    import requests

    body = None
    if " | curl " in command:
        producer, command = command.split(" | ", 1)
        argv = shlex.split(producer)
        assert argv[:2] == ["python3", "-c"], producer
        made = subprocess.run(
            [sys.executable, "-c", argv[2]], capture_output=True, text=True, timeout=60
        )
        body = made.stdout
    argv = shlex.split(command)
    url = next(a for a in argv if a.startswith("http://localhost:8501"))
    url = url.replace("localhost:8501", f"127.0.0.1:{rest_port}")
    if "-d" not in argv:
        return url, None, requests.get(url, timeout=30)
    data = argv[argv.index("-d") + 1]
    body = body if data == "@-" else data
    return url, body, requests.post(url, data=body, timeout=30)
