"""The reproductions' status, read from their run folders: the JSON, the status page, the curves.

`read_row` reads one row's run folder (config.json, backup/state.npz, metrics.json) and writes
nothing, so it can run beside the processes that train into it: the epoch, the speed measured
from the backup's epoch times, the ETA at that speed, the validation ELBO, and, once the run
has finished and `keras-vae evaluate -k K` has scored its whole test split, the test NLL
against the paper's. `write_status` turns every row into ``benchmarks/results/reproduce_nll.json``
(report.py renders it into the README and benchmarks/README.md), the status page
``benchmarks/reproductions/README.md`` and the validation curves
``benchmarks/results/reproduce_nll.png``.

Example:

>>> duration(5.5 * 3600), duration(50 * 3600), duration(90), duration(None)
('5.5 h', '2.1 d', '2 min', '-')
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from report_format import table
from report_papers import reproductions_table

from keras_vae.atomic import write_atomically
from keras_vae.cli import UsageError, build_parser
from keras_vae.cli.train import config_from_args
from keras_vae.config import Config, DataConfig
from keras_vae.resume import read_progress
from keras_vae.run_paths import RunFolder
from keras_vae.run_setup import prepare

if TYPE_CHECKING:
    from invocation import ResultsRun
    from reproduction_rows import Plan, Row

SPEED_WINDOW = 50  # the speed is the median of the latest epochs (the machine's load changes)
FIGURE = "reproduce_nll.png"
RESULTS = "reproduce_nll.json"


def duration(seconds: float | None) -> str:
    """Seconds as minutes, hours or days ("-" for None)."""
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# ----------------------------------------------------------------------------------------------
# Who trains what: the processes of this machine
# ----------------------------------------------------------------------------------------------


def trainers() -> dict[Path, int]:
    """Run folder (resolved) -> pid of each `keras-vae train --output FOLDER` process running
    on this machine, read from /proc ({} where there is none)."""
    found: dict[Path, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone, or not ours to read
            continue
        if "train" not in words or not any(
            w.endswith(("keras-vae", "keras_vae.cli")) for w in words[:3]
        ):
            continue
        output = _option_value(words, ("--output", "-o"))
        if output is not None:
            found[(cwd / os.path.expanduser(output)).resolve()] = int(entry.name)
    return found


def _option_value(words: list[str], names: tuple[str, ...]) -> str | None:
    for i, word in enumerate(words):
        if word in names and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--output="):
            return word.split("=", 1)[1]
    return None


def is_paused(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP: a sitting pauses trainers to benchmark)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


# ----------------------------------------------------------------------------------------------
# One row, from its folder
# ----------------------------------------------------------------------------------------------


def config_of(command: list[str]) -> Config:
    """The config `keras-vae train` resolves from `command` (``["keras-vae", "train", ...]``),
    by the CLI's own parser: what its config.json must equal for the command to resume it."""
    return config_from_args(build_parser().parse_args(command[1:]))


@functools.lru_cache
def examples_per_epoch(data: DataConfig, batch_size: int, seed: int) -> int:
    """The training examples one epoch takes (the last incomplete batch is skipped)."""
    from keras_vae.data import prepared_splits

    count = len(prepared_splits(data, seed, ["train"])["train"].images)
    return count // batch_size * batch_size


def finished_metrics(folder: RunFolder) -> dict[str, Any] | None:
    """metrics.json of a finished run (its metrics written, its backup gone), else None."""
    return json.loads(folder.metrics.read_text()) if folder.is_finished() else None


def is_evaluated(metrics: dict[str, Any] | None, importance_samples: int) -> bool:
    """Whether `keras-vae evaluate -k K` has set the run's headline (whole test split)."""
    found = cast(dict[str, Any], metrics)  # read only when bool(metrics): not None
    return bool(metrics) and found.get("test_log_likelihood_k") == importance_samples


def epoch_done(folder: RunFolder) -> int:
    """Epochs the run in `folder` has completed (0 before its first backup)."""
    if folder.has_backup():
        return int(read_progress(folder.backup_state)["epoch"])
    metrics = finished_metrics(folder)
    return int(metrics["epochs"]) if metrics else 0


def _speed(progress: dict[str, Any], config: Config) -> dict[str, Any]:
    """Epoch, early stop, the median speed of the latest epochs and the ETA at that speed."""
    seconds = [float(s) for s in progress["epoch_seconds"]]
    per_epoch = statistics.median(seconds[1:][-SPEED_WINDOW:] or seconds)  # 1st: compiling
    done = int(progress["epoch"])
    stopping = progress.get("early_stopping") or {}
    stopped = bool(stopping.get("stopped"))
    remaining = 0 if stopped else max(config.training.epochs - done, 0)
    examples = examples_per_epoch(config.data, config.training.batch_size, config.runtime.seed)
    return {
        "epoch": done,
        "stopped_early": stopped,
        **({"best_epoch": stopping["best_epoch"]} if stopping else {}),
        "seconds_per_epoch": round(per_epoch, 2),
        "examples_per_second": round(examples / per_epoch),
        "eta_seconds": round(remaining * per_epoch),
    }


