"""Registers keras_vae's Keras classes as soon as Keras is imported, without importing Keras.

`import keras_vae` imports no TensorFlow (the serving client and the config stay light), yet
`keras.saving.load_model` must find ``keras_vae>VAE`` and its layers in a `.keras` file
without ``custom_objects``. Keras 3 only imports the module a class came from for packages
named keras, keras_hub, keras_cv or keras_nlp, so the classes must be registered before a
file is read: `register_when_keras_loads` imports the `KERAS_MODULES` right away when Keras
is already imported, else once it is, from a post-import hook (a `MetaPathFinder` that sees
Keras, TensorFlow and keras_vae's own modules load and, when the last of those in progress
has finished, imports the `KERAS_MODULES` and removes itself).

    >>> "keras_vae.model" in KERAS_MODULES
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

# Every module holding a `keras.saving.register_keras_serializable` class (a test checks).
KERAS_MODULES = (
    "keras_vae.networks",
    "keras_vae.parts.made",
    "keras_vae.parts.posteriors",
    "keras_vae.parts.priors",
    "keras_vae.model",
)
# `VAE`'s registered name, as a saved config (.keras file, preset) names its class.
VAE_REGISTERED_NAME = "keras_vae>VAE"
# Packages that import Keras while they load: registering waits until none of them (nor any
# keras_vae module) is half-loaded, since the KERAS_MODULES import them at their top.
WATCHED = ("keras", "tensorflow", "tensorflow_probability", "tf_keras")


class KerasImportHook(importlib.abc.MetaPathFinder):
    """Imports `modules` once Keras, and every watched module loading with it, has loaded."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)
        self.loading = 0  # watched modules whose code is running
        self.keras_loaded = False
        self.lock = threading.RLock()

    def watches(self, fullname: str) -> bool:
        """Whether `fullname` is a watched package or a keras_vae module."""
        return fullname in WATCHED or fullname.startswith("keras_vae.")

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if not self.watches(fullname):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if isinstance(spec.loader, importlib.abc.FileLoader):
            self.wrap(spec.loader, fullname)  # a loader made for this spec alone
        return spec

    def wrap(self, loader: importlib.abc.FileLoader, fullname: str) -> None:
        """Counts `loader`'s module as loading while its code runs, and registers after."""
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with self.lock:
                self.loading += 1
            try:
                run(module)
            finally:
                del loader.exec_module  # the class's method again
                with self.lock:
                    self.loading -= 1
            with self.lock:
                self.keras_loaded |= fullname == "keras"
                ready = self.keras_loaded and self.loading == 0 and self in sys.meta_path
                if ready:
                    sys.meta_path.remove(self)
            if ready:
                import_all(self.modules)

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this loader only


def import_all(modules: Sequence[str]) -> None:
    """Import each of `modules`."""
    for name in modules:
        importlib.import_module(name)


def register_when_keras_loads(modules: Sequence[str] = KERAS_MODULES) -> None:
    """Imports `modules` now if Keras is imported, else as soon as it is."""
    if "keras" in sys.modules:
        import_all(modules)
    elif not any(isinstance(finder, KerasImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, KerasImportHook(modules))
