"""`VAEAttributes`: what the host class, `VAE`, sets, declared for mypy for its three mixins.

`keras_vae.model_training`, `keras_vae.model_inference` and `keras_vae.model_sampling` each
subclass `VAEMixinBase`: `VAEAttributes` when type-checking, `object` at run time (no Protocol
in `VAE`'s MRO), so that mypy checks their methods against the attributes `VAE` gives them
without the mixins importing `keras_vae.model`.

>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> vae.compile(optimizer="adam")  # sets `optimizer`
>>> missing = [name for name in VAEAttributes.__annotations__ if not hasattr(vae, name)]
>>> missing  # every declared attribute is one a compiled VAE has
[]
>>> VAEAttributes in VAE.__mro__  # the mixins' run-time base is `object`
False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from keras_vae.parts import posteriors, priors


class VAEAttributes(Protocol):
    """What `VAE` sets for the methods of its three mixins (which subclass this for mypy
    only: `object` at run time)."""

    # set by `VAE.__init__`
    data_shape: tuple[int, ...]
    learned_scale: bool
    encoder: keras.Model
    decoder: keras.Model
    posterior_layer: posteriors.GaussianPosterior | posteriors.IAFPosterior
    prior_layer: priors.NormalPrior | priors.MixturePrior | priors.VampPrior
    seed_generator: keras.random.SeedGenerator
    trackers: dict[str, keras.metrics.Mean]
    # `ModelConfig` fields (`CONFIG_ATTRIBUTES`), read through `VAE.__getattr__`
    latent_dim: int
    likelihood: str
    likelihood_scale: float | str
    num_samples: int
    estimator: str
    objective: str
    gradient_estimator: str
    beta: float
    kl_warmup_steps: int
    # set by `keras.Model` (`optimizer` by `compile`)
    optimizer: keras.optimizers.Optimizer
    trainable_variables: list[keras.Variable]
    losses: list[tf.Tensor]
    __call__: Callable[..., tf.Tensor]

    # `VAE`'s read-only properties
    @property
    def conditional(self) -> bool: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def posterior_name(self) -> str: ...


if TYPE_CHECKING:
    VAEMixinBase = VAEAttributes
else:
    VAEMixinBase = object  # the mixins' run-time base: the declaration is for mypy only
