"""One validated configuration object for a run: model, data, training, runtime.

The resolved config is written to ``RUN_DIR/config.json`` and is enough to rerun the job.
Every field is checked on construction (a `ValueError` naming the field and its allowed values):
numbers must be finite (no NaN or infinity, which `json` would write as the non-JSON NaN and
Infinity and which compare unequal to themselves), and the seed lies in [0, `MAX_SEED`].

    >>> from keras_vae.config import Config
    >>> config = Config.from_dict({"model": {"latent_dim": 2}})
    >>> Config.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
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
# Seeds are 0..2**32 - 1, the range of numpy's and `keras.utils.set_random_seed`'s seeds; the
# importance-sampling seed pairs are int32, and these 2**32 seeds are exactly their bit patterns.
MAX_SEED = 2**32 - 1
FLOAT32_MAX = 3.4028234663852886e38  # np.finfo(np.float32).max: larger floats become inf
# Documented maxima of `keras-vae evaluate` (keras_vae.evaluate), here so the CLI's --help can
# quote them without importing TensorFlow.
MAX_IMPORTANCE_SAMPLES = 1_000_000  # K; 200x the standard protocol's 5000
MAX_EVALUATION_BATCH_SIZE = 100_000  # examples per evaluation step
# Upper bounds of the model and training sizes: far above any real VAE, low enough that a
# typo (an extra zero, 1e30) is refused before a tensor of that size is asked for.
MAX_LAYER_WIDTH = 65_536  # latent_dim and each hidden layer's units or filters
MAX_NUM_SAMPLES = 10_000  # L, samples of z per datapoint
MAX_COUNT = 2**31 - 1  # epochs, batch size, steps per execution (int32 in TensorFlow)
MAX_STEPS = 2**62  # optimizer steps (the int64 `iterations` counter)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise a `ValueError` naming the argument when `value` is not one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Unknown {name} {value!r}. Expected one of {list(allowed)}. Received: {name}={value!r}"
        )


def check_at_least(
    name: str,
    value: Any,
    minimum: float,
    integer: bool = True,
    maximum: float | None = None,
    exclusive: bool = False,
) -> None:
    """Raise a `ValueError` naming the argument when `value` is out of range.

    `value` must be a number (not a bool) >= `minimum` (> with `exclusive`) and, when given,
    <= `maximum`. Integers must be whole; other numbers must be finite in float32, the
    precision the model computes in: NaN, +-inf and magnitudes above `FLOAT32_MAX` are
    refused.

    Example:

    >>> check_at_least("beta", float("nan"), 0, integer=False)
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `beta`, expected a finite number >= 0. \
Received: beta=nan
    """
    kind = "an integer" if integer else "a finite number"
    bound = f" {'>' if exclusive else '>='} {minimum}"
    if maximum is not None:
        bound = f" in {'(' if exclusive else '['}{minimum}, {maximum}]"
    elif exclusive and minimum == 0:
        kind, bound = ("a positive integer" if integer else "a finite positive number"), ""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    overflow = False
    if ok and isinstance(value, float):
        ok = math.isfinite(value) and (not integer or value.is_integer())
        overflow = ok and not integer and abs(value) > FLOAT32_MAX
    if ok:
        ok = (value > minimum if exclusive else value >= minimum) and not overflow
        ok = ok and (maximum is None or value <= maximum)
    if not ok:
        note = f" (above the float32 maximum {FLOAT32_MAX})" if overflow else ""
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {kind}{bound}{note}. "
            f"Received: {name}={value!r}"
        )


def parse_likelihood_scale(value: Any) -> float | str:
    """`likelihood_scale` is a finite positive float (fixed Gaussian scale) or "learned"."""
    if value == "learned":
        return "learned"
    try:
        scale = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        scale = math.nan
    if not (math.isfinite(scale) and 0 < scale <= FLOAT32_MAX):
        raise ValueError(
            "Received an invalid value for `likelihood_scale`, expected a finite positive "
            f"number or 'learned'. Received: likelihood_scale={value!r}"
        )
    return scale


def _hidden_units(units: Any) -> tuple[int, ...]:
    """`hidden_units` as a tuple of positive ints (one int is one layer)."""
    if isinstance(units, numbers.Integral) and not isinstance(units, bool):
        units = (units,)

    def whole(u: Any) -> bool:  # an int (NumPy's too) or an integral float; never a bool
        if isinstance(u, bool):
            return False
        if isinstance(u, numbers.Integral):
            return True
        return isinstance(u, float) and math.isfinite(u) and u.is_integer()

    try:
        values = tuple(units)
        ok = bool(values) and all(whole(u) and u >= 1 for u in values)
    except TypeError:
        ok = False
    if not ok or isinstance(units, (str, bytes)):
        raise ValueError(
            "Received an invalid value for `hidden_units`, expected one or more positive "
            f"integers. Received: hidden_units={units!r}"
        )
    return tuple(int(u) for u in values)


def _find_non_finite(values: Any, path: str = "") -> tuple[str, float] | None:
    """The first (dotted path, value) in nested dicts/lists holding a NaN or an infinity."""
    if isinstance(values, float) and not math.isfinite(values):
        return path, values
    if isinstance(values, dict):
        items = values.items()
    elif isinstance(values, (list, tuple)):
        items = enumerate(values)
    else:
        return None
    for key, value in items:
        found = _find_non_finite(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


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
        likelihood_scale: the Gaussian's fixed scale sigma (finite, > 0), or "learned" (a
            decoder output).
        estimator: "analytic_kl" (the paper's estimator B) or "monte_carlo" (estimator A).
        num_samples: L, reparameterised samples per datapoint (>= 1).
        beta: weight of the KL term (finite, >= 0; 1 is the ELBO).
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
        object.__setattr__(self, "hidden_units", _hidden_units(units))
        object.__setattr__(self, "likelihood_scale", parse_likelihood_scale(self.likelihood_scale))
        check_at_least("latent_dim", self.latent_dim, 1, maximum=MAX_LAYER_WIDTH)
        for units in self.hidden_units:
            check_at_least("hidden_units", units, 1, maximum=MAX_LAYER_WIDTH)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_at_least("num_samples", self.num_samples, 1, maximum=MAX_NUM_SAMPLES)
        check_at_least("beta", self.beta, 0, integer=False)
        check_at_least("kl_warmup_steps", self.kl_warmup_steps, 0, maximum=MAX_STEPS)


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
        shuffle_buffer: tf.data shuffle buffer (>= 1; None: the whole training set).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    binarization: str = "none"
    test_fraction: float = 0.2
    shuffle_buffer: int | None = None

    def __post_init__(self) -> None:
        check_choice("binarization", self.binarization, BINARIZATIONS)
        fraction = self.test_fraction
        number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
        if not (number and 0 < fraction < 1):  # also refuses NaN, inf and strings
            raise ValueError(
                "Received an invalid value for `test_fraction`, expected a number in (0, 1). "
                f"Received: test_fraction={fraction!r}"
            )
        if self.shuffle_buffer is not None:
            check_at_least("shuffle_buffer", self.shuffle_buffer, 1)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The optimisation.

    Attributes:
        epochs: passes over the training set.
        batch_size: the GLOBAL batch size (split across replicas).
        learning_rate: optimizer step size (finite, > 0).
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
        check_at_least("epochs", self.epochs, 1, maximum=MAX_COUNT)
        check_at_least("batch_size", self.batch_size, 1, maximum=MAX_COUNT)
        spe = self.steps_per_execution
        valid = isinstance(spe, int) and not isinstance(spe, bool) and 1 <= spe <= MAX_COUNT
        if spe != "auto" and not valid:
            raise ValueError(
                "Received an invalid value for `steps_per_execution`, expected an integer in "
                f"[1, {MAX_COUNT}] or 'auto'. Received: steps_per_execution={spe!r}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_at_least("learning_rate", self.learning_rate, 0, integer=False, exclusive=True)
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(
                "Received an invalid value for `jit_compile`, expected True, False or 'auto'. "
                f"Received: jit_compile={self.jit_compile!r}"
            )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the job runs.

    Attributes:
        seed: seeds weights, shuffling, binarization and the reparameterisation noise; an
            integer from 0 to `MAX_SEED` = 2**32 - 1 (numpy's and Keras's seed range).
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
        check_at_least("seed", self.seed, 0, maximum=MAX_SEED)
        if not isinstance(self.tensorboard, bool):
            raise ValueError(
                "Received an invalid value for `tensorboard`, expected True or False. "
                f"Received: tensorboard={self.tensorboard!r}"
            )


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
        # allow_nan=False: never write NaN/Infinity, which are not JSON (the checks refuse them)
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """The checked `Config` of ``{"model": {...}, "data": ..., ...}`` (missing: defaults).

        Raises:
            ValueError: an unknown section or key, a value out of range, or a NaN or infinity
                anywhere (Python's `json` reads NaN and Infinity, which are not JSON).
        """
        if not isinstance(values, dict):
            raise ValueError(
                f"Expected a config object (a dict of sections), received a "
                f"{type(values).__name__}."
            )
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
        config = cls(**kwargs)
        found = _find_non_finite(values)  # in a field that no range check covers
        if found is not None:
            path, value = found
            raise ValueError(
                f"Received an invalid value for `{path}`, expected a finite number or a "
                f"string. Received: {path}={value!r}"
            )
        return config

    @classmethod
    def from_json(cls, text: str) -> Config:
        """`from_dict` of a JSON text; NaN and Infinity are refused like every bad value."""
        return cls.from_dict(json.loads(text))
