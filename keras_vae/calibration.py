"""An anomaly threshold for a trained run, picked on held-out normal data at a chosen false
positive rate, and the record of it in ``RUN_DIR/calibration.json``.

For a score s (`keras_vae.scores.SCORE_NAMES`) whose anomalies lie "below" (elbo,
log_likelihood, reconstruction) the threshold t is the value with floor(a n) of the n normal
scores strictly below it, so ``is_anomaly = not (s >= t)`` flags a fraction a of data like the
calibration data (a NaN score is always an anomaly); for kl ("above") mirrored. `keras-vae
calibrate` writes the record; `keras-vae score` and the exported scorer (``is_anomaly``) use it.

>>> import numpy as np
>>> threshold = pick_threshold(np.arange(100.0), 0.05, "below")
>>> threshold, int(is_anomaly(np.arange(100.0), threshold, "below").sum())
(5.0, 5)
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.atomic import write_json_atomically
from keras_vae.signatures import ANOMALY_IF, SCORE_NAMES

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1


class CalibrationError(ValueError):
    """A calibration that cannot be made or used; the message says why and what to do."""


def check_false_positive_rate(value: Any) -> float:
    """`value` as a float once it lies strictly between 0 and 1.

    Example:
        >>> check_false_positive_rate(0.01)
        0.01
    """
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(value, bool) or not 0.0 < rate < 1.0:
        raise CalibrationError(
            "Received an invalid false positive rate, expected a number strictly between 0 "
            f"and 1 (e.g. 0.01 flags 1% of normal data). Received: {value!r}"
        )
    return rate


def check_score_name(name: Any) -> str:
    """`name` once it is one of `SCORE_NAMES`.

    Example:
        >>> check_score_name("kl")
        'kl'
    """
    if name not in SCORE_NAMES:
        raise CalibrationError(
            f"Unknown score {name!r}. Expected one of {list(SCORE_NAMES)}. Received: {name!r}"
        )
    return name


def check_rate_flags_one(false_positive_rate: float, examples: int) -> int:
    """floor(rate * examples), the calibration examples a threshold flags, once it is >= 1.

    Example:
        >>> check_rate_flags_one(0.01, 1000)
        10
    """
    flagged = math.floor(false_positive_rate * examples)
    if flagged < 1:
        raise CalibrationError(
            f"A false positive rate of {false_positive_rate} flags fewer than one of the "
            f"{examples} calibration examples; use a rate of at least {1 / max(examples, 1):.3g} "
            "or more held-out data."
        )
    return flagged


def pick_threshold(scores: np.ndarray, false_positive_rate: float, anomaly_if: str) -> float:
    """The threshold that flags floor(rate * n) of the n `scores` of normal data.

    Raises:
        CalibrationError: a score is not finite, or the rate flags fewer than one example.

    Example:
        >>> pick_threshold(np.array([3.0, 1.0, 2.0, 4.0]), 0.25, "above")
        3.0
    """
    values = np.asarray(scores, np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise CalibrationError(
            f"The calibration data gave {int(np.sum(~np.isfinite(values)))} non-finite scores "
            f"of {values.size}: a threshold needs finite scores of normal data; check the data."
        )
    flagged = check_rate_flags_one(false_positive_rate, values.size)
    ordered = np.sort(values) if anomaly_if == "below" else -np.sort(-values)
    return float(ordered[flagged])


def is_anomaly(scores: np.ndarray, threshold: float, anomaly_if: str) -> np.ndarray:
    """bool [n]: scores past the threshold (below it, or above for "above"); NaN is True.

    Example:
        >>> is_anomaly(np.array([1.0, np.nan, 3.0]), 2.0, "below").tolist()
        [True, True, False]
    """
    values = np.asarray(scores, np.float64)
    if anomaly_if == "below":
        return ~(values >= threshold)
    return ~(values <= threshold)


def calibration_record(
    scores: np.ndarray,
    score_name: str,
    false_positive_rate: float,
    importance_samples: int,
    seed: int,
    data: dict[str, Any],
) -> dict[str, Any]:
    """What ``calibration.json`` holds: the threshold and everything it depends on.

    Example:
        >>> record = calibration_record(np.arange(10.0), "elbo", 0.2, 100, 0, {"dataset": "x"})
        >>> record["threshold"], record["flagged"], record["anomaly_if"]
        (2.0, 2, 'below')
    """
    score_name = check_score_name(score_name)
    rate = check_false_positive_rate(false_positive_rate)
    anomaly_if = ANOMALY_IF[score_name]
    threshold = pick_threshold(scores, rate, anomaly_if)
    flagged = int(is_anomaly(scores, threshold, anomaly_if).sum())
    return {
        "format_version": FORMAT_VERSION,
        "score": score_name,
        "anomaly_if": anomaly_if,
        "threshold": threshold,
        "false_positive_rate": rate,
        "examples": int(np.size(scores)),
        "flagged": flagged,
        "importance_samples": int(importance_samples),
        "seed": int(seed),
        "data": data,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_calibration(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's calibration record, or None when it has not been calibrated.

    Raises:
        CalibrationError: ``calibration.json`` exists but is unreadable or incomplete.

    Example:
        >>> read_calibration("/nonexistent") is None
        True
    """
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        score_name = check_score_name(record["score"])
        record["threshold"] = float(record["threshold"])
        if record.get("anomaly_if") != ANOMALY_IF[score_name]:
            raise ValueError(f"anomaly_if must be {ANOMALY_IF[score_name]!r} for {score_name}")
        record["importance_samples"] = int(record["importance_samples"])
        record["seed"] = int(record["seed"])
        check_false_positive_rate(record["false_positive_rate"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CalibrationError(
            f"{path} is unreadable ({type(error).__name__}: {error}); run `keras-vae "
            "calibrate` again to rewrite it."
        ) from None
    return record


def check_calibration_writable(run_dir: str | os.PathLike) -> None:
    """Raise `CalibrationError` unless ``RUN_DIR/calibration.json`` may be (re)written: the
    folder is writable and an existing file is one keras-vae wrote (listed in the run's
    manifest); checked before any scoring."""
    from keras_vae.ownership import Manifest

    folder = Path(run_dir)
    path = folder / CALIBRATION_FILE
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CalibrationError(
            f"Cannot write {path} (permission denied); fix the permissions of {folder}."
        )
    manifest = Manifest.read(folder, "run")
    if path.exists() and manifest is not None and not manifest.owns(CALIBRATION_FILE):
        raise CalibrationError(
            f"{path} exists and keras-vae did not write it; move it away to calibrate this run."
        )


def write_calibration(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/calibration.json`` atomically, listed in the run's manifest first (so
    ``train --overwrite`` removes it with the run it belongs to)."""
    from keras_vae.ownership import Manifest

    folder = Path(run_dir)
    check_calibration_writable(folder)
    manifest = Manifest.read(folder, "run")
    if manifest is not None:
        manifest.claim(CALIBRATION_FILE)
    path = folder / CALIBRATION_FILE
    write_json_atomically(path, record)
    return path
