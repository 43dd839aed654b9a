"""A client for the encoder and decoder served by TF Serving from a `keras-vae export` folder.

REST (JSON, port 8501, needs ``requests``) or gRPC (port 8500, needs
``tensorflow-serving-api``); both are in the ``serving`` extra. Inputs are checked against the
served signatures (their shapes come from the constructor, from export.json or from the model
server's metadata API) before any prediction request is sent, every call has a timeout, and
every failure raises `ServingError` saying which model, signature and address failed and why.

Example:

    >>> client = ServingClient("localhost", protocol="rest")      # doctest: +SKIP
    >>> z_mean, z_stddev = client.encode(x_test[:8])               # doctest: +SKIP
    >>> client.decode(z_mean).shape                                # doctest: +SKIP
    (8, 28, 28)
    >>> x_mean, z = client.sample(16, seed=0)                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

PROTOCOLS = ("rest", "grpc")
REST_FORMATS = ("columnar", "row")
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
SERVING_DEFAULT = "serving_default"
SAMPLE = "sample"
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
GRPC_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# TensorFlow's DataType enum names (as the metadata API spells them) -> NumPy names.
_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_STRING": "string",
}


class ServingError(RuntimeError):
    """A request to the model server failed; the message says which one, where and why."""


class Encoding(NamedTuple):
    """q(z|x) for a batch: each [batch, latent_dim]."""

    z_mean: np.ndarray
    z_stddev: np.ndarray


class Samples(NamedTuple):
    """Prior samples: ``x_mean`` [n, *data_shape] decoded from ``z`` [n, latent_dim]."""

    x_mean: np.ndarray
    z: np.ndarray


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(
            f"Unknown {name} {value!r}. Expected one of {list(allowed)}. Received: {name}={value!r}"
        )


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(
            f"Received an invalid value for `{name}`, expected an integer {bound}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def _check_batch(name: str, value: Any, item_shape: Sequence[int]) -> np.ndarray:
    """`value` as float32 [batch, *item_shape], batch >= 1, finite; ValueError otherwise."""
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
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or inf (after conversion to float32).")
    return array


class ServingClient:
    """Calls the ``encoder`` and ``decoder`` models of a TF Serving model server.

    Args:
        host: the model server's host name or address. Default "localhost".
        protocol: "rest" (JSON over HTTP) or "grpc". Default "rest".
        rest_port: REST API port. Default 8501.
        grpc_port: gRPC port. Default 8500.
        timeout: seconds to wait for each request. Default 10.
        encoder: served name of the encoder. Default "encoder".
        decoder: served name of the decoder. Default "decoder".
        version: a model version to ask for; None (default) lets the server pick (latest).
        data_shape: one example's shape; None: read from the server's model metadata.
        latent_dim: size of z; None: read from the server's model metadata.
        rest_format: "columnar" (``{"inputs": ...}``, default) or "row" (``{"instances": ...}``)
            for encode and decode; `sample` has scalar inputs and is always columnar.

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
        encoder: str = "encoder",
        decoder: str = "decoder",
        version: int | None = None,
        data_shape: Sequence[int] | None = None,
        latent_dim: int | None = None,
        rest_format: str = "columnar",
    ):
        _check_choice("protocol", protocol, PROTOCOLS)
        _check_choice("rest_format", rest_format, REST_FORMATS)
        self.host = str(host)
        self.protocol = protocol
        self.rest_port = _check_int("rest_port", rest_port, 1, 65535)
        self.grpc_port = _check_int("grpc_port", grpc_port, 1, 65535)
        number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if not number or not 0 < timeout < math.inf:
            raise ValueError(
                "Received an invalid value for `timeout`, expected a positive number of "
                f"seconds. Received: timeout={timeout!r}"
            )
        self.timeout = float(timeout)
        self.encoder = encoder
        self.decoder = decoder
        self.version = None if version is None else _check_int("version", version, 1)
        self.data_shape = None if data_shape is None else tuple(int(d) for d in data_shape)
        self.latent_dim = None if latent_dim is None else _check_int("latent_dim", latent_dim, 1)
        self.rest_format = rest_format
        self._session = None
        self._channel = None
        self._stub = None

    @classmethod
    def from_export(cls, export_dir: str | os.PathLike, host: str = "localhost", **kwargs):
        """A client whose shapes (and version, unless given) come from DIR/export.json."""
        path = Path(export_dir) / "export.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            model = record["model"]
            kwargs.setdefault("data_shape", model["data_shape"])
            kwargs.setdefault("latent_dim", model["latent_dim"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"Cannot read the shapes from {path} ({type(error).__name__}: {error}); pass "
                "the folder written by `keras-vae export`, or data_shape and latent_dim."
            ) from None
        return cls(host, **kwargs)

    # ------------------------------------------------------------------ public API
    def encode(self, x: Any) -> Encoding:
        """(z_mean, z_stddev) of q(z|x) from the encoder's ``serving_default``."""
        x = _check_batch("x", x, self._data_shape())
        out = self.predict(self.encoder, SERVING_DEFAULT, {"x": x}, ("z_mean", "z_stddev"))
        return Encoding(out["z_mean"], out["z_stddev"])

    def decode(self, z: Any) -> np.ndarray:
        """E[x|z], [batch, *data_shape], from the decoder's ``serving_default``."""
        z = _check_batch("z", z, (self._latent_dim(),))
        return self.predict(self.decoder, SERVING_DEFAULT, {"z": z}, ("x_mean",))["x_mean"]

    def sample(self, n: int, seed: int) -> Samples:
        """`n` prior samples from the decoder's ``sample`` signature; the same seed gives the
        same samples."""
        n = _check_int("n", n, 1, INT32_MAX)
        seed = _check_int("seed", seed, INT32_MIN, INT32_MAX)
        inputs = {"num_samples": np.int32(n), "seed": np.int32(seed)}
        out = self.predict(self.decoder, SAMPLE, inputs, ("x_mean", "z"), columnar=True)
        return Samples(out["x_mean"], out["z"])

    def predict(
        self,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        columnar: bool = False,
    ) -> dict[str, np.ndarray]:
        """One Predict call; returns the outputs named `output_names` as float32 arrays."""
        label = "REST" if self.protocol == "rest" else "gRPC"
        what = f"{label} predict on model {model!r}, signature {signature!r}"
        if self.protocol == "rest":
            row = self.rest_format == "row" and not columnar
            outputs = self._rest_predict(what, model, signature, inputs, output_names, row)
        else:
            outputs = self._grpc_predict(what, model, signature, inputs)
        missing = [name for name in output_names if name not in outputs]
        if missing:
            raise ServingError(
                f"{what}: the response lacks outputs {missing} (it has {sorted(outputs)}); is "
                "the server serving a `keras-vae export` model under that name?"
            )
        return {name: np.asarray(outputs[name], np.float32) for name in output_names}

    def signature(self, model: str, signature: str = SERVING_DEFAULT) -> dict[str, Any]:
        """A served signature from the model server's metadata API.

        Returns:
            ``{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}``; -1 marks any size.
        """
        if self.protocol == "rest":
            signatures = self._rest_metadata(model)
        else:
            signatures = self._grpc_metadata(model)
        if signature not in signatures:
            raise ServingError(
                f"Model {model!r} has no signature {signature!r} (it has {sorted(signatures)})."
            )
        return signatures[signature]

    def close(self) -> None:
        """Release the HTTP session and the gRPC channel."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ shapes
    def _data_shape(self) -> tuple[int, ...]:
        if self.data_shape is None:
            shape = self.signature(self.encoder)["inputs"]["x"]["shape"]
            self.data_shape = tuple(shape[1:])
        return self.data_shape

    def _latent_dim(self) -> int:
        if self.latent_dim is None:
            self.latent_dim = int(self.signature(self.decoder)["inputs"]["z"]["shape"][-1])
        return self.latent_dim

    # ------------------------------------------------------------------ REST
    def _rest_url(self, model: str, verb: str) -> str:
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"http://{self.host}:{self.rest_port}/v1/models/{model}{version}{verb}"

    def _rest_call(self, what: str, method: str, url: str, body: Any = None) -> Any:
        try:
            import requests
        except ImportError:
            raise ServingError(
                "The REST client needs `requests`: pip install 'keras-vae[serving]'."
            ) from None
        if self._session is None:
            self._session = requests.Session()
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout:
            raise ServingError(f"{what} at {url} timed out after {self.timeout:g} s.") from None
        except requests.ConnectionError as error:
            raise ServingError(
                f"{what}: cannot connect to {url} ({type(error).__name__}); is TF Serving "
                f"running with its REST API on port {self.rest_port}?"
            ) from None
        except requests.RequestException as error:
            raise ServingError(f"{what} at {url} failed: {error}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            detail = payload.get("error") if isinstance(payload, dict) else None
            detail = detail or response.text[:500] or response.reason
            raise ServingError(f"{what} at {url} failed: HTTP {response.status_code}: {detail}")
        if not isinstance(payload, dict):
            raise ServingError(f"{what} at {url}: the response is not a JSON object.")
        return payload

    def _rest_predict(
        self,
        what: str,
        model: str,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        row: bool,
    ) -> dict[str, Any]:
        url = self._rest_url(model, ":predict")
        body: dict[str, Any] = {"signature_name": signature}
        if row:
            names = list(inputs)
            if len(names) == 1:
                body["instances"] = inputs[names[0]].tolist()
            else:
                count = len(inputs[names[0]])
                body["instances"] = [
                    {name: inputs[name][i].tolist() for name in names} for i in range(count)
                ]
        else:
            body["inputs"] = {name: np.asarray(value).tolist() for name, value in inputs.items()}
        payload = self._rest_call(what, "POST", url, body)
        if row:
            if "predictions" not in payload:
                raise ServingError(f"{what} at {url}: the response has no 'predictions'.")
            rows = payload["predictions"]
            if len(output_names) == 1 and not (rows and isinstance(rows[0], dict)):
                return {output_names[0]: rows}
            return {name: [r[name] for r in rows] for name in rows[0]} if rows else {}
        if "outputs" not in payload:
            raise ServingError(f"{what} at {url}: the response has no 'outputs'.")
        outputs = payload["outputs"]
        if not isinstance(outputs, dict) and len(output_names) == 1:
            return {output_names[0]: outputs}
        return outputs

    def _rest_metadata(self, model: str) -> dict[str, Any]:
        url = self._rest_url(model, "/metadata")
        what = f"REST metadata of model {model!r}"
        payload = self._rest_call(what, "GET", url)
        try:
            signatures = payload["metadata"]["signature_def"]["signature_def"]
            return {key: _signature_from_json(sig) for key, sig in signatures.items()}
        except (KeyError, TypeError, ValueError) as error:
            raise ServingError(
                f"{what} at {url}: unexpected response layout ({type(error).__name__}: {error})."
            ) from None

    # ------------------------------------------------------------------ gRPC
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
            options = [
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
            ]
            self._channel = grpc.insecure_channel(f"{self.host}:{self.grpc_port}", options)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        return self._stub

    def _model_spec(self, spec, model: str, signature: str = "") -> None:
        spec.name = model
        if signature:
            spec.signature_name = signature
        if self.version is not None:
            spec.version.value = self.version

    def _grpc_call(self, what: str, method, request):
        import grpc

        target = f"{self.host}:{self.grpc_port}"
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = error.details() if hasattr(error, "details") else str(error)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(
                    f"{what} at {target} timed out after {self.timeout:g} s."
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(
                    f"{what}: cannot reach {target} ({details}); is TF Serving running with "
                    f"its gRPC API on port {self.grpc_port}?"
                ) from None
            name = code.name if code is not None else "error"
            raise ServingError(f"{what} at {target} failed: gRPC {name}: {details}") from None

    def _grpc_predict(
        self, what: str, model: str, signature: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        stub = self._grpc()
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, model, signature)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = self._grpc_call(what, stub.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _grpc_metadata(self, model: str) -> dict[str, Any]:
        stub = self._grpc()
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, model)
        request.metadata_field.append("signature_def")
        what = f"gRPC metadata of model {model!r}"
        response = self._grpc_call(what, stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(signature_map):
            raise ServingError(f"{what}: the response holds no SignatureDefMap.")
        from google.protobuf import json_format

        return {
            key: _signature_from_json(json_format.MessageToDict(sig))
            for key, sig in signature_map.signature_def.items()
        }


def _signature_from_json(signature: Mapping[str, Any]) -> dict[str, Any]:
    """A SignatureDef in protobuf's JSON mapping -> ``{"inputs"/"outputs": {name: info}}``."""

    def infos(tensors: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, info in tensors.items():
            dims = info.get("tensorShape", info.get("tensor_shape", {})).get("dim", [])
            dtype = str(info.get("dtype", "DT_INVALID"))
            out[name] = {
                "dtype": _DTYPES.get(dtype, dtype.removeprefix("DT_").lower()),
                "shape": [int(d.get("size", -1)) for d in dims],
            }
        return out

    return {
        "inputs": infos(signature.get("inputs", {})),
        "outputs": infos(signature.get("outputs", {})),
    }
