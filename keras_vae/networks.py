"""Encoder and decoder builders: the paper's MLP and a convolutional pair for images.

The encoder maps x to (z_mean, z_stddev); the decoder maps z to the likelihood's location
(Bernoulli logits or the Gaussian mean, shaped like the data) and, for a learned Gaussian
scale, a second output with the per-dimension standard deviation. Output layers run in
float32 so distributions stay in float32 under mixed precision.

    >>> encoder = build_encoder((28, 28), latent_dim=2, architecture="mlp", hidden_units=(64,))
    >>> [t.shape for t in encoder.outputs]
    [(None, 2), (None, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from keras_vae.compat import in_xla_context
from keras_vae.execution import has_accelerator

MIN_POSTERIOR_STDDEV = 1e-4
MIN_LIKELIHOOD_STDDEV = 1e-3
# The mlp decoder's output layer (Bernoulli logits, or the Gaussian mean before its sigmoid).
OUTPUT_BIAS_LAYER = "location_flat"
# yburda/iwae datasets.py: the data mean is clipped to [0.001, 0.999] before its logit.
OUTPUT_BIAS_CLIP = 1e-3


@keras.saving.register_keras_serializable(package="keras_vae")
class PositiveScale(keras.layers.Layer):
    """softplus(x) + min_value: a standard deviation that is positive and never underflows.

    Args:
        min_value: the smallest value the output can take (default 1e-4).

    Example:
        >>> float(PositiveScale(min_value=0.5)(keras.ops.array([-100.0]))[0])
        0.5
    """

    def __init__(self, min_value: float = MIN_POSTERIOR_STDDEV, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value = min_value

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return keras.ops.softplus(inputs) + self.min_value

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min_value": self.min_value}


@keras.saving.register_keras_serializable(package="keras_vae")
class OneFilterConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, whose one-filter case runs, on a CPU without XLA, as a depthwise
    convolution summed over the input channels: the same weights and numbers (to float
    rounding), half the time of TensorFlow's one-output-channel kernel (oneDNN vectorises a
    convolution over its output channels, a depthwise one over its input channels).

    The conv decoder's output layer (32 channels in, one out) took 23% of a training step
    as a Conv2D (`benchmarks/conv_layers.py`). With more filters, a stride or a dilation,
    under XLA (whose CPU depthwise convolution is 20x slower) or on a GPU or TPU, it is
    Conv2D's own op.

    Example:
        >>> layer = OneFilterConv2D(1, 3, padding="same")
        >>> tuple(layer(keras.ops.ones((2, 5, 5, 4))).shape)
        (2, 5, 5, 1)
    """

    def convolution_op(self, inputs: tf.Tensor, kernel: keras.Variable) -> tf.Tensor:
        if not self._depthwise_is_faster():
            return super().convolution_op(inputs, kernel)
        per_channel = keras.ops.depthwise_conv(
            inputs, kernel, strides=1, padding=self.padding, data_format=self.data_format
        )
        return keras.ops.sum(per_channel, axis=-1, keepdims=True)

    def _depthwise_is_faster(self) -> bool:
        plain = (
            self.filters == 1
            and self.groups == 1
            and self.data_format == "channels_last"
            and set(self.strides) == {1}
            and set(self.dilation_rate) == {1}
        )
        return plain and not in_xla_context() and not has_accelerator()


@keras.saving.register_keras_serializable(package="keras_vae")
class LabelOneHot(keras.layers.Layer):
    """Integer class labels [batch] -> one-hot rows [batch, num_classes] (a conditional VAE's
    input; labels outside [0, num_classes) give a zero row, so callers check them first).

    Example:
        >>> LabelOneHot(3)(keras.ops.array([2, 0])).numpy().tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def call(self, labels: tf.Tensor) -> tf.Tensor:
        labels = keras.ops.cast(keras.ops.reshape(labels, (-1,)), "int32")
        return keras.ops.one_hot(labels, self.num_classes, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_vae")
class LabelPlanes(keras.layers.Layer):
    """One-hot rows [batch, K] -> K constant feature planes [batch, height, width, K], to sit
    beside an image's channels (how a conv encoder sees the class).

    Example:
        >>> tuple(LabelPlanes(2, 3)(keras.ops.ones((1, 4))).shape)
        (1, 2, 3, 4)
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, one_hot: tf.Tensor) -> tf.Tensor:
        planes = keras.ops.expand_dims(keras.ops.expand_dims(one_hot, 1), 1)
        return keras.ops.tile(planes, (1, self.height, self.width, 1))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}


