"""What the serving client returns and raises: `ServingError` and the result tuples.

>>> ModelVersion(1, "AVAILABLE", None)
ModelVersion(version=1, state='AVAILABLE', error=None)
>>> ServingError("REST predict on model 'decoder' failed", "NOT_FOUND").code
'NOT_FOUND'
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class ServingError(RuntimeError):
    """A request to the model server failed; the message says which one, where and why.

    ``code`` is the status the server answered with as a gRPC status name ("NOT_FOUND",
    "INVALID_ARGUMENT", ...; the REST API's HTTP 404 and 400 map to those two, other HTTP
    errors read "HTTP <status>"), or None when the failure is not a server's answer (a timeout,
    no connection, a malformed response).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
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
    """Samples: ``x_mean`` [n, *data_shape] decoded from ``z`` [n, latent_dim], and
    ``component`` int32 [n], each draw's mixture component, for a mixture or vamp prior or an
    export drawing from the aggregate sampler (None for N(0, I)). It unpacks as ``x_mean, z``
    whatever the prior; read ``component`` by name."""

    component: np.ndarray | None

    def __new__(
        cls, x_mean: np.ndarray, z: np.ndarray, component: np.ndarray | None = None
    ) -> Samples:
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
