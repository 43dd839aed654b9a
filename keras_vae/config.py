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
from collections.abc import Sequence
from typing import Any

from keras_vae.limits import (
    MAX_COUNT,
    MAX_FLOW_STEPS,
    MAX_LAYER_WIDTH,
    MAX_NUM_CLASSES,
    MAX_NUM_SAMPLES,
    MAX_PRIOR_COMPONENTS,
    MAX_SEED,
    MAX_STEPS,
    check_at_least,
    check_choice,
    find_non_finite,
    parse_likelihood_scale,
    parse_widths,
)

RECIPE_NAMES = ("burda2015", "vampprior2018")  # keras_vae.recipes.RECIPES holds their values
LIKELIHOODS = ("bernoulli", "gaussian")
ESTIMATORS = ("auto", "analytic_kl", "monte_carlo", "analytic_entropy")
POSTERIORS = ("gaussian", "iaf")
PRIORS = ("normal", "vamp", "mixture")
OBJECTIVES = ("elbo", "iwae")
GRADIENT_ESTIMATORS = ("standard", "dreg")
# Defaults of the parts' sizes where the part has them (else the size is 0).
DEFAULT_FLOW_STEPS = 2
DEFAULT_FLOW_HIDDEN_UNITS = (128, 128)
DEFAULT_PRIOR_COMPONENTS = {"vamp": 500, "mixture": 10}
ARCHITECTURES = ("mlp", "conv")
BINARIZATIONS = ("none", "static", "dynamic")
DEVICE_DATA_AUTO_MB = 1024  # the most `device_data_limit_mb="auto"` places on the device
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
MIXED_PRECISION = ("none", "float16", "bfloat16")
OPTIMIZERS = ("adam", "adagrad", "sgd", "rmsprop")
SCHEDULES = ("constant", "burda", "exponential", "cosine")
OUTPUT_BIAS_INITS = ("zeros", "data-mean")
# Keras' Adam defaults: the recipes change them, other optimizers must leave them.
ADAM_DEFAULTS = {"adam_beta_1": 0.9, "adam_beta_2": 0.999, "adam_epsilon": 1e-7}
DEFAULT_LEARNING_RATE_DECAY = 0.95  # exponential: the factor per epoch
DEFAULT_LEARNING_RATE_ALPHA = 0.0  # cosine: the last rate as a fraction of the first
SOURCE_VALIDATION = "source"  # validation_examples: the source's own validation split
DEFAULT_HIDDEN_UNITS = {"mlp": (400,), "conv": (32, 64)}


def config_field(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    no_flag: str | None = None,
    choices: Sequence[str] | None = None,
    default_text: str | None = None,
) -> Any:
    """A config field with its meaning and its `keras-vae train` flag, declared in one place.

    `keras-vae train --help`, the README's flag table and the class docstring are all made
    from this metadata, and tests/test_cli_flags.py checks that they agree.

    Args:
        default: the field's default value.
        help: what the field means (one phrase, no trailing period).
        flag: its `keras-vae train` flag, e.g. "--latent-dim"; give either `flag` or `no_flag`.
        no_flag: why the field has no flag (it is then set from Python only).
        choices: the allowed strings, where there is a fixed set. Default None.
        default_text: how to show the default where it is None (e.g. "TFDS's default").
    """
    if (flag is None) == (no_flag is None):
        raise TypeError(f"Give exactly one of `flag` and `no_flag`. Received: flag={flag!r}")
    if default is None and default_text is None:
        raise TypeError("A field whose default is None needs `default_text` saying what it means.")
    metadata = {
        "help": help,
        "flag": flag,
        "no_flag": no_flag,
        "choices": tuple(choices) if choices is not None else None,
        "default_text": default_text,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _document_fields(cls: type) -> type:
    """Append an `Attributes:` section made from the fields' `help` to the class docstring."""
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"Declare `{cls.__name__}.{f.name}` with `config_field(...)`.")
    lines = [f"        {f.name}: {f.metadata['help']}." for f in dataclasses.fields(cls)]
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n    Attributes:\n" + "\n".join(lines) + "\n"
    return cls


