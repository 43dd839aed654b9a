"""The learning rate over training, and the optimizer that follows it.

`TrainingConfig.learning_rate_schedule` names one of four schedules, each a function of the
optimizer's step counter (`optimizer.iterations`, restored with the rest of a run's backup, so a
resumed run continues the schedule exactly where it stopped):

- "constant": `learning_rate` throughout (a float, as before schedules existed);
- "burda": Burda et al. (2015)'s stages: stage i = 0..7 runs 3**i epochs at
  `learning_rate * BURDA_FACTORS[i]`, 3,280 epochs in all, then stays at the last rate. The
  factors are 10**(-i/7) rounded as yburda/iwae rounds them (experiments.py: the mantissa
  10**(1 - i/7) to one decimal): 1, 0.72, 0.52, 0.37, 0.27, 0.19, 0.14, 0.1;
- "exponential": `learning_rate * learning_rate_decay**epoch` (constant within an epoch);
- "cosine": from `learning_rate` down to `learning_rate_alpha * learning_rate` along half a
  cosine over all `epochs` (Keras' `CosineDecay`).

Step s (0-based, the s-th optimizer update) belongs to epoch s // steps_per_epoch.

Example:

>>> from keras_vae.config import TrainingConfig
>>> rate = learning_rate(TrainingConfig(learning_rate_schedule="burda"), steps_per_epoch=10)
>>> [round(float(rate(step)), 6) for step in (0, 9, 10, 39, 40)]
[0.001, 0.001, 0.00072, 0.00072, 0.00052]
"""

from __future__ import annotations

import keras

from keras_vae.config import TrainingConfig

BURDA_STAGES = 8
# yburda/iwae experiments.py: lr = 1e-4 * round(10 ** (1 - i / 7), 1) for i = 0..7.
BURDA_FACTORS = tuple(round(10 ** (1 - i / 7), 1) / 10 for i in range(BURDA_STAGES))
BURDA_EPOCHS = sum(3**i for i in range(BURDA_STAGES))  # 3,280


def burda_stage_starts() -> list[int]:
    """The first epoch of stages 1..7: 1, 4, 13, 40, 121, 364, 1093 (stage 0 starts at 0)."""
    return [(3**i - 1) // 2 for i in range(1, BURDA_STAGES)]


def learning_rate(
    training: TrainingConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`training`'s learning rate: a float for "constant", else a Keras schedule of the step.

    Args:
        training: the training section of a run config.
        steps_per_epoch: optimizer steps per epoch (>= 1).
    """
    rate, schedule = training.learning_rate, training.learning_rate_schedule
    schedules = keras.optimizers.schedules
    if schedule == "constant":
        return rate
    if schedule == "burda":
        # PiecewiseConstantDecay gives values[i + 1] once step > boundaries[i]: a stage that
        # starts at epoch e starts at step e * steps_per_epoch.
        boundaries = [start * steps_per_epoch - 1 for start in burda_stage_starts()]
        return schedules.PiecewiseConstantDecay(
            boundaries, [rate * factor for factor in BURDA_FACTORS]
        )
    if schedule == "exponential":
        return schedules.ExponentialDecay(
            rate, steps_per_epoch, training.learning_rate_decay, staircase=True
        )
    return schedules.CosineDecay(
        rate, training.epochs * steps_per_epoch, alpha=training.learning_rate_alpha
    )


def make_optimizer(training: TrainingConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer `training` names, following its learning-rate schedule.

    Example:

    >>> optimizer = make_optimizer(TrainingConfig(adam_epsilon=1e-4), steps_per_epoch=10)
    >>> type(optimizer).__name__, optimizer.epsilon
    ('Adam', 0.0001)
    """
    rate = learning_rate(training, steps_per_epoch)
    if training.optimizer == "adam":
        return keras.optimizers.Adam(
            learning_rate=rate,
            beta_1=training.adam_beta_1,
            beta_2=training.adam_beta_2,
            epsilon=training.adam_epsilon,
        )
    optimizers = {
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[training.optimizer](learning_rate=rate)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate of the optimizer's LAST update (its first before any): what the epoch just
    trained with, where `optimizer.learning_rate` is already the next step's.

    Example:

    >>> current_learning_rate(keras.optimizers.SGD(0.25))
    0.25
    """
    schedule = optimizer._learning_rate  # Keras keeps the schedule object nowhere public
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    step = max(int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1, 0)
    return float(keras.ops.convert_to_numpy(schedule(step)))
