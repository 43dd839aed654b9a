"""Helpers shared by the benchmark scripts: the machine, timing, FLOP counts, results files.

Benchmarks are scripts, never imported by the package. Each writes
``benchmarks/results/<name>.json`` through `invocation.finish`, which records `machine_info`
and the `load_average` before and after (other jobs may share the cores), so numbers can be
judged.

Example:

>>> flops = dense_flops([784, 400, 20])  # 2 multiply-adds per weight
>>> flops == 2 * (784 * 400 + 400 * 20)
True
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from keras_vae.model import VAE

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shared_data_dir() -> Path:
    """The real datasets: `KERAS_VAE_SHARED_DATA`, else ``<repo>/../shared/data``."""
    path = Path(os.environ.get("KERAS_VAE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise OSError(
            f"Real data not found at {path}; set KERAS_VAE_SHARED_DATA to the folder holding "
            "mnist/, binarized-mnist/ and frey-face/."
        )
    return path


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, core count, library versions and the XLA/oneDNN settings of this process."""
    import keras
    import tensorflow as tf

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_gb(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "env": {
            key: os.environ[key]
            for key in ("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS")
            if key in os.environ
        },
    }
    try:
        import tensorflow_probability as tfp

        info["tensorflow_probability"] = tfp.__version__
    except ImportError:
        pass
    return info


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes; > cores means contention)."""
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


def write_json_atomically(path: Path, payload: Any) -> None:
    """`keras_vae.atomic.write_json_atomically` into `path`'s folder (created), NaN as null."""
    from keras_vae.atomic import finite_or_null
    from keras_vae.atomic import write_json_atomically as write

    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, finite_or_null(payload))


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as `numpy.percentile`."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_seconds(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and count of a list of durations, in milliseconds."""
    return {
        "median_ms": round(1e3 * statistics.median(seconds), 4),
        "p90_ms": round(1e3 * percentile(seconds, 90), 4),
        "min_ms": round(1e3 * min(seconds), 4),
        "repeats": len(seconds),
    }


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process, all threads."""
    times = os.times()
    return times.user + times.system


# ----------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------


def dense_flops(widths: Sequence[int]) -> int:
    """Forward FLOPs per example of a chain of Dense layers (2 per multiply-add, no biases)."""
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))


def layer_forward_flops(layer: keras.layers.Layer) -> int:
    """Multiply-add FLOPs per example of one Keras layer's forward pass (0 for non-linear ops).

    Dense: 2 * in * out. Conv2D: 2 * H_out * W_out * k_h * k_w * C_in * C_out.
    Conv2DTranspose: 2 * H_in * W_in * k_h * k_w * C_in * C_out (every input pixel is
    scattered through the whole kernel). Biases, activations and the loss are not counted.
    """
    import keras

    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        return 2 * int(fan_in) * int(units)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        _, h_in, w_in, _ = layer.input.shape
        return 2 * int(h_in) * int(w_in) * math.prod(int(d) for d in layer.kernel.shape)
    if isinstance(layer, keras.layers.Conv2D):
        _, h_out, w_out, _ = layer.output.shape
        return 2 * int(h_out) * int(w_out) * math.prod(int(d) for d in layer.kernel.shape)
    return 0


def training_flops_per_example(vae: VAE) -> dict[str, int]:
    """Analytic matmul/conv FLOPs of one SGVB training example (L = 1) for a `keras_vae.VAE`.

    Forward = encoder + decoder. The backward pass costs the forward again for the weight
    gradients and again for the input gradients, except the encoder's first layer, whose input
    is the data (no gradient needed): train = 3 * forward - first layer.
    """
    encoder = [layer_forward_flops(layer) for layer in vae.encoder.layers]
    decoder = [layer_forward_flops(layer) for layer in vae.decoder.layers]
    first = next(f for f in encoder if f)
    forward = sum(encoder) + vae.num_samples * sum(decoder)
    return {
        "forward": forward,
        "train": 3 * forward - first,
        "train_3x_forward": 3 * forward,
        "parameters": int(sum(math.prod(v.shape) for v in vae.trainable_variables)),
    }


def matmul_gflops(
    shapes: Sequence[tuple[int, int, int]],
    repeats: int = 20,
    chain: int = 8,
    jit_compile: bool = False,
) -> list[dict[str, Any]]:
    """Measured float32 `tf.matmul` rate, GFLOP/s, for each (m, k, n).

    One timed call runs `chain` matmuls of DIFFERENT operands (so no common-subexpression
    elimination can skip work) and sums every product (so no result can be pruned).

    Example:

    >>> matmul_gflops([(64, 64, 64)], repeats=2)[0]["shape"]  # doctest: +SKIP
    [64, 64, 64]
    """
    import tensorflow as tf

    rows = []
    for m, k, n in shapes:
        a = tf.random.normal([chain, m, k], seed=1)
        b = tf.random.normal([chain, k, n], seed=2)

        @tf.function(jit_compile=jit_compile)
        def products(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
            total = tf.zeros([], tf.float32)
            for i in range(chain):
                total += tf.reduce_sum(tf.matmul(a[i], b[i]))
            return total

        # mypy cannot infer the type of a lambda with default arguments (this loop's values)
        seconds = time_calls(lambda a=a, b=b, f=products: f(a, b).numpy(), repeats)  # type: ignore[misc]
        flops = 2 * m * k * n * chain
        rows.append(
            {
                "shape": [m, k, n],
                "jit_compile": jit_compile,
                "gflops_median": round(flops / statistics.median(seconds) / 1e9, 1),
                "gflops_best": round(flops / min(seconds) / 1e9, 1),
                "repeats": repeats,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------


def log_spaced_points(start: float, stop: float, per_decade: int = 4) -> list[int]:
    """Sample counts where a curve is evaluated: `per_decade` log-spaced points per decade.

    >>> log_spaced_points(1e4, 1e5, per_decade=2)
    [10000, 31623, 100000]
    """
    count = round(math.log10(stop / start) * per_decade)
    return [round(start * 10 ** (i / per_decade)) for i in range(count + 1)]


# ----------------------------------------------------------------------------------------------
# A trained model to time
# ----------------------------------------------------------------------------------------------


def ensure_trained_run(run_dir: Path, epochs: int = 2, quiet: bool = True) -> Path:
    """A run directory of the classic MNIST VAE (784-400-20 ReLU, Bernoulli, Adam 1e-3, batch
    128) trained for `epochs` by `keras_vae.train.train_and_evaluate`; reused if present."""
    from keras_vae.config import Config
    from keras_vae.train import train_and_evaluate

    run_dir = Path(run_dir)
    if (run_dir / "model.keras").exists() and (run_dir / "metrics.json").exists():
        return run_dir
    config = Config.from_dict(
        {
            "model": {"latent_dim": 20, "hidden_units": [400], "activation": "relu"},
            "data": {"dataset": str(shared_data_dir() / "mnist")},
            "training": {"epochs": epochs, "batch_size": 128},
        }
    )
    train_and_evaluate(config, run_dir, verbose=0 if quiet else "auto")
    return run_dir


def folder_bytes(path: Path) -> int:
    """Total size of the files under `path` (or of the file `path`)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
