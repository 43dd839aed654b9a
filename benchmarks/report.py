"""Markdown tables from benchmarks/results/*.json, for the README.

    python benchmarks/report.py                     # print the tables
    python benchmarks/report.py --readme README.md  # rewrite the README's benchmark section

Every number in the README's benchmark section comes from here, so the tables always match
the JSON files they cite. Missing results files are skipped with a note.
"""

from __future__ import annotations

import argparse
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
            _met(rate >= TARGET_EXAMPLES_PER_SECOND),
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
                _met(ratio >= TARGET_PYTORCH_RATIO),
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
                _met(fraction >= TARGET_FRACTION),
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


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


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


def step_breakdown(result: dict) -> str:
    out = ["### One training step, part by part (`benchmarks/step_breakdown.py`)", ""]
    out += [machine_line(result), "", f"{result['model']}; milliseconds per step:", ""]
    parts = ["train_step", "train_step_sgd", "gradients", "forward", "matmuls"]
    rows = []
    for row in result["rows"]:
        ms, share = row["milliseconds_per_step"], row["fraction_of_step"]
        rows.append(
            [row["batch_size"]]
            + [f"{ms[p]:.3f} ({share[p]:.2f})" for p in parts]
            + [f"{row['adam_update_ms']:.3f}", f"{row['matmul_gflops']:.0f}"]
        )
    header = ["batch", *parts, "Adam update + metrics", "matmul GFLOP/s"]
    out.append(table(header, rows))
    out += ["", "(in brackets: the fraction of the whole step)"]
    return "\n".join(out)


def budget_line(result: dict) -> str:
    """The compute a reproduction has used so far, summed over its resumed pieces."""
    settings = result["settings"].values()
    training = sum(s["train_seconds_total"] for s in settings) / 60
    evaluation = sum((s.get("final") or {}).get("seconds", 0.0) for s in settings) / 60
    spent = f"**Budget spent: {training:.0f} training minutes**"
    if evaluation:
        spent += f" and {evaluation:.0f} minutes of final k=5000 evaluation"
    last_budget = float(result["arguments"]["budget_minutes"])
    return (
        f"{spent} in all settings together, wall clock on the machine above, run in resumable "
        f"pieces (the last with `--budget-minutes {last_budget:g}`)."
    )


def aevb(result: dict) -> str:
    out = ["### Kingma & Welling (2014), Figure 2 (`benchmarks/reproduce_aevb.py`)", ""]
    out.append(machine_line(result))
    out.append("")
    out.append(budget_line(result))
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
    out += [
        "",
        "The paper gives these results as curves only (Figure 2: lower bound per datapoint against "
        "training samples seen, up to 10^8); `reproduce_aevb.png` draws ours the same way. "
        "MNIST bounds are in nats per image (binary data); Frey bounds are log-densities of "
        "pixels in [0, 1] (continuous data), hence positive.",
    ]
    return "\n".join(out)


def _recipe(row: dict) -> str:
    flags = " ".join(row["flags"])
    return f"{row['recipe']} + `{flags}`" if flags else row["recipe"]


def _test_nll(row: dict) -> str:
    """The row's NLL ± its standard error and the target's verdict; "-" before it exists."""
    if row.get("test_nll") is None:
        return "-"
    text = f"{row['test_nll']:.2f} ± {row['test_nll_stderr']:.2f}"
    if row.get("test_examples") is not None:
        text += f" ({row['test_examples']:,} images)"
    if row.get("target_met") is not None:
        text += f" ({_met(row['target_met'])})"
    return text


def reproductions_table(result: dict) -> str:
    """The rows of reproduce_nll.json: each one's state, epochs and ETA, and its test NLL once
    it has trained to its end and been evaluated, beside the paper's and the target."""
    rows = []
    for name, row in result["rows"].items():
        epochs = f"{row.get('epoch', 0):,} of {row['epochs']:,}" if "epochs" in row else "-"
        if row.get("stopped_early"):
            epochs += " (early stop)"
        published = row["source"]
        if row["published"] is not None:
            published = f"{row['published']:.2f} ({published})"
        rows.append(
            [
                f"{row['title']} (`{name}`)",
                _recipe(row),
                row["state"],
                epochs,
                row.get("eta", "-"),
                _test_nll(row),
                published,
                "-" if row["target"] is None else f"<= {row['target']:.2f}",
            ]
        )
    k = result["importance_samples"]
    header = ["row", "recipe", "state", "epochs done", "ETA at the measured speed"]
    header += [f"test NLL, k={k:,} (nats)", "published NLL", "target"]
    return table(header, rows)