@keras.saving.register_keras_serializable(package="keras_vae")
class GatedDense(keras.layers.Layer):
    """A gated dense layer (Dauphin et al. 2017; the VampPrior code's GatedDense):
    (x W + b) * sigmoid(x V + c), `units` wide: `activation="gated"` of the mlp networks.

    Args:
        units: the output width.

    Example:
        >>> layer = GatedDense(3)
        >>> tuple(layer(keras.ops.ones((2, 4))).shape), len(layer.weights)
        ((2, 3), 4)
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.linear = keras.layers.Dense(self.units, dtype=self.dtype_policy, name="linear")
        self.gate = keras.layers.Dense(
            self.units, activation="sigmoid", dtype=self.dtype_policy, name="gate"
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.linear.build(input_shape)
        self.gate.build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.linear(inputs) * self.gate(inputs)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


GATED = "gated"  # the `activation` that makes every mlp hidden layer a `GatedDense`


def hidden_dense(units: int, activation: str, name: str, **kwargs: Any) -> keras.layers.Layer:
    """An mlp hidden layer: `Dense(units, activation)`, or `GatedDense` for "gated"
    (`kwargs`, e.g. dtype, go to the layer)."""
    if activation == GATED:
        return GatedDense(units, name=name, **kwargs)
    return keras.layers.Dense(units, activation=activation, name=name, **kwargs)


def label_input(num_classes: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The label input (int32 [batch]) and its one-hot rows, for a conditional network."""
    labels = keras.Input(shape=(), dtype="int32", name="label")
    return labels, LabelOneHot(num_classes, name="label_one_hot")(labels)


