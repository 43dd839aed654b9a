"""`keras_vae.noise.philox_in_graph`: TensorFlow's stateless Philox draws, bit for bit, for
int32 and int64 seeds (negative, extreme), every shape class (one draw, not a multiple of 4,
a batch of MNIST images, the reparameterisation noise's rank 4), eagerly and inside XLA; and
`philox_bits` gives those bits whether or not XLA compiles it."""

import numpy as np
import pytest
import tensorflow as tf

from keras_vae.noise import philox_bits, philox_in_graph, standard_normal, unit_uniform

SEEDS = [
    ([1, 2], tf.int32),
    ([-5, 7], tf.int32),
    ([2**31 - 1, -(2**31)], tf.int32),
    ([123456789012, 42], tf.int64),
    ([-1, 2**40 + 3], tf.int64),
]
SHAPES = [[1], [5], [20, 784], [2, 1, 20, 50]]


def kernel_bits(shape, seed) -> np.ndarray:
    """What TensorFlow's own stateless kernel draws (eagerly, outside XLA)."""
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox"
    ).numpy()


@pytest.mark.parametrize(("values", "dtype"), SEEDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_philox_in_graph_is_the_kernels_draws_bit_for_bit(values, dtype, shape):
    seed = tf.constant(values, dtype)
    expected = kernel_bits(shape, seed)
    in_xla = tf.function(philox_in_graph, jit_compile=True)
    np.testing.assert_array_equal(philox_in_graph(shape, seed).numpy(), expected)
    np.testing.assert_array_equal(in_xla(tf.constant(shape), seed).numpy(), expected)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_noise_functions_do_not_depend_on_xla(jit_compile):
    """The dynamic binarization's draws of a batch of 20 MNIST images: the kernel's bits and
    uniforms, with and without XLA."""
    seed = tf.constant([17, 3], tf.int64)
    shape = tf.constant([20, 784])
    bits = tf.function(philox_bits, jit_compile=jit_compile)(shape, seed)
    np.testing.assert_array_equal(bits.numpy(), kernel_bits([20, 784], seed))
    uniform = tf.function(unit_uniform, jit_compile=jit_compile)(shape, seed)
    expected = tf.random.stateless_uniform([20, 784], seed=seed, alg="philox").numpy()
    np.testing.assert_array_equal(uniform.numpy(), expected)


def test_inside_xla_philox_bits_is_the_graph_version():
    """No StatelessRandom op is left for XLA to lower (its own lowering is twice as slow)."""
    graph = (
        tf.function(philox_bits, jit_compile=True)
        .get_concrete_function(tf.TensorSpec([2], tf.int32), tf.TensorSpec([2], tf.int64))
        .graph
    )
    assert not [op.type for op in graph.get_operations() if "StatelessRandom" in op.type]


def test_on_an_accelerator_philox_bits_is_the_op(monkeypatch):
    """Measured faster on CPU only: a GPU or TPU keeps XLA's lowering (the same bits)."""
    import keras_vae.execution

    monkeypatch.setattr(keras_vae.execution, "has_accelerator", lambda: True)
    graph = (
        tf.function(philox_bits, jit_compile=True)
        .get_concrete_function(tf.TensorSpec([2], tf.int32), tf.TensorSpec([2], tf.int64))
        .graph
    )
    assert [op.type for op in graph.get_operations() if "StatelessRandom" in op.type]


def test_standard_normal_under_xla_is_the_same_draws_to_float_rounding():
    """The same Philox bits; XLA's log and cos round some draws differently, never by more
    than a few ulps (the docstring's bound)."""
    seed = tf.constant([17, 3], tf.int64)
    in_xla = tf.function(lambda s: standard_normal([3, 20, 50], s), jit_compile=True)(seed)
    eager = standard_normal([3, 20, 50], seed)
    np.testing.assert_allclose(in_xla.numpy(), eager.numpy(), rtol=0, atol=5e-7)


def test_an_iwae_step_under_xla_draws_its_noise_once():
    """XLA on a CPU fused the Box-Muller cosine into each of the five loops that read an
    IWAE step's noise (its reparameterisation, log q, log p and their gradients), 2 of a
    17 ms k=50 step; `standard_normal` makes it compute the draws once."""
    from keras_vae.compat import replica_gradients
    from keras_vae.model import VAE
    from keras_vae.replicas import batch_layout

    vae = VAE(data_shape=(12,), latent_dim=3, hidden_units=(8,), objective="iwae", num_samples=5)
    x = tf.cast(tf.random.stateless_uniform([4, 12], seed=[1, 2]) < 0.5, tf.float32)
    vae.compile(optimizer="adam")
    vae(x)

    @tf.function(jit_compile=True)
    def gradients(x):
        return replica_gradients(vae, x, None, batch_layout(x))[1]

    hlo = gradients.experimental_get_compiler_ir(x)(stage="optimized_hlo")
    assert hlo.count(" cosine(") == 1
