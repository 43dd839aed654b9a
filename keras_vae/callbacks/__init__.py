"""The Keras callbacks of training, one module each.

- `BestEpoch` (`best_epoch`): early stopping on the validation bound that survives a killed
  and resumed run, keeping the best epoch's weights;
- `BlockValidation` (`validation`): the validation split evaluated in memory, in blocks;
- `TrainingProgress` (`progress`): the progress bar, counting optimizer steps;
- `LearningRateLogger` (`learning_rate`): the learning rate in each epoch's logs;
- `StopOnCtrlC` (`interrupt`): a Ctrl-C that something swallowed still stops training;
- `StopWhenDiverged` (`diverged`): a NaN or infinite loss stops training with an error;
- `ImageSummaries`, `tensorboard_callbacks` and `training_callbacks` (`tensorboard`): what
  ``--tensorboard`` logs, and the callbacks `train` adds to `fit`.

>>> from keras_vae.callbacks import BestEpoch
>>> BestEpoch(patience=2).monitor
'val_elbo'
"""

from __future__ import annotations

from keras_vae.callbacks.best_epoch import BestEpoch
from keras_vae.callbacks.diverged import DivergedError, StopWhenDiverged
from keras_vae.callbacks.interrupt import StopOnCtrlC
from keras_vae.callbacks.learning_rate import LearningRateLogger
from keras_vae.callbacks.progress import TrainingProgress
from keras_vae.callbacks.tensorboard import (
    IMAGES_DIR,
    ImageSummaries,
    tensorboard_callbacks,
    training_callbacks,
)
from keras_vae.callbacks.validation import BlockValidation

__all__ = [
    "IMAGES_DIR",
    "BestEpoch",
    "BlockValidation",
    "DivergedError",
    "ImageSummaries",
    "LearningRateLogger",
    "StopOnCtrlC",
    "StopWhenDiverged",
    "TrainingProgress",
    "tensorboard_callbacks",
    "training_callbacks",
]
