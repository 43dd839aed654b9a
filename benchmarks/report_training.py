"""The training-speed sections of the benchmark report: what `keras-vae train` gives
(train_job.json), where its time goes (profile_train_*.json), bare `fit` throughput and its
targets (throughput.json), one step part by part (step_breakdown.json) and the conv
VAE's step layer by layer (conv_layers.json).

Example:

>>> train_job_model({"model": "burda", "num_samples": 50}), met(2.69 >= TARGET_PYTORCH_RATIO)
('784-200-200-50 tanh, dynamic binarization, IWAE k=50', 'met')
"""

from __future__ import annotations

from report_format import heading, met, table


def throughput(result: dict) -> str:
    out = heading("Training throughput (`benchmarks/throughput.py`)", result)
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


DEFAULTS_CASE = "classic b=128 xla=on spe=50"  # what `keras-vae train` and `VAE` pick on CPU
TARGET_EXAMPLES_PER_SECOND = 20_000
TARGET_PYTORCH_RATIO = 2.0
TARGET_FRACTION = 0.5


def targets(result: dict) -> str:
    """The throughput targets (classic model, batch 128, the defaults) against this run."""
    row = next(r for r in result["cases"] if r["name"] == DEFAULTS_CASE)
    rate = row["examples_per_second_median"]
    torch = result.get("pytorch_baseline")
    lines = [
        [
            f"examples/s, median of {len(row['round_seconds']) - 1} epochs",
            f">= {TARGET_EXAMPLES_PER_SECOND:,}",
            f"{rate:,}",
            met(rate >= TARGET_EXAMPLES_PER_SECOND),
        ]
    ]
    if torch:
        loop = "example" if "example" in torch["loops"] else "dataloader"
        reference = torch["loops"][loop]["examples_per_second_median"]
        ratio = rate / reference
        lines.append(
            [
                f"x the PyTorch example ({loop} loop: {reference:,} examples/s here)",
                f">= {TARGET_PYTORCH_RATIO:.1f}",
                f"{ratio:.2f}",
                met(ratio >= TARGET_PYTORCH_RATIO),
            ]
        )
    fraction = row.get("fraction_of_step_matmul_limit")
    if fraction is not None:
        limit = row["step_matmul_limit_gflops"]
        lines.append(
            [
                f"fraction of the step's own matmuls' rate ({limit:.0f} GFLOP/s)",
                f">= {TARGET_FRACTION}",
                fraction,
                met(fraction >= TARGET_FRACTION),
            ]
        )
    lines.append(
        [
            "fraction of a large (2048^3) matmul's rate, for reference",
            "-",
            row["fraction_of_peak"],
            "-",
        ]
    )
    header = ["classic 784-400-20, batch 128, defaults", "target", "measured", ""]
    title = (
        "**Bare `fit` targets** (`benchmarks/throughput.py`: `VAE.fit` alone, no validation or "
        "backups; it explains the numbers above, the headline is the train job):"
    )
    return "\n".join([title, "", table(header, lines)])


def step_breakdown(result: dict) -> str:
    title = "One training step, part by part (`benchmarks/step_breakdown.py`)"
    out = heading(title, result, f"{result['setting']}; milliseconds per step:")
    parts = ["train_step", "train_step_sgd", "gradients", "forward", "matmuls"]
    rows = []
    for row in result["cases"].values():
        ms, share = row["milliseconds_per_step"], row["fraction_of_step"]
        without_xla = row.get("matmul_gflops_without_xla")  # absent from older results
        rows.append(
            [row["model"], row["batch_size"]]
            + [f"{ms[p]:.3f} ({share[p]:.2f})" for p in parts]
            + [f"{row['adam_update_ms']:.3f}", f"{row['matmul_gflops']:.0f}"]
            + ["-" if without_xla is None else f"{without_xla:.0f}"]
        )
    header = ["model", "batch", *parts, "Adam update + metrics", "matmul GFLOP/s"]
    header.append("the same without XLA")
    out.append(table(header, rows))
    out += ["", "(in brackets: the fraction of the whole step)"]
    return "\n".join(out)


