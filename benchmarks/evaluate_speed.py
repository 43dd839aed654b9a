"""Time of the k = 5000 importance-weighted log-likelihood on the 10,000 MNIST test images.

The model is the briefly trained classic MNIST VAE (784-400-20, `common.ensure_trained_run`),
evaluated the way `keras-vae evaluate` does it (`keras_vae.importance.estimate_log_likelihood`,
batches of 100 images, XLA-compiled chunks of importance samples). First a few batches time
the options against each other (XLA on/off, chunk sizes); then the default runs on
``--examples`` test images (all 10,000 by default). With fewer examples the time for 10,000
is extrapolated linearly (batches all cost the same; the JSON says which it is).

FLOPs: each importance sample decodes once (20 -> 400 -> 784), the encoder runs once per
image; the rate is compared with the machine's measured matmul rate at that shape.

    python benchmarks/evaluate_speed.py                 # the whole test set (a few minutes)
    python benchmarks/evaluate_speed.py --quick         # 500 images, extrapolated
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common  # first: puts the repository on sys.path
import invocation
import numpy as np

from keras_vae.data import load_splits, to_unit_interval
from keras_vae.execution import resolve_importance_jit_compile
from keras_vae.importance import DEFAULT_BATCH_SIZE, estimate_log_likelihood
from keras_vae.run_reader import load_run

if TYPE_CHECKING:
    from keras_vae.model import VAE

K = 5000
TEST_SIZE = 10_000


def timed_estimate(vae: VAE, images: np.ndarray, **options: Any) -> tuple[float, dict]:
    """Seconds of `estimate_log_likelihood` (K = 5000) on `images`, and its summary."""
    start = time.perf_counter()
    estimate = estimate_log_likelihood(vae, images, num_samples=K, seed=0, **options)
    return time.perf_counter() - start, estimate.summary()


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__, quick="500 images, extrapolated")
    parser.add_argument("--examples", type=int, default=TEST_SIZE, help="test images to time")
    parser.add_argument("--compare-examples", type=int, default=200, help="per option compared")
    parser.add_argument("--run-dir", type=Path, default=None, help="a trained run to use")
    quick = {"examples": 500, "compare_examples": 100}
    args, run = invocation.start("evaluate_speed", parser, argv, quick=quick)
    run_dir = args.run_dir or common.ensure_trained_run(common.RESULTS_DIR / "runs" / "classic")
    vae = load_run(run_dir).model
    test = to_unit_interval(load_splits(str(common.shared_data_dir() / "mnist"))["test"].images)
    batch = DEFAULT_BATCH_SIZE
    default_chunk = vae.default_chunk_size(batch)

    # The options, each on the same few batches after one untimed batch (tracing, compiling).
    compare = test[: args.compare_examples]
    auto, other = ("xla", "no-xla") if resolve_importance_jit_compile("auto") else ("no-xla", "xla")
    options = {
        f"{auto} chunk={default_chunk} (default)": {},
        f"{other} chunk={default_chunk}": {"jit_compile": other == "xla"},
        f"{auto} chunk={default_chunk // 4}": {"chunk_size": default_chunk // 4},
        f"{auto} chunk={default_chunk * 4}": {"chunk_size": default_chunk * 4},
    }
    comparison = {}
    for label, option in options.items():
        estimate_log_likelihood(vae, test[:batch], num_samples=K, seed=0, **option)  # warm-up
        cpu = common.cpu_seconds()
        seconds, summary = timed_estimate(vae, compare, **option)
        cpu = common.cpu_seconds() - cpu
        comparison[label] = {
            "seconds_per_1000_images": round(1000 * seconds / len(compare), 2),
            "cpu_seconds_per_1000_images": round(1000 * cpu / len(compare), 2),
            "test_log_likelihood": round(summary["test_log_likelihood"], 3),
        }
        print(f"{label:28s} {comparison[label]}", flush=True)

    images = test[: args.examples]
    cpu = common.cpu_seconds()
    seconds, summary = timed_estimate(vae, images)
    cpu = common.cpu_seconds() - cpu
    full_seconds = seconds * TEST_SIZE / len(images)
    hidden = vae.hidden_units[-1]
    decoder_flops = 2 * (vae.latent_dim * hidden + hidden * int(np.prod(vae.data_shape)))
    flops = len(images) * K * decoder_flops
    step = [(batch * default_chunk, vae.latent_dim, hidden), (batch * default_chunk, hidden, 784)]
    matmul = common.matmul_gflops(step, repeats=5, chain=2, jit_compile=True)
    result = {
        "model": "784-400-20 ReLU Bernoulli (classic MNIST VAE), briefly trained",
        "importance_samples": K,
        "batch_size": batch,
        "chunk_size": default_chunk,
        "examples_timed": len(images),
        "extrapolated": len(images) < TEST_SIZE,
        "seconds": round(seconds, 1),
        "seconds_for_10000": round(full_seconds, 1),
        "cpu_seconds_for_10000": round(cpu * TEST_SIZE / len(images), 1),
        "images_per_second": round(len(images) / seconds, 1),
        "importance_samples_per_second": round(len(images) * K / seconds),
        "decoder_gflops_achieved": round(flops / seconds / 1e9, 1),
        "matmul_gflops_at_chunk_shape_xla": matmul,
        "summary": {k: v for k, v in summary.items() if v is not None},
        "options_compared_on": len(compare),
        "options": comparison,
    }
    print(
        f"k={K} on {len(images)} images: {seconds:.1f} s "
        f"({'extrapolated ' if result['extrapolated'] else ''}{full_seconds:.0f} s for 10,000), "
        f"log p(x) = {summary['test_log_likelihood']:.2f}"
    )
    return invocation.finish(run, result)


if __name__ == "__main__":
    sys.exit(main())
