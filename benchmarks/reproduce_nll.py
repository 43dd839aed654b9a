"""Reproduce the papers' test NLLs with the commands a user runs: a thin driver of `keras-vae`.

Each row is one run directory, ``benchmarks/reproductions/<row>``, made by the CLI alone::

    keras-vae train --recipe R [row flags] --dataset D --output benchmarks/reproductions/<row>
    keras-vae evaluate benchmarks/reproductions/<row> -k 5000    # once the run has finished

The driver trains nothing itself. It starts those commands as subprocesses under `nice`, the
rows in the order of ``--rows`` (``--parallel`` at once, each pinned to its share of the CPUs:
`cpu_slots`), and stops them with SIGTERM (SIGKILL after a grace period; SIGCONT too, for a
trainer paused with SIGSTOP) once ``--budget-minutes`` are spent or it gets SIGTERM or SIGINT
itself. A stopped run keeps the backup of its last completed epoch (the epoch under way is
lost); the next invocation reruns the SAME command, which resumes it. A run has finished
when its metrics.json exists and its backup is gone (`RunFolder.is_finished`); only then is
it evaluated, on its whole test split, so no row has an NLL before it trained to its recipe's
end (or early stop). A row another process trains (a sitting's background run) is left alone.

Every invocation, ``--status`` too (which starts nothing), writes
``benchmarks/results/reproduce_nll.json`` (report.py renders it into the README and
benchmarks/README.md), the status page ``benchmarks/reproductions/README.md`` and the
validation curves ``benchmarks/results/reproduce_nll.png`` (`reproduction_status`). Paths are
relative to the repository's root, where the commands run.

    python benchmarks/reproduce_nll.py --status
    nice -n 19 python benchmarks/reproduce_nll.py --rows vae vampprior --parallel 2 \
        --budget-minutes 150
    python benchmarks/reproduce_nll.py --rows vae --dataset digits --output-dir /tmp/r \
        --results /tmp/r --train-flags "--epochs 2 --hidden-units 16" --budget-minutes 5

The rows and their commands live in `reproduction_rows`; a finished row ships as a preset
with `ship_reproduction.py`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import common  # first: puts the repository on sys.path
import invocation
import reproduction_status as status
from report_papers import reproductions_table
from reproduction_rows import ORDER, ROWS, Plan, Row, add_plan_arguments, plan_from_args

from keras_vae.run_paths import RunFolder

GRACE_SECONDS = 30.0
POLL_SECONDS = 0.2


def cpu_slots(parallel: int, cpus: Sequence[int] | None = None) -> list[tuple[int, ...] | None]:
    """The CPUs each of `parallel` rows at once is pinned to: `cpus` (default: those this
    process may use) split evenly, so that rows side by side do not fight over cores (see the
    status page); None (not pinned) for one row, more rows than CPUs, or an OS that cannot pin.

    >>> cpu_slots(2, [0, 1, 2, 3, 4])
    [(0, 1), (2, 3)]
    >>> cpu_slots(1, [0, 1]), cpu_slots(3, [0, 1])
    ([None], [None, None, None])
    """
    if cpus is None:
        if not hasattr(os, "sched_getaffinity"):
            return [None] * parallel
        cpus = sorted(os.sched_getaffinity(0))
    if parallel == 1 or parallel > len(cpus):
        return [None] * parallel
    share = len(cpus) // parallel
    return [tuple(cpus[i * share : (i + 1) * share]) for i in range(parallel)]


def keras_vae_executable() -> list[str]:
    """The `keras-vae` of this Python's environment (or the module, where there is none)."""
    script = Path(sys.executable).with_name("keras-vae")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_vae.cli"]


@dataclasses.dataclass
class Job:
    """One running command of one row, and the CPUs it is pinned to (`cpu_slots`)."""

    row: Row
    stage: str  # "train" or "evaluate"
    process: subprocess.Popen
    first_epoch: int
    cpus: tuple[int, ...] | None = None


