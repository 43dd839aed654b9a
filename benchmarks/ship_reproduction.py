"""Ship a finished reproduction row inside keras-vae, as the preset its row names.

The row must have trained to its recipe's end (or its early stop) and been evaluated by
``keras-vae evaluate -k 5000`` on its whole test split; its NLL must meet the row's target and
beat the row of the same network the paper says it beats (`Row.beats`), or the script refuses
(one line, exit 2, nothing written) unless ``--even-if-missed``. It then calls
`keras_vae.preset_claims.save_run_as_preset` with the row's exact train command and a
description written from the row and its evaluation, which measures the preset's own claims.

    python benchmarks/ship_reproduction.py iwae_k5   # -> preset mnist_iwae_k5_burda2015
    python benchmarks/report.py --readme README.md   # docs/presets.md's table, from metadata

Example:

>>> mlp = {"hidden_units": [200, 200], "latent_dim": 50, "activation": "tanh"}
>>> network({**mlp, "posterior": "gaussian"}, (28, 28))
'784-200-200-50 tanh MLPs'
>>> network({**mlp, "posterior": "iaf", "flow_steps": 2, "flow_hidden_units": [128, 128]}, (784,))
'784-200-200-50 tanh MLPs, 2 IAF steps of 128-128 MADEs'
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, cast

import common  # first: puts the repository on sys.path
import invocation
import reproduction_status as status
from reproduction_rows import ORDER, ROWS, Plan, Row, add_plan_arguments, plan_from_args

from keras_vae.config import Config
from keras_vae.ownership import FolderNotOursError
from keras_vae.preset_claims import save_run_as_preset
from keras_vae.presets import SHIPPED, PresetError
from keras_vae.run_paths import RunFolder

TFDS_NAMES = {"dynamic": "mnist", "static": "binarized_mnist"}  # what the preset records


class ShipError(ValueError):
    """A row that cannot ship; the message names the problem and the fix."""


def network(model: dict[str, Any], data_shape: tuple[int, ...]) -> str:
    """The MLPs' widths from the data to the latent space, their activation, and the flow's
    steps and MADE widths for an IAF posterior."""
    widths = [math.prod(data_shape), *model["hidden_units"], model["latent_dim"]]
    text = f"{'-'.join(str(width) for width in widths)} {model['activation']} MLPs"
    if model["posterior"] == "iaf":
        made = "-".join(str(width) for width in model["flow_hidden_units"])
        text += f", {model['flow_steps']} IAF steps of {made} MADEs"
    return text


def evaluated_metrics(row: Row, plan: Plan) -> dict[str, Any]:
    """metrics.json of `row`'s finished run once evaluated with `plan`'s K, else ShipError."""
    folder = RunFolder(Path(plan.run_dir(row)))
    metrics = status.finished_metrics(folder)
    if not status.is_evaluated(metrics, plan.importance_samples):
        raise ShipError(
            f"row {row.name!r} ({folder.root}) has not finished, or has no evaluation with k = "
            f"{plan.importance_samples}; run `{shlex.join(plan.train_command(row))}`, then "
            f"`{shlex.join(plan.evaluate_command(row))}`"
        )
    return cast(dict[str, Any], metrics)  # evaluated: not None


def shortfalls(row: Row, plan: Plan, nll: float) -> list[str]:
    """Why `row`'s NLL may not ship: a missed target, or not below the row it must beat."""
    found = []
    if row.target is not None and nll > row.target:
        found.append(f"its NLL {nll:.2f} misses the target {row.target:.2f}")
    if row.beats is not None:
        baseline = -evaluated_metrics(ROWS[row.beats], plan)["test_log_likelihood"]
        if nll >= baseline:
            found.append(f"its NLL {nll:.2f} is not below row {row.beats!r}'s {baseline:.2f}")
    return found


def description(row: Row, config: Config, metrics: dict[str, Any]) -> str:
    """One line: the row, its network and command, its epochs and test NLL, the paper's."""
    command = shlex.join(["keras-vae", "train", "--recipe", row.recipe, *row.flags])
    epochs = int(metrics["epochs"])
    stop = " (early stop)" if epochs < config.training.epochs else ""
    model = dataclasses.asdict(config.model)
    evaluation = metrics["evaluation"]
    paper = (
        f"published {row.published:.2f}, {row.source}" if row.published is not None else row.source
    )
    return (
        f"{row.title} ({network(model, tuple(metrics['data_shape']))}): {epochs:,} epochs"
        f"{stop} of `{command}`; test NLL {-metrics['test_log_likelihood']:.2f} +- "
        f"{metrics['test_log_likelihood_stderr']:.2f} nats (k = "
        f"{evaluation['importance_samples']:,}, all {evaluation['num_examples']:,} test images;"
        f" {paper})"
    )


def ship(
    row: Row, plan: Plan, folder: Path, note: str = "", even_if_missed: bool = False
) -> dict[str, Any]:
    """Check `row`, then make `folder` its preset; the metadata written (`save_run_as_preset`).

    Raises:
        ShipError: an unfinished or unevaluated row, or (unless `even_if_missed`) a missed
            target or baseline.
    """
    metrics = evaluated_metrics(row, plan)
    missed = shortfalls(row, plan, -float(metrics["test_log_likelihood"]))
    if missed and not even_if_missed:
        raise ShipError(
            f"row {row.name!r} does not ship: {'; '.join(missed)}; find out why first (the "
            "issue asks it), or pass --even-if-missed to ship it as it is"
        )
    command = plan.train_command(row)
    text = description(row, status.config_of(command), metrics)
    return save_run_as_preset(
        plan.run_dir(row),
        folder,
        command=shlex.join(command),
        dataset=None if plan.dataset else TFDS_NAMES[row.data],
        description=f"{text}. {note}" if note else text,
    )


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("row", choices=list(ORDER), help="the finished row to ship")
    parser.add_argument("--out", type=Path, help="the preset folder (default: the row's own)")
    parser.add_argument("--note", default="", help="a sentence added to the description")
    parser.add_argument(
        "--even-if-missed",
        action="store_true",
        help="ship a row that misses its target or baseline",
    )
    add_plan_arguments(parser)
    args = parser.parse_args(argv)
    row, plan = ROWS[args.row], plan_from_args(args)
    folder = args.out.resolve() if args.out else SHIPPED / row.preset
    os.chdir(common.REPO_ROOT)  # the rows' commands, folders and data paths are relative to it
    try:
        metadata = ship(row, plan, folder, args.note, args.even_if_missed)
    except (ShipError, PresetError, FolderNotOursError) as error:
        print(f"ship_reproduction.py: {error}", file=sys.stderr)
        return 2
    measured = metadata["measured"]
    print(f"shipped row {row.name!r} as {folder}: {metadata['description']}")
    print(
        f"measured on the first {measured['examples']:,} test images, k = "
        f"{measured['importance_samples']:,}: log p(x) {measured['test_log_likelihood']:.2f}; "
        "next: python benchmarks/report.py --readme README.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
