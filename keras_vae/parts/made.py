"""MADE: a feed-forward network whose output d depends only on the inputs before d.

Germain et al. (2015, arXiv:1502.03509): every unit gets a degree; a weight from unit a to
unit b is kept only where the degrees allow it (hidden: degree(b) >= degree(a); output:
degree(b) > degree(a)), so output d sees inputs of degree < d. The masks are NumPy constants
recomputed from the configuration, never saved; a context vector (the encoder's features)
enters every first-layer unit unmasked.

TFP's `tfb.AutoregressiveNetwork` is a tf-keras layer (its weights would escape a Keras 3
model), hence this one.

    >>> import numpy as np
    >>> made = MADE(event_size=3, hidden_units=(8,))
    >>> shift, log_scale = made(np.zeros((2, 3), "float32"))
    >>> shift.shape, log_scale.shape
    (TensorShape([2, 3]), TensorShape([2, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def degrees(
    event_size: int, hidden_units: Sequence[int], reverse: bool = False
) -> list[np.ndarray]:
    """Degrees of the inputs (1..D, or D..1 with `reverse`) and of each hidden layer.

    Hidden degrees cycle through 1..D-1 (all 1 when D = 1: nothing then reaches the outputs
    from z, as nothing may).

    Example:
        >>> [d.tolist() for d in degrees(3, (4,))]
        [[1, 2, 3], [1, 2, 1, 2]]
    """
    inputs = np.arange(1, event_size + 1)
    if reverse:
        inputs = inputs[::-1].copy()
    top = max(1, event_size - 1)
    hidden = [np.arange(width) % top + 1 for width in hidden_units]
    return [inputs, *hidden]


def masks(event_size: int, hidden_units: Sequence[int], reverse: bool = False) -> list[np.ndarray]:
    """float32 masks [fan_in, fan_out] of each hidden layer, then of the output layer.

    Example:
        >>> [m.tolist() for m in masks(2, (2,))]
        [[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]
    """
    units = degrees(event_size, hidden_units, reverse)
    result = [
        (after[np.newaxis, :] >= before[:, np.newaxis]).astype(np.float32)
        for before, after in zip(units[:-1], units[1:])
    ]
    result.append((units[0][np.newaxis, :] > units[-1][:, np.newaxis]).astype(np.float32))
    return result


@keras.saving.register_keras_serializable(package="keras_vae")
class MADE(keras.layers.Layer):
    """z [batch, D] (and a context [batch, C]) -> (shift, log_scale), each [batch, D],
    autoregressive in z: output d depends on z's entries of lower degree only.

    The output kernels and biases start at zero, so a fresh MADE outputs (0, 0).

    Args:
        event_size: D, the size of z.
        hidden_units: widths of the hidden layers (at least one).
        reverse: give z the degrees D..1 instead of 1..D (alternate it between flow steps).
        activation: hidden activation. Default "elu".
    """

    def __init__(
        self,
        event_size: int,
        hidden_units: Sequence[int] = (128, 128),
        reverse: bool = False,
        activation: str = "elu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.event_size = int(event_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        if not self.hidden_units:
            raise ValueError("MADE needs at least one hidden layer. Received: hidden_units=()")
        self.reverse = bool(reverse)
        self.activation = keras.activations.get(activation)
        self.activation_name = activation
        self._masks = [
            tf.constant(m) for m in masks(self.event_size, self.hidden_units, self.reverse)
        ]

    def build(
        self, z_shape: tuple[int | None, ...], context_shape: tuple[int | None, int] | None = None
    ) -> None:
        fan_in = self.event_size
        self.hidden_kernels, self.hidden_biases = [], []
        for i, width in enumerate(self.hidden_units):
            self.hidden_kernels.append(
                self.add_weight(
                    shape=(fan_in, width), initializer="glorot_uniform", name=f"kernel_{i}"
                )
            )
            self.hidden_biases.append(
                self.add_weight(shape=(width,), initializer="zeros", name=f"bias_{i}")
            )
            fan_in = width
        self.context_kernel = None
        if context_shape is not None:
            self.context_kernel = self.add_weight(
                shape=(int(context_shape[-1]), self.hidden_units[0]),
                initializer="glorot_uniform",
                name="context_kernel",
            )
        self.shift_kernel = self.add_weight(
            shape=(fan_in, self.event_size), initializer="zeros", name="shift_kernel"
        )
        self.shift_bias = self.add_weight(
            shape=(self.event_size,), initializer="zeros", name="shift_bias"
        )
        self.log_scale_kernel = self.add_weight(
            shape=(fan_in, self.event_size), initializer="zeros", name="log_scale_kernel"
        )
        self.log_scale_bias = self.add_weight(
            shape=(self.event_size,), initializer="zeros", name="log_scale_bias"
        )

    def call(self, z: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        h = z
        for i, (kernel, bias) in enumerate(zip(self.hidden_kernels, self.hidden_biases)):
            pre = tf.matmul(h, kernel * tf.cast(self._masks[i], kernel.dtype)) + bias
            if i == 0 and context is not None and self.context_kernel is not None:
                pre += tf.matmul(context, self.context_kernel)
            h = self.activation(pre)
        out_mask = tf.cast(self._masks[-1], h.dtype)  # the compute dtype, as the kernels
        shift = tf.matmul(h, self.shift_kernel * out_mask) + self.shift_bias
        log_scale = tf.matmul(h, self.log_scale_kernel * out_mask) + self.log_scale_bias
        return shift, log_scale

    def compute_output_spec(
        self, z: keras.KerasTensor, context: keras.KerasTensor | None = None
    ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        spec = keras.KerasTensor(z.shape, dtype=self.compute_dtype)
        return spec, spec

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "event_size": self.event_size,
            "hidden_units": list(self.hidden_units),
            "reverse": self.reverse,
            "activation": self.activation_name,
        }
