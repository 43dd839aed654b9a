"""What a preset claims: its numbers, measured on the saved weights, and the run it came from.

`save_run_as_preset` turns a finished run into a preset folder (`keras_vae.presets`) and
records in its metadata.json the exact ``keras-vae train`` command, the recipe, epochs and data,
then `measure_preset`'s numbers: the test ELBO and a k = 500 log-likelihood on the first 500
test images with seed 0 (`MEASURE`), each with its standard error, measured by
``keras-vae evaluate --preset`` on the weights as saved, with the command that repeats them.
The seed, batch and chunk sizes fix every draw, so that command gives the same numbers again
(up to float rounding): tests/test_presets.py re-measures every shipped preset that way.

How the shipped preset ``mnist_vae_quick`` was made (the default 784-400-20 VAE, 15 epochs;
the run trained on MNIST's IDX files, and the preset records TFDS's "mnist" as its dataset):

    $ keras-vae train --dataset /work/shared/data/mnist --epochs 15 \
          --output /tmp/mnist_quick_run --verbose 2
    >>> save_run_as_preset(
    ...     "/tmp/mnist_quick_run",
    ...     "keras_vae/preset_folders/mnist_vae_quick",
    ...     command="keras-vae train --dataset /work/shared/data/mnist --epochs 15 "
    ...     "--output /tmp/mnist_quick_run --verbose 2",
    ...     dataset="mnist",
    ... )                                                           # doctest: +SKIP
"""

from __future__ import annotations

import os
import shlex
from typing import Any, cast

from keras_vae import presets
from keras_vae import run_reader as rd
from keras_vae.atomic import write_json_atomically
from keras_vae.json_files import read_json_file
from keras_vae.preset_writer import save_preset

# The protocol of ``measured``: k = 500 importance samples on the first 500 test images, seed 0,
# 100 images per batch (the draws depend on the seed, the batch size and the chunk size).
MEASURE = {"importance_samples": 500, "max_examples": 500, "seed": 0, "batch_size": 100}
# The run's own metrics a preset keeps; the last three are the headline of `keras-vae evaluate
# RUN_DIR -k K` on the whole test split, kept where the run was evaluated.
RUN_METRIC_KEYS = (
    "num_train",
    "num_test",
    "train_elbo",
    "test_elbo",
    "test_reconstruction",
    "test_log_likelihood",
    "test_log_likelihood_stderr",
    "test_log_likelihood_k",
)
MEASURED_KEYS = (
    "test_elbo",
    "test_elbo_stderr",
    "test_log_likelihood",
    "test_log_likelihood_stderr",
    "test_log_likelihood_mc_stderr",
    "bits_per_dim_kind",
)


def measure_preset(
    preset: str | os.PathLike,
    dataset: str | None = None,
    data_dir: str | None = None,
    **protocol: int,
) -> dict[str, Any]:
    """A preset's numbers, measured on its saved weights by ``keras-vae evaluate --preset``
    (`keras_vae.evaluate.evaluate_run`, writing nothing), with that command.

    Args:
        preset: a preset name, folder or handle.
        dataset: the data whose first test images are measured (None: the preset's own).
        data_dir: TFDS data_dir for `dataset`.
        **protocol: any of `MEASURE`'s keys, and ``chunk_size``; the rest are `MEASURE`'s.

    Returns:
        The ``measured`` entry of metadata.json: ``test_elbo`` (the mean over the examples of
        the average of the K log importance weights: the ELBO, estimated with K draws) and
        ``test_log_likelihood`` (log of the average weight), each with its standard error over
        the examples; the Monte Carlo standard error of the latter; the data; the protocol,
        chunk size included; and ``command``, the evaluate command that repeats them.
    """
    from keras_vae.evaluate import evaluate_run

    protocol = {**MEASURE, **protocol}
    run = presets.preset_run(preset)
    # protocol holds int arguments only (MEASURE's keys, chunk_size), never `progress`
    result = evaluate_run(run, dataset, data_dir=data_dir, write_metrics=False, **protocol)  # type: ignore[arg-type]
    protocol["chunk_size"] = result["chunk_size"]  # fixed, so the same draws come back
    given = {"dataset": dataset, "data_dir": data_dir, **protocol}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in given.items() if v is not None]
    return {
        "command": shlex.join(
            ["keras-vae", "evaluate", "--preset", cast("str", run.preset), *flags]  # a preset's Run
        ),
        "dataset": result["dataset"],
        "split": "test",
        "examples": result["num_examples"],
        **protocol,
        **{key: result[key] for key in MEASURED_KEYS},
    }


def save_run_as_preset(
    run_dir: str | os.PathLike,
    folder: str | os.PathLike,
    command: str,
    dataset: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Make a preset of a finished run, then measure its numbers on the saved weights.

    Writes the run's model with `keras_vae.preset_writer.save_preset`, recording `command`, the
    recipe, epochs and the run's config with `dataset` in place of the run's own (e.g.
    "mnist", TFDS's name, for a run trained on a local copy of MNIST's IDX files, so that the
    preset evaluates anywhere; the data actually used stays under ``trained_on``). Then
    ``measured``: `measure_preset` on the run's own data.

    Args:
        run_dir: a finished run of `keras-vae train`.
        folder: the preset folder (missing, empty or a keras-vae preset).
        command: the exact ``keras-vae train`` command that made the run.
        dataset: the dataset to record (None: the run's own).
        description: one line saying what the preset is, or None.

    Returns:
        The metadata written.
    """
    run = rd.load_run(run_dir)
    config = run.config.to_dict()
    trained_on = {key: config["data"][key] for key in ("dataset", "data_dir")}
    if dataset is not None:
        config["data"] = {**config["data"], "dataset": dataset, "data_dir": None}
    metadata = {
        "command": command,
        "recipe": run.config.training.recipe,
        "epochs": run.metrics.get("epochs"),
        "data": config["data"],
        "trained_on": trained_on,
        "run_config": config,
        "run_metrics": {key: run.metrics[key] for key in RUN_METRIC_KEYS if key in run.metrics},
        **({"description": description} if description else {}),
    }
    folder = save_preset(run.model, folder, metadata)
    measured = measure_preset(folder, **trained_on)
    path = folder / presets.METADATA_FILE
    written = {**read_json_file(path, "save the preset again"), "measured": measured}
    write_json_atomically(path, presets.check_metadata(written, path))  # the folder is ours
    return written
