"""The decoder for on-device sampling as LiteRT (TFLite) flatbuffers, builtin ops only.

Three files, each with two signatures:

* ``decode``: ``z`` float32 [n, latent_dim] -> ``x_mean`` float32 [n, *data_shape].
* ``sample``: ``noise`` float32 [n, latent_dim], standard normal draws -> ``x_mean`` and ``z``
  (= noise, as p(z) = N(0, I)). TFLite has no builtin stateless random op, so the app draws
  the noise (e.g. ``java.util.Random.nextGaussian``) and the same noise always gives the same
  samples, equal to the SavedModel's ``serving_default`` on that z.

``decoder.tflite`` is float32; ``decoder_float16.tflite`` stores float16 weights;
``decoder_dynamic_int8.tflite`` int8 weights with float activations (dynamic-range
quantization). Every file is run in ``ai_edge_litert``'s interpreter against the Keras
decoder before it is accepted: float32 must agree to 1e-5, no output may be NaN, the file
must hold at least the bytes its weights need (a conversion that silently drops weights gives
a tiny file), and only builtin ops are allowed (no Flex delegate, no custom ops).

    >>> record = write_tflite(vae, "export/tflite", work_dir="/tmp/x")   # doctest: +SKIP
    >>> record["files"]["decoder.tflite"]["max_abs_error"] <= 1e-5         # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    FLOAT32_TOLERANCE,
    ExportError,
    check_close,
    tensor_info,
)

DECODE = "decode"
SAMPLE = "sample"
# File name -> quantization.
VARIANTS = {
    "decoder.tflite": "none",
    "decoder_float16.tflite": "float16",
    "decoder_dynamic_int8.tflite": "dynamic_int8",
}
BYTES_PER_WEIGHT = {"none": 4, "float16": 2, "dynamic_int8": 1}
# A file below this fraction of its weights' bytes has lost weights in the conversion.
MIN_SIZE_FRACTION = 0.9
# Quantized decoders output probabilities / means in [0, 1]; further off than this is broken.
QUANTIZED_TOLERANCE = 0.1
LITERT_HINT = "install it with `pip install 'keras-vae[litert]'` (ai-edge-litert)"


def check_litert_available() -> None:
    """Raise `ValueError` before anything is written if ai_edge_litert is not installed."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise ValueError(
            f"--tflite checks every converted file in the LiteRT interpreter; {LITERT_HINT}."
        )


def litert_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The decoder with the TFLite signatures ``decode`` (z) and ``sample`` (noise)."""
    latent_dim = int(model.latent_dim)
    spec = [None, latent_dim]

    def decode(z):
        return {"x_mean": tf.cast(model.decode(z, training=False), tf.float32)}

    def sample(noise):
        x_mean = tf.cast(model.decode(noise, training=False), tf.float32)
        return {"x_mean": x_mean, "z": tf.identity(noise)}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(DECODE, decode, [tf.TensorSpec(spec, tf.float32, name="z")])
    archive.add_endpoint(SAMPLE, sample, [tf.TensorSpec(spec, tf.float32, name="noise")])
    return archive


def convert(saved_model_dir: str | Path, quantization: str = "none") -> bytes:
    """Convert the ``decode`` and ``sample`` signatures of a SavedModel, builtin ops only.

    Args:
        saved_model_dir: written from `litert_archive`.
        quantization: "none", "float16" or "dynamic_int8".
    """
    if quantization not in BYTES_PER_WEIGHT:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Expected one of {list(BYTES_PER_WEIGHT)}. "
            f"Received: quantization={quantization!r}"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[DECODE, SAMPLE]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def operators(content: bytes) -> list[str]:
    """Sorted names of the operators in a TFLite flatbuffer; `ExportError` on any custom op
    (Flex ops are custom ops named ``Flex...``)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    found, custom = set(), set()
    for code in model.operatorCodes or []:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom.add(code.customCode.decode() if code.customCode else "?")
        else:
            found.add(names.get(builtin, str(builtin)))
    if custom:
        raise ExportError(
            f"The TFLite decoder needs non-builtin ops {sorted(custom)} (Flex or custom), which "
            "the plain LiteRT runtime cannot run; nothing was written."
        )
    return sorted(found)


