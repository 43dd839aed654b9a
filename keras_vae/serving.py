"""A client for the encoder, decoder and scorer served by TF Serving from a `keras-vae export`
folder.

REST (JSON, port 8501; Python's standard library only) or gRPC (port 8500, needs
``tensorflow-serving-api``, in the ``serving`` extra). Inputs are checked against the served
signatures (their shapes come from the constructor, from export.json or from the model
server's metadata API) before any prediction request is sent; every call of a public method
has one deadline (``timeout`` seconds for everything it does: connecting, sending, waiting and
receiving, metadata requests included); every response is checked (each output a finite
float32 array of exactly the expected shape, ``z_stddev > 0``; the scorer's scores may be NaN or
infinite, passed on as the server sent them); and every failure raises
`ServingError` saying which model, signature and address failed and why (its ``code`` is the
server's status, e.g. "NOT_FOUND", when the server answered with one).

Example:

    >>> client = ServingClient("localhost", protocol="rest")      # doctest: +SKIP
    >>> z_mean, z_stddev = client.encode(x_test[:8])               # doctest: +SKIP
    >>> client.decode(z_mean).shape                                # doctest: +SKIP
    (8, 28, 28)
    >>> x_mean, z = client.sample(16, seed=0)                      # doctest: +SKIP
    >>> drawn = client.posterior_sample(x_test[:8], noise)          # doctest: +SKIP
    >>> drawn.z.shape, drawn.log_q.shape                           # doctest: +SKIP
    ((8, 20), (8,))

Anomaly scores from the ``scorer`` model, batchable generation from the decoder's
``generate`` signature (row i from seeds[i] alone), and what the server serves:

    >>> scores = client.score(x_test[:8])                           # doctest: +SKIP
    >>> scores.log_likelihood.shape, scores.is_anomaly              # doctest: +SKIP
    ((8,), None)
    >>> client.generate([1, 2, 3]).x_mean.shape                     # doctest: +SKIP
    (3, 28, 28)
    >>> client.metadata("decoder")["decoder"].versions              # doctest: +SKIP
    (ModelVersion(version=1, state='AVAILABLE', error=None),)

A conditional export (``keras-vae train --conditional``) takes one class label per row in
every call, checked against export.json's ``num_classes`` K (`from_export`) before sending:

    >>> client = ServingClient.from_export("export")                # doctest: +SKIP
    >>> z_mean, z_stddev = client.encode(x_test[:8], labels=y_test[:8])  # doctest: +SKIP
    >>> sevens = client.sample(labels=[7, 7, 7], seeds=[1, 2, 3])   # doctest: +SKIP
    >>> sevens.x_mean.shape                                         # doctest: +SKIP
    (3, 28, 28)
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from keras_vae.json_files import read_json_file
from keras_vae.limits import MAX_LAYER_WIDTH, check_choice  # no TensorFlow: the client stays light
from keras_vae.signatures import (
    COMPONENT,
    DECODER,
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    ENCODER,
    EXPORT_JSON,
    GENERATE,
    INT64_MAX,
    INT64_MIN,
    IS_ANOMALY,
    LABEL,
    MAX_SAMPLES_KEY,
    MAX_VERSION,
    NUM_CLASSES_KEY,
    POSTERIOR_SAMPLE,
    SAMPLE,
    SCORE_NAMES,
    SCORER,
    SEEDS,
    SERVING_DEFAULT,
    check_max_samples,
)

PROTOCOLS = ("rest", "grpc")
REST_FORMATS = ("columnar", "row")
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# The most bytes one response may have, REST or gRPC, whatever the server says or declares.
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
_READ_CHUNK = 64 * 1024
# A served model name goes into the REST URL path as is: printable ASCII, none of / : ? # %.
_MODEL_NAME = re.compile(r"[!-~]+")
_NAME_FORBIDDEN = set("/:?#%")
# TensorFlow's DataType enum names (as the metadata API spells them) -> NumPy names.
_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_STRING": "string",
    "DT_BOOL": "bool",
}
# What TF Serving's REST API answers with an error status, as gRPC status names.
_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED"}
_AVAILABLE = "AVAILABLE"


class ServingError(RuntimeError):
    """A request to the model server failed; the message says which one, where and why.

    ``code`` is the status the server answered with as a gRPC status name ("NOT_FOUND",
    "INVALID_ARGUMENT", ...; the REST API's HTTP 404 and 400 map to those two, other HTTP
    errors read "HTTP <status>"), or None when the failure is not a server's answer (a timeout,
    no connection, a malformed response).
    """

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class Encoding(NamedTuple):
    """q(z|x) for a batch: each [batch, latent_dim]."""

    z_mean: np.ndarray
    z_stddev: np.ndarray


class _SampleArrays(NamedTuple):
    x_mean: np.ndarray
    z: np.ndarray


class Samples(_SampleArrays):
    """Prior samples: ``x_mean`` [n, *data_shape] decoded from ``z`` [n, latent_dim], and
    ``component`` int32 [n], each draw's mixture component, for a mixture or vamp prior
    (None for N(0, I)). It unpacks as ``x_mean, z`` whatever the prior; read ``component``
    by name."""

    component: np.ndarray | None

    def __new__(cls, x_mean: np.ndarray, z: np.ndarray, component: np.ndarray | None = None):
        samples = super().__new__(cls, x_mean, z)
        samples.component = component
        return samples

    def __repr__(self) -> str:
        return f"Samples(x_mean={self.x_mean!r}, z={self.z!r}, component={self.component!r})"


class ScoreResult(NamedTuple):
    """Per-example anomaly scores from the served scorer, in nats, each float32 [batch]:
    ``elbo``, ``log_likelihood`` (importance-weighted, K samples fixed at export),
    ``reconstruction`` (high = normal) and ``kl`` (high = unusual), as the server computed them
    (NaN or -inf are passed on: a score the model could not make finite is no reason to lose
    the others); ``is_anomaly``, bool [batch], when the served scorer is calibrated (the run's
    threshold), else None."""

    elbo: np.ndarray
    log_likelihood: np.ndarray
    reconstruction: np.ndarray
    kl: np.ndarray
    is_anomaly: np.ndarray | None


class ModelVersion(NamedTuple):
    """One version of a served model as TF Serving's model status API reports it: ``state``
    is "AVAILABLE" (serving), "START", "LOADING", "UNLOADING", "END" or "UNKNOWN"; ``error``
    the version's status ("CODE: message", e.g. why it failed to load), None when OK."""

    version: int
    state: str
    error: str | None


class ServedModel(NamedTuple):
    """What the server serves under one model name: every version it knows (``versions``,
    oldest first), the version calls go to (``version``: the client's `version`, else the
    latest available; None when no version is available) and that version's ``signatures``
    (``{signature name: {"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}}``, -1 marks
    any size; empty when no version is available)."""

    name: str
    version: int | None
    versions: tuple[ModelVersion, ...]
    signatures: dict[str, dict[str, Any]]


