"""Checks of the converted LiteRT (TFLite) files against the Keras model, run in
``ai_edge_litert``'s interpreter before a file is accepted: the decoder files
(`check_variant`: ``decode`` and ``sample`` against the Keras decoder and prior, float32 to
`FLOAT32_TOLERANCE`, quantized to `QUANTIZED_TOLERANCE`) and ``encoder.tflite`` /
``scorer.tflite`` (`check_file`: every signature at one row and `CHECK_BATCH` rows, outputs to
`keras_vae.export.export_utils.scaled_tolerance`; `check_scorer_flags`: a NaN row scores NaN).
Each also refuses its wrong inputs (`keras_vae.export.litert_checks`).

    >>> check_variant(vae, content, "decoder.tflite", "none")["max_abs_error"]  # doctest: +SKIP
    3.1e-07
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    FLOAT32_TOLERANCE,
    ExportError,
    check_close,
    label_feed,
    scaled_tolerance,
)
from keras_vae.export.litert_checks import (
    check_refusals,
    check_rejects_wrong_rank,
    check_size,
    describe_signatures,
    interpreter,
    operators,
    run_signature,
    wrong_inputs,
)
from keras_vae.export.litert_models import DECODE, SAMPLE, SCORE, SCORER_FILE, SIGNATURES
from keras_vae.latent_draws import LatentMixture, draw_latent, mixture_cdf
from keras_vae.scores import SCORE_NAMES
from keras_vae.signatures import COMPONENT, IS_ANOMALY, LABEL, POSTERIOR_SAMPLE

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

# Quantized decoders output probabilities / means in [0, 1]; further off than this is broken.
QUANTIZED_TOLERANCE = 0.1


def x_mean_weight_count(model: keras.Model) -> int:
    """Number of decoder weights that ``x_mean`` depends on (a learned Gaussian scale has its
    own head, which the converter rightly prunes from files that only output the mean)."""
    decoder = model.decoder
    outputs = decoder.outputs
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        decoder = keras.Model(decoder.inputs, outputs[0])
    return sum(int(np.prod(w.shape)) for w in decoder.weights)


def check_uniforms(mixture: LatentMixture, rows: int) -> np.ndarray:
    """`rows` uniforms from `CHECK_SEED`, then every cdf boundary of the mixture (of every
    class row) and the float32 just below it (where a component mapping that rounds
    differently would differ)."""
    cdf = mixture_cdf(mixture).ravel()
    drawn = np.random.default_rng(CHECK_SEED + 1).uniform(size=rows).astype(np.float32)
    below = np.nextafter(cdf, np.float32(-np.inf))
    return np.concatenate([drawn, cdf, below]).astype(np.float32)


def _keras_decode(model: keras.Model, z: np.ndarray, labels: dict[str, np.ndarray]) -> np.ndarray:
    if not labels:
        return np.asarray(model.decode(z))
    return np.asarray(model.decode(z, labels[LABEL]))


def check_sample(
    model: keras.Model,
    interp: Interpreter,
    file_name: str,
    noise: np.ndarray,
    tolerance: float,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> float:
    """Run ``sample`` on `noise` (and, when `sampler` draws from a mixture, `check_uniforms`,
    with more noise rows for the boundaries; for a conditional model, labels spread over
    [0, K)) against `keras_vae.latent_draws.draw_latent` of the Keras model's mixture at
    `temperature` and its decoder: z (which no quantization changes) to `FLOAT32_TOLERANCE`,
    the component exactly, x_mean to `tolerance`. Returns the largest error; `ExportError`
    when one is off."""
    mixture = model.latent_mixture(sampler)
    feed = {}
    if mixture is not None:
        feed["uniform"] = check_uniforms(mixture, len(noise))
        extra = np.random.default_rng(CHECK_SEED + 2).standard_normal(
            (len(feed["uniform"]) - len(noise), noise.shape[1])
        )
        noise = np.concatenate([noise, extra]).astype(np.float32)
    labels = label_feed(model, len(noise))
    sampled = run_signature(interp, SAMPLE, noise=noise, **feed, **labels)
    z, component = draw_latent(
        mixture, tf.constant(noise), feed.get("uniform"), labels.get(LABEL), temperature
    )
    if component is not None:
        check_close(f"{file_name} sample component", component, sampled[COMPONENT], 0.0)
    z_error = check_close(f"{file_name} sample z", z, sampled["z"], FLOAT32_TOLERANCE)
    expected = _keras_decode(model, np.asarray(z), labels)
    x_error = check_close(f"{file_name} sample x_mean", expected, sampled["x_mean"], tolerance)
    return max(z_error, x_error)


def check_variant(
    model: keras.Model,
    content: bytes,
    file_name: str,
    quantization: str,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Run a converted file against the Keras decoder; raise `ExportError` if it is broken."""
    minimum = check_size(content, file_name, x_mean_weight_count(model), quantization)
    ops = operators(content)
    interp = interpreter(content)
    # First, so the parity checks below also show the interpreter recovers from refusals.
    refusals = check_rejects_wrong_rank(
        interp, int(model.latent_dim), file_name, int(model.num_classes)
    )
    tolerance = FLOAT32_TOLERANCE if quantization == "none" else QUANTIZED_TOLERANCE
    z = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_BATCH, model.latent_dim))
    z = z.astype(np.float32)
    labels = label_feed(model, CHECK_BATCH)
    expected = _keras_decode(model, z, labels)
    decoded = run_signature(interp, DECODE, z=z, **labels)["x_mean"]
    error = check_close(f"{file_name} decode x_mean", expected, decoded, tolerance)
    sample_error = check_sample(model, interp, file_name, z, tolerance, sampler, temperature)
    return {
        "quantization": quantization,
        "size_bytes": len(content),
        "min_expected_bytes": minimum,
        "max_abs_error": max(error, sample_error),
        "tolerance": tolerance,
        "ops": ops,
        "wrong_shapes_refused": refusals,
        "signatures": describe_signatures(interp),
    }


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
    return {**feed, **label_feed(model, rows)}


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
    expected_fn: Callable[[str, Mapping[str, np.ndarray]], Mapping[str, Any]],
    weights: int,
    noise_rows: int | None = None,
) -> dict[str, Any]:
    """Run every signature of a converted file on `check_inputs` against `expected_fn(
    signature, feed)` (the Keras model), at one row and `CHECK_BATCH` rows (noise: as many
    rows, or `noise_rows` whatever the rows), then its `wrong_inputs`; builtin ops only and at
    least `MIN_SIZE_FRACTION` of the `weights`' float32 bytes. Returns the export.json record
    of the file."""
    minimum = check_size(content, file_name, weights)
    ops = operators(content)
    interp = interpreter(content)
    errors: dict[str, float]
    tolerances: dict[str, float]
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


def weight_count(*layers: keras.Layer) -> int:
    """Number of weights of `layers`."""
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.weights)
