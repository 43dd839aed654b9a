"""The decoder for on-device sampling as LiteRT (TFLite) flatbuffers, builtin ops only (the
encoder and the anomaly scorer: `keras_vae.export.tflite_models`).

Three files, each with two signatures:

* ``decode``: ``z`` float32 [n, latent_dim] -> ``x_mean`` float32 [n, *data_shape].
* ``sample`` for p(z) = N(0, I): ``noise`` float32 [n, latent_dim], standard normal draws ->
  ``x_mean`` and ``z`` (= noise). TFLite has no builtin stateless random op, so the app draws
  the noise (e.g. ``java.util.Random.nextGaussian``) and the same noise always gives the same
  samples, equal to the SavedModel's ``serving_default`` on that z.
* ``sample`` for a mixture or vamp prior: ``noise`` float32 [n, latent_dim] and ``uniform``
  float32 [n] in [0, 1) (e.g. ``java.util.Random.nextFloat``) -> ``x_mean``, ``z`` and
  ``component`` int32 [n]: the mapping of `keras_vae.parts.priors.sample_from_noise` (component
  c = #{j < K-1: u >= cdf_j}, z = loc_c + scale_c * noise) with the prior's parameters baked in
  at export (`keras_vae.export.saved_model.baked_prior`), as the SavedModel's ``sample``
  does, so the same (noise, uniform) give the same z and component as the SavedModel's
  ``sample`` for its own eps and u (a u below 0 picks the first component, one of 1 or more
  the last). The parameters are stored as int32 bit patterns (`prior_tables`) and u is
  compared with the cdf as bits (`component_from_bits`, the same order as the floats'), so
  the quantized files, which turn every float constant into float16 or int8, still sample
  exactly this prior: only their decoder is approximate. (This uses the BITCAST builtin,
  in TFLite/LiteRT runtimes since TF 2.13.)

A conditional model's files take a class label too, ``label`` int32 [n] in [0, K):
``decode`` (z, label) and ``sample`` (noise, label[, uniform]), z and component as above
(the prior is not conditioned) and x_mean decoded with each row's label, the same numbers as
the SavedModel's for the same noise (its ``sample`` draws eps and u per row from the seeds).
A label outside [0, K), of another rank or row count makes the run fail (`exact_labels`:
GATHER from the table [0, ..., K-1] at the label), never an output.

Every latent input takes exactly rank 2 with last dimension ``latent_dim``, and ``uniform``
exactly rank 1 with as many rows as ``noise`` (`exact_uniform`); anything else is refused. TFLite
runtimes resize inputs non-strictly (``ai_edge_litert``'s signature runner and Android's
``Interpreter`` take whatever shape the caller passes), so the refusal is built into each graph
from builtin ops (`exact_latents`): an input of another rank -- ``(latent_dim,)``,
``(1, 2, latent_dim)``, even ``(1, a, b)`` with ``a * b == latent_dim`` -- or another width
(``(n, latent_dim +- 1)``) makes the run fail instead of returning outputs. An app gets the
runtime's error for that run, never a result: in Python the signature runner raises
``RuntimeError`` with TFLite's message, ``... num_input_elements != num_output_elements
(1 != 2)Node number 3 (RESHAPE) failed to prepare.`` for a wrong rank (the counts are the rank
and 2) and ``gather index out of boundsNode number 8 (GATHER) failed to invoke.`` for a wrong
width (node numbers vary); on Android the run throws instead of filling the outputs. The
interpreter stays usable: the next call with an ``[n, latent_dim]`` input runs normally. The
input shapes recorded in export.json stay ``[-1, latent_dim]``. (The Python signature runner
refuses an empty batch with ``ValueError`` before the graph runs; the lower-level
``Interpreter.invoke`` runs ``[0, latent_dim]``, giving empty outputs, and refuses ``[0, w]``
for any other ``w``.)

``decoder.tflite`` is float32; ``decoder_float16.tflite`` stores float16 weights;
``decoder_dynamic_int8.tflite`` int8 weights with float activations (dynamic-range
quantization). Every file is run in ``ai_edge_litert``'s interpreter against the Keras
decoder (and, for ``sample``, the Keras prior) before it is accepted: float32 must agree to
1e-5, no output may be NaN, the file must hold at least the bytes its weights need (a
conversion that silently drops weights gives a tiny file), every signature must refuse inputs
of the wrong rank or width (``uniform`` and ``label`` also of another row count, ``label``
also out of range; `check_rejects_wrong_rank`), and only builtin ops are allowed (no Flex
delegate, no custom ops).

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
    bad_labels,
    check_close,
    check_labels,
    tensor_info,
)
from keras_vae.export.saved_model import baked_prior
from keras_vae.parts.priors import MixtureParams, sample_from_noise
from keras_vae.signatures import COMPONENT, LABEL, label_range

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


def exact_latents(z: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """`z` itself, through builtin TFLite ops that fail at run time unless `z` is exactly
    [n, latent_dim] (TFLite runtimes resize a [-1, latent_dim] input to any shape, any rank).

    The converter folds everything it can derive from the static shape of the
    [None, latent_dim] spec, so ``tf.rank(z)``, ``tf.shape(z)[1]`` and ``tf.shape(tf.shape(z))``
    become constants and check nothing, and ``tf.debugging.assert_*`` / ``tf.ensure_shape`` are
    not builtins. What it cannot fold is a value that depends on the runtime batch size:

    * ``tf.where(shape >= 0)`` (WHERE) has one row per dimension `z` really has, so its
      RESHAPE to [2] fails unless the rank is 2 -- including ``(1, a, b)`` with
      ``a * b == latent_dim``, which a reshape of `z` itself would let through;
    * gathering the shape by those rows gives the runtime [n, width], and GATHER of index
      ``width - latent_dim`` from a length-1 vector is out of bounds unless the width is
      `latent_dim`, whatever n (also for an empty batch);
    * the final RESHAPE to [n, latent_dim] ties both checks into the graph (nothing else
      depends on them) and fails too when the element count is not ``n * latent_dim``.

    On a correct input every step is the identity, so the outputs are unchanged.
    """
    shape = tf.shape(z)
    dims = tf.gather(shape, tf.reshape(tf.where(shape >= 0), [2]))
    width_ok = tf.gather(tf.zeros([1], tf.int32), dims[1] - latent_dim)  # 0 or fails
    return tf.reshape(z, tf.stack([dims[0] + width_ok, latent_dim]))


def exact_uniform(uniform: tf.Tensor, num_rows: tf.Tensor) -> tf.Tensor:
    """`uniform` itself, through builtin TFLite ops that fail at run time unless it is exactly
    [num_rows] (rank 1, one value per row of the noise), as `exact_latents` does for z.

    * the WHERE rows of its runtime shape RESHAPE to [1] only for rank 1 (a scalar has none,
      a [n, 1] or [1, n] two);
    * GATHER of index ``rows - num_rows`` from a length-1 vector is out of bounds unless the
      counts agree;
    * adding that gathered 0 to `uniform` ties both checks into the graph. (A RESHAPE of a
      rank-1 input to [rows], as `exact_latents` ends, is an identity the converter folds
      away together with the checks.)
    """
    shape = tf.shape(uniform)
    dims = tf.gather(shape, tf.reshape(tf.where(shape >= 0), [1]))
    rows_ok = tf.gather(tf.zeros([1], tf.int32), dims[0] - num_rows)  # 0 or fails
    return uniform + tf.cast(rows_ok, uniform.dtype)


def exact_labels(label: tf.Tensor, num_rows: tf.Tensor, num_classes: int) -> tf.Tensor:
    """`label` itself, through builtin TFLite ops that fail at run time unless it is exactly
    [num_rows] (rank 1, one label per row of z or noise) with every value in
    [0, num_classes): an out-of-range label must fail the run, not decode with the zero row
    that ONE_HOT gives it (a silent wrong class).

    * rank and row count as `exact_uniform` checks them (WHERE rows RESHAPEd to [1], GATHER
      of ``rows - num_rows`` from a length-1 vector);
    * GATHER of index ``label`` from the int32 table [0, 1, ..., num_classes - 1] is out of
      bounds (``gather index out of bounds``) for a label below 0 or at or above
      num_classes, and on the others returns the label itself, which the decoder then
      reads, so the check cannot be folded away or skipped. The table is integer, so no
      quantization touches it.
    """
    shape = tf.shape(label)
    dims = tf.gather(shape, tf.reshape(tf.where(shape >= 0), [1]))
    rows_ok = tf.gather(tf.zeros([1], tf.int32), dims[0] - num_rows)  # 0 or fails
    classes = tf.range(num_classes, dtype=tf.int32)
    return tf.gather(classes, tf.cast(label, tf.int32) + rows_ok)  # label or fails


def prior_tables(params: MixtureParams) -> dict[str, np.ndarray]:
    """The int32 bit patterns of a baked prior's float32 ``cdf`` [K-1] (cumsum(exp(
    log_weights)) but the last, as `keras_vae.parts.priors.component_from_uniform` computes
    it), ``loc`` and ``scale`` [K, D]: integer constants, which no quantization touches."""
    cdf = tf.cumsum(tf.exp(tf.constant(params.log_weights, tf.float32)))[:-1]
    tables = {"cdf": np.asarray(cdf, np.float32), "loc": params.loc, "scale": params.scale}
    return {name: np.ascontiguousarray(a, np.float32).view(np.int32) for name, a in tables.items()}


def component_from_bits(cdf_bits: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """#{j: u >= cdf_j} as int32 [n], comparing bit patterns: for float32 numbers >= 0 their
    order is that of their int32 bits, and a u < 0 (negative bits) reaches no cdf_j >= 0,
    so this equals the float comparison for every u but NaN (-0.0 is taken as 0)."""
    bits = tf.bitcast(uniform, tf.int32) * tf.cast(tf.abs(uniform) > 0, tf.int32)
    reached = tf.cast(bits[:, tf.newaxis] >= tf.constant(cdf_bits), tf.int32)
    return tf.reduce_sum(reached, axis=-1)


def sample_from_tables(
    tables: dict[str, np.ndarray], noise: tf.Tensor, uniform: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(z [n, D], component int32 [n]) from `prior_tables`, in builtin ops: the same numbers
    as `keras_vae.export.saved_model.sample_baked` of the same parameters."""
    component = component_from_bits(tables["cdf"], uniform)

    def row(name: str) -> tf.Tensor:
        return tf.bitcast(tf.gather(tf.constant(tables[name]), component), tf.float32)

    return row("loc") + row("scale") * noise, component


