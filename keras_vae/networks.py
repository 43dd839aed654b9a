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

import keras

MIN_POSTERIOR_STDDEV = 1e-4
MIN_LIKELIHOOD_STDDEV = 1e-3


@keras.saving.register_keras_serializable(package="keras_vae")
class PositiveScale(keras.layers.Layer):
    """softplus(x) + min_value: a standard deviation that is positive and never underflows.

    Args:
        min_value: the smallest value the output can take (default 1e-4).

    Example:
        >>> float(PositiveScale(min_value=0.5)(keras.ops.array([-100.0]))[0])
        0.5
    """

    def __init__(self, min_value: float = MIN_POSTERIOR_STDDEV, **kwargs):
        super().__init__(**kwargs)
        self.min_value = min_value

    def call(self, inputs):
        return keras.ops.softplus(inputs) + self.min_value

    def get_config(self) -> dict:
        return {**super().get_config(), "min_value": self.min_value}


def _conv_shape(data_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(data_shape) == 2:
        return (data_shape[0], data_shape[1], 1)
    if len(data_shape) == 3:
        return tuple(data_shape)
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
) -> keras.Model:
    """x -> (z_mean, z_stddev), each [batch, latent_dim] in float32, and, with
    `context_units`, a third output: features h [batch, context_units] (an IAF's context)."""
    inputs = keras.Input(shape=tuple(data_shape), name="x")
    if architecture == "mlp":
        h = keras.layers.Flatten(name="flatten")(inputs)
        for i, units in enumerate(hidden_units):
            h = keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(h)
    elif architecture == "conv":
        h = keras.layers.Reshape(_conv_shape(data_shape), name="to_image")(inputs)
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
        outputs.append(
            keras.layers.Dense(
                context_units, activation=activation, dtype="float32", name="context"
            )(h)
        )
    return keras.Model(inputs, outputs, name="encoder")


def build_decoder(
    data_shape: Sequence[int],
    latent_dim: int,
    architecture: str = "mlp",
    hidden_units: Sequence[int] = (400,),
    activation: str = "relu",
    likelihood: str = "bernoulli",
    learned_scale: bool = False,
) -> keras.Model:
    """z -> location (logits or mean, shaped like the data)[, stddev if `learned_scale`]."""
    data_shape = tuple(data_shape)
    inputs = keras.Input(shape=(latent_dim,), name="z")
    heads = ["location", "stddev"] if learned_scale else ["location"]
    if architecture == "mlp":
        h = inputs
        for i, units in enumerate(reversed(tuple(hidden_units))):
            h = keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(h)
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
        )(inputs)
        h = keras.layers.Reshape((small_h, small_w, hidden_units[-1]), name="to_grid")(h)
        for i, filters in enumerate(reversed(tuple(hidden_units))):
            h = keras.layers.Conv2DTranspose(
                filters, 3, strides=2, padding="same", activation=activation, name=f"deconv_{i}"
            )(h)
        crop = ((0, small_h * 2**blocks - height), (0, small_w * 2**blocks - width))
        raw = []
        for head in heads:
            r = keras.layers.Conv2D(
                channels, 3, padding="same", dtype="float32", name=f"{head}_conv"
            )(h)
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
    return keras.Model(inputs, outputs if learned_scale else location, name="decoder")
