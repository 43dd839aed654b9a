"""One validated configuration object for a run: model, data, training, runtime.

The resolved config is written to ``RUN_DIR/config.json`` and is enough to rerun the job.
Every field is checked on construction (a `ValueError` naming the field and its allowed values):
numbers must be finite (no NaN or infinity, which `json` would write as the non-JSON NaN and
Infinity and which compare unequal to themselves), and the seed lies in [0, `MAX_SEED`].

One module per section (`model`, `data`, `training`, `runtime`), `run_config` for the whole
`Config` and its JSON round trip, and `fields` for how a field is declared; this file only
re-exports their names (no TensorFlow anywhere here).

    >>> from keras_vae.config import Config
    >>> config = Config.from_dict({"model": {"latent_dim": 2}})
    >>> Config.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

from keras_vae.config.data import BINARIZATIONS, SOURCE_VALIDATION, DataConfig
from keras_vae.config.fields import config_field
from keras_vae.config.model import (
    ARCHITECTURES,
    DEFAULT_FLOW_HIDDEN_UNITS,
    DEFAULT_FLOW_STEPS,
    DEFAULT_HIDDEN_UNITS,
    DEFAULT_PRIOR_COMPONENTS,
    ESTIMATORS,
    GRADIENT_ESTIMATORS,
    LIKELIHOODS,
    OBJECTIVES,
    POSTERIORS,
    PRIORS,
    ModelConfig,
)
from keras_vae.config.run_config import SECTIONS, Config
from keras_vae.config.runtime import (
    DEVICE_DATA_AUTO_MB,
    MIXED_PRECISION,
    STRATEGIES,
    RuntimeConfig,
)
from keras_vae.config.training import (
    ADAM_DEFAULTS,
    DEFAULT_LEARNING_RATE_ALPHA,
    DEFAULT_LEARNING_RATE_DECAY,
    OPTIMIZERS,
    OUTPUT_BIAS_INITS,
    RECIPE_NAMES,
    SCHEDULES,
    TrainingConfig,
)

__all__ = [
    "ADAM_DEFAULTS",
    "ARCHITECTURES",
    "BINARIZATIONS",
    "DEFAULT_FLOW_HIDDEN_UNITS",
    "DEFAULT_FLOW_STEPS",
    "DEFAULT_HIDDEN_UNITS",
    "DEFAULT_LEARNING_RATE_ALPHA",
    "DEFAULT_LEARNING_RATE_DECAY",
    "DEFAULT_PRIOR_COMPONENTS",
    "DEVICE_DATA_AUTO_MB",
    "ESTIMATORS",
    "GRADIENT_ESTIMATORS",
    "LIKELIHOODS",
    "MIXED_PRECISION",
    "OBJECTIVES",
    "OPTIMIZERS",
    "OUTPUT_BIAS_INITS",
    "POSTERIORS",
    "PRIORS",
    "RECIPE_NAMES",
    "SCHEDULES",
    "SECTIONS",
    "SOURCE_VALIDATION",
    "STRATEGIES",
    "Config",
    "DataConfig",
    "ModelConfig",
    "RuntimeConfig",
    "TrainingConfig",
    "config_field",
]
