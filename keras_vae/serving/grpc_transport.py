"""TF Serving's gRPC API (``PredictionService``, ``ModelService``; port 8500) for the serving
client. It needs ``tensorflow-serving-api`` (the ``serving`` extra), imported on the first
call, not with this module. The same methods as `RestTransport` (rest_transport.py), so the
client never asks which protocol it speaks; the receive cap (`MAX_RESPONSE_BYTES`) bounds what
one response may make the client hold, and every tensor's declared shape is checked before it
is converted.

    >>> transport = GrpcTransport("localhost", 8500, version=None, timeout=10.0)
    >>> transport.address("encoder", ":predict")   # no connection is made until a call
    'localhost:8500'
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_vae.serving import response_checks as checks
from keras_vae.serving.request_checks import PredictCall
from keras_vae.serving.rest_transport import host_port
from keras_vae.serving.results import ModelVersion, ServingError

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from tensorflow_serving.apis.model_pb2 import ModelSpec
    from tensorflow_serving.apis.model_service_pb2_grpc import ModelServiceStub
    from tensorflow_serving.apis.prediction_service_pb2_grpc import PredictionServiceStub


class GrpcTransport:
    """Predict, metadata and model status RPCs to TF Serving's gRPC API at `host`:`port`
    (`version`: the model version asked for, None for the latest), each with the time left to
    its caller's deadline as its gRPC deadline (`timeout` is the client's, for the messages)."""

    name = "gRPC"

    def __init__(self, host: str, port: int, version: int | None, timeout: float) -> None:
        self.host, self.port, self.version, self.timeout = host, port, version, timeout
        self._channel = None
        self._stub: PredictionServiceStub | None = None
        self._model_stub: ModelServiceStub | None = None  # ModelService (model status)

    def address(self, model: str, verb: str) -> str:
        """The channel's target (the same for every model and verb)."""
        return host_port(self.host, self.port)

    def close(self) -> None:
        """Close the gRPC channel (a later call opens a new one)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = self._model_stub = None

    def predict(self, where: str, call: PredictCall, deadline: float) -> dict[str, Any]:
        """The response's outputs as arrays (gRPC has one layout, whatever ``call.columnar``);
        each output's declared shape is checked (against ``call.expected_shapes``, else
        against MAX_RESPONSE_BYTES of float32) before it is converted, since a small message
        may declare a huge shape that conversion would fill."""
        stub = self._prediction_stub()
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, call.model, call.signature)
        for name, value in call.inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = self._call(where, stub.Predict, request, deadline)
        outputs = {}
        shapes = call.expected_shapes or {}
        cap = checks.MAX_RESPONSE_BYTES
        for name, proto in response.outputs.items():
            declared = tuple(int(d.size) for d in proto.tensor_shape.dim)
            if name in shapes and declared != tuple(shapes[name]):
                raise ServingError(
                    f"{where}: output {name!r} has shape {declared} but expected "
                    f"{tuple(shapes[name])}."
                )
            if min(declared, default=0) < 0 or 4 * math.prod(declared) > cap:
                raise ServingError(
                    f"{where}: output {name!r} declares shape {declared}, but this client "
                    f"accepts at most {cap // 4:,} float32 values ({cap} bytes) in a "
                    "response, each size >= 0. Nothing was converted."
                )
            try:
                outputs[name] = tf.make_ndarray(proto)
            except (TypeError, ValueError) as error:
                raise ServingError(
                    f"{where}: output {name!r} is not a valid tensor ({type(error).__name__}: "
                    f"{error})."
                ) from None
        return outputs

    def metadata(
        self, where: str, model: str, deadline: float
    ) -> tuple[int | None, dict[str, Any]]:
        """(the version described, {signature name: its inputs and outputs}) of `model`."""
        stub = self._prediction_stub()
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, model)
        request.metadata_field.append("signature_def")
        response = self._call(where, stub.GetModelMetadata, request, deadline)
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
        signatures = {
            key: json_format.MessageToDict(value)
            for key, value in signature_map.signature_def.items()
        }
        return version, checks.signatures_from_json(where, signatures)

    def status(self, where: str, model: str, deadline: float) -> tuple[ModelVersion, ...]:
        """Every version of `model` the server knows, oldest first
        (``ModelService.GetModelStatus``)."""
        self._prediction_stub()
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        if self._model_stub is None:
            self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, model)
        response = self._call(where, self._model_stub.GetModelStatus, request, deadline)
        payload = json_format.MessageToDict(response, preserving_proto_field_name=True)
        return checks.versions_from_json(where, payload)

    def _prediction_stub(self) -> PredictionServiceStub:
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
                ("grpc.max_send_message_length", checks.GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", checks.MAX_RESPONSE_BYTES),
            ]
            self._channel = grpc.insecure_channel(host_port(self.host, self.port), options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        return self._stub

    def _model_spec(self, spec: ModelSpec, model: str, signature: str = "") -> None:
        spec.name = model
        if signature:
            spec.signature_name = signature
        if self.version is not None:
            spec.version.value = self.version

    def _call(
        self, where: str, method: Callable[..., Message], request: Message, deadline: float
    ) -> Message:
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
                    f"{where}: the response is larger than {checks.MAX_RESPONSE_BYTES} bytes, "
                    f"the most this client accepts ({details}); ask for fewer rows per call.",
                    code.name,
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(
                    f"{where}: cannot reach the server ({details}); is TF Serving running with "
                    f"its gRPC API on port {self.port}?"
                ) from None
            name = code.name if code is not None else "error"
            raise ServingError(
                f"{where} failed: gRPC {name}: {details}", code.name if code else None
            ) from None
