"""`keras_vae.serving.ServingClient` on its own: argument checks, export.json's sample cap, and the
REST transport (one deadline per call, a bounded response size, keep-alive) against tiny local
HTTP servers on 127.0.0.1 that misbehave on purpose. No model, no TensorFlow: these are fast.
The client against real exported models is tested in tests/test_serving.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time

import numpy as np
import pytest

from keras_vae.serving import ServingClient, ServingError
from keras_vae.signatures import DEFAULT_MAX_SAMPLES_PER_REQUEST, MAX_SAMPLES_KEY, MAX_VERSION

DRIP_SECONDS = 0.25  # between two bytes of a trickling server
DRIP_BYTES = 24  # so a trickle lasts 6 s, far past the deadlines below


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 answering every request with `respond(handler)`;
    counts requests and the client ports (connections) they came from."""

    def __init__(self, respond, protocol_version: str = "HTTP/1.0"):
        self.requests = 0
        self.ports: set[int] = set()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                owner.requests += 1
                owner.ports.add(self.client_address[1])
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    respond(self)

            def do_GET(self):
                self.answer()

            def do_POST(self):
                self.answer()

        Handler.protocol_version = protocol_version
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def __enter__(self) -> LocalServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def client(self, **kwargs) -> ServingClient:
        kwargs.setdefault("data_shape", (2,))
        kwargs.setdefault("latent_dim", 2)
        return ServingClient("127.0.0.1", rest_port=self.port, **kwargs)