def _evaluation(metrics: dict[str, Any], target: float | None) -> dict[str, Any]:
    nll = -float(metrics["test_log_likelihood"])
    return {
        "test_nll": nll,
        "test_nll_stderr": float(metrics["test_log_likelihood_stderr"]),
        "test_examples": (metrics.get("evaluation") or {}).get("num_examples"),
        "target_met": None if target is None else nll <= target,
    }


def _state(folder: RunFolder, entry: dict[str, Any], pid: int | None) -> str:
    if pid is not None:
        return "paused (SIGSTOP)" if is_paused(pid) else "training"
    if not folder.has_backup():
        return "not started"
    if entry["stopped_early"] or entry["epoch"] >= entry["epochs"]:
        return "trained: rerun the command to write its outputs"
    return "stopped: resumable"


def read_row(row: Row, plan: Plan, running: dict[Path, int]) -> tuple[dict[str, Any], list]:
    """`row`'s status (JSON-able) and its validation ELBO per epoch, reading its folder only."""
    command = plan.train_command(row)
    folder = RunFolder(Path(plan.run_dir(row)))
    entry: dict[str, Any] = {
        "title": row.title,
        "recipe": row.recipe,
        "flags": list(row.flags),
        "dataset": plan.dataset_of(row),
        "run_dir": plan.run_dir(row),
        "command": shlex.join(command),
        "evaluate_command": shlex.join(plan.evaluate_command(row)),
        "background_command": plan.background_command(row),
        "driver_command": plan.driver_command(row),
        "published": row.published,
        "source": row.source,
        "target": row.target,
    }
    try:
        config = config_of(command)
        prepare(folder.root, config)  # reads only: refuses a folder the command would refuse
    except (UsageError, ValueError) as error:
        return {**entry, "state": "refused", "error": " ".join(str(error).split())}, []
    entry["epochs"] = config.training.epochs
    entry["early_stopping_patience"] = config.training.early_stopping_patience
    pid = running.get(folder.root.resolve())
    progress = read_progress(folder.backup_state) if folder.has_backup() else None
    metrics = finished_metrics(folder)
    history = (progress or metrics or {}).get("history", {})
    curve = [float(v) for v in history.get("val_elbo", [])]
    if curve:
        entry.update(validation_elbo=curve[-1], best_validation_elbo=max(curve))
    if history.get("val_iwae"):  # the bound an iwae row trains (and early-stops) on
        entry["validation_iwae"] = float(history["val_iwae"][-1])
    if metrics is not None:
        entry.update(
            epoch=int(metrics["epochs"]),
            stopped_early=bool(metrics.get("stopped_early", False)),
            examples_per_second=round(metrics["examples_per_second"]),
            eta_seconds=0,
            test_elbo=metrics.get("test_elbo"),
        )
        evaluated = is_evaluated(metrics, plan.importance_samples)
        if evaluated:
            entry.update(_evaluation(metrics, row.target))
        entry["state"] = "evaluated" if evaluated else "finished: to evaluate"
    else:
        entry.update(_speed(progress, config) if progress else {"epoch": 0, "stopped_early": False})
        entry["state"] = _state(folder, entry, pid)
    eta = duration(entry.get("eta_seconds"))
    bound = entry["early_stopping_patience"] and entry.get("eta_seconds")
    entry["eta"] = f"<= {eta} (early stopping)" if bound else eta
    if pid is not None:
        entry["pid"] = pid
    return entry, curve


# ----------------------------------------------------------------------------------------------
# Everything written
# ----------------------------------------------------------------------------------------------


