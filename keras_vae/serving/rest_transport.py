"""TF Serving's REST API (JSON over HTTP/1.1, port 8501) for the serving client, on Python's
standard library only: keep-alive connections whose every socket operation obeys the call's
deadline, response bodies read in chunks and cut at a cap, and TF Serving's error bodies
turned into `ServingError`. `GrpcTransport` (grpc_transport.py) has the same methods, so the
client never asks which protocol it speaks.

    >>> transport = RestTransport("::1", 8501, version=3, timeout=10.0)
    >>> transport.address("decoder", ":predict")
    'http://[::1]:8501/v1/models/decoder/versions/3:predict'
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_vae.serving import response_checks as checks
from keras_vae.serving.request_checks import PredictCall, check_int, kind_of
from keras_vae.serving.results import ModelVersion, ServingError

READ_CHUNK = 64 * 1024
# What TF Serving's REST API answers with an error status, as gRPC status names.
HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED"}
# What a REST call is doing (for the error message).
CONNECT, SEND, WAIT, RECEIVE = (
    "connecting",
    "sending the request",
    "waiting for the response",
    "receiving the response",
)


class DeadlineSocket(socket.socket):
    """A TCP socket whose every send and receive waits at most until `deadline`
    (`time.monotonic()` seconds), so a server trickling bytes cannot stretch a call."""

    deadline = math.inf

    def arm(self) -> None:
        """Time the next operation out at `deadline`; TimeoutError once it has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the deadline passed")
        self.settimeout(remaining)

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self.arm()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.arm()
        return super().recv_into(*args, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> int:
        self.arm()
        return super().send(*args, **kwargs)

    def sendall(
        self, *args: Any, **kwargs: Any
    ) -> None:  # the timeout bounds the whole sendall (Python >= 3.5)
        self.arm()
        return super().sendall(*args, **kwargs)


def resolve(host: str, port: int, deadline: float) -> list:
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


def open_socket(host: str, port: int, deadline: float) -> DeadlineSocket:
    """A TCP connection to the first address of `host` that answers, made by `deadline`."""
    error: OSError | None = None
    for family, kind, proto, _, address in resolve(host, port, deadline):
        sock = DeadlineSocket(family, kind, proto)
        sock.deadline = deadline
        try:
            sock.arm()
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


class Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection whose socket obeys the deadline of the call using it."""

    deadline = math.inf
    sock: DeadlineSocket | None  # connect() sets it (http.client types it as any socket)

    def connect(self) -> None:
        self.sock = open_socket(self.host, self.port, self.deadline)

    def set_deadline(self, deadline: float) -> None:
        """Make the connection's socket (and any it opens) obey `deadline`."""
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline


def host_port(host: str, port: int) -> str:
    """'host:port', an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def read_body(where: str, response: http.client.HTTPResponse, limit: int) -> bytes:
    """The whole body, read in chunks, or ServingError as soon as it is known to exceed
    `limit` bytes (a declared Content-Length at once; else after at most `limit` + one chunk),
    so no server can make the client hold more."""
    chunks: list[bytes] = []
    declared = response.length  # Content-Length; None when chunked or unknown
    size = declared or 0
    while size <= limit:
        chunk = response.read(min(READ_CHUNK, limit + 1 - size) if declared is None else READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if declared is None:
            size += len(chunk)
    said = f"declares {declared} bytes" if declared is not None else "sent more"
    raise ServingError(
        f"{where}: the response is longer than {limit} bytes, the most this client "
        f"accepts for it (the server {said}; the cap is {checks.REST_MIN_RESPONSE_BYTES} bytes "
        f"plus {checks.REST_BYTES_PER_VALUE} per expected output value, at most "
        f"{checks.MAX_RESPONSE_BYTES}). Nothing more was read; ask for fewer rows per call."
    )


class RestTransport:
    """Predict, metadata and model status requests to TF Serving's REST API at `host`:`port`
    (`version`: the model version asked for, None for the latest), each within the deadline
    its caller gives (`timeout` is the client's, for the messages)."""

    name = "REST"

    def __init__(
        self,
        host: str,
        port: int,
        version: int | None,
        timeout: float,
        rest_format: str = "columnar",
    ) -> None:
        self.host, self.port, self.version, self.timeout = host, port, version, timeout
        self.rest_format = rest_format
        self._idle: list[Connection] = []  # keep-alive connections not in use
        self._lock = threading.Lock()

    def path(self, model: str, verb: str) -> str:
        """The URL path of `model`'s `verb` (at the asked version, if any)."""
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"/v1/models/{model}{version}{verb}"

    def address(self, model: str, verb: str) -> str:
        """The URL of `model`'s `verb` (":predict", "/metadata", "" for the status)."""
        return f"http://{host_port(self.host, self.port)}{self.path(model, verb)}"

    def close(self) -> None:
        """Close the idle keep-alive connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def predict(self, where: str, call: PredictCall, deadline: float) -> dict[str, Any]:
        """The response's outputs ({name: nested lists}), sent in `rest_format` unless
        ``call.columnar``; a row-format answer's columns are ``call.outputs``, and
        ``call.indices`` and ``call.flags`` when its first row has them."""
        row = self.rest_format == "row" and not call.columnar
        body: dict[str, Any] = {"signature_name": call.signature}
        inputs = {name: np.asarray(value) for name, value in call.inputs.items()}
        if row:
            names: Sequence[str] = list(inputs)
            if len(names) == 1:
                body["instances"] = inputs[names[0]].tolist()
            else:
                count = len(inputs[names[0]])
                body["instances"] = [
                    {name: inputs[name][i].tolist() for name in names} for i in range(count)
                ]
        else:
            body["inputs"] = {name: value.tolist() for name, value in inputs.items()}
        limit = checks.response_limit(call.expected_shapes)
        path = self.path(call.model, ":predict")
        payload = self._call(where, "POST", path, body, limit, deadline)
        names = call.outputs
        if row:
            if "predictions" not in payload:
                raise ServingError(f"{where}: the response has no 'predictions'.")
            optional = (*call.indices, *call.flags)
            return checks.rows_to_outputs(where, payload["predictions"], names, optional)
        if "outputs" not in payload:
            raise ServingError(f"{where}: the response has no 'outputs'.")
        outputs = payload["outputs"]
        if isinstance(outputs, dict):
            return outputs
        if len(names) == 1:
            return {names[0]: outputs}
        raise ServingError(
            f"{where}: 'outputs' is a {kind_of(outputs)}, expected an object holding {list(names)}."
        )

    def metadata(
        self, where: str, model: str, deadline: float
    ) -> tuple[int | None, dict[str, Any]]:
        """(the version described, {signature name: its inputs and outputs}) of `model`."""
        path = self.path(model, "/metadata")
        payload = self._call(where, "GET", path, None, checks.REST_MIN_RESPONSE_BYTES, deadline)
        try:
            signatures = payload["metadata"]["signature_def"]["signature_def"]
            version = (payload.get("model_spec") or {}).get("version")
            version = None if version is None else check_int("version", int(version), 1)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise checks.layout_error(where, error) from None
        return version, checks.signatures_from_json(where, signatures)

    def status(self, where: str, model: str, deadline: float) -> tuple[ModelVersion, ...]:
        """Every version of `model` the server knows, oldest first (``GET /v1/models/NAME``)."""
        path = self.path(model, "")
        payload = self._call(where, "GET", path, None, checks.REST_MIN_RESPONSE_BYTES, deadline)
        return checks.versions_from_json(where, payload)

    def _connection(self, fresh: bool = False) -> tuple[Connection, bool]:
        """An idle keep-alive connection (reused: True) unless `fresh`, else a new, unconnected
        one."""
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return Connection(host, self.port), False

    def _call(
        self, where: str, method: str, path: str, body: Any, limit: int, deadline: float
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            connection, reused = self._connection(fresh=attempt > 0)
            connection.set_deadline(deadline)
            stage = CONNECT
            try:
                if connection.sock is None:
                    connection.connect()
                stage = SEND
                connection.request(method, path, body=data, headers=headers)
                stage = WAIT
                response = connection.getresponse()
                stage = RECEIVE
                content = read_body(where, response, limit)
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
                if stage == CONNECT:
                    raise ServingError(
                        f"{where}: cannot connect ({type(error).__name__}: {error}); is TF "
                        f"Serving running with its REST API on port {self.port}?"
                    ) from None
                # A kept-alive connection the server has closed meanwhile: once more, afresh.
                stale = isinstance(error, ConnectionError)  # RemoteDisconnected included
                if reused and attempt == 0 and stale and stage != RECEIVE:
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
            code = HTTP_CODES.get(response.status, f"HTTP {response.status}")
            raise ServingError(f"{where} failed: HTTP {response.status}: {detail}", code)
        if not isinstance(payload, dict):
            raise ServingError(f"{where}: the response is not a JSON object.")
        return payload