def litert_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The decoder with the TFLite signatures ``decode`` (z) and ``sample`` (noise, and
    uniform for a mixture or vamp prior), each of which refuses inputs that are not
    [n, latent_dim] (`exact_latents`) and [n] (`exact_uniform`)."""
    latent_dim = int(model.latent_dim)
    spec = [None, latent_dim]
    params = baked_prior(model)
    tables = None if params is None else prior_tables(params)

    if model.conditional:
        return _conditional_litert_archive(model, tables)

    def decode_z(z):
        return tf.cast(model.decode(z, training=False), tf.float32)

    def decode(z):
        return {"x_mean": decode_z(exact_latents(z, latent_dim))}

    def sample(noise):
        noise = exact_latents(noise, latent_dim)
        return {"x_mean": decode_z(noise), "z": tf.identity(noise)}

    def sample_mixture(noise, uniform):
        noise = exact_latents(noise, latent_dim)
        uniform = exact_uniform(uniform, tf.shape(noise)[0])
        z, component = sample_from_tables(tables, noise, uniform)
        return {"x_mean": decode_z(z), "z": z, COMPONENT: component}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(DECODE, decode, [tf.TensorSpec(spec, tf.float32, name="z")])
    noise_spec = tf.TensorSpec(spec, tf.float32, name="noise")
    if tables is None:
        archive.add_endpoint(SAMPLE, sample, [noise_spec])
    else:
        uniform_spec = tf.TensorSpec([None], tf.float32, name="uniform")
        archive.add_endpoint(SAMPLE, sample_mixture, [noise_spec, uniform_spec])
    return archive


def _conditional_litert_archive(
    model: keras.Model, tables: dict[str, np.ndarray] | None
) -> keras.export.ExportArchive:
    """`litert_archive` of a conditional decoder: ``decode`` (z, label) and ``sample``
    (noise, label[, uniform]), the label int32 [n] checked by `exact_labels`."""
    latent_dim, num_classes = int(model.latent_dim), int(model.num_classes)
    spec = [None, latent_dim]

    def decode_z(z, label):
        return tf.cast(model.decode(z, label, training=False), tf.float32)

    def decode(z, label):
        z = exact_latents(z, latent_dim)
        label = exact_labels(label, tf.shape(z)[0], num_classes)
        return {"x_mean": decode_z(z, label)}

    def sample(noise, label):
        noise = exact_latents(noise, latent_dim)
        label = exact_labels(label, tf.shape(noise)[0], num_classes)
        return {"x_mean": decode_z(noise, label), "z": tf.identity(noise)}

    def sample_mixture(noise, label, uniform):
        noise = exact_latents(noise, latent_dim)
        rows = tf.shape(noise)[0]
        label = exact_labels(label, rows, num_classes)
        uniform = exact_uniform(uniform, rows)
        z, component = sample_from_tables(tables, noise, uniform)
        return {"x_mean": decode_z(z, label), "z": z, COMPONENT: component}

    label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)
    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(DECODE, decode, [tf.TensorSpec(spec, tf.float32, name="z"), label_spec])
    noise_spec = tf.TensorSpec(spec, tf.float32, name="noise")
    if tables is None:
        archive.add_endpoint(SAMPLE, sample, [noise_spec, label_spec])
    else:
        uniform_spec = tf.TensorSpec([None], tf.float32, name="uniform")
        archive.add_endpoint(SAMPLE, sample_mixture, [noise_spec, label_spec, uniform_spec])
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
    from keras_vae.compat import tflite_schema

    schema = tflite_schema()
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


def wrong_latent_shapes(latent_dim: int) -> list[tuple[int, ...]]:
    """Inputs every signature must refuse: other ranks (also with exactly `latent_dim`
    elements per example) and widths one off `latent_dim`.

    Example:
        >>> wrong_latent_shapes(6)
        [(6,), (1, 2, 6), (1, 6, 1), (1, 1, 6), (1, 2, 3), (1, 1, 1, 6), (4, 7), (4, 5)]
    """
    shapes = [(latent_dim,), (1, 2, latent_dim), (1, latent_dim, 1), (1, 1, latent_dim)]
    factors = [a for a in range(2, latent_dim) if latent_dim % a == 0]
    if factors:
        shapes.append((1, factors[0], latent_dim // factors[0]))
    shapes += [(1, 1, 1, latent_dim), (CHECK_BATCH, latent_dim + 1)]
    if latent_dim > 1:
        shapes.append((CHECK_BATCH, latent_dim - 1))
    return list(dict.fromkeys(shapes))  # latent_dim 1 repeats (1, 1, 1)


def wrong_uniform_shapes(num_rows: int = CHECK_BATCH) -> list[tuple[int, ...]]:
    """``uniform`` inputs a mixture prior's ``sample`` must refuse beside a [num_rows, D]
    noise: other ranks (also with exactly `num_rows` values) and other row counts: one off,
    and one row (which would broadcast against the noise without `exact_uniform`).

    Example:
        >>> wrong_uniform_shapes(4)
        [(), (4, 1), (1, 4), (1, 1, 4), (5,), (3,), (1,)]
    """
    shapes = [(), (num_rows, 1), (1, num_rows), (1, 1, num_rows), (num_rows + 1,)]
    if num_rows > 1:
        shapes += [(num_rows - 1,), (1,)]
    return list(dict.fromkeys(shapes))


def check_rejects_wrong_rank(
    interp, latent_dim: int, file_name: str = "the TFLite file", num_classes: int = 0
) -> int:
    """Feed every input of every signature of `interp` each of its wrong shapes
    (`wrong_latent_shapes` for an [n, latent_dim] input, `wrong_uniform_shapes` for an [n]
    one: ``uniform``, or a conditional model's int32 ``label``) and, for ``label``, each
    out-of-range value of `keras_vae.export.export_utils.bad_labels` (`num_classes` K) in one
    row, the other inputs well-formed; raise `ExportError` if one runs (returns outputs)
    instead of failing. Returns the number of refusals checked.

    The interpreter stays usable afterwards (`check_variant` runs its parity checks on it next).
    """
    rng = np.random.default_rng(CHECK_SEED)

    def kind_of(detail: dict) -> str:
        if len(detail["shape_signature"]) == 2:
            return "latent"
        return LABEL if np.dtype(detail["dtype"]).kind in "iu" else "uniform"

    def value(shape, kind: str) -> np.ndarray:
        if kind == "latent":
            return rng.standard_normal(shape).astype(np.float32)
        if kind == LABEL:
            return rng.integers(0, num_classes, size=shape).astype(np.int32)
        return rng.uniform(size=shape).astype(np.float32)

    refused = 0
    for signature in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(signature)
        details = runner.get_input_details()
        kinds = {key: kind_of(d) for key, d in details.items()}
        if LABEL in kinds.values() and num_classes < 1:
            raise ValueError(
                f"{file_name}'s {signature!r} signature takes labels: pass num_classes, the "
                f"conditional model's K. Received: num_classes={num_classes!r}"
            )
        for key in sorted(details):
            kind = kinds[key]
            if kind == "latent":
                wrong = wrong_latent_shapes(latent_dim)
            else:
                wrong = wrong_uniform_shapes(CHECK_BATCH)
            cases: list[tuple[tuple[int, ...], np.ndarray | None]] = [(s, None) for s in wrong]
            if kind == LABEL:
                for bad in bad_labels(num_classes):
                    labels = value((CHECK_BATCH,), LABEL)
                    labels[-1] = bad
                    cases.append(((CHECK_BATCH,), labels))
            for shape, given in cases:
                # The others fit `shape`'s rows, so only `key` itself is wrong.
                rows = shape[0] if kind == "latent" and shape else CHECK_BATCH
                inputs = {
                    other: value((rows, latent_dim) if kinds[other] == "latent" else (rows,), k)
                    for other, k in kinds.items()
                    if other != key
                }
                inputs[key] = value(shape, kind) if given is None else given
                try:
                    outputs = runner(**inputs)
                except (RuntimeError, ValueError):
                    refused += 1
                    continue
                got = {name: tuple(np.shape(v)) for name, v in sorted(outputs.items())}
                if kind == "latent":
                    takes = f"[n, {latent_dim}]"
                elif kind == LABEL:
                    takes = f"[n] int32, n the rows of z or noise; {label_range(num_classes)}"
                else:
                    takes = "[n], n the rows of noise"
                what = f"of shape {shape}" if given is None else f"values {given.tolist()}"
                raise ExportError(
                    f"{file_name}'s {signature!r} signature ran on {key} {what} "
                    f"(returning {got}) instead of refusing it: it takes {takes} only; "
                    "nothing was written."
                )
    return refused


def x_mean_weight_count(model: keras.Model) -> int:
    """Number of decoder weights that ``x_mean`` depends on (a learned Gaussian scale has its
    own head, which the converter rightly prunes from files that only output the mean)."""
    decoder = model.decoder
    outputs = decoder.outputs
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        decoder = keras.Model(decoder.inputs, outputs[0])
    return sum(int(np.prod(w.shape)) for w in decoder.weights)


def check_uniforms(model: keras.Model, rows: int) -> np.ndarray:
    """`rows` uniforms from `CHECK_SEED`, then every cdf boundary of the Keras prior and the
    float32 just below it (where a component mapping that rounds differently would differ)."""
    params = model.prior_parameters(training=False)
    cdf = np.asarray(tf.cumsum(tf.exp(params.log_weights))[:-1], np.float32)
    drawn = np.random.default_rng(CHECK_SEED + 1).uniform(size=rows).astype(np.float32)
    below = np.nextafter(cdf, np.float32(-np.inf))
    return np.concatenate([drawn, cdf, below]).astype(np.float32)


def _labels(model: keras.Model, rows: int) -> dict[str, np.ndarray]:
    """The ``label`` feed of `rows` check rows for a conditional model (`check_labels`),
    else nothing."""
    if not model.conditional:
        return {}
    return {LABEL: check_labels(int(model.num_classes), rows)}


def _keras_decode(model: keras.Model, z: np.ndarray, labels: dict[str, np.ndarray]):
    if not labels:
        return np.asarray(model.decode(z))
    return np.asarray(model.decode(z, labels[LABEL]))


def check_sample(
    model: keras.Model, interp, file_name: str, noise: np.ndarray, tolerance: float
) -> float:
    """Run ``sample`` on `noise` (and, for a mixture or vamp prior, `check_uniforms`, with
    more noise rows for the boundaries; for a conditional model, labels spread over [0, K))
    against the Keras prior and decoder: z (which no quantization changes) to
    `FLOAT32_TOLERANCE`, the component exactly, x_mean to `tolerance`. Returns the largest
    error; `ExportError` when one is off."""
    if model.prior_name == "normal":
        labels = _labels(model, len(noise))
        sampled = run_signature(interp, SAMPLE, noise=noise, **labels)
        check_close(f"{file_name} sample z", noise, sampled["z"], 0.0)
        expected = _keras_decode(model, noise, labels)
        return check_close(f"{file_name} sample x_mean", expected, sampled["x_mean"], tolerance)
    uniform = check_uniforms(model, len(noise))
    extra = np.random.default_rng(CHECK_SEED + 2).standard_normal(
        (len(uniform) - len(noise), noise.shape[1])
    )
    noise = np.concatenate([noise, extra]).astype(np.float32)
    labels = _labels(model, len(noise))
    sampled = run_signature(interp, SAMPLE, noise=noise, uniform=uniform, **labels)
    z, component = sample_from_noise(model.prior_parameters(training=False), noise, uniform)
    check_close(f"{file_name} sample component", component, sampled[COMPONENT], 0.0)
    z_error = check_close(f"{file_name} sample z", z, sampled["z"], FLOAT32_TOLERANCE)
    expected = _keras_decode(model, np.asarray(z), labels)
    x_error = check_close(f"{file_name} sample x_mean", expected, sampled["x_mean"], tolerance)
    return max(z_error, x_error)


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
    # First, so the parity checks below also show the interpreter recovers from refusals.
    refusals = check_rejects_wrong_rank(
        interp, int(model.latent_dim), file_name, int(model.num_classes)
    )
    tolerance = FLOAT32_TOLERANCE if quantization == "none" else QUANTIZED_TOLERANCE
    z = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_BATCH, model.latent_dim))
    z = z.astype(np.float32)
    labels = _labels(model, CHECK_BATCH)
    expected = _keras_decode(model, z, labels)
    decoded = run_signature(interp, DECODE, z=z, **labels)["x_mean"]
    error = check_close(f"{file_name} decode x_mean", expected, decoded, tolerance)
    sample_error = check_sample(model, interp, file_name, z, tolerance)
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
        "checked_on": f"{CHECK_BATCH} draws z ~ N(0, I) against the Keras decoder"
        + (
            ""
            if model.prior_name == "normal"
            else "; sample also with uniforms at every cdf boundary, against the Keras prior"
        )
        + (
            f"; labels spread over [0, {model.num_classes}), and the labels "
            f"{bad_labels(int(model.num_classes))} refused"
            if model.conditional
            else ""
        ),
    }
