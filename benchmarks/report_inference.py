"""The inference sections of the benchmark report: decoding latency of every export path
(sampling.json), the k = 5000 evaluation's time (evaluate_speed.json) and the GPU check
(gpu_check.json, or the statement that no GPU has run it).

Example:

>>> gpu_check(None).splitlines()[2].startswith("Not run on a GPU yet")
True
"""

from __future__ import annotations

from report_format import heading, table


def sampling(result: dict) -> str:
    """Decoding latency of every export path and the files' sizes (sampling.json)."""
    out = heading("Decoding latency (`benchmarks/sampling.py`)", result)
    rows = []
    for path, by_n in result["latency"].items():
        one, many = by_n["1"], by_n["64"]
        rows.append(
            [
                path,
                f"{one['median_ms']:.3f} / {one['p90_ms']:.3f}",
                f"{many['median_ms']:.3f} / {many['p90_ms']:.3f}",
                f"{many['samples_per_second']:,}",
            ]
        )
    out.append(
        table(["path", "n=1 median / p90 (ms)", "n=64 median / p90 (ms)", "samples/s (n=64)"], rows)
    )
    out += ["", "File sizes (bytes):", ""]
    out.append(table(["file", "bytes"], [[k, f"{v:,}"] for k, v in result["file_bytes"].items()]))
    return "\n".join(out)


def evaluate_speed(result: dict) -> str:
    """The time of the k = 5000 test log-likelihood and its options (evaluate_speed.json)."""
    extrapolated = " (extrapolated)" if result["extrapolated"] else ""
    out = heading(
        "k = 5000 test log-likelihood (`benchmarks/evaluate_speed.py`)",
        result,
        f"{result['examples_timed']:,} test images in {result['seconds']} s: "
        f"**{result['seconds_for_10000']} s for the 10,000 MNIST test images**{extrapolated}, "
        f"{result['importance_samples_per_second']:,} importance samples/s, "
        f"{result['decoder_gflops_achieved']} GFLOP/s in the decoder; "
        f"log p(x) = {result['summary']['test_log_likelihood']:.2f} nats.",
    )
    out.append(
        table(
            ["option", "s per 1000 images", "CPU-s per 1000 images"],
            [
                [k, v["seconds_per_1000_images"], v["cpu_seconds_per_1000_images"]]
                for k, v in result["options"].items()
            ],
        )
    )
    return "\n".join(out)


def gpu_check(result: dict | None) -> str:
    """The GPU check's results, or the statement that it has not run on a GPU."""
    title = "### GPU check (`benchmarks/gpu_check.sh`)"
    if not result or result.get("mode") != "full" or not result["device"]["gpus"]:
        return (
            f"{title}\n\nNot run on a GPU yet: no session has had one. `bash "
            "benchmarks/gpu_check.sh` records train throughput (classic and conv; XLA, "
            "bfloat16, float16), MirroredStrategy over 2 logical GPUs vs 1 replica, the k=5000 "
            "evaluation and the export parity checks; CI runs its `--smoke` mode on CPU."
        )
    rows = [
        [name, f"{r['examples_per_second']:,}", r["test_elbo"], r["seconds"]]
        for name, r in result["train"].items()
        if "examples_per_second" in r
    ]
    out = [title, "", str(result["device"]["details"]), ""]
    out.append(table(["model/precision", "examples/s", "test ELBO", "seconds"], rows))
    mirrored, evaluate = result["mirrored"], result["evaluate"]
    out += [
        "",
        f"Mirrored (2 logical GPUs) vs 1 replica: max weight difference "
        f"{mirrored.get('max_abs_weight_difference')}; k={evaluate.get('importance_samples')} "
        f"evaluation: {evaluate.get('seconds')} s; export checks: "
        f"{result['export'].get('error', 'passed')}.",
    ]
    return "\n".join(out)
