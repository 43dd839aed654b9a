"""Papers' recipes: every setting of a published run, as config values, and how flags override them.

`keras-vae train --recipe NAME` starts from `RECIPES[NAME]`; every other flag given on the
command line (or key given to `resolve`) wins over the recipe; config.json records the
resolved values and the recipe's name. Each recipe follows its authors' code where the code
and the paper's text differ, since the code produced the published numbers:

- "burda2015" (Burda, Grosse & Salakhutdinov 2015, yburda/iwae at 78a6075): 784-200-200-50
  tanh encoder and decoder, Bernoulli decoder whose output bias starts at the logit of the
  training images' mean pixel (datasets.py), batch 20, dynamic binarization, the first 59,600
  MNIST training images (the last 400 held out, never used by their code: here they are the
  validation split), Adam with beta_1 = 0.99 (optimizers.py; the paper says 0.9), beta_2 =
  0.999, epsilon 1e-4 on a loss SUMMED over the batch of 20, i.e. 5e-6 on keras-vae's loss,
  which averages over the batch (Adam's step is unchanged when the gradient and epsilon are
  scaled together), and the 8-stage schedule over 3,280 epochs with the code's rounded rates
  (`keras_vae.schedules`). Not followed: Adam's second moment starting at ones and its
  one-step lag (a slower first epoch only), every layer initialised from the same seed, the
  unshuffled batch order, the encoder's scale as exp(linear) (ours: softplus + 1e-4).
  Add `--objective iwae --num-samples K` for the IWAE rows.
- "vampprior2018" (Tomczak & Welling 2018, jmtomczak/vae_vampprior at bb6ff3e, model "vae",
  prior "vampprior", dataset "static_mnist"): latent 40, two hidden layers of 300 gated units
  (GatedDense: linear x sigmoid(linear)) in encoder and decoder, K = 500 pseudo-inputs,
  batch 100, Adam at 5e-4 (betas 0.9, 0.999, epsilon 1e-8), KL warm-up over 100 epochs,
  early stopping after 50 epochs without a better validation ELBO (not counted during the
  warm-up) restoring the best weights, at most 2,000 epochs, Larochelle's statically
  binarized MNIST (50,000 train, its own 10,000 validation images, 10,000 test). Not
  followed: the per-tensor gradient normalisation before Adam (AdamNormGrad), He-normal
  initialisation (ours: Glorot uniform), the pseudo-inputs initialised at N(0.05, 0.01) (ours:
  N(0.5, 0.05)), the encoder's log-variance clamped to [-6, 2], the decoder's probabilities
  clamped to [1e-5, 1 - 1e-5] (neither clamp binds on the trained reproduction: under 0.1 nat),
  the warm-up's KL weight stepped once per epoch (ours rises every step).

Example:

>>> config = resolve({"training": {"recipe": "burda2015", "epochs": 10}})
>>> config.model.hidden_units, config.training.epochs, config.training.learning_rate_schedule
((200, 200), 10, 'burda')
"""

from __future__ import annotations

import copy
from typing import Any

from keras_vae.config import RECIPE_NAMES, Config
from keras_vae.limits import check_choice

BURDA_BATCH_SIZE = 20
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "burda2015": {
        "model": {"latent_dim": 50, "hidden_units": (200, 200), "activation": "tanh"},
        "data": {"dataset": "mnist", "binarization": "dynamic", "validation_examples": 400},
        "training": {
            "epochs": 3280,
            "batch_size": BURDA_BATCH_SIZE,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "learning_rate_schedule": "burda",
            "adam_beta_1": 0.99,
            "adam_beta_2": 0.999,
            "adam_epsilon": 1e-4 / BURDA_BATCH_SIZE,
            "init_output_bias": "data-mean",
        },
    },
    "vampprior2018": {
        "model": {
            "latent_dim": 40,
            "hidden_units": (300, 300),
            "activation": "gated",
            "prior": "vamp",
            "prior_components": 500,
        },
        "data": {
            "dataset": "binarized_mnist",
            "binarization": "static",
            "validation_examples": "source",
        },
        "training": {
            "epochs": 2000,
            "batch_size": 100,
            "optimizer": "adam",
            "learning_rate": 5e-4,
            "adam_beta_1": 0.9,
            "adam_beta_2": 0.999,
            "adam_epsilon": 1e-8,
            "kl_warmup_epochs": 100,
            "early_stopping_patience": 50,
        },
    },
}
assert tuple(RECIPES) == RECIPE_NAMES  # config/training.py lists the names without importing this


def resolve(values: dict[str, dict[str, Any]]) -> Config:
    """The `Config` of `values` (config sections, as `Config.from_dict` takes) laid over the
    recipe `values["training"]["recipe"]` names (none: the defaults).

    Raises:
        ValueError: an unknown recipe, or any value `Config.from_dict` refuses.
    """
    recipe = values.get("training", {}).get("recipe", "none")
    check_choice("recipe", recipe, ("none", *RECIPE_NAMES))
    merged = copy.deepcopy(RECIPES.get(recipe, {}))
    for section, given in values.items():
        if not isinstance(given, dict):
            return Config.from_dict(values)  # refused there, with its message
        merged.setdefault(section, {}).update(given)
    return Config.from_dict(merged)
