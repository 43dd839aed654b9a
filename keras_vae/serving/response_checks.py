"""The serving client's checks of what a server answers, and the caps that bound it: every
output an array of exactly the expected shape and kind (finite float32, int32 indices or bool
flags), the shapes a server's metadata may declare, how many bytes a response may have, and
TF Serving's JSON layouts (row-format predictions, model status, SignatureDefs) read into
plain values. Each raises `ServingError` naming where (`where`: "REST predict on model ...
at http://...") and what was wrong.

    >>> check_output("test", "z", [[0.5, 1.0]], shape=(1, 2)).dtype
    dtype('float32')
    >>> check_output("test", "z", [[float("nan")]], shape=(1, 1))
    Traceback (most recent call last):
    ...
    keras_vae.serving.results.ServingError: test: output 'z' contains NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_vae.limits import MAX_LAYER_WIDTH
from keras_vae.serving.request_checks import INT32_MAX, PredictCall, kind_of
from keras_vae.serving.results import ModelVersion, ServingError

# The most bytes one response may have, REST or gRPC, whatever the server says or declares.
# (The transports read it from this module when they use it, so a test may lower it.)
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
GRPC_MAX_MESSAGE_BYTES = MAX_RESPONSE_BYTES
# The most bytes a REST response may have: 16 MiB plus 64 bytes per expected output value (a
# float in JSON takes at most ~25), never more than MAX_RESPONSE_BYTES (nor when the expected
# shapes are not known).
REST_MIN_RESPONSE_BYTES = 16 * 1024 * 1024
REST_BYTES_PER_VALUE = 64
REST_MAX_RESPONSE_BYTES = MAX_RESPONSE_BYTES
# What a server's metadata may declare, when the constructor was not given the shapes: one
# example (``x``, ``x_mean``) at most 2**24 values (a 4096 x 4096 image) in at most 32 axes,
# and z at most MAX_LAYER_WIDTH values (the most `latent_dim` a config allows), so the expected
# response size, and with it the buffered bytes, never comes from the server alone.
MAX_DECLARED_EXAMPLE_VALUES = 2**24
MAX_DECLARED_RANK = 32
# TensorFlow's DataType enum names (as the metadata API spells them) -> NumPy names.
DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_STRING": "string",
    "DT_BOOL": "bool",
}


def _as_array(where: str, name: str, value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise ServingError(
            f"{where}: output {name!r} is not a rectangular array of {what} ({error})."
        ) from None


def _check_shape(where: str, name: str, array: np.ndarray, shape: Sequence[int] | None) -> None:
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ServingError(
            f"{where}: output {name!r} has shape {tuple(array.shape)} but expected {tuple(shape)}."
        )


def check_output(
    where: str, name: str, value: Any, shape: Sequence[int] | None, finite: bool = True
) -> np.ndarray:
    """Output `name` as a float32 array of exactly `shape` (any when None), finite unless
    `finite` is False."""
    array = _as_array(where, name, value, "numbers")
    if array.dtype.kind not in "iuf":
        what = {"U": "strings", "S": "strings", "b": "booleans"}.get(array.dtype.kind)
        if what is None:  # an object array: name the first value that is not a number
            odd = (v for v in array.flat if isinstance(v, bool) or not isinstance(v, (int, float)))
            what = f"{kind_of(next(odd, None))} values"
        raise ServingError(
            f"{where}: output {name!r} holds {what} (dtype {array.dtype}); expected numbers."
        )
    _check_shape(where, name, array, shape)
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    if not finite:
        return array
    if np.isnan(array).any():
        raise ServingError(f"{where}: output {name!r} contains NaN.")
    if np.isinf(array).any():
        raise ServingError(f"{where}: output {name!r} contains inf (or a value beyond float32).")
    return array


def check_indices(where: str, name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Output `name` as an int32 array of exactly `shape` with values in [0, 2**31 - 1]."""
    array = _as_array(where, name, value, "integers")
    if array.dtype.kind not in "iu":
        raise ServingError(
            f"{where}: output {name!r} has dtype {array.dtype}; expected integers (indices)."
        )
    _check_shape(where, name, array, shape)
    if array.size and (array.min() < 0 or array.max() > INT32_MAX):
        raise ServingError(
            f"{where}: output {name!r} holds values outside [0, {INT32_MAX}] (smallest "
            f"{array.min()}, largest {array.max()}); expected component indices."
        )
    return array.astype(np.int32)


