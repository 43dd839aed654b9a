"""The model families train exactly alike on one device and on two mirrored replicas, and
run under mixed precision.

As in tests/test_distribute.py (which runs tests/mirrored_main.py), the replica comparison
runs once in a fresh process, because logical devices must be configured before TensorFlow
starts: this file is also that program (`python tests/test_families_distribute.py`), so
nothing here imports TensorFlow at module level. Per family (iwae k=5, vamp K=4, mixture,
iaf, and a conditional IAF model fed (x, y)): two plain-SGD steps with the model's own
seeded noise (drawn for the global batch and sliced per replica), from the same perturbed
weights (a fresh IAF is the identity, a fresh mixture uniform). Tolerance: float32 sums in
a different order differ by a few ulps per step (1 ulp seen); the classic scaling bug (mean
over the local batch) misses it by far.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

FAMILIES = {
    "iwae": {"objective": "iwae", "num_samples": 5},
    "iwae_dreg": {"objective": "iwae", "num_samples": 5, "gradient_estimator": "dreg"},
    "vamp": {"prior": "vamp", "prior_components": 4},
    "mixture": {"prior": "mixture", "prior_components": 3},
    "iaf": {"posterior": "iaf", "flow_steps": 2, "flow_hidden_units": (8,)},
    # issue 15: conditioned on a label (one-hot into both networks), with an IAF on top
    "conditional": {"num_classes": 3, "posterior": "iaf", "flow_hidden_units": (8,)},
}
BASE = {"data_shape": (8,), "latent_dim": 3, "hidden_units": (16,), "seed": 3}
BATCH, STEPS, LEARNING_RATE = 16, 2, 0.1
ATOL = RTOL = 1e-6
# tf.function steps without XLA: XLA over two replicas costs ~10 s a model on 2 cores, and
# tests/test_distribute.py ("jit") and tests/test_iaf.py (XLA == eager) cover it already.
JIT_COMPILE = False


# --------------------------------------------------------------------- the subprocess
def _configure_two_cpus() -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def _initial_weights(family: str) -> list:
    """A fresh model's weights, every trainable one moved by N(0, 0.1^2) (fixed seed)."""
    from keras_vae.model import VAE

    vae = VAE(**BASE, **FAMILIES[family])
    rng = np.random.default_rng(0)
    for weight in vae.trainable_weights:
        weight.assign(weight.numpy() + rng.normal(scale=0.1, size=weight.shape))
    return vae.get_weights()


def _labels(count: int) -> np.ndarray:
    return np.random.default_rng(4).integers(0, 3, size=count).astype("int32")


def _inputs(family: str, x: np.ndarray):
    """x, or (x, y) for a conditional family."""
    return (x, _labels(len(x))) if "num_classes" in FAMILIES[family] else x


def _fit(family: str, strategy, initial: list, x: np.ndarray, jit_compile: bool) -> dict:
    """STEPS plain-SGD steps; trainable weights before and after each step, and the logs."""
    import keras
    import tensorflow as tf

    from keras_vae.model import VAE

    with strategy.scope():
        vae = VAE(**BASE, **FAMILIES[family])
        vae.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE),
            jit_compile=jit_compile,
            steps_per_execution=1,
        )
    vae.set_weights(initial)
    snapshots = [[w.numpy().tolist() for w in vae.trainable_weights]]

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append([w.numpy().tolist() for w in vae.trainable_weights])

    data = tf.data.Dataset.from_tensor_slices(_inputs(family, x))
    data = data.batch(BATCH, drop_remainder=True)
    history = vae.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[Snapshot()])
    return {
        "snapshots": snapshots,
        "names": [w.path for w in vae.trainable_weights],
        "history": history.history,
        "steps": int(vae.optimizer.iterations.numpy()),
        "replica_jit_compile": bool(vae.replica_jit_compile),
    }


def main() -> dict:
    _configure_two_cpus()
    import tensorflow as tf

    from keras_vae import distribute

    x = (np.random.default_rng(1).random((BATCH * STEPS, BASE["data_shape"][0])) < 0.4).astype(
        "float32"
    )
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    two_replicas = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert two_replicas.num_replicas_in_sync == 2
    results = {}
    for family in FAMILIES:
        initial = _initial_weights(family)
        results[family] = {
            "one": _fit(family, one_device, initial, x, JIT_COMPILE),
            "two": _fit(family, two_replicas, initial, x, JIT_COMPILE),
        }
    # the negative control: the same comparison with each replica's loss averaged over its
    # local batch only (the all-reduce then doubles the gradient)
    from keras_vae import model_training as model_module

    correct = model_module.average_over_global_batch
    model_module.average_over_global_batch = lambda per_example, *_: tf.reduce_mean(per_example)
    try:
        results["unscaled"] = _fit("iwae", two_replicas, _initial_weights("iwae"), x, JIT_COMPILE)
    finally:
        model_module.average_over_global_batch = correct
    return results


