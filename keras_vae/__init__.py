"""keras-vae: Variational Autoencoders (Kingma & Welling, 2014) for Keras 3.

    >>> import keras_vae
    >>> vae = keras_vae.VAE(data_shape=(28, 28), latent_dim=2)   # doctest: +SKIP
    >>> vae.compile(optimizer="adam"); vae.fit(x_train, epochs=10)  # doctest: +SKIP
    >>> keras_vae.VAE.from_preset("mnist_vae_quick").latent_dim      # shipped, offline
    20

The package imports its public names when first used (PEP 562), so `import keras_vae.serving`
or `keras_vae.config` loads no TensorFlow. Importing the package still registers its Keras
classes, as soon as Keras is imported (keras_vae/registration.py), so `keras.saving.load_model`
reads `.keras` files written by `VAE.save` without `custom_objects`.
"""

# No `from __future__ import annotations` here: it would put `annotations` in dir(keras_vae).
__version__ = "0.1.0"

import importlib as _importlib
import importlib.util as _importlib_util
import os as _os
import sys as _sys
from typing import Any as _Any

# Public name -> the module defining it (imported on first use).
_PUBLIC = {
    "VAE": "keras_vae.model",
    "Config": "keras_vae.config",
    "DataConfig": "keras_vae.config",
    "ModelConfig": "keras_vae.config",
    "RuntimeConfig": "keras_vae.config",
    "TrainingConfig": "keras_vae.config",
    "DataError": "keras_vae.data",
    "load_splits": "keras_vae.data",
    "make_datasets": "keras_vae.data",
    "list_presets": "keras_vae.presets",
    "train_and_evaluate": "keras_vae.train",
}

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


def __getattr__(name: str) -> _Any:
    """A public name, imported from its module on first use; or a submodule (`keras_vae.data`
    works after `import keras_vae` alone, as when the package imported everything)."""
    if name in _PUBLIC:
        value = getattr(_importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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

from keras_vae.registration import register_when_keras_loads  # noqa: E402

register_when_keras_loads()
