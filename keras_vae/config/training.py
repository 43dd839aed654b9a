"""The training section of the config: `TrainingConfig`, the optimisation.

Checking a `TrainingConfig` gives the learning-rate schedule's own parameter its default and
refuses another schedule's, and refuses Adam's parameters with another optimizer.

    >>> from keras_vae.config import TrainingConfig
    >>> TrainingConfig(learning_rate_schedule="exponential").learning_rate_decay
    0.95
"""

from __future__ import annotations

import dataclasses

from keras_vae.config.fields import config_field, document_fields
from keras_vae.limits import MAX_COUNT, check_at_least, check_choice

RECIPE_NAMES = ("burda2015", "vampprior2018")  # keras_vae.recipes.RECIPES holds their values
OPTIMIZERS = ("adam", "adagrad", "sgd", "rmsprop")
SCHEDULES = ("constant", "burda", "exponential", "cosine")
OUTPUT_BIAS_INITS = ("zeros", "data-mean")
# Keras' Adam defaults: the recipes change them, other optimizers must leave them.
ADAM_DEFAULTS = {"adam_beta_1": 0.9, "adam_beta_2": 0.999, "adam_epsilon": 1e-7}
DEFAULT_LEARNING_RATE_DECAY = 0.95  # exponential: the factor per epoch
DEFAULT_LEARNING_RATE_ALPHA = 0.0  # cosine: the last rate as a fraction of the first


@document_fields
@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The optimisation: epochs, batch, optimizer, schedule, warm-up, early stopping.

    >>> TrainingConfig(epochs=3280, batch_size=20, learning_rate_schedule="burda").epochs
    3280
    """

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
        "compiled loop); 'auto' is 50, up to 4000 (a whole MNIST epoch) when the training "
        "split is on the device (--device-data-limit-mb), or 1 with several mirrored "
        "replicas (keras-team/keras#19246)",
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
