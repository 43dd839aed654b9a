"""A stand-in TF Serving for the tests: `FakeModelServer`, `serving` (it answering on 127.0.0.1)
and `client_for` (a `ServingClient` pointed at it).

TF Serving's binary cannot be installed on the machines these tests run on (no Debian package,
no Docker engine), so `FakeModelServer` stands in for it: it answers in TF Serving's documented
REST (``/v1/models/NAME[/versions/V](:predict|/metadata)``, ``GET /v1/models/NAME`` for the
model status, row and columnar formats, ``{"error": ...}`` bodies) and gRPC
(``PredictionService.Predict`` / ``GetModelMetadata``, ``ModelService.GetModelStatus``) wire
formats, by running the exported signatures with plain TensorFlow
(``tf.saved_model.load(...).signatures[...]``). `FakeModelServer.tamper` swaps a response for a
malformed one (the response-validation tests); `FakeModelServer.delay` slows every answer (the
timeout tests).

    with serving(export_dir) as fake, client_for(fake, "grpc") as client:
        z_mean, z_stddev = client.encode(x)
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_vae.serving import ServingClient

REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict|/metadata)?$"
)
STATUS_CODES = {0: "OK", 5: "NOT_FOUND"}  # TF Serving's REST names of the error codes used here


def status_entry(version: int, state: str, code: int = 0, message: str = ""):
    """One ``ModelVersionStatus``: `version` in `state` ("AVAILABLE", "END", ...)."""
    entry = get_model_status_pb2.ModelVersionStatus(version=version)
    entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
    entry.status.error_code = code
    entry.status.error_message = message
    return entry


class FakeServingError(Exception):
    """What TF Serving reports as an error status: NOT_FOUND or INVALID_ARGUMENT."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class FakeModelServer:
    """TF Serving's REST and gRPC APIs over the SavedModels of an export folder."""

    def __init__(self, export_dir, failed: dict[str, Any] | None = None):
        self.export_dir = Path(export_dir)
        # model name -> a `status_entry` the status API adds to its versions (one that failed to
        # load, as TF Serving reports it).
        self.failed = dict(failed or {})
        self.loaded = {}
        self.requests: list[tuple[str, str, str]] = []  # (protocol, kind, model)
        self.delay = 0.0
        self.lock = threading.Lock()
        # (protocol, "predict" | "metadata") -> f(response) -> the response sent instead: a REST
        # JSON payload (or raw bytes), or a gRPC response message.
        self.tamper: dict[tuple[str, str], Callable[[Any], Any]] = {}

    # ------------------------------------------------------------ servables
    def _servable(self, name: str, version: int | None):
        base = self.export_dir / name
        versions = [] if not base.is_dir() else [p.name for p in base.iterdir()]
        versions = sorted(int(v) for v in versions if v.isdigit())
        wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        if not versions or (version is not None and version not in versions):
            raise FakeServingError("NOT_FOUND", f"Servable not found for request: {wanted}")
        version = versions[-1] if version is None else version
        with self.lock:
            if (name, version) not in self.loaded:
                path = base / str(version)
                proto = saved_model_pb2.SavedModel.FromString(
                    (path / "saved_model.pb").read_bytes()
                )
                self.loaded[name, version] = (tf.saved_model.load(str(path)), proto)
        return version, *self.loaded[name, version]

    def signature_spec(self, name, version, signature):
        _, loaded, _ = self._servable(name, version)
        if signature not in loaded.signatures:
            raise FakeServingError(
                "INVALID_ARGUMENT", f'Serving signature name: "{signature}" not found'
            )
        function = loaded.signatures[signature]
        return function, function.structured_input_signature[1]

    def predict(self, protocol, name, version, signature, inputs):
        self.requests.append((protocol, "predict", name))
        time.sleep(self.delay)
        function, specs = self.signature_spec(name, version, signature)
        if sorted(inputs) != sorted(specs):
            raise FakeServingError(
                "INVALID_ARGUMENT",
                f"Expected inputs {sorted(specs)} for signature {signature}, got {sorted(inputs)}",
            )
        try:
            outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            # TF Serving returns the op's status message; eager TF prefixes a traceback header.
            lines = getattr(error, "message", str(error)).splitlines()
            skip = ("Graph execution error", "Detected at node", "<stack traces")
            message = " ".join(line.strip() for line in lines if not line.startswith(skip))
            raise FakeServingError("INVALID_ARGUMENT", message.strip()) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def metadata(self, protocol, name, version):
        self.requests.append((protocol, "metadata", name))
        time.sleep(self.delay)
        version, _, proto = self._servable(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in proto.meta_graphs[0].signature_def.items():
            if not key.startswith("__"):
                signatures.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signatures)
        return response

    def tampered(self, protocol: str, kind: str, response: Any) -> Any:
        hook = self.tamper.get((protocol, kind))
        return response if hook is None else hook(response)

    def reset(self) -> None:
        """Forget the requests seen, the delay and the tampering (between tests)."""
        self.requests.clear()
        self.delay = 0.0
        self.tamper.clear()

    def status(self, protocol, name, version):
        """The model status API: every exported version AVAILABLE, plus `failed[name]`."""
        self.requests.append((protocol, "status", name))
        time.sleep(self.delay)
        if version is None:
            self._servable(name, None)  # NOT_FOUND for a model not served
            base = self.export_dir / name
            versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
        else:
            versions = [self._servable(name, version)[0]]
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in versions:
            response.model_version_status.append(status_entry(number, "AVAILABLE"))
        if version is None and name in self.failed:
            response.model_version_status.append(self.failed[name])
        return response

    def predict_count(self) -> int:
        return sum(kind == "predict" for _, kind, _ in self.requests)

    # ------------------------------------------------------------ REST
    def rest_handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, payload: Any):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The client may have given up already (the timeout tests).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def handle_request(self, method: str):
                match = REST_PATH.match(self.path)
                if not match:
                    return self.reply(404, {"error": f"Malformed request: {method} {self.path}"})
                name, verb = match["name"], match["verb"]
                version = int(match["version"]) if match["version"] else None
                try:
                    if method == "GET" and verb == "/metadata":
                        response = server.metadata("rest", name, version)
                        payload = json_format.MessageToDict(
                            response, preserving_proto_field_name=True
                        )
                        payload = server.tampered("rest", "metadata", payload)
                    elif method == "GET" and verb is None:
                        payload = rest_status(server.status("rest", name, version))
                    elif method == "POST" and verb == ":predict":
                        length = int(self.headers.get("Content-Length", 0))
                        payload = server.rest_predict(name, version, self.rfile.read(length))
                        payload = server.tampered("rest", "predict", payload)
                    else:
                        return self.reply(404, {"error": f"Malformed request: {method}"})
                except FakeServingError as failure:
                    status = 404 if failure.code == "NOT_FOUND" else 400
                    return self.reply(status, {"error": str(failure)})
                return self.reply(200, payload)

            def do_GET(self):
                self.handle_request("GET")

            def do_POST(self):
                self.handle_request("POST")

        return Handler

    def rest_predict(self, name, version, body: bytes) -> dict:
        try:
            request = json.loads(body)
        except ValueError as error:
            raise FakeServingError("INVALID_ARGUMENT", f"JSON Parse error: {error}") from None
        signature = request.get("signature_name", "serving_default")
        _, specs = self.signature_spec(name, version, signature)

        def tensor(key, value):
            if key not in specs:
                raise FakeServingError("INVALID_ARGUMENT", f"Unknown input: {key}")
            try:
                return np.asarray(value, dtype=specs[key].dtype.as_numpy_dtype)
            except (TypeError, ValueError) as error:
                raise FakeServingError("INVALID_ARGUMENT", str(error)) from None

        if ("instances" in request) == ("inputs" in request):
            raise FakeServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
        if "instances" in request:
            rows = request["instances"]
            if len(specs) == 1:
                inputs = {k: tensor(k, rows) for k in specs}
            else:
                inputs = {k: tensor(k, [row[k] for row in rows]) for k in specs}
        else:
            columns = request["inputs"]
            if not isinstance(columns, dict):
                columns = {next(iter(specs)): columns}
            inputs = {k: tensor(k, v) for k, v in columns.items()}
        outputs = self.predict("rest", name, version, signature, inputs)
        if "instances" in request:
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values())).tolist()}
            count = len(next(iter(outputs.values())))
            rows = [{k: v[i].tolist() for k, v in outputs.items()} for i in range(count)]
            return {"predictions": rows}
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}}

    # ------------------------------------------------------------ gRPC
    def grpc_servicer(self):
        server = self

        def abort(context, failure: FakeServingError):
            code = getattr(grpc.StatusCode, failure.code)
            context.abort(code, str(failure))

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 (gRPC's name)
                spec = request.model_spec
                version = spec.version.value if spec.HasField("version") else None
                signature = spec.signature_name or "serving_default"
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                try:
                    outputs = server.predict("grpc", spec.name, version, signature, inputs)
                except FakeServingError as failure:
                    abort(context, failure)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.signature_name = signature
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                return server.tampered("grpc", "predict", response)

            def GetModelMetadata(self, request, context):  # noqa: N802
                spec = request.model_spec
                version = spec.version.value if spec.HasField("version") else None
                try:
                    response = server.metadata("grpc", spec.name, version)
                except FakeServingError as failure:
                    abort(context, failure)
                return server.tampered("grpc", "metadata", response)

        return Servicer()

    def model_servicer(self):
        server = self

        class Servicer(model_service_pb2_grpc.ModelServiceServicer):
            def GetModelStatus(self, request, context):  # noqa: N802 (gRPC's name)
                spec = request.model_spec
                version = spec.version.value if spec.HasField("version") else None
                try:
                    return server.status("grpc", spec.name, version)
                except FakeServingError as failure:
                    context.abort(getattr(grpc.StatusCode, failure.code), str(failure))

        return Servicer()


def rest_status(response) -> dict:
    """TF Serving's REST layout of a status response: every field, enums by name, versions as
    strings."""
    states = get_model_status_pb2.ModelVersionStatus.State
    rows = [
        {
            "version": str(entry.version),
            "state": states.Name(entry.state),
            "status": {
                "error_code": STATUS_CODES[entry.status.error_code],
                "error_message": entry.status.error_message,
            },
        }
        for entry in response.model_version_status
    ]
    return {"model_version_status": rows}


@contextlib.contextmanager
def serving(export_dir, failed: dict[str, Any] | None = None) -> Iterator[FakeModelServer]:
    """A `FakeModelServer` over `export_dir`'s models, answering REST and gRPC on 127.0.0.1
    (its ``rest_port`` and ``grpc_port``) until the block ends."""
    fake = FakeModelServer(export_dir, failed)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), fake.rest_handler())
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        fake.grpc_servicer(), grpc_server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake.model_servicer(), grpc_server)
    fake.grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    fake.rest_port = httpd.server_address[1]
    grpc_server.start()
    try:
        yield fake
    finally:
        grpc_server.stop(grace=None)
        httpd.shutdown()
        httpd.server_close()


def client_for(server, protocol="rest", *, from_export=False, **kwargs) -> ServingClient:
    """A `ServingClient` (timeout 30 s unless given) on `server`'s ports; with `from_export`,
    made by `ServingClient.from_export` on the served folder (its shapes and cap)."""
    kwargs.setdefault("timeout", 30)
    ports = {"protocol": protocol, "rest_port": server.rest_port, "grpc_port": server.grpc_port}
    if from_export:
        return ServingClient.from_export(server.export_dir, "127.0.0.1", **ports, **kwargs)
    return ServingClient("127.0.0.1", **ports, **kwargs)