class PosteriorSample(NamedTuple):
    """One draw z ~ q(z|x) per example: ``z`` [batch, latent_dim], ``log_q`` [batch] (log
    q(z|x) in nats), and the encoder's Gaussian ``z_mean``, ``z_stddev`` [batch, latent_dim]
    (of an IAF's base distribution, before its flow)."""

    z: np.ndarray
    log_q: np.ndarray
    z_mean: np.ndarray
    z_stddev: np.ndarray


# ---------------------------------------------------------------------- argument checks
def _invalid(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(
        f"Received an invalid value for `{name}`, expected {expected}. Received: {name}={value!r}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise _invalid(name, f"an integer {bound}", value)
    return int(value)


def _check_data_shape(value: Any) -> tuple[int, ...]:
    expected = "a non-empty sequence of positive integers (one example's shape, e.g. (28, 28))"
    if isinstance(value, (str, bytes, Mapping)):
        raise _invalid("data_shape", expected, value)
    try:
        dims = tuple(value)
    except TypeError:
        raise _invalid("data_shape", expected, value) from None
    if not dims or not all(_is_int(d) and d >= 1 for d in dims):
        raise _invalid("data_shape", expected, value)
    return tuple(int(d) for d in dims)


def _check_host(value: Any) -> str:
    expected = (
        "a non-empty host name or IP address such as 'localhost' or '10.0.0.5' (not a URL; "
        "the ports are `rest_port` and `grpc_port`)"
    )
    if not isinstance(value, str) or not value or any(c.isspace() or c == "/" for c in value):
        raise _invalid("host", expected, value)
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in bare:  # only an IPv6 address may hold colons ("host:8501" is a mistake)
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            raise _invalid("host", expected, value) from None
    return value


def _check_model_name(name: str, value: Any) -> str:
    ok = isinstance(value, str) and _MODEL_NAME.fullmatch(value) is not None
    if not ok or _NAME_FORBIDDEN & set(value):
        raise _invalid(
            name,
            "a non-empty model name as TF Serving serves it (printable ASCII without spaces "
            "or any of / : ? # %)",
            value,
        )
    return value


def _check_batch(name: str, value: Any, item_shape: Sequence[int], hint: str = "") -> np.ndarray:
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


def _check_rows(name: str, rows: int, call: str, cap: int) -> None:
    """ValueError when `rows` (of argument `name`) exceed the per-request cap `cap`."""
    if rows > cap:
        raise ValueError(
            f"`{name}` has {rows} rows, more than max_samples_per_request={cap}, the most rows "
            f"one `{call}` request may hold. Send at most {cap} per call, or, if the models "
            "were exported with a higher cap (`keras-vae export --max-samples-per-request N`), "
            "pass ServingClient(max_samples_per_request=N) (`from_export` reads it from "
            "export.json). Nothing was sent."
        )


def _check_seeds(value: Any) -> np.ndarray:
    """`value` as int64 seeds [rows], rows >= 1, each in [-2**63, 2**63 - 1]."""
    seeds = _integers("seeds", value, INT64_MIN, INT64_MAX, "integers in [-2**63, 2**63 - 1]")
    if seeds.ndim != 1 or len(seeds) == 0:
        raise ValueError(
            f"`seeds` has shape {tuple(seeds.shape)}; expected a non-empty sequence, one "
            "seed per row. Nothing was sent."
        )
    return seeds


def _integers(name: str, value: Any, low: int, high: int, what: str) -> np.ndarray:
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
        if not all(_is_int(v) for v in flat):
            odd = next(v for v in flat if not _is_int(v))
            raise ValueError(
                f"`{name}` holds {_kind_of(odd)} values; expected {what}. Nothing was sent."
            )
        small, large = min(flat, default=0), max(flat, default=0)
    elif array.dtype.kind in "iu":
        small = int(array.min()) if array.size else 0
        large = int(array.max()) if array.size else 0
    else:
        raise ValueError(f"`{name}` has dtype {array.dtype}; expected {what}. Nothing was sent.")
    if small < low or large > high:
        raise ValueError(
            f"`{name}` holds values from {small} to {large}; expected {what}. Nothing was sent."
        )
    return np.asarray(array.tolist() if array.dtype == object else array, np.int64)


def _check_labels(
    value: Any, rows: int | None, rows_of: str, num_classes: int | None
) -> np.ndarray:
    """`value` as int32 labels [rows]: integers in [0, num_classes) (in [0, 2**31 - 1] when K
    is not known; the server checks it then), one per row of `rows_of` (a single label is
    repeated for every row); ValueError otherwise."""
    if num_classes:
        what = f"integer class indices in [0, {num_classes}) (num_classes={num_classes})"
    else:
        what = "integer class indices >= 0"
    labels = _integers("labels", value, 0, (num_classes or INT32_MAX + 1) - 1, what)
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


# ---------------------------------------------------------------------- response checks
def _check_output(
    where: str, name: str, value: Any, shape: Sequence[int] | None, finite: bool = True
) -> np.ndarray:
    """Output `name` as a float32 array of exactly `shape` (any when None), finite unless
    `finite` is False."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise ServingError(
            f"{where}: output {name!r} is not a rectangular array of numbers ({error})."
        ) from None
    if array.dtype.kind not in "iuf":
        what = {"U": "strings", "S": "strings", "b": "booleans"}.get(array.dtype.kind)
        if what is None:  # an object array: name the first value that is not a number
            odd = (v for v in array.flat if isinstance(v, bool) or not isinstance(v, (int, float)))
            what = f"{_kind_of(next(odd, None))} values"
        raise ServingError(
            f"{where}: output {name!r} holds {what} (dtype {array.dtype}); expected numbers."
        )
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ServingError(
            f"{where}: output {name!r} has shape {tuple(array.shape)} but expected {tuple(shape)}."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(np.float32)
    if not finite:
        return array
    if np.isnan(array).any():
        raise ServingError(f"{where}: output {name!r} contains NaN.")
    if np.isinf(array).any():
        raise ServingError(f"{where}: output {name!r} contains inf (or a value beyond float32).")
    return array


def _check_indices(where: str, name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Output `name` as an int32 array of exactly `shape` with values in [0, 2**31 - 1]."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise ServingError(
            f"{where}: output {name!r} is not a rectangular array of integers ({error})."
        ) from None
    if array.dtype.kind not in "iu":
        raise ServingError(
            f"{where}: output {name!r} has dtype {array.dtype}; expected integers (indices)."
        )
    if tuple(array.shape) != tuple(shape):
        raise ServingError(
            f"{where}: output {name!r} has shape {tuple(array.shape)} but expected {tuple(shape)}."
        )
    if array.size and (array.min() < 0 or array.max() > INT32_MAX):
        raise ServingError(
            f"{where}: output {name!r} holds values outside [0, {INT32_MAX}] (smallest "
            f"{array.min()}, largest {array.max()}); expected component indices."
        )
    return array.astype(np.int32)


def _check_flags(where: str, name: str, value: Any, shape: Sequence[int]) -> np.ndarray:
    """Output `name` as a bool array of exactly `shape`."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise ServingError(
            f"{where}: output {name!r} is not a rectangular array of booleans ({error})."
        ) from None
    if array.dtype != np.bool_:
        raise ServingError(f"{where}: output {name!r} has dtype {array.dtype}; expected booleans.")
    if tuple(array.shape) != tuple(shape):
        raise ServingError(
            f"{where}: output {name!r} has shape {tuple(array.shape)} but expected {tuple(shape)}."
        )
    return array


def _check_declared(where: str, what: str, shape: Sequence[int], latent: bool) -> None:
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


def _response_limit(expected_shapes: Mapping[str, Sequence[int]] | None) -> int:
    """The most bytes a REST response may have: REST_MIN_RESPONSE_BYTES plus
    REST_BYTES_PER_VALUE per expected output value, at most MAX_RESPONSE_BYTES (also when the
    shapes are not known)."""
    if expected_shapes is None:
        return MAX_RESPONSE_BYTES
    values = sum(math.prod(int(d) for d in shape) for shape in expected_shapes.values())
    return min(MAX_RESPONSE_BYTES, REST_MIN_RESPONSE_BYTES + REST_BYTES_PER_VALUE * values)


def _kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# ---------------------------------------------------------------------- REST transport
class _DeadlineSocket(socket.socket):
    """A TCP socket whose every send and receive waits at most until `deadline`
    (`time.monotonic()` seconds), so a server trickling bytes cannot stretch a call."""

    deadline = math.inf

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed")
        self.settimeout(remaining)

    def recv(self, *args, **kwargs):
        self._arm()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        self._arm()
        return super().recv_into(*args, **kwargs)

    def send(self, *args, **kwargs):
        self._arm()
        return super().send(*args, **kwargs)

    def sendall(self, *args, **kwargs):  # the timeout bounds the whole sendall (Python >= 3.5)
        self._arm()
        return super().sendall(*args, **kwargs)


def _resolve(host: str, port: int, deadline: float) -> list:
    """getaddrinfo, given up on at `deadline` (it has no timeout of its own)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # a numeric address resolves at once
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    result: list = []

    def run() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=run, name="keras-vae-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if not result:
        raise TimeoutError(f"resolving {host!r} took too long")
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def _open_socket(host: str, port: int, deadline: float) -> _DeadlineSocket:
    error: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = _DeadlineSocket(family, kind, proto)
        sock.deadline = deadline
        try:
            sock._arm()
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OSError as failure:
            sock.close()
            error = failure
    raise error if error is not None else OSError(f"no address found for {host!r}")


class _Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection whose socket obeys the deadline of the call using it."""

    deadline = math.inf

    def connect(self) -> None:
        self.sock = _open_socket(self.host, self.port, self.deadline)

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline


class _Stage:
    """What a REST call is doing (for the error message)."""

    CONNECT, SEND, WAIT, RECEIVE = (
        "connecting",
        "sending the request",
        "waiting for the response",
        "receiving the response",
    )


class ServingClient:
    """Calls the ``encoder``, ``decoder`` and ``scorer`` models of a TF Serving model server.

    Args:
        host: the model server's host name or address. Default "localhost".
        protocol: "rest" (JSON over HTTP) or "grpc". Default "rest".
        rest_port: REST API port. Default 8501.
        grpc_port: gRPC port. Default 8500.
        timeout: seconds one call of `encode`, `posterior_sample`, `decode`, `sample`,
            `generate`, `score`, `metadata`, `predict` or `signature` may take in all: one
            deadline for everything it does
            (resolving the host, connecting, sending, waiting and receiving, and any metadata
            request it makes first), however slowly the server trickles its answer. gRPC gets
            the time left as the RPC deadline.
            Default 10.
        encoder: served name of the encoder. Default "encoder".
        decoder: served name of the decoder. Default "decoder".
        scorer: served name of the scorer. Default "scorer".
        version: a model version (an integer in [1, 2**63 - 1]) to ask for; None (default)
            lets the server pick (latest).
        data_shape: one example's shape; None: read from the server's model metadata.
        latent_dim: size of z; None: read from the server's model metadata.
        rest_format: "columnar" (``{"inputs": ...}``, default) or "row" (``{"instances": ...}``)
            for encode and decode; `sample` is always columnar.
        max_samples_per_request: the most rows one `sample`, `generate` or `score` call may
            hold; it must not be above the cap the models were exported with (export.json's
            ``max_samples_per_request``; `from_export` reads it). Default 10,000.
        num_classes: K of a conditional export (export.json's ``num_classes``; `from_export`
            reads it): every call then needs labels in [0, K), checked before sending. 0: the
            export is unconditional, so labels are refused. None (default): not known; labels
            are sent when given (checked to be integers >= 0) and the server checks the rest.

    Shapes the constructor is not given are read once from the metadata of the model that
    takes them (``x`` of the encoder, ``z`` of the decoder) and kept; until then, a response is
    checked against the outputs the called model's own metadata declares. Whatever the server
    says, what the client holds is bounded: metadata may declare at most
    MAX_DECLARED_EXAMPLE_VALUES values per example (in at most MAX_DECLARED_RANK axes) and
    MAX_LAYER_WIDTH for z (ServingError before anything is sent otherwise), and a response may
    have at most 16 MiB plus 64 bytes per expected value (REST, read in chunks and cut there),
    never more than MAX_RESPONSE_BYTES (REST and gRPC).

    Example:
        >>> client = ServingClient("localhost", data_shape=(28, 28), latent_dim=20)
        >>> try:
        ...     client.decode(np.zeros((1, 3)))   # checked before anything is sent
        ... except ValueError as error:
        ...     print(str(error)[:56])
        `z` has shape (1, 3) but the served signature takes [bat
    """

    def __init__(
        self,
        host: str = "localhost",
        *,
        protocol: str = "rest",
        rest_port: int = DEFAULT_REST_PORT,
        grpc_port: int = DEFAULT_GRPC_PORT,
        timeout: float = 10.0,
        encoder: str = ENCODER,
        decoder: str = DECODER,
        scorer: str = SCORER,
        version: int | None = None,
        data_shape: Sequence[int] | None = None,
        latent_dim: int | None = None,
        rest_format: str = "columnar",
        max_samples_per_request: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
        num_classes: int | None = None,
    ):
        check_choice("protocol", protocol, PROTOCOLS)
        check_choice("rest_format", rest_format, REST_FORMATS)
        self.host = _check_host(host)
        self.protocol = protocol
        self.rest_port = _check_int("rest_port", rest_port, 1, 65535)
        self.grpc_port = _check_int("grpc_port", grpc_port, 1, 65535)
        number = isinstance(timeout, (int, float, np.integer, np.floating)) and not isinstance(
            timeout, (bool, np.bool_)
        )
        if not number or not 0 < timeout < math.inf:
            raise _invalid("timeout", "a positive, finite number of seconds", timeout)
        self.timeout = float(timeout)
        self.encoder = _check_model_name("encoder", encoder)
        self.decoder = _check_model_name("decoder", decoder)
        self.scorer = _check_model_name("scorer", scorer)
        self.version = None if version is None else _check_int("version", version, 1, MAX_VERSION)
        self.data_shape = None if data_shape is None else _check_data_shape(data_shape)
        self.latent_dim = None if latent_dim is None else _check_int("latent_dim", latent_dim, 1)
        self.rest_format = rest_format
        if isinstance(max_samples_per_request, np.integer):
            max_samples_per_request = int(max_samples_per_request)
        self.max_samples_per_request = check_max_samples(max_samples_per_request)
        self.num_classes = (
            None if num_classes is None else _check_int("num_classes", num_classes, 0, INT32_MAX)
        )
        self._idle: list[_Connection] = []  # REST keep-alive connections not in use
        self._lock = threading.Lock()
        self._served: dict[str, dict[str, Any]] = {}  # model -> its serving_default (metadata)
        self._channel = None
        self._stub = None
        self._model_stub = None  # gRPC ModelService (model status)

    @classmethod
    def from_export(cls, export_dir: str | os.PathLike, host: str = "localhost", **kwargs):
        """A client whose shapes, `max_samples_per_request` and `num_classes` come from
        DIR/export.json (unless given; an export.json without the cap gets the default,
        10,000; one without ``num_classes`` is an unconditional export: 0)."""
        path = Path(export_dir) / EXPORT_JSON
        fix = "pass the folder written by `keras-vae export`, or data_shape and latent_dim"
        record = read_json_file(path, fix)  # a JSONFileError is a ValueError naming the file
        try:
            model = record["model"]
            data_shape, latent_dim = model["data_shape"], model["latent_dim"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"Cannot read the shapes from {path} ({type(error).__name__}: {error}); {fix}."
            ) from None
        kwargs.setdefault("data_shape", data_shape)
        kwargs.setdefault("latent_dim", latent_dim)
        if MAX_SAMPLES_KEY in record and "max_samples_per_request" not in kwargs:
            try:
                kwargs["max_samples_per_request"] = check_max_samples(record[MAX_SAMPLES_KEY])
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        if "num_classes" not in kwargs:
            num_classes = model.get(NUM_CLASSES_KEY) if isinstance(model, dict) else None
            try:
                kwargs["num_classes"] = _check_int("num_classes", num_classes or 0, 0, INT32_MAX)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        return cls(host, **kwargs)

    # ------------------------------------------------------------------ public API
    def encode(self, x: Any, labels: Any = None) -> Encoding:
        """(z_mean, z_stddev) of q(z|x) (q(z|x, y) with `labels`, one class index per example,
        for a conditional export) from the encoder's ``serving_default``."""
        deadline = self._deadline()
        x = _check_batch("x", x, self._data_shape(deadline))
        label = self._label_input(labels, len(x), "x")
        latent = self.latent_dim
        if latent is None:
            (latent,) = self._served_dims(self.encoder, "outputs", "z_mean", deadline, latent=True)
        shape = (len(x), latent)
        out = self._predict(
            self.encoder,
            SERVING_DEFAULT,
            {"x": x, **label},
            ("z_mean", "z_stddev"),
            deadline,
            expected_shapes={"z_mean": shape, "z_stddev": shape},
        )
        self._check_positive_stddev(SERVING_DEFAULT, out["z_stddev"])
        return Encoding(out["z_mean"], out["z_stddev"])

    def posterior_sample(self, x: Any, noise: Any, labels: Any = None) -> PosteriorSample:
        """One draw z ~ q(z|x) per example from the encoder's ``posterior_sample`` signature,
        made from `noise` [batch, latent_dim] (standard normal draws, one row per example of
        `x`): z (through the flow for an IAF posterior), log q(z|x), z_mean and z_stddev. The
        same x and noise always give the same z. A conditional export takes `labels` too
        (q(z|x, y)). All are checked before sending."""
        deadline = self._deadline()
        x = _check_batch("x", x, self._data_shape(deadline))
        label = self._label_input(labels, len(x), "x")
        latent = self.latent_dim
        if latent is None:
            (latent,) = self._served_dims(self.encoder, "outputs", "z_mean", deadline, latent=True)
        noise = _check_batch("noise", noise, (latent,))
        if len(noise) != len(x):
            raise ValueError(
                f"`noise` has {len(noise)} rows but `x` has {len(x)} examples; "
                "posterior_sample takes one noise row per example. Nothing was sent."
            )
        shape = (len(x), latent)
        out = self._predict(
            self.encoder,
            POSTERIOR_SAMPLE,
            {"x": x, **label, "noise": noise},
            ("z", "log_q", "z_mean", "z_stddev"),
            deadline,
            expected_shapes={"z": shape, "log_q": (len(x),), "z_mean": shape, "z_stddev": shape},
        )
        self._check_positive_stddev(POSTERIOR_SAMPLE, out["z_stddev"])
        return PosteriorSample(out["z"], out["log_q"], out["z_mean"], out["z_stddev"])

    def _check_positive_stddev(self, signature: str, z_stddev: np.ndarray) -> None:
        if not (z_stddev > 0).all():
            where = self._where(self.encoder, signature)
            raise ServingError(
                f"{where}: output 'z_stddev' has values <= 0 (smallest "
                f"{z_stddev.min():g}); a standard deviation must be positive."
            )

    def decode(self, z: Any, labels: Any = None) -> np.ndarray:
        """E[x|z] (E[x|z, y] with `labels`, one class index per row, for a conditional
        export), [batch, *data_shape], from the decoder's ``serving_default``."""
        deadline = self._deadline()
        z = _check_batch("z", z, (self._latent_dim(deadline),))
        label = self._label_input(labels, len(z), "z")
        shape = (len(z), *self._decoded_shape(deadline))
        out = self._predict(
            self.decoder,
            SERVING_DEFAULT,
            {"z": z, **label},
            ("x_mean",),
            deadline,
            expected_shapes={"x_mean": shape},
        )
        return out["x_mean"]

    def sample(
        self,
        n: int | None = None,
        seed: int | None = None,
        *,
        labels: Any = None,
        seeds: Any = None,
    ) -> Samples:
        """`n` prior samples from the decoder's ``sample`` signature; the same seed gives the
        same samples. `n` may be at most `max_samples_per_request` (checked before sending).
        ``component`` holds each draw's mixture component when the served model outputs it
        (a mixture or vamp prior), else None.

        A conditional export samples by rows instead: ``sample(labels=..., seeds=...)``, one
        class index in [0, K) (or one for all rows) and one int64 seed per row; row i is a
        pure function of (labels[i], seeds[i]) alone, whatever else is in the request (`n`,
        if given, must be the number of rows; `seed` is not taken)."""
        if labels is not None or seeds is not None or self.num_classes:
            return self._sample_rows(n, seed, labels, seeds)
        n = _check_int("n", n, 1, INT32_MAX)
        seed = _check_int("seed", seed, INT32_MIN, INT32_MAX)
        cap = self.max_samples_per_request
        if n > cap:
            raise ValueError(
                f"`n`={n} is more than max_samples_per_request={cap}, the most rows one `sample` "
                f"request may generate. Ask for at most {cap} per call (several calls with "
                "different seeds), or, if the decoder was exported with a higher cap "
                "(`keras-vae export --max-samples-per-request N`), pass "
                "ServingClient(max_samples_per_request=N) (`from_export` reads it from "
                "export.json). Nothing was sent."
            )
        deadline = self._deadline()
        latent = self._latent_dim(deadline)
        data_shape = self._decoded_shape(deadline)
        inputs = {"num_samples": np.int32(n), "seed": np.int32(seed)}
        out = self._predict(
            self.decoder,
            SAMPLE,
            inputs,
            ("x_mean", "z"),
            deadline,
            columnar=True,
            expected_shapes={"x_mean": (n, *data_shape), "z": (n, latent), COMPONENT: (n,)},
            indices=(COMPONENT,),
        )
        return Samples(out["x_mean"], out["z"], out.get(COMPONENT))

    def _sample_rows(self, n: Any, seed: Any, labels: Any, seeds: Any) -> Samples:
        """A conditional export's ``sample``: rows of (label, seed), all checked before sending."""
        if self.num_classes == 0:
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
            classes = f" in [0, {self.num_classes})" if self.num_classes else ""
            raise ValueError(
                f"A conditional export samples one row per (label, seed): pass both `labels` "
                f"(class indices{classes}, or one for all rows) and `seeds` (one int64 per row), "
                f"e.g. sample(labels=[7, 7, 7], seeds=[1, 2, 3]); `{missing}` is missing. "
                "Nothing was sent."
            )
        seeds = _check_seeds(seeds)
        rows = len(seeds)
        if n is not None and _check_int("n", n, 1, INT32_MAX) != rows:
            raise ValueError(
                f"`n`={n} but `seeds` has {rows} values; a conditional sample generates one row "
                "per seed (leave `n` out). Nothing was sent."
            )
        cap = self.max_samples_per_request
        if rows > cap:
            raise ValueError(
                f"`seeds` has {rows} rows, more than max_samples_per_request={cap}, the most "
                f"rows one `sample` request may generate. Send at most {cap} per call, or, if "
                "the decoder was exported with a higher cap (`keras-vae export "
                "--max-samples-per-request N`), pass ServingClient(max_samples_per_request=N) "
                "(`from_export` reads it from export.json). Nothing was sent."
            )
        label = _check_labels(labels, rows, "seeds", self.num_classes)
        return self._seeded_rows(SAMPLE, {LABEL: label, SEEDS: seeds}, rows, columnar=True)

    def _seeded_rows(
        self, signature: str, inputs: dict[str, np.ndarray], rows: int, columnar: bool = False
    ) -> Samples:
        """The decoder's per-row seeded `signature` (conditional ``sample``, ``generate``) on
        checked `inputs`: `rows` rows of x_mean, z and (mixture priors) component."""
        deadline = self._deadline()
        latent = self._latent_dim(deadline)
        data_shape = self._decoded_shape(deadline)
        out = self._predict(
            self.decoder,
            signature,
            inputs,
            ("x_mean", "z"),
            deadline,
            columnar=columnar,
            expected_shapes={
                "x_mean": (rows, *data_shape),
                "z": (rows, latent),
                COMPONENT: (rows,),
            },
            indices=(COMPONENT,),
        )
        return Samples(out["x_mean"], out["z"], out.get(COMPONENT))

    def generate(self, seeds: Any, labels: Any = None) -> Samples:
        """One prior sample per seed from the decoder's batchable ``generate`` signature: row i
        is a pure function of seeds[i] (and labels[i]) alone, whatever else is in the request,
        so TF Serving's batcher may merge requests.

        Args:
            seeds: integers in [-2**63, 2**63 - 1], one per row (int64 [rows]); at most
                `max_samples_per_request` rows.
            labels: a conditional export's class indices in [0, K), one per row (or one for
                all rows); required for a conditional export, refused for an unconditional one.

        Returns:
            `Samples`: ``x_mean`` [rows, *data_shape], ``z`` [rows, latent_dim] and, for a
            mixture or vamp prior, ``component`` int32 [rows] (else None). All arguments are
            checked before anything is sent.
        """
        seeds = _check_seeds(seeds)
        rows = len(seeds)
        _check_rows("seeds", rows, GENERATE, self.max_samples_per_request)
        label = self._label_input(labels, rows, "seeds")
        return self._seeded_rows(GENERATE, {SEEDS: seeds, **label}, rows)

    def score(self, x: Any, labels: Any = None) -> ScoreResult:
        """Per-example anomaly scores of `x` [batch, *data_shape] (with `labels`, one class
        index per example, for a conditional export) from the scorer's ``serving_default``.

        `x` must be finite (the served scorer refuses NaN and inf) and hold at most
        `max_samples_per_request` rows; both are checked before anything is sent. A row's
        scores depend on that row alone (the importance-sampling noise is fixed at export).

        Returns:
            `ScoreResult`: ``elbo``, ``log_likelihood``, ``reconstruction``, ``kl`` (float32
            [batch], nats) and ``is_anomaly`` (bool [batch] from a calibrated scorer, else
            None).
        """
        deadline = self._deadline()
        x = _check_batch(
            "x",
            x,
            self._data_shape(deadline, self.scorer),
            " The served scorer scores finite inputs only (it refuses others with an "
            "InvalidArgumentError): repair or drop those rows (and treat them as anomalous "
            "yourself). Nothing was sent.",
        )
        _check_rows("x", len(x), "score", self.max_samples_per_request)
        label = self._label_input(labels, len(x), "x")
        rows = (len(x),)
        try:
            out = self._predict(
                self.scorer,
                SERVING_DEFAULT,
                {"x": x, **label},
                SCORE_NAMES,
                deadline,
                expected_shapes={name: rows for name in (*SCORE_NAMES, IS_ANOMALY)},
                flags=(IS_ANOMALY,),
                finite=False,
            )
        except ServingError as error:
            if error.code != "NOT_FOUND":
                raise
            raise ServingError(
                f"{error} Is the scorer exported (`keras-vae export` writes DIR/scorer/) and "
                f"served under the name {self.scorer!r} (serving/models.config)?",
                error.code,
            ) from None
        return ScoreResult(*(out[name] for name in SCORE_NAMES), out.get(IS_ANOMALY))

    def metadata(self, model: str | None = None) -> dict[str, ServedModel]:
        """What the server serves: for `model` (a served name), or for each of this client's
        encoder, decoder and scorer the server serves (None, the default), its versions and
        their states (TF Serving's model status API: REST ``GET /v1/models/NAME``, gRPC
        ``ModelService.GetModelStatus``) and the signatures of the version calls go to (the
        model metadata API), all within one `timeout`.

        Returns:
            ``{name: ServedModel}``; with `model` None, the client's models the server does not
            serve are left out.

        Raises:
            ServingError: the server does not serve `model` (or, with `model` None, serves
                none of the client's models), or a request failed.
        """
        deadline = self._deadline()
        if model is None:
            names = list(dict.fromkeys((self.encoder, self.decoder, self.scorer)))
        else:
            names = [_check_model_name("model", model)]
        served, missing = {}, []
        for name in names:
            try:
                served[name] = self._served_model(name, deadline)
            except ServingError as error:
                if model is not None or error.code != "NOT_FOUND":
                    raise
                missing.append(str(error))
        if not served:
            raise ServingError(
                f"The server serves none of this client's models {names}: " + " ".join(missing),
                "NOT_FOUND",
            )
        return served

    def _served_model(self, model: str, deadline: float) -> ServedModel:
        where = self._where(model, status=True)
        try:
            if self.protocol == "rest":
                versions = self._rest_status(where, model, deadline)
            else:
                versions = self._grpc_status(where, model, deadline)
        except ServingError as error:
            if error.code != "NOT_FOUND":
                raise
            which = (
                f"model {model!r}"
                if self.version is None
                else (f"version {self.version} of model {model!r}")
            )
            raise ServingError(
                f"{error} The server does not serve {which}; check the name (the client's "
                "`encoder`, `decoder` and `scorer` arguments) and the server's model config "
                "(serving/models.config).",
                error.code,
            ) from None
        if not any(v.state == _AVAILABLE for v in versions):
            return ServedModel(model, None, versions, {})
        version, signatures = self._metadata(model, deadline)
        if SERVING_DEFAULT in signatures:
            self._served.setdefault(model, signatures[SERVING_DEFAULT])
        return ServedModel(model, version, versions, signatures)

    def _label_input(self, labels: Any, rows: int, rows_of: str) -> dict[str, np.ndarray]:
        """The ``label`` input of a call on `rows` rows of `rows_of` ({} without labels), or
        ValueError when the export's conditioning (`num_classes`) says otherwise."""
        if labels is None:
            if self.num_classes:
                raise ValueError(
                    f"This export is conditional ({self.num_classes} classes): pass `labels`, "
                    f"one class index in [0, {self.num_classes}) per row of `{rows_of}` (or one "
                    "for all rows). Nothing was sent."
                )
            return {}
        if self.num_classes == 0:
            raise ValueError(
                "`labels` given, but this export is unconditional (export.json records no "
                "num_classes); leave them out, or pass ServingClient(num_classes=K) for a "
                "conditional export. Nothing was sent."
            )
        return {LABEL: _check_labels(labels, rows, rows_of, self.num_classes)}

    def predict(
        self,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        columnar: bool = False,
        *,
        expected_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """One Predict call; returns the outputs named `output_names` as finite float32 arrays
        (of exactly ``expected_shapes[name]``, where given), else raises `ServingError`."""
        return self._predict(
            _check_model_name("model", model),
            signature,
            inputs,
            output_names,
            self._deadline(),
            columnar=columnar,
            expected_shapes=expected_shapes,
        )

    def signature(self, model: str, signature: str = SERVING_DEFAULT) -> dict[str, Any]:
        """A served signature from the model server's metadata API.

        Returns:
            ``{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}``; -1 marks any size.
        """
        return self._signature(_check_model_name("model", model), signature, self._deadline())

    def close(self) -> None:
        """Release the HTTP connections and the gRPC channel."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = self._model_stub = None

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def _deadline(self) -> float:
        return time.monotonic() + self.timeout

    def _where(
        self,
        model: str,
        signature: str | None = None,
        metadata: bool = False,
        status: bool = False,
    ) -> str:
        """'REST predict on model 'decoder', signature 'sample' at http://...' and the like."""
        verb = "" if status else "/metadata" if metadata else ":predict"
        if self.protocol == "rest":
            label, address = "REST", self._rest_url(model, verb)
        else:
            label, address = "gRPC", self._grpc_target()
        named = f"model {model!r}" + (f", signature {signature!r}" if signature else "")
        return f"{label} {verb.strip(':/') or 'status'} on {named} at {address}"

    def _predict(
        self,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        deadline: float,
        columnar: bool = False,
        expected_shapes: Mapping[str, Sequence[int]] | None = None,
        indices: Sequence[str] = (),
        flags: Sequence[str] = (),
        finite: bool = True,
    ) -> dict[str, np.ndarray]:
        """The outputs `output_names` (all required) as checked float32 arrays (finite unless
        `finite` is False), and those of `indices` (int32) and `flags` (bool) the response
        holds (optional; of exactly their expected shapes)."""
        where = self._where(model, signature)
        if self.protocol == "rest":
            row = self.rest_format == "row" and not columnar
            limit = _response_limit(expected_shapes)
            outputs = self._rest_predict(
                where,
                model,
                signature,
                inputs,
                output_names,
                row,
                limit,
                deadline,
                optional=(*indices, *flags),
            )
        else:
            outputs = self._grpc_predict(where, model, signature, inputs, deadline, expected_shapes)
        missing = [name for name in output_names if name not in outputs]
        if missing:
            raise ServingError(
                f"{where}: the response lacks outputs {missing} (it has {sorted(outputs)}); is "
                "the server serving a `keras-vae export` model under that name?"
            )
        shapes = expected_shapes or {}
        checked = {
            name: _check_output(where, name, outputs[name], shapes.get(name), finite)
            for name in output_names
        }
        for name in indices:
            if name in outputs:
                checked[name] = _check_indices(where, name, outputs[name], shapes[name])
        for name in flags:
            if name in outputs:
                checked[name] = _check_flags(where, name, outputs[name], shapes[name])
        return checked

    def _metadata(self, model: str, deadline: float) -> tuple[int | None, dict[str, Any]]:
        """(the version described, {signature name: its inputs and outputs}) of `model`."""
        if self.protocol == "rest":
            return self._rest_metadata(model, deadline)
        return self._grpc_metadata(model, deadline)

    def _signature(self, model: str, signature: str, deadline: float) -> dict[str, Any]:
        _, signatures = self._metadata(model, deadline)
        if signature not in signatures:
            raise ServingError(
                f"{self._where(model, metadata=True)}: the model has no signature "
                f"{signature!r} (it has {sorted(signatures)})."
            )
        return signatures[signature]

    # ------------------------------------------------------------------ shapes
    def _served_dims(
        self, model: str, kind: str, name: str, deadline: float, latent: bool = False
    ) -> tuple[int, ...]:
        """The sizes after the batch axis of input or output (`kind`) `name` of `model`'s
        ``serving_default``, from its metadata (read once per client): z's one size (`latent`),
        at most MAX_LAYER_WIDTH, else one example's, at most MAX_DECLARED_EXAMPLE_VALUES in
        all; ServingError for a shape beyond them, before anything is sized from it."""
        rank = 2 if latent else None
        if model not in self._served:
            self._served[model] = self._signature(model, SERVING_DEFAULT, deadline)
        tensors = self._served[model][kind]
        where = self._where(model, SERVING_DEFAULT, metadata=True)
        noun = kind[:-1]
        if name not in tensors:
            raise ServingError(
                f"{where}: the signature has no {noun} {name!r} (its {kind}: {sorted(tensors)}); "
                "is the server serving a `keras-vae export` model under that name?"
            )
        shape = tensors[name]["shape"]
        dims = tuple(shape[1:])
        ok = len(shape) >= 2 and (rank is None or len(shape) == rank)
        if not ok or not all(d >= 1 for d in dims):
            raise ServingError(
                f"{where}: {noun} {name!r} has shape {shape}, expected [-1, size, ...] with every "
                "size after the batch axis known; pass data_shape and latent_dim to the client."
            )
        _check_declared(where, f"{noun} {name!r}", shape, latent)
        return dims

    def _data_shape(self, deadline: float, model: str | None = None) -> tuple[int, ...]:
        """data_shape, else input ``x`` of `model`'s (the encoder's) metadata, kept."""
        if self.data_shape is None:
            self.data_shape = self._served_dims(model or self.encoder, "inputs", "x", deadline)
        return self.data_shape

    def _latent_dim(self, deadline: float) -> int:
        if self.latent_dim is None:
            (self.latent_dim,) = self._served_dims(
                self.decoder, "inputs", "z", deadline, latent=True
            )
        return self.latent_dim

    def _decoded_shape(self, deadline: float) -> tuple[int, ...]:
        """One decoded example's shape: data_shape, else what the decoder's metadata says."""
        if self.data_shape is not None:
            return self.data_shape
        return self._served_dims(self.decoder, "outputs", "x_mean", deadline)

    # ------------------------------------------------------------------ REST
    def _host_port(self, port: int) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{port}"

    def _rest_path(self, model: str, verb: str) -> str:
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"/v1/models/{model}{version}{verb}"

    def _rest_url(self, model: str, verb: str) -> str:
        return f"http://{self._host_port(self.rest_port)}{self._rest_path(model, verb)}"

    def _connection(self, fresh: bool = False) -> tuple[_Connection, bool]:
        """An idle keep-alive connection (reused: True) unless `fresh`, else a new, unconnected
        one."""
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return _Connection(host, self.rest_port), False

    def _rest_call(
        self, where: str, method: str, path: str, body: Any, limit: int, deadline: float
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            connection, reused = self._connection(fresh=attempt > 0)
            connection.set_deadline(deadline)
            stage = _Stage.CONNECT
            try:
                if connection.sock is None:
                    connection.connect()
                stage = _Stage.SEND
                connection.request(method, path, body=data, headers=headers)
                stage = _Stage.WAIT
                response = connection.getresponse()
                stage = _Stage.RECEIVE
                content = self._read_body(where, response, limit)
            except ServingError:
                connection.close()
                raise
            except TimeoutError:
                connection.close()
                raise ServingError(
                    f"{where}: timed out after {self.timeout:g} s ({stage})."
                ) from None
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                connection.close()
                if stage == _Stage.CONNECT:
                    raise ServingError(
                        f"{where}: cannot connect ({type(error).__name__}: {error}); is TF "
                        f"Serving running with its REST API on port {self.rest_port}?"
                    ) from None
                # A kept-alive connection the server has closed meanwhile: once more, afresh.
                stale = isinstance(error, ConnectionError)  # RemoteDisconnected included
                if reused and attempt == 0 and stale and stage != _Stage.RECEIVE:
                    continue
                raise ServingError(
                    f"{where} failed while {stage}: {type(error).__name__}: {error}"
                ) from None
            break
        if not response.will_close:
            with self._lock:
                self._idle.append(connection)
        try:
            payload = json.loads(content)
        except (ValueError, RecursionError):
            payload = None
        if response.status != 200:
            detail = payload.get("error") if isinstance(payload, dict) else None
            text = content[:500].decode("utf-8", "replace")
            detail = detail or text or response.reason
            code = _HTTP_CODES.get(response.status, f"HTTP {response.status}")
            raise ServingError(f"{where} failed: HTTP {response.status}: {detail}", code)
        if not isinstance(payload, dict):
            raise ServingError(f"{where}: the response is not a JSON object.")
        return payload

    @staticmethod
    def _read_body(where: str, response: http.client.HTTPResponse, limit: int) -> bytes:
        """The whole body, read in chunks, or ServingError as soon as it is known to exceed
        `limit` bytes (a declared Content-Length at once; else after at most `limit` +
        one chunk), so no server can make the client hold more."""
        chunks: list[bytes] = []
        declared = response.length  # Content-Length; None when chunked or unknown
        size = declared or 0
        while size <= limit:
            chunk = response.read(
                min(_READ_CHUNK, limit + 1 - size) if declared is None else _READ_CHUNK
            )
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if declared is None:
                size += len(chunk)
        said = f"declares {declared} bytes" if declared is not None else "sent more"
        raise ServingError(
            f"{where}: the response is longer than {limit} bytes, the most this client "
            f"accepts for it (the server {said}; the cap is {REST_MIN_RESPONSE_BYTES} bytes "
            f"plus {REST_BYTES_PER_VALUE} per expected output value, at most "
            f"{MAX_RESPONSE_BYTES}). Nothing more was read; ask for fewer rows per call."
        )

    def _rest_predict(
        self,
        where: str,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        row: bool,
        limit: int,
        deadline: float,
        optional: Sequence[str] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"signature_name": signature}
        if row:
            names = list(inputs)
            if len(names) == 1:
                body["instances"] = np.asarray(inputs[names[0]]).tolist()
            else:
                count = len(inputs[names[0]])
                body["instances"] = [
                    {name: np.asarray(inputs[name][i]).tolist() for name in names}
                    for i in range(count)
                ]
        else:
            body["inputs"] = {name: np.asarray(value).tolist() for name, value in inputs.items()}
        path = self._rest_path(model, ":predict")
        payload = self._rest_call(where, "POST", path, body, limit, deadline)
        if row:
            if "predictions" not in payload:
                raise ServingError(f"{where}: the response has no 'predictions'.")
            return _rows_to_outputs(where, payload["predictions"], output_names, optional)
        if "outputs" not in payload:
            raise ServingError(f"{where}: the response has no 'outputs'.")
        outputs = payload["outputs"]
        if isinstance(outputs, dict):
            return outputs
        if len(output_names) == 1:
            return {output_names[0]: outputs}
        raise ServingError(
            f"{where}: 'outputs' is a {_kind_of(outputs)}, expected an object holding "
            f"{list(output_names)}."
        )

    def _rest_metadata(self, model: str, deadline: float) -> tuple[int | None, dict[str, Any]]:
        where = self._where(model, metadata=True)
        path = self._rest_path(model, "/metadata")
        payload = self._rest_call(where, "GET", path, None, REST_MIN_RESPONSE_BYTES, deadline)
        try:
            signatures = payload["metadata"]["signature_def"]["signature_def"]
            spec = payload.get("model_spec") or {}
            version = spec.get("version")
            version = None if version is None else _check_int("version", int(version), 1)
            return version, {key: _signature_from_json(sig) for key, sig in signatures.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ServingError(
                f"{where}: unexpected response layout ({type(error).__name__}: {error})."
            ) from None

    # ------------------------------------------------------------------ gRPC
    def _grpc_target(self) -> str:
        return self._host_port(self.grpc_port)

    def _grpc(self):
        if self._stub is None:
            try:
                import grpc
                from tensorflow_serving.apis import prediction_service_pb2_grpc
            except ImportError:
                raise ServingError(
                    "The gRPC client needs `tensorflow-serving-api`: pip install "
                    "'keras-vae[serving]'."
                ) from None
            # The receive cap bounds what one response may make the client hold, whatever
            # the server sends (read when the channel is made).
            options = [
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
            ]
            self._channel = grpc.insecure_channel(self._grpc_target(), options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        return self._stub

    def _model_spec(self, spec, model: str, signature: str = "") -> None:
        spec.name = model
        if signature:
            spec.signature_name = signature
        if self.version is not None:
            spec.version.value = self.version

    def _grpc_call(self, where: str, method, request, deadline: float):
        """One RPC with the time left to `deadline` as its gRPC deadline (which bounds the
        whole RPC: connecting, sending and receiving)."""
        import grpc

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServingError(f"{where}: timed out after {self.timeout:g} s (before sending).")
        try:
            return method(request, timeout=remaining)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = error.details() if hasattr(error, "details") else str(error)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(f"{where}: timed out after {self.timeout:g} s.") from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
                raise ServingError(
                    f"{where}: the response is larger than {MAX_RESPONSE_BYTES} bytes, the most "
                    f"this client accepts ({details}); ask for fewer rows per call.",
                    code.name,
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(
                    f"{where}: cannot reach the server ({details}); is TF Serving running with "
                    f"its gRPC API on port {self.grpc_port}?"
                ) from None
            name = code.name if code is not None else "error"
            raise ServingError(
                f"{where} failed: gRPC {name}: {details}", code.name if code else None
            ) from None

    def _grpc_predict(
        self,
        where: str,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        deadline: float,
        expected_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """The response's outputs as arrays; each output's declared shape is checked (against
        `expected_shapes`, else against MAX_RESPONSE_BYTES of float32) before it is converted,
        since a small message may declare a huge shape that conversion would fill."""
        stub = self._grpc()
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, model, signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = self._grpc_call(where, stub.Predict, request, deadline)
        outputs = {}
        shapes = expected_shapes or {}
        for name, proto in response.outputs.items():
            declared = tuple(int(d.size) for d in proto.tensor_shape.dim)
            if name in shapes and declared != tuple(shapes[name]):
                raise ServingError(
                    f"{where}: output {name!r} has shape {declared} but expected "
                    f"{tuple(shapes[name])}."
                )
            values = math.prod(declared)
            if min(declared, default=0) < 0 or 4 * values > MAX_RESPONSE_BYTES:
                raise ServingError(
                    f"{where}: output {name!r} declares shape {declared}, but this client "
                    f"accepts at most {MAX_RESPONSE_BYTES // 4:,} float32 values "
                    f"({MAX_RESPONSE_BYTES} bytes) in a response, each size >= 0. Nothing was "
                    "converted."
                )
            try:
                outputs[name] = tf.make_ndarray(proto)
            except (TypeError, ValueError) as error:
                raise ServingError(
                    f"{where}: output {name!r} is not a valid tensor ({type(error).__name__}: "
                    f"{error})."
                ) from None
        return outputs

    def _rest_status(self, where: str, model: str, deadline: float) -> tuple[ModelVersion, ...]:
        path = self._rest_path(model, "")
        payload = self._rest_call(where, "GET", path, None, REST_MIN_RESPONSE_BYTES, deadline)
        return _versions_from_json(where, payload)

    def _grpc_status(self, where: str, model: str, deadline: float) -> tuple[ModelVersion, ...]:
        self._grpc()
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        if self._model_stub is None:
            self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, model)
        response = self._grpc_call(where, self._model_stub.GetModelStatus, request, deadline)
        payload = json_format.MessageToDict(response, preserving_proto_field_name=True)
        return _versions_from_json(where, payload)

    def _grpc_metadata(self, model: str, deadline: float) -> tuple[int | None, dict[str, Any]]:
        stub = self._grpc()
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, model)
        request.metadata_field.append("signature_def")
        where = self._where(model, metadata=True)
        response = self._grpc_call(where, stub.GetModelMetadata, request, deadline)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        try:
            unpacked = "signature_def" in response.metadata and response.metadata[
                "signature_def"
            ].Unpack(signature_map)
        except DecodeError:
            unpacked = False
        if not unpacked:
            raise ServingError(f"{where}: the response holds no SignatureDefMap.")
        spec = response.model_spec
        version = spec.version.value if spec.HasField("version") else None
        try:
            return version, {
                key: _signature_from_json(json_format.MessageToDict(sig))
                for key, sig in signature_map.signature_def.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ServingError(
                f"{where}: unexpected response layout ({type(error).__name__}: {error})."
            ) from None


def _rows_to_outputs(
    where: str, rows: Any, output_names: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, Any]:
    """Row-format ``predictions`` -> {output name: column}; the `optional` outputs are
    columns too when the first row holds them (then every row must)."""
    if not isinstance(rows, list):
        raise ServingError(f"{where}: 'predictions' is a {_kind_of(rows)}, expected a list.")
    if len(output_names) == 1 and not any(isinstance(row, dict) for row in rows):
        return {output_names[0]: rows}  # one output: each row is its value
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    output_names = [*output_names, *(name for name in optional if name in first)]
    columns: dict[str, list] = {name: [] for name in output_names}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ServingError(
                f"{where}: row {i} of 'predictions' is a {_kind_of(row)}, expected an object "
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


def _versions_from_json(where: str, payload: Mapping[str, Any]) -> tuple[ModelVersion, ...]:
    """TF Serving's GetModelStatusResponse (REST JSON, or gRPC's in protobuf's JSON mapping,
    which leaves out default values) -> its versions, oldest first."""
    try:
        statuses = payload.get("model_version_status", [])
        if not isinstance(statuses, list):
            raise TypeError(f"model_version_status is a {_kind_of(statuses)}, not a list")
        versions = []
        for entry in statuses:
            if not isinstance(entry, Mapping):
                raise TypeError(f"a version status is a {_kind_of(entry)}, not an object")
            status = entry.get("status") or {}
            if not isinstance(status, Mapping):
                raise TypeError(f"a status is a {_kind_of(status)}, not an object")
            code = str(status.get("error_code", "OK"))
            error = None if code in ("OK", "0") else f"{code}: {status.get('error_message', '')}"
            version = int(str(entry.get("version", "0")))
            versions.append(ModelVersion(version, str(entry.get("state", "UNKNOWN")), error))
    except (TypeError, ValueError, AttributeError) as error:
        raise ServingError(
            f"{where}: unexpected response layout ({type(error).__name__}: {error})."
        ) from None
    return tuple(sorted(versions))


def _signature_from_json(signature: Mapping[str, Any]) -> dict[str, Any]:
    """A SignatureDef in protobuf's JSON mapping -> ``{"inputs"/"outputs": {name: info}}``;
    TypeError/ValueError for anything else."""

    def mapping(value: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} is a {_kind_of(value)}, not an object")
        return value

    def infos(tensors: Any, what: str) -> dict[str, Any]:
        out = {}
        for name, info in mapping(tensors, what).items():
            info = mapping(info, f"{what}[{name!r}]")
            shape = mapping(info.get("tensorShape", info.get("tensor_shape", {})), "tensor shape")
            dims = shape.get("dim", [])
            if not isinstance(dims, list):
                raise TypeError(f"the dims of {name!r} are a {_kind_of(dims)}, not a list")
            dtype = str(info.get("dtype", "DT_INVALID"))
            out[name] = {
                "dtype": _DTYPES.get(dtype, dtype.removeprefix("DT_").lower()),
                "shape": [int(mapping(d, "a dim").get("size", -1)) for d in dims],
            }
        return out

    signature = mapping(signature, "a signature")
    return {
        "inputs": infos(signature.get("inputs", {}), "inputs"),
        "outputs": infos(signature.get("outputs", {}), "outputs"),
    }
