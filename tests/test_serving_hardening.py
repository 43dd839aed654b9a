"""Issue 24, class 9: a `ServingClient` built without `data_shape` does not let a server's
metadata, or any response, make it hold unbounded data.

A hostile stand-in for TF Serving on 127.0.0.1 (TF Serving's REST paths and gRPC
``PredictionService``, as in tests/test_serving.py, but with no model behind it) declares
shapes and sends bodies no real export would. Before the fix, the client sized its response
cap from the metadata's [-1, 1e9, 1000] and read an endless body until its deadline (the
issue saw 2.5 GB at timeout=2); these tests failed on that code (tried once against HEAD's
serving.py). The stand-in stops an endless body after `SAFETY_BYTES`, so even a client
without a cap cannot take the machine's memory here.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_vae.serving import ServingClient, ServingError, response_checks

HUGE = [-1, 10**9, 1000]  # the issue's x_mean: 10**12 values per row
SAFETY_BYTES = 64 * 2**20  # the most an endless body sends (a bound for a client without one)
CHUNK = b" " * 2**20
TIMEOUT = 5.0
SMALL_GROWTH = 8 * 2**20  # peak Python allocation a refused call may make


def tensor_info(shape: list[int], dtype: str = "DT_FLOAT") -> dict[str, Any]:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in shape]}}


def decoder_signatures(x_mean: list[int], latent_dim: int = 2) -> dict[str, Any]:
    """The decoder's serving_default and sample signatures, x_mean declared as `x_mean`."""
    outputs = {"x_mean": tensor_info(x_mean), "z": tensor_info([-1, latent_dim])}
    return {
        "serving_default": {
            "inputs": {"z": tensor_info([-1, latent_dim])},
            "outputs": {"x_mean": tensor_info(x_mean)},
        },
        "sample": {
            "inputs": {"num_samples": tensor_info([], "DT_INT32"), "seed": tensor_info([])},
            "outputs": outputs,
        },
    }


def endless_body(handler: http.server.BaseHTTPRequestHandler) -> None:
    """200 with no Content-Length, 1 MiB after 1 MiB (up to SAFETY_BYTES, then silence)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    for _ in range(SAFETY_BYTES // len(CHUNK)):
        handler.wfile.write(CHUNK)
    handler.wfile.flush()
    time.sleep(TIMEOUT + 1)  # hold the connection open: the body never ends


class HostileServer:
    """TF Serving's REST metadata and predict paths, and gRPC ``GetModelMetadata`` and
    ``Predict``, answering with `signatures` (JSON mapping of a SignatureDefMap), REST
    predictions from `rest_predict(handler)` and gRPC ones from `grpc_predict()`."""

    def __init__(
        self,
        signatures: dict[str, Any],
        rest_predict: Callable[[Any], None] = endless_body,
        grpc_predict: Callable[[], predict_pb2.PredictResponse] | None = None,
    ):
        self.signatures = signatures
        self.predicts = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                payload = {
                    "model_spec": {"name": "decoder", "version": "1"},
                    "metadata": {"signature_def": {"signature_def": owner.signatures}},
                }
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                owner.predicts += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    rest_predict(self)

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def GetModelMetadata(self, request, context):  # noqa: N802 (gRPC's name)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = request.model_spec.name
                response.model_spec.version.value = 1
                signature_map = json_format.ParseDict(
                    {"signature_def": owner.signatures}, get_model_metadata_pb2.SignatureDefMap()
                )
                response.metadata["signature_def"].Pack(signature_map)
                return response

            def Predict(self, request, context):  # noqa: N802
                owner.predicts += 1
                return grpc_predict()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            Servicer(), self.grpc_server
        )
        self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.grpc_server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.grpc_server.stop(grace=None)
        self.httpd.shutdown()
        self.httpd.server_close()

    def client(self, protocol: str, **kwargs) -> ServingClient:
        return ServingClient(
            "127.0.0.1",
            protocol=protocol,
            rest_port=self.httpd.server_address[1],
            grpc_port=self.grpc_port,
            timeout=TIMEOUT,
            **kwargs,
        )


def refused_quickly(call: Callable[[], Any], pattern: str) -> tuple[str, int]:
    """`call`'s ServingError message (matching `pattern`) and its peak Python allocation in
    bytes; the call must fail well before the client's deadline."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(ServingError, match=pattern) as error:
            call()
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < TIMEOUT / 2, f"took {elapsed:.1f} s, the deadline is {TIMEOUT} s"
    return str(error.value), peak


# ---------------------------------------------------------------------- what metadata declares
DECLARED = [
    ("x_mean", decoder_signatures(HUGE), "output 'x_mean'", "16,777,216 values for one example"),
    ("x_mean rank", decoder_signatures([-1] + [1] * 40), "output 'x_mean'", "at most 32 axes"),
    ("z", decoder_signatures([-1, 2], latent_dim=10**9), "input 'z'", "65,536 values for z"),
]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("declared", DECLARED, ids=[d[0] for d in DECLARED])
def test_metadata_cannot_declare_shapes_beyond_the_caps(protocol, declared):
    _, signatures, what, limit = declared
    with HostileServer(signatures) as server, server.client(protocol) as client:
        message, peak = refused_quickly(lambda: client.sample(4, seed=0), "the server declares")
        assert server.predicts == 0, "the prediction request was sent"
    assert what in message and limit in message, message
    assert "pass data_shape and latent_dim" in message, message
    assert peak < SMALL_GROWTH, f"{peak / 2**20:.0f} MiB held for a refused call"
    assert client.data_shape is None  # nothing refused is kept


