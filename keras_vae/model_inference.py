"""What a `VAE` computes from data, z and labels: encode, decode, densities, scores.

`InferenceMixin` is the part of `keras_vae.model.VAE` that a trained model is used through
(`keras_vae.model_training.TrainingMixin` trains it, `keras_vae.model_sampling.SamplingMixin`
draws from it): the posterior, prior and likelihood as distributions or their parameters,
reconstructions, and the importance-weighted log-likelihood (`keras_vae.importance`) and
anomaly scores (`keras_vae.scores`). It reads the model's layers and settings, which
`VAE.__init__` makes.

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> [tuple(t.shape) for t in vae.encode(tf.zeros((3, 4)))]
[(3, 2), (3, 2)]
>>> tuple(vae.decode(tf.zeros((3, 2))).shape)
(3, 4)
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae import distributions, importance, scores
from keras_vae.model_attributes import VAEMixinBase
from keras_vae.parts import priors
from keras_vae.tensor_types import LabelsLike, TensorLike

LABEL_KEY = "label"  # the labels of a conditional model's dict inputs


def batch_size_of(x: TensorLike) -> int | tf.Tensor:
    """Axis 0 of a batch: static where known."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) and shape[0] is not None:
        return int(shape[0])
    return tf.shape(x)[0]


