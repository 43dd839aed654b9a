"""The reproductions' rows, and the plan of where and how they run: what each row's commands are.

A row is a recipe and its flags on one dataset, with the paper's number, the target, the row it
must beat and the name of the preset it ships as; `Plan` turns a row into the commands a user
runs (`Plan.train_command`, `Plan.evaluate_command`). `benchmarks/reproduce_nll.py` runs them,
`reproduction_status` reads their run folders and `ship_reproduction.py` ships a finished row.

Example:

>>> Plan().train_command(ROWS["iwae_k5"])[2:8]
['--recipe', 'burda2015', '--objective', 'iwae', '--num-samples', '5']
>>> Plan().evaluate_command(ROWS["vae"])
['keras-vae', 'evaluate', 'benchmarks/reproductions/vae', '-k', '5000']
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table: a recipe and its flags on one dataset, and the paper's number.

    Attributes:
        name: the row's run folder under the output folder.
        title: what the table calls it.
        recipe: `keras-vae train --recipe`.
        data: "dynamic" (MNIST, binarized anew every batch) or "static" (Larochelle's set).
        flags: train flags after the recipe's.
        published: the paper's test NLL in nats (None: none for this network).
        target: the NLL the row must reach, in nats (None: none).
        source: where the published number is.
        preset: the name the finished row ships as, in keras_vae/preset_folders.
        beats: the row of the same network whose NLL this one must be below, where the paper
            says it is (None: no such row).
    """

    name: str
    title: str
    recipe: str
    data: str
    flags: tuple[str, ...] = ()
    published: float | None = None
    target: float | None = None
    source: str = "-"
    preset: str = ""
    beats: str | None = None


IWAE = ("--objective", "iwae", "--num-samples")
BURDA = "Burda et al. 2015, Table 1"
ROWS = {
    row.name: row
    for row in (
        Row(
            "vae", "VAE, dynamic MNIST", "burda2015", "dynamic", (), 86.76, 87.26, BURDA,
            preset="mnist_vae_burda2015",
        ),
        Row(
            "iwae_k5", "IWAE k=5, dynamic MNIST", "burda2015", "dynamic", (*IWAE, "5"), 85.54,
            86.04, BURDA, preset="mnist_iwae_k5_burda2015", beats="vae",
        ),
        Row(
            "vampprior", "VampPrior K=500, static MNIST", "vampprior2018", "static", (), 85.57,
            86.07, "Tomczak & Welling 2018, static MNIST", preset="mnist_vampprior2018",
        ),
        Row(
            "iwae_k50", "IWAE k=50, dynamic MNIST", "burda2015", "dynamic", (*IWAE, "50"), 84.78,
            85.28, BURDA, preset="mnist_iwae_k50_burda2015", beats="iwae_k5",
        ),
        Row(
            "iaf", "VAE-IAF, dynamic MNIST", "burda2015", "dynamic", ("--posterior", "iaf"),
            source="none for an MLP (Kingma et al. 2016: conv ResNets)",
            preset="mnist_iaf_burda2015", beats="vae",
        ),
    )
}  # fmt: skip
ORDER = ("vae", "vampprior", "iwae_k5", "iwae_k50", "iaf")  # fewest hours first
DATA_FILES = {"dynamic": "mnist", "static": "binarized-mnist/binarized_mnist.npz"}
SITTING_MINUTES = 150  # the budget the status page suggests for one sitting


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where and how the rows run: the command line's choices other than rows and budget.

    Attributes:
        dataset_dir: the folder holding mnist/ and binarized-mnist/ (as the commands say it).
        dataset: every row on this dataset instead (e.g. "digits"); None: the row's own.
        train_flags: more train flags for every row, after the row's.
        output_dir: the folder of the rows' run folders and the status page.
        importance_samples: K of `keras-vae evaluate -k K`.
        nice: the niceness the commands run at.
        results: the folder of reproduce_nll.json and .png.
        log_dir: the commands' output, appended to ``<row>.log``.
    """

    dataset_dir: str = "../shared/data"
    dataset: str | None = None
    train_flags: tuple[str, ...] = ()
    output_dir: str = "benchmarks/reproductions"
    importance_samples: int = 5000
    nice: int = 19
    results: str = "benchmarks/results"
    log_dir: str = "/tmp/repro_logs"

    def dataset_of(self, row: Row) -> str:
        return self.dataset or f"{self.dataset_dir.rstrip('/')}/{DATA_FILES[row.data]}"

    def run_dir(self, row: Row) -> str:
        return f"{self.output_dir.rstrip('/')}/{row.name}"

    def log(self, row: Row) -> Path:
        return Path(self.log_dir) / f"{row.name}.log"

    def train_command(self, row: Row) -> list[str]:
        """What a user runs to train (or resume) `row`."""
        flags = ["--recipe", row.recipe, *row.flags, *self.train_flags]
        where = ["--dataset", self.dataset_of(row), "--output", self.run_dir(row)]
        return ["keras-vae", "train", *flags, *where]

    def evaluate_command(self, row: Row) -> list[str]:
        """What a user runs once `row` has finished: its whole test split."""
        return ["keras-vae", "evaluate", self.run_dir(row), "-k", str(self.importance_samples)]

    def background_command(self, row: Row) -> str:
        """The train command as this machine runs it: in the background, lowest priority."""
        command = shlex.join([*self.train_command(row), "--verbose", "2"])
        return f"nohup nice -n {self.nice} {command} >> {shlex.quote(str(self.log(row)))} 2>&1 &"

    def flags(self) -> list[str]:
        """The driver's flags that make this plan (one per field that is not the default)."""
        words = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                text = shlex.join(value) if field.name == "train_flags" else str(value)
                words.append(f"--{field.name.replace('_', '-')}={text}")  # "=": text may be "-x"
        return words

    def driver_command(self, row: Row) -> str:
        """This driver on `row` alone for one sitting (then its evaluation)."""
        words = ["python", "benchmarks/reproduce_nll.py", "--rows", row.name]
        words += ["--budget-minutes", str(SITTING_MINUTES), *self.flags()]
        return f"nice -n {self.nice} {shlex.join(words)}"


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags of `Plan`'s fields (`plan_from_args` reads them back)."""
    defaults = Plan()
    parser.add_argument("--dataset-dir", default=defaults.dataset_dir)
    parser.add_argument("--dataset", help="every row on this dataset instead (e.g. digits)")
    parser.add_argument("--train-flags", default="", help="more train flags for every row")
    parser.add_argument("--importance-samples", "-k", type=int, default=5000)
    parser.add_argument("--output-dir", default=defaults.output_dir, help="the run folders")
    parser.add_argument("--results", default=defaults.results, help="the JSON and the PNG")
    parser.add_argument("--log-dir", default=defaults.log_dir, help="<row>.log of commands")
    parser.add_argument("--nice", type=int, default=defaults.nice, help="of the commands")


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The `Plan` of `add_plan_arguments`' flags.

    >>> parser = argparse.ArgumentParser()
    >>> add_plan_arguments(parser)
    >>> plan_from_args(parser.parse_args(["--dataset", "digits"])).dataset_of(ROWS["vae"])
    'digits'
    """
    names = [field.name for field in dataclasses.fields(Plan)]
    values = {name: getattr(args, name) for name in names}
    return Plan(**{**values, "train_flags": tuple(shlex.split(args.train_flags))})
