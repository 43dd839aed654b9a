"""keras-vae: Variational Autoencoders (Kingma & Welling, 2014) for Keras 3.

    >>> import keras_vae
    >>> vae = keras_vae.VAE(data_shape=(28, 28), latent_dim=2)   # doctest: +SKIP
    >>> vae.compile(optimizer="adam"); vae.fit(x_train, epochs=10)  # doctest: +SKIP
    >>> keras_vae.VAE.from_preset("mnist_vae_quick").latent_dim      # shipped, offline
    20

Importing the package registers its Keras classes, so `keras.saving.load_model` reads
`.keras` files written by `VAE.save` without `custom_objects`.
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys


def _import_tensorflow_quietly() -> None:
    """For the `keras-vae` command, keep TensorFlow's native start-up chatter off stderr.

    TF 2.21 prints oneDNN/CUDA/CPU-feature lines while loading, some of them regardless of
    TF_CPP_MIN_LOG_LEVEL; a command whose errors are one line must not start with eight. Only
    the console script is affected: library users keep TensorFlow's usual output.
    """
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") != "keras-vae":
        return
    if "tensorflow" in _sys.modules:
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _sys.stderr.flush()
    saved_stderr = _os.dup(2)
    try:
        with open(_os.devnull, "w") as devnull:
            _os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        _os.dup2(saved_stderr, 2)
        _os.close(saved_stderr)


_import_tensorflow_quietly()

from keras_vae.config import (  # noqa: E402
    Config,
    DataConfig,
    ModelConfig,
    RuntimeConfig,
    TrainingConfig,
)
from keras_vae.data import DataError, load_splits, make_datasets  # noqa: E402
from keras_vae.model import VAE  # noqa: E402
from keras_vae.presets import list_presets  # noqa: E402
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
    "list_presets",
    "load_splits",
    "make_datasets",
    "train_and_evaluate",
]
