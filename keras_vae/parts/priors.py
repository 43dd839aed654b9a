"""Priors p(z): log p(z) and sampling, each as a mixture of diagonal Gaussians.

* `NormalPrior`: N(0, I), the paper's (one component; closed-form KL with a Gaussian q).
* `MixturePrior`: sum_k pi_k N(mu_k, diag sigma_k^2), all learned: pi = softmax(logits),
  sigma = softplus(raw) + 1e-4.
* `VampPrior` (Tomczak & Welling 2018, arXiv:1705.07120): (1/K) sum_k q_0(z | u_k), the
  encoder's Gaussian at K learned pseudo-inputs u_k in [0, 1] (hard-tanh of a weight, as the
  paper's). With an IAF posterior it mixes the Gaussian base q_0 of the pseudo-inputs (their
  flow density at a z they did not draw would need D sequential passes): a valid learned
  prior, not the paper's exact one.

`components(encode)` returns the mixture's `MixtureParams` (the VampPrior runs the encoder on
its pseudo-inputs, so it is computed once per step); `log_prob(z, params)` is
log sum_k exp(log pi_k + log N(z; mu_k, sigma_k)) and `sample_from_noise(params, eps, u)`
maps standard normal eps and uniform u in [0, 1) to z: component c = #{j < K-1: u >= cdf_j},
z = mu_c + sigma_c * eps (the same ops in the SavedModel and TFLite exports).

    >>> import tensorflow as tf
    >>> prior = MixturePrior(latent_dim=2, num_components=3)
    >>> params = prior.components(encode=None)
    >>> prior.log_prob(tf.zeros([5, 2]), params).shape
    TensorShape([5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from keras_vae import distributions
from keras_vae.networks import MIN_POSTERIOR_STDDEV

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# softplus(raw) + 1e-4 = 1 at this raw: the mixture's components start at unit scale
_UNIT_SCALE_RAW = math.log(math.expm1(1.0 - MIN_POSTERIOR_STDDEV))

Encode = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


class MixtureParams(NamedTuple):
    """A diagonal Gaussian mixture: `log_weights` [K] (log pi_k), `loc` and `scale` [K, D].

    Example:
        >>> params = MixtureParams(tf.math.log([0.25, 0.75]), tf.zeros([2, 3]), tf.ones([2, 3]))
        >>> params._fields, params.loc.shape
        (('log_weights', 'loc', 'scale'), TensorShape([2, 3]))
        >>> round(float(tf.reduce_sum(tf.exp(params.log_weights))), 4)  # the weights sum to 1
        1.0
    """

    log_weights: tf.Tensor
    loc: tf.Tensor
    scale: tf.Tensor


def mixture_log_prob(z: tf.Tensor, params: MixtureParams) -> tf.Tensor:
    """log sum_k pi_k N(z; loc_k, diag scale_k^2) for z [..., D] -> [...].

    Example:
        >>> params = MixtureParams(tf.zeros([1]), tf.zeros([1, 2]), tf.ones([1, 2]))
        >>> round(float(mixture_log_prob(tf.zeros([2]), params)), 4)  # -log(2 pi)
        -1.8379
    """
    z = z[..., tf.newaxis, :]  # [..., 1, D] against [K, D]
    standardized = (z - params.loc) / params.scale
    log_n = tf.reduce_sum(
        -0.5 * tf.square(standardized) - tf.math.log(params.scale) - _HALF_LOG_2PI, axis=-1
    )
    return tf.reduce_logsumexp(log_n + params.log_weights, axis=-1)


def component_cdf(log_weights: tf.Tensor) -> tf.Tensor:
    """The cumulative weights but the last, [K-1]: cumsum(exp(log_weights))[:-1] in float32."""
    return tf.cumsum(tf.exp(log_weights))[:-1]


def component_from_uniform(log_weights: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """int32 component indices for uniforms in [0, 1): the number of cumulative weights (all
    but the last) that u reaches, so component k is drawn with probability pi_k.

    Example:
        >>> component_from_uniform(tf.math.log([0.25, 0.75]), tf.constant([0.1, 0.3])).numpy()
        array([0, 1], dtype=int32)
    """
    cdf = component_cdf(log_weights)
    reached = tf.cast(uniform[..., tf.newaxis] >= cdf, tf.int32)
    return tf.reduce_sum(reached, axis=-1)


def sample_from_noise(
    params: MixtureParams, noise: tf.Tensor, uniform: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(z [n, D], component [n]) from standard normal `noise` [n, D] and `uniform` [n]."""
    component = component_from_uniform(params.log_weights, uniform)
    loc = tf.gather(params.loc, component)
    scale = tf.gather(params.scale, component)
    return loc + scale * noise, component


