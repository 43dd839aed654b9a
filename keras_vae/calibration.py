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
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_vae.atomic import json_text
from keras_vae.json_files import JSONFileError, read_json_file
from keras_vae.limits import FLOAT32_MAX, MAX_SEED
from keras_vae.run_files import check_run_file_owned, check_run_file_writable, write_run_file
from keras_vae.signatures import ANOMALY_IF, MAX_SCORE_SAMPLES, SCORE_NAMES

if TYPE_CHECKING:
    from keras_vae.ownership import Manifest

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1
# What every calibration.json holds (`calibration_record`); `check_record` checks each number.
_REQUIRED = (
    "format_version",
    "score",
    "anomaly_if",
    "threshold",
    "false_positive_rate",
    "examples",
    "flagged",
    "importance_samples",
    "seed",
)
# A calibration record is a few hundred characters; a larger file is not one.
MAX_FILE_BYTES = 1_000_000


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
            f"and 1 (e.g. 0.01 flags 1% of normal data). Received: false_positive_rate={value!r}"
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
        fix = "use more held-out data (at least 2 examples)"
        if examples >= 2:
            fix = f"use a rate of at least {smallest_rate(examples)} or more held-out data"
        raise CalibrationError(
            f"A false positive rate of {false_positive_rate} flags fewer than one of the "
            f"{examples} calibration examples; {fix}."
        )
    return flagged


def smallest_rate(examples: int) -> float:
    """The smallest rate of 3 significant digits that flags one of `examples` (>= 2).

    Example:
        >>> smallest_rate(3), smallest_rate(1000)
        (0.334, 0.001)
    """
    rate = float(f"{1 / examples:.3g}")
    step = 10.0 ** (math.floor(math.log10(rate)) - 2)
    while math.floor(rate * examples) < 1:
        rate = float(f"{rate + step:.3g}")
    return rate


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


def check_count(name: str, value: Any, minimum: int, maximum: int) -> int:
    """`value` once it is an integer (not a bool, not a float) in [minimum, maximum]: the rule
    of the command line's ``--importance-samples`` and ``--seed``, applied to calibration.json
    too.

    Example:
        >>> check_count("seed", 3, 0, MAX_SEED)
        3
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or not minimum <= value <= maximum:
        raise CalibrationError(
            f"Received an invalid value for `{name}`, expected an integer in [{minimum}, "
            f"{maximum}]. Received: {name}={value!r}"
        )
    return int(value)


def check_threshold(value: Any) -> float:
    """`value` once it is a number (not a bool, not a string) finite in float32, the precision
    the exported scorer compares in.

    Example:
        >>> check_threshold(-120)
        -120.0
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    # An int is compared before float(): float() of a 400-digit integer raises OverflowError.
    ok = ok and (isinstance(value, int) or math.isfinite(value)) and abs(value) <= FLOAT32_MAX
    if not ok:
        raise CalibrationError(
            "Received an invalid value for `threshold`, expected a finite number within "
            f"+-{FLOAT32_MAX:.7g}. Received: threshold={value!r}"
        )
    return float(value)


def check_record(record: Any) -> dict[str, Any]:
    """`record` (a parsed calibration.json) once every field obeys the rules `calibrate` wrote
    it under: the format version, a score name and its direction, a finite threshold, a rate
    in (0, 1), K and the seed in the command line's ranges; numbers must be JSON numbers.

    Raises:
        CalibrationError: the first field that does not, named with what was received.

    Example:
        >>> record = calibration_record(np.arange(10.0), "kl", 0.2, 100, 0, {})
        >>> check_record(record)["seed"]
        0
    """
    if not isinstance(record, dict):
        raise CalibrationError(f"expected a JSON object. Received: {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise CalibrationError(f"missing the fields {missing}")
    version = record["format_version"]
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise CalibrationError(
            f"Unknown calibration format_version, expected {FORMAT_VERSION}. "
            f"Received: format_version={version!r}"
        )
    score_name = check_score_name(record["score"])
    if record["anomaly_if"] != ANOMALY_IF[score_name]:
        raise CalibrationError(
            f"`anomaly_if` must be {ANOMALY_IF[score_name]!r} for {score_name}. "
            f"Received: anomaly_if={record['anomaly_if']!r}"
        )
    rate = record["false_positive_rate"]
    if not isinstance(rate, (int, float)):  # check_false_positive_rate parses CLI text
        raise CalibrationError(f"`false_positive_rate` must be a number. Received: {rate!r}")
    examples = check_count("examples", record["examples"], 1, 2**63 - 1)
    return {
        **record,
        "score": score_name,
        "threshold": check_threshold(record["threshold"]),
        "false_positive_rate": check_false_positive_rate(rate),
        "importance_samples": check_count(
            "importance_samples", record["importance_samples"], 1, MAX_SCORE_SAMPLES
        ),
        "seed": check_count("seed", record["seed"], 0, MAX_SEED),
        "examples": examples,
        "flagged": check_count("flagged", record["flagged"], 0, examples),
    }


CALIBRATE = "keras-vae calibrate"


_REWRITE = "run `keras-vae calibrate` again to rewrite it"


def read_calibration(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's calibration record, checked (`check_owned`, `check_record`), or None when it
    has not been calibrated.

    Raises:
        CalibrationError: ``calibration.json`` is not this run's, or is unreadable or invalid.

    Example:
        >>> read_calibration("/nonexistent") is None
        True
    """
    path = Path(run_dir) / CALIBRATION_FILE
    if not os.path.lexists(path):
        return None

    check_run_file_owned(run_dir, CALIBRATION_FILE, CALIBRATE, error=CalibrationError)
    try:
        values = read_json_file(path, _REWRITE, MAX_FILE_BYTES)
    except JSONFileError as error:
        raise CalibrationError(str(error)) from None
    try:
        record = check_record(values)
    except ValueError as error:
        raise CalibrationError(f"{path} is invalid ({error}); {_REWRITE}.") from None
    return record


def check_calibration_writable(run_dir: str | os.PathLike) -> Manifest | None:
    """The run's manifest once ``RUN_DIR/calibration.json`` may be (re)written
    (`keras_vae.run_files.check_run_file_writable`); checked before any scoring.

    Raises:
        CalibrationError: it may not; `FolderNotOursError`: the manifest is unreadable.
    """
    return check_run_file_writable(run_dir, CALIBRATION_FILE, CALIBRATE, CalibrationError)


def write_calibration(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/calibration.json`` atomically, listed in the run's manifest first
    (`keras_vae.run_files.write_run_file`), so ``train --overwrite`` removes it with the run
    it belongs to."""
    return write_run_file(run_dir, CALIBRATION_FILE, json_text(record), CALIBRATE, CalibrationError)
