"""Recurring checks shared by the test modules: save/load and config round trips, Monte Carlo
standard errors, one-line CLI errors.

Example:

    >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))     # doctest: +SKIP
    >>> assert_save_load_round_trip(vae, x, tmp_path)                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import pathlib
import re

import keras
import numpy as np

# Lines TensorFlow's C++ runtime prints to stderr on import, whatever TF_CPP_MIN_LOG_LEVEL says.
_TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)"
)


def standard_error(draws: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean of i.i.d. `draws` along `axis` (ddof=1)."""
    draws = np.asarray(draws, np.float64)
    return np.std(draws, axis=axis, ddof=1) / math.sqrt(draws.shape[axis])


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


def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not TensorFlow's C++ start-up log."""
    return [line for line in stderr.splitlines() if line.strip() and not _TF_LOG_LINE.match(line)]


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    """stderr holds exactly one error line (besides TF's start-up log) containing `fragments`."""
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {lines}"
    line = lines[0]
    assert re.match(r"^keras-vae( \w+)?: error: ", line), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def tree_listing(path: pathlib.Path) -> list[tuple[str, int]]:
    """(relative path, size) of everything under `path`, to prove a command wrote nothing."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1) for p in path.rglob("*")
    )
