"""What a `VAE` draws: z from the prior or the aggregate sampler, and the images they decode to.

`SamplingMixin` is the part of `keras_vae.model.VAE` that generates: `sample` (images),
`sample_latent` (z), the noise behind a seed (`latent_noise`: the model's seed generator, or the
exported ``sample`` and ``generate`` signatures' draws, bit for bit) and the mixture z is drawn
from (`latent_mixture`: N(0, I), the learned prior, or the `aggregate_sampler` fitted to the
training codes). The drawing itself is `keras_vae.latent_draws`.

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> bool(tf.reduce_all(vae.sample(3, seed=7) == vae.sample(3, seed=7)))  # a seed: the same draws
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae import latent_draws
from keras_vae.limits import check_sampler
from keras_vae.model_attributes import VAEMixinBase
from keras_vae.tensor_types import LabelsLike, SampleSeeds

if TYPE_CHECKING:
    from keras_vae.aggregate_sampler import AggregateSampler
    from keras_vae.model import VAE


class SamplingMixin(VAEMixinBase):
    """`VAE`'s generation: z and images drawn from a sampler (mixed into `keras_vae.model.VAE`)."""

    # The host class, `VAE`, sets these: `InferenceMixin`'s methods.
    checked_labels: Callable[..., tf.Tensor | None]
    decode: Callable[..., tf.Tensor]

    def sample(
        self,
        num_samples: int,
        seed: SampleSeeds = None,
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
        seed: SampleSeeds = None,
        labels: LabelsLike = None,
        sampler: str = "prior",
        temperature: float = 1.0,
    ) -> tf.Tensor:
        """`num_samples` draws z [num_samples, latent_dim] from `sampler`: ``"prior"`` (p(z)) or
        ``"aggregate"`` (`aggregate_sampler`, fitted to the training codes; per class, with
        `labels`, if conditional), noise scaled by `temperature` (`latent_draws.draw_latent`).
        `seed`: None, the model's seed generator; an integer, the exported ``sample``'s draws;
        `num_samples` integers, row i from seeds[i] alone (the exported ``generate``).

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> z = vae.sample_latent(4, seed=[1, 2, 3, 4])  # row i from seeds[i] alone
            >>> bool(tf.reduce_all(vae.sample_latent(2, seed=[3, 4]) == z[2:]))
            True
            >>> z = vae.sample_latent(4, seed=0)
            >>> cooler = vae.sample_latent(4, seed=0, temperature=0.5)
            >>> float(tf.reduce_max(tf.abs(cooler - 0.5 * z)))
            0.0
        """
        temperature = check_sampler(sampler, temperature)
        mixture = self.latent_mixture(sampler)
        per_class = mixture is not None and mixture.num_classes > 1
        labels = self.checked_labels(labels, num_samples) if per_class else None
        noise, uniform = self.latent_noise(num_samples, seed, uniform=mixture is not None)
        z, _ = latent_draws.draw_latent(mixture, noise, uniform, labels, temperature)
        return z

    def sample_prior(self, num_samples: int, seed: SampleSeeds = None) -> tf.Tensor:
        """`num_samples` draws z ~ p(z), [num_samples, latent_dim]: `sample_latent`.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> bool(tf.reduce_all(vae.sample_prior(3, seed=5) == vae.sample_latent(3, seed=5)))
            True
        """
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
        """The Gaussian mixture `sampler` draws z from (None: N(0, I)), as constants.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.latent_mixture() is None  # N(0, I): no mixture to draw a component from
            True
            >>> mixture = VAE(data_shape=(4,), latent_dim=2, prior="mixture").latent_mixture()
            >>> mixture.log_weights.shape, mixture.loc.shape  # one class row of K = 10 components
            ((1, 10), (1, 10, 2))
            >>> vae.latent_mixture("aggregate")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: This model has no aggregate sampler: fit one with ...
        """
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
        seed: SampleSeeds = None,
        uniform: bool = True,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(standard normal noise [n, latent_dim], uniforms [n] or None without `uniform`) for
        `sample_latent`'s `seed`: seed generator, exported ``sample`` or ``generate`` draws.

        Example:
            >>> from keras_vae.model import VAE
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> noise, uniform = vae.latent_noise(3, seed=0)
            >>> noise.shape, uniform.shape
            (TensorShape([3, 2]), TensorShape([3]))
            >>> vae.latent_noise(3, seed=0.5)
            Traceback (most recent call last):
            ...
            ValueError: `seed` must be an integer. Received: seed=0.5
        """
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
