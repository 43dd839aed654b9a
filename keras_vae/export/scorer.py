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
(`keras_vae.export.saved_model.baked_prior`).

Every input is checked before anything is computed (TF Serving feeds tensors without comparing
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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    ExportError,
    check_close,
    check_labels,
)
from keras_vae.export.saved_model import (
    _check_refuses_bad_labels,
    _refuses,
    baked_prior,
    checked_label,
    scaled_tolerance,
)
from keras_vae.parts.priors import MixtureParams
from keras_vae.scores import (
    ANOMALY_IF,
    DEFAULT_SCORE_SEED,
    SCORE_NAMES,
    bounded_score_graph,
    check_score_samples,
    score_graph,
    score_noise,
)
from keras_vae.signatures import (
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    IS_ANOMALY,
    LABEL,
    MAX_SCORE_ROW_SAMPLES,
    SERVING_DEFAULT,
    check_max_samples,
    check_score_budget,
)


# ---------------------------------------------------------------------- the graph
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


def anomaly_flags(score: tf.Tensor, calibration: Mapping[str, Any]) -> tf.Tensor:
    """bool [batch]: `score` past the calibrated threshold or NaN, as
    `keras_vae.calibration.is_anomaly` (builtin TFLite ops: LESS / GREATER, NOT_EQUAL,
    LOGICAL_OR).

    The NaN test is explicit: TensorFlow's graph optimizer (and the TFLite converter) rewrite
    ``logical_not(score >= threshold)`` into ``score < threshold``, which is False for NaN.
    """
    threshold = tf.constant(calibration["threshold"], score.dtype)
    past = score < threshold if calibration["anomaly_if"] == "below" else score > threshold
    return tf.logical_or(past, tf.math.is_nan(score))


def score_outputs(
    model: keras.Model,
    x: tf.Tensor,
    noise: tf.Tensor,
    labels: tf.Tensor | None,
    prior: MixtureParams | None,
    calibration: Mapping[str, Any] | None,
    bounded: bool = False,
) -> dict[str, tf.Tensor]:
    """The scorer's outputs for checked inputs: the four scores float32 [batch] (and
    ``is_anomaly``); `bounded`: in row chunks of bounded memory (SavedModel), else all rows
    and samples at once, no loop (LiteRT)."""
    if prior is not None:
        prior = MixtureParams(*(tf.constant(a, tf.float32) for a in prior))
    if bounded:
        scores = bounded_score_graph(model, x, noise, labels, prior=prior)
    else:
        scores = score_graph(model, x, noise, labels, sample_chunk=None, prior=prior)
    out = {name: tf.cast(value, tf.float32) for name, value in zip(SCORE_NAMES, scores)}
    if calibration is not None:
        out[IS_ANOMALY] = anomaly_flags(out[calibration["score"]], calibration)
    return out


def track_model(archive: keras.export.ExportArchive, model: keras.Model) -> None:
    """Track every part a score reads: encoder, decoder, the flow and the prior's weights."""
    archive.track(model.encoder)
    archive.track(model.decoder)
    for part in (model.posterior_layer, model.prior_layer):
        if part.weights:
            archive.track(part)


def scorer_archive(
    model: keras.Model,
    score_samples: int,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    calibration: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SCORE_SEED,
) -> keras.export.ExportArchive:
    """An `ExportArchive` with the scorer's ``serving_default`` (see the module docstring)."""
    max_samples = check_max_samples(max_samples)
    check_score_budget(score_samples, max_samples)
    calibration = check_calibration(calibration)
    noise = np.asarray(score_noise(int(model.latent_dim), score_samples, seed), np.float32)
    prior = baked_prior(model)
    x_shape = [None, *model.data_shape]

    def checked_x(x: tf.Tensor) -> tf.Tensor:
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        cap = tf.debugging.assert_less_equal(
            tf.shape(x)[0],
            tf.constant(max_samples, tf.int32),
            message=f"x must have <= {max_samples} rows, this model's max_samples_per_request "
            "(set by keras-vae export --max-samples-per-request); send several requests",
            name="check_max_samples_per_request",
        )
        with tf.control_dependencies([cap]):
            return tf.debugging.assert_all_finite(
                x, "x must be finite: it holds NaN or infinity, which have no score"
            )

    def serving_default(x):
        return score_outputs(model, checked_x(x), noise, None, prior, calibration, True)

    def conditional_serving_default(x, label):
        x = checked_x(x)
        label = checked_label(label, int(model.num_classes), tf.shape(x)[0], "x")
        return score_outputs(model, x, noise, label, prior, calibration, True)

    archive = keras.export.ExportArchive()
    track_model(archive, model)
    x_spec = tf.TensorSpec(x_shape, tf.float32, name="x")
    if model.conditional:
        label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)
        archive.add_endpoint(SERVING_DEFAULT, conditional_serving_default, [x_spec, label_spec])
    else:
        archive.add_endpoint(SERVING_DEFAULT, serving_default, [x_spec])
    return archive


def write_scorer(
    model: keras.Model,
    path: str | Path,
    score_samples: int,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    calibration: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SCORE_SEED,
) -> None:
    """Write the scorer SavedModel to `path` (a folder that must not exist yet).

    Args:
        model: the trained `VAE`.
        path: the version folder, e.g. ``export/scorer/1``.
        score_samples: K importance samples per example, in [1, 100000].
        max_samples: the most rows one request may score. Default 10,000. `max_samples` x
            `score_samples` may be at most `MAX_SCORE_ROW_SAMPLES` (10,000,000), which bounds
            one request's time (`check_score_budget`; ValueError otherwise).
        calibration: the run's calibration record (`keras_vae.calibration.read_calibration`)
            for an ``is_anomaly`` output, or None (default: no such output).
        seed: the seed of the baked noise. Default 0.
    """
    score_samples = check_score_samples(score_samples)
    archive = scorer_archive(model, score_samples, max_samples, calibration, seed)
    archive.write_out(str(path), verbose=False)


# ---------------------------------------------------------------------- the checks
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
        calibration = check_calibration(calibration)
        out[IS_ANOMALY] = is_anomaly(
            out[calibration["score"]], calibration["threshold"], calibration["anomaly_if"]
        )
    return out


def check_scorer(
    model: keras.Model,
    path: str | Path,
    score_samples: int,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    calibration: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_SCORE_SEED,
) -> dict[str, float]:
    """Reload the scorer SavedModel and compare it with `VAE.score`.

    On `CHECK_BATCH` random examples in [0, 1] (labels spread over [0, K)): each score to
    `FLOAT32_TOLERANCE` relative to its size (`scaled_tolerance`), row 0 alone as in the
    batch, and ``is_anomaly`` (when calibrated) exactly the calibration's rule on the served
    scores. x with a NaN or an infinity, x of another trailing shape, `max_samples` + 1 rows
    and (conditional) every `bad_labels` value and a label batch of another size must be
    refused with InvalidArgumentError.

    Returns:
        The max absolute error of each score; `ExportError` if one is off.
    """
    calibration = check_calibration(calibration)
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
    noise = np.asarray(score_noise(int(model.latent_dim), score_samples, seed), np.float32)
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
    model: keras.Model, signature, feed: dict[str, np.ndarray], max_samples: int
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
        if not _refuses(signature, **wrong_feed):
            raise ExportError(
                f"The exported scorer ran on {case} instead of refusing it with "
                "InvalidArgumentError; nothing was written."
            )
    if model.conditional:
        _check_refuses_bad_labels(
            model, "scorer", {SERVING_DEFAULT: signature}, {SERVING_DEFAULT: feed}
        )


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
