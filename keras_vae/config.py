"""One validated configuration object for a run: model, data, training, runtime.

The resolved config is written to ``RUN_DIR/config.json`` and is enough to rerun the job:

    >>> from keras_vae.config import Config
    >>> config = Config.from_dict({"model": {"latent_dim": 2}})
    >>> Config.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

LIKELIHOODS = ("bernoulli", "gaussian")
ESTIMATORS = ("analytic_kl", "monte_carlo")
ARCHITECTURES = ("mlp", "conv")
BINARIZATIONS = ("none", "static", "dynamic")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
MIXED_PRECISION = ("none", "float16", "bfloat16")
OPTIMIZERS = ("adam", "adagrad", "sgd", "rmsprop")
DEFAULT_HIDDEN_UNITS = {"mlp": (400,), "conv": (32, 64)}


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise a `ValueError` naming the argument when `value` is not one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Unknown {name} {value!r}. Expected one of {list(allowed)}. Received: {name}={value!r}"
        )


def check_at_least(name: str, value: Any, minimum: float, integer: bool = True) -> None:
    """Raise a `ValueError` naming the argument when `value` is below `minimum`."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or value < minimum:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {kind} >= {minimum}. "
            f"Received: {name}={value!r}"
        )


def parse_likelihood_scale(value: Any) -> float | str:
    """`likelihood_scale` is a positive float (fixed Gaussian scale) or the string "learned"."""
    if value == "learned":
        return "learned"
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale > 0:
        raise ValueError(
            "Received an invalid value for `likelihood_scale`, expected a positive number or "
            f"'learned'. Received: likelihood_scale={value!r}"
        )
    return scale


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The VAE.

    Attributes:
        latent_dim: size of z (>= 1).
        architecture: "mlp" (the paper's) or "conv" (images HxW or HxWxC).
        hidden_units: widths of the MLP hidden layers, or the conv filters per stride-2 block
            (None: (400,) for "mlp", (32, 64) for "conv").
        activation: hidden activation ("tanh" in the paper, "relu" is common).
        likelihood: "bernoulli" (logits) or "gaussian".
        likelihood_scale: the Gaussian's fixed scale sigma, or "learned" (a decoder output).
        estimator: "analytic_kl" (the paper's estimator B) or "monte_carlo" (estimator A).
        num_samples: L, reparameterised samples per datapoint (>= 1).
        beta: weight of the KL term (>= 0; 1 is the ELBO).
        kl_warmup_steps: linear KL warm-up from 0 to `beta` over this many optimizer steps.
    """

    latent_dim: int = 20
    architecture: str = "mlp"
    hidden_units: tuple[int, ...] | None = None
    activation: str = "relu"
    likelihood: str = "bernoulli"
    likelihood_scale: float | str = 1.0
    estimator: str = "analytic_kl"
    num_samples: int = 1
    beta: float = 1.0
    kl_warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        units = self.hidden_units
        if units is None:
            units = DEFAULT_HIDDEN_UNITS[self.architecture]
        elif isinstance(units, int):
            units = (units,)
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in units))
        object.__setattr__(self, "likelihood_scale", parse_likelihood_scale(self.likelihood_scale))
        check_at_least("latent_dim", self.latent_dim, 1)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_at_least("num_samples", self.num_samples, 1)
        check_at_least("beta", self.beta, 0, integer=False)
        check_at_least("kl_warmup_steps", self.kl_warmup_steps, 0)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(
                "Received an invalid value for `hidden_units`, expected one or more positive "
                f"integers. Received: hidden_units={self.hidden_units!r}"
            )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared.

    Attributes:
        dataset: "digits", a TFDS name ("mnist", "binarized_mnist", ...), a folder of
            MNIST-layout IDX files, or an `.npz` file.
        data_dir: TFDS's `data_dir` (None: TFDS's default).
        binarization: "none", "static" (one fixed draw per image) or "dynamic" (a new draw
            every epoch); only for the Bernoulli likelihood.
        test_fraction: held-out fraction for sources without a test split (digits, Frey faces).
        shuffle_buffer: tf.data shuffle buffer (None: the whole training set).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    binarization: str = "none"
    test_fraction: float = 0.2
    shuffle_buffer: int | None = None

    def __post_init__(self) -> None:
        check_choice("binarization", self.binarization, BINARIZATIONS)
        if not 0 < self.test_fraction < 1:
            raise ValueError(
                "Received an invalid value for `test_fraction`, expected a number in (0, 1). "
                f"Received: test_fraction={self.test_fraction!r}"
            )


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The optimisation.

    Attributes:
        epochs: passes over the training set.
        batch_size: the GLOBAL batch size (split across replicas).
        learning_rate: optimizer step size.
        optimizer: "adam", "adagrad" (the paper's), "sgd" or "rmsprop".
        jit_compile: XLA-compile the train step. "auto": on with a GPU or TPU, and on CPU for
            the MLP (faster there) but not the conv architecture (slower there).
        steps_per_execution: train steps run per call into the compiled function. "auto": 50,
            or 1 with several mirrored replicas (keras-team/keras#19246).
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    jit_compile: bool | str = "auto"
    steps_per_execution: int | str = "auto"

    def __post_init__(self) -> None:
        check_at_least("epochs", self.epochs, 1)
        check_at_least("batch_size", self.batch_size, 1)
        spe = self.steps_per_execution
        if spe != "auto" and (isinstance(spe, bool) or not isinstance(spe, int) or spe < 1):
            raise ValueError(
                "Received an invalid value for `steps_per_execution`, expected an integer >= 1 "
                f"or 'auto'. Received: steps_per_execution={spe!r}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.learning_rate > 0:
            raise ValueError(
                "Received an invalid value for `learning_rate`, expected a positive number. "
                f"Received: learning_rate={self.learning_rate!r}"
            )
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(
                "Received an invalid value for `jit_compile`, expected True, False or 'auto'. "
                f"Received: jit_compile={self.jit_compile!r}"
            )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the job runs.

    Attributes:
        seed: seeds weights, shuffling, binarization and the reparameterisation noise.
        strategy: "auto", "one_device", "mirrored" or "multi_worker" (TF_CONFIG).
        mixed_precision: "none", "float16" or "bfloat16".
        tensorboard: write TensorBoard logs to RUN_DIR/logs.
    """

    seed: int = 0
    strategy: str = "auto"
    mixed_precision: str = "none"
    tensorboard: bool = False

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_at_least("seed", self.seed, 0)


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: `Config(model=ModelConfig(...), data=..., training=..., runtime=...)`."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.data.binarization != "none" and self.model.likelihood != "bernoulli":
            raise ValueError(
                "Binarization only makes sense with the Bernoulli likelihood. Received: "
                f"binarization={self.data.binarization!r}, likelihood={self.model.likelihood!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        sections = {
            "model": ModelConfig,
            "data": DataConfig,
            "training": TrainingConfig,
            "runtime": RuntimeConfig,
        }
        unknown = set(values) - set(sections)
        if unknown:
            raise ValueError(
                f"Unknown config sections {sorted(unknown)}. Expected some of {list(sections)}."
            )
        kwargs = {}
        for name, section in sections.items():
            given = dict(values.get(name, {}))
            fields = {f.name for f in dataclasses.fields(section)}
            extra = set(given) - fields
            if extra:
                raise ValueError(
                    f"Unknown keys {sorted(extra)} in config section {name!r}. "
                    f"Expected some of {sorted(fields)}."
                )
            kwargs[name] = section(**given)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))
