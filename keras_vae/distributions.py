"""The only place that builds `tfp.distributions` objects: prior, posterior and likelihoods.

Every distribution has the data (or latent) dimensions as ONE event, via `tfd.Independent`,
so `log_prob` returns one number per example:

    >>> import tensorflow as tf
    >>> q = posterior(tf.zeros([3, 2]), tf.ones([3, 2]))
    >>> q.batch_shape.as_list(), q.event_shape.as_list()
    ([3], [2])
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def posterior(z_mean: tf.Tensor, z_stddev: tf.Tensor) -> tfd.Distribution:
    """q(z|x): a diagonal Gaussian with batch shape [batch] and event shape [latent_dim]."""
    return tfd.Independent(tfd.Normal(loc=z_mean, scale=z_stddev), reinterpreted_batch_ndims=1)


def prior(latent_dim: int, dtype: tf.DType = tf.float32) -> tfd.Distribution:
    """p(z) = N(0, I) with event shape [latent_dim] and no batch shape."""
    zeros = tf.zeros([latent_dim], dtype=dtype)
    return tfd.Independent(tfd.Normal(loc=zeros, scale=tf.ones_like(zeros)), 1)


def likelihood(
    name: str,
    location: tf.Tensor,
    event_ndims: int,
    scale: tf.Tensor | float | None = None,
) -> tfd.Distribution:
    """p(x|z) with the last `event_ndims` axes of `location` as one event.

    Args:
        name: "bernoulli" (`location` holds logits) or "gaussian" (`location` is the mean).
        location: decoder output, shape [..., *data_shape].
        event_ndims: number of data axes (`len(data_shape)`).
        scale: the Gaussian's standard deviation: a float (fixed) or a tensor shaped like
            `location` (learned). Ignored for Bernoulli.

    Example:
        >>> p = likelihood("bernoulli", tf.zeros([4, 28, 28]), event_ndims=2)
        >>> p.log_prob(tf.ones([4, 28, 28])).shape.as_list()
        [4]
    """
    if name == "bernoulli":
        base = tfd.Bernoulli(logits=location, dtype=location.dtype)
    elif name == "gaussian":
        if scale is None:
            raise ValueError("The Gaussian likelihood needs a `scale`. Received: scale=None")
        base = tfd.Normal(loc=location, scale=tf.cast(scale, location.dtype))
    else:
        raise ValueError(
            f"Unknown likelihood {name!r}. Expected one of ['bernoulli', 'gaussian']. "
            f"Received: likelihood={name!r}"
        )
    return tfd.Independent(base, reinterpreted_batch_ndims=event_ndims)


def likelihood_mean(name: str, location: tf.Tensor) -> tf.Tensor:
    """E[x|z]: Bernoulli probabilities (sigmoid of the logits) or the Gaussian mean."""
    return tf.sigmoid(location) if name == "bernoulli" else location