class _Prior(keras.layers.Layer):
    """What every prior offers; subclasses set `closed_form_kl` and `components`."""

    closed_form_kl = False
    uses_encoder = False

    def __init__(self, latent_dim: int, num_components: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.num_components = int(num_components)

    def components(self, encode: Encode | None = None) -> MixtureParams:
        """The mixture's `MixtureParams`; `encode` maps pseudo-inputs to (loc, scale)."""
        raise NotImplementedError  # pragma: no cover - every prior defines it

    def log_prob(self, z: tf.Tensor, params: MixtureParams) -> tf.Tensor:
        """log p(z) for z [..., D] -> [...]."""
        return mixture_log_prob(z, params)

    def distribution(self, params: MixtureParams) -> distributions.tfd.Distribution:
        """p(z) as a `tfd.Distribution` with event shape [D]."""
        return distributions.gaussian_mixture(params.log_weights, params.loc, params.scale)

    def call(self, z: tf.Tensor, params: MixtureParams) -> tf.Tensor:
        return self.log_prob(z, params)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "num_components": self.num_components,
        }


@keras.saving.register_keras_serializable(package="keras_vae")
class NormalPrior(_Prior):
    """p(z) = N(0, I); no weights.

    Example:
        >>> prior = NormalPrior(latent_dim=2)
        >>> [tuple(t.shape) for t in prior.components()]  # one component
        [(1,), (1, 2), (1, 2)]
        >>> round(float(prior.log_prob(tf.zeros([2]))), 4)  # -D/2 log(2 pi) at z = 0
        -1.8379
        >>> prior.log_prob(tf.zeros([5, 2])).shape
        TensorShape([5])
    """

    closed_form_kl = True

    def __init__(self, latent_dim: int, num_components: int = 1, **kwargs: Any) -> None:
        super().__init__(latent_dim, 1, **kwargs)
        self.built = True  # no weights

    def components(self, encode: Encode | None = None) -> MixtureParams:
        """One component: N(0, I) (`encode` is not used)."""
        zeros = tf.zeros([1, self.latent_dim])
        return MixtureParams(tf.zeros([1]), zeros, tf.ones_like(zeros))

    def log_prob(self, z: tf.Tensor, params: MixtureParams | None = None) -> tf.Tensor:
        """log N(z; 0, I), computed as the paper's model always has."""
        return distributions.prior(self.latent_dim, z.dtype).log_prob(z)

    def distribution(self, params: MixtureParams | None = None) -> distributions.tfd.Distribution:
        """N(0, I) (`params` is not used)."""
        return distributions.prior(self.latent_dim)


@keras.saving.register_keras_serializable(package="keras_vae")
class MixturePrior(_Prior):
    """A learned K-component diagonal Gaussian mixture (means start N(0, 1), scales 1).

    Example:
        >>> prior = MixturePrior(latent_dim=2, num_components=3)
        >>> params = prior.components()
        >>> [tuple(t.shape) for t in params]
        [(3,), (3, 2), (3, 2)]
        >>> round(float(tf.reduce_sum(tf.exp(params.log_weights))), 4)  # equal weights, sum 1
        1.0
        >>> round(float(tf.reduce_max(tf.abs(params.scale - 1.0))), 4)  # unit scales
        0.0
        >>> _ = prior.loc.assign(tf.zeros([3, 2]))  # all means at 0: the mixture is N(0, I)
        >>> round(float(prior.log_prob(tf.zeros([2]), prior.components())), 4)
        -1.8379
    """

    def __init__(self, latent_dim: int, num_components: int, **kwargs: Any) -> None:
        super().__init__(latent_dim, num_components, **kwargs)
        self.build()

    def build(self, *shapes: tuple[int | None, ...]) -> None:
        k, d = self.num_components, self.latent_dim
        self.logits = self.add_weight(shape=(k,), initializer="zeros", name="logits")
        self.loc = self.add_weight(
            shape=(k, d), initializer=keras.initializers.RandomNormal(0.0, 1.0), name="loc"
        )
        self.raw_scale = self.add_weight(
            shape=(k, d),
            initializer=keras.initializers.Constant(_UNIT_SCALE_RAW),
            name="raw_scale",
        )

    def components(self, encode: Encode | None = None) -> MixtureParams:
        """The learned weights, means and scales (`encode` is not used)."""
        scale = tf.nn.softplus(self.raw_scale) + MIN_POSTERIOR_STDDEV
        return MixtureParams(tf.nn.log_softmax(self.logits), tf.identity(self.loc), scale)


