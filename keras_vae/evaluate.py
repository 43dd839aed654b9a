"""How good a trained model really is: the importance-weighted test log-likelihood.

`evaluate_run` is what `keras-vae evaluate RUN_DIR` calls: it loads the run, estimates
log p(x) on the held-out split with K importance samples per example (Burda et al., 2015; K =
5000 is the standard protocol; the estimator is `keras_vae.importance.estimate_log_likelihood`),
prints nats per example and bits per dimension with their standard errors over the test set,
and adds them to ``RUN_DIR/metrics.json``.

What the numbers mean:

- ``test_log_likelihood``: mean over test examples of log (1/K) sum_k p(x, z_k) / q(z_k|x), in
  nats. A stochastic lower bound on the mean log p(x) that tightens as K grows; always >= the
  K-sample ``test_elbo`` computed from the same draws.
- ``..._stderr``: the standard error over the test set (std / sqrt(N)): how much the number
  would move on another test set of the same size. ``test_log_likelihood_mc_stderr`` is the
  much smaller Monte Carlo part (for this test set, from the importance weights).
- ``test_bits_per_dim`` = -test_log_likelihood / (D log 2). Its meaning depends on the data
  (``bits_per_dim_kind``): "discrete" for binary data under the Bernoulli likelihood (the
  number papers report); "continuous_density" for the Gaussian likelihood, where log p(x) is a
  density of data scaled to [0, 1], which can exceed 1 (then bpd < 0), and not a discrete-data
  bpd (that needs a model trained on dequantized data; for 8-bit data the two differ by about
  log2(256) = 8 bits); and
  "bernoulli_on_non_binary_data" for grey values under a Bernoulli likelihood, which is a
  cross-entropy, not a normalised likelihood.

What goes into ``metrics.json``: only an evaluation of the run's own dataset on its whole
held-out split is the run's headline number. It sets the top-level `HEADLINE_KEYS` and the
``"evaluation"`` entry (the latest such evaluation wins). Any other evaluation (``dataset=`` another
dataset, or ``max_examples`` below the split's size) leaves those alone and is stored under
``metrics["other_evaluations"][description]``, where the description names what was evaluated,
e.g. ``"dataset=mnist"`` or ``"dataset=digits,max_examples=100"`` (the latest wins per
description). The printed result says which (``"headline"``: true or false; ``"evaluated_on"``:
the description).

Limits (checked before anything is computed): ``importance_samples`` <= `MAX_IMPORTANCE_SAMPLES`
(1,000,000), ``batch_size`` <= `MAX_EVALUATION_BATCH_SIZE` (100,000), ``chunk_size`` <=
`MAX_IMPORTANCE_SAMPLES` (a chunk larger than K is K), ``seed`` in [0, `MAX_SEED`] (2**32 - 1,
the seeds `keras-vae train` takes), and one step's decoder output (chunk x batch x D) below
`importance.MAX_STEP_ELEMENTS` = 2**31 - 1 elements. ``max_examples`` has no maximum: it only
caps the examples taken, and above the split's size means the whole split. With
``write_metrics`` (the default) the run folder and its metrics.json must be writable; that is
checked before the model is loaded.

Example:

>>> result = evaluate_run("runs/mnist", importance_samples=5000)   # doctest: +SKIP
>>> result["test_log_likelihood"], result["test_bits_per_dim"]     # doctest: +SKIP
(-88.1, 0.162)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from keras_vae import run_reader as rd
from keras_vae.atomic import finite_or_null, write_json_atomically
from keras_vae.importance import (
    DEFAULT_BATCH_SIZE,
    LogLikelihoodEstimate,
    ProgressFn,
    default_chunk_size,
    estimate_log_likelihood,
    standard_error,
)
from keras_vae.limits import (
    MAX_EVALUATION_BATCH_SIZE,
    MAX_IMPORTANCE_SAMPLES,
    MAX_SEED,
    check_at_least,
)

if TYPE_CHECKING:
    from keras_vae.model import VAE

OTHER_EVALUATIONS = "other_evaluations"
HEADLINE_KEYS = (
    "test_log_likelihood",
    "test_log_likelihood_k",
    "test_log_likelihood_stderr",
    "test_bits_per_dim",
)


def bits_per_dim_kind(likelihood: str, images: np.ndarray) -> str:
    """What `test_bits_per_dim` means for this likelihood and data (see the module docstring).

    Example:

    >>> bits_per_dim_kind("bernoulli", np.array([0.0, 1.0]))
    'discrete'
    """
    if likelihood == "gaussian":
        return "continuous_density"
    binary = bool(np.all((images == 0) | (images == 1)))
    return "discrete" if binary else "bernoulli_on_non_binary_data"


def check_metrics_writable(path: str | os.PathLike | rd.Run) -> None:
    """Raise `RunDirError` unless ``RUN_DIR/metrics.json`` can be (re)written atomically.

    The folder must be writable (the new file is written next to it, then renamed) and an
    existing metrics.json writable too (a read-only one says: do not change this).
    """
    folder = rd.check_run_dir(path)
    metrics = folder / rd.METRICS_FILE
    if os.access(folder, os.W_OK | os.X_OK) and (
        not metrics.exists() or os.access(metrics, os.W_OK)
    ):
        return
    what = folder if not os.access(folder, os.W_OK | os.X_OK) else metrics
    raise rd.RunDirError(
        f"Cannot write {metrics} (permission denied on {what}), where evaluate adds its "
        f"result; fix the permissions of {folder}, or pass --no-write (write_metrics=False) to "
        "only print the result."
    )


def evaluation_description(
    dataset: str, data_dir: str | None = None, max_examples: int | None = None
) -> str:
    """The key of an evaluation under ``metrics["other_evaluations"]``.

    Example:

    >>> evaluation_description("mnist", max_examples=100)
    'dataset=mnist,max_examples=100'
    """
    parts = [f"dataset={dataset}"]
    if data_dir is not None:
        parts.append(f"data_dir={data_dir}")
    if max_examples is not None:
        parts.append(f"max_examples={max_examples}")
    return ",".join(parts)


def _same_dataset(given: str, own: str) -> bool:
    """`given` names the run's own dataset: the same string, or the same file or folder."""
    if given == own:
        return True
    try:
        return os.path.exists(given) and os.path.exists(own) and os.path.samefile(given, own)
    except OSError:
        return False


