"""The anomaly scorer SavedModel, ``DIR/scorer/<version>/``, served beside encoder and decoder.

``serving_default``: ``x`` float32 [batch, *data_shape] (and ``label`` int32 [batch] in [0, K)
for a conditional model) -> ``elbo``, ``log_likelihood``, ``reconstruction``, ``kl`` float32
[batch] in nats (`keras_vae.scores`), plus ``is_anomaly`` bool [batch] when the run was
calibrated (``RUN_DIR/calibration.json``): ``score < threshold`` for a score whose anomalies
lie "below" (``score > threshold`` for "above"), or a NaN score (`anomaly_flags`). The K
importance samples are fixed at export (``keras-vae export --score-samples``): the noise
`keras_vae.scores.score_noise` (latent_dim, K, seed) is a constant of the graph, and
every row is scored with the same K rows, so a row's scores depend on that row alone and equal
`VAE.score(x, num_samples=K, seed=seed)`. The rows are scored in chunks of bounded memory
(`keras_vae.scores.bounded_score_graph`), the prior's mixture parameters baked in
(`keras_vae.latent_draws.baked_prior`).

The checks against `VAE.score` are in `keras_vae.export.scorer_checks`. Every input is
checked before anything is computed (TF Serving feeds tensors without comparing
them with the signature): ``x`` of another shape (`tf.ensure_shape`), more than
max_samples_per_request rows, any non-finite value in ``x``, or a label out of range or of
another row count fail with InvalidArgumentError; a scorer never answers a NaN input with a
confident number. One request's time is bounded: max_samples_per_request x K is at most
`keras_vae.signatures.MAX_SCORE_ROW_SAMPLES` (refused at export otherwise), and an empty batch
gets empty outputs.

    >>> write_scorer(vae, "export/scorer/1", score_samples=100)         # doctest: +SKIP
    >>> scorer = tf.saved_model.load("export/scorer/1").signatures["serving_default"]
    ...                                                                 # doctest: +SKIP
    >>> scorer(x=tf.zeros([2, 784]))["log_likelihood"].shape            # doctest: +SKIP
    TensorShape([2])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import CHECK_BATCH
from keras_vae.export.graph_ops import (
    add_endpoint,
    checked_label,
    row_cap,
    score_outputs,
    track_model,
)
from keras_vae.latent_draws import baked_prior
from keras_vae.scores import (
    ANOMALY_IF,
    DEFAULT_SCORE_SEED,
    SCORE_NAMES,
    check_score_samples,
    score_noise,
)
from keras_vae.signatures import (
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    MAX_SCORE_ROW_SAMPLES,
    SERVING_DEFAULT,
    check_max_samples,
    check_score_budget,
)


def check_calibration(calibration: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The calibration record's ``score``, ``threshold`` and ``anomaly_if`` once they make an
    ``is_anomaly`` (a score name, a finite threshold, its score's direction); None for None.

    Example:
        >>> check_calibration({"score": "kl", "threshold": 2.0, "anomaly_if": "above"})
        {'score': 'kl', 'threshold': 2.0, 'anomaly_if': 'above'}
    """
    if calibration is None:
        return None
    try:
        name = calibration["score"]
        threshold = float(calibration["threshold"])
        ok = name in SCORE_NAMES and np.isfinite(threshold)
        ok = ok and calibration["anomaly_if"] == ANOMALY_IF[name]
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "Received an invalid calibration record, expected 'score' one of "
            f"{list(SCORE_NAMES)}, a finite 'threshold' and that score's 'anomaly_if' "
            f"({ANOMALY_IF}). Received: calibration={dict(calibration)!r}"
        )
    return {"score": name, "threshold": threshold, "anomaly_if": calibration["anomaly_if"]}


@dataclasses.dataclass(frozen=True)
class ScorerSettings:
    """What a scorer is exported with, checked on creation (ValueError naming the value).

    Args:
        score_samples: K importance samples per example, in [1, 100000].
        max_samples: the most rows one request may score. Default 10,000. `max_samples` x
            `score_samples` may be at most `MAX_SCORE_ROW_SAMPLES` (10,000,000), which bounds
            one request's time (`check_score_budget`).
        calibration: the run's calibration record (`keras_vae.calibration.read_calibration`)
            for an ``is_anomaly`` output, or None (default: no such output).
        seed: the seed of the baked noise. Default 0.

    Example:
        >>> ScorerSettings(100, max_samples=8).max_samples
        8
    """

    score_samples: int
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
    calibration: Mapping[str, Any] | None = None
    seed: int = DEFAULT_SCORE_SEED

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_samples", check_score_samples(self.score_samples))
        object.__setattr__(self, "max_samples", check_max_samples(self.max_samples))
        check_score_budget(self.score_samples, self.max_samples)
        object.__setattr__(self, "calibration", check_calibration(self.calibration))


def scorer_archive(model: keras.Model, settings: ScorerSettings) -> keras.export.ExportArchive:
    """An `ExportArchive` with the scorer's ``serving_default`` (see the module docstring)."""
    max_samples, calibration = settings.max_samples, settings.calibration
    latent_dim, samples = int(model.latent_dim), settings.score_samples
    noise = np.asarray(score_noise(latent_dim, samples, settings.seed), np.float32)
    prior = baked_prior(model)
    x_shape = [None, *model.data_shape]

    def serving_default(x: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        with tf.control_dependencies([row_cap(tf.shape(x)[0], max_samples, "x")]):
            x = tf.debugging.assert_all_finite(
                x, "x must be finite: it holds NaN or infinity, which have no score"
            )
        if label is not None:
            label = checked_label(label, int(model.num_classes), tf.shape(x)[0], "x")
        return score_outputs(model, x, noise, label, prior, calibration, bounded=True)

    archive = keras.export.ExportArchive()
    track_model(archive, model)
    x_spec = tf.TensorSpec(x_shape, tf.float32, name="x")
    add_endpoint(
        archive, SERVING_DEFAULT, serving_default, [x_spec], 1 if model.conditional else None
    )
    return archive


def write_scorer(
    model: keras.Model,
    path: str | Path,
    score_samples: int,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    calibration: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SCORE_SEED,
) -> None:
    """Write the scorer SavedModel to `path` (a folder that must not exist yet), with the
    `ScorerSettings` (`score_samples`, `max_samples`, `calibration`, `seed`: see there).

    Example:
        >>> write_scorer(vae, "export/scorer/1", score_samples=100)      # doctest: +SKIP
    """
    settings = ScorerSettings(score_samples, max_samples, calibration, seed)
    scorer_archive(model, settings).write_out(str(path), verbose=False)


def scorer_record(
    score_samples: int, seed: int, calibration: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What export.json records about the scorer beside its path and signatures."""
    from keras_vae.signatures import (
        CALIBRATION_KEY,
        SCORE_BUDGET_KEY,
        SCORE_SAMPLES_KEY,
        SCORE_SEED_KEY,
    )

    return {
        SCORE_SAMPLES_KEY: int(score_samples),
        # rows x K of one request is at most this (`check_score_budget`, checked at export)
        SCORE_BUDGET_KEY: MAX_SCORE_ROW_SAMPLES,
        SCORE_SEED_KEY: int(seed),
        CALIBRATION_KEY: None if calibration is None else dict(calibration),
        "scores": list(SCORE_NAMES),
        "checked_on": f"{CHECK_BATCH} examples uniform in [0, 1] against VAE.score",
    }
