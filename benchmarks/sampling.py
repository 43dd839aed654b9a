"""Decoding latency and throughput: the Keras model, the SavedModel signatures, LiteRT files.

A briefly trained classic MNIST VAE (784-400-20, `common.ensure_trained_run`) is exported with
`keras_vae.export.export_run(..., tflite=True)` and then decodes 1 and 64 samples through:

- ``keras_decode``: `VAE.decode(z)`, an eager Keras call (what a notebook does);
- ``keras_decode_function``: the same inside a `tf.function` (what a service would wrap);
- ``keras_sample``: `VAE.sample(n)` (draws z from the model's seed generator, then decodes);
- ``saved_model_serving_default`` (z -> x_mean) and ``saved_model_sample`` (num_samples,
  seed -> x_mean, z): the decoder SavedModel TF Serving loads, via `tf.saved_model.load`;
- ``tflite_<file>_decode`` and ``..._sample`` (noise -> x_mean, z) for the float32, float16
  and dynamic-range int8 LiteRT files, in `ai_edge_litert`'s interpreter.

Each path is called ``--repeats`` times after warm-up calls; the paths take turns call by call
so background load hits them alike. Reported: median and p90 latency per call, samples per
second at the median, and the file sizes. Writes ``benchmarks/results/sampling.json``.

    python benchmarks/sampling.py              # 300 timed calls per path and batch size
    python benchmarks/sampling.py --quick      # 30
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common  # first: puts the repository on sys.path
import invocation
import numpy as np
import tensorflow as tf

from keras_vae.run_reader import load_run

if TYPE_CHECKING:
    from keras_vae.model import VAE

BATCH_SIZES = (1, 64)


def keras_paths(vae: VAE) -> dict[str, Callable[[np.ndarray], Any]]:
    """The Keras ways to decode z: eager `decode`, a `tf.function` of it, and `sample`."""
    decode_function = tf.function(vae.decode, reduce_retracing=True)
    return {
        "keras_decode": lambda z: vae.decode(z).numpy(),
        "keras_decode_function": lambda z: decode_function(tf.constant(z)).numpy(),
        "keras_sample": lambda z: vae.sample(len(z)).numpy(),
    }


def saved_model_paths(decoder_dir: Path) -> dict[str, Callable[[np.ndarray], Any]]:
    """The exported SavedModel's `serving_default` and `sample` signatures, as callables."""
    loaded = tf.saved_model.load(str(decoder_dir))
    serving = loaded.signatures["serving_default"]
    sample = loaded.signatures["sample"]
    return {
        "saved_model_serving_default": lambda z: serving(z=tf.constant(z))["x_mean"].numpy(),
        "saved_model_sample": lambda z: sample(
            num_samples=tf.constant(len(z), tf.int32), seed=tf.constant(7, tf.int32)
        )["x_mean"].numpy(),
    }


def tflite_paths(tflite_dir: Path, threads: int) -> dict[str, Callable[[np.ndarray], Any]]:
    """Each LiteRT file's `decode` and `sample` signatures, as callables of z."""
    from ai_edge_litert.interpreter import Interpreter

    paths: dict[str, Callable[..., Any]] = {}  # mypy cannot type a lambda with defaults
    for path in sorted(tflite_dir.glob("*.tflite")):
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        decode = interpreter.get_signature_runner("decode")
        sample = interpreter.get_signature_runner("sample")
        stem = path.stem
        paths[f"tflite_{stem}_decode"] = lambda z, run=decode: run(z=z)["x_mean"]
        paths[f"tflite_{stem}_sample"] = lambda z, run=sample: run(noise=z)["x_mean"]
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__, quick="30 timed calls")
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per path and n")
    parser.add_argument("--tflite-threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--run-dir", type=Path, default=None, help="a trained run to use")
    args, run = invocation.start("sampling", parser, argv, quick={"repeats": 30})
    run_dir = args.run_dir or common.ensure_trained_run(common.RESULTS_DIR / "runs" / "classic")
    export_dir = common.RESULTS_DIR / "exports" / "classic"

    from keras_vae.export import export_run

    record = export_run(run_dir, export_dir, tflite=True, version=1, overwrite=True)
    vae = load_run(run_dir).model
    decoder_dir = export_dir / "decoder" / "1"
    paths = {
        **keras_paths(vae),
        **saved_model_paths(decoder_dir),
        **tflite_paths(export_dir / "tflite", args.tflite_threads),
    }
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, Any]] = {name: {} for name in paths}
    for n in BATCH_SIZES:
        z = rng.standard_normal((n, vae.latent_dim)).astype(np.float32)
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for fn in paths.values():  # warm-up: tracing, allocation
            for _ in range(5):
                fn(z)
        for _ in range(args.repeats):
            for path_name, fn in paths.items():
                start = time.perf_counter()
                out = fn(z)
                seconds[path_name].append(time.perf_counter() - start)
        assert np.shape(out)[0] == n
        for path_name, values in seconds.items():
            summary = common.summarize_seconds(values)
            summary["samples_per_second"] = round(n / statistics.median(values))
            results[path_name][str(n)] = summary
            print(
                f"n={n:3d} {path_name:42s} median {summary['median_ms']:8.3f} ms  "
                f"p90 {summary['p90_ms']:8.3f} ms  {summary['samples_per_second']:>9d} samples/s",
                flush=True,
            )
    sizes = {
        "model.keras": common.folder_bytes(run_dir / "model.keras"),
        "saved_model_decoder": common.folder_bytes(decoder_dir),
        "saved_model_encoder": common.folder_bytes(export_dir / "encoder" / "1"),
        **{p.name: p.stat().st_size for p in sorted((export_dir / "tflite").glob("*.tflite"))},
    }
    errors = {
        name: info.get("max_abs_error") for name, info in (record["tflite"] or {})["files"].items()
    }
    return invocation.finish(
        run,
        {
            "model": "784-400-20 ReLU Bernoulli decoder (20 -> 400 -> 784), MNIST, trained briefly",
            "decoder_parameters": int(sum(np.prod(w.shape) for w in vae.decoder.weights)),
            "latency": results,
            "file_bytes": sizes,
            "tflite_max_abs_error_vs_keras": errors,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
