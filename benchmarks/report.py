"""Markdown tables from benchmarks/results/*.json, for the README and benchmarks/README.md.

    python benchmarks/report.py                     # print every table
    python benchmarks/report.py --readme README.md  # rewrite the pages' generated sections

`--readme FILE` rewrites FILE's "results at a glance" (a few rows, between the BEGIN and END
markers), every table of `--tables FILE` (default benchmarks/README.md, between the
TABLES_BEGIN and TABLES_END markers) and docs/presets.md's table of the shipped presets
(`report_presets`, from their metadata). Every number in those sections comes from here, so
they always match the JSON files they cite; a missing results file gets a one-line note.
The sections are by topic: `report_training` (the job's speed), `report_inference`
(decoding, evaluation, GPU), `report_papers` (reproductions, estimators), `report_anomaly`,
`report_generation` (sample quality).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:  # loaded by path (the tests): its topic modules beside it
    sys.path.insert(0, str(BENCHMARKS))

import report_presets  # noqa: E402
from report_anomaly import anomaly  # noqa: E402
from report_format import RESULTS, load, table  # noqa: E402
from report_generation import generation  # noqa: E402
from report_generation import glance as glance_generation  # noqa: E402
from report_inference import evaluate_speed, gpu_check, sampling  # noqa: E402
from report_papers import aevb, estimators, nll, reproductions_table  # noqa: E402
from report_training import (  # noqa: E402
    conv_layers,
    profile_train,
    step_breakdown,
    targets,
    throughput,
    train_job,
    train_job_model,
)

BEGIN = "<!-- benchmarks:begin (python benchmarks/report.py --readme README.md) -->"
END = "<!-- benchmarks:end -->"
TABLES_BEGIN = "<!-- benchmark-tables:begin (python benchmarks/report.py --readme README.md) -->"
TABLES_END = "<!-- benchmark-tables:end -->"
TABLES_PAGE = BENCHMARKS / "README.md"
SECTIONS: dict[str, Callable[[dict], str]] = {
    "train_job": train_job,
    "profile_train_classic_b128": profile_train,
    "profile_train_burda_b20": profile_train,
    "profile_train_conv_b128": profile_train,
    "throughput": lambda r: targets(r) + "\n\n" + throughput(r),
    "sampling": sampling,
    "evaluate_speed": evaluate_speed,
    "step_breakdown": step_breakdown,
    "conv_layers": conv_layers,
    "reproduce_aevb": aevb,
    "reproduce_nll": lambda r: nll(r, link_prefix="../"),  # links from benchmarks/README.md
    "estimators": estimators,
    "anomaly": anomaly,
    "generation": generation,
}


def rendered(sections: dict[str, Callable[[dict], str]], results: Path) -> list[str]:
    """Each section from its JSON file in `results`, or a one-line note that it is missing."""
    return [
        section(result)
        if (result := load(name, results))
        else f"(no benchmarks/results/{name}.json yet)"
        for name, section in sections.items()
    ]


def render(results: Path = RESULTS) -> str:
    """All sections, from the JSON files in `results` (a missing file gets a one-line note)."""
    parts = [*rendered(SECTIONS, results), gpu_check(load("gpu_check", results))]
    return "\n\n".join(parts) + "\n"


def glance_speed(result: dict) -> str:
    """The train job's rows: keras-vae train against the PyTorch example and the JAX loop."""
    rows = []
    for case in result["cases"].values():
        summary = case["summary"]
        torch, jax = summary.get("pytorch_example"), summary.get("jax_scan")
        rows.append(
            [
                train_job_model(case),
                case["batch_size"],
                f"{summary['keras_vae_train']:,}",
                f"{summary['vs_pytorch']:.2f}x" if torch else "-",
                f"{summary['vs_jax']:.2f}x" if jax else "-",
            ]
        )
    machine = result["machine"]
    header = ["model", "batch", "examples/s", "x PyTorch example", "x JAX scan"]
    return (
        f"`keras-vae train` on a {machine['cores']}-core CPU ({machine['cpu']}), whole epochs "
        "with validation (`benchmarks/train_job.py`):\n\n" + table(header, rows)
    )


def glance_papers(result: dict) -> str:
    """The reproductions' rows: a row's NLL appears once its run has finished."""
    return (
        "The papers' test NLL, each row a `keras-vae train --recipe ...` run to its end, then "
        "`keras-vae evaluate -k 5000` (`benchmarks/reproduce_nll.py`):\n\n"
        + reproductions_table(result)
    )


def glance_anomaly(result: dict) -> str:
    """The mean AUROC of each score over the ten held-out digits."""
    summary = result["summary"]
    means = ", ".join(
        f"{label} {summary[name]['mean_auroc']:.3f}"
        for name, label in {"log_likelihood": "log p(x)", "elbo": "ELBO"}.items()
    )
    return (
        f"Anomaly scores, one MNIST digit held out of training (`benchmarks/anomaly.py`): mean "
        f"AUROC over the ten digits {means}."
    )


GLANCE: dict[str, Callable[[dict], str]] = {
    "train_job": glance_speed,
    "reproduce_nll": glance_papers,
    "generation": glance_generation,
    "anomaly": glance_anomaly,
}


def render_glance(results: Path = RESULTS) -> str:
    """The front page's few rows, from the JSON files in `results`."""
    more = "Every table, its machine and its command: [benchmarks/README.md](benchmarks/README.md)."
    return "\n\n".join([*rendered(GLANCE, results), more]) + "\n"


def splice(readme: str, tables: str, begin: str = BEGIN, end: str = END) -> str:
    """`readme` with the text between the `begin` and `end` markers replaced by `tables`.

    >>> splice(f"a\\n{BEGIN}\\nold\\n{END}\\nb", "new\\n").split("\\n")[2:]
    ['new', '<!-- benchmarks:end -->', 'b']
    """
    if readme.count(begin) != 1 or readme.count(end) != 1:
        raise ValueError(
            f"the page needs exactly one {begin!r} and one {end!r} line. Received: "
            f"{readme.count(begin)} and {readme.count(end)}"
        )
    head, rest = readme.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{tables}{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite this file's results at a glance")
    parser.add_argument(
        "--tables", type=Path, default=TABLES_PAGE, help="with --readme: the page of all tables"
    )
    args = parser.parse_args(argv)
    if args.readme is None:
        print(render())
        return 0
    from keras_vae.atomic import write_atomically

    write_atomically(args.readme, splice(args.readme.read_text(), render_glance()))
    tables = splice(args.tables.read_text(), render(), TABLES_BEGIN, TABLES_END)
    write_atomically(args.tables, tables)
    page = report_presets.PAGE
    shipped = report_presets.presets_table()
    write_atomically(
        page, splice(page.read_text(), shipped, report_presets.BEGIN, report_presets.END)
    )
    print("updated", args.readme, args.tables, "and", page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
