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

    Example:
        >>> try:
        ...     raise ServingError("REST predict on model 'decoder': timed out after 10 s.")
        ... except RuntimeError as error:  # no server's answer: no code
        ...     print(type(error).__name__, error.code)
        ServingError None
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Encoding(NamedTuple):
    """q(z|x) for a batch: each [batch, latent_dim].

    Example:
        >>> z_mean, z_stddev = Encoding(np.zeros((8, 2)), np.ones((8, 2)))
        >>> Encoding._fields, z_stddev.shape
        (('z_mean', 'z_stddev'), (8, 2))
    """

    z_mean: np.ndarray
    z_stddev: np.ndarray


class _SampleArrays(NamedTuple):
    x_mean: np.ndarray
    z: np.ndarray


class Samples(_SampleArrays):
    """Samples: ``x_mean`` [n, *data_shape] decoded from ``z`` [n, latent_dim], and
    ``component`` int32 [n], each draw's mixture component, for a mixture or vamp prior or an
    export drawing from the aggregate sampler (None for N(0, I)). It unpacks as ``x_mean, z``
    whatever the prior; read ``component`` by name.

    Example:
        >>> drawn = Samples(np.zeros((3, 8, 8)), np.zeros((3, 2)), np.array([0, 2, 0], np.int32))
        >>> x_mean, z = drawn
        >>> len(drawn), x_mean.shape, drawn.component.tolist()
        (2, (3, 8, 8), [0, 2, 0])
        >>> Samples(x_mean, z).component is None  # an N(0, I) prior
        True
    """

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
    threshold), else None.

    Example:
        >>> elbo, kl = np.array([-90.5, -310.0], np.float32), np.array([10.0, 95.0], np.float32)
        >>> scores = ScoreResult(elbo, elbo + 2, elbo + kl, kl, is_anomaly=np.array([False, True]))
        >>> scores._fields
        ('elbo', 'log_likelihood', 'reconstruction', 'kl', 'is_anomaly')
        >>> scores.reconstruction.tolist(), scores.is_anomaly.tolist()
        ([-80.5, -215.0], [False, True])
    """

    elbo: np.ndarray
    log_likelihood: np.ndarray
    reconstruction: np.ndarray
    kl: np.ndarray
    is_anomaly: np.ndarray | None


class ModelVersion(NamedTuple):
    """One version of a served model as TF Serving's model status API reports it: ``state``
    is "AVAILABLE" (serving), "START", "LOADING", "UNLOADING", "END" or "UNKNOWN"; ``error``
    the version's status ("CODE: message", e.g. why it failed to load), None when OK.

    Example:
        >>> failed = ModelVersion(3, "END", "NOT_FOUND: no SavedModel in /models/decoder/3")
        >>> failed.state, failed.error.split(":")[0]
        ('END', 'NOT_FOUND')
    """

    version: int
    state: str
    error: str | None


class ServedModel(NamedTuple):
    """What the server serves under one model name: every version it knows (``versions``,
    oldest first), the version calls go to (``version``: the client's `version`, else the
    latest available; None when no version is available) and that version's ``signatures``
    (``{signature name: {"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}}``, -1 marks
    any size; empty when no version is available).

    Example:
        >>> versions = (ModelVersion(1, "AVAILABLE", None), ModelVersion(2, "LOADING", None))
        >>> served = ServedModel("decoder", 1, versions, {"sample": {"inputs": {}, "outputs": {}}})
        >>> served.version, [v.state for v in served.versions], list(served.signatures)
        (1, ['AVAILABLE', 'LOADING'], ['sample'])
    """

    name: str
    version: int | None
    versions: tuple[ModelVersion, ...]
    signatures: dict[str, dict[str, Any]]


class PosteriorSample(NamedTuple):
    """One draw z ~ q(z|x) per example: ``z`` [batch, latent_dim], ``log_q`` [batch] (log
    q(z|x) in nats), and the encoder's Gaussian ``z_mean``, ``z_stddev`` [batch, latent_dim]
    (of an IAF's base distribution, before its flow).

    Example:
        >>> z_mean, z_stddev = np.zeros((4, 2)), np.ones((4, 2))
        >>> drawn = PosteriorSample(z_mean + z_stddev, np.full(4, -2.5), z_mean, z_stddev)
        >>> drawn._fields, drawn.z.shape, drawn.log_q.shape
        (('z', 'log_q', 'z_mean', 'z_stddev'), (4, 2), (4,))
    """

    z: np.ndarray
    log_q: np.ndarray
    z_mean: np.ndarray
    z_stddev: np.ndarray
