"""One invocation of a benchmark script: its arguments (and `--quick`), its wall-clock budget,
its resumable training state, and the results file it writes.

Every script's `main()` is the same frame around its own measurement:

    parser = invocation.argument_parser(__doc__, quick="30 timed calls")
    parser.add_argument("--repeats", type=int, default=300)
    args, run = invocation.start("sampling", parser, argv, quick={"repeats": 30})
    ...                                       # measure
    return invocation.finish(run, {"latency": latency})  # results/sampling[_quick].json

`start` parses, applies the `--quick` values (and names the results `<name>_quick`) and
records the machine and the load before; `finish` records the load after, writes the JSON
atomically (keeping, with `merge`, the entries of an earlier file that this run did not
redo) and prints where. Long measurements run in resumable pieces: a `Budget` of minutes
per invocation and a `TrainingState` per configuration that the next invocation restores.

Example:

>>> parser = argument_parser("Time a thing.\\n\\nMore words.", quick="fewer repeats")
>>> _ = parser.add_argument("--repeats", type=int, default=300)
>>> args = parse(parser, ["--quick"], quick={"repeats": 30})
>>> args.repeats, results_name("thing", args)
(30, 'thing_quick')
>>> arguments_record(parse(parser, []))
{'quick': 'False', 'repeats': '300'}
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common  # first: puts the repository on sys.path

if TYPE_CHECKING:
    from keras_vae.model import VAE


def argument_parser(doc: str, quick: str | None = None) -> argparse.ArgumentParser:
    """A script's parser: the first line of its docstring `doc` as the description, and with
    `quick` (its help) a `--quick` flag for a short run."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    quick: dict[str, Any] | None = None,
) -> argparse.Namespace:
    """`argv` parsed; with `--quick`, each argument named in `quick` set to its value."""
    args = parser.parse_args(argv)
    if quick and getattr(args, "quick", False):
        unknown = sorted(set(quick) - set(vars(args)))
        if unknown:
            raise ValueError(f"--quick sets arguments the parser lacks. Received: {unknown}")
        for key, value in quick.items():
            setattr(args, key, value)
    return args


def results_name(name: str, args: argparse.Namespace) -> str:
    """The results' name: `name`, or `<name>_quick` for a `--quick` run (kept apart)."""
    return f"{name}_quick" if getattr(args, "quick", False) else name


def arguments_record(args: argparse.Namespace, as_text: bool = True) -> dict[str, Any]:
    """The arguments as the results file records them: each as text, or (`as_text=False`)
    as JSON values with paths as text."""
    return {
        key: str(value) if as_text or isinstance(value, Path) else value
        for key, value in vars(args).items()
    }


def start(
    name: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    quick: dict[str, Any] | None = None,
    as_text: bool = True,
) -> tuple[argparse.Namespace, ResultsRun]:
    """Parse `argv` (see `parse`) and open the run that will write `results_name`'s JSON."""
    args = parse(parser, argv, quick)
    return args, ResultsRun(results_name(name, args), arguments_record(args, as_text))


def finish(
    run: ResultsRun,
    results: dict[str, Any],
    path: Path | None = None,
    merge: str | None = None,
) -> int:
    """Write `results` (to `path`, default results/<run.name>.json), print where; 0 for
    `main` to return. With `merge`, the mapping `results[merge]` keeps the entries of the
    file already at `path` that this run did not measure (a rerun of some cases)."""
    path = Path(path) if path else common.RESULTS_DIR / f"{run.name}.json"
    if merge is not None and path.exists():
        previous = json.loads(path.read_text()).get(merge, {})
        results = {**results, merge: {**previous, **results[merge]}}
    print("wrote", run.save(results, path))
    return 0


class ResultsRun:
    """Collects one benchmark run: the machine, the load before/after and the results.

    Example:

    >>> run = ResultsRun("example", {"quick": "True"})
    >>> run.name, len(run.load_before)
    ('example', 3)
    >>> run.save({"rows": []})  # writes benchmarks/results/example.json  # doctest: +SKIP
    """

    def __init__(self, name: str, arguments: dict[str, Any]) -> None:
        self.name = name
        self.arguments = arguments
        self.started = time.time()
        self.load_before = common.load_average()

    def save(self, results: dict[str, Any], path: Path | None = None) -> Path:
        """Write the results with the run's record to `path` (default: results/<name>.json)."""
        path = path or common.RESULTS_DIR / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "arguments": self.arguments,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 1),
            "machine": common.machine_info(),
            "load_average_before": self.load_before,
            "load_average_after": common.load_average(),
            **results,
        }
        common.write_json_atomically(path, payload)
        return path


class Budget:
    """A wall-clock budget: `Budget(minutes)`, then `remaining()` seconds and `spent()`.

    >>> Budget(1.0).remaining() > 59
    True
    """

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * minutes
        self.start = time.monotonic()

    def spent(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return self.seconds - self.spent()


class TrainingState:
    """The resumable state of one configuration: every training variable + a progress dict.

    ``<directory>/<name>.npz`` holds the model's and optimizer's variables (seed generators
    included) and the progress (samples seen, curve points, ...) in ONE file replaced
    atomically, written and read by the same functions as `keras-vae train`'s backup
    (`keras_vae.resume.save_state`, `restore_state`): a kill at any moment leaves the previous
    state or the new one.

    Example:

    >>> state = TrainingState(common.RESULTS_DIR / "reproduce_aevb", "mnist-nz20")
    >>> state.path.name
    'mnist-nz20.npz'
    >>> progress = state.restore(model) or {"samples": 0}  # doctest: +SKIP
    >>> state.save(model, progress)  # doctest: +SKIP
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.npz"

    def load_progress(self) -> dict[str, Any] | None:
        """The saved progress dict without loading any variables, or None if new."""
        from keras_vae.resume import read_progress

        if not self.path.exists():
            return None
        return read_progress(self.path, fix="delete it", what="the benchmark state")["progress"]

    def save(self, model: VAE, progress: dict[str, Any]) -> None:
        """Write `model`'s variables and `progress` to the state file, atomically."""
        from keras_vae.resume import save_state

        self.directory.mkdir(parents=True, exist_ok=True)
        save_state(self.path, model, {"progress": progress})

    def restore(self, model: VAE) -> dict[str, Any] | None:
        """Load the saved variables into `model` (compiled); the progress, or None if new."""
        from keras_vae.resume import restore_state

        if not self.path.exists():
            return None
        fix = "it belongs to another configuration; delete it"
        return restore_state(self.path, model, fix, what="the benchmark state")["progress"]