def send_json(handler, payload, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
    if close:  # hang up without saying so (no "Connection: close")
        handler.close_connection = True


DECODED = {"outputs": [[0.25, 0.75]]}  # decode of one z with data_shape (2,)


def drip_body(handler) -> None:
    """Headers at once, then one byte of the (never finished) body every DRIP_SECONDS."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.flush()
    for _ in range(DRIP_BYTES):
        time.sleep(DRIP_SECONDS)
        handler.wfile.write(b" ")
        handler.wfile.flush()


def drip_headers(handler) -> None:
    """The status line, then one byte of an endless header every DRIP_SECONDS."""
    handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Padding: ")
    handler.wfile.flush()
    for _ in range(DRIP_BYTES):
        time.sleep(DRIP_SECONDS)
        handler.wfile.write(b"a")
        handler.wfile.flush()


# ---------------------------------------------------------------------------- one deadline
@pytest.mark.parametrize("respond", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_trickling_server_cannot_stretch_a_call_past_the_timeout(respond):
    timeout = 1.0
    with LocalServer(respond) as server, server.client(timeout=timeout) as client:
        start = time.monotonic()
        with pytest.raises(ServingError) as error:
            client.decode(np.zeros((1, 2)))
        elapsed = time.monotonic() - start
    message = str(error.value)
    assert "timed out after 1 s" in message, message
    assert "model 'decoder', signature 'serving_default'" in message
    assert f"http://127.0.0.1:{server.port}/v1/models/decoder:predict" in message
    assert elapsed < timeout + 1.5, elapsed


def test_metadata_requests_share_the_deadline():
    with LocalServer(drip_body) as server, server.client(timeout=1.0) as client:
        start = time.monotonic()
        with pytest.raises(ServingError, match=r"REST metadata on model 'm'.*timed out after 1 s"):
            client.signature("m")
        assert time.monotonic() - start < 1.0 + 1.5


# ---------------------------------------------------------------------------- response size
def endless_body(handler) -> None:
    """200, no Content-Length (the body ends when the connection does), 1 MiB after 1 MiB."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    chunk = b" " * 2**20
    for _ in range(64):
        handler.wfile.write(chunk)


def huge_content_length(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b"[")


@pytest.mark.parametrize(
    "respond", [endless_body, huge_content_length], ids=["streamed", "declared"]
)
def test_response_size_is_bounded(respond):
    pattern = r"model 'decoder'.*response is longer than \d+ bytes"
    server = LocalServer(respond)
    with server, server.client(timeout=20) as client, pytest.raises(ServingError, match=pattern):
        client.decode(np.zeros((1, 2)))


# ---------------------------------------------------------------------------- keep-alive
def test_rest_connections_are_kept_alive_and_reused():
    respond = lambda h: send_json(h, DECODED)  # noqa: E731
    with LocalServer(respond, "HTTP/1.1") as server, server.client() as client:
        for _ in range(3):
            np.testing.assert_array_equal(client.decode(np.zeros((1, 2))), [[0.25, 0.75]])
    assert server.requests == 3 and len(server.ports) == 1


def test_a_kept_alive_connection_the_server_dropped_is_replaced():
    respond = lambda h: send_json(h, DECODED, close=True)  # noqa: E731
    with LocalServer(respond, "HTTP/1.1") as server, server.client() as client:
        for _ in range(3):
            np.testing.assert_array_equal(client.decode(np.zeros((1, 2))), [[0.25, 0.75]])
    assert server.requests == 3 and len(server.ports) == 3


def test_an_error_status_keeps_its_message():
    def respond(handler):
        body = json.dumps({"error": "Servable not found for request: Latest(decoder)"}).encode()
        handler.send_response(404)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = LocalServer(respond)
    with server, server.client() as client, pytest.raises(ServingError, match="HTTP 404: Serv"):
        client.decode(np.zeros((1, 2)))


# ---------------------------------------------------------------------------- constructor
BAD_SETTINGS = [
    ("data_shape", (-1, 0)),
    ("data_shape", ()),
    ("data_shape", "28"),
    ("data_shape", (28, 2.5)),
    ("data_shape", (True, 3)),
    ("data_shape", 784),
    ("latent_dim", 0),
    ("latent_dim", 2.0),
    ("version", 0),
    ("version", 2**70),
    ("version", MAX_VERSION + 1),
    ("version", "1"),
    ("version", True),
    ("host", ""),
    ("host", None),
    ("host", "http://localhost"),
    ("host", "localhost:8501"),
    ("host", "local host"),
    ("encoder", ""),
    ("encoder", None),
    ("decoder", "models/decoder"),
    ("decoder", "decoder:predict"),
    ("max_samples_per_request", 0),
    ("max_samples_per_request", 2**31),
    ("max_samples_per_request", 100.0),
    ("timeout", float("inf")),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS, ids=[f"{n}={v!r}" for n, v in BAD_SETTINGS])
def test_constructor_rejects_invalid_values(name, value):
    kwargs = {name: value}
    host = kwargs.pop("host", "localhost")
    with pytest.raises(ValueError) as error:
        ServingClient(host, **kwargs)
    message = str(error.value)
    assert f"Received an invalid value for `{name}`, expected " in message, message
    assert message.endswith(f"Received: {name}={value!r}"), message


def test_constructor_accepts_the_edges():
    client = ServingClient("::1", version=MAX_VERSION, data_shape=[28, np.int64(28)])
    assert client.version == MAX_VERSION and client.data_shape == (28, 28)
    assert client.transport.address("decoder", ":predict") == (
        f"http://[::1]:8501/v1/models/decoder/versions/{MAX_VERSION}:predict"
    )
    assert ServingClient("[::1]").host == "[::1]"
    assert ServingClient(max_samples_per_request=1).max_samples_per_request == 1
    assert ServingClient().max_samples_per_request == DEFAULT_MAX_SAMPLES_PER_REQUEST


# ---------------------------------------------------------------------------- export.json's cap
def write_export_json(folder, **top_level):
    record = {"model": {"data_shape": [28, 28], "latent_dim": 20}, **top_level}
    (folder / "export.json").write_text(json.dumps(record))
    return folder


def test_from_export_reads_the_sample_cap(tmp_path):
    client = ServingClient.from_export(write_export_json(tmp_path, **{MAX_SAMPLES_KEY: 7}))
    assert client.max_samples_per_request == 7
    with pytest.raises(ValueError, match=r"max_samples_per_request=7\b") as error:
        client.sample(8, seed=0)  # refused before any connection is tried
    assert "keras-vae export --max-samples-per-request" in str(error.value)
    # Given explicitly, the argument wins.
    client = ServingClient.from_export(tmp_path, max_samples_per_request=9)
    assert client.max_samples_per_request == 9


def test_from_export_without_a_cap_uses_the_default(tmp_path):
    client = ServingClient.from_export(write_export_json(tmp_path))  # an older export.json
    assert client.max_samples_per_request == DEFAULT_MAX_SAMPLES_PER_REQUEST


def test_from_export_rejects_an_invalid_cap(tmp_path):
    write_export_json(tmp_path, **{MAX_SAMPLES_KEY: 0})
    with pytest.raises(ValueError, match=r"export\.json: .*max_samples_per_request"):
        ServingClient.from_export(tmp_path)
