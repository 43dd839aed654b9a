"""The model server as the serving client sees it, whatever the protocol: predictions whose
outputs are checked, the served signatures (read once per model) and the shapes they declare
(`ServedShapes`: the client's data_shape and latent_dim, given or read), and what the server
serves (versions, states, signatures). It calls a `RestTransport` or a `GrpcTransport`, which
have the same methods.

    >>> from keras_vae.serving.rest_transport import RestTransport
    >>> server = ModelServer(RestTransport("localhost", 8501, version=None, timeout=10.0))
    >>> server.where("decoder", status=True)
    "REST status on model 'decoder' at http://localhost:8501/v1/models/decoder"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_vae.serving.grpc_transport import GrpcTransport
from keras_vae.serving.request_checks import PredictCall
from keras_vae.serving.response_checks import check_declared, check_outputs
from keras_vae.serving.rest_transport import RestTransport
from keras_vae.serving.results import ServedModel, ServingError
from keras_vae.signatures import SERVING_DEFAULT

AVAILABLE = "AVAILABLE"


class ModelServer:
    """Checked calls to one model server through `transport`."""

    def __init__(self, transport: RestTransport | GrpcTransport) -> None:
        self.transport = transport
        self._served: dict[str, dict[str, Any]] = {}  # model -> its serving_default (metadata)

    def where(
        self,
        model: str,
        signature: str | None = None,
        metadata: bool = False,
        status: bool = False,
    ) -> str:
        """'REST predict on model 'decoder', signature 'sample' at http://...' and the like."""
        verb = "" if status else "/metadata" if metadata else ":predict"
        address = self.transport.address(model, verb)
        named = f"model {model!r}" + (f", signature {signature!r}" if signature else "")
        return f"{self.transport.name} {verb.strip(':/') or 'status'} on {named} at {address}"

    def predict(self, call: PredictCall, deadline: float, not_found: str = "") -> dict[str, Any]:
        """The outputs of `call`, checked as its fields say (`check_outputs`); `not_found` ends
        the message of a NOT_FOUND answer."""
        where = self.where(call.model, call.signature)
        try:
            outputs = self.transport.predict(where, call, deadline)
        except ServingError as error:
            if error.code != "NOT_FOUND" or not not_found:
                raise
            raise ServingError(f"{error} {not_found}", error.code) from None
        return check_outputs(where, outputs, call)

    def signatures(self, model: str, deadline: float) -> tuple[int | None, dict[str, Any]]:
        """(the version described, {signature name: its inputs and outputs}) of `model`."""
        return self.transport.metadata(self.where(model, metadata=True), model, deadline)

    def signature(self, model: str, signature: str, deadline: float) -> dict[str, Any]:
        """`model`'s served `signature` ({"inputs": ..., "outputs": ...}) from its metadata."""
        _, signatures = self.signatures(model, deadline)
        if signature not in signatures:
            raise ServingError(
                f"{self.where(model, metadata=True)}: the model has no signature "
                f"{signature!r} (it has {sorted(signatures)})."
            )
        return signatures[signature]

    def served_dims(
        self, model: str, kind: str, name: str, deadline: float, latent: bool = False
    ) -> tuple[int, ...]:
        """The sizes after the batch axis of input or output (`kind`) `name` of `model`'s
        ``serving_default``, from its metadata (read once): z's one size (`latent`), at most
        MAX_LAYER_WIDTH, else one example's, at most MAX_DECLARED_EXAMPLE_VALUES in all;
        ServingError for a shape beyond them, before anything is sized from it."""
        if model not in self._served:
            self._served[model] = self.signature(model, SERVING_DEFAULT, deadline)
        tensors = self._served[model][kind]
        where = self.where(model, SERVING_DEFAULT, metadata=True)
        noun = kind[:-1]
        if name not in tensors:
            raise ServingError(
                f"{where}: the signature has no {noun} {name!r} (its {kind}: {sorted(tensors)}); "
                "is the server serving a `keras-vae export` model under that name?"
            )
        shape = tensors[name]["shape"]
        dims = tuple(shape[1:])
        ok = len(shape) >= 2 and (not latent or len(shape) == 2)
        if not ok or not all(d >= 1 for d in dims):
            raise ServingError(
                f"{where}: {noun} {name!r} has shape {shape}, expected [-1, size, ...] with every "
                "size after the batch axis known; pass data_shape and latent_dim to the client."
            )
        check_declared(where, f"{noun} {name!r}", shape, latent)
        return dims

    def served_models(
        self, names: Sequence[str], one: bool, deadline: float
    ) -> dict[str, ServedModel]:
        """{name: ServedModel} of `names`; unless `one` (a model asked for by name), those the
        server does not serve are left out, and ServingError only when it serves none."""
        served, missing = {}, []
        for name in names:
            try:
                served[name] = self.served_model(name, deadline)
            except ServingError as error:
                if one or error.code != "NOT_FOUND":
                    raise
                missing.append(str(error))
        if not served:
            raise ServingError(
                f"The server serves none of this client's models {list(names)}: "
                + " ".join(missing),
                "NOT_FOUND",
            )
        return served

    def served_model(self, model: str, deadline: float) -> ServedModel:
        """`model`'s versions and states, and the signatures of the version calls go to."""
        try:
            versions = self.transport.status(self.where(model, status=True), model, deadline)
        except ServingError as error:
            if error.code != "NOT_FOUND":
                raise
            version = self.transport.version
            which = (
                f"model {model!r}" if version is None else f"version {version} of model {model!r}"
            )
            raise ServingError(
                f"{error} The server does not serve {which}; check the name (the client's "
                "`encoder`, `decoder` and `scorer` arguments) and the server's model config "
                "(serving/models.config).",
                error.code,
            ) from None
        if not any(v.state == AVAILABLE for v in versions):
            return ServedModel(model, None, versions, {})
        version, signatures = self.signatures(model, deadline)
        if SERVING_DEFAULT in signatures:
            self._served.setdefault(model, signatures[SERVING_DEFAULT])
        return ServedModel(model, version, versions, signatures)