def conv_layers(result: dict) -> str:
    """The conv VAE's step, layer by layer (where the conv model's time goes)."""
    title = "The conv VAE's training step, layer by layer (`benchmarks/conv_layers.py`)"
    intro = (
        f"{result['model']}, batch {result['batch_size']}: the whole `train_step` takes "
        f"{result['train_step_ms']:.1f} ms ({result['step_examples_per_second']:,} examples/s); "
        "each layer alone, in milliseconds per step (forward + backward: the weights' "
        "gradients, and the input's for all but the first layer). A 2048 x 2048 matmul runs "
        f"at {result['matmul_2048_gflops']:.0f} GFLOP/s on this CPU."
    )
    out = heading(title, result, intro)
    rows = [
        [
            f"`{row['layer']}` ({row['kind']})",
            " x ".join(map(str, row["input_shape"]))
            + " -> "
            + " x ".join(map(str, row["output_shape"])),
            f"{row['forward_ms']:.2f}",
            f"{row['forward_backward_ms']:.2f}",
            f"{row['share_of_step']:.2f}",
            f"{row['forward_backward_gflops']:.0f}",
        ]
        for row in result["layers"]
    ]
    header = ["layer", "shape", "forward", "forward + backward", "of the step", "GFLOP/s"]
    out.append(table(header, rows))
    return "\n".join(out)


TRAIN_JOB_MODELS = {
    "classic": "784-400-20 MLP",
    "conv": "conv 32-64",
    "burda": "784-200-200-50 tanh, dynamic binarization",
}


def train_job_model(case: dict) -> str:
    """What a train_job case trains: its network, and the IWAE bound's draws if it has them."""
    samples = case.get("num_samples", 1)
    return TRAIN_JOB_MODELS[case["model"]] + (f", IWAE k={samples}" if samples > 1 else "")


def train_job(result: dict) -> str:
    """The headline: `keras-vae train` itself against PyTorch's example and the JAX scan."""
    out = heading(
        "What `keras-vae train` gives you (`benchmarks/train_job.py`)",
        result,
        "Examples/s of whole epochs (validation and backup included) from `metrics.json`, "
        "median over interleaved rounds; PyTorch: the example's model, loss and PIL + "
        "DataLoader loop; JAX: one jitted `lax.scan` per epoch over device-resident batches.",
    )
    rows = []
    for case in result["cases"].values():
        summary = case["summary"]
        jax, torch = summary.get("jax_scan"), summary.get("pytorch_example")
        first = summary.get("first_epoch_seconds")
        rows.append(
            [
                train_job_model(case),
                case["batch_size"],
                f"{summary['keras_vae_train']:,}",
                f"{torch:,}" if torch else "-",
                f"{summary['vs_pytorch']:.2f} ({met(summary['vs_pytorch'] >= 2.0)})"
                if torch
                else "-",
                f"{jax:,}" if jax else "-",
                f"{summary['vs_jax']:.2f} ({met(summary['vs_jax'] >= 1.0)})" if jax else "-",
                f"{first:.1f} s" if first else "-",
                f"{summary['command_seconds']:.0f} s / {case['epochs']} epochs",
                len(case["rounds"]),
            ]
        )
    header = [
        "model",
        "batch",
        "keras-vae train",
        "PyTorch example",
        "x PyTorch (>= 2)",
        "JAX scan",
        "x JAX (>= 1)",
        "first epoch",
        "whole command",
        "rounds",
    ]
    out.append(table(header, rows))
    return "\n".join(out)


def profile_train(result: dict) -> str:
    """Where the job's time goes (`benchmarks/profile_train.py`)."""
    job = (
        f"{result['model']} model, batch {result['batch_size']}, {result['epochs']} epochs: "
        f"{result['job_seconds']} s in `train_and_evaluate` "
        f"(+ {result['phases_seconds']['imports']} s of imports)."
    )
    out = heading("Where the job's time goes (`benchmarks/profile_train.py`)", result, job)
    rows = [
        [
            e["epoch"],
            e["wall"],
            e["train_function"],
            e["calls"],
            e["first_call"],
            e["validation"],
            e["keras_loop_and_callbacks"],
            f"{e['examples_per_second']:,}",
            f"{e['train_function_examples_per_second']:,}",
        ]
        for e in result["per_epoch"]
    ]
    header = [
        "epoch",
        "wall s",
        "in train function",
        "calls",
        "first call",
        "validation",
        "rest (loop, callbacks)",
        "examples/s",
        "inside the function",
    ]
    out.append(table(header, rows))
    phases = ", ".join(f"{k} {v}" for k, v in result["phases_seconds"].items())
    out += ["", f"Phases (s): {phases}."]
    return "\n".join(out)
