"""The graphs of the LiteRT (TFLite) files and their conversion, builtin ops only. Each
signature is written once, taking ``label=None`` for an unconditional model
(`keras_vae.export.graph_ops.add_endpoint`), and guards its inputs with
`keras_vae.export.litert_ops`:

* the decoder files (`litert_archive`): ``decode`` (z[, label]) and ``sample`` (noise[,
  label][, uniform for a mixture or vamp prior]);
* ``encoder.tflite`` (`encoder_litert_archive`): ``encode`` (x[, label]) and
  ``posterior_sample`` (x, noise[, label]);
* ``scorer.tflite`` (`scorer_litert_archive`): ``score`` (x[, label], the noise baked in) and
  ``score_with_noise`` (x, noise[, label]).

The formats' contracts are in `keras_vae.export.litert`, the checks in
`keras_vae.export.litert_checks` and `keras_vae.export.litert_parity`.

    >>> litert_archive(vae).write_out("/tmp/decoder_saved_model")       # doctest: +SKIP
    >>> content = convert("/tmp/decoder_saved_model", "float16")        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.graph_ops import (
    add_endpoint,
    decoded,
    encoded,
    posterior_outputs,
    score_outputs,
    track_encoder,
    track_model,
)
from keras_vae.export.litert_ops import (
    exact_examples,
    exact_labels,
    exact_latents,
    exact_uniform,
    mixture_tables,
    same_rows,
    sample_from_tables,
    temperature_table,
)
from keras_vae.limits import check_sampler
from keras_vae.signatures import COMPONENT, POSTERIOR_SAMPLE

DECODE = "decode"
SAMPLE = "sample"
# Decoder file name -> quantization.
VARIANTS = {
    "decoder.tflite": "none",
    "decoder_float16.tflite": "float16",
    "decoder_dynamic_int8.tflite": "dynamic_int8",
}
BYTES_PER_WEIGHT = {"none": 4, "float16": 2, "dynamic_int8": 1}
ENCODER_FILE, SCORER_FILE = "encoder.tflite", "scorer.tflite"
ENCODE, SCORE, SCORE_WITH_NOISE = "encode", "score", "score_with_noise"
FILES = (ENCODER_FILE, SCORER_FILE)
SIGNATURES = {ENCODER_FILE: (ENCODE, POSTERIOR_SAMPLE), SCORER_FILE: (SCORE, SCORE_WITH_NOISE)}


def _guarded_label(
    model: keras.Model, label: tf.Tensor | None, rows: tf.Tensor
) -> tf.Tensor | None:
    """`exact_labels` of a conditional model's `label` for `rows` rows; None stays None."""
    return None if label is None else exact_labels(label, rows, int(model.num_classes))


def _label_at(model: keras.Model, position: int) -> int | None:
    return position if model.conditional else None


