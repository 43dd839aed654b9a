"""The Markdown pieces every benchmark report section is made of: tables, the machine line,
a section's heading and the verdict on a target.

Example:

>>> print(table(["model", "examples/s"], [["classic", f"{36426:,}"]]))
| model | examples/s |
|---|---|
| classic | 36,426 |
>>> met(True), met(False)
('met', '**not met**')
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str, results: Path = RESULTS) -> dict | None:
    """The JSON of `results/<name>.json`, or None when that benchmark has not run."""
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table: one `header` row, then one row per list of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(result: dict) -> str:
    """Where and when a result was measured: CPU, cores, versions, load before and after."""
    m = result["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores, TF {m['tensorflow']}, Keras {m['keras']}; load average "
        f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after "
        f"({result['started']})"
    )


def heading(title: str, result: dict, *paragraphs: str) -> list[str]:
    """A section's first lines: its `### title`, the machine line, then each paragraph, each
    followed by a blank line (the section's table comes next).

    >>> result = {"machine": {"cpu": "cpu", "cores": 2, "tensorflow": "2", "keras": "3"},
    ...           "load_average_before": [1.0], "load_average_after": [2.0], "started": "now"}
    >>> heading("A", result, "Intro.")[2:]
    ['cpu, 2 cores, TF 2, Keras 3; load average 1.0 before, 2.0 after (now)', '', 'Intro.', '']
    """
    lines = [f"### {title}", "", machine_line(result), ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    return lines


def met(ok: bool) -> str:
    """A target's verdict as the tables print it."""
    return "met" if ok else "**not met**"