class ServedShapes:
    """One example's shape and z's size: `data_shape` and `latent_dim` as given, else read
    from the metadata of the model that takes them (``x`` of the encoder, ``z`` of the
    decoder) on first use and kept."""

    def __init__(
        self,
        server: ModelServer,
        encoder: str,
        decoder: str,
        data_shape: tuple[int, ...] | None,
        latent_dim: int | None,
    ) -> None:
        self.server, self.encoder, self.decoder = server, encoder, decoder
        self.data_shape, self.latent_dim = data_shape, latent_dim

    def data(self, deadline: float, model: str | None = None) -> tuple[int, ...]:
        """data_shape, else input ``x`` of `model`'s (the encoder's) metadata, kept."""
        if self.data_shape is None:
            model = model or self.encoder
            self.data_shape = self.server.served_dims(model, "inputs", "x", deadline)
        return self.data_shape

    def latent(self, deadline: float) -> int:
        """latent_dim, else input ``z`` of the decoder's metadata, kept."""
        if self.latent_dim is None:
            dims = self.server.served_dims(self.decoder, "inputs", "z", deadline, latent=True)
            (self.latent_dim,) = dims
        return self.latent_dim

    def encoded(self, deadline: float) -> int:
        """latent_dim, else output ``z_mean`` of the encoder's metadata (not kept)."""
        if self.latent_dim is not None:
            return self.latent_dim
        dims = self.server.served_dims(self.encoder, "outputs", "z_mean", deadline, latent=True)
        return dims[0]

    def decoded(self, deadline: float) -> tuple[int, ...]:
        """One decoded example's shape: data_shape, else what the decoder's metadata says."""
        if self.data_shape is not None:
            return self.data_shape
        return self.server.served_dims(self.decoder, "outputs", "x_mean", deadline)
