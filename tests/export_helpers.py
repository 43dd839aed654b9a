"""Shared by the export and serving tests: one briefly trained MNIST run and one export of it,
built once per test process, plus small checks used in several files.

Example:

    >>> run_dir = mnist_run(tmp_path_factory, shared_data_dir)      # doctest: +SKIP
    >>> out = exported(tmp_path_factory, shared_data_dir)           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

LATENT_DIM = 20  # the default, so the serving README's literal 20-number examples fit
HIDDEN_UNITS = (128,)
TRAIN_EXAMPLES = 2048
EPOCHS = 2
BATCH_SIZE = 128
SEED = 0

_cache: dict[str, object] = {}


def mnist_run(tmp_path_factory, shared_data_dir: pathlib.Path) -> pathlib.Path:
    """A run directory (model.keras, config.json, metrics.json) of a VAE fitted for two
    epochs on 2,048 real MNIST training images; built once per process."""
    if "run" not in _cache:
        import keras

        from keras_vae.config import Config
        from keras_vae.data import load_splits, to_unit_interval
        from keras_vae.model import VAE
        from keras_vae.run_dir import CONFIG_FILE, METRICS_FILE, MODEL_FILE

        dataset = str(shared_data_dir / "mnist")
        x = to_unit_interval(load_splits(dataset)["train"].images[:TRAIN_EXAMPLES])
        config = Config.from_dict(
            {
                "model": {"latent_dim": LATENT_DIM, "hidden_units": list(HIDDEN_UNITS)},
                "data": {"dataset": dataset},
                "training": {"epochs": EPOCHS, "batch_size": BATCH_SIZE},
                "runtime": {"seed": SEED},
            }
        )
        keras.utils.set_random_seed(SEED)
        vae = VAE.from_model_config(x.shape[1:], config.model, seed=SEED)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = vae.fit(x, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=True, verbose=0)
        run_dir = tmp_path_factory.mktemp("mnist_run")
        vae.save(run_dir / MODEL_FILE)
        (run_dir / CONFIG_FILE).write_text(config.to_json() + "\n")
        metrics = {
            "dataset": dataset,
            "data_shape": list(x.shape[1:]),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        }
        (run_dir / METRICS_FILE).write_text(json.dumps(metrics) + "\n")
        _cache["run"] = run_dir
        _cache["model"] = vae
    return _cache["run"]


def mnist_model(tmp_path_factory, shared_data_dir: pathlib.Path):
    """The Keras `VAE` saved in `mnist_run` (the reference every export is compared with)."""
    mnist_run(tmp_path_factory, shared_data_dir)
    return _cache["model"]


def exported(tmp_path_factory, shared_data_dir: pathlib.Path) -> pathlib.Path:
    """`export_run(mnist_run, OUT, tflite=True)` once per process; returns OUT (version 1).

    Tests must not modify it; versioning tests export into their own folders.
    """
    if "export" not in _cache:
        from keras_vae.export import export_run

        out = tmp_path_factory.mktemp("export") / "export"
        export_run(mnist_run(tmp_path_factory, shared_data_dir), out, tflite=True)
        _cache["export"] = out
    return _cache["export"]


def tree_digest(root: pathlib.Path) -> str:
    """SHA-256 over every path, file content and folder under `root` (missing: a fixed value)."""
    digest = hashlib.sha256()
    root = pathlib.Path(root)
    if not root.exists():
        return "missing"
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def rng_inputs(vae, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x uniform in [0, 1] shaped like the data and z ~ N(0, I), float32, from one seed."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch, *vae.data_shape)).astype(np.float32)
    z = rng.standard_normal((batch, vae.latent_dim)).astype(np.float32)
    return x, z


def run_python(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -c code args...` with this interpreter; TF's C++ logging kept quiet."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
