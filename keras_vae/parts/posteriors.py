"""Posteriors q(z|x): z and log q(z|x) from the encoder's outputs and standard normal noise.

Every posterior starts from the encoder's diagonal Gaussian, z_0 = mu + sigma * eps, and
returns z with its log-density in the same pass (no density evaluation of a z it did not
draw, which an IAF cannot do cheaply).

* `GaussianPosterior`: z = z_0; log q = log N(z; mu, sigma^2); closed-form entropy.
* `IAFPosterior` (Kingma et al. 2016, arXiv:1606.04934): T affine autoregressive steps
  z_t = m_t(z_{t-1}, h) + exp(s_t(z_{t-1}, h)) * z_{t-1}, each m_t, s_t a `MADE` (output d
  sees z's entries of lower degree only, the order reversed every other step) with the
  encoder's features h as context. The Jacobian of each step is triangular with diagonal
  exp(s_t), so log q(z_T|x) = log q_0(z_0|x) - sum_t sum_d s_t,d. s_t is bounded,
  s = 3 tanh(raw / 3), so exp(s) stays finite; the MADE outputs start at zero, making a fresh
  flow the identity (q is then exactly the Gaussian). No closed-form entropy.

    >>> import tensorflow as tf
    >>> q = GaussianPosterior()
    >>> z, log_q = q.sample(tf.zeros([2, 3]), tf.ones([2, 3]), tf.zeros([1, 2, 3]))
    >>> z.shape, log_q.shape
    (TensorShape([1, 2, 3]), TensorShape([1, 2]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

import keras
import tensorflow as tf

from keras_vae import distributions
from keras_vae.parts.made import MADE

MAX_LOG_SCALE = 3.0  # |s_t,d| < 3: each step scales z by at most e^3
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _Posterior(keras.layers.Layer):
    """What every posterior offers; subclasses define `sample` and `entropy`."""

    closed_form_entropy = False
    context_units = 0  # width of the encoder features it needs besides mu and sigma

    def sample(
        self,
        z_mean: tf.Tensor,
        z_stddev: tf.Tensor,
        noise: tf.Tensor,
        context: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """noise [L, batch, D] -> (z [L, batch, D], log q(z|x) [L, batch])."""
        raise NotImplementedError  # pragma: no cover - every posterior defines it

    def entropy(self, z_stddev: tf.Tensor) -> tf.Tensor:
        """H[q(z|x)] [batch], where it has a closed form."""
        raise NotImplementedError  # pragma: no cover - every posterior defines it

    def call(
        self,
        z_mean: tf.Tensor,
        z_stddev: tf.Tensor,
        noise: tf.Tensor,
        context: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.sample(z_mean, z_stddev, noise, context)


@keras.saving.register_keras_serializable(package="keras_vae")
class GaussianPosterior(_Posterior):
    """q(z|x) = N(mu(x), diag sigma(x)^2): the paper's posterior (no weights of its own).

    Example:
        >>> q = GaussianPosterior()
        >>> mu, sigma = tf.constant([[0.5, -1.0]]), tf.constant([[2.0, 2.0]])
        >>> z, _ = q.sample(mu, sigma, tf.constant([[[1.0, 0.5]]]))
        >>> z.numpy().tolist()  # mu + sigma * noise
        [[[2.5, 0.0]]]
        >>> _, log_q = q.sample(mu, sigma, tf.zeros([1, 1, 2]))
        >>> round(float(log_q[0, 0]), 4), round(-2 * math.log(2.0) - math.log(2 * math.pi), 4)
        (-3.2242, -3.2242)
        >>> round(float(q.entropy(sigma)[0]), 4)  # sum log sigma + D (1 + log 2 pi) / 2
        4.2242
    """

    closed_form_entropy = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.built = True  # no weights

    def sample(
        self,
        z_mean: tf.Tensor,
        z_stddev: tf.Tensor,
        noise: tf.Tensor,
        context: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """noise [L, batch, D] -> (z [L, batch, D], log q(z|x) [L, batch])."""
        z = z_mean + z_stddev * noise
        return z, distributions.posterior(z_mean, z_stddev).log_prob(z)

    def entropy(self, z_stddev: tf.Tensor) -> tf.Tensor:
        """H[q(z|x)] = sum_d log sigma_d + D (1 + log 2 pi) / 2, [batch]."""
        return distributions.posterior(tf.zeros_like(z_stddev), z_stddev).entropy()


@keras.saving.register_keras_serializable(package="keras_vae")
class IAFPosterior(_Posterior):
    """The Gaussian posterior followed by `flow_steps` inverse autoregressive flow steps.

    Args:
        latent_dim: D, the size of z.
        flow_steps: T >= 1.
        hidden_units: the hidden widths of each step's MADE. Default (128, 128).
        context_units: width of the encoder features h each step sees. Default 0: none.

    Example:
        >>> import tensorflow as tf
        >>> q = IAFPosterior(latent_dim=3, flow_steps=2, hidden_units=(8,))
        >>> z, log_q = q.sample(tf.zeros([2, 3]), tf.ones([2, 3]), tf.ones([1, 2, 3]))
        >>> bool(tf.reduce_all(z == 1.0))  # fresh flow: the identity
        True
    """

    def __init__(
        self,
        latent_dim: int,
        flow_steps: int = 2,
        hidden_units: Sequence[int] = (128, 128),
        context_units: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")  # densities stay float32 under mixed precision
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.flow_steps = int(flow_steps)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.context_units = int(context_units)
        self.steps = [
            MADE(
                self.latent_dim,
                self.hidden_units,
                reverse=bool(t % 2),
                dtype="float32",
                name=f"made_{t}",
            )
            for t in range(self.flow_steps)
        ]
        self.build()

    def build(self, *shapes: tuple[int | None, ...]) -> None:
        z_shape = (None, self.latent_dim)
        context_shape = (None, self.context_units) if self.context_units else None
        for step in self.steps:
            step.build(z_shape, context_shape)

    def transform(
        self, z0: tf.Tensor, context: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """z_0 [..., D] -> (z_T [..., D], sum of log|det dz_t/dz_{t-1}| [...])."""
        shape = tf.shape(z0)
        z = tf.reshape(z0, [-1, self.latent_dim])
        if context is not None:
            # context [batch, C] against z [L, batch, D]: one copy per sample
            repeats = tf.shape(z)[0] // tf.maximum(tf.shape(context)[0], 1)  # 0 rows: 0 repeats
            context = tf.tile(tf.cast(context, z.dtype), [repeats, 1])
        log_det = tf.zeros(tf.shape(z)[:1], z.dtype)
        for step in self.steps:
            shift, raw = step(z, context)
            log_scale = MAX_LOG_SCALE * tf.tanh(raw / MAX_LOG_SCALE)
            z = shift + tf.exp(log_scale) * z
            log_det += tf.reduce_sum(log_scale, axis=-1)
        return tf.reshape(z, shape), tf.reshape(log_det, shape[:-1])

    def sample(
        self,
        z_mean: tf.Tensor,
        z_stddev: tf.Tensor,
        noise: tf.Tensor,
        context: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """noise [L, batch, D] -> (z_T [L, batch, D], log q(z_T|x) [L, batch])."""
        z0 = z_mean + z_stddev * noise
        log_q0 = tf.reduce_sum(
            -0.5 * tf.square(noise) - tf.math.log(z_stddev) - _HALF_LOG_2PI, axis=-1
        )
        z, log_det = self.transform(z0, context)
        return z, log_q0 - log_det

    def entropy(self, z_stddev: tf.Tensor) -> NoReturn:
        """Raises a ValueError: an IAF posterior has no closed-form entropy."""
        raise ValueError(
            "The iaf posterior has no closed-form entropy; use the monte_carlo estimator."
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "flow_steps": self.flow_steps,
            "hidden_units": list(self.hidden_units),
            "context_units": self.context_units,
        }


def build_posterior(
    name: str, latent_dim: int, flow_steps: int = 0, hidden_units: Sequence[int] = ()
) -> GaussianPosterior | IAFPosterior:
    """The posterior part by name ("gaussian" or "iaf"); the IAF sees encoder features of
    width `hidden_units[0]` (the encoder adds that output, see `context_units`).

    Example:
        >>> type(build_posterior("gaussian", latent_dim=2)).__name__
        'GaussianPosterior'
        >>> q = build_posterior("iaf", latent_dim=2, flow_steps=1, hidden_units=(8,))
        >>> type(q).__name__, q.flow_steps, q.context_units
        ('IAFPosterior', 1, 8)
        >>> build_posterior("flow", latent_dim=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown posterior 'flow'. Expected one of ['gaussian', 'iaf']. ...
    """
    if name == "gaussian":
        return GaussianPosterior(name="posterior")
    if name == "iaf":
        posterior = IAFPosterior(
            latent_dim, flow_steps, hidden_units, context_units=hidden_units[0], name="posterior"
        )
        return posterior
    raise ValueError(
        f"Unknown posterior {name!r}. Expected one of ['gaussian', 'iaf']. "
        f"Received: posterior={name!r}"
    )
