"""Names and limits the exported models and the serving client share (imports no TensorFlow).

The exporter (`keras_vae.export`) writes SavedModels with these signature names and records
the limits in ``export.json``; the client (`keras_vae.serving`) addresses the same names and
checks the same limits before it sends anything, so the two can never disagree.

    >>> DEFAULT_MAX_SAMPLES_PER_REQUEST
    10000
    >>> check_max_samples(500)
    500
"""

from __future__ import annotations

from typing import Any

SERVING_DEFAULT = "serving_default"
SAMPLE = "sample"
# The encoder's (x, noise) -> z, log_q, z_mean, z_stddev signature: one posterior draw per example.
POSTERIOR_SAMPLE = "posterior_sample"
# The decoder `sample` output of a mixture or vamp prior: each draw's mixture component.
COMPONENT = "component"
# The decoder's batchable generation signature: ``seed`` int64 [batch] (and a conditional
# model's ``label``) -> ``x_mean``, ``z`` (and ``component``), row i from seed i alone.
GENERATE = "generate"
ENCODER, DECODER = "encoder", "decoder"
# The anomaly scorer SavedModel (``DIR/scorer/<version>``): x -> per-example scores.
SCORER = "scorer"
# The scorer's bool [batch] output once the run is calibrated (RUN_DIR/calibration.json).
IS_ANOMALY = "is_anomaly"
# export.json keys of the scorer record: importance samples K, the noise seed, calibration.
SCORE_SAMPLES_KEY, SCORE_SEED_KEY, CALIBRATION_KEY = "score_samples", "score_seed", "calibration"
# The scorer's float32 [batch] outputs, in this order (`keras_vae.scores.Scores`'s fields), and
# its importance samples K: the default and the most `keras-vae score`, `calibrate` and
# `export --score-samples` accept.
SCORE_NAMES = ("elbo", "log_likelihood", "reconstruction", "kl")
# For each score, the side of a threshold where anomalies lie (low likelihoods, a high KL).
ANOMALY_IF = {"elbo": "below", "log_likelihood": "below", "reconstruction": "below", "kl": "above"}
DEFAULT_SCORE_SAMPLES = 100
MAX_SCORE_SAMPLES = 100_000
# export.json key, per model, of the number of TF Serving warm-up records it carries.
WARMUP_RECORDS_KEY = "warmup_records"
EXPORT_JSON = "export.json"
# export.json key of the per-request cap on generated rows (the decoder's `sample` signature).
MAX_SAMPLES_KEY = "max_samples_per_request"
SAMPLER_KEY = "sampler"  # export.json: what the decoder's sample and generate draw z from
DEFAULT_MAX_SAMPLES_PER_REQUEST = 10_000
# The cap must fit the int32 `num_samples` input of the `sample` signature.
MAX_SAMPLES_LIMIT = 2**31 - 1
# The most rows x importance samples one scorer request may cost (a scorer's time is linear in
# both): 10,000 rows at K = 1,000, or 100 rows at K = 100,000. `export` refuses a K and a
# max_samples_per_request whose product exceeds it; export.json records it under this key.
MAX_SCORE_ROW_SAMPLES = 10_000_000
SCORE_BUDGET_KEY = "max_rows_x_score_samples"
# TF Serving model versions are int64.
MAX_VERSION = 2**63 - 1
# A conditional model's class-label input, int32 [batch] with values in [0, num_classes), in
# every signature (SavedModel and LiteRT) of a conditional export.
LABEL = "label"
# The conditional decoder `sample`'s per-row seeds: int64 [batch], any int64 value.
SEEDS = "seed"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# export.json keys under "model" of a conditional export (absent for an unconditional one).
NUM_CLASSES_KEY = "num_classes"
LABEL_INPUT_KEY = "label_input"


def label_range(num_classes: int) -> str:
    """What a conditional model's labels must be, as the exports' and the client's errors say.

    Example:
        >>> label_range(10)
        'labels must be class indices in [0, 10) (this model has num_classes=10)'
    """
    return (
        f"labels must be class indices in [0, {num_classes}) "
        f"(this model has num_classes={num_classes})"
    )


def check_max_samples(value: Any) -> int:
    """`value` as an int after checking it is an integer in [1, 2**31 - 1].

    Example:
        >>> try:
        ...     check_max_samples(0)
        ... except ValueError as error:
        ...     print(str(error)[:58])
        Received an invalid value for `max_samples_per_request`, e
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or not 1 <= value <= MAX_SAMPLES_LIMIT:
        raise ValueError(
            "Received an invalid value for `max_samples_per_request`, expected an integer in "
            f"[1, {MAX_SAMPLES_LIMIT}] (rows one `sample` request may generate). "
            f"Received: max_samples_per_request={value!r}"
        )
    return value


def check_score_budget(score_samples: int, max_samples: int) -> None:
    """Refuse a scorer whose largest request, `max_samples` rows x `score_samples` importance
    samples, costs more than `MAX_SCORE_ROW_SAMPLES` (a `ValueError` naming both fixes).

    Example:
        >>> check_score_budget(1000, 10_000)
        >>> try:
        ...     check_score_budget(100_000, 10_000)
        ... except ValueError as error:
        ...     print(str(error)[:66])
        A scorer request of 10000 rows x 100000 score samples = 1000000000
    """
    cost = int(score_samples) * int(max_samples)
    if cost > MAX_SCORE_ROW_SAMPLES:
        raise ValueError(
            f"A scorer request of {max_samples} rows x {score_samples} score samples = {cost} "
            f"row-samples, more than the {MAX_SCORE_ROW_SAMPLES} one request may cost (its "
            "time grows with both). Export with --max-samples-per-request "
            f"{max(1, MAX_SCORE_ROW_SAMPLES // int(score_samples))} or fewer, or with "
            f"--score-samples {max(1, MAX_SCORE_ROW_SAMPLES // int(max_samples))} or fewer. "
            f"Received: score_samples={score_samples}, max_samples_per_request={max_samples}"
        )
