"""Anomaly scores of a trained run's data: what `keras-vae score` and `keras-vae calibrate` call.

`score_run` scores every held-out example of a dataset (`keras_vae.scores`: elbo,
log_likelihood, reconstruction, kl, in nats) into a CSV, adding ``is_anomaly`` once the run is
calibrated; `calibrate_run` picks the threshold at a false positive rate on the run's held-out
normal data and records it in ``RUN_DIR/calibration.json`` (`keras_vae.calibration`). Every
input is checked before anything is computed or written; a refusal changes nothing.

>>> score_run("runs/mnist", "scores.csv")                              # doctest: +SKIP
{'out': 'scores.csv', 'examples': 10000, 'importance_samples': 100, ...}
>>> calibrate_run("runs/mnist", false_positive_rate=0.01)["threshold"]  # doctest: +SKIP
-131.2
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from keras_vae import calibration
from keras_vae import run_reader as rd
from keras_vae.atomic import check_output_file, finite_or_null, write_output
from keras_vae.limits import MAX_SEED, check_at_least
from keras_vae.signatures import DEFAULT_SCORE_SAMPLES, MAX_SCORE_SAMPLES, SCORE_NAMES

if TYPE_CHECKING:
    from keras_vae.model import VAE

DEFAULT_BATCH_SIZE = 1000
ProgressFn = Callable[[int, int], None]


def score_examples(
    model: VAE,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    importance_samples: int = DEFAULT_SCORE_SAMPLES,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """The four scores of `images` as float32 NumPy arrays, `batch_size` examples at a time
    (the numbers do not depend on it: each row is scored alone).

    Example:
        >>> from keras_vae.model import VAE
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> scores = score_examples(vae, np.full((3, 4), 0.5, "float32"), importance_samples=5)
        >>> sorted(scores), scores["kl"].shape
        (['elbo', 'kl', 'log_likelihood', 'reconstruction'], (3,))
    """
    from keras_vae.scores import score  # imports TensorFlow

    parts: dict[str, list[np.ndarray]] = {name: [] for name in SCORE_NAMES}
    total = len(images)
    for start in range(0, total, batch_size):
        rows = slice(start, start + batch_size)
        values = score(
            model,
            images[rows],
            importance_samples,
            seed,
            None if labels is None else labels[rows],
        )
        for name, value in zip(SCORE_NAMES, values):
            parts[name].append(np.asarray(value, np.float32))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return {
        name: np.concatenate(chunks) if chunks else np.zeros([0], np.float32)
        for name, chunks in parts.items()
    }


def _check_common(importance_samples: int | None, seed: int, max_examples: int | None) -> None:
    # The rules calibration.json's K and seed are read with (one function for both).
    if importance_samples is not None:
        calibration.check_count("importance_samples", importance_samples, 1, MAX_SCORE_SAMPLES)
    calibration.check_count("seed", seed, 0, MAX_SEED)
    if max_examples is not None:
        check_at_least("max_examples", max_examples, 1)


def _held_out(
    run: rd.Run, dataset: str | None, data_dir: str | None, max_examples: int | None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(images, labels or None, the data's description) of the held-out split to score."""
    split = rd.load_test_split(run, dataset, data_dir)
    images = split.images[:max_examples] if max_examples else split.images
    labels = split.labels
    name = run.config.data.dataset if dataset is None else dataset
    if labels is not None:
        labels = labels[: len(images)]
    if run.model.conditional:
        from keras_vae.evaluate import check_run_labels

        labels = check_run_labels(run.model, labels, name)
    described = {"dataset": name, "split": "test", "examples": len(images)}
    if data_dir is not None:
        described["data_dir"] = str(data_dir)
    if max_examples is not None:
        described["max_examples"] = int(max_examples)
    return images, labels, described


def _score_run_data(
    run: rd.Run,
    images: np.ndarray,
    labels: np.ndarray | None,
    importance_samples: int,
    seed: int,
    progress: ProgressFn | None,
) -> dict[str, np.ndarray]:
    """`score_examples` of a run's model (the labels are its input only if it is conditional)."""
    given = labels if run.model.conditional else None
    return score_examples(run.model, images, given, importance_samples, seed, progress=progress)


def csv_text(
    scores: dict[str, np.ndarray], labels: np.ndarray | None, flags: np.ndarray | None = None
) -> str:
    """The CSV of `score_run`: index, label (when known), the four scores, is_anomaly.

    Example:
        >>> text = csv_text({"elbo": np.array([-1.5], "float32")}, np.array([7]))
        >>> text.splitlines()
        ['index,label,elbo', '0,7,-1.5']
    """
    names = list(scores)
    header = ["index", *(["label"] if labels is not None else []), *names]
    if flags is not None:
        header.append("is_anomaly")
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    count = len(next(iter(scores.values()))) if scores else 0
    for i in range(count):
        row = [str(i)]
        if labels is not None:
            row.append(str(int(labels[i])))
        row.extend(repr(float(scores[name][i])) for name in names)
        if flags is not None:
            row.append("true" if flags[i] else "false")
        out.write(",".join(row) + "\n")
    return out.getvalue()


