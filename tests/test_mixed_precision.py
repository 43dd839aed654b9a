"""Mixed precision: 16-bit hidden layers, float32 variables, distributions and losses.

Tolerances come from the 16-bit formats' unit roundoff: bfloat16 keeps 8 significant bits
(2**-8 = 3.9e-3), float16 11 (2**-11 = 4.9e-4). One SGD step's update, computed through
rounded hidden activations and gradients, is allowed 10 such roundings of relative error.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import Config
from keras_vae.model import VAE
from keras_vae.precision import dtype_policy
from keras_vae.train import train_and_evaluate

UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
DIM, LATENT = 16, 3


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": (rng.random((64, DIM)) < 0.4).astype("float32"),
        "noise": rng.standard_normal((64, 1, LATENT)).astype("float32"),
    }


def build(mixed_precision: str, optimizer=None) -> VAE:
    keras.utils.set_random_seed(0)  # the same initial weights every time
    with dtype_policy(mixed_precision):
        vae = VAE(data_shape=(DIM,), latent_dim=LATENT, hidden_units=(32,), seed=1)
        vae.compile(optimizer=optimizer or keras.optimizers.SGD(0.1))
    return vae


@pytest.fixture(scope="module")
def float32_step(batch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Initial weights and the update of one float32 SGD step on `batch`."""
    vae = build("none")
    initial = vae.get_weights()
    vae.train_on_batch(batch)
    return initial, [after - before for after, before in zip(vae.get_weights(), initial)]


def one_step_update(vae: VAE, initial: list[np.ndarray], batch) -> list[np.ndarray]:
    vae.set_weights(initial)
    vae.train_on_batch(batch)
    return [after - before for after, before in zip(vae.get_weights(), initial)]


def relative_error(update: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """||update - reference|| / ||reference|| over all variables at once.

    Per variable, a nearly cancelling gradient sum can have a much larger relative error.
    """
    flat, flat_reference = (np.concatenate([u.ravel() for u in x]) for x in (update, reference))
    return float(np.linalg.norm(flat - flat_reference) / np.linalg.norm(flat_reference))


@pytest.mark.parametrize("mixed_precision", ["bfloat16", "float16"])
def test_hidden_layers_compute_in_16_bits_and_everything_else_in_float32(mixed_precision, batch):
    vae = build(mixed_precision)
    assert vae.encoder.get_layer("hidden_0").compute_dtype == mixed_precision
    assert vae.decoder.get_layer("hidden_0").compute_dtype == mixed_precision
    assert {v.dtype for v in vae.trainable_variables} == {"float32"}
    z_mean, z_stddev = vae.encode(batch["x"])
    assert z_mean.dtype == z_stddev.dtype == tf.float32
    terms = vae.elbo_terms(tf.constant(batch["x"]), tf.constant(batch["noise"]))
    assert {t.dtype for t in terms} == {tf.float32}
    assert keras.config.dtype_policy().name == "float32"  # restored after building


@pytest.mark.parametrize("mixed_precision", ["bfloat16", "float16"])
def test_one_sgd_step_matches_float32_within_roundoff(mixed_precision, batch, float32_step):
    """An unscaled float16 gradient would be 2**15 times too large; a bad cast, way off."""
    initial, update32 = float32_step
    update = one_step_update(build(mixed_precision), initial, batch)
    assert relative_error(update, update32) < 10 * UNIT_ROUNDOFF[mixed_precision]


def test_float16_scales_the_loss_in_train_step(batch, float32_step):
    """Keras wraps the optimizer; `train_step` multiplies the loss by the dynamic scale.

    With a scale of 2**40 the scaled gradients overflow float16 in the hidden layers: the
    step must be skipped (weights unchanged) and the scale halved. Were the loss not scaled,
    the gradients would be finite and the weights would move.
    """
    vae = build("float16")
    assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(vae.optimizer.scale_loss(1.0)) == 2.0**15  # Keras' initial scale

    huge = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=2.0**40)
    vae = build("float16", optimizer=huge)
    initial, _ = float32_step
    update = one_step_update(vae, initial, batch)
    assert all(not np.any(u) for u in update)
    assert float(vae.optimizer.dynamic_scale.numpy()) == 2.0**39
    assert int(vae.optimizer.iterations.numpy()) == 0  # skipped: the KL warm-up does not advance


def test_bfloat16_train_job_has_finite_loss_and_float32_weights(tmp_path):
    """The real job with `mixed_precision="bfloat16"` (CPU-capable): finite, improving ELBO."""
    config = Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [32]},
            "training": {"epochs": 3, "batch_size": 64, "learning_rate": 3e-3},
            "runtime": {"mixed_precision": "bfloat16"},
        }
    )
    metrics = train_and_evaluate(config, tmp_path, verbose=0)
    history = metrics["history"]
    assert all(np.isfinite(history[name]).all() for name in ("loss", "elbo", "kl"))
    assert history["elbo"][-1] > history["elbo"][0]
    assert np.isfinite(metrics["test_elbo"]) and metrics["test_elbo"] < 0
    assert keras.config.dtype_policy().name == "float32"
    # Mixed precision is a training setting: the saved weights are float32, and the reloaded
    # model computes in the policy of the loading process (float32 here), exports included.
    saved = keras.saving.load_model(tmp_path / "model.keras")
    assert {v.dtype for v in saved.trainable_variables} == {"float32"}
    assert saved.encoder.get_layer("hidden_0").compute_dtype == "float32"
    assert json.loads((tmp_path / "config.json").read_text())["runtime"]["mixed_precision"] == (
        "bfloat16"
    )


def test_dtype_policy_restores_the_previous_policy_and_rejects_unknown_names():
    with pytest.raises(RuntimeError), dtype_policy("float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
        raise RuntimeError("inside the block")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match=r"Unknown mixed_precision 'fp16'"), dtype_policy("fp16"):
        pass
