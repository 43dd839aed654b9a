"""Checks of a converted LiteRT (TFLite) file that need no Keras model: its operators (builtin
only), its size against its weights' bytes, its signatures as export.json records them, and
the one refusal engine (`check_refusals`) every file's wrong inputs go through: the decoder
files' (`check_rejects_wrong_rank`: every wrong rank or width, uniform or label row count,
out-of-range label) and the encoder's and scorer's (`wrong_inputs`).

    >>> wrong_uniform_shapes(2)
    [(), (2, 1), (1, 2), (1, 1, 2), (3,), (1,)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    ExportError,
    bad_label_feeds,
    bad_labels,
    tensor_info,
)
from keras_vae.export.litert_models import BYTES_PER_WEIGHT
from keras_vae.signatures import LABEL, label_range

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter, SignatureRunner

# A file below this fraction of its weights' bytes has lost weights in the conversion.
MIN_SIZE_FRACTION = 0.9


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


def interpreter(content: bytes | bytearray) -> Interpreter:
    """An `ai_edge_litert` interpreter for a flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content)


def run_signature(
    content_or_interpreter: bytes | bytearray | Interpreter, name: str, **inputs: np.ndarray
) -> dict:
    """Run one signature of a TFLite model; returns its outputs by name."""
    runner = content_or_interpreter
    if isinstance(runner, (bytes, bytearray)):
        runner = interpreter(runner)
    return runner.get_signature_runner(name)(**inputs)


def describe_signatures(interp: Interpreter) -> dict[str, dict[str, Any]]:
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


def check_size(content: bytes, file_name: str, weights: int, quantization: str = "none") -> int:
    """The fewest bytes `file_name` may have: `MIN_SIZE_FRACTION` of its `weights` at
    `quantization`'s bytes per weight; `ExportError` if `content` is smaller (a conversion
    that silently drops weights gives a tiny file)."""
    minimum = int(MIN_SIZE_FRACTION * BYTES_PER_WEIGHT[quantization] * weights)
    if len(content) < minimum:
        as_type = "float32" if quantization == "none" else quantization
        raise ExportError(
            f"{file_name} is {len(content)} bytes but its {weights} weights need at least "
            f"{minimum} as {as_type}: the conversion dropped weights; nothing was written."
        )
    return minimum


def check_refusals(
    runner: SignatureRunner,
    cases: Mapping[str, Mapping[str, np.ndarray]],
    what: str,
    takes: str = "",
) -> int:
    """Run `runner` (a signature runner) on each case's feed; `ExportError` naming `what`,
    the case and `takes` (what the input accepts) if one returns outputs instead of failing.
    Returns the number of cases refused. The interpreter stays usable afterwards."""
    for case, feed in cases.items():
        try:
            outputs = runner(**feed)
        except (RuntimeError, ValueError):
            continue
        got = {name: tuple(np.shape(v)) for name, v in sorted(outputs.items())}
        raise ExportError(
            f"{what} ran on {case} (returning {got}) instead of refusing it{takes}; "
            "nothing was written."
        )
    return len(cases)


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
    interp: Interpreter,
    latent_dim: int,
    file_name: str = "the TFLite file",
    num_classes: int = 0,
) -> int:
    """Feed every input of every signature of a decoder file's `interp` each of its wrong
    shapes (`wrong_latent_shapes` for an [n, latent_dim] input, `wrong_uniform_shapes` for an
    [n] one: ``uniform``, or a conditional model's int32 ``label``) and, for ``label``, each
    out-of-range value of `bad_labels` (`num_classes` K) in one row, the other inputs
    well-formed (`check_refusals`). Returns the number of refusals checked.
    """
    rng = np.random.default_rng(CHECK_SEED)

    def kind_of(detail: dict) -> str:
        if len(detail["shape_signature"]) == 2:
            return "latent"
        return LABEL if np.dtype(detail["dtype"]).kind in "iu" else "uniform"

    def value(shape: tuple[int, ...], kind: str) -> np.ndarray:
        if kind == "latent":
            return rng.standard_normal(shape).astype(np.float32)
        if kind == LABEL:
            return rng.integers(0, num_classes, size=shape).astype(np.int32)
        return rng.uniform(size=shape).astype(np.float32)

    takes = {
        "latent": f"[n, {latent_dim}]",
        LABEL: f"[n] int32, n the rows of z or noise; {label_range(num_classes)}",
        "uniform": "[n], n the rows of noise",
    }
    refused = 0
    for signature in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(signature)
        kinds = {key: kind_of(d) for key, d in runner.get_input_details().items()}
        if LABEL in kinds.values() and num_classes < 1:
            raise ValueError(
                f"{file_name}'s {signature!r} signature takes labels: pass num_classes, the "
                f"conditional model's K. Received: num_classes={num_classes!r}"
            )
        for key, kind in sorted(kinds.items()):
            if kind == "latent":
                wrong = wrong_latent_shapes(latent_dim)
            else:
                wrong = wrong_uniform_shapes(CHECK_BATCH)
            cases = {}
            for shape in wrong:
                # The others fit `shape`'s rows, so only `key` itself is wrong.
                rows = shape[0] if kind == "latent" and shape else CHECK_BATCH
                feed = {
                    other: value((rows, latent_dim) if k == "latent" else (rows,), k)
                    for other, k in kinds.items()
                    if other != key
                }
                cases[f"{key} of shape {shape}"] = {**feed, key: value(shape, kind)}
            if kind == LABEL:
                for bad in bad_labels(num_classes):
                    feed = {
                        other: value(
                            (CHECK_BATCH, latent_dim) if k == "latent" else (CHECK_BATCH,), k
                        )
                        for other, k in kinds.items()
                    }
                    feed[LABEL][-1] = bad
                    cases[f"{key} values {feed[LABEL].tolist()}"] = feed
            what = f"{file_name}'s {signature!r} signature"
            refused += check_refusals(runner, cases, what, f": it takes {takes[kind]} only")
    return refused


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
        cases["one label fewer than x"] = {**feed, LABEL: feed[LABEL][:-1]}
        cases.update(bad_label_feeds(feed, int(model.num_classes)))
    return cases
