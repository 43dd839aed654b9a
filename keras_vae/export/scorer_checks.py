"""The checks of the anomaly scorer SavedModel (`keras_vae.export.scorer`) against `VAE.score`,
run on the written folder before an export is committed.

    >>> check_scorer(vae, "export/scorer/1", score_samples=100)["elbo"] <= 1e-3  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    ExportError,
    check_close,
    check_labels,
    check_refuses_bad_labels,
    refuses,
    scaled_tolerance,
)
from keras_vae.export.scorer import ScorerSettings, check_calibration
from keras_vae.scores import DEFAULT_SCORE_SEED, SCORE_NAMES, score_graph, score_noise
from keras_vae.signatures import IS_ANOMALY, LABEL, SERVING_DEFAULT


def expected_scores(
    model: keras.Model,
    x: np.ndarray,
    noise: np.ndarray | int,
    labels: np.ndarray | None = None,
    calibration: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SCORE_SEED,
) -> dict[str, np.ndarray]:
    """What a scorer must return for `x` (and `labels`), from the Keras model: `VAE.score`
    with K = `noise` samples when `noise` is an int, else `keras_vae.scores.score_graph` on
    the given noise rows [K, latent_dim]; ``is_anomaly`` by `keras_vae.calibration.is_anomaly`
    of those scores."""
    from keras_vae.calibration import is_anomaly

    if isinstance(noise, (int, np.integer)):
        scores = model.score(x, num_samples=int(noise), seed=seed, labels=labels)
    else:
        given = None if labels is None else tf.constant(labels, tf.int32)
        scores = score_graph(model, tf.constant(x), tf.constant(noise, tf.float32), given)
    out = {name: np.asarray(value, np.float32) for name, value in zip(SCORE_NAMES, scores)}
    if calibration is not None:
        calibration = cast(dict[str, Any], check_calibration(calibration))  # a record: not None
        out[IS_ANOMALY] = is_anomaly(
            out[calibration["score"]], calibration["threshold"], calibration["anomaly_if"]
        )
    return out


def check_scorer(
    model: keras.Model, path: str | Path, settings: ScorerSettings
) -> dict[str, float]:
    """Reload the scorer SavedModel written with `settings` and compare it with `VAE.score`.

    On `CHECK_BATCH` random examples in [0, 1] (labels spread over [0, K)): each score to
    `FLOAT32_TOLERANCE` relative to its size (`scaled_tolerance`), row 0 alone as in the
    batch, and ``is_anomaly`` (when calibrated) exactly the calibration's rule on the served
    scores. x with a NaN or an infinity, x of another trailing shape, `max_samples` + 1 rows
    and (conditional) every `bad_labels` value and a label batch of another size must be
    refused with InvalidArgumentError.

    Returns:
        The max absolute error of each score; `ExportError` if one is off.
    """
    calibration, max_samples, seed = settings.calibration, settings.max_samples, settings.seed
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(size=(CHECK_BATCH, *model.data_shape)).astype(np.float32)
    labels = check_labels(int(model.num_classes), CHECK_BATCH) if model.conditional else None
    feed = {"x": x} if labels is None else {"x": x, LABEL: labels}
    signature = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT]

    def run(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        return {name: value.numpy() for name, value in signature(**tensors).items()}

    got = run(**feed)
    # The Keras model's scores on the same draws in one eager pass (`score_graph`, equal to
    # `VAE.score`'s chunked loop to rounding; tracing that loop would double the check's time).
    noise = np.asarray(score_noise(int(model.latent_dim), settings.score_samples, seed), np.float32)
    expected = expected_scores(model, x, noise, labels, None, seed)
    wanted = sorted([*SCORE_NAMES, *([IS_ANOMALY] if calibration else [])])
    if sorted(got) != wanted:
        raise ExportError(
            f"The exported scorer outputs {sorted(got)}, expected {wanted}; nothing was written."
        )
    errors = {}
    for name in SCORE_NAMES:
        tolerance = scaled_tolerance(expected[name])
        errors[name] = check_close(f"scorer {name}", expected[name], got[name], tolerance)
    alone = run(**{name: value[:1] for name, value in feed.items()})
    for name in SCORE_NAMES:
        check_close(
            f"scorer {name} (row 0 alone)", got[name][:1], alone[name], scaled_tolerance(got[name])
        )
    if calibration is not None:
        from keras_vae.calibration import is_anomaly

        rule = is_anomaly(
            got[calibration["score"]], calibration["threshold"], calibration["anomaly_if"]
        )
        if got[IS_ANOMALY].dtype != bool or not np.array_equal(got[IS_ANOMALY], rule):
            raise ExportError(
                f"The exported scorer's {IS_ANOMALY} is {got[IS_ANOMALY].tolist()}, but the "
                f"calibration ({calibration}) flags {rule.tolist()}; nothing was written."
            )
    _check_refusals(model, signature, feed, max_samples)
    return errors


def _check_refusals(
    model: keras.Model,
    signature: Callable[..., dict[str, tf.Tensor]],
    feed: dict[str, np.ndarray],
    max_samples: int,
) -> None:
    x = feed["x"]
    cases = {}
    for bad in (np.nan, np.inf, -np.inf):
        wrong = x.copy()
        wrong.reshape(-1)[-1] = bad
        cases[f"x holding {bad}"] = {**feed, "x": wrong}
    cases["x of another shape"] = {**feed, "x": np.concatenate([x, x[..., :1]], axis=-1)}
    if max_samples < 2**31 - 1:
        rows = max_samples + 1
        too_many = {"x": np.zeros((rows, *model.data_shape), np.float32)}
        if model.conditional:
            too_many[LABEL] = np.zeros(rows, np.int32)
        cases[f"{rows} rows (above the cap of {max_samples})"] = too_many
    for case, wrong_feed in cases.items():
        if not refuses(signature, **wrong_feed):
            raise ExportError(
                f"The exported scorer ran on {case} instead of refusing it with "
                "InvalidArgumentError; nothing was written."
            )
    if model.conditional:
        check_refuses_bad_labels(
            int(model.num_classes), "scorer", {SERVING_DEFAULT: signature}, {SERVING_DEFAULT: feed}
        )
