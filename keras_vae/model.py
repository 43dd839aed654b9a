"""`VAE`: a `keras.Model` whose `train_step` maximises the SGVB estimate of the ELBO.

This module holds what makes one: the constructor (the layers from one `ModelConfig`), the
compile and fit policy, presets and serialization. Its methods live in three mixins beside it:
`keras_vae.model_training` (objective, steps, metrics), `keras_vae.model_inference` (encode,
decode, densities, log-likelihood, scores) and `keras_vae.model_sampling` (samples).

>>> import numpy as np, keras
>>> vae = VAE(data_shape=(8, 8), latent_dim=2, hidden_units=(32,))
>>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> history = vae.fit(np.random.rand(64, 8, 8), batch_size=16, epochs=1, verbose=0)
>>> sorted(history.history)
['elbo', 'kl', 'loss', 'reconstruction']
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import keras

from keras_vae import execution
from keras_vae.config import ModelConfig
from keras_vae.model_inference import InferenceMixin
from keras_vae.model_sampling import SamplingMixin
from keras_vae.model_training import TrainingMixin, metric_names
from keras_vae.networks import build_decoder, build_encoder
from keras_vae.parts import build_posterior, build_prior

MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
# The fields read as `vae.<name>` through `vae.config`; `posterior` and `prior` name methods,
# so they read as `posterior_name` and `prior_name`, and `num_classes` (0 when unconditional)
# and `conditional` are properties.
CONFIG_ATTRIBUTES = frozenset(MODEL_FIELDS) - {"posterior", "prior", "num_classes", "conditional"}


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(TrainingMixin, InferenceMixin, SamplingMixin, keras.Model):
    """Variational autoencoder trained with the SGVB estimator (Kingma & Welling, 2014).

    By default q(z|x) is a diagonal Gaussian, p(z) = N(0, I) and p(x|z) a Bernoulli or
    Gaussian over all data dimensions; `fit` maximises the ELBO (minimises `loss` =
    -(reconstruction - beta * kl)) and reports, per example in nats, `loss`, `elbo`,
    `reconstruction` (E_q log p(x|z)) and `kl`. The latent parts can be swapped
    (`keras_vae.parts`): an IAF posterior, a VampPrior or a mixture prior, and the IWAE bound
    as the objective (then also reported as `iwae`). Inputs may be vectors, HxW or HxWxC,
    with or without labels (ignored). Pass
    `{"x": x, "noise": eps}` with eps of shape [batch, num_samples, latent_dim] to supply the
    reparameterisation noise yourself (common random numbers, exact reproducibility).

    Args:
        data_shape: shape of one example, e.g. (28, 28).
        latent_dim: size of z. Default 20.
        architecture: "mlp" or "conv". Default "mlp".
        hidden_units: hidden widths (mlp) or filters per stride-2 block (conv).
            Default (400,) for mlp, (32, 64) for conv.
        activation: hidden activation. Default "relu" ("tanh" in the paper).
        likelihood: "bernoulli" or "gaussian". Default "bernoulli".
        likelihood_scale: Gaussian standard deviation, a float or "learned". Default 1.0.
        estimator: "analytic_kl", "monte_carlo", "analytic_entropy" or "auto" (default:
            analytic_kl where it applies, else analytic_entropy, else monte_carlo).
        num_samples: L, samples of z per datapoint (k for the iwae objective). Default 1.
        beta: KL weight. Default 1.0.
        kl_warmup_steps: linear warm-up of the KL weight over this many steps. Default 0.
        posterior: "gaussian" (default) or "iaf".
        flow_steps: IAF steps (iaf only). Default 2.
        flow_hidden_units: hidden widths of each IAF step's MADE. Default (128, 128).
        prior: "normal" (default), "vamp" or "mixture".
        prior_components: K of the vamp (default 500) or mixture (default 10) prior.
        objective: "elbo" (default) or "iwae".
        gradient_estimator: "standard" (default) or "dreg" (iwae, gaussian posterior).
        conditional: condition on a class label, q(z|x, y) and p(x|z, y). Default False.
        num_classes: K, the classes of a conditional model, labels in [0, K) (giving it
            makes the model conditional). Default None.
        seed: seed of the reparameterisation noise. Default None.

    Attributes:
        config: the checked `ModelConfig` of the arguments ("auto" and the parts' default
            sizes resolved). Each of its fields reads as an attribute too (`vae.latent_dim`,
            `vae.beta`, ...); `posterior` and `prior` as `posterior_name` and `prior_name`.
        data_shape: the shape of one example, a tuple of ints.
        seed: the seed given.

    Example:
        >>> vae = VAE(data_shape=(784,), latent_dim=2, hidden_units=(16,))
        >>> vae.sample(3, seed=1).shape
        TensorShape([3, 784])
    """

    # ----------------------------------------------------------------- layers
    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int = 20,
        architecture: str = "mlp",
        hidden_units: Sequence[int] | None = None,
        activation: str = "relu",
        likelihood: str = "bernoulli",
        likelihood_scale: float | str = 1.0,
        estimator: str = "auto",
        num_samples: int = 1,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        posterior: str = "gaussian",
        flow_steps: int | None = None,
        flow_hidden_units: Sequence[int] | None = None,
        prior: str = "normal",
        prior_components: int | None = None,
        objective: str = "elbo",
        gradient_estimator: str = "standard",
        conditional: bool = False,
        num_classes: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # The arguments above are `ModelConfig`'s fields (tests/test_model.py checks that the
        # names and defaults agree), gathered here into the one `ModelConfig` the model keeps.
        config = ModelConfig.from_arguments(locals())
        super().__init__(**kwargs)
        if config.conditional and config.num_classes is None:
            raise ValueError(
                "A conditional VAE needs `num_classes`, the number of classes K (labels lie in "
                "[0, K)). Received: num_classes=None"
            )
        data_shape = tuple(int(d) for d in data_shape)
        if not data_shape or min(data_shape) < 1:
            raise ValueError(
                "Received an invalid value for `data_shape`, expected one or more positive "
                f"integers. Received: data_shape={data_shape!r}"
            )
        self.config = config
        self.data_shape = data_shape
        self.seed = seed

        # `ModelConfig` resolves the sizes left None to the parts' defaults (0 where unused)
        hidden_units = cast("tuple[int, ...]", config.hidden_units)
        flow_steps = cast(int, config.flow_steps)
        flow_hidden_units = cast("tuple[int, ...]", config.flow_hidden_units)
        prior_components = cast(int, config.prior_components)
        self.learned_scale = (
            config.likelihood == "gaussian" and config.likelihood_scale == "learned"
        )
        self.posterior_layer = build_posterior(
            config.posterior, config.latent_dim, flow_steps, flow_hidden_units
        )
        self.prior_layer = build_prior(
            config.prior, config.latent_dim, prior_components, data_shape
        )
        self.encoder = build_encoder(
            data_shape,
            config.latent_dim,
            config.architecture,
            hidden_units,
            config.activation,
            context_units=self.posterior_layer.context_units,
            num_classes=self.num_classes,
        )
        self.decoder = build_decoder(
            data_shape,
            config.latent_dim,
            config.architecture,
            hidden_units,
            config.activation,
            config.likelihood,
            learned_scale=self.learned_scale,
            num_classes=self.num_classes,
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="reparameterisation_seed")
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in metric_names(config.objective)
        }
        self.execution_policy: execution.ExecutionPolicy | None = None  # set by `compile`
        self.built = True

    @classmethod
    def from_model_config(
        cls,
        data_shape: Sequence[int],
        config: ModelConfig,
        seed: int | None = None,
        num_classes: int | None = None,
    ) -> VAE:
        """Build from a `ModelConfig` (what `keras-vae train` does); a conditional config
        without `num_classes` takes `num_classes` (the data's).

        Example:
            >>> config = ModelConfig(latent_dim=2, hidden_units=(8,), conditional=True)
            >>> vae = VAE.from_model_config((4,), config, num_classes=3)
            >>> vae.num_classes, vae.config.num_classes
            (3, 3)
        """
        values = vars(config)
        if config.conditional and config.num_classes is None:
            values = {**values, "num_classes": num_classes}
        return cls(data_shape=data_shape, seed=seed, **values)

    # ----------------------------------------------------------------- config
    def __getattr__(self, name: str) -> Any:
        """`vae.latent_dim`, `vae.beta`, ...: the `ModelConfig`'s fields (`CONFIG_ATTRIBUTES`)."""
        config = self.__dict__.get("config")  # absent while Keras' __init__ runs
        if config is not None and name in CONFIG_ATTRIBUTES:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def posterior_name(self) -> str:
        """q(z|x)'s kind: "gaussian" or "iaf" (`config.posterior`)."""
        return self.config.posterior

    @property
    def prior_name(self) -> str:
        """p(z)'s kind: "normal", "vamp" or "mixture" (`config.prior`)."""
        return self.config.prior

    @property
    def num_classes(self) -> int:
        """K, the classes of a conditional model; 0 for an unconditional one."""
        return self.config.num_classes or 0

    @property
    def conditional(self) -> bool:
        """Whether q(z|x, y) and p(x|z, y) take the class label y."""
        return self.config.conditional

    def get_config(self) -> dict[str, Any]:
        values = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self.config).items()
        }
        for name in ("conditional", "num_classes"):  # last but the seed, as always saved
            values[name] = values.pop(name)
        return {
            **super().get_config(),
            "data_shape": list(self.data_shape),
            **values,
            "seed": self.seed,
        }

    # ----------------------------------------------------------------- compile and fit
    # Thin overrides: the policy is `keras_vae.execution.ExecutionPolicy`.
    def compile(
        self,
        optimizer: str | keras.optimizers.Optimizer = "rmsprop",
        *,
        jit_compile: bool | str = "auto",
        steps_per_execution: int | str = "auto",
        **kwargs: Any,
    ) -> None:
        """`keras.Model.compile`, with fast defaults and `jit_compile=True` working under
        multi-device strategies.

        `jit_compile="auto"` and `steps_per_execution="auto"` (the defaults) pick the settings
        benchmarks/throughput.py found fastest: see `keras_vae.execution.resolve_jit_compile`
        (XLA with a GPU or TPU, and on CPU for the MLP) and
        `keras_vae.execution.resolve_steps_per_execution` (50; 1 with several mirrored
        replicas). Both are saved as given, so a loaded model resolves them again.

        Keras XLA-compiles the whole step, `strategy.run` included, which fails when the
        variables are mirrored over several devices (`MirroredStrategy`,
        `MultiWorkerMirroredStrategy`). There, `jit_compile=True` instead compiles each
        replica's forward and backward pass and leaves the all-reduce and the update outside
        XLA; `self.replica_jit_compile` tells which applies. `steps_per_execution > 1` with
        several mirrored replicas raises a ValueError (a Keras 3 bug, see
        `keras_vae.execution.check_steps_per_execution`). Call inside the strategy's scope.

        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> vae.compile(optimizer="adam")
        >>> vae.compiled_steps_per_execution, vae.replica_jit_compile  # one device: 50, False
        (50, False)
        """
        policy = execution.ExecutionPolicy.resolve(
            self.distribute_strategy, self.architecture, jit_compile, steps_per_execution
        )
        super().compile(optimizer=optimizer, **policy.compile_arguments(), **kwargs)
        self.execution_policy = policy

    @property
    def replica_jit_compile(self) -> bool:
        """Whether `compile(jit_compile=True)` XLA-compiles each replica's step instead of
        the whole step (under multi-device strategies)."""
        return self.execution_policy is not None and self.execution_policy.replica_jit_compile

    @property
    def compiled_steps_per_execution(self) -> int:
        """`steps_per_execution` as compiled ("auto" resolved), before `fit` adapts it."""
        if self.execution_policy is None:
            raise RuntimeError("The VAE is not compiled yet: call `vae.compile(...)` first.")
        return self.execution_policy.steps_per_execution

    def get_compile_config(self) -> dict[str, Any]:
        """Keras' compile config, with `jit_compile` and `steps_per_execution` as given."""
        return execution.saved_compile_config(self, super().get_compile_config())

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Recompile a loaded `.keras` file through our `compile` (Keras skips overrides)."""
        execution.compile_from_config(self, config)

    def fit(
        self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any
    ) -> keras.callbacks.History:
        """`keras.Model.fit`, training exactly `steps_per_epoch` steps per epoch.

        Keras runs whole executions of `steps_per_execution` steps while data lasts, so with
        a `steps_per_epoch` that is not a multiple of it, on repeated data, every epoch would
        train extra steps. Here "auto" lowers `steps_per_execution` to a divisor of
        `steps_per_epoch` for this call, and an explicit setting raises a ValueError that says
        how to fix it (`keras_vae.execution.prepare_fit`).

        A dataset of `{"x_steps": xs}` blocks (see `train_step`) runs one block per call.

        Example:
            >>> vae.fit(train.repeat(), epochs=3, steps_per_epoch=117)  # doctest: +SKIP
        """
        execution.prepare_fit(self, x, y, *args, **kwargs)
        return super().fit(x, y, *args, **kwargs)

    # ----------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, preset: str | os.PathLike) -> VAE:
        """A trained VAE from a preset: a name of `keras_vae.list_presets()` (shipped in the
        package: no download), a preset folder (``config.json``, ``model.weights.h5``,
        ``metadata.json``), or an ``hf://`` / ``kaggle://`` handle fetched by keras-hub's
        loader (needs keras-hub and the network; untested offline). See
        `keras_vae.presets`.

        Raises:
            ValueError: the preset is unknown, or a file is missing, corrupt or does not fit
                the others (`keras_vae.presets.PresetError`, naming the file and the fix).

        Example:
            >>> vae = VAE.from_preset("mnist_vae_quick")
            >>> vae.data_shape, vae.latent_dim
            ((28, 28), 20)
        """
        from keras_vae.presets import load_preset

        model = load_preset(preset).model
        if not isinstance(model, cls):
            raise ValueError(
                f"The preset holds a {type(model).__name__}, not a {cls.__name__}. "
                f"Received: preset={preset!r}"
            )
        return model

    def save_to_preset(self, preset_dir: str | os.PathLike) -> Path:
        """Write this VAE as a preset folder (`keras_vae.preset_writer.save_preset`): its config,
        float32 weights (no optimizer state) and metadata, atomically, into a missing or
        empty folder or over a preset keras-vae wrote (any other folder is refused).

        Example:
            >>> import tempfile, pathlib
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> folder = vae.save_to_preset(pathlib.Path(tempfile.mkdtemp()) / "tiny")
            >>> VAE.from_preset(folder).get_config() == vae.get_config()
            True
        """
        from keras_vae.preset_writer import save_preset

        return save_preset(self, preset_dir)