def unpack_inputs(data: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """(x, labels or None, noise or None) from x, (x,), (x, y[, w]) or
    {"x": x, "label": y, "noise": eps}."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    noise, labels = None, y
    if isinstance(x, dict):
        noise = x.get("noise")
        labels = x.get(LABEL_KEY, labels)
        x = x["x"]
    return tf.cast(x, tf.float32), labels, noise


class InferenceMixin(VAEMixinBase):
    """`VAE`'s methods on data, z and labels (mixed into `keras_vae.model.VAE`)."""

    def checked_labels(
        self, labels: LabelsLike, batch: int | tf.Tensor | None = None
    ) -> tf.Tensor | None:
        """int32 labels [batch] for a conditional model (None for an unconditional one); a
        `ValueError` when missing or, where known (eager), not integers in [0, num_classes).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,), num_classes=3)
            >>> vae.checked_labels(2, batch=3).numpy().tolist()  # one label for the whole batch
            [2, 2, 2]
            >>> vae.checked_labels([0, 3])
            Traceback (most recent call last):
            ...
            ValueError: Labels must lie in [0, 3) for this model. Received: labels from 0 to 3
        """
        if not self.conditional:
            return None
        if labels is None:
            raise ValueError(
                f"This VAE is conditional ({self.num_classes} classes): pass the labels, e.g. "
                "fit on (x, y) pairs or {'x': x, 'label': y}, encode(x, labels), "
                "decode(z, labels), sample(n, labels=...)."
            )
        if not tf.is_tensor(labels) or tf.executing_eagerly():
            values = np.asarray(labels)
            if values.dtype.kind not in "iu" and not (
                values.dtype.kind == "f"
                and np.all(np.isfinite(values))
                and np.all(values == np.round(values))
            ):
                raise ValueError(
                    "Labels must be integer class indices in "
                    f"[0, {self.num_classes}). Received: dtype {values.dtype}"
                )
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"Labels must lie in [0, {self.num_classes}) for this model. Received: "
                    f"labels from {values.min()} to {values.max()}"
                )
            labels = tf.constant(values.astype(np.int32))
            if batch is not None and cast("tf.Tensor", labels).shape.rank == 0:
                labels = tf.fill([batch], labels)
        return tf.cast(labels, tf.int32)

    def _encoder_inputs(
        self, x: tf.Tensor, labels: tf.Tensor | None
    ) -> tf.Tensor | list[tf.Tensor]:
        return [x, labels] if self.conditional else x

    def encode_all(
        self, x: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """(z_mean, z_stddev, context or None): q(z|x[, y])'s Gaussian and an IAF's features.

        Example:
            >>> from keras_vae.model import VAE
            >>> iaf = VAE(data_shape=(4,), latent_dim=2, posterior="iaf", flow_hidden_units=(8,))
            >>> [tuple(t.shape) for t in iaf.encode_all(tf.zeros((3, 4)))]  # context: width 8
            [(3, 2), (3, 2), (3, 8)]
            >>> VAE(data_shape=(4,), latent_dim=2).encode_all(tf.zeros((3, 4)))[2] is None
            True
        """
        labels = self.checked_labels(labels, batch_size_of(x))
        outputs = self.encoder(self._encoder_inputs(x, labels), training=training)
        context = outputs[2] if len(outputs) > 2 else None
        return outputs[0], outputs[1], context

    def posterior(
        self, x: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> distributions.tfd.Distribution:
        """q(z|x) as a `tfd.Distribution`, batch [batch], event [latent_dim] (Gaussian only).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> q = vae.posterior(x)
            >>> q.batch_shape, q.event_shape
            (TensorShape([2]), TensorShape([2]))
            >>> z_mean, z_stddev = vae.encode(x)
            >>> bool(tf.reduce_all(q.mean() == z_mean)), bool(tf.reduce_all(q.stddev() == z_stddev))
            (True, True)
        """
        if self.posterior_name != "gaussian":
            raise ValueError(
                f"The {self.posterior_name} posterior is not a closed-form distribution; use "
                "`posterior_sample(x)`, which returns z and log q(z|x)."
            )
        z_mean, z_stddev, _ = self.encode_all(x, training, labels)
        return distributions.posterior(z_mean, z_stddev)

    def posterior_sample(
        self,
        x: TensorLike,
        noise: TensorLike | None = None,
        seed: int | None = None,
        training: bool = False,
        labels: LabelsLike = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(z [batch, latent_dim], log q(z|x) [batch]) of one draw; `noise`: N(0, I) or None.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> z, log_q = vae.posterior_sample(x, noise=tf.zeros((2, 2)))  # zero noise: z = z_mean
            >>> bool(tf.reduce_all(z == vae.encode(x)[0]))
            True
            >>> float(tf.reduce_max(tf.abs(log_q - vae.posterior(x).log_prob(z)))) < 1e-5
            True
        """
        x = tf.cast(x, tf.float32)
        z_mean, z_stddev, context = self.encode_all(x, training, labels)
        if noise is None:
            noise = keras.random.normal(
                tf.shape(z_mean), seed=self.seed_generator if seed is None else seed
            )
        noise = tf.cast(noise, z_mean.dtype)[tf.newaxis]
        z, log_q = self.posterior_layer.sample(z_mean, z_stddev, noise, context)
        return z[0], log_q[0]

    def prior_parameters(self, training: bool = False) -> priors.MixtureParams:
        """p(z)'s Gaussian mixture `MixtureParams` (the VampPrior encodes: call once a batch).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, prior="vamp", prior_components=5)
            >>> [tuple(t.shape) for t in vae.prior_parameters()]  # K = 5 encoded pseudo-inputs
            [(5,), (5, 2), (5, 2)]
        """

        def encode(u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # a conditional VampPrior's pseudo-input k has the fixed label k mod num_classes
            labels = None
            if self.conditional:
                labels = tf.range(tf.shape(u)[0]) % self.num_classes
            z_mean, z_stddev, _ = self.encode_all(u, training, labels)
            return z_mean, z_stddev

        return self.prior_layer.components(encode if self.prior_layer.uses_encoder else None)

    def prior(self) -> distributions.tfd.Distribution:
        """p(z) as a `tfd.Distribution`, event [latent_dim]: N(0, I) or a learned mixture.

        Example:
            >>> from keras_vae.model import VAE
            >>> prior = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)).prior()
            >>> prior.sample(5, seed=0).shape, round(float(prior.log_prob(tf.zeros(2))), 4)
            (TensorShape([5, 2]), -1.8379)
        """
        return self.prior_layer.distribution(self.prior_parameters())

    def likelihood_from_z(
        self, z: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> distributions.tfd.Distribution:
        """p(x|z) for z of shape [..., latent_dim]: a distribution over [..., *data_shape].

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> z = tf.zeros((3, 2))
            >>> p = vae.likelihood_from_z(z)
            >>> p.batch_shape, p.event_shape
            (TensorShape([3]), TensorShape([4]))
            >>> float(tf.reduce_max(tf.abs(p.mean() - vae.decode(z)))) < 1e-6
            True
        """
        location, scale = self._likelihood_parameters(z, training, labels)
        return distributions.likelihood(self.likelihood, location, len(self.data_shape), scale)

    def log_likelihood_given_z(
        self, x: tf.Tensor, z: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> tf.Tensor:
        """log p(x|z), [...], for z [..., latent_dim] and x broadcastable to [..., *data_shape]:
        `likelihood_from_z(z).log_prob(x)` in closed form, cheaper (what the losses use).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> z = tf.random.stateless_normal((5, 2, 2), seed=(1, 2))  # 5 draws for 2 examples
            >>> log_p = vae.log_likelihood_given_z(x, z)
            >>> log_p.shape
            TensorShape([5, 2])
            >>> float(tf.reduce_max(tf.abs(log_p - vae.likelihood_from_z(z).log_prob(x)))) < 1e-4
            True
        """
        location, scale = self._likelihood_parameters(z, training, labels)
        return distributions.log_likelihood(
            self.likelihood, location, x, len(self.data_shape), scale
        )

    def _likelihood_parameters(
        self, z: tf.Tensor, training: bool, labels: LabelsLike = None
    ) -> tuple[tf.Tensor, tf.Tensor | float]:
        """(location, scale) of p(x|z[, y]), shaped [..., *data_shape] (scale may be a float);
        `labels` [batch] for z [..., batch, latent_dim] (repeated over the leading axes)."""
        leading = tf.shape(z)[:-1]
        flat = tf.reshape(z, [-1, self.latent_dim])
        inputs = flat
        if self.conditional:
            labels = self.checked_labels(labels)
            repeats = tf.shape(flat)[0] // tf.maximum(tf.shape(labels)[0], 1)
            inputs = [flat, tf.tile(labels, [repeats])]
        outputs = self.decoder(inputs, training=training)
        if self.learned_scale:
            location, scale = outputs
        else:
            location, scale = outputs, self.likelihood_scale

        def unflatten(t: tf.Tensor) -> tf.Tensor:
            return tf.reshape(t, tf.concat([leading, self.data_shape], axis=0))

        location = unflatten(location)
        if self.learned_scale:
            scale = unflatten(scale)
        return location, scale

    # ----------------------------------------------------------------- data in, data out
    def call(self, inputs: TensorLike | dict[str, TensorLike], training: bool = False) -> tf.Tensor:
        """E[x|z] at z = the posterior mean (for an IAF, the flow of its Gaussian base's mean)."""
        x, labels, _ = unpack_inputs(inputs)
        labels = self.checked_labels(labels)
        return self.decode(self.central_z(x, labels, training), labels, training=training)

    def central_z(
        self, x: TensorLike, labels: LabelsLike = None, training: bool = False
    ) -> tf.Tensor:
        """The z of zero noise, [batch, latent_dim]: the posterior mean, or its IAF image.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> bool(tf.reduce_all(vae.central_z(x) == vae.encode(x)[0]))  # gaussian: the mean
            True
            >>> bool(tf.reduce_all(vae(x) == vae.decode(vae.central_z(x))))  # what `call` decodes
            True
        """
        z_mean, z_stddev, context = self.encode_all(tf.cast(x, tf.float32), training, labels)
        if self.posterior_name == "gaussian":
            return z_mean
        z, _ = self.posterior_layer.sample(
            z_mean, z_stddev, tf.zeros_like(z_mean)[tf.newaxis], context
        )
        return z[0]

    def encode(
        self, x: TensorLike, labels: LabelsLike = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(z_mean, z_stddev) [batch, latent_dim] of q(z|x[, y]) (an IAF's Gaussian base).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> z_mean, z_stddev = vae.encode(x)
            >>> z_mean.shape, bool(tf.reduce_all(z_stddev > 0))
            (TensorShape([2, 2]), True)
        """
        x = tf.cast(x, tf.float32)
        z_mean, z_stddev, _ = self.encode_all(x, training, labels)
        return z_mean, z_stddev

    def decode(self, z: TensorLike, labels: LabelsLike = None, training: bool = False) -> tf.Tensor:
        """E[x|z] (E[x|z, y] with `labels` [batch] or one label for all rows, conditional
        models): Bernoulli probabilities or the Gaussian mean, [batch, *data_shape].

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> x_mean = vae.decode(tf.zeros((3, 2)))  # Bernoulli probabilities
            >>> x_mean.shape, bool(tf.reduce_all((x_mean > 0) & (x_mean < 1)))
            (TensorShape([3, 4]), True)
        """
        z = tf.cast(z, tf.float32)
        inputs = z
        if self.conditional:
            inputs = [z, self.checked_labels(labels, batch_size_of(z))]
        outputs = self.decoder(inputs, training=training)
        location = outputs[0] if self.learned_scale else outputs
        return distributions.likelihood_mean(self.likelihood, location)

    def reconstruct(self, x: TensorLike, labels: LabelsLike = None) -> tf.Tensor:
        """As `call`: E[x|z] at the posterior mean (conditional: with the true `labels`).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae, x = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), tf.eye(4)[:2]
            >>> bool(tf.reduce_all(vae.reconstruct(x) == vae(x)))
            True
        """
        if self.conditional:
            return self({"x": x, LABEL_KEY: self.checked_labels(labels, batch_size_of(x))})
        return self(x, training=False)

    # ----------------------------------------------------------------- evaluation
    # Thin: importance sampling lives in `keras_vae.importance`, scoring in `keras_vae.scores`.
    importance_weighted_terms = importance.importance_weighted_terms
    default_chunk_size = importance.default_chunk_size

    def log_likelihood(self, x: TensorLike, *args: Any, **kwargs: Any) -> tf.Tensor:
        """Importance-weighted log p(x) (log p(x|y) with `labels`) per example, nats, [batch]: the
        `log_likelihood` of `importance_weighted_terms`, same arguments (Burda et al., 2015).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.log_likelihood(tf.zeros((3, 4)), num_samples=100, seed=0).shape
            TensorShape([3])
        """
        return self.importance_weighted_terms(x, *args, **kwargs).log_likelihood

    # the arguments shown are the real ones (mypy: a function has no such attribute)
    log_likelihood.__signature__ = inspect.signature(  # type: ignore[attr-defined]
        importance.importance_weighted_terms
    ).replace(return_annotation="tf.Tensor")

    def score(
        self, x: TensorLike, num_samples: int = 100, seed: int = 0, labels: LabelsLike = None
    ) -> scores.Scores:
        """Per-example anomaly scores in nats, [batch] each: `elbo`, importance-weighted
        `log_likelihood` (K = `num_samples`), `reconstruction`, `kl`; deterministic (the same x,
        seed and K give the same numbers whatever else is in the batch): `scores.score`.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.score(tf.fill((3, 4), 0.5), num_samples=10).elbo.shape
            TensorShape([3])
        """
        return scores.score(self, x, num_samples, seed, labels)
