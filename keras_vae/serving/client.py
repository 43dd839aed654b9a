"""`ServingClient`: the encoder, decoder and scorer of a `keras-vae export` folder, called on
a TF Serving model server over REST or gRPC, every argument checked before anything is sent
(request_checks.py), every response checked (response_checks.py), one deadline per call.

    >>> client = ServingClient("localhost", data_shape=(28, 28), latent_dim=20)
    >>> try:
    ...     client.decode(np.zeros((1, 3)))   # checked before anything is sent
    ... except ValueError as error:
    ...     print(str(error)[:56])
    `z` has shape (1, 3) but the served signature takes [bat
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from keras_vae.limits import check_choice
from keras_vae.serving import request_checks as given
from keras_vae.serving.grpc_transport import GrpcTransport
from keras_vae.serving.model_server import ModelServer, ServedShapes
from keras_vae.serving.request_checks import PredictCall
from keras_vae.serving.rest_transport import RestTransport
from keras_vae.serving.results import Encoding, PosteriorSample, Samples, ScoreResult, ServedModel
from keras_vae.signatures import (
    COMPONENT,
    DECODER,
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    ENCODER,
    GENERATE,
    IS_ANOMALY,
    LABEL,
    MAX_VERSION,
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
INT32_MAX = given.INT32_MAX


class ServingClient:
    """Calls the ``encoder``, ``decoder`` and ``scorer`` models of a TF Serving model server.

    Args:
        host: the model server's host name or address. Default "localhost".
        protocol: "rest" (JSON over HTTP) or "grpc". Default "rest".
        rest_port: REST API port. Default 8501.
        grpc_port: gRPC port. Default 8500.
        timeout: seconds one call of `encode`, `posterior_sample`, `decode`, `sample`,
            `generate`, `score`, `metadata`, `predict` or `signature` may take in all: one
            deadline for everything it does (resolving the host, connecting, sending, waiting
            and receiving, and any metadata request it makes first), however slowly the server
            trickles its answer. gRPC gets the time left as the RPC deadline. Default 10.
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
    never more than MAX_RESPONSE_BYTES (REST and gRPC). ``transport`` is the `RestTransport`
    or `GrpcTransport` the calls go through.
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
    ) -> None:
        check_choice("protocol", protocol, PROTOCOLS)
        check_choice("rest_format", rest_format, REST_FORMATS)
        self.host = given.check_host(host)
        self.protocol = protocol
        self.rest_port = given.check_int("rest_port", rest_port, 1, 65535)
        self.grpc_port = given.check_int("grpc_port", grpc_port, 1, 65535)
        self.timeout = given.check_timeout(timeout)
        self.encoder = given.check_model_name("encoder", encoder)
        self.decoder = given.check_model_name("decoder", decoder)
        self.scorer = given.check_model_name("scorer", scorer)
        self.version = given.optional_int("version", version, 1, MAX_VERSION)
        if data_shape is not None:
            data_shape = given.check_data_shape(data_shape)
        latent_dim = given.optional_int("latent_dim", latent_dim, 1)
        self.rest_format = rest_format
        if isinstance(max_samples_per_request, np.integer):
            max_samples_per_request = int(max_samples_per_request)
        self.max_samples_per_request = check_max_samples(max_samples_per_request)
        self.num_classes = given.optional_int("num_classes", num_classes, 0, INT32_MAX)
        self.transport: RestTransport | GrpcTransport
        if protocol == "rest":
            self.transport = RestTransport(
                host, self.rest_port, self.version, self.timeout, rest_format
            )
        else:
            self.transport = GrpcTransport(host, self.grpc_port, self.version, self.timeout)
        self._server = ModelServer(self.transport)
        self._shapes = ServedShapes(self._server, encoder, decoder, data_shape, latent_dim)

    @property
    def data_shape(self) -> tuple[int, ...] | None:
        """One example's shape: as given, else as read from the encoder's metadata (None
        until then)."""
        return self._shapes.data_shape

    @property
    def latent_dim(self) -> int | None:
        """The size of z: as given, else as read from the decoder's metadata (None until
        then)."""
        return self._shapes.latent_dim

    @classmethod
    def from_export(
        cls, export_dir: str | os.PathLike, host: str = "localhost", **kwargs: Any
    ) -> ServingClient:
        """A client whose shapes, `max_samples_per_request` and `num_classes` come from
        DIR/export.json (unless given; an export.json without the cap gets the default,
        10,000; one without ``num_classes`` is an unconditional export: 0)."""
        return cls(host, **given.export_settings(export_dir, kwargs))

    # ------------------------------------------------------------------ public API
    def encode(self, x: Any, labels: Any = None) -> Encoding:
        """(z_mean, z_stddev) of q(z|x) (q(z|x, y) with `labels`, one class index per example,
        for a conditional export) from the encoder's ``serving_default``."""
        deadline = self._deadline()
        x = given.check_batch("x", x, self._shapes.data(deadline))
        label = given.label_input(labels, self.num_classes, len(x), "x")
        shape = (len(x), self._shapes.encoded(deadline))
        shapes = {"z_mean": shape, "z_stddev": shape}
        inputs = {"x": x, **label}
        call = PredictCall(
            self.encoder, SERVING_DEFAULT, inputs, tuple(shapes), shapes, positive=("z_stddev",)
        )
        out = self._server.predict(call, deadline)
        return Encoding(out["z_mean"], out["z_stddev"])

    def posterior_sample(self, x: Any, noise: Any, labels: Any = None) -> PosteriorSample:
        """One draw z ~ q(z|x) per example from the encoder's ``posterior_sample`` signature,
        made from `noise` [batch, latent_dim] (standard normal draws, one row per example of
        `x`): z (through the flow for an IAF posterior), log q(z|x), z_mean and z_stddev. The
        same x and noise always give the same z. A conditional export takes `labels` too
        (q(z|x, y)). All are checked before sending."""
        deadline = self._deadline()
        x = given.check_batch("x", x, self._shapes.data(deadline))
        label = given.label_input(labels, self.num_classes, len(x), "x")
        latent = self._shapes.encoded(deadline)
        noise = given.check_batch("noise", noise, (latent,))
        if len(noise) != len(x):
            raise ValueError(
                f"`noise` has {len(noise)} rows but `x` has {len(x)} examples; "
                "posterior_sample takes one noise row per example. Nothing was sent."
            )
        shape = (len(x), latent)
        shapes = {"z": shape, "log_q": (len(x),), "z_mean": shape, "z_stddev": shape}
        inputs = {"x": x, **label, "noise": noise}
        call = PredictCall(
            self.encoder, POSTERIOR_SAMPLE, inputs, tuple(shapes), shapes, positive=("z_stddev",)
        )
        out = self._server.predict(call, deadline)
        return PosteriorSample(out["z"], out["log_q"], out["z_mean"], out["z_stddev"])

    def decode(self, z: Any, labels: Any = None) -> np.ndarray:
        """E[x|z] (E[x|z, y] with `labels`, one class index per row, for a conditional
        export), [batch, *data_shape], from the decoder's ``serving_default``."""
        deadline = self._deadline()
        z = given.check_batch("z", z, (self._shapes.latent(deadline),))
        label = given.label_input(labels, self.num_classes, len(z), "z")
        shape = (len(z), *self._shapes.decoded(deadline))
        inputs, shapes = {"z": z, **label}, {"x_mean": shape}
        call = PredictCall(self.decoder, SERVING_DEFAULT, inputs, tuple(shapes), shapes)
        out = self._server.predict(call, deadline)
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
        (a mixture or vamp prior, or ``export --sampler aggregate``), else None.

        A conditional export samples by rows instead: ``sample(labels=..., seeds=...)``, one
        class index in [0, K) (or one for all rows) and one int64 seed per row; row i is a
        pure function of (labels[i], seeds[i]) alone, whatever else is in the request (`n`,
        if given, must be the number of rows; `seed` is not taken)."""
        cap = self.max_samples_per_request
        if labels is not None or seeds is not None or self.num_classes:
            label, seeds = given.check_conditional_sample(
                n, seed, labels, seeds, self.num_classes, cap
            )
            return self._seeded_rows(SAMPLE, {LABEL: label, SEEDS: seeds}, len(seeds), True)
        n = given.check_int("n", n, 1, INT32_MAX)
        seed = given.check_int("seed", seed, given.INT32_MIN, INT32_MAX)
        given.check_rows("n", n, SAMPLE, cap)
        inputs = {"num_samples": np.int32(n), "seed": np.int32(seed)}
        return self._seeded_rows(SAMPLE, inputs, n, columnar=True)

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
            mixture (a mixture or vamp prior, the aggregate sampler), ``component`` int32 [rows]
            (else None). All arguments are
            checked before anything is sent.
        """
        seeds = given.check_seeds(seeds)
        rows = len(seeds)
        given.check_rows("seeds", rows, GENERATE, self.max_samples_per_request)
        label = given.label_input(labels, self.num_classes, rows, "seeds")
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
        data_shape = self._shapes.data(deadline, self.scorer)
        x = given.check_batch("x", x, data_shape, given.SCORER_FINITE_ONLY)
        given.check_rows("x", len(x), "score", self.max_samples_per_request)
        label = given.label_input(labels, self.num_classes, len(x), "x")
        inputs, shapes = {"x": x, **label}, dict.fromkeys((*SCORE_NAMES, IS_ANOMALY), (len(x),))
        call = PredictCall(
            self.scorer,
            SERVING_DEFAULT,
            inputs,
            SCORE_NAMES,
            shapes,
            flags=(IS_ANOMALY,),
            finite=False,
        )
        not_found = (
            "Is the scorer exported (`keras-vae export` writes DIR/scorer/) and served under "
            f"the name {self.scorer!r} (serving/models.config)?"
        )
        out = self._server.predict(call, deadline, not_found)
        # mypy cannot count a starred generator's items (the four SCORE_NAMES)
        return ScoreResult(*(out[name] for name in SCORE_NAMES), out.get(IS_ANOMALY))  # type: ignore[call-arg]

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
            names = [given.check_model_name("model", model)]
        return self._server.served_models(names, model is not None, deadline)

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
        model = given.check_model_name("model", model)
        call = PredictCall(model, signature, inputs, output_names, expected_shapes, columnar)
        return self._server.predict(call, self._deadline())

    def signature(self, model: str, signature: str = SERVING_DEFAULT) -> dict[str, Any]:
        """A served signature from the model server's metadata API.

        Returns:
            ``{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}``; -1 marks any size.
        """
        model = given.check_model_name("model", model)
        return self._server.signature(model, signature, self._deadline())

    def close(self) -> None:
        """Release the HTTP connections and the gRPC channel."""
        self.transport.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(
        self, *exc_info: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _deadline(self) -> float:
        return time.monotonic() + self.timeout

    def _seeded_rows(
        self, signature: str, inputs: dict[str, np.ndarray], rows: int, columnar: bool = False
    ) -> Samples:
        """The decoder's seeded `signature` (``sample``, ``generate``) on checked `inputs`:
        `rows` rows of x_mean, z and (mixture priors) component."""
        deadline = self._deadline()
        latent = self._shapes.latent(deadline)
        data_shape = self._shapes.decoded(deadline)
        shapes = {"x_mean": (rows, *data_shape), "z": (rows, latent), COMPONENT: (rows,)}
        call = PredictCall(
            self.decoder, signature, inputs, ("x_mean", "z"), shapes, columnar, (COMPONENT,)
        )
        out = self._server.predict(call, deadline)
        return Samples(out["x_mean"], out["z"], out.get(COMPONENT))