def evaluate_run(
    run_dir: str | os.PathLike | rd.Run,
    dataset: str | None = None,
    importance_samples: int = 5000,
    *,
    data_dir: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    chunk_size: int | None = None,
    max_examples: int | None = None,
    write_metrics: bool = True,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Estimate a run's held-out log-likelihood and add it to ``RUN_DIR/metrics.json``.

    Every input is checked before anything is computed or written (`RunDirError` /
    `DataError`, both `ValueError`), including, with `write_metrics`, that metrics.json can
    be written: a failure leaves the run directory untouched. An evaluation of the run's own
    dataset on its whole held-out split sets the headline keys (`HEADLINE_KEYS`) at the top
    level of ``metrics.json`` and the whole result under ``"evaluation"``; any other goes
    under ``"other_evaluations"`` keyed by `evaluation_description` (see the module
    docstring). The file is written atomically; the values `train` wrote are kept.

    Args:
        run_dir: a folder written by `keras-vae train`, its `Run` (`run_reader.load_run`), or
            a preset's (`keras_vae.presets.preset_run`, with ``write_metrics=False``).
        dataset: evaluate on this dataset's held-out split instead of the run's own.
        importance_samples: K, 1 to `MAX_IMPORTANCE_SAMPLES`. Default 5000, the standard
            protocol.
        data_dir: TFDS data_dir for `dataset`.
        batch_size: examples per step, 1 to `MAX_EVALUATION_BATCH_SIZE`. Default 100.
        seed: seeds the importance samples, 0 to `MAX_SEED`. Default 0.
        chunk_size: importance samples per step, 1 to `MAX_IMPORTANCE_SAMPLES` (None: a few
            MB of decoder output).
        max_examples: evaluate only the first N >= 1 held-out examples (None: all).
        write_metrics: update metrics.json (checked to be writable first). Default True.
        progress: called as ``progress(examples_done, total)`` after every batch.

    Returns:
        The result printed by `keras-vae evaluate` (see the module docstring for the keys).
    """
    check_at_least("importance_samples", importance_samples, 1, maximum=MAX_IMPORTANCE_SAMPLES)
    check_at_least("batch_size", batch_size, 1, maximum=MAX_EVALUATION_BATCH_SIZE)
    check_at_least("seed", seed, 0, maximum=MAX_SEED)
    if chunk_size is not None:
        check_at_least("chunk_size", chunk_size, 1, maximum=MAX_IMPORTANCE_SAMPLES)
    if max_examples is not None:
        check_at_least("max_examples", max_examples, 1)
    if write_metrics and rd.is_preset(run_dir):
        raise rd.RunDirError(
            f"{run_dir} has no run folder to add metrics.json to; pass write_metrics=False "
            "(`keras-vae evaluate --preset` only prints)."
        )
    if write_metrics:
        check_metrics_writable(run_dir)  # before minutes of work that could not be saved
    run = rd.load_run(run_dir)
    test = rd.load_test_split(run, dataset, data_dir)
    images = test.images[:max_examples] if max_examples else test.images
    own_dataset = dataset is None or _same_dataset(dataset, run.config.data.dataset)
    whole_split = len(images) == len(test.images)
    name = run.config.data.dataset if dataset is None else dataset
    description = evaluation_description(
        name,
        None if own_dataset else data_dir,
        None if whole_split else max_examples,
    )

    labels = None
    if run.model.conditional:
        labels = check_run_labels(run.model, test.labels, name)
        labels = labels[:max_examples] if max_examples else labels
    start = time.perf_counter()
    estimate = estimate_log_likelihood(
        run.model,
        images,
        num_samples=importance_samples,
        batch_size=batch_size,
        chunk_size=chunk_size,
        seed=seed,
        progress=progress,
        labels=labels,
    )
    conditional = {}
    if run.model.conditional:
        conditional = label_swap_gap(
            run.model,
            images,
            cast("np.ndarray", labels),  # set above for a conditional model
            estimate,
            importance_samples,
            batch_size,
            chunk_size,
            seed,
        )
    seconds = time.perf_counter() - start
    result = {
        "run_dir": str(run.path),
        **({"preset": run.preset} if run.preset else {}),
        "dataset": name,
        **estimate.summary(),
        **conditional,
        "bits_per_dim_kind": bits_per_dim_kind(run.model.likelihood, images),
        "seed": seed,
        "batch_size": batch_size,
        "chunk_size": min(
            importance_samples,
            chunk_size or default_chunk_size(run.model, min(batch_size, len(images))),
        ),
        "seconds": seconds,
        "headline": own_dataset and whole_split,
        "evaluated_on": description,
    }
    if write_metrics:
        _add_to_metrics(run.path, result)
    return result


def check_run_labels(model: VAE, labels: np.ndarray | None, dataset: str) -> np.ndarray:
    """The held-out labels of a conditional run, checked: present and in [0, K)."""
    if labels is None:
        raise rd.RunDirError(
            f"This run is conditional, but {dataset} has no labels: log p(x|y) needs them; "
            "evaluate on a dataset with labels."
        )
    if len(labels) and int(labels.max()) >= model.num_classes:
        raise rd.RunDirError(
            f"The labels of {dataset} reach {int(labels.max())}, outside this run's "
            f"{model.num_classes} classes [0, {model.num_classes - 1}]."
        )
    return labels


def label_swap_gap(
    model: VAE,
    images: np.ndarray,
    labels: np.ndarray,
    estimate: LogLikelihoodEstimate,
    num_samples: int,
    batch_size: int,
    chunk_size: int | None,
    seed: int,
) -> dict[str, Any]:
    """Evidence that the label is used: the mean of log p(x|y_true) - log p(x|y_other) over
    the examples, y_other = y_true + s mod K with s uniform in [1, K - 1] (fixed by `seed`),
    each estimated with the same K importance samples; its paired standard error. A model
    that ignored y would give 0."""
    result: dict[str, Any] = {
        "conditional": True,
        "num_classes": model.num_classes,
        "test_log_likelihood_is": "log p(x|y), y the true label",
    }
    if model.num_classes < 2:
        return {**result, "test_label_swap_gap": None, "test_label_swap_gap_stderr": None}
    shift = np.random.default_rng(seed).integers(1, model.num_classes, size=len(labels))
    other = (labels + shift) % model.num_classes
    swapped = estimate_log_likelihood(
        model, images, num_samples, batch_size, chunk_size, seed, labels=other
    )
    gap = estimate.log_likelihood.astype(np.float64) - swapped.log_likelihood
    return {
        **result,
        "test_label_swap_gap": float(gap.mean()),
        "test_label_swap_gap_stderr": standard_error(gap),
    }


def _add_to_metrics(path: Path, result: dict[str, Any]) -> None:
    metrics = rd.load_metrics(path)  # re-read: keep whatever was written meanwhile
    entry = {key: value for key, value in result.items() if key != "run_dir"}
    if result["headline"]:
        metrics.update({key: result[key] for key in HEADLINE_KEYS})
        metrics["evaluation"] = entry
    else:
        others = metrics.get(OTHER_EVALUATIONS)
        others = dict(others) if isinstance(others, dict) else {}
        others[result["evaluated_on"]] = entry
        metrics[OTHER_EVALUATIONS] = others
    write_json_atomically(path / rd.METRICS_FILE, finite_or_null(metrics))
