"""keras-vae: Variational Autoencoders (Kingma & Welling, 2014) for Keras 3.

    >>> import keras_vae
    >>> vae = keras_vae.VAE(data_shape=(28, 28), latent_dim=2)   # doctest: +SKIP
    >>> vae.compile(optimizer="adam"); vae.fit(x_train, epochs=10)  # doctest: +SKIP

Importing the package registers its Keras classes, so `keras.saving.load_model` reads
`.keras` files written by `VAE.save` without `custom_objects`.
"""

__version__ = "0.1.0"

from keras_vae.config import (  # noqa: E402
    Config,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    TrainingConfig,
)
from keras_vae.data import DataError, load_splits, make_datasets  # noqa: E402
from keras_vae.model import VAE  # noqa: E402
from keras_vae.train import train_and_evaluate  # noqa: E402

__all__ = [
    "VAE",
    "Config",
    "DataConfig",
    "DataError",
    "ModelConfig",
    "RuntimeConfig",
    "TrainingConfig",
    "__version__",
    "load_splits",
    "make_datasets",
    "train_and_evaluate",
]
