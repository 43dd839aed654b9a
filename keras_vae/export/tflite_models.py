"""The encoder and the anomaly scorer as LiteRT (TFLite) flatbuffers, float32, builtin ops only.

* ``encoder.tflite``, ``encode``: ``x`` float32 [n, *data_shape] -> ``z_mean``, ``z_stddev``
  [n, latent_dim], the SavedModel encoder's ``serving_default``; ``posterior_sample``: ``x``
  and ``noise`` float32 [n, latent_dim] (standard normal draws the app makes) -> ``z``,
  ``log_q`` [n], ``z_mean``, ``z_stddev``, as the SavedModel's ``posterior_sample``.
* ``scorer.tflite``, ``score``: ``x`` -> ``elbo``, ``log_likelihood``, ``reconstruction``,
  ``kl`` float32 [n] (and ``is_anomaly`` bool [n] once calibrated), with the scorer
  SavedModel's K noise rows (`keras_vae.scores.score_noise`) baked in, so it gives the
  SavedModel's numbers; ``score_with_noise``: ``x`` and ``noise`` float32 [K, latent_dim]
  (the same K as ``score``; the same rows for every example) -> the same outputs with the
  app's own standard normal draws.
  TFLite has no builtin stateless random op (``tf.random.stateless_normal`` is not one), so
  the noise is a constant or an input.

A conditional model's signatures take ``label`` int32 [n] in [0, K) too. Every input is
checked inside the graph with builtin ops, as the decoder files are
(`keras_vae.export.tflite.exact_latents`): ``x`` of another rank or trailing shape, ``noise``
of another width (or, in ``posterior_sample``, another row count than ``x``), a label out of
range or of another row count make the run fail instead of returning outputs.

Each file is run in ``ai_edge_litert``'s interpreter against the Keras model before it is
accepted (`check_file`): outputs to `FLOAT32_TOLERANCE` (scaled by their size like
`keras_vae.export.saved_model.scaled_tolerance`), no NaN, builtin ops only, the weights' bytes
present and every wrong input refused.

    >>> files = write_litert_models(vae, "export/tflite", "/tmp/x", 100)  # doctest: +SKIP
    >>> sorted(files)                                                      # doctest: +SKIP
    ['encoder.tflite', 'scorer.tflite']
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    ExportError,
    bad_labels,
    check_close,
    check_labels,
)
from keras_vae.export.saved_model import _posterior_sample, scaled_tolerance
from keras_vae.export.tflite import (
    MIN_SIZE_FRACTION,
    describe_signatures,
    exact_labels,
    exact_latents,
    interpreter,
    operators,
    x_mean_weight_count,
)
from keras_vae.scores import SCORE_NAMES
from keras_vae.signatures import IS_ANOMALY, LABEL, POSTERIOR_SAMPLE

ENCODER_FILE, SCORER_FILE = "encoder.tflite", "scorer.tflite"
ENCODE, SCORE, SCORE_WITH_NOISE = "encode", "score", "score_with_noise"
FILES = (ENCODER_FILE, SCORER_FILE)
SIGNATURES = {ENCODER_FILE: (ENCODE, POSTERIOR_SAMPLE), SCORER_FILE: (SCORE, SCORE_WITH_NOISE)}


# ---------------------------------------------------------------------- input guards
def exact_examples(x: tf.Tensor, example_shape: Sequence[int]) -> tf.Tensor:
    """`x` itself, through builtin ops that fail at run time unless `x` is exactly
    [n, *example_shape]: `exact_latents`' checks for any example rank (WHERE rows of the
    runtime shape RESHAPEd to the rank, GATHER of each ``dim - expected`` from a length-1
    vector, a final RESHAPE tying both into the graph)."""
    example_shape = [int(d) for d in example_shape]
    shape = tf.shape(x)
    dims = tf.gather(shape, tf.reshape(tf.where(shape >= 0), [1 + len(example_shape)]))
    offsets = dims[1:] - tf.constant(example_shape, tf.int32)
    ok = tf.reduce_sum(tf.gather(tf.zeros([1], tf.int32), offsets))  # 0 or fails
    return tf.reshape(x, tf.concat([tf.reshape(dims[0] + ok, [1]), example_shape], axis=0))


def same_rows(tensor: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """`tensor` itself, failing at run time unless its first dimension is `rows` (GATHER of
    ``rows_tensor - rows`` from a length-1 vector, added to `tensor`)."""
    offset = tf.gather(tf.zeros([1], tf.int32), tf.shape(tensor)[0] - rows)  # 0 or fails
    return tensor + tf.cast(offset, tensor.dtype)


def _guarded(model: keras.Model, x: tf.Tensor, label: tf.Tensor | None):
    x = exact_examples(x, model.data_shape)
    if label is not None:
        label = exact_labels(label, tf.shape(x)[0], int(model.num_classes))
    return x, label


# ---------------------------------------------------------------------- archives
def encoder_litert_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The encoder with the TFLite signatures ``encode`` (x[, label]) and
    ``posterior_sample`` (x, noise[, label])."""
    latent_dim = int(model.latent_dim)
    x_spec = tf.TensorSpec([None, *model.data_shape], tf.float32, name="x")
    noise_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="noise")
    label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)

    def encode_fn(x, label=None):
        x, label = _guarded(model, x, label)
        z_mean, z_stddev = model.encode(x, label, training=False)
        return {"z_mean": tf.cast(z_mean, tf.float32), "z_stddev": tf.cast(z_stddev, tf.float32)}

    def posterior_fn(x, noise, label=None):
        x, label = _guarded(model, x, label)
        noise = same_rows(exact_latents(noise, latent_dim), tf.shape(x)[0])
        return _posterior_sample(model, x, noise, label)

    archive = keras.export.ExportArchive()
    archive.track(model.encoder)
    if model.posterior_layer.weights:  # the IAF's MADE steps
        archive.track(model.posterior_layer)
    if model.conditional:
        archive.add_endpoint(ENCODE, lambda x, label: encode_fn(x, label), [x_spec, label_spec])
        archive.add_endpoint(
            POSTERIOR_SAMPLE,
            lambda x, noise, label: posterior_fn(x, noise, label),
            [x_spec, noise_spec, label_spec],
        )
    else:
        archive.add_endpoint(ENCODE, lambda x: encode_fn(x), [x_spec])
        archive.add_endpoint(
            POSTERIOR_SAMPLE, lambda x, noise: posterior_fn(x, noise), [x_spec, noise_spec]
        )
    return archive


