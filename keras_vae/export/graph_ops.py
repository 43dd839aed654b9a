"""The ops every export graph shares: the SavedModel encoder and decoder, the scorer and the
LiteRT files all decode, encode and draw from the posterior with these, take a class label
the same way (one body per signature, ``label=None`` for an unconditional model:
`add_endpoint`), check labels (`checked_label`), cap a request's rows (`row_cap`) and
score (`score_outputs`).

    >>> import tensorflow as tf
    >>> bool(checked_label(tf.constant([0, 2]), num_classes=3).shape == [2])
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_vae.parts.priors import MixtureParams
from keras_vae.scores import SCORE_NAMES, bounded_score_graph, score_graph
from keras_vae.signatures import IS_ANOMALY, LABEL, label_range


def label_spec() -> tf.TensorSpec:
    """The ``label`` input of every conditional signature: int32 [batch]."""
    return tf.TensorSpec([None], tf.int32, name=LABEL)


def add_endpoint(
    archive: keras.export.ExportArchive,
    name: str,
    function: Callable[..., dict[str, tf.Tensor]],
    specs: Sequence[tf.TensorSpec],
    label_at: int | None = None,
) -> None:
    """Add `function` (which takes ``label=None``) as the endpoint `name` on `specs`; with
    `label_at`, a conditional model's: `label_spec` inserted at that position of the inputs
    and passed to `function` as ``label``."""
    specs = list(specs)
    if label_at is None:
        archive.add_endpoint(name, function, input_signature=specs)
        return
    specs.insert(label_at, label_spec())

    def with_label(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        rest = list(inputs)
        label = rest.pop(label_at)
        return function(*rest, label=label)

    archive.add_endpoint(name, with_label, input_signature=specs)


def track_encoder(archive: keras.export.ExportArchive, model: keras.Model) -> None:
    """Track the encoder and, for an IAF posterior, its MADE steps."""
    archive.track(model.encoder)
    if model.posterior_layer.weights:
        archive.track(model.posterior_layer)


def track_model(archive: keras.export.ExportArchive, model: keras.Model) -> None:
    """Track every part a score reads: encoder, decoder, the flow and the prior's weights."""
    archive.track(model.encoder)
    archive.track(model.decoder)
    for part in (model.posterior_layer, model.prior_layer):
        if part.weights:
            archive.track(part)


def decoded(model: keras.Model, z: tf.Tensor, label: tf.Tensor | None = None) -> tf.Tensor:
    """x_mean float32 [batch, *data_shape] of `z` (and, conditional, `label`)."""
    return tf.cast(model.decode(z, label, training=False), tf.float32)


def encoded(model: keras.Model, x: tf.Tensor, label: tf.Tensor | None = None) -> dict:
    """``z_mean`` and ``z_stddev`` float32 [batch, latent_dim] of q(z|x) (q(z|x, y))."""
    z_mean, z_stddev = model.encode(x, label, training=False)
    return {"z_mean": tf.cast(z_mean, tf.float32), "z_stddev": tf.cast(z_stddev, tf.float32)}


def posterior_outputs(
    model: keras.Model, x: tf.Tensor, noise: tf.Tensor, label: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """z, log_q, z_mean and z_stddev of one draw per example (``noise`` [batch, latent_dim]),
    as the Keras posterior gives."""
    z_mean, z_stddev, context = model.encode_all(x, training=False, labels=label)
    noise = tf.cast(noise, z_mean.dtype)[tf.newaxis]
    z, log_q = model.posterior_layer.sample(z_mean, z_stddev, noise, context)
    return {
        "z": tf.cast(z[0], tf.float32),
        "log_q": tf.cast(log_q[0], tf.float32),
        "z_mean": tf.cast(z_mean, tf.float32),
        "z_stddev": tf.cast(z_stddev, tf.float32),
    }


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


def row_cap(count: tf.Tensor, max_samples: int, subject: str, rows: bool = True) -> tf.Operation:
    """The assertion that a request asks for at most `max_samples` rows: ``count`` (the rows
    of `subject`, or with ``rows=False`` `subject`'s value) <= `max_samples`, failing with
    InvalidArgumentError naming the cap (``x must have <= 8 rows, this model's
    max_samples_per_request ...``)."""
    limit = f"have <= {max_samples} rows" if rows else f"be <= {max_samples}"
    return tf.debugging.assert_less_equal(
        count,
        tf.constant(max_samples, tf.int32),
        message=f"{subject} must {limit}, this model's max_samples_per_request (set by "
        "keras-vae export --max-samples-per-request); send several requests",
        name="check_max_samples_per_request",
    )


def checked_label(
    label: tf.Tensor,
    num_classes: int,
    rows: tf.Tensor | None = None,
    rows_of: str = "",
    checks: Sequence[tf.Operation] = (),
) -> tf.Tensor:
    """`label` itself once it is int32 [batch] (as many rows as `rows_of` when `rows` is
    given) with every value in [0, num_classes): otherwise the signature fails with
    InvalidArgumentError naming K (the one-hot of an out-of-range label would be a zero row,
    a silent wrong class). `checks` run first (e.g. a request's row cap)."""
    label = tf.ensure_shape(label, [None], name="check_label_shape")
    checks = list(checks)
    if rows is not None:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(label)[0],
                rows,
                message=f"one label per row: label must have as many rows as {rows_of} "
                f"(label batch size, then {rows_of} batch size)",
                name="check_label_batch",
            )
        )
    with tf.control_dependencies(checks):
        in_range = [
            tf.debugging.assert_non_negative(
                label, message=label_range(num_classes), name="check_label_non_negative"
            ),
            tf.debugging.assert_less(
                label,
                tf.constant(num_classes, tf.int32),
                message=label_range(num_classes),
                name="check_label_below_num_classes",
            ),
        ]
    with tf.control_dependencies(in_range):
        return tf.identity(label)