class Sitting:
    """The rows' commands as subprocesses, `parallel` rows at once, within a wall-clock budget.

    >>> Sitting(Plan(), [ROWS["vae"]], budget_minutes=0.0).run()  # doctest: +SKIP
    {'vae': 'not started: the budget was spent'}
    """

    def __init__(
        self, plan: Plan, rows: list[Row], budget_minutes: float, parallel: int = 1
    ) -> None:
        self.plan = plan
        self.pending = list(rows)
        self.parallel = parallel
        self.slots = cpu_slots(parallel)
        self.budget = invocation.Budget(budget_minutes)
        self.jobs: list[Job] = []
        self.outcomes: dict[str, str] = {}
        self.stop_reason: str | None = None

    def run(self) -> dict[str, str]:
        """Run until every row is done or the budget is spent; row name -> what happened."""
        handlers = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            handlers[signum] = signal.signal(signum, self._request_stop)
        try:
            while self.pending or self.jobs:
                if self.stop_reason is None and self.budget.remaining() <= 0:
                    self.stop_reason = "the budget was spent"
                if self.stop_reason is not None:
                    break
                self._collect()
                self._fill()
                time.sleep(POLL_SECONDS)
        finally:
            self._stop_all()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        for row in self.pending:
            self.outcomes.setdefault(row.name, f"not started: {self.stop_reason}")
        return self.outcomes

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_reason = f"the driver got {signal.Signals(signum).name}"

    def _folder(self, row: Row) -> RunFolder:
        return RunFolder(Path(self.plan.run_dir(row)))

    def _next_job(
        self, row: Row, cpus: tuple[int, ...] | None, trained: bool = False
    ) -> Job | None:
        """Start what `row` needs next, pinned to `cpus`: train, or evaluate once finished;
        None: nothing. `trained`: its train command has just succeeded (not started again)."""
        folder = self._folder(row)
        pid = status.trainers().get(folder.root.resolve())
        if pid is not None:
            self.outcomes[row.name] = f"left alone: process {pid} trains it"
            return None
        metrics = status.finished_metrics(folder)
        if metrics is None and trained:
            self.outcomes[row.name] += ", yet the run has not finished (see the log)"
            return None
        if metrics is None:
            command = [*self.plan.train_command(row), "--verbose", "2"]
            return self._launch(row, "train", command, cpus)
        if not status.is_evaluated(metrics, self.plan.importance_samples):
            return self._launch(row, "evaluate", self.plan.evaluate_command(row), cpus)
        self.outcomes.setdefault(row.name, "finished and evaluated before: nothing to do")
        return None

    def _launch(
        self, row: Row, stage: str, command: list[str], cpus: tuple[int, ...] | None
    ) -> Job:
        log, first_epoch = self.plan.log(row), status.epoch_done(self._folder(row))
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"\n$ {shlex.join(command)}   # {time.strftime('%Y-%m-%d %H:%M')}\n")
            handle.flush()
            process = subprocess.Popen(
                ["nice", "-n", str(self.plan.nice), *keras_vae_executable(), *command[1:]],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C reaches the driver only
                preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
            )
        where = f"pid {process.pid}, CPUs {cpus or 'any'}"
        print(f"{row.name}: {stage} ({where}): {shlex.join(command)}", flush=True)
        return Job(row, stage, process, first_epoch, cpus)

    def _trained(self, job: Job) -> str:
        return f"trained epochs {job.first_epoch} -> {status.epoch_done(self._folder(job.row))}"

    def _collect(self) -> None:
        """Take the commands that ended; start a finished row's evaluation in its place."""
        for job in [job for job in self.jobs if job.process.poll() is not None]:
            self.jobs.remove(job)
            name, code = job.row.name, job.process.returncode
            done = self._trained(job) if job.stage == "train" else ""
            if code != 0:
                failed = f"{job.stage} failed (exit {code}; see {self.plan.log(job.row)})"
                self.outcomes[name] = f"{done}; {failed}" if done else failed
                continue
            if job.stage == "evaluate":
                before = self.outcomes.get(name, "it had finished before")
                self.outcomes[name] = f"{before}; evaluated"
                continue
            self.outcomes[name] = f"{done}: finished"
            follow = self._next_job(job.row, job.cpus, trained=True)  # evaluate, same slot
            if follow is not None:
                self.jobs.append(follow)

    def _fill(self) -> None:
        while len(self.jobs) < self.parallel and self.pending:
            taken = [job.cpus for job in self.jobs]
            cpus = next(c for c in self.slots if c is None or c not in taken)
            job = self._next_job(self.pending.pop(0), cpus)
            if job is not None:
                self.jobs.append(job)

    def _stop_all(self) -> None:
        """SIGTERM (and SIGCONT, for a paused one) to every command; SIGKILL after the grace."""
        for job in self.jobs:
            job.process.terminate()
            job.process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + GRACE_SECONDS
        for job in self.jobs:
            try:
                job.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
            reason = f"stopped: {self.stop_reason}"
            if job.stage == "train":
                self.outcomes[job.row.name] = f"{self._trained(job)}; {reason} (resumable)"
            else:
                before = self.outcomes.get(job.row.name)
                text = f"evaluation {reason} (it runs again next time)"
                self.outcomes[job.row.name] = f"{before}; {text}" if before else text
        self.jobs.clear()


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument(
        "--rows", nargs="+", choices=list(ROWS), default=list(ORDER), help="in this order"
    )
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="wall clock")
    parser.add_argument("--parallel", type=int, default=1, help="rows at once (default 1)")
    parser.add_argument("--status", action="store_true", help="write the status; train nothing")
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    if args.parallel < 1 or args.importance_samples < 1 or args.budget_minutes <= 0:
        parser.error("--parallel, --importance-samples and --budget-minutes must be positive")
    os.chdir(common.REPO_ROOT)  # the commands' relative paths are the repository's
    plan = plan_from_args(args)
    run = invocation.ResultsRun("reproduce_nll", invocation.arguments_record(args, as_text=False))
    outcomes = {}
    if not args.status:
        rows = [ROWS[name] for name in args.rows]
        outcomes = Sitting(plan, rows, args.budget_minutes, args.parallel).run()
    payload = status.write_status(run, plan, [ROWS[name] for name in ORDER], outcomes)
    print(reproductions_table(payload))
    print("wrote", Path(plan.results) / status.RESULTS, payload["status_page"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