# --------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def mirrored() -> dict:
    """The numbers of this file run as a program (about half a minute on 2 cores)."""
    from helpers import run_result_program  # imports Keras: not when run as the program

    return run_result_program(pathlib.Path(__file__))


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_replicas_train_each_family_exactly_like_one_device(mirrored, family):
    one, two = mirrored[family]["one"], mirrored[family]["two"]
    assert one["steps"] == two["steps"] == STEPS
    assert two["replica_jit_compile"] is JIT_COMPILE
    assert one["names"] == two["names"]
    assert len(one["snapshots"]) == len(two["snapshots"]) == STEPS + 1
    for step, (a, b) in enumerate(zip(one["snapshots"], two["snapshots"])):
        for name, wa, wb in zip(one["names"], a, b):
            np.testing.assert_allclose(wb, wa, rtol=RTOL, atol=ATOL, err_msg=f"{name} {step}")
    # SGD: the first step's gradient is (w0 - w1) / lr; finite, and nonzero for every
    # variable (each part's weights are trained, on either replica count)
    for run in (one, two):
        for name, w0, w1 in zip(run["names"], *run["snapshots"][:2]):
            gradient = (np.array(w0) - np.array(w1)) / LEARNING_RATE
            assert np.all(np.isfinite(gradient)), name
            assert np.abs(gradient).max() > 1e3 * ATOL, name  # far above the tolerance
    # The epoch metrics are float32 sums over the replicas, added in another order: to 1e-5
    # relative, or ATOL absolute for values near 0 (a warm-up KL of 0.002 differed by 4e-8).
    for name, values in one["history"].items():
        np.testing.assert_allclose(two["history"][name], values, rtol=1e-5, atol=ATOL, err_msg=name)
    if family == "iwae":
        assert "iwae" in one["history"]


@pytest.mark.slow
def test_an_unscaled_loss_fails_the_same_comparison(mirrored):
    one, unscaled = mirrored["iwae"]["one"], mirrored["unscaled"]
    last = zip(one["snapshots"][-1], unscaled["snapshots"][-1])
    assert max(np.abs(np.subtract(a, b)).max() for a, b in last) > 1e3 * ATOL


# --------------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_trains_under_mixed_bfloat16(family):
    """One train step under "mixed_bfloat16": finite loss and weights; the parts' variables
    and the densities stay float32. (No XLA: compiling it costs ~5 s a model on 2 cores;
    tests/test_mixed_precision.py compiles the default model with "auto", i.e. XLA.)"""
    import keras
    import tensorflow as tf

    from keras_vae.model import VAE
    from keras_vae.precision import dtype_policy

    with dtype_policy("bfloat16"):
        vae = VAE(**BASE, **FAMILIES[family])
        vae.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=False)
    assert vae.encoder.get_layer("hidden_0").compute_dtype == "bfloat16"
    for weight in vae.posterior_layer.weights + vae.prior_layer.weights:
        assert weight.dtype == "float32", weight.path
    x = (np.random.default_rng(2).random((BATCH, BASE["data_shape"][0])) < 0.4).astype("f4")
    labels = _labels(BATCH) if "num_classes" in FAMILIES[family] else None
    terms = vae.latent_terms(tf.constant(x), training=True, labels=labels)
    for term in terms[:3]:
        assert term.dtype == tf.float32 and np.all(np.isfinite(term.numpy()))
    before = [w.numpy() for w in vae.trainable_weights]
    x_and_y = _inputs(family, x)
    x_and_y = x_and_y if isinstance(x_and_y, tuple) else (x_and_y,)
    logs = vae.train_on_batch(*x_and_y, return_dict=True)
    assert all(np.isfinite(value) for value in logs.values()), logs
    after = [w.numpy() for w in vae.trainable_weights]
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(np.any(a != b) for a, b in zip(before, after))


if __name__ == "__main__":
    print("RESULT " + json.dumps(main()), flush=True)
