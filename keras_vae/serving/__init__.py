"""A client for the encoder, decoder and scorer served by TF Serving from a `keras-vae export`
folder: `ServingClient` and what it returns. Importing it loads no TensorFlow (nor Keras),
and REST calls need NumPy only; gRPC calls import ``tensorflow-serving-api`` (and with it
TensorFlow) on first use.

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

The modules: results.py (the result tuples, `ServingError`), request_checks.py (what a call
is given), response_checks.py (what a server answers, and the caps), rest_transport.py and
grpc_transport.py (the two protocols, objects with the same methods), model_server.py (checked
calls through either) and client.py (`ServingClient`).

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

from keras_vae.serving.client import (
    DEFAULT_GRPC_PORT,
    DEFAULT_REST_PORT,
    PROTOCOLS,
    REST_FORMATS,
    ServingClient,
)
from keras_vae.serving.request_checks import INT32_MAX, INT32_MIN
from keras_vae.serving.response_checks import (
    GRPC_MAX_MESSAGE_BYTES,
    MAX_DECLARED_EXAMPLE_VALUES,
    MAX_DECLARED_RANK,
    MAX_RESPONSE_BYTES,
    REST_BYTES_PER_VALUE,
    REST_MAX_RESPONSE_BYTES,
    REST_MIN_RESPONSE_BYTES,
)
from keras_vae.serving.results import (
    Encoding,
    ModelVersion,
    PosteriorSample,
    Samples,
    ScoreResult,
    ServedModel,
    ServingError,
)
from keras_vae.signatures import SCORE_NAMES

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_REST_PORT",
    "GRPC_MAX_MESSAGE_BYTES",
    "INT32_MAX",
    "INT32_MIN",
    "MAX_DECLARED_EXAMPLE_VALUES",
    "MAX_DECLARED_RANK",
    "MAX_RESPONSE_BYTES",
    "PROTOCOLS",
    "REST_BYTES_PER_VALUE",
    "REST_FORMATS",
    "REST_MAX_RESPONSE_BYTES",
    "REST_MIN_RESPONSE_BYTES",
    "SCORE_NAMES",
    "Encoding",
    "ModelVersion",
    "PosteriorSample",
    "Samples",
    "ScoreResult",
    "ServedModel",
    "ServingClient",
    "ServingError",
]
