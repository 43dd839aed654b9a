"""Markdown tables from benchmarks/results/*.json, for the README.

    python benchmarks/report.py > /tmp/tables.md

Every number in the README's benchmark section comes from here, so the tables always match
the JSON files they cite. Missing results files are skipped with a note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(result: dict) -> str:
    m = result["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores, TF {m['tensorflow']}, Keras {m['keras']}; load average "
        f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after "
        f"({result['started']})"
    )


def throughput(result: dict) -> str:
    out = ["### Training throughput (`benchmarks/throughput.py`)", "", machine_line(result), ""]
    before, after = result["limits_before"], result["limits_after"]
    peak = max(before["peak"]["gflops_median"], after["peak"]["gflops_median"])
    out.append(f"Matrix-multiply limit: float32 2048^3 `tf.matmul` {peak:.0f} GFLOP/s; ")
    steps = before["step_matmul_gflops"]
    parts = []
    for model, by_batch in steps.items():
        for batch, value in by_batch.items():
            best = max(value, after["step_matmul_gflops"][model][batch])
            parts.append(f"{model} b={batch}: {best:.0f}")
    out[-1] += "the training step's own matmuls (GFLOP/s): " + ", ".join(parts) + "."
    out.append("")
    rows = []
    for row in result["cases"]:
        if row["pipeline"] != "current" or row["log_likelihood"] != "closed_form":
            continue
        flops = row["flops_per_example"]["train"] / 1e6
        rows.append(
            [
                row["model"],
                row["batch_size"],
                "on" if row["jit_compile"] else "off",
                row["steps_per_execution"],
                row["mixed_precision"],
                f"{row['examples_per_second_median']:,}",
                f"{row['examples_per_second_best']:,}",
                f"{row['examples_per_cpu_second']:,}",
                row["cpu_utilisation"],
                f"{flops:.2f}",
                row["achieved_gflops"],
                row.get("fraction_of_step_matmul_limit", "-"),
                row["fraction_of_peak"],
            ]
        )
    out.append(
        table(
            [
                "model",
                "batch",
                "XLA",
                "steps/exec",
                "precision",
                "examples/s (median)",
                "best",
                "examples/CPU-s",
                "CPU used (of 2)",
                "MFLOP/example",
                "GFLOP/s",
                "of step-matmul limit",
                "of peak",
            ],
            rows,
        )
    )
    out += ["", "What moved the number (classic model, batch 128, same run):", ""]
    first = result["ablation"][0]["examples_per_second_median"] if result["ablation"] else 1
    out.append(
        table(
            ["step", "examples/s (median)", "examples/CPU-s", "x before"],
            [
                [
                    a["step"],
                    f"{a['examples_per_second_median']:,}",
                    f"{a['examples_per_cpu_second']:,}",
                    f"{a['examples_per_second_median'] / first:.2f}",
                ]
                for a in result["ablation"]
            ],
        )
    )
    job = result.get("train_job")
    if job:
        out += ["", "The whole `keras-vae train` job (validation and backup every epoch):", ""]
        out.append(
            table(
                ["settings", "examples/s", "epochs", "test ELBO"],
                [
                    [k, f"{v['examples_per_second']:,}", v["epochs"], v["test_elbo"]]
                    for k, v in job.items()
                ],
            )
        )
    torch = result.get("pytorch_baseline")
    if torch:
        ours = next(
            r["examples_per_second_median"]
            for r in result["cases"]
            if r["name"] == "classic b=128 xla=on spe=50"
        )
        out += ["", f"PyTorch {torch['machine']['torch']} on the same machine, same session:", ""]
        rows = []
        for loop, values in torch["loops"].items():
            rate = values["examples_per_second_median"]
            rows.append([loop, f"{rate:,}", f"{ours / rate:.2f}"])
        out.append(table(["loop", "examples/s (median)", "keras-vae defaults / this"], rows))
    return "\n".join(out)


def sampling(result: dict) -> str:
    out = ["### Decoding latency (`benchmarks/sampling.py`)", "", machine_line(result), ""]
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
    out = ["### k = 5000 test log-likelihood (`benchmarks/evaluate_speed.py`)", ""]
    out.append(machine_line(result))
    out.append("")
    extrapolated = " (extrapolated)" if result["extrapolated"] else ""
    out.append(
        f"{result['examples_timed']:,} test images in {result['seconds']} s: "
        f"**{result['seconds_for_10000']} s for the 10,000 MNIST test images**{extrapolated}, "
        f"{result['importance_samples_per_second']:,} importance samples/s, "
        f"{result['decoder_gflops_achieved']} GFLOP/s in the decoder; "
        f"log p(x) = {result['summary']['test_log_likelihood']:.2f} nats."
    )
    out.append("")
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


def aevb(result: dict) -> str:
    out = ["### Kingma & Welling (2014), Figure 2 (`benchmarks/reproduce_aevb.py`)", ""]
    out.append(machine_line(result))
    out.append("")
    rows = []
    for name, s in result["settings"].items():
        rows.append(
            [
                name,
                f"{s['samples']:.3g}",
                s["train_bound"],
                s["test_bound"],
                s["learning_rate"],
                f"{s['train_seconds_total'] / 60:.1f}",
                f"{s['samples_per_second']:,}",
            ]
        )
    out.append(
        table(
            [
                "setting",
                "training samples seen",
                "train bound",
                "test bound",
                "Adagrad step",
                "training minutes",
                "samples/s",
            ],
            rows,
        )
    )
    return "\n".join(out)


def nll(result: dict) -> str:
    out = ["### Test NLL vs Burda et al. (2015) (`benchmarks/reproduce_nll.py`)", ""]
    out.append(machine_line(result))
    out.append("")
    rows = []
    for name, s in result["settings"].items():
        final = s.get("final") or {}
        ours = f"{final['nll']:.2f} ± {final['nll_stderr']:.2f}" if final else "-"
        rows.append(
            [
                name,
                ours,
                s["paper_nll"],
                f"{s['epochs']} of {s['paper_epochs']}",
                f"{s['train_seconds_total'] / 60:.0f}",
            ]
        )
    out.append(
        table(
            [
                "setting",
                "our test NLL, k=5000 (nats)",
                "paper",
                "epochs trained",
                "training minutes",
            ],
            rows,
        )
    )
    return "\n".join(out)


def main() -> int:
    sections = {
        "throughput": throughput,
        "sampling": sampling,
        "evaluate_speed": evaluate_speed,
        "reproduce_aevb": aevb,
        "reproduce_nll": nll,
    }
    for name, render in sections.items():
        result = load(name)
        print(render(result) if result else f"(no benchmarks/results/{name}.json yet)")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
