"""What a `VAE` computes from data, z and labels: encode, decode, sample, densities, scores.

`InferenceMixin` is the half of `keras_vae.model.VAE` that a trained model is used through
(the other half, `keras_vae.model_training.TrainingMixin`, trains it): the posterior, prior and
likelihood as distributions or their parameters, reconstructions and samples, and the
importance-weighted log-likelihood (`keras_vae.importance`) and anomaly scores
(`keras_vae.scores`). It reads the model's layers and settings, which `VAE.__init__` makes.

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> [tuple(t.shape) for t in vae.encode(tf.zeros((3, 4)))]
[(3, 2), (3, 2)]
>>> tuple(vae.decode(tf.zeros((3, 2))).shape)
(3, 4)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae import distributions, importance, latent_draws, scores
from keras_vae.limits import check_sampler
from keras_vae.parts import priors
from keras_vae.tensor_types import LabelsLike, TensorLike

if TYPE_CHECKING:
    from keras_vae.aggregate_sampler import AggregateSampler
    from keras_vae.model import VAE, VAEAttributes
else:
    VAEAttributes = object  # what the host class, `VAE`, sets (declared for mypy only)

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


class InferenceMixin(VAEAttributes):
    """`VAE`'s methods on data, z and labels (mixed into `keras_vae.model.VAE`)."""

    def checked_labels(
        self, labels: LabelsLike, batch: int | tf.Tensor | None = None
    ) -> tf.Tensor | None:
        """int32 labels [batch] for a conditional model (None for an unconditional one); a
        `ValueError` when missing or, where known (eager), not integers in [0, num_classes)."""
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
        """(z_mean, z_stddev, context or None): q(z|x[, y])'s Gaussian and an IAF's features."""
        labels = self.checked_labels(labels, batch_size_of(x))
        outputs = self.encoder(self._encoder_inputs(x, labels), training=training)
        context = outputs[2] if len(outputs) > 2 else None
        return outputs[0], outputs[1], context

    def posterior(
        self, x: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> distributions.tfd.Distribution:
        """q(z|x) as a `tfd.Distribution`, batch [batch], event [latent_dim] (Gaussian only)."""
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
        """(z [batch, latent_dim], log q(z|x) [batch]) of one draw; `noise`: N(0, I) or None."""
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
        """p(z)'s Gaussian mixture `MixtureParams` (the VampPrior encodes: call once a batch)."""

        def encode(u: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # a conditional VampPrior's pseudo-input k has the fixed label k mod num_classes
            labels = None
            if self.conditional:
                labels = tf.range(tf.shape(u)[0]) % self.num_classes
            z_mean, z_stddev, _ = self.encode_all(u, training, labels)
            return z_mean, z_stddev

        return self.prior_layer.components(encode if self.prior_layer.uses_encoder else None)

    def prior(self) -> distributions.tfd.Distribution:
        """p(z) as a `tfd.Distribution`, event [latent_dim]: N(0, I) or a learned mixture."""
        return self.prior_layer.distribution(self.prior_parameters())

    def likelihood_from_z(
        self, z: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> distributions.tfd.Distribution:
        """p(x|z) for z of shape [..., latent_dim]: a distribution over [..., *data_shape]."""
        location, scale = self._likelihood_parameters(z, training, labels)
        return distributions.likelihood(self.likelihood, location, len(self.data_shape), scale)

    def log_likelihood_given_z(
        self, x: tf.Tensor, z: tf.Tensor, training: bool = False, labels: LabelsLike = None
    ) -> tf.Tensor:
        """log p(x|z), [...], for z [..., latent_dim] and x broadcastable to [..., *data_shape]:
        `likelihood_from_z(z).log_prob(x)` in closed form, cheaper (what the losses use)."""
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
        """The z of zero noise, [batch, latent_dim]: the posterior mean, or its IAF image."""
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
        """(z_mean, z_stddev) [batch, latent_dim] of q(z|x[, y]) (an IAF's Gaussian base)."""
        x = tf.cast(x, tf.float32)
        z_mean, z_stddev, _ = self.encode_all(x, training, labels)
        return z_mean, z_stddev

    def decode(self, z: TensorLike, labels: LabelsLike = None, training: bool = False) -> tf.Tensor:
        """E[x|z] (E[x|z, y] with `labels` [batch] or one label for all rows, conditional
        models): Bernoulli probabilities or the Gaussian mean, [batch, *data_shape]."""
        z = tf.cast(z, tf.float32)
        inputs = z
        if self.conditional:
            inputs = [z, self.checked_labels(labels, batch_size_of(z))]
        outputs = self.decoder(inputs, training=training)
        location = outputs[0] if self.learned_scale else outputs
        return distributions.likelihood_mean(self.likelihood, location)

    def reconstruct(self, x: TensorLike, labels: LabelsLike = None) -> tf.Tensor:
        """As `call`: E[x|z] at the posterior mean (conditional: with the true `labels`)."""
        if self.conditional:
            return self({"x": x, LABEL_KEY: self.checked_labels(labels, batch_size_of(x))})
        return self(x, training=False)

    def sample(
        self,
        num_samples: int,
        seed: int | Sequence[int] | np.ndarray | None = None,
        labels: LabelsLike = None,
        sampler: str = "prior",
        temperature: float = 1.0,
    ) -> tf.Tensor:
        """E[x|z] of `num_samples` draws z (`sample_latent`); `labels`: one class or one per row.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.sample(3, seed=1, temperature=0.7).shape
            TensorShape([3, 4])
        """
        labels = self.checked_labels(labels, num_samples)
        return self.decode(
            self.sample_latent(num_samples, seed, labels, sampler, temperature), labels
        )

    def sample_latent(
        self,
        num_samples: int,
        seed: int | Sequence[int] | np.ndarray | None = None,
        labels: LabelsLike = None,
        sampler: str = "prior",
        temperature: float = 1.0,
    ) -> tf.Tensor:
        """`num_samples` draws z [num_samples, latent_dim] from `sampler`: ``"prior"`` (p(z)) or
        ``"aggregate"`` (`aggregate_sampler`, fitted to the training codes; per class, with
        `labels`, if conditional), noise scaled by `temperature` (`latent_draws.draw_latent`).
        `seed`: None, the model's seed generator; an integer, the exported ``sample``'s draws;
        `num_samples` integers, row i from seeds[i] alone (the exported ``generate``)."""
        temperature = check_sampler(sampler, temperature)
        mixture = self.latent_mixture(sampler)
        per_class = mixture is not None and mixture.num_classes > 1
        labels = self.checked_labels(labels, num_samples) if per_class else None
        noise, uniform = self.latent_noise(num_samples, seed, uniform=mixture is not None)
        z, _ = latent_draws.draw_latent(mixture, noise, uniform, labels, temperature)
        return z

    def sample_prior(
        self, num_samples: int, seed: int | Sequence[int] | np.ndarray | None = None
    ) -> tf.Tensor:
        """`num_samples` draws z ~ p(z), [num_samples, latent_dim]: `sample_latent`."""
        return self.sample_latent(num_samples, seed)

    aggregate_sampler = None  # an `AggregateSampler` (keras_vae.aggregate_sampler) once fitted

    def fit_sampler(
        self,
        x: np.ndarray,
        labels: np.ndarray | None = None,
        components: int = 10,
        covariance: str = "full",
        seed: int = 0,
    ) -> AggregateSampler:
        """Fit the ``aggregate`` sampler on training images `x` (and, conditional, their `labels`)
        and keep it as `aggregate_sampler`, as ``keras-vae fit-sampler`` does for a run folder
        (stored beside the model, not in ``vae.save``): `fit_aggregate_sampler`.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> x = np.random.default_rng(0).uniform(size=(64, 4)).astype("float32")
            >>> vae.fit_sampler(x, components=2).components
            2
        """
        from keras_vae.aggregate_sampler import fit_aggregate_sampler

        self.aggregate_sampler = fit_aggregate_sampler(
            cast("VAE", self), x, labels, components, covariance, seed
        )
        return self.aggregate_sampler

    def latent_mixture(self, sampler: str = "prior") -> latent_draws.LatentMixture | None:
        """The Gaussian mixture `sampler` draws z from (None: N(0, I)), as constants."""
        if sampler == "aggregate":
            if self.aggregate_sampler is None:
                raise ValueError(
                    "This model has no aggregate sampler: fit one with `keras-vae fit-sampler "
                    "RUN_DIR` (or `keras_vae.aggregate_sampler.fit_aggregate_sampler`), or "
                    "draw from the prior (--sampler prior)."
                )
            return self.aggregate_sampler.mixture
        params = latent_draws.baked_prior(self)
        return None if params is None else latent_draws.LatentMixture.of_prior(params)

    def latent_noise(
        self,
        num_samples: int,
        seed: int | Sequence[int] | np.ndarray | None = None,
        uniform: bool = True,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(standard normal noise [n, latent_dim], uniforms [n] or None without `uniform`) for
        `sample_latent`'s `seed`: seed generator, exported ``sample`` or ``generate`` draws."""
        n, width = int(num_samples), int(self.latent_dim)
        if seed is None:
            noise = keras.random.normal((n, width), seed=self.seed_generator)
            return noise, keras.random.uniform((n,), seed=self.seed_generator) if uniform else None
        if np.ndim(seed) == 0:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")
            count, key = tf.constant(n), tf.constant(latent_draws.keras_seed(seed))
            noise = latent_draws.prior_noise(count, key, width)
            return noise, latent_draws.prior_uniform(count, key) if uniform else None
        seeds = np.asarray(seed)
        if seeds.shape != (n,) or seeds.dtype.kind not in "iu":
            raise ValueError(
                f"`seed` must be an integer or {n} integers, one per sample. Received: seed "
                f"of shape {seeds.shape} and dtype {seeds.dtype}"
            )
        seeds = tf.constant(seeds.astype(np.int64))
        noise = latent_draws.row_prior_noise(seeds, width)
        return noise, latent_draws.row_prior_uniform(seeds) if uniform else None

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
