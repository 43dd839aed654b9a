"""The global batch, seen from one replica: its size, this replica's offset, the loss share.

A custom `train_step` gets none of Keras' automatic loss scaling: under `tf.distribute` the
optimizer SUMS the gradients of all replicas, so each replica must divide its per-example
losses by the GLOBAL batch size. `batch_layout` gives the global batch size and this
replica's offset in it, `average_over_global_batch` the loss share, and `check_global_batch`
refuses batch sizes Keras cannot split. All of them work in any replica context: no strategy,
`OneDeviceStrategy`, `MirroredStrategy`, `MultiWorkerMirroredStrategy` and `TPUStrategy`
(static shapes, `ReplicaContext` collectives only).

>>> batch_layout(tf.zeros([8, 3])).global_size
8
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf


def check_global_batch(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """Require a global batch size that splits evenly over the replicas.

    `average_over_global_batch` is exact for any split, but Keras' `fit` reduces the first
    batch across replicas to build the model, which fails on unequal per-replica shapes.

    Example:
        >>> check_global_batch(tf.distribute.get_strategy(), 100)  # one replica: any size

    Raises:
        ValueError: naming the replica count and the nearest valid batch sizes.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        lower = max(replicas, batch_size - batch_size % replicas)
        raise ValueError(
            f"The global batch size must be a multiple of the {replicas} replicas, so every "
            f"replica gets the same number of examples. Received: batch_size={batch_size}; "
            f"use e.g. {lower} or {lower + replicas}."
        )


class BatchLayout(NamedTuple):
    """Where this replica's examples sit in the global batch (ints, or int32 tensors)."""

    global_size: int | tf.Tensor  # examples in the global batch, over all replicas
    offset: int | tf.Tensor  # index of this replica's first example in the global batch


def batch_layout(per_example: tf.Tensor) -> BatchLayout:
    """The global batch size and this replica's offset, for a tensor whose axis 0 is the batch.

    Static per-replica batch shapes (dropped-remainder batches divisible by the replica count,
    the training case) are the same on every replica, so the layout is arithmetic. Otherwise
    (uneven splits, the last evaluation batch, multi-worker pipelines whose shapes are not
    static) the local sizes are all-gathered: one small collective that does not depend on the
    forward pass, so it overlaps with it. Replicas hold consecutive slices of the global batch
    in replica order, as `experimental_distribute_dataset` splits it.

    Example:
        >>> batch_layout(tf.zeros([8, 3]))
        BatchLayout(global_size=8, offset=0)
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    static = per_example.shape[0]
    if replicas == 1:
        size = static if static is not None else tf.shape(per_example)[0]
        return BatchLayout(global_size=size, offset=0)
    replica_id = context.replica_id_in_sync_group
    if static is not None:
        return BatchLayout(global_size=static * replicas, offset=replica_id * static)
    sizes = context.all_gather(tf.shape(per_example)[:1], axis=0)
    before = tf.cast(tf.range(replicas) < replica_id, sizes.dtype)
    return BatchLayout(global_size=tf.reduce_sum(sizes), offset=tf.reduce_sum(sizes * before))


def average_over_global_batch(
    per_example: tf.Tensor,
    global_size: int | tf.Tensor | None = None,
    regularization_losses: Sequence[tf.Tensor] = (),
) -> tf.Tensor:
    """This replica's share of the mean loss: local sum / GLOBAL batch size (+ its share of
    the regularisation losses).

    Summed over replicas by the optimizer's all-reduce, these shares give exactly the gradient
    of the mean over the global batch, whatever the number of replicas and however unevenly the
    global batch is split. `tf.nn.compute_average_loss` alone assumes equal splits.

    Args:
        per_example: losses of this replica's examples, shape [local_batch].
        global_size: the global batch size. Default None: from `batch_layout(per_example)`.
        regularization_losses: `model.losses`, counted once over all replicas. Default ().

    Example:
        >>> float(average_over_global_batch(tf.constant([1.0, 3.0])))
        2.0
    """
    if global_size is None:
        global_size = batch_layout(per_example).global_size
    loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_size)
    if regularization_losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(list(regularization_losses)))
    return loss