def nll(result: dict) -> str:
    """Reproducing the papers (`benchmarks/reproduce_nll.py`): the rows and their commands."""
    page, figure = result["status_page"], result.get("figure")
    curves = f"; validation curves: [`{figure}`]({figure})" if figure else ""
    out = ["### Reproducing the papers (`benchmarks/reproduce_nll.py`)", "", machine_line(result)]
    out += [
        "",
        "Each row is the command a user runs (below), then, once the run has finished (its "
        "metrics.json written, its backup gone), `keras-vae evaluate` on all its test images; "
        "a row's test NLL appears only then, never from a run cut short. Which rows run, "
        "their speed, ETA and the commands to resume each on this machine: "
        f"[`{page}`]({page}){curves}. Paths are relative to the repository's root; "
        "`--dataset` names this machine's copy of the data (without it, a recipe loads its "
        "dataset through TFDS).",
        "",
        reproductions_table(result),
        "",
        "```bash",
    ]
    for row in result["rows"].values():
        out += [row["command"], f"{row['evaluate_command']}   # once it has finished"]
    out.append("```")
    return "\n".join(out)


def estimators(result: dict) -> str:
    """The ELBO's estimators on job-trained models: means, variances, paired differences."""
    out = ["### The ELBO's three estimators (`benchmarks/estimators.py`)", ""]
    out += [
        machine_line(result),
        "",
        f"{result['training']}; {result['data']}, {result['draws_per_image']} single-sample "
        "(L = 1) draws per image, the same noise for every estimator.",
        "",
    ]
    rows = []
    for model, entry in result["models"].items():
        for name, row in entry["estimators"].items():
            rows.append(
                [
                    model,
                    name,
                    f"{row['mean_elbo']:.3f}",
                    f"{row['minus_monte_carlo']:+.3f} ± {row['minus_monte_carlo_stderr']:.3f}",
                    f"{row['mean_per_image_variance']:.2f}",
                ]
            )
    header = [
        "model",
        "estimator",
        "mean ELBO (nats)",
        "minus monte_carlo (paired)",
        "variance per image (nats²)",
    ]
    out.append(table(header, rows))
    out += [
        "",
        "The same expectation (paired differences zero within their standard errors), "
        "different noise: the variance is what one sample adds to a training step.",
    ]
    return "\n".join(out)


ANOMALY_SCORES = {
    "elbo": "ELBO",
    "log_likelihood": "log p(x)",
    "reconstruction": "reconstruction",
    "kl": "KL",
}


def _auroc(row: dict) -> str:
    return f"{row['auroc']:.3f} ± {row['auroc_stderr']:.3f}"


def anomaly(result: dict) -> str:
    """Held-out-digit detection and out-of-distribution AUROCs (`benchmarks/anomaly.py`)."""
    out = ["### Anomaly detection: one MNIST digit held out (`benchmarks/anomaly.py`)", ""]
    out += [
        machine_line(result),
        "",
        f"One run per digit: {result['training']}, on the MNIST training images of the other "
        f"nine digits; then all 10,000 test images scored ({result['scoring']}), the held-out "
        "digit the positive class. AUROC ± its standard error (Hanley & McNeil); AUPRC is "
        "average precision (chance level: the digit's share of the test set, about 0.1). "
        f"`{result['command']}`.",
        "",
    ]
    reference = result["reference"]
    published = reference["auroc"]
    rows = []
    for digit, entry in result["held_out_digits"].items():
        scores = entry["scores"]
        ll = scores["log_likelihood"]
        rows.append(
            [digit]
            + [_auroc(scores[name]) for name in ANOMALY_SCORES]
            + [
                f"{ll['auprc']:.3f}",
                f"{ll['median_positive']:.1f} / {ll['median_negative']:.1f}",
                " / ".join(f"{values[int(digit)]:.2f}" for values in published.values()),
            ]
        )
    summary, digits = result["summary"], list(result["held_out_digits"])
    rows.append(
        ["**mean**"]
        + [f"**{summary[name]['mean_auroc']:.3f}**" for name in ANOMALY_SCORES]
        + [
            f"**{summary['log_likelihood']['mean_auprc']:.3f}**",
            "",
            " / ".join(
                f"{sum(values[int(d)] for d in digits) / len(digits):.2f}"
                for values in published.values()
            ),
        ]
    )
    header = (
        ["held-out digit"]
        + [f"{label} AUROC" for label in ANOMALY_SCORES.values()]
        + [
            "log p(x) AUPRC",
            "median log p(x): held out / normal",
            f"published ELBO AUROC ({' / '.join(published)})",
        ]
    )
    out.append(table(header, rows))
    ours = {d: entry["scores"]["elbo"]["auroc"] for d, entry in result["held_out_digits"].items()}
    beaten = [
        f"the {name} model's on {sum(ours[d] > values[int(d)] for d in ours)} of {len(ours)}"
        for name, values in published.items()
    ]
    out += [
        "",
        f"Our ELBO AUROC is above {' and '.join(beaten)} digits. Published: "
        f"{reference['source']}. Their setup: {reference['setup']}. "
        f"{reference['not_verified']}.",
    ]
    ood = result.get("ood")
    if ood:
        out += [
            "",
            f"**Out of distribution**: a run trained on all of MNIST the same way; the "
            f"{ood['normal']} are the negatives. AUROC < 0.5 means the model rates that data "
            "as MORE normal than real test digits (Nalisnick et al., 2019).",
            "",
        ]
        rows = []
        for name, entry in ood["sets"].items():
            if not entry["available"]:
                why = entry["why"].split(" (")[0]
                rows.append([name, why, "-"] + ["-"] * (len(ANOMALY_SCORES) + 1))
                continue
            scores = entry["scores"]
            ll = scores["log_likelihood"]
            rows.append(
                [name, entry["what"], f"{entry['examples']:,}"]
                + [_auroc(scores[score]) for score in ANOMALY_SCORES]
                + [f"{ll['median_positive']:.1f} / {ll['median_negative']:.1f}"]
            )
        header = (
            ["data", "what", "images"]
            + [f"{label} AUROC" for label in ANOMALY_SCORES.values()]
            + ["median log p(x): data / MNIST test"]
        )
        out.append(table(header, rows))
    return "\n".join(out)