def plot(curves: dict[str, list[float]], rows: dict[str, dict], path: Path) -> bool:
    """-ELBO on the validation split per epoch, one line per row that has trained, the
    published test NLL dotted; False (nothing written) when no row has an epoch yet."""
    if not any(curves.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    lowest, latest = [], []
    for name, curve in curves.items():
        if not curve:
            continue
        values = [-v for v in curve]
        (line,) = ax.plot(range(1, len(values) + 1), values, label=rows[name]["title"])
        lowest.append(min(values))
        latest.append(values[-1])
        if rows[name]["published"] is not None:
            ax.axhline(rows[name]["published"], color=line.get_color(), ls=":", lw=1)
            lowest.append(rows[name]["published"])
    ax.set_xscale("log")
    ax.set_ylim(min(lowest) - 2, max(latest) + 15)  # the early epochs' bounds are far above
    ax.set_title("Dotted: the published test NLL of the row (same colour)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("-ELBO on the validation split (nats)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def status_page(payload: dict[str, Any]) -> str:
    """benchmarks/reproductions/README.md: the rows, their progress and their commands."""
    rows = payload["rows"]
    progress = [
        [
            f"`{name}`",
            r["state"],  # its pid stays in the JSON: stale in a page read next sitting
            f"{r.get('epoch', 0):,} of {r['epochs']:,}" if "epochs" in r else "-",
            r.get("seconds_per_epoch", "-"),
            f"{r['examples_per_second']:,}" if "examples_per_second" in r else "-",
            r.get("eta", "-"),
            f"{r['validation_elbo']:.2f} / {r['best_validation_elbo']:.2f}"
            if "validation_elbo" in r
            else "-",
            r.get("this_invocation", r.get("error", "-")),
        ]
        for name, r in rows.items()
    ]
    header = ["row", "state", "epochs done", "s/epoch", "examples/s", "ETA at that speed"]
    header += ["validation ELBO (latest / best)", "this invocation"]
    out = [
        "# The reproductions: the papers' test NLLs with `keras-vae train`",
        "",
        f"Written by `python benchmarks/reproduce_nll.py` on {payload['started']} (rerun it to "
        "refresh this page; `--status` starts nothing). Each folder here is one row's run "
        "directory, made by exactly the commands below, run from the repository's root. While "
        "a row trains, its folder holds `config.json` and `backup/state.npz` (weights, "
        "optimizer moments, epoch, RNG state, per-epoch history and times): the resumable "
        "state, committed at most once per running row and sitting. A finished row keeps "
        "`config.json`, `metrics.json` with its `keras-vae evaluate` result, `model.keras` "
        "and `figures/`; `keras-vae train` deletes its backup when it finishes, so the backup "
        "leaves the tree. A row's test NLL is shown only once it has trained to its recipe's "
        "end (or its early stop) and been evaluated on all its test images. An evaluated row "
        "ships inside keras-vae as a preset: `python benchmarks/ship_reproduction.py ROW` "
        "(docs/presets.md).",
        "",
        "## Rows",
        "",
        reproductions_table(payload),
        "",
        "## Progress (speed: median of the latest epochs in the backup)",
        "",
        table(header, progress),
        "",
        f"Validation curves: `{payload['figure']}`." if payload["figure"] else "No curves yet.",
        "",
        "## Commands",
        "",
        "Rerunning a row's train command resumes it from its last completed epoch (refused "
        "while the row still trains); on a finished run it does nothing. On this machine the "
        "rows run in the background at the lowest priority; pause one while benchmarking "
        "with `pkill -STOP -f 'output "
        "benchmarks/reproductions/ROW( |$)'` (ROW its folder), resume it with `pkill -CONT` and"
        " the same pattern; the driver stops its commands with SIGTERM when its budget is "
        "spent. Two rows at once get a core each (`--parallel 2` pins them; by hand, prefix the"
        " background commands with `taskset -c 0` and `taskset -c 1`): on this 2-core machine "
        "IWAE k=5 and IAF side by side, each with TensorFlow's two threads, trained at 8.8-9.2 "
        "and 6.0-6.5 s an epoch, pinned to a core each at 7.1-7.4 and 4.9-5.1 s (2026-12-05, "
        "their logs).",
    ]
    for name, r in rows.items():
        out += [
            "",
            f"### `{name}`: {r['title']}",
            "",
            "What a user runs:",
            "",
            "```bash",
            r["command"],
            f"{r['evaluate_command']}   # once metrics.json exists and backup/ is gone",
            "```",
            "",
            "On this machine (one of):",
            "",
            "```bash",
            r["background_command"],
            r["driver_command"],
            "```",
        ]
    return "\n".join(out) + "\n"


def write_status(
    run: ResultsRun, plan: Plan, rows: list[Row], outcomes: dict[str, str]
) -> dict[str, Any]:
    """Read every row and write the results JSON, the curves and the status page.

    Args:
        run: the invocation (its arguments, start time and machine go into the JSON).
        plan: where and how the rows run.
        rows: the rows to report, in the table's order.
        outcomes: row name -> what this invocation did with it.

    Returns:
        The JSON written (without the machine fields `ResultsRun.save` adds).
    """
    running = trainers()
    read = {row.name: read_row(row, plan, running) for row in rows}
    entries = {name: entry for name, (entry, _) in read.items()}
    for name, text in outcomes.items():
        entries[name]["this_invocation"] = text
    results = Path(plan.results)
    figure = results / FIGURE
    drawn = plot({name: curve for name, (_, curve) in read.items()}, entries, figure)
    if not drawn:
        figure.unlink(missing_ok=True)  # an older figure would show runs that are not these
    page = Path(plan.output_dir) / "README.md"
    payload = {
        "importance_samples": plan.importance_samples,
        "status_page": str(page),
        "figure": str(figure) if drawn else None,
        "rows": entries,
    }
    saved = json.loads(run.save(payload, results / RESULTS).read_text())
    page.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(page, status_page(saved))
    return saved