@keras.saving.register_keras_serializable(package="keras_vae")
class VampPrior(_Prior):
    """(1/K) sum_k q_0(z | u_k) over K learned pseudo-inputs u_k of the data's shape.

    Args:
        latent_dim: D.
        num_components: K.
        data_shape: the shape of one example (of a pseudo-input).

    Example:
        >>> prior = VampPrior(latent_dim=2, num_components=4, data_shape=(3, 3))
        >>> u = prior.pseudo_inputs()
        >>> u.shape, bool(tf.reduce_all((u >= 0.0) & (u <= 1.0)))
        (TensorShape([4, 3, 3]), True)
        >>> def encode(u):  # a toy encoder: N(0, I) for every input
        ...     loc = tf.zeros([tf.shape(u)[0], 2])
        ...     return loc, tf.ones_like(loc)
        >>> params = prior.components(encode)
        >>> params.loc.shape, [round(float(w), 4) for w in tf.exp(params.log_weights)]
        (TensorShape([4, 2]), [0.25, 0.25, 0.25, 0.25])
        >>> round(float(prior.log_prob(tf.zeros([2]), params)), 4)  # -D/2 log(2 pi)
        -1.8379
        >>> prior.components()
        Traceback (most recent call last):
        ...
        ValueError: The VampPrior's components are the encoder's posteriors: pass `encode`.
    """

    uses_encoder = True

    def __init__(
        self, latent_dim: int, num_components: int, data_shape: Sequence[int], **kwargs: Any
    ) -> None:
        super().__init__(latent_dim, num_components, **kwargs)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.build()

    def build(self, *shapes: tuple[int | None, ...]) -> None:
        self.raw_pseudo_inputs = self.add_weight(
            shape=(self.num_components, *self.data_shape),
            initializer=keras.initializers.RandomNormal(0.5, 0.05),
            name="pseudo_inputs",
        )

    def pseudo_inputs(self) -> tf.Tensor:
        """u_k = hard-tanh into [0, 1] of the weights, [K, *data_shape]."""
        return tf.clip_by_value(self.raw_pseudo_inputs, 0.0, 1.0)

    def components(self, encode: Encode | None = None) -> MixtureParams:
        """The encoder's Gaussians at the K pseudo-inputs, equally weighted."""
        if encode is None:
            raise ValueError(
                "The VampPrior's components are the encoder's posteriors: pass `encode`."
            )
        loc, scale = encode(self.pseudo_inputs())
        k = self.num_components
        return MixtureParams(
            tf.fill([k], -math.log(k)), tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_shape": list(self.data_shape)}


def build_prior(
    name: str, latent_dim: int, num_components: int, data_shape: Sequence[int]
) -> NormalPrior | MixturePrior | VampPrior:
    """The prior part by name: "normal", "mixture" or "vamp".

    Example:
        >>> [type(build_prior(n, 2, 3, (4,))).__name__ for n in ("normal", "mixture", "vamp")]
        ['NormalPrior', 'MixturePrior', 'VampPrior']
        >>> build_prior("normal", 2, 3, (4,)).num_components  # N(0, I) ignores K
        1
        >>> build_prior("flow", 2, 3, (4,))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown prior 'flow'. Expected one of ['normal', 'vamp', 'mixture']. ...
    """
    if name == "normal":
        return NormalPrior(latent_dim, name="prior")
    if name == "mixture":
        prior = MixturePrior(latent_dim, num_components, name="prior")
    elif name == "vamp":
        prior = VampPrior(latent_dim, num_components, data_shape, name="prior")
    else:
        raise ValueError(
            f"Unknown prior {name!r}. Expected one of ['normal', 'vamp', 'mixture']. "
            f"Received: prior={name!r}"
        )
    return prior