def scorer_litert_archive(
    model: keras.Model, noise: np.ndarray, calibration: Mapping[str, Any] | None = None
) -> keras.export.ExportArchive:
    """The model with the TFLite signatures ``score`` (x[, label]; `noise` [K, latent_dim]
    baked in) and ``score_with_noise`` (x, noise[, label]; noise of exactly K rows), all K
    samples at once (no loop)."""
    from keras_vae.export.scorer import score_outputs, track_model

    latent_dim = int(model.latent_dim)
    x_spec = tf.TensorSpec([None, *model.data_shape], tf.float32, name="x")
    noise_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="noise")
    label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)
    baked = np.asarray(noise, np.float32)

    def score_fn(x, noise, label=None):
        x, label = _guarded(model, x, label)
        return score_outputs(model, x, noise, label, None, calibration)

    def with_noise(x, noise, label=None):
        # exactly [K, latent_dim]: RESHAPE fails at run time for any other row count
        noise = tf.reshape(exact_latents(noise, latent_dim), baked.shape)
        return score_fn(x, noise, label)

    archive = keras.export.ExportArchive()
    track_model(archive, model)
    if model.conditional:
        archive.add_endpoint(
            SCORE, lambda x, label: score_fn(x, tf.constant(baked), label), [x_spec, label_spec]
        )
        archive.add_endpoint(
            SCORE_WITH_NOISE,
            lambda x, noise, label: with_noise(x, noise, label),
            [x_spec, noise_spec, label_spec],
        )
    else:
        archive.add_endpoint(SCORE, lambda x: score_fn(x, tf.constant(baked)), [x_spec])
        archive.add_endpoint(
            SCORE_WITH_NOISE, lambda x, noise: with_noise(x, noise), [x_spec, noise_spec]
        )
    return archive