TRAIN_JOB_MODELS = {
    "classic": "784-400-20 MLP",
    "conv": "conv 32-64",
    "burda": "784-200-200-50 tanh, dynamic binarization",
}


def train_job(result: dict) -> str:
    """The headline: `keras-vae train` itself against PyTorch's example and the JAX scan."""
    out = [
        "### What `keras-vae train` gives you (`benchmarks/train_job.py`)",
        "",
        machine_line(result),
        "",
        "Examples/s of whole epochs (validation and backup included) from `metrics.json`, "
        "median over interleaved rounds; PyTorch: the example's model, loss and PIL + "
        "DataLoader loop; JAX: one jitted `lax.scan` per epoch over device-resident batches.",
        "",
    ]
    rows = []
    for case in result["cases"].values():
        summary = case["summary"]
        jax, torch = summary.get("jax_scan"), summary.get("pytorch_example")
        first = summary.get("first_epoch_seconds")
        rows.append(
            [
                TRAIN_JOB_MODELS[case["model"]],
                case["batch_size"],
                f"{summary['keras_vae_train']:,}",
                f"{torch:,}" if torch else "-",
                f"{summary['vs_pytorch']:.2f} ({_met(summary['vs_pytorch'] >= 2.0)})"
                if torch
                else "-",
                f"{jax:,}" if jax else "-",
                f"{summary['vs_jax']:.2f} ({_met(summary['vs_jax'] >= 1.0)})" if jax else "-",
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
    out = [
        "### Where the job's time goes (`benchmarks/profile_train.py`)",
        "",
        machine_line(result),
        "",
        f"{result['model']} model, batch {result['batch_size']}, {result['epochs']} epochs: "
        f"{result['job_seconds']} s in `train_and_evaluate` "
        f"(+ {result['phases_seconds']['imports']} s of imports).",
        "",
    ]
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


BEGIN = "<!-- benchmarks:begin (python benchmarks/report.py --readme README.md) -->"
END = "<!-- benchmarks:end -->"
SECTIONS = {
    "train_job": train_job,
    "profile_train_classic_b128": profile_train,
    "profile_train_burda_b20": profile_train,
    "throughput": lambda r: targets(r) + "\n\n" + throughput(r),
    "sampling": sampling,
    "evaluate_speed": evaluate_speed,
    "step_breakdown": step_breakdown,
    "reproduce_aevb": aevb,
    "reproduce_nll": nll,
    "estimators": estimators,
    "anomaly": anomaly,
}


def render(results: Path = RESULTS) -> str:
    """All sections, from the JSON files in `results` (a missing file gets a one-line note)."""
    parts = []
    for name, section in SECTIONS.items():
        path = results / f"{name}.json"
        if path.exists():
            parts.append(section(json.loads(path.read_text())))
        else:
            parts.append(f"(no benchmarks/results/{name}.json yet)")
    path = results / "gpu_check.json"
    parts.append(gpu_check(json.loads(path.read_text()) if path.exists() else None))
    return "\n\n".join(parts) + "\n"


def splice(readme: str, tables: str) -> str:
    """`readme` with the text between the BEGIN and END markers replaced by `tables`.

    >>> splice(f"a\\n{BEGIN}\\nold\\n{END}\\nb", "new\\n").split("\\n")[2:]
    ['new', '<!-- benchmarks:end -->', 'b']
    """
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"the README needs exactly one {BEGIN!r} and one {END!r} line")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{tables}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite this file's benchmark section")
    args = parser.parse_args(argv)
    tables = render()
    if args.readme is None:
        print(tables)
        return 0
    from keras_vae.atomic import write_atomically

    write_atomically(args.readme, splice(args.readme.read_text(), tables))
    print("updated", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
