"""The latent parts a `keras_vae.VAE` is assembled from: the posterior q(z|x) and the prior p(z).

* `posteriors`: `GaussianPosterior` (the paper's diagonal Gaussian), `IAFPosterior` (an
  inverse autoregressive flow on it, Kingma et al. 2016), built by `build_posterior`;
* `priors`: `NormalPrior` (N(0, I)), `MixturePrior` (a learned Gaussian mixture), `VampPrior`
  (Tomczak & Welling 2018), built by `build_prior`;
* `made`: the masked autoregressive network (MADE, Germain et al. 2015) of the IAF steps.

Each part is a Keras 3 layer (weights tracked, saved in `.keras`, distributed and placed by
`tf.distribute` like every other layer) whose maths is plain TensorFlow ops that XLA compiles
and TFLite converts to builtins.
"""

from __future__ import annotations

from keras_vae.parts.posteriors import GaussianPosterior, IAFPosterior, build_posterior
from keras_vae.parts.priors import (
    MixtureParams,
    MixturePrior,
    NormalPrior,
    VampPrior,
    build_prior,
)

__all__ = [
    "GaussianPosterior",
    "IAFPosterior",
    "MixtureParams",
    "MixturePrior",
    "NormalPrior",
    "VampPrior",
    "build_posterior",
    "build_prior",
]