def interpreter(content: bytes):
    """An `ai_edge_litert` interpreter for a flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content)


def run_signature(content_or_interpreter, name: str, **inputs: np.ndarray) -> dict:
    """Run one signature of a TFLite model; returns its outputs by name."""
    runner = content_or_interpreter
    if isinstance(runner, (bytes, bytearray)):
        runner = interpreter(runner)
    return runner.get_signature_runner(name)(**inputs)


def describe_signatures(interp) -> dict[str, dict[str, Any]]:
    """Inputs and outputs of every signature of a TFLite model, as export.json records them."""

    def infos(details: dict) -> dict[str, Any]:
        return {
            key: tensor_info(np.dtype(d["dtype"]).name, d["shape_signature"])
            for key, d in sorted(details.items())
        }

    signatures = {}
    for key in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(key)
        signatures[key] = {
            "inputs": infos(runner.get_input_details()),
            "outputs": infos(runner.get_output_details()),
        }
    return signatures


def x_mean_weight_count(model: keras.Model) -> int:
    """Number of decoder weights that ``x_mean`` depends on (a learned Gaussian scale has its
    own head, which the converter rightly prunes from files that only output the mean)."""
    decoder = model.decoder
    outputs = decoder.outputs
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        decoder = keras.Model(decoder.inputs, outputs[0])
    return sum(int(np.prod(w.shape)) for w in decoder.weights)


def check_variant(
    model: keras.Model, content: bytes, file_name: str, quantization: str
) -> dict[str, Any]:
    """Run a converted file against the Keras decoder; raise `ExportError` if it is broken."""
    weights = x_mean_weight_count(model)
    minimum = int(MIN_SIZE_FRACTION * BYTES_PER_WEIGHT[quantization] * weights)
    if len(content) < minimum:
        raise ExportError(
            f"{file_name} is {len(content)} bytes but the decoder's {weights} weights need at "
            f"least {minimum} as {quantization}: the conversion dropped weights; nothing was "
            "written."
        )
    ops = operators(content)
    interp = interpreter(content)
    tolerance = FLOAT32_TOLERANCE if quantization == "none" else QUANTIZED_TOLERANCE
    z = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_BATCH, model.latent_dim))
    z = z.astype(np.float32)
    expected = np.asarray(model.decode(z))
    decoded = run_signature(interp, DECODE, z=z)["x_mean"]
    error = check_close(f"{file_name} decode x_mean", expected, decoded, tolerance)
    sampled = run_signature(interp, SAMPLE, noise=z)
    check_close(f"{file_name} sample z", z, sampled["z"], 0.0)
    sample_error = check_close(f"{file_name} sample x_mean", expected, sampled["x_mean"], tolerance)
    return {
        "quantization": quantization,
        "size_bytes": len(content),
        "min_expected_bytes": minimum,
        "max_abs_error": max(error, sample_error),
        "tolerance": tolerance,
        "ops": ops,
        "signatures": describe_signatures(interp),
    }


def write_tflite(model: keras.Model, out_dir: str | Path, work_dir: str | Path) -> dict[str, Any]:
    """Convert, check and write the three decoder files into `out_dir`.

    Args:
        model: the trained `VAE`.
        out_dir: folder for the .tflite files (created).
        work_dir: scratch folder for the intermediate SavedModel.

    Returns:
        ``{"files": {file name: {size_bytes, max_abs_error, ops, signatures, ...}}, ...}``.
    """
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    source = work_dir / "litert_saved_model"
    litert_archive(model).write_out(str(source), verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for file_name, quantization in VARIANTS.items():
        content = convert(source, quantization)
        files[file_name] = check_variant(model, content, file_name, quantization)
        (out_dir / file_name).write_bytes(content)
    return {
        "files": files,
        "x_mean_weights": x_mean_weight_count(model),
        "checked_on": f"{CHECK_BATCH} draws z ~ N(0, I) against the Keras decoder",
    }