def check_flags(where: str, name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Output `name` as a bool array of exactly `shape`."""
    array = _as_array(where, name, value, "booleans")
    if array.dtype != np.bool_:
        raise ServingError(f"{where}: output {name!r} has dtype {array.dtype}; expected booleans.")
    _check_shape(where, name, array, shape)
    return array


def check_outputs(
    where: str, outputs: Mapping[str, Any], call: PredictCall
) -> dict[str, np.ndarray]:
    """The outputs of a response to `call` as its `PredictCall` fields say: ``call.outputs``
    (all required) as checked float32 arrays, and those of ``call.indices`` (int32) and
    ``call.flags`` (bool) the response holds."""
    missing = [name for name in call.outputs if name not in outputs]
    if missing:
        raise ServingError(
            f"{where}: the response lacks outputs {missing} (it has {sorted(outputs)}); is "
            "the server serving a `keras-vae export` model under that name?"
        )
    shapes = call.expected_shapes or {}
    checked = {
        name: check_output(where, name, outputs[name], shapes.get(name), call.finite)
        for name in call.outputs
    }
    for names, check in ((call.indices, check_indices), (call.flags, check_flags)):
        for name in names:
            if name in outputs:
                checked[name] = check(where, name, outputs[name], shapes[name])
    for name in call.positive:
        if not (checked[name] > 0).all():
            raise ServingError(
                f"{where}: output {name!r} has values <= 0 (smallest {checked[name].min():g}); "
                "a standard deviation must be positive."
            )
    return checked


def check_declared(where: str, what: str, shape: Sequence[int], latent: bool) -> None:
    """ServingError unless `shape` [-1, sizes...], declared by a server's metadata for `what`,
    is within what this client accepts from a server: z at most MAX_LAYER_WIDTH values (the
    most `latent_dim` a config allows), one example at most MAX_DECLARED_EXAMPLE_VALUES in at
    most MAX_DECLARED_RANK axes."""
    dims = [int(d) for d in shape[1:]]
    limit = MAX_LAYER_WIDTH if latent else MAX_DECLARED_EXAMPLE_VALUES
    values = math.prod(dims)
    if values <= limit and len(dims) <= MAX_DECLARED_RANK:
        return
    kind = "z" if latent else "one example"
    raise ServingError(
        f"{where}: the server declares {what} of shape {list(shape)}: {values:,} values per "
        f"row in {len(dims)} axes, but this client accepts at most {limit:,} values for "
        f"{kind} (in at most {MAX_DECLARED_RANK} axes) from a server's metadata, so that no "
        "server can make it wait for, or hold, an unbounded response. Nothing was sent. If "
        "the model really is that large, pass data_shape and latent_dim to the client "
        "(`ServingClient.from_export` reads them from export.json)."
    )


def response_limit(expected_shapes: Mapping[str, Sequence[int]] | None) -> int:
    """The most bytes a REST response may have: REST_MIN_RESPONSE_BYTES plus
    REST_BYTES_PER_VALUE per expected output value, at most MAX_RESPONSE_BYTES (also when the
    shapes are not known)."""
    if expected_shapes is None:
        return MAX_RESPONSE_BYTES
    values = sum(math.prod(int(d) for d in shape) for shape in expected_shapes.values())
    return min(MAX_RESPONSE_BYTES, REST_MIN_RESPONSE_BYTES + REST_BYTES_PER_VALUE * values)


def rows_to_outputs(
    where: str, rows: Any, output_names: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, Any]:
    """Row-format ``predictions`` -> {output name: column}; the `optional` outputs are
    columns too when the first row holds them (then every row must)."""
    if not isinstance(rows, list):
        raise ServingError(f"{where}: 'predictions' is a {kind_of(rows)}, expected a list.")
    if len(output_names) == 1 and not any(isinstance(row, dict) for row in rows):
        return {output_names[0]: rows}  # one output: each row is its value
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    output_names = [*output_names, *(name for name in optional if name in first)]
    columns: dict[str, list] = {name: [] for name in output_names}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ServingError(
                f"{where}: row {i} of 'predictions' is a {kind_of(row)}, expected an object "
                f"holding {list(output_names)}."
            )
        missing = [name for name in output_names if name not in row]
        if missing:
            raise ServingError(
                f"{where}: row {i} of 'predictions' lacks outputs {missing} (it has {sorted(row)})."
            )
        for name in output_names:
            columns[name].append(row[name])
    return columns


def layout_error(where: str, error: Exception) -> ServingError:
    """The ServingError for a response whose JSON layout is not TF Serving's."""
    return ServingError(f"{where}: unexpected response layout ({type(error).__name__}: {error}).")


def versions_from_json(where: str, payload: Mapping[str, Any]) -> tuple[ModelVersion, ...]:
    """TF Serving's GetModelStatusResponse (REST JSON, or gRPC's in protobuf's JSON mapping,
    which leaves out default values) -> its versions, oldest first."""
    try:
        statuses = payload.get("model_version_status", [])
        if not isinstance(statuses, list):
            raise TypeError(f"model_version_status is a {kind_of(statuses)}, not a list")
        versions = []
        for entry in statuses:
            if not isinstance(entry, Mapping):
                raise TypeError(f"a version status is a {kind_of(entry)}, not an object")
            status = entry.get("status") or {}
            if not isinstance(status, Mapping):
                raise TypeError(f"a status is a {kind_of(status)}, not an object")
            code = str(status.get("error_code", "OK"))
            error = None if code in ("OK", "0") else f"{code}: {status.get('error_message', '')}"
            version = int(str(entry.get("version", "0")))
            versions.append(ModelVersion(version, str(entry.get("state", "UNKNOWN")), error))
    except (TypeError, ValueError, AttributeError) as error:
        raise layout_error(where, error) from None
    return tuple(sorted(versions))


def signatures_from_json(where: str, signatures: Any) -> dict[str, dict[str, Any]]:
    """{name: SignatureDef in protobuf's JSON mapping} -> ``{name: {"inputs"/"outputs":
    {tensor name: {"dtype", "shape"}}}}``, or ServingError naming the layout problem."""
    try:
        return {key: _signature_from_json(value) for key, value in signatures.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise layout_error(where, error) from None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} is a {kind_of(value)}, not an object")
    return value


def _tensor_infos(tensors: Any, what: str) -> dict[str, Any]:
    out = {}
    for name, info in _mapping(tensors, what).items():
        info = _mapping(info, f"{what}[{name!r}]")
        shape = _mapping(info.get("tensorShape", info.get("tensor_shape", {})), "tensor shape")
        dims = shape.get("dim", [])
        if not isinstance(dims, list):
            raise TypeError(f"the dims of {name!r} are a {kind_of(dims)}, not a list")
        dtype = str(info.get("dtype", "DT_INVALID"))
        out[name] = {
            "dtype": DTYPES.get(dtype, dtype.removeprefix("DT_").lower()),
            "shape": [int(_mapping(d, "a dim").get("size", -1)) for d in dims],
        }
    return out


def _signature_from_json(signature: Any) -> dict[str, Any]:
    """A SignatureDef in protobuf's JSON mapping -> ``{"inputs"/"outputs": {name: info}}``;
    TypeError/ValueError for anything else."""
    signature = _mapping(signature, "a signature")
    return {
        "inputs": _tensor_infos(signature.get("inputs", {}), "inputs"),
        "outputs": _tensor_infos(signature.get("outputs", {}), "outputs"),
    }
