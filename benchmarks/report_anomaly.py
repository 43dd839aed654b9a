"""The anomaly section of the benchmark report (anomaly.json): one MNIST digit held out of
training per run, beside a published reference, and out-of-distribution data.

Example:

>>> scores = {name: {"auroc": 0.9, "auroc_stderr": 0.01} for name in ANOMALY_SCORES}
>>> auroc_cells(scores)
['0.900 ± 0.010', '0.900 ± 0.010', '0.900 ± 0.010', '0.900 ± 0.010']
"""

from __future__ import annotations

from report_format import heading, table

ANOMALY_SCORES = {
    "elbo": "ELBO",
    "log_likelihood": "log p(x)",
    "reconstruction": "reconstruction",
    "kl": "KL",
}
AUROC_HEADER = [f"{label} AUROC" for label in ANOMALY_SCORES.values()]


def auroc_cells(scores: dict) -> list[str]:
    """Each score's AUROC ± its standard error, in ANOMALY_SCORES' order."""
    return [f"{scores[n]['auroc']:.3f} ± {scores[n]['auroc_stderr']:.3f}" for n in ANOMALY_SCORES]


def median_cell(scores: dict) -> str:
    """The positives' and the negatives' median log p(x)."""
    ll = scores["log_likelihood"]
    return f"{ll['median_positive']:.1f} / {ll['median_negative']:.1f}"


def held_out_table(result: dict) -> str:
    """One row per held-out digit and their mean, beside the published ELBO AUROCs."""
    published = result["reference"]["auroc"]
    rows = []
    for digit, entry in result["held_out_digits"].items():
        scores = entry["scores"]
        rows.append(
            [digit, *auroc_cells(scores)]
            + [
                f"{scores['log_likelihood']['auprc']:.3f}",
                median_cell(scores),
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
    header = ["held-out digit", *AUROC_HEADER, "log p(x) AUPRC"]
    header += [
        "median log p(x): held out / normal",
        f"published ELBO AUROC ({' / '.join(published)})",
    ]
    return table(header, rows)


def ood_table(ood: dict) -> str:
    """One row per out-of-distribution set; a set this machine could not load says why."""
    rows = []
    for name, entry in ood["sets"].items():
        if not entry["available"]:
            why = entry["why"].split(" (")[0]
            rows.append([name, why, "-"] + ["-"] * (len(ANOMALY_SCORES) + 1))
            continue
        scores = entry["scores"]
        rows.append(
            [name, entry["what"], f"{entry['examples']:,}", *auroc_cells(scores)]
            + [median_cell(scores)]
        )
    header = ["data", "what", "images", *AUROC_HEADER, "median log p(x): data / MNIST test"]
    return table(header, rows)


def anomaly(result: dict) -> str:
    """Held-out-digit detection and out-of-distribution AUROCs (`benchmarks/anomaly.py`)."""
    out = heading(
        "Anomaly detection: one MNIST digit held out (`benchmarks/anomaly.py`)",
        result,
        f"One run per digit: {result['training']}, on the MNIST training images of the other "
        f"nine digits; then all 10,000 test images scored ({result['scoring']}), the held-out "
        "digit the positive class. AUROC ± its standard error (Hanley & McNeil); AUPRC is "
        "average precision (chance level: the digit's share of the test set, about 0.1). "
        f"`{result['command']}`.",
    )
    out.append(held_out_table(result))
    reference = result["reference"]
    ours = {d: entry["scores"]["elbo"]["auroc"] for d, entry in result["held_out_digits"].items()}
    beaten = [
        f"the {name} model's on {sum(ours[d] > values[int(d)] for d in ours)} of {len(ours)}"
        for name, values in reference["auroc"].items()
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
            ood_table(ood),
        ]
    return "\n".join(out)