def litert_archive(
    model: keras.Model, sampler: str = "prior", temperature: float = 1.0
) -> keras.export.ExportArchive:
    """The decoder with the TFLite signatures ``decode`` (z[, label]) and ``sample`` (noise[,
    label], and uniform when `sampler` draws from a mixture: a mixture or vamp prior, or the
    aggregate sampler), each of which refuses inputs that are not [n, latent_dim]
    (`exact_latents`), [n] (`exact_uniform`) or labels in [0, K) (`exact_labels`). ``sample``
    maps its noise as `keras_vae.latent_draws.draw_latent` does at `temperature`."""
    latent_dim = int(model.latent_dim)
    temperature = check_sampler(sampler, temperature)
    mixture = model.latent_mixture(sampler)
    if mixture is None:
        tables = temperature_table(temperature)
    else:
        tables = mixture_tables(mixture, temperature)

    def decode(z: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        z = exact_latents(z, latent_dim)
        return {"x_mean": decoded(model, z, _guarded_label(model, label, tf.shape(z)[0]))}

    def sample(
        noise: tf.Tensor, uniform: tf.Tensor | None = None, label: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        noise = exact_latents(noise, latent_dim)
        rows = tf.shape(noise)[0]
        label = _guarded_label(model, label, rows)
        if uniform is not None:
            uniform = exact_uniform(uniform, rows)
        z, component = sample_from_tables(tables, noise, uniform, label)
        extra = {} if component is None else {COMPONENT: component}
        return {"x_mean": decoded(model, z, label), "z": tf.identity(z), **extra}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    spec = [None, latent_dim]
    z_spec = tf.TensorSpec(spec, tf.float32, name="z")
    add_endpoint(archive, DECODE, decode, [z_spec], _label_at(model, 1))
    sample_specs = [tf.TensorSpec(spec, tf.float32, name="noise")]
    if mixture is not None:
        sample_specs.append(tf.TensorSpec([None], tf.float32, name="uniform"))
    add_endpoint(archive, SAMPLE, sample, sample_specs, _label_at(model, 1))
    return archive


def _guarded_examples(
    model: keras.Model, x: tf.Tensor, label: tf.Tensor | None
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(x, label) through `exact_examples` and, conditional, `exact_labels`."""
    x = exact_examples(x, model.data_shape)
    return x, _guarded_label(model, label, tf.shape(x)[0])


def _add_example_endpoints(
    archive: keras.export.ExportArchive,
    model: keras.Model,
    plain: tuple[str, Callable[..., dict[str, tf.Tensor]]],
    with_noise: tuple[str, Callable[..., dict[str, tf.Tensor]]],
) -> None:
    """Two endpoints, ``plain`` = (name, function(x, label=None)) on x and ``with_noise`` =
    (name, function(x, noise, label=None)) on (x, noise), a conditional model's label last."""
    x_spec = tf.TensorSpec([None, *model.data_shape], tf.float32, name="x")
    noise_spec = tf.TensorSpec([None, int(model.latent_dim)], tf.float32, name="noise")
    add_endpoint(archive, *plain, [x_spec], _label_at(model, 1))
    add_endpoint(archive, *with_noise, [x_spec, noise_spec], _label_at(model, 2))


def encoder_litert_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The encoder with the TFLite signatures ``encode`` (x[, label]) and
    ``posterior_sample`` (x, noise[, label])."""

    def encode(x: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        return encoded(model, *_guarded_examples(model, x, label))

    def posterior_sample(
        x: tf.Tensor, noise: tf.Tensor, label: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        x, label = _guarded_examples(model, x, label)
        noise = same_rows(exact_latents(noise, int(model.latent_dim)), tf.shape(x)[0])
        return posterior_outputs(model, x, noise, label)

    archive = keras.export.ExportArchive()
    track_encoder(archive, model)
    _add_example_endpoints(archive, model, (ENCODE, encode), (POSTERIOR_SAMPLE, posterior_sample))
    return archive


def scorer_litert_archive(
    model: keras.Model, noise: np.ndarray, calibration: Mapping[str, Any] | None = None
) -> keras.export.ExportArchive:
    """The model with the TFLite signatures ``score`` (x[, label]; `noise` [K, latent_dim]
    baked in) and ``score_with_noise`` (x, noise[, label]; noise of exactly K rows), all K
    samples at once (no loop)."""
    baked = np.asarray(noise, np.float32)

    def score_with_noise(
        x: tf.Tensor, noise: tf.Tensor | None, label: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        x, label = _guarded_examples(model, x, label)
        if noise is None:
            noise = tf.constant(baked)
        else:  # exactly [K, latent_dim]: RESHAPE fails at run time for any other row count
            noise = tf.reshape(exact_latents(noise, int(model.latent_dim)), baked.shape)
        return score_outputs(model, x, noise, label, None, calibration)

    def score(x: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        return score_with_noise(x, None, label)

    archive = keras.export.ExportArchive()
    track_model(archive, model)
    _add_example_endpoints(archive, model, (SCORE, score), (SCORE_WITH_NOISE, score_with_noise))
    return archive


def convert(
    saved_model_dir: str | Path,
    quantization: str = "none",
    signature_keys: Sequence[str] = (DECODE, SAMPLE),
) -> bytes:
    """Convert `signature_keys` of a SavedModel to a TFLite flatbuffer, builtin ops only.

    Args:
        saved_model_dir: written from `litert_archive` (or the encoder's or scorer's).
        quantization: "none" (float32, default), "float16" or "dynamic_int8".
        signature_keys: the signatures to convert. Default: the decoder's.
    """
    if quantization not in BYTES_PER_WEIGHT:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Expected one of {list(BYTES_PER_WEIGHT)}. "
            f"Received: quantization={quantization!r}"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()