def score_run(
    run_dir: str | os.PathLike | rd.Run,
    out: str | os.PathLike,
    dataset: str | None = None,
    importance_samples: int | None = None,
    *,
    data_dir: str | None = None,
    seed: int | None = None,
    max_examples: int | None = None,
    require_calibration: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score a dataset's held-out split with a trained run and write one CSV row per example.

    Args:
        run_dir: a folder written by `keras-vae train`, its `Run` (`run_reader.load_run`), or
            a preset's (`keras_vae.presets.preset_run`; uncalibrated).
        out: the CSV to write (its folder must exist).
        dataset: score this dataset (any form `train --dataset` takes); None: the run's own.
        importance_samples: K; None: the calibration's K, or 100 for an uncalibrated run.
        data_dir: TFDS data_dir for `dataset`.
        seed: the score noise's seed; None: the calibration's, or 0.
        max_examples: only the first N examples.
        require_calibration: fail unless the run is calibrated for this K and seed (the
            ``is_anomaly`` column is then certain to be written).

    Returns:
        A summary: the output, the examples, K, the seed, each score's median and, when
        calibrated, the threshold and how many examples were flagged.

    Raises:
        ValueError: bad input (also `RunDirError`, `DataError`, `CalibrationError`); nothing
            is written then.
    """
    _check_common(importance_samples, 0 if seed is None else seed, max_examples)
    out = check_output_file(out, "such as scores.csv", rd.input_paths(run_dir, dataset))
    record = None  # a preset has no calibration, hence no is_anomaly column
    if not rd.is_preset(run_dir):  # a run folder, or its Run
        record = calibration.read_calibration(rd.check_run_dir(run_dir))
    if record is not None:
        importance_samples = importance_samples or record["importance_samples"]
        seed = record["seed"] if seed is None else seed
    importance_samples = importance_samples or DEFAULT_SCORE_SAMPLES
    seed = 0 if seed is None else seed
    calibrated = record is not None and (
        record["importance_samples"] == importance_samples and record["seed"] == seed
    )
    if require_calibration and not calibrated:
        if record is None:
            fix = "calibrate RUN_DIR --false-positive-rate 0.01` first"
            if rd.is_preset(run_dir):  # calibrate writes into a run folder; a preset has none
                fix = "train` a run and calibrate it, or drop --is-anomaly"
            raise calibration.CalibrationError(
                f"{run_dir} has no calibration, so it has no anomaly threshold; run `keras-vae "
                f"{fix}."
            )
        raise calibration.CalibrationError(
            f"{run_dir} was calibrated with --importance-samples "
            f"{record['importance_samples']} and --seed {record['seed']}; is_anomaly needs "
            "the same, so drop --importance-samples / --seed or calibrate again."
        )
    run = rd.load_run(run_dir)
    images, labels, described = _held_out(run, dataset, data_dir, max_examples)
    start = time.perf_counter()
    scores = _score_run_data(run, images, labels, importance_samples, seed, progress)
    flags = None
    summary: dict[str, Any] = {}
    if calibrated:
        record = cast("dict[str, Any]", record)  # calibrated: a record
        flags = calibration.is_anomaly(
            scores[record["score"]], record["threshold"], record["anomaly_if"]
        )
        summary = {
            "calibration": {k: record[k] for k in ("score", "threshold", "false_positive_rate")},
            "flagged": int(flags.sum()),
            "flagged_fraction": float(flags.mean()) if len(flags) else None,
        }
    write_output(out, csv_text(scores, labels, flags))
    return finite_or_null(
        {
            "out": str(out),
            "data": described,
            "importance_samples": importance_samples,
            "seed": seed,
            "medians": {k: float(np.median(v)) if len(v) else None for k, v in scores.items()},
            **summary,
            "seconds": time.perf_counter() - start,
        }
    )


def calibrate_run(
    run_dir: str | os.PathLike,
    false_positive_rate: float,
    score: str = "log_likelihood",
    dataset: str | None = None,
    importance_samples: int = DEFAULT_SCORE_SAMPLES,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    max_examples: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Pick the anomaly threshold of `score` that flags `false_positive_rate` of the run's
    held-out normal data (its test split, or `dataset`'s) and record it in
    ``RUN_DIR/calibration.json``.

    Returns:
        The record written (`keras_vae.calibration.calibration_record`).

    Raises:
        ValueError: bad input (also `RunDirError`, `DataError`, `CalibrationError`); nothing
            is written then.
    """
    rate = calibration.check_false_positive_rate(false_positive_rate)
    calibration.check_score_name(score)
    _check_common(importance_samples, seed, max_examples)
    folder = rd.check_run_dir(run_dir)
    calibration.check_calibration_writable(folder)
    run = rd.load_run(folder)
    images, labels, described = _held_out(run, dataset, data_dir, max_examples)
    calibration.check_rate_flags_one(rate, len(images))  # before minutes of scoring
    scores = _score_run_data(run, images, labels, importance_samples, seed, progress)
    record = calibration.calibration_record(
        scores[score], score, rate, importance_samples, seed, described
    )
    calibration.write_calibration(folder, record)
    return record
