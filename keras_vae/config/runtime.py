"""The runtime section of the config: `RuntimeConfig`, where and how the job runs.

>>> from keras_vae.config import RuntimeConfig
>>> RuntimeConfig(strategy="mirrored").strategy
'mirrored'
"""

from __future__ import annotations

import dataclasses

from keras_vae.config.fields import config_field, document_fields
from keras_vae.limits import MAX_SEED, check_at_least, check_choice

DEVICE_DATA_AUTO_MB = 1024  # the most `device_data_limit_mb="auto"` places on the device
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
MIXED_PRECISION = ("none", "float16", "bfloat16")


@document_fields
@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the job runs: seed, distribution strategy, precision.

    >>> RuntimeConfig(seed=7, strategy="mirrored").strategy
    'mirrored'
    """

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
        "mirrored with 2+ GPUs, else TensorFlow's default strategy (one device, as Keras "
        "runs with none); the batch size is global",
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