def _conv_shape(data_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(data_shape) == 2:
        return (data_shape[0], data_shape[1], 1)
    if len(data_shape) == 3:
        return cast("tuple[int, int, int]", tuple(data_shape))  # three, as just checked
    raise ValueError(
        "The conv architecture needs images shaped HxW or HxWxC. "
        f"Received: data_shape={tuple(data_shape)}; use architecture='mlp' for vectors."
    )


def build_encoder(
    data_shape: Sequence[int],
    latent_dim: int,
    architecture: str = "mlp",
    hidden_units: Sequence[int] = (400,),
    activation: str = "relu",
    context_units: int = 0,
    num_classes: int = 0,
) -> keras.Model:
    """x -> (z_mean, z_stddev), each [batch, latent_dim] in float32, and, with
    `context_units`, a third output: features h [batch, context_units] (an IAF's context).

    With `num_classes` K > 0 the encoder is conditional, q(z|x, y): its inputs are [x, label]
    (label int32 [batch]); the one-hot label joins the flattened image (mlp) or enters as K
    constant planes beside the image's channels (conv)."""
    inputs = keras.Input(shape=tuple(data_shape), name="x")
    model_inputs = [inputs]
    one_hot = None
    if num_classes:
        labels, one_hot = label_input(num_classes)
        model_inputs.append(labels)
    if architecture == "mlp":
        h = keras.layers.Flatten(name="flatten")(inputs)
        if one_hot is not None:
            h = keras.layers.Concatenate(name="with_label")([h, one_hot])
        for i, units in enumerate(hidden_units):
            h = hidden_dense(units, activation, f"hidden_{i}")(h)
    elif architecture == "conv":
        image_shape = _conv_shape(data_shape)
        h = keras.layers.Reshape(image_shape, name="to_image")(inputs)
        if one_hot is not None:
            planes = LabelPlanes(image_shape[0], image_shape[1], name="label_planes")(one_hot)
            h = keras.layers.Concatenate(name="with_label")([h, planes])
        for i, filters in enumerate(hidden_units):
            h = keras.layers.Conv2D(
                filters, 3, strides=2, padding="same", activation=activation, name=f"conv_{i}"
            )(h)
        h = keras.layers.Flatten(name="flatten")(h)
    else:
        raise ValueError(
            f"Unknown architecture {architecture!r}. Expected one of ['mlp', 'conv']. "
            f"Received: architecture={architecture!r}"
        )
    z_mean = keras.layers.Dense(latent_dim, dtype="float32", name="z_mean")(h)
    raw_scale = keras.layers.Dense(latent_dim, dtype="float32", name="z_raw_stddev")(h)
    z_stddev = PositiveScale(MIN_POSTERIOR_STDDEV, dtype="float32", name="z_stddev")(raw_scale)
    outputs = [z_mean, z_stddev]
    if context_units:
        outputs.append(hidden_dense(context_units, activation, "context", dtype="float32")(h))
    return keras.Model(model_inputs if num_classes else inputs, outputs, name="encoder")


def build_decoder(
    data_shape: Sequence[int],
    latent_dim: int,
    architecture: str = "mlp",
    hidden_units: Sequence[int] = (400,),
    activation: str = "relu",
    likelihood: str = "bernoulli",
    learned_scale: bool = False,
    num_classes: int = 0,
) -> keras.Model:
    """z -> location (logits or mean, shaped like the data)[, stddev if `learned_scale`].

    With `num_classes` K > 0 the decoder is conditional, p(x|z, y): inputs [z, label], the
    one-hot label concatenated to z."""
    data_shape = tuple(data_shape)
    inputs = keras.Input(shape=(latent_dim,), name="z")
    model_inputs = [inputs]
    code = inputs
    if num_classes:
        labels, one_hot = label_input(num_classes)
        model_inputs.append(labels)
        code = keras.layers.Concatenate(name="with_label")([inputs, one_hot])
    heads = ["location", "stddev"] if learned_scale else ["location"]
    if architecture == "mlp":
        h = code
        for i, units in enumerate(reversed(tuple(hidden_units))):
            h = hidden_dense(units, activation, f"hidden_{i}")(h)
        raw = [
            keras.layers.Dense(math.prod(data_shape), dtype="float32", name=f"{head}_flat")(h)
            for head in heads
        ]
        raw = [
            keras.layers.Reshape(data_shape, dtype="float32", name=f"{head}_raw")(r)
            for head, r in zip(heads, raw)
        ]
    elif architecture == "conv":
        height, width, channels = _conv_shape(data_shape)
        blocks = len(hidden_units)
        small_h, small_w = height, width
        for _ in range(blocks):
            small_h, small_w = math.ceil(small_h / 2), math.ceil(small_w / 2)
        h = keras.layers.Dense(
            small_h * small_w * hidden_units[-1], activation=activation, name="project"
        )(code)
        h = keras.layers.Reshape((small_h, small_w, hidden_units[-1]), name="to_grid")(h)
        for i, filters in enumerate(reversed(tuple(hidden_units))):
            h = keras.layers.Conv2DTranspose(
                filters, 3, strides=2, padding="same", activation=activation, name=f"deconv_{i}"
            )(h)
        crop = ((0, small_h * 2**blocks - height), (0, small_w * 2**blocks - width))
        raw = []
        for head in heads:
            r = OneFilterConv2D(channels, 3, padding="same", dtype="float32", name=f"{head}_conv")(
                h
            )
            r = keras.layers.Cropping2D(crop, dtype="float32", name=f"{head}_crop")(r)
            raw.append(keras.layers.Reshape(data_shape, dtype="float32", name=f"{head}_raw")(r))
    else:
        raise ValueError(
            f"Unknown architecture {architecture!r}. Expected one of ['mlp', 'conv']. "
            f"Received: architecture={architecture!r}"
        )
    if likelihood == "gaussian":
        # The paper's Gaussian MLP: a mean squashed into (0, 1), where the data live.
        location = keras.layers.Activation("sigmoid", dtype="float32", name="location")(raw[0])
    else:
        location = keras.layers.Identity(dtype="float32", name="location")(raw[0])
    outputs = [location]
    if learned_scale:
        outputs.append(PositiveScale(MIN_LIKELIHOOD_STDDEV, dtype="float32", name="stddev")(raw[1]))
    return keras.Model(
        model_inputs if num_classes else inputs,
        outputs if learned_scale else location,
        name="decoder",
    )


def initial_output_bias(images: np.ndarray) -> np.ndarray:
    """logit(clip(mean pixel, 0.001, 0.999)) over `images` (uint8 0..255 or floats in [0, 1]),
    one value per data dimension: the decoder's output bias yburda/iwae starts from.

    Example:

    >>> bias = initial_output_bias(np.array([[0, 255], [0, 255], [255, 255]], np.uint8))
    >>> np.round(bias.astype(float), 3).tolist()  # means 1/3 (logit -0.693) and 1 (clipped)
    [-0.693, 6.907]
    """
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    total = np.zeros(images.shape[1:], np.float64)
    for start in range(0, len(images), 8192):  # bounded float temporaries
        total += images[start : start + 8192].sum(axis=0, dtype=np.float64)
    mean = np.clip(total / (scale * len(images)), OUTPUT_BIAS_CLIP, 1 - OUTPUT_BIAS_CLIP)
    return np.log(mean / (1 - mean)).astype(np.float32)