def convert(saved_model_dir: str | Path, signature_keys: Sequence[str]) -> bytes:
    """Convert `signature_keys` of a SavedModel to a float32 TFLite flatbuffer, builtin ops only."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


# ---------------------------------------------------------------------- checks
def check_inputs(
    model: keras.Model, rows: int = CHECK_BATCH, noise_rows: int | None = None
) -> dict[str, np.ndarray]:
    """x uniform in [0, 1] [rows, *data_shape], standard normal noise [noise_rows (default
    rows), latent_dim] and (conditional) labels spread over [0, K), from `CHECK_SEED`."""
    rng = np.random.default_rng(CHECK_SEED)
    noise_shape = (rows if noise_rows is None else noise_rows, int(model.latent_dim))
    feed = {
        "x": rng.uniform(size=(rows, *model.data_shape)).astype(np.float32),
        "noise": rng.standard_normal(noise_shape).astype(np.float32),
    }
    if model.conditional:
        feed[LABEL] = check_labels(int(model.num_classes), rows)
    return feed


def wrong_inputs(
    model: keras.Model, feed: Mapping[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """{case: feed} a signature taking `feed` must refuse, one input wrong at a time: x of
    another rank (one example without its batch axis, an extra axis) or last dimension,
    noise of another width, rank or row count (one row fewer), labels out of range
    (`bad_labels`) or one fewer than x."""
    x = feed["x"]
    cases = {
        "x without a batch axis": {**feed, "x": x[0]},
        "x with an extra axis": {**feed, "x": x[:, np.newaxis]},
        "x one wider": {**feed, "x": np.concatenate([x, x[..., :1]], axis=-1)},
    }
    if x.shape[-1] > 1:
        cases["x one narrower"] = {**feed, "x": x[..., :-1]}
    if "noise" in feed:
        noise = feed["noise"]
        cases["noise one wider"] = {**feed, "noise": np.concatenate([noise, noise[:, :1]], 1)}
        cases["noise without a batch axis"] = {**feed, "noise": noise[0]}
        cases["noise one row fewer"] = {**feed, "noise": noise[:-1]}
    if LABEL in feed:
        labels = feed[LABEL]
        cases["one label fewer than x"] = {**feed, LABEL: labels[:-1]}
        for bad in bad_labels(int(model.num_classes)):
            wrong = labels.copy()
            wrong[-1] = bad
            cases[f"label {bad}"] = {**feed, LABEL: wrong}
    return cases


def check_refusals(runner, cases: Mapping[str, Mapping[str, np.ndarray]], what: str) -> int:
    """Run each case; `ExportError` if one returns outputs instead of failing. Returns the count."""
    for case, feed in cases.items():
        try:
            outputs = runner(**feed)
        except (RuntimeError, ValueError):
            continue
        got = {name: tuple(np.shape(v)) for name, v in sorted(outputs.items())}
        raise ExportError(
            f"{what} ran on {case} (returning {got}) instead of refusing it; nothing was written."
        )
    return len(cases)


def _compare(what: str, expected: Mapping[str, Any], got: Mapping[str, Any]) -> tuple[float, float]:
    """(max error, largest tolerance) over `expected`'s float outputs, each to its
    `scaled_tolerance` (an output expected as None is only required to exist)."""
    if sorted(expected) != sorted(got):
        raise ExportError(
            f"{what} outputs {sorted(got)}, expected {sorted(expected)}; nothing was written."
        )
    largest, tolerance = 0.0, 0.0
    for name, value in expected.items():
        if value is None:
            continue
        value = np.asarray(value, np.float32)
        tolerance = max(tolerance, scaled_tolerance(value))
        error = check_close(f"{what} {name}", value, got[name], scaled_tolerance(value))
        largest = max(largest, error)
    return largest, tolerance


def expected_encoder(model: keras.Model, signature: str, feed: Mapping[str, np.ndarray]) -> dict:
    """The Keras model's outputs for the encoder file's `signature` on `feed`."""
    labels = feed.get(LABEL)
    z_mean, z_stddev = model.encode(feed["x"], labels)
    out = {"z_mean": z_mean, "z_stddev": z_stddev}
    if signature == POSTERIOR_SAMPLE:
        out["z"], out["log_q"] = model.posterior_sample(
            feed["x"], noise=feed["noise"], labels=labels
        )
    return out


def check_file(
    model: keras.Model,
    content: bytes,
    file_name: str,
    expected_fn,
    weights: int,
    noise_rows: int | None = None,
) -> dict[str, Any]:
    """Run every signature of a converted file on `check_inputs` against `expected_fn(
    signature, feed)` (the Keras model), at one row and `CHECK_BATCH` rows (noise: as many
    rows, or `noise_rows` whatever the rows), then its `wrong_inputs`; builtin ops only and at
    least `MIN_SIZE_FRACTION` of the `weights`' float32 bytes. Returns the export.json record
    of the file."""
    minimum = int(MIN_SIZE_FRACTION * 4 * weights)
    if len(content) < minimum:
        raise ExportError(
            f"{file_name} is {len(content)} bytes but its {weights} weights need at least "
            f"{minimum} as float32: the conversion dropped weights; nothing was written."
        )
    ops = operators(content)
    interp = interpreter(content)
    errors, tolerances, refused = {}, {}, 0
    feed = check_inputs(model, CHECK_BATCH, noise_rows)
    for signature in SIGNATURES[file_name]:
        runner = interp.get_signature_runner(signature)
        names = set(runner.get_input_details())
        signature_feed = {name: value for name, value in feed.items() if name in names}
        what = f"{file_name}'s {signature!r} signature"
        refused += check_refusals(runner, wrong_inputs(model, signature_feed), what)
        for rows in (1, CHECK_BATCH):
            rows_feed = {name: value[:rows] for name, value in signature_feed.items()}
            if noise_rows is not None and "noise" in rows_feed:
                rows_feed["noise"] = signature_feed["noise"]
            expected = expected_fn(signature, rows_feed)
            error, tolerance = _compare(f"{what} on {rows} rows", expected, runner(**rows_feed))
            errors[signature] = max(errors.get(signature, 0.0), error)
            tolerances[signature] = max(tolerances.get(signature, 0.0), tolerance)
    return {
        "quantization": "none",
        "size_bytes": len(content),
        "min_expected_bytes": minimum,
        "max_abs_error": max(errors.values()),
        "max_abs_errors": errors,
        "tolerance": max(tolerances.values()),
        "tolerances": tolerances,
        "ops": ops,
        "wrong_inputs_refused": refused,
        "signatures": describe_signatures(interp),
    }


def check_scorer_flags(
    model: keras.Model, content: bytes, calibration: Mapping[str, Any] | None
) -> None:
    """``score`` of `check_inputs` with a NaN in one example (TFLite has no assertion op):
    that row's scores must all be NaN and the others finite, and ``is_anomaly`` (when
    calibrated) the calibration's rule on the file's own scores, the NaN row flagged."""
    from keras_vae.calibration import is_anomaly

    feed = check_inputs(model)
    feed.pop("noise")
    feed["x"].reshape(len(feed["x"]), -1)[1, 0] = np.nan
    got = interpreter(content).get_signature_runner(SCORE)(**feed)
    what = f"{SCORER_FILE}'s {SCORE!r} signature on an example holding NaN"
    for name in SCORE_NAMES:
        values = np.asarray(got[name])
        if not np.isnan(values[1]) or not np.isfinite(np.delete(values, 1)).all():
            raise ExportError(
                f"{what} gives {name} {values.tolist()}: the NaN row must score NaN (never a "
                "confident number) and the others finite; nothing was written."
            )
    if calibration is not None:
        rule = is_anomaly(
            got[calibration["score"]], calibration["threshold"], calibration["anomaly_if"]
        )
        if not np.array_equal(np.asarray(got[IS_ANOMALY], bool), rule):
            raise ExportError(
                f"{what} flags {np.asarray(got[IS_ANOMALY]).tolist()} as anomalies, but the "
                f"calibration's rule on its scores flags {rule.tolist()} (a NaN score is an "
                "anomaly); nothing was written."
            )


def _weight_count(*layers) -> int:
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.weights)


def write_litert_models(
    model: keras.Model,
    out_dir: str | Path,
    work_dir: str | Path,
    score_samples: int,
    calibration: Mapping[str, Any] | None = None,
    score_seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Convert, check and write ``encoder.tflite`` and ``scorer.tflite`` into `out_dir`.

    Args:
        model: the trained `VAE`.
        out_dir: folder for the .tflite files (created).
        work_dir: scratch folder for the intermediate SavedModels.
        score_samples: K, the noise rows baked into ``score`` (the scorer SavedModel's).
        calibration: the run's calibration record (``is_anomaly`` output), or None.
        score_seed: the seed of `keras_vae.scores.score_noise`. Default 0.

    Returns:
        ``{file name: {size_bytes, max_abs_error, ops, signatures, ...}}``.
    """
    from keras_vae.export.scorer import check_calibration, expected_scores
    from keras_vae.scores import score_noise

    calibration = check_calibration(calibration)
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise = np.asarray(score_noise(int(model.latent_dim), score_samples, score_seed), np.float32)

    def expected_score(signature: str, feed: Mapping[str, np.ndarray]) -> dict:
        given = noise if signature == SCORE else feed["noise"]
        expected = expected_scores(model, feed["x"], given, feed.get(LABEL))
        if calibration is not None:
            expected[IS_ANOMALY] = None  # `check_scorer_flags` checks it
        return expected

    encoder_weights = _weight_count(model.encoder, model.posterior_layer)
    plans = {
        ENCODER_FILE: (
            encoder_litert_archive(model),
            functools.partial(expected_encoder, model),
            encoder_weights,
            None,
        ),
        SCORER_FILE: (
            scorer_litert_archive(model, noise, calibration),
            expected_score,
            encoder_weights + x_mean_weight_count(model),
            int(score_samples),
        ),
    }
    records = {}
    for file_name, (archive, expected_fn, weights, noise_rows) in plans.items():
        source = work_dir / f"litert_{Path(file_name).stem}"
        archive.write_out(str(source), verbose=False)
        content = convert(source, SIGNATURES[file_name])
        records[file_name] = check_file(model, content, file_name, expected_fn, weights, noise_rows)
        if file_name == SCORER_FILE:
            check_scorer_flags(model, content, calibration)
        (out_dir / file_name).write_bytes(content)
    records[SCORER_FILE]["score_samples"] = int(score_samples)
    records[SCORER_FILE]["score_seed"] = int(score_seed)
    records[SCORER_FILE]["outputs_is_anomaly"] = calibration is not None
    return records
