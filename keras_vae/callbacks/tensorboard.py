"""TensorBoard: the epoch scalars and `ImageSummaries`, and `training_callbacks`, what `train` adds.

`train --tensorboard` adds `tensorboard_callbacks(RUN_DIR / "logs", examples)`:

- `keras.callbacks.TensorBoard` writes the epoch scalars to ``logs/train`` and
  ``logs/validation`` as ``epoch_elbo``, ``epoch_kl``, ``epoch_reconstruction``,
  ``epoch_loss`` and ``epoch_learning_rate``;
- `ImageSummaries` writes the images ``reconstructions`` (fixed test examples above their
  reconstructions) and ``samples`` (decoded fixed prior draws) to ``logs/images`` every epoch,
  so the same inputs and the same z can be compared across epochs.

Example:

>>> callbacks = tensorboard_callbacks("runs/x/logs", test_examples)        # doctest: +SKIP
>>> model.fit(train_data, epochs=10, callbacks=callbacks)                  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae import visualize
from keras_vae.callbacks.learning_rate import LearningRateLogger
from keras_vae.run_paths import LOGS_DIR

IMAGES_DIR = "images"  # under RUN_DIR/logs


def _summary_image(pixels: np.ndarray) -> np.ndarray:
    """uint8 (h, w) or (h, w, 3) -> the [1, h, w, c] batch `tf.summary.image` expects."""
    return pixels[None, ..., None] if pixels.ndim == 2 else pixels[None]


class ImageSummaries(keras.callbacks.Callback):
    """Log reconstructions and prior samples as TensorBoard images at the end of every epoch.

    Args:
        log_dir: the folder for the event files (``RUN_DIR/logs/images``).
        examples: fixed inputs [N, *data_shape] to reconstruct (the first test examples).
        num_samples: prior samples to draw (always the same z: `seed`). Default 64.
        seed: seed of the prior draws. Default 0.

    Example:
        >>> import tempfile
        >>> from keras_vae.model import VAE
        >>> log_dir = Path(tempfile.mkdtemp())
        >>> images = ImageSummaries(log_dir, np.full((3, 4, 4), 0.5), num_samples=4)
        >>> images.set_model(VAE(data_shape=(4, 4), latent_dim=1, hidden_units=(3,)))
        >>> images.on_train_begin()
        >>> images.on_epoch_end(0)  # step 0, the first epoch
        >>> images.on_train_end()
        >>> [events] = log_dir.glob("events.out.tfevents.*")
        >>> for record in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
        ...     event = tf.compat.v1.Event.FromString(record)
        ...     for value in event.summary.value:  # an image: [width, height, png]
        ...         width, height = tf.make_ndarray(value.tensor)[:2].astype(int)
        ...         print(value.tag, event.step, f"{width}x{height}")
        reconstructions 0 92x62
        samples 0 62x62
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        examples: np.ndarray,
        num_samples: int = visualize.NUM_SAMPLES,
        seed: int = visualize.SAMPLE_SEED,
    ) -> None:
        super().__init__()
        self.log_dir = str(log_dir)
        self.examples = np.asarray(examples, dtype=np.float32)
        self.num_samples = num_samples
        self.seed = seed
        self._writer: tf.summary.SummaryWriter | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        reconstructions = visualize.reconstruction_pixels(self.model, self.examples)
        sample_pixels = visualize.sample_pixels(self.model, self.num_samples, self.seed)
        writer = cast("tf.summary.SummaryWriter", self._writer)  # made by on_train_begin
        with writer.as_default():
            tf.summary.image("reconstructions", _summary_image(reconstructions), step=epoch)
            tf.summary.image("samples", _summary_image(sample_pixels), step=epoch)
        writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def tensorboard_callbacks(
    log_dir: str | os.PathLike, examples: np.ndarray
) -> list[keras.callbacks.Callback]:
    """Scalars (Keras' `TensorBoard`) and images (`ImageSummaries`) under `log_dir`.

    Example:
        >>> scalars, images = tensorboard_callbacks("runs/x/logs", np.zeros((10, 8, 8)))
        >>> type(scalars).__name__, Path(scalars.log_dir).as_posix()
        ('TensorBoard', 'runs/x/logs')
        >>> type(images).__name__, Path(images.log_dir).as_posix(), images.examples.shape
        ('ImageSummaries', 'runs/x/logs/images', (10, 8, 8))
    """
    log_dir = Path(log_dir)
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0),
        ImageSummaries(log_dir / IMAGES_DIR, examples),
    ]


def training_callbacks(
    run_dir: str | os.PathLike, test_data: tf.data.Dataset, tensorboard: bool = False
) -> list[keras.callbacks.Callback]:
    """What `train` adds to `fit`: `LearningRateLogger`, and with `tensorboard` the callbacks
    logging scalars and images (of the first test examples) to ``run_dir/logs``.

    Example:
        >>> test_data = tf.data.Dataset.from_tensor_slices(tf.zeros([12, 8, 8])).batch(5)
        >>> [type(c).__name__ for c in training_callbacks("runs/x", test_data)]
        ['LearningRateLogger']
        >>> callbacks = training_callbacks("runs/x", test_data, tensorboard=True)
        >>> [type(c).__name__ for c in callbacks]
        ['LearningRateLogger', 'TensorBoard', 'ImageSummaries']
        >>> Path(callbacks[-1].log_dir).as_posix(), callbacks[-1].examples.shape  # 10 of 12
        ('runs/x/logs/images', (10, 8, 8))
    """
    callbacks: list[keras.callbacks.Callback] = [LearningRateLogger()]
    if tensorboard:
        examples, _ = visualize.collect_examples(test_data, visualize.NUM_RECONSTRUCTIONS)
        callbacks += tensorboard_callbacks(Path(run_dir) / LOGS_DIR, examples)
    return callbacks
