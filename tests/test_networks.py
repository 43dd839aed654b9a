"""`keras_vae.networks.OneFilterConv2D`: the conv decoder's output layer computes Conv2D's
numbers and gradients with whichever kernel is faster where it runs, and picks the kernel
by the documented rule (one filter, stride 1, CPU, no XLA: depthwise; otherwise Conv2D's)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import networks
from keras_vae.networks import OneFilterConv2D, build_decoder

ATOL = 1e-5  # float32 sums of 3 x 3 x 32 products in another order


def layer_and_input(filters=1, strides=1, channels=32):
    keras.utils.set_random_seed(3)
    layer = OneFilterConv2D(filters, 3, strides=strides, padding="same")
    x = tf.random.stateless_normal([4, 12, 12, channels], seed=[1, 2])
    layer.build(x.shape)
    layer.bias.assign(tf.fill(layer.bias.shape, 0.25))
    return layer, x


def values_and_gradients(layer, x, jit_compile: bool):
    @tf.function(jit_compile=jit_compile)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(y))
        return [y, *tape.gradient(loss, [x, layer.kernel, layer.bias])]

    return [t.numpy() for t in run(x)]


def reference(layer, x):
    """The same computation with TensorFlow's plain convolution."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.conv2d(x, layer.kernel, layer.strides, "SAME") + layer.bias
        loss = tf.reduce_sum(y * tf.sin(y))
    return [t.numpy() for t in [y, *tape.gradient(loss, [x, layer.kernel, layer.bias])]]


def conv_ops(layer, x, jit_compile: bool) -> set[str]:
    graph = tf.function(layer, jit_compile=jit_compile).get_concrete_function(x).graph
    return {op.type for op in graph.get_operations() if "Conv" in op.type}


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(("filters", "strides"), [(1, 1), (2, 1), (1, 2)])
def test_values_and_gradients_equal_conv2d(filters, strides, jit_compile):
    layer, x = layer_and_input(filters, strides)
    got = values_and_gradients(layer, x, jit_compile)
    for name, a, b in zip(["output", "d/dx", "d/dkernel", "d/dbias"], got, reference(layer, x)):
        np.testing.assert_allclose(
            a, b, rtol=1e-4, atol=ATOL * max(1.0, np.abs(b).max()), err_msg=name
        )


def test_one_filter_on_cpu_without_xla_runs_a_depthwise_convolution():
    layer, x = layer_and_input()
    assert conv_ops(layer, x, jit_compile=False) == {"DepthwiseConv2dNative"}


@pytest.mark.parametrize(
    ("filters", "strides", "jit_compile"), [(1, 1, True), (2, 1, False), (1, 2, False)]
)
def test_under_xla_with_more_filters_or_a_stride_it_is_conv2d(filters, strides, jit_compile):
    layer, x = layer_and_input(filters, strides)
    assert conv_ops(layer, x, jit_compile) == {"Conv2D"}


def test_on_an_accelerator_it_is_conv2d(monkeypatch):
    monkeypatch.setattr(networks, "has_accelerator", lambda: True)
    layer, x = layer_and_input()
    assert conv_ops(layer, x, jit_compile=False) == {"Conv2D"}


def test_the_conv_decoder_uses_it_and_saves_and_loads_bit_for_bit(tmp_path):
    decoder = build_decoder((28, 28), latent_dim=2, architecture="conv", hidden_units=(8, 16))
    assert isinstance(decoder.get_layer("location_conv"), OneFilterConv2D)
    z = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
    decoder.save(tmp_path / "decoder.keras")
    loaded = keras.saving.load_model(tmp_path / "decoder.keras")
    assert isinstance(loaded.get_layer("location_conv"), OneFilterConv2D)
    np.testing.assert_array_equal(loaded(z).numpy(), decoder(z).numpy())
