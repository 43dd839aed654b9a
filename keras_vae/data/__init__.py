"""Datasets: load a source into memory (`load_splits`), then build tf.data pipelines
(`make_datasets`).

One module per job; this file only re-exports:

- `keras_vae.data.sources`: what loads raw arrays (digits, TFDS, an IDX folder, an npz, Frey
  faces) into checked `Split`s;
- `keras_vae.data.idx`: the IDX file format;
- `keras_vae.data.checks`: the one set of value and shape checks (and their messages), used
  by loading, hence training, and by every command that reads a run directory;
- `keras_vae.data.pipelines`: binarization and the tf.data pipelines;
- `keras_vae.data.epochs`: each epoch's order and batches, drawn from (seed, epoch) alone.

Example:

>>> splits = load_splits("digits")
>>> splits["train"].images.shape, splits["test"].images.shape
((1437, 8, 8), (360, 8, 8))
"""

from __future__ import annotations

from keras_vae.data.checks import DataError, check_class_labels
from keras_vae.data.epochs import epoch_batches, epoch_indices, epoch_order, training_epochs
from keras_vae.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from keras_vae.data.pipelines import (
    DatasetInfo,
    Pipelines,
    binarize,
    held_out_pipeline,
    make_datasets,
    make_pipelines,
    prepared_splits,
    training_pipeline,
)
from keras_vae.data.sources import (
    IDX_FILES,
    SOURCES_HINT,
    Split,
    load_splits,
    pick_test_split,
    to_unit_interval,
)

__all__ = [
    "check_class_labels",
    "IDX_FILES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "SOURCES_HINT",
    "DataError",
    "DatasetInfo",
    "Pipelines",
    "Split",
    "binarize",
    "epoch_batches",
    "epoch_indices",
    "epoch_order",
    "held_out_pipeline",
    "load_splits",
    "make_datasets",
    "make_pipelines",
    "pick_test_split",
    "prepared_splits",
    "read_idx",
    "to_unit_interval",
    "training_epochs",
    "training_pipeline",
]