@_document_fields
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The VAE."""

    latent_dim: int = config_field(20, f"size of z, 1 to {MAX_LAYER_WIDTH:,}", flag="--latent-dim")
    architecture: str = config_field(
        "mlp",
        "'mlp' (the paper's) or 'conv' (images HxW or HxWxC)",
        flag="--architecture",
        choices=ARCHITECTURES,
    )
    hidden_units: tuple[int, ...] | None = config_field(
        None,
        "widths of the MLP hidden layers, or the conv filters per stride-2 block, each 1 to "
        f"{MAX_LAYER_WIDTH:,}; on the command line one number or several separated by commas, "
        "e.g. 500 or 400,200",
        flag="--hidden-units",
        default_text="400 for mlp, 32,64 for conv",
    )
    activation: str = config_field(
        "relu",
        "hidden activation, a Keras activation name ('tanh' in the paper), or 'gated' (mlp "
        "only): each hidden layer is (x W + b) * sigmoid(x V + c), as the VampPrior's "
        "GatedDense",
        flag="--activation",
    )
    likelihood: str = config_field(
        "bernoulli", "'bernoulli' (logits) or 'gaussian'", flag="--likelihood", choices=LIKELIHOODS
    )
    likelihood_scale: float | str = config_field(
        1.0,
        "the Gaussian's standard deviation sigma: a fixed positive number, or 'learned' (a "
        "decoder output)",
        flag="--likelihood-scale",
    )
    estimator: str = config_field(
        "auto",
        "how the ELBO is estimated: 'analytic_kl' (the paper's estimator B: closed-form KL, "
        "only for gaussian posterior + normal prior), 'monte_carlo' (estimator A), "
        "'analytic_entropy' (closed-form entropy of q, gaussian posterior only) or 'auto' "
        "(analytic_kl where it applies, else analytic_entropy, else monte_carlo; iwae: "
        "monte_carlo); config.json records the resolved one",
        flag="--estimator",
        choices=ESTIMATORS,
    )
    num_samples: int = config_field(
        1, f"L, samples of z per datapoint, 1 to {MAX_NUM_SAMPLES:,}", flag="--num-samples"
    )
    beta: float = config_field(1.0, "weight of the KL term, >= 0 (1 is the ELBO)", flag="--beta")
    kl_warmup_steps: int = config_field(
        0,
        "optimizer steps over which the KL weight rises linearly from 0 to beta (0: none)",
        flag="--kl-warmup-steps",
    )
    posterior: str = config_field(
        "gaussian",
        "q(z|x): 'gaussian' (diagonal, the paper's) or 'iaf' (an inverse autoregressive flow "
        "on the Gaussian, Kingma et al. 2016)",
        flag="--posterior",
        choices=POSTERIORS,
    )
    flow_steps: int | None = config_field(
        None,
        f"IAF steps, 1 to {MAX_FLOW_STEPS} (iaf only)",
        flag="--flow-steps",
        default_text=f"{DEFAULT_FLOW_STEPS} with iaf, else 0",
    )
    flow_hidden_units: tuple[int, ...] | None = config_field(
        None,
        "hidden widths of each IAF step's MADE network, one number or several separated by "
        "commas (iaf only)",
        flag="--flow-hidden-units",
        default_text=f"{','.join(map(str, DEFAULT_FLOW_HIDDEN_UNITS))} with iaf, else none",
    )
    prior: str = config_field(
        "normal",
        "p(z): 'normal' (N(0, I)), 'vamp' (VampPrior: the mixture of the posteriors of K "
        "learned pseudo-inputs, Tomczak & Welling 2018) or 'mixture' (a learned K-component "
        "diagonal Gaussian mixture)",
        flag="--prior",
        choices=PRIORS,
    )
    prior_components: int | None = config_field(
        None,
        f"K, components of the vamp or mixture prior, 1 to {MAX_PRIOR_COMPONENTS:,}",
        flag="--prior-components",
        default_text="500 for vamp, 10 for mixture, else 0",
    )
    conditional: bool = config_field(
        False,
        "condition on the class label: q(z|x, y) and p(x|z, y), trained on (image, label) "
        "pairs, sampled per class (the data must have labels)",
        flag="--conditional",
    )
    num_classes: int | None = config_field(
        None,
        f"K, the number of classes of a conditional model, 1 to {MAX_NUM_CLASSES:,}; labels "
        "must lie in [0, K)",
        flag="--num-classes",
        default_text="1 + the largest label in the data",
    )
    objective: str = config_field(
        "elbo",
        "'elbo' (the SGVB bound) or 'iwae' (the importance-weighted bound of Burda et al. "
        "2015 with k = num_samples importance samples per datapoint)",
        flag="--objective",
        choices=OBJECTIVES,
    )

    gradient_estimator: str = config_field(
        "standard",
        "the encoder's gradient: 'standard' (of the objective as written) or 'dreg' (iwae with "
        "the gaussian posterior: the doubly reparameterized estimator of Tucker et al. 2018, "
        "unbiased and of lower variance as k grows; the decoder's gradient is unchanged)",
        flag="--gradient-estimator",
        choices=GRADIENT_ESTIMATORS,
    )

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        units = self.hidden_units
        if units is None:
            units = DEFAULT_HIDDEN_UNITS[self.architecture]
        object.__setattr__(self, "hidden_units", parse_widths(units))
        object.__setattr__(self, "likelihood_scale", parse_likelihood_scale(self.likelihood_scale))
        check_at_least("latent_dim", self.latent_dim, 1, maximum=MAX_LAYER_WIDTH)
        for units in self.hidden_units:
            check_at_least("hidden_units", units, 1, maximum=MAX_LAYER_WIDTH)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.activation == "gated" and self.architecture != "mlp":
            raise ValueError(
                "The 'gated' activation makes gated dense layers, which only the mlp "
                "architecture has; use --architecture mlp or another activation. Received: "
                f"activation='gated', architecture={self.architecture!r}"
            )
        check_at_least("num_samples", self.num_samples, 1, maximum=MAX_NUM_SAMPLES)
        check_at_least("beta", self.beta, 0, integer=False)
        check_at_least("kl_warmup_steps", self.kl_warmup_steps, 0, maximum=MAX_STEPS)
        self._resolve_parts()
        if not isinstance(self.conditional, bool):
            raise ValueError(
                "Received an invalid value for `conditional`, expected True or False. "
                f"Received: conditional={self.conditional!r}"
            )
        if self.num_classes is not None:
            if not self.conditional:
                raise ValueError(
                    "--num-classes sizes a conditional model; add --conditional or drop it. "
                    f"Received: num_classes={self.num_classes!r}"
                )
            check_at_least("num_classes", self.num_classes, 1, maximum=MAX_NUM_CLASSES)

    def _resolve_parts(self) -> None:
        """Check the parts fit together; resolve "auto" and the part sizes' defaults."""
        check_choice("posterior", self.posterior, POSTERIORS)
        check_choice("prior", self.prior, PRIORS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("estimator", self.estimator, ESTIMATORS)
        iaf = self.posterior == "iaf"
        steps, units = self.flow_steps, self.flow_hidden_units
        if iaf:
            steps = DEFAULT_FLOW_STEPS if steps is None else steps
            check_at_least("flow_steps", steps, 1, maximum=MAX_FLOW_STEPS)
            units = parse_widths(
                DEFAULT_FLOW_HIDDEN_UNITS if units is None else units, "flow_hidden_units"
            )
            for width in units:
                check_at_least("flow_hidden_units", width, 1, maximum=MAX_LAYER_WIDTH)
        else:
            if steps not in (None, 0) or units not in (None, (), []):
                raise ValueError(
                    "--flow-steps and --flow-hidden-units size the IAF posterior; add "
                    "--posterior iaf or drop them. Received: posterior="
                    f"{self.posterior!r}, flow_steps={steps!r}, flow_hidden_units={units!r}"
                )
            steps, units = 0, ()
        object.__setattr__(self, "flow_steps", steps)
        object.__setattr__(self, "flow_hidden_units", tuple(units))
        components = self.prior_components
        if self.prior in DEFAULT_PRIOR_COMPONENTS:
            components = DEFAULT_PRIOR_COMPONENTS[self.prior] if components is None else components
            check_at_least("prior_components", components, 1, maximum=MAX_PRIOR_COMPONENTS)
        elif components not in (None, 0):
            raise ValueError(
                "--prior-components sizes the vamp and mixture priors; add --prior vamp or "
                f"--prior mixture, or drop it. Received: prior={self.prior!r}, "
                f"prior_components={components!r}"
            )
        else:
            components = 0
        object.__setattr__(self, "prior_components", components)
        object.__setattr__(self, "estimator", self._resolved_estimator())
        check_choice("gradient_estimator", self.gradient_estimator, GRADIENT_ESTIMATORS)
        if self.gradient_estimator == "dreg" and (
            self.objective != "iwae" or self.posterior != "gaussian" or self.prior == "vamp"
        ):
            raise ValueError(
                "--gradient-estimator dreg reparameterizes the IWAE's encoder gradient through "
                "a gaussian posterior that alone depends on the encoder; use --objective iwae "
                "with --posterior gaussian and --prior normal or mixture. Received: "
                f"objective={self.objective!r}, posterior={self.posterior!r}, "
                f"prior={self.prior!r}"
            )

    def _resolved_estimator(self) -> str:
        """`estimator` with "auto" resolved; a `ValueError` where it does not apply."""
        closed_kl = self.posterior == "gaussian" and self.prior == "normal"
        closed_entropy = self.posterior == "gaussian"
        if self.objective == "iwae":
            if self.estimator not in ("auto", "monte_carlo"):
                raise ValueError(
                    f"The iwae objective averages importance weights of sampled z, so it has "
                    f"no {self.estimator!r} form; use --estimator monte_carlo (or auto). "
                    f"Received: objective='iwae', estimator={self.estimator!r}"
                )
            return "monte_carlo"
        applicable = [
            name
            for name, ok in (
                ("analytic_kl", closed_kl),
                ("analytic_entropy", closed_entropy),
                ("monte_carlo", True),
            )
            if ok
        ]
        if self.estimator == "auto":
            return applicable[0]
        if self.estimator not in applicable:
            needs = (
                "a closed-form KL(q || p), which only the gaussian posterior with the normal "
                "prior has"
                if self.estimator == "analytic_kl"
                else "a closed-form entropy of q, which the iaf posterior has not"
            )
            raise ValueError(
                f"The {self.estimator} estimator needs {needs}; with posterior="
                f"{self.posterior!r}, prior={self.prior!r} use --estimator "
                f"{' or '.join(applicable)}. Received: estimator={self.estimator!r}"
            )
        return self.estimator

    @property
    def default_parts(self) -> bool:
        """Whether this is the paper's model: gaussian posterior, normal prior, the ELBO."""
        return self.posterior == "gaussian" and self.prior == "normal" and self.objective == "elbo"


@_document_fields
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared."""

    dataset: str = config_field(
        "digits",
        "'digits' (scikit-learn's, offline), a TFDS name (mnist, fashion_mnist, "
        "binarized_mnist, ...), a folder of MNIST-layout IDX files, or an .npz file",
        flag="--dataset",
    )
    data_dir: str | None = config_field(
        None, "TFDS's data_dir", flag="--data-dir", default_text="TFDS's default"
    )
    binarization: str = config_field(
        "none",
        "'none', 'static' (one fixed draw per image) or 'dynamic' (a new draw every epoch); "
        "only for the Bernoulli likelihood",
        flag="--binarization",
        choices=BINARIZATIONS,
    )
    validation_examples: int | str = config_field(
        0,
        "examples held out of the training set to validate on (the last N of the training "
        "split; early stopping reads them), or 'source' for the source's own validation split "
        "(binarized MNIST's 10,000 'valid' images, a TFDS 'validation' split); 0: none, the "
        "test split is shown as val_* during training as before. The test split is never used "
        "to choose anything",
        flag="--validation-examples",
    )
    test_fraction: float = config_field(
        0.2,
        "held-out fraction, in (0, 1), of sources without a test split (digits, an .npz with "
        "one images array)",
        no_flag="the command line keeps the documented 80/20 split, so that the test numbers "
        "of runs on those sources compare with each other and with the README's",
    )
    shuffle_buffer: int | None = config_field(
        None,
        "shuffle buffer, >= 1; one smaller than the training set shuffles only locally",
        no_flag="every source is held in memory, where the default, a uniform permutation of "
        "the whole training set each epoch, costs next to nothing (it shuffles indices); a "
        "smaller buffer only shuffles less",
        default_text="the whole training set",
    )

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
        if self.validation_examples != SOURCE_VALIDATION:
            try:
                check_at_least("validation_examples", self.validation_examples, 0)
            except ValueError:
                raise ValueError(
                    "Received an invalid value for `validation_examples`, expected an integer "
                    f">= 0 or {SOURCE_VALIDATION!r}. Received: validation_examples="
                    f"{self.validation_examples!r}"
                ) from None

    @property
    def has_validation(self) -> bool:
        """Whether a validation split is held out of the training data."""
        return self.validation_examples != 0


@_document_fields
@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The optimisation."""

    epochs: int = config_field(
        10, f"passes over the training set, 1 to {MAX_COUNT:,}", flag="--epochs"
    )
    batch_size: int = config_field(
        128, "the global batch size, split across replicas", flag="--batch-size"
    )
    learning_rate: float = config_field(1e-3, "optimizer step size, > 0", flag="--learning-rate")
    optimizer: str = config_field(
        "adam",
        "'adam', 'adagrad' (the paper's), 'sgd' or 'rmsprop'",
        flag="--optimizer",
        choices=OPTIMIZERS,
    )
    recipe: str = config_field(
        "none",
        "a paper's settings at once: 'burda2015' (Burda et al.'s 784-200-200-50 tanh VAE on "
        "dynamically binarized MNIST, as yburda/iwae trains it) or 'vampprior2018' (Tomczak & "
        "Welling's VampPrior on static MNIST, as jmtomczak/vae_vampprior trains it); every "
        "other flag given overrides the recipe, and config.json records the resolved values "
        "(from Python: keras_vae.recipes.resolve, which lays a dict of values over the recipe; "
        "this field alone only records the name)",
        flag="--recipe",
        choices=("none", *RECIPE_NAMES),
    )
    learning_rate_schedule: str = config_field(
        "constant",
        "'constant', 'burda' (stage i = 0..7 runs 3**i epochs at learning_rate * 10**(-i/7), "
        "rounded as yburda/iwae rounds it to 1, .72, .52, .37, .27, .19, .14, .1: 3,280 epochs, "
        "then the last stage's rate), 'exponential' (times learning_rate_decay "
        "every epoch) or 'cosine' (to learning_rate_alpha * learning_rate over all the epochs)",
        flag="--learning-rate-schedule",
        choices=SCHEDULES,
    )
    learning_rate_decay: float | None = config_field(
        None,
        "the exponential schedule's factor per epoch, in (0, 1]",
        flag="--learning-rate-decay",
        default_text=f"{DEFAULT_LEARNING_RATE_DECAY} with exponential, else none",
    )
    learning_rate_alpha: float | None = config_field(
        None,
        "the cosine schedule's last rate as a fraction of learning_rate, in [0, 1]",
        flag="--learning-rate-alpha",
        default_text=f"{DEFAULT_LEARNING_RATE_ALPHA} with cosine, else none",
    )
    adam_beta_1: float = config_field(
        ADAM_DEFAULTS["adam_beta_1"],
        "Adam's decay of the first moment, in [0, 1) (adam only)",
        flag="--adam-beta-1",
    )
    adam_beta_2: float = config_field(
        ADAM_DEFAULTS["adam_beta_2"],
        "Adam's decay of the second moment, in [0, 1) (adam only)",
        flag="--adam-beta-2",
    )
    adam_epsilon: float = config_field(
        ADAM_DEFAULTS["adam_epsilon"],
        "Adam's epsilon, > 0 (adam only; Burda et al. use 1e-4)",
        flag="--adam-epsilon",
    )
    kl_warmup_epochs: int = config_field(
        0,
        "epochs over which the KL weight rises linearly from 0 to beta (0: none; counted in "
        "optimizer steps, epochs x steps per epoch; not with --kl-warmup-steps)",
        flag="--kl-warmup-epochs",
    )
    early_stopping_patience: int = config_field(
        0,
        "stop after this many epochs without a better validation ELBO and keep the best "
        "epoch's weights (0: never; needs --validation-examples)",
        flag="--early-stopping-patience",
    )
    init_output_bias: str = config_field(
        "zeros",
        "the decoder's output bias at the start: 'zeros', or 'data-mean': the logit of each "
        "pixel's mean over the training split (as yburda/iwae; mlp only)",
        flag="--init-output-bias",
        choices=OUTPUT_BIAS_INITS,
    )
    jit_compile: bool | str = config_field(
        "auto",
        "XLA-compile the train step (per replica under mirrored and multi_worker); 'auto': on "
        "with a GPU or TPU, and on CPU for mlp (faster there) but not for conv (slower there)",
        flag="--jit-compile",
    )
    steps_per_execution: int | str = config_field(
        "auto",
        "train steps per call into the compiled function, at most N: the largest divisor of "
        "the steps per epoch up to N (with XLA and one replica, a block of steps in one "
        "compiled loop); 'auto' is 50, or 1 with several mirrored replicas "
        "(keras-team/keras#19246)",
        flag="--steps-per-execution",
    )

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
        check_choice("recipe", self.recipe, ("none", *RECIPE_NAMES))
        self._resolve_schedule()
        for name in ("adam_beta_1", "adam_beta_2"):
            value = getattr(self, name)
            check_at_least(name, value, 0, integer=False)
            if value >= 1:
                raise ValueError(
                    f"Received an invalid value for `{name}`, expected a finite number in "
                    f"[0, 1). Received: {name}={value!r}"
                )
        check_at_least("adam_epsilon", self.adam_epsilon, 0, integer=False, exclusive=True)
        changed = [k for k, v in ADAM_DEFAULTS.items() if getattr(self, k) != v]
        if self.optimizer != "adam" and changed:
            raise ValueError(
                f"--{changed[0].replace('_', '-')} sets Adam's parameters; use --optimizer adam "
                f"or drop it. Received: optimizer={self.optimizer!r}, "
                f"{changed[0]}={getattr(self, changed[0])!r}"
            )
        check_at_least("kl_warmup_epochs", self.kl_warmup_epochs, 0, maximum=MAX_COUNT)
        check_at_least(
            "early_stopping_patience", self.early_stopping_patience, 0, maximum=MAX_COUNT
        )
        check_choice("init_output_bias", self.init_output_bias, OUTPUT_BIAS_INITS)

    def _resolve_schedule(self) -> None:
        """Check the schedule; give its own parameter its default, refuse another's."""
        check_choice("learning_rate_schedule", self.learning_rate_schedule, SCHEDULES)
        # parameter -> (its schedule, its default, whether 0 is refused)
        parameters = {
            "learning_rate_decay": ("exponential", DEFAULT_LEARNING_RATE_DECAY, True),
            "learning_rate_alpha": ("cosine", DEFAULT_LEARNING_RATE_ALPHA, False),
        }
        for name, (schedule, default, positive) in parameters.items():
            value = getattr(self, name)
            if self.learning_rate_schedule != schedule:
                if value is not None:
                    raise ValueError(
                        f"--{name.replace('_', '-')} belongs to the {schedule} schedule; add "
                        f"--learning-rate-schedule {schedule} or drop it. Received: "
                        f"learning_rate_schedule={self.learning_rate_schedule!r}, "
                        f"{name}={value!r}"
                    )
                continue
            value = default if value is None else value
            check_at_least(name, value, 0, integer=False, maximum=1, exclusive=positive)
            object.__setattr__(self, name, float(value))
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(
                "Received an invalid value for `jit_compile`, expected True, False or 'auto'. "
                f"Received: jit_compile={self.jit_compile!r}"
            )


@_document_fields
@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the job runs."""

    seed: int = config_field(
        0,
        "seeds the weights, shuffling, binarization and reparameterisation noise, 0 to "
        f"{MAX_SEED} (2**32 - 1, numpy's and Keras's seed range)",
        flag="--seed",
    )
    strategy: str = config_field(
        "auto",
        "tf.distribute strategy: 'mirrored' = all visible GPUs, 'multi_worker' = "
        "MultiWorkerMirroredStrategy from TF_CONFIG (run the same command on every worker), "
        "'one_device', or 'auto' = multi_worker if TF_CONFIG lists several workers, else "
        "mirrored with 2+ GPUs, else one_device; the batch size is global",
        flag="--strategy",
        choices=STRATEGIES,
    )
    mixed_precision: str = config_field(
        "none",
        "'float16' (Keras's mixed_float16 policy, with loss scaling), 'bfloat16' "
        "(mixed_bfloat16) or 'none'; distributions and losses stay float32",
        flag="--mixed-precision",
        choices=MIXED_PRECISION,
    )
    device_data_limit_mb: int | str = config_field(
        "auto",
        "place the training split on the device once and draw each batch (gather, dynamic "
        "binarization) inside the compiled training loop when it takes at most this many MB "
        "as stored (MNIST's 60,000 uint8 images: 45 MB) and training runs in blocks of steps "
        "(one replica, XLA); else, or with 0, stream batches through tf.data; 'auto' is "
        f"{DEVICE_DATA_AUTO_MB} MB or a quarter of the machine's memory, whichever is less; "
        "both paths train on the same numbers bit for bit, metrics.json's data_path says "
        "which ran, and a run may be resumed with another limit",
        flag="--device-data-limit-mb",
    )
    memory_limit_mb: int | str = config_field(
        "auto",
        "refuse, before building anything, a model whose training is estimated to need more "
        "memory than this (parameters with their gradients and Adam's moments, and one "
        "step's activations); 'auto' is half of the machine's memory, 0 checks nothing",
        flag="--memory-limit-mb",
    )
    tensorboard: bool = config_field(
        False,
        "log scalars (elbo, kl, reconstruction, learning rate) and images (reconstructions, "
        "samples) every epoch to RUN_DIR/logs",
        flag="--tensorboard",
    )

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_at_least("seed", self.seed, 0, maximum=MAX_SEED)
        for name in ("device_data_limit_mb", "memory_limit_mb"):
            if getattr(self, name) != "auto":
                check_at_least(name, getattr(self, name), 0, maximum=2**40)
        if not isinstance(self.tensorboard, bool):
            raise ValueError(
                "Received an invalid value for `tensorboard`, expected True or False. "
                f"Received: tensorboard={self.tensorboard!r}"
            )


# The sections of a `Config` (and of config.json), in order: name -> dataclass.
SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "runtime": RuntimeConfig,
}


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

        training = self.training
        if training.kl_warmup_epochs and self.model.kl_warmup_steps:
            raise ValueError(
                "Give the KL warm-up in steps or in epochs, not both. Received: "
                f"kl_warmup_steps={self.model.kl_warmup_steps!r}, "
                f"kl_warmup_epochs={training.kl_warmup_epochs!r}"
            )
        if training.early_stopping_patience and not self.data.has_validation:
            raise ValueError(
                "Early stopping watches a validation split, never the test split; add "
                "--validation-examples N (or 'source'). Received: early_stopping_patience="
                f"{training.early_stopping_patience!r}, validation_examples=0"
            )
        if training.init_output_bias != "zeros" and self.model.architecture != "mlp":
            raise ValueError(
                "--init-output-bias data-mean sets the mlp decoder's per-pixel output bias; "
                "the conv decoder has one bias per channel. Received: "
                f"init_output_bias={training.init_output_bias!r}, "
                f"architecture={self.model.architecture!r}"
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
        sections = SECTIONS
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
        found = find_non_finite(values)  # in a field that no range check covers
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
