"""Distribution strategies by name: the one place that maps a name to a `tf.distribute` strategy.

>>> get_strategy("one_device").num_replicas_in_sync
1
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from keras_vae.config import STRATEGIES, check_choice


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Return the strategy called `name`.

    Args:
        name: "auto" (mirrored over all GPUs when more than one is visible, multi-worker when
            TF_CONFIG names several workers, else one device), "one_device" (the first GPU, or
            the CPU), "mirrored" (all visible GPUs; the CPU when there is none) or
            "multi_worker" (`MultiWorkerMirroredStrategy` configured from TF_CONFIG).
    """
    check_choice("strategy", name, STRATEGIES)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if _tf_config_workers() > 1:
            name = "multi_worker"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tf_config_workers() -> int:
    """How many workers TF_CONFIG describes (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}). Received: {raw!r}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))
