"""The papers' sections of the benchmark report: Kingma & Welling's Figure 2
(reproduce_aevb.json), the test-NLL reproductions (reproduce_nll.json: the rows' table is
also the front page's and the status page's) and the ELBO's three estimators
(estimators.json).

Example:

>>> row = {"recipe": "burda2015", "flags": ["--objective", "iwae"]}
>>> recipe_cell(row)
'burda2015 + `--objective iwae`'
"""

from __future__ import annotations

from report_format import heading, met, table


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
    """Kingma & Welling's Figure 2 settings: bounds reached and compute (reproduce_aevb.json)."""
    title = "Kingma & Welling (2014), Figure 2 (`benchmarks/reproduce_aevb.py`)"
    out = heading(title, result, budget_line(result))
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


def recipe_cell(row: dict) -> str:
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
        text += f" ({met(row['target_met'])})"
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
                recipe_cell(row),
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


def nll(result: dict, link_prefix: str = "") -> str:
    """Reproducing the papers (`benchmarks/reproduce_nll.py`): the rows and their commands.

    Links name repository paths; `link_prefix` leads from the page's folder to the
    repository's root ("../" for benchmarks/README.md, "" for a page at the root)."""
    page, figure = result["status_page"], result.get("figure")
    curves = f"; validation curves: [`{figure}`]({link_prefix}{figure})" if figure else ""
    out = heading(
        "Reproducing the papers (`benchmarks/reproduce_nll.py`)",
        result,
        "Each row is the command a user runs (below), then, once the run has finished (its "
        "metrics.json written, its backup gone), `keras-vae evaluate` on all its test images; "
        "a row's test NLL appears only then, never from a run cut short. Which rows run, "
        "their speed, ETA and the commands to resume each on this machine: "
        f"[`{page}`]({link_prefix}{page}){curves}. Paths are relative to the repository's root; "
        "`--dataset` names this machine's copy of the data (without it, a recipe loads its "
        "dataset through TFDS).",
    )
    out += [reproductions_table(result), "", "```bash"]
    for row in result["rows"].values():
        out += [row["command"], f"{row['evaluate_command']}   # once it has finished"]
    out.append("```")
    return "\n".join(out)


def estimators(result: dict) -> str:
    """The ELBO's estimators on job-trained models: means, variances, paired differences."""
    out = heading(
        "The ELBO's three estimators (`benchmarks/estimators.py`)",
        result,
        f"{result['training']}; {result['data']}, {result['draws_per_image']} single-sample "
        "(L = 1) draws per image, the same noise for every estimator.",
    )
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
