"""The serving client's checks of what it is given, before anything is sent: its settings
(and those export.json gives), the arrays, labels and seeds of a call, and the per-request
row cap. Each returns the value
ready to send, or raises ValueError saying what was received and what is allowed.

    >>> check_int("rest_port", 0, 1, 65535)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `rest_port`, expected an integer in [1, 65535]...
    >>> check_labels([1, 2], rows=2, rows_of="x", num_classes=3).dtype
    dtype('int32')
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from keras_vae.json_files import read_json_file
from keras_vae.signatures import (
    EXPORT_JSON,
    INT64_MAX,
    INT64_MIN,
    LABEL,
    MAX_SAMPLES_KEY,
    NUM_CLASSES_KEY,
    check_max_samples,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# How a call of the scorer ends its refusal of non-finite x.
SCORER_FINITE_ONLY = (
    " The served scorer scores finite inputs only (it refuses others with an "
    "InvalidArgumentError): repair or drop those rows (and treat them as anomalous "
    "yourself). Nothing was sent."
)
# A served model name goes into the REST URL path as is: printable ASCII, none of / : ? # %.
MODEL_NAME = re.compile(r"[!-~]+")
NAME_FORBIDDEN = set("/:?#%")


class PredictCall(NamedTuple):
    """One Predict request and what its response must hold: `inputs` (checked) for `model`'s
    `signature`, sent columnar when `columnar` (else in the client's REST format); the outputs
    `outputs` as float32 (finite unless not `finite`; those in `positive` > 0) and, when the
    response has them, `indices` (int32) and `flags` (bool), each of exactly its
    `expected_shapes` entry where one is given."""

    model: str
    signature: str
    inputs: Mapping[str, np.ndarray]
    outputs: Sequence[str]
    expected_shapes: Mapping[str, Sequence[int]] | None = None
    columnar: bool = False
    indices: Sequence[str] = ()
    flags: Sequence[str] = ()
    finite: bool = True
    positive: Sequence[str] = ()


def kind_of(value: Any) -> str:
    """The JSON-ish name of `value`'s type, for messages ("null", "str", "dict", ...)."""
    return "null" if value is None else type(value).__name__


def invalid(name: str, expected: str, value: Any) -> ValueError:
    """The ValueError for argument `name`: what was `expected` and the `value` received."""
    return ValueError(
        f"Received an invalid value for `{name}`, expected {expected}. Received: {name}={value!r}"
    )


def is_int(value: Any) -> bool:
    """Whether `value` is a Python or NumPy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as an int, checked to be an integer in [low, high] (`invalid` otherwise)."""
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise invalid(name, f"an integer {bound}", value)
    return int(value)


def optional_int(name: str, value: Any, low: int, high: int | None = None) -> int | None:
    """None, or `value` checked by `check_int`."""
    return None if value is None else check_int(name, value, low, high)


def check_data_shape(value: Any) -> tuple[int, ...]:
    """`value` as one example's shape: a non-empty tuple of positive ints."""
    expected = "a non-empty sequence of positive integers (one example's shape, e.g. (28, 28))"
    if isinstance(value, (str, bytes, Mapping)):
        raise invalid("data_shape", expected, value)
    try:
        dims = tuple(value)
    except TypeError:
        raise invalid("data_shape", expected, value) from None
    if not dims or not all(is_int(d) and d >= 1 for d in dims):
        raise invalid("data_shape", expected, value)
    return tuple(int(d) for d in dims)


def check_host(value: Any) -> str:
    """`value` checked to be a host name or IP address (no URL, no port)."""
    expected = (
        "a non-empty host name or IP address such as 'localhost' or '10.0.0.5' (not a URL; "
        "the ports are `rest_port` and `grpc_port`)"
    )
    if not isinstance(value, str) or not value or any(c.isspace() or c == "/" for c in value):
        raise invalid("host", expected, value)
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in bare:  # only an IPv6 address may hold colons ("host:8501" is a mistake)
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise invalid("host", expected, value) from None
    return value


def check_model_name(name: str, value: Any) -> str:
    """`value` checked to be a model name TF Serving can serve (argument `name`)."""
    ok = isinstance(value, str) and MODEL_NAME.fullmatch(value) is not None
    if not ok or NAME_FORBIDDEN & set(value):
        raise invalid(
            name,
            "a non-empty model name as TF Serving serves it (printable ASCII without spaces "
            "or any of / : ? # %)",
            value,
        )
    return value


def check_timeout(value: Any) -> float:
    """`value` as a positive, finite number of seconds."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not number or not 0 < value < float("inf"):
        raise invalid("timeout", "a positive, finite number of seconds", value)
    return float(value)


def check_batch(name: str, value: Any, item_shape: Sequence[int], hint: str = "") -> np.ndarray:
    """`value` as float32 [batch, *item_shape], batch >= 1, finite; ValueError otherwise (`hint`
    ends the message about non-finite values)."""
    item_shape = tuple(int(d) for d in item_shape)
    expected = f"[batch, {', '.join(map(str, item_shape))}]"
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` is not an array ({error}); expected {expected}.") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
        or array.dtype == bool
    ):
        raise ValueError(
            f"`{name}` has dtype {array.dtype}; expected real numbers (sent as float32)."
        )
    if array.ndim != 1 + len(item_shape) or tuple(array.shape[1:]) != item_shape:
        raise ValueError(
            f"`{name}` has shape {tuple(array.shape)} but the served signature takes "
            f"{expected}; reshape it (one example is {item_shape})."
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch; pass at least one example.")
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"`{name}` contains NaN or inf (after conversion to float32) in {len(rows)} of "
            f"{len(array)} rows: [{shown}].{hint}"
        )
    return array


def check_rows(name: str, rows: int, call: str, cap: int) -> None:
    """ValueError when `rows` (of argument `name`; for `n`, its value) exceed the per-request
    cap `cap` of a `call` request."""
    if rows <= cap:
        return
    subject = f"`n`={rows} is" if name == "n" else f"`{name}` has {rows} rows,"
    raise ValueError(
        f"{subject} more than max_samples_per_request={cap}, the most rows one `{call}` "
        f"request may hold. Send at most {cap} per call (several calls with different seeds), "
        "or, if the models were exported with a higher cap (`keras-vae export "
        "--max-samples-per-request N`), pass ServingClient(max_samples_per_request=N) "
        "(`from_export` reads it from export.json). Nothing was sent."
    )


def check_seeds(value: Any) -> np.ndarray:
    """`value` as int64 seeds [rows], rows >= 1, each in [-2**63, 2**63 - 1]."""
    seeds = integers("seeds", value, INT64_MIN, INT64_MAX, "integers in [-2**63, 2**63 - 1]")
    if seeds.ndim != 1 or len(seeds) == 0:
        raise ValueError(
            f"`seeds` has shape {tuple(seeds.shape)}; expected a non-empty sequence, one "
            "seed per row. Nothing was sent."
        )
    return seeds


def integers(name: str, value: Any, low: int, high: int, what: str) -> np.ndarray:
    """`value` (a Python int, a sequence of them or an integer array) as an int64 array, each
    in [low, high]; ValueError naming `what` they must be otherwise."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"`{name}` is not an array ({error}); expected {what}.") from None
    if array.size == 0:
        return np.zeros(array.shape, np.int64)
    if array.dtype == object:  # Python ints beyond int64 (or anything else)
        flat = array.reshape(-1).tolist()
        if not all(is_int(v) for v in flat):
            odd = next(v for v in flat if not is_int(v))
            raise ValueError(
                f"`{name}` holds {kind_of(odd)} values; expected {what}. Nothing was sent."
            )
        small, large = min(flat, default=0), max(flat, default=0)
    elif array.dtype.kind in "iu":
        small, large = int(array.min()), int(array.max())
    else:
        raise ValueError(f"`{name}` has dtype {array.dtype}; expected {what}. Nothing was sent.")
    if small < low or large > high:
        raise ValueError(
            f"`{name}` holds values from {small} to {large}; expected {what}. Nothing was sent."
        )
    return np.asarray(array.tolist() if array.dtype == object else array, np.int64)


def check_labels(value: Any, rows: int | None, rows_of: str, num_classes: int | None) -> np.ndarray:
    """`value` as int32 labels [rows]: integers in [0, num_classes) (in [0, 2**31 - 1] when K
    is not known; the server checks it then), one per row of `rows_of` (a single label is
    repeated for every row); ValueError otherwise."""
    if num_classes:
        what = f"integer class indices in [0, {num_classes}) (num_classes={num_classes})"
    else:
        what = "integer class indices >= 0"
    labels = integers("labels", value, 0, (num_classes or INT32_MAX + 1) - 1, what)
    if labels.ndim == 0 and rows is not None:
        labels = np.full(rows, labels, np.int64)
    if labels.ndim != 1:
        raise ValueError(
            f"`labels` has shape {tuple(labels.shape)} but the served signatures take [batch]: "
            f"one label per row of `{rows_of}` (or one label for all rows). Nothing was sent."
        )
    if rows is not None and len(labels) != rows:
        raise ValueError(
            f"`labels` has {len(labels)} values but `{rows_of}` has {rows} rows; the served "
            "signatures take one label per row. Nothing was sent."
        )
    if len(labels) == 0:
        raise ValueError("`labels` is an empty batch; pass at least one label.")
    return labels.astype(np.int32)


def label_input(
    labels: Any, num_classes: int | None, rows: int, rows_of: str
) -> dict[str, np.ndarray]:
    """The ``label`` input of a call on `rows` rows of `rows_of` ({} without labels), or
    ValueError when the export's conditioning (`num_classes`: K, 0 for unconditional, None
    for not known) says otherwise."""
    if labels is None:
        if num_classes:
            raise ValueError(
                f"This export is conditional ({num_classes} classes): pass `labels`, "
                f"one class index in [0, {num_classes}) per row of `{rows_of}` (or one "
                "for all rows). Nothing was sent."
            )
        return {}
    if num_classes == 0:
        raise ValueError(
            "`labels` given, but this export is unconditional (export.json records no "
            "num_classes); leave them out, or pass ServingClient(num_classes=K) for a "
            "conditional export. Nothing was sent."
        )
    return {LABEL: check_labels(labels, rows, rows_of, num_classes)}


def check_conditional_sample(
    n: Any, seed: Any, labels: Any, seeds: Any, num_classes: int | None, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32, seeds int64), one per row, of a conditional export's ``sample`` call,
    checked against `num_classes` and the row cap `cap`."""
    if num_classes == 0:
        raise ValueError(
            "`labels`/`seeds` sample a conditional export, but this one is unconditional "
            "(export.json records no num_classes): call sample(n, seed). Nothing was sent."
        )
    if seed is not None:
        raise ValueError(
            "A conditional export samples one row per (label, seed): pass `seeds`, one "
            f"integer per row, instead of `seed`. Received: seed={seed!r}. Nothing was sent."
        )
    if labels is None or seeds is None:
        missing = "labels" if labels is None else "seeds"
        classes = f" in [0, {num_classes})" if num_classes else ""
        raise ValueError(
            f"A conditional export samples one row per (label, seed): pass both `labels` "
            f"(class indices{classes}, or one for all rows) and `seeds` (one int64 per row), "
            f"e.g. sample(labels=[7, 7, 7], seeds=[1, 2, 3]); `{missing}` is missing. "
            "Nothing was sent."
        )
    seeds = check_seeds(seeds)
    rows = len(seeds)
    if n is not None and check_int("n", n, 1, INT32_MAX) != rows:
        raise ValueError(
            f"`n`={n} but `seeds` has {rows} values; a conditional sample generates one row "
            "per seed (leave `n` out). Nothing was sent."
        )
    check_rows("seeds", rows, "sample", cap)
    return check_labels(labels, rows, "seeds", num_classes), seeds


def export_settings(export_dir: str | os.PathLike, given: Mapping[str, Any]) -> dict[str, Any]:
    """The client settings `given`, completed from DIR/export.json: ``data_shape``,
    ``latent_dim``, ``max_samples_per_request`` (when recorded) and ``num_classes`` (0, an
    unconditional export, when not recorded); ValueError naming the file otherwise."""
    path = Path(export_dir) / EXPORT_JSON
    fix = "pass the folder written by `keras-vae export`, or data_shape and latent_dim"
    record = read_json_file(path, fix)  # a JSONFileError is a ValueError naming the file
    try:
        model = record["model"]
        settings = {"data_shape": model["data_shape"], "latent_dim": model["latent_dim"]}
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"Cannot read the shapes from {path} ({type(error).__name__}: {error}); {fix}."
        ) from None
    settings.update(given)
    try:
        if MAX_SAMPLES_KEY in record and "max_samples_per_request" not in given:
            settings["max_samples_per_request"] = check_max_samples(record[MAX_SAMPLES_KEY])
        if "num_classes" not in given:
            num_classes = model.get(NUM_CLASSES_KEY) if isinstance(model, dict) else None
            settings["num_classes"] = check_int("num_classes", num_classes or 0, 0, INT32_MAX)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return settings
