"""`fit` trains exactly `steps_per_epoch` steps whatever `steps_per_execution` is."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import VAE, blocks, execution


def repeated_batches(examples: int = 20, batch: int = 10) -> tf.data.Dataset:
    x = np.random.default_rng(5).uniform(size=(examples, 6)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(x).batch(batch).repeat()


def small_vae(**compile_kwargs) -> VAE:
    keras.utils.set_random_seed(0)
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), seed=3)
    vae.compile(optimizer=keras.optimizers.SGD(1e-2), jit_compile=False, **compile_kwargs)
    return vae


def test_keras_itself_still_overshoots_steps_per_epoch():
    """Why `VAE.fit` checks: Keras runs a whole last execution on repeated data (117 -> 150).
    If this starts failing, Keras fixed it and `keras_vae.execution` can go."""
    inputs = keras.Input((6,))
    plain = keras.Model(inputs, keras.layers.Dense(6)(inputs))
    plain.compile(optimizer="sgd", loss="mse", steps_per_execution=50)
    data = repeated_batches().map(lambda x: (x, x))
    plain.fit(data, epochs=1, steps_per_epoch=117, verbose=0)
    assert int(plain.optimizer.iterations) == 150


def test_auto_trains_exactly_steps_per_epoch_and_the_same_weights_as_one_step():
    auto = small_vae()
    assert auto.steps_per_execution == execution.DEFAULT_STEPS_PER_EXECUTION
    auto.fit(repeated_batches(), epochs=2, steps_per_epoch=117, verbose=0)
    assert int(auto.optimizer.iterations) == 2 * 117
    assert auto.steps_per_execution == 39  # the largest divisor of 117 up to 50
    one = small_vae(steps_per_execution=1)
    one.fit(repeated_batches(), epochs=2, steps_per_epoch=117, verbose=0)
    for a, b in zip(auto.trainable_weights, one.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A later fit whose epochs fit 50 gets the compiled setting back.
    auto.fit(repeated_batches(), epochs=1, steps_per_epoch=100, verbose=0)
    assert auto.steps_per_execution == 50
    assert int(auto.optimizer.iterations) == 2 * 117 + 100


def test_an_explicit_setting_that_would_overshoot_is_refused_before_training():
    vae = small_vae(steps_per_execution=50)
    with pytest.raises(ValueError, match=r"would train 150 steps per epoch, not 117") as error:
        vae.fit(repeated_batches(), epochs=1, steps_per_epoch=117, verbose=0)
    assert "steps_per_execution=39" in str(error.value)
    assert int(vae.optimizer.iterations) == 0
    # Exactly one pass over finite data: its end cuts the last execution, nothing to refuse.
    x = np.random.default_rng(5).uniform(size=(1170, 6)).astype(np.float32)
    vae.fit(x, batch_size=10, epochs=2, steps_per_epoch=117, verbose=0)
    assert int(vae.optimizer.iterations) == 2 * 117


def test_compiled_steps_per_execution_is_resolved_and_asks_for_compile_before():
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    with pytest.raises(RuntimeError, match=r"not compiled yet: call `vae.compile\(...\)`"):
        _ = vae.compiled_steps_per_execution
    assert small_vae(steps_per_execution=7).compiled_steps_per_execution == 7
    assert small_vae().compiled_steps_per_execution >= 1  # "auto", resolved


def test_saved_compile_settings_stay_auto_and_resolve_again_on_load(tmp_path):
    vae = small_vae()
    vae.fit(repeated_batches(), epochs=1, steps_per_epoch=10, verbose=0)
    config = vae.get_compile_config()
    assert (config["steps_per_execution"], config["jit_compile"]) == ("auto", False)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert loaded.steps_per_execution == execution.DEFAULT_STEPS_PER_EXECUTION
    loaded.fit(repeated_batches(), epochs=1, steps_per_epoch=117, verbose=0)
    assert int(loaded.optimizer.iterations) == 10 + 117


@pytest.mark.parametrize(
    "compiled, steps_per_epoch, num_batches, auto, expected",
    [
        (50, None, None, False, 50),  # the data's end ends every epoch
        (50, 500, None, False, 50),  # a multiple
        (50, 117, 117, False, 50),  # one pass over finite data: cut at its end
        (50, 117, None, True, 39),
        (50, 117, 234, True, 39),  # finite, but more than one epoch of it
        (50, 97, None, True, 1),  # a prime: one step per execution
        (1, 117, None, False, 1),
    ],
)
def test_fit_steps_per_execution(compiled, steps_per_epoch, num_batches, auto, expected):
    assert (
        execution.fit_steps_per_execution(compiled, steps_per_epoch, num_batches, auto) == expected
    )


def test_fit_steps_per_execution_refuses_explicit_overshoot():
    with pytest.raises(ValueError, match="train 100 steps per epoch, not 97"):
        execution.fit_steps_per_execution(50, 97, None, auto=False)


def test_batches_per_epoch_of_every_input_kind():
    x = np.zeros((75, 6), np.float32)
    assert execution.batches_per_epoch(x, 10) == 8
    assert execution.batches_per_epoch(x) == 3  # Keras' default batch of 32
    assert execution.batches_per_epoch({"image": x}, 25) == 3
    assert execution.batches_per_epoch([x, x], 50) == 2
    assert execution.batches_per_epoch(tf.data.Dataset.from_tensor_slices(x).batch(10)) == 8
    assert execution.batches_per_epoch(tf.data.Dataset.from_tensor_slices(x).repeat()) is None
    unknown = tf.data.Dataset.from_tensor_slices(x).filter(lambda row: True)
    assert execution.batches_per_epoch(unknown) is None

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return x[:10]

    assert execution.batches_per_epoch(Batches()) == 4
    assert execution.batches_per_epoch(iter([x])) is None


def test_largest_divisor_at_most():
    assert [blocks.largest_divisor_at_most(n, 50) for n in (468, 117, 100, 97, 7)] == [
        39,
        39,
        50,
        1,
        7,
    ]
    with pytest.raises(ValueError, match="positive integers"):
        blocks.largest_divisor_at_most(0, 50)


def test_module_examples_run():
    failures, _ = doctest.testmod(execution, extraglobs={"tf": tf})
    assert failures == 0
