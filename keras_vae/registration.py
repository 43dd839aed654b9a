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
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

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
        elif spec.loader is not None:  # maybe shared (pytest's rewriter of files it was given)
            spec.loader = CountedLoader(self, spec.loader, fullname)
        return spec

    def wrap(self, loader: importlib.abc.FileLoader, fullname: str) -> None:
        """Counts `loader`'s module as loading while its code runs (`run_counted`)."""
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            try:
                self.run_counted(fullname, run, module)
            finally:
                del loader.exec_module  # the class's method again

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this loader only

    def run_counted(
        self, fullname: str, run: Callable[[ModuleType], None], module: ModuleType
    ) -> None:
        """`run(module)`, counted as loading; registers after it if nothing else is loading."""
        with self.lock:
            self.loading += 1
        try:
            run(module)
        finally:
            with self.lock:
                self.loading -= 1
        with self.lock:
            self.keras_loaded |= fullname == "keras"
            ready = self.keras_loaded and self.loading == 0 and self in sys.meta_path
            if ready:
                sys.meta_path.remove(self)
        if ready:
            import_all(self.modules)


class CountedLoader(importlib.abc.Loader):
    """Another finder's loader, its `exec_module` counted by a `KerasImportHook`: a loader
    that may load several modules (pytest's assertion rewriter loads the files named on its
    command line) cannot be wrapped in place. Everything else is the loader's own.

        >>> import importlib.util
        >>> class Loader(importlib.abc.Loader):
        ...     def exec_module(self, module: ModuleType) -> None:
        ...         module.loading = hook.loading  # what the hook counts while the code runs
        >>> hook = KerasImportHook(())
        >>> spec = importlib.util.spec_from_loader("demo", CountedLoader(hook, Loader(), "demo"))
        >>> module = importlib.util.module_from_spec(spec)
        >>> spec.loader.exec_module(module)
        >>> module.loading, hook.loading
        (1, 0)
    """

    def __init__(self, hook: KerasImportHook, loader: importlib.abc.Loader, fullname: str) -> None:
        self.hook, self.loader, self.fullname = hook, loader, fullname

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.hook.run_counted(self.fullname, self.loader.exec_module, module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        if name == "loader":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


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