def test_the_issue_s_metadata_is_named_in_the_refusal():
    with HostileServer(decoder_signatures(HUGE)) as server, server.client("rest") as client:
        message, _ = refused_quickly(lambda: client.decode(np.zeros((1, 2))), "declares")
    assert "shape [-1, 1000000000, 1000]" in message, message
    assert "1,000,000,000,000 values per row" in message, message


def test_shapes_within_the_caps_are_used():
    """The caps refuse only what no export has: a 4096 x 4096 example and z of 65,536."""
    signatures = decoder_signatures([-1, 4096, 4096], latent_dim=65_536)
    with HostileServer(signatures) as server, server.client("rest") as client:
        assert client._shapes.latent(client._deadline()) == 65_536
        assert client._shapes.decoded(client._deadline()) == (4096, 4096)


# ---------------------------------------------------------------------- how much a response holds
def test_an_endless_body_is_cut_at_the_cap_derived_from_the_request():
    with HostileServer(decoder_signatures([-1, 2])) as server, server.client("rest") as client:
        message, peak = refused_quickly(
            lambda: client.sample(4, seed=0), r"response is longer than \d+ bytes"
        )
    per_value = response_checks.REST_BYTES_PER_VALUE
    limit = response_checks.REST_MIN_RESPONSE_BYTES + per_value * (4 * 2 + 4 * 2 + 4)
    assert f"longer than {limit} bytes" in message, message
    assert peak < 2 * limit + SMALL_GROWTH, f"{peak / 2**20:.0f} MiB held"


def test_an_absolute_ceiling_bounds_even_shapes_the_caller_gave(monkeypatch):
    """Shapes from the constructor are trusted, yet a response never exceeds the ceiling
    (lowered here to 4 MiB so that the test holds little)."""
    ceiling = 4 * 2**20
    monkeypatch.setattr(response_checks, "MAX_RESPONSE_BYTES", ceiling)
    with (
        HostileServer(decoder_signatures([-1, 2])) as server,
        server.client("rest", data_shape=(4096, 4096), latent_dim=2) as client,
    ):
        message, peak = refused_quickly(
            lambda: client.sample(10_000, seed=0), rf"response is longer than {ceiling} bytes"
        )
    assert peak < 2 * ceiling + SMALL_GROWTH, f"{peak / 2**20:.0f} MiB held"
    assert "fewer rows" in message, message
    assert response_checks.response_limit({"x_mean": (10_000, 4096, 4096)}) == ceiling


def test_a_grpc_response_above_the_receive_cap_is_refused(monkeypatch):
    ceiling = 2**20
    # The channel reads the cap when it is made, by the first call below.
    monkeypatch.setattr(response_checks, "MAX_RESPONSE_BYTES", ceiling)
    big = predict_pb2.PredictResponse()
    big.outputs["x_mean"].CopyFrom(tf.make_tensor_proto(np.zeros((4, 2**19), np.float32)))
    big.outputs["z"].CopyFrom(tf.make_tensor_proto(np.zeros((4, 2), np.float32)))
    with (
        HostileServer(decoder_signatures([-1, 2**19]), grpc_predict=lambda: big) as server,
        server.client("grpc") as client,
    ):
        message, _ = refused_quickly(
            lambda: client.sample(4, seed=0), rf"response is larger than {ceiling} bytes"
        )
    assert "fewer rows" in message, message


@pytest.mark.parametrize("expected", [True, False], ids=["known-shapes", "public-predict"])
def test_a_grpc_tensor_declaring_a_huge_shape_is_not_expanded(expected):
    """A few bytes declaring [10**6, 10**6] with one value: tf.make_ndarray would fill 4 TB."""
    forged = predict_pb2.PredictResponse()
    proto = forged.outputs["x_mean"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add().size = 10**6
    proto.tensor_shape.dim.add().size = 10**6
    proto.float_val.append(0.5)
    forged.outputs["z"].CopyFrom(tf.make_tensor_proto(np.zeros((4, 2), np.float32)))
    with (
        HostileServer(decoder_signatures([-1, 2]), grpc_predict=lambda: forged) as server,
        server.client("grpc") as client,
    ):
        if expected:
            call = lambda: client.sample(4, seed=0)  # noqa: E731
            pattern = r"output 'x_mean' has shape \(1000000, 1000000\) but expected \(4, 2\)"
        else:
            inputs = {"num_samples": np.int32(4), "seed": np.int32(0)}
            call = lambda: client.predict("decoder", "sample", inputs, ["x_mean"])  # noqa: E731
            pattern = r"output 'x_mean' declares shape \(1000000, 1000000\), but this client"
        refused_quickly(call, pattern)
