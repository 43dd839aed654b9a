"""One device vs `MirroredStrategy` over two logical CPU devices, in a fresh process.

Run by tests/test_distribute.py (logical devices must be configured before TensorFlow starts,
which other tests in the pytest process have already done). Prints one line,
``RESULT {json}``, holding the raw numbers; the assertions live in the test module.

    python tests/mirrored_main.py RUN_ROOT
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_vae import distribute  # noqa: E402
from keras_vae import model_training as model_module  # noqa: E402
from keras_vae.config import Config  # noqa: E402
from keras_vae.model import VAE  # noqa: E402
from keras_vae.noise import replica_normal, standard_normal  # noqa: E402
from keras_vae.replicas import batch_layout  # noqa: E402
from keras_vae.train import train_and_evaluate  # noqa: E402

NUM_EXAMPLES, BATCH, EPOCHS = 64, 16, 2  # 8 SGD steps
DIM, LATENT, SAMPLES = 8, 3, 2
MODEL = dict(data_shape=(DIM,), latent_dim=LATENT, hidden_units=(16,), num_samples=SAMPLES)
MODEL.update(kl_warmup_steps=5, seed=3)  # the warm-up spans the run: it must follow the step


def one_device() -> tf.distribute.Strategy:
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def two_replicas() -> tf.distribute.Strategy:
    return distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.random((NUM_EXAMPLES, DIM)) < 0.4).astype("float32")
    noise = rng.standard_normal((NUM_EXAMPLES, SAMPLES, LATENT)).astype("float32")
    return x, noise


INITIAL_WEIGHTS = VAE(**MODEL).get_weights()


def fit(strategy, *, inject_noise: bool, jit_compile: bool = False) -> dict:
    """Plain SGD from the same initial weights on the same batches; weights and epoch logs."""
    x, noise = make_data()
    with strategy.scope():
        vae = VAE(**MODEL)
        vae.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
    vae.set_weights(INITIAL_WEIGHTS)
    inputs = {"x": x, "noise": noise} if inject_noise else x
    data = tf.data.Dataset.from_tensor_slices(inputs).batch(BATCH, drop_remainder=True)
    history = vae.fit(data, epochs=EPOCHS, verbose=0, shuffle=False)
    return {
        "weights": [w.tolist() for w in vae.get_weights()],
        "history": history.history,
        "steps": int(vae.optimizer.iterations.numpy()),
        "replica_jit_compile": bool(vae.replica_jit_compile),
    }


def unscaled_average(per_example, global_size=None, regularization_losses=()):
    """The classic bug: the mean over the LOCAL batch, then summed over replicas."""
    return tf.reduce_mean(per_example)


def evaluate(strategy) -> dict:
    """`evaluate` on 63 examples (last batch 15: split 8 + 7 over two replicas)."""
    x, noise = make_data(seed=1)
    with strategy.scope():
        vae = VAE(**MODEL)
        vae.compile(optimizer=keras.optimizers.SGD(0.05))
    vae.set_weights(INITIAL_WEIGHTS)
    data = tf.data.Dataset.from_tensor_slices({"x": x[:-1], "noise": noise[:-1]}).batch(BATCH)
    results = vae.evaluate(data, return_dict=True, verbose=0)
    counts = {name: float(tracker.count.numpy()) for name, tracker in vae.trackers.items()}
    return {"results": results, "counts": counts}


def replica_noise(strategy) -> dict:
    """Per-replica draws of `replica_normal` and of `keras.random.normal(SeedGenerator)`."""
    with strategy.scope():
        generator = keras.random.SeedGenerator(11)
    seed = tf.constant([5, 9], tf.int32)

    @tf.function
    def draw(x):
        def per_replica(x):
            layout = batch_layout(x)
            ours = replica_normal(2, x.shape[0], 3, seed, layout)
            keras_draw = keras.random.normal((2, x.shape[0], 3), seed=generator)
            return ours, keras_draw

        return strategy.run(per_replica, args=(x,))

    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(tf.zeros([8, 1])).batch(8)
    )
    ours, keras_draws = draw(next(iter(batches)))
    return {
        "ours": [t.numpy().tolist() for t in strategy.experimental_local_results(ours)],
        "keras": [t.numpy().tolist() for t in strategy.experimental_local_results(keras_draws)],
        "global": standard_normal([2, 8, 3], seed).numpy().tolist(),
    }


def steps_per_execution(strategy) -> dict:
    """Keras' own behaviour with steps_per_execution=2 over two replicas, and ours."""
    x, _ = make_data()
    with strategy.scope():
        plain = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(2)])
        plain.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    try:
        plain.fit(x, x[:, :2], batch_size=BATCH, epochs=1, verbose=0)
        keras_error = None
    except Exception as error:  # noqa: BLE001 - the raw failure is what we record
        keras_error = f"{type(error).__name__}: {error}"
    with strategy.scope():
        vae = VAE(**MODEL)
        try:
            vae.compile(optimizer="sgd", steps_per_execution=2)
            vae_error = None
        except ValueError as error:
            vae_error = str(error)
    return {"keras_error": keras_error, "vae_error": vae_error}


def train_job(strategy, run_dir: str) -> dict:
    """The real main job on the bundled digits, with seeded (not injected) noise."""
    config = Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "training": {"epochs": 2, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.05},
            "runtime": {"seed": 4},
        }
    )
    metrics = train_and_evaluate(config, run_dir, verbose=0, strategy=strategy)
    return {key: metrics[key] for key in ("train_elbo", "test_elbo", "test_kl", "history")}


def main(run_root: str) -> dict:
    results = {
        "replicas": two_replicas().num_replicas_in_sync,
        "initial": [w.tolist() for w in INITIAL_WEIGHTS],
    }
    for name, kwargs in {
        "injected": {"inject_noise": True},
        "seeded": {"inject_noise": False},
        "jit": {"inject_noise": False, "jit_compile": True},
    }.items():
        results[name] = {"one": fit(one_device(), **kwargs), "two": fit(two_replicas(), **kwargs)}
    correct = model_module.average_over_global_batch
    model_module.average_over_global_batch = unscaled_average
    try:
        results["unscaled"] = {"two": fit(two_replicas(), inject_noise=True)}
    finally:
        model_module.average_over_global_batch = correct
    results["evaluate"] = {"one": evaluate(one_device()), "two": evaluate(two_replicas())}
    results["noise"] = replica_noise(two_replicas())
    results["train_job"] = {
        "one": train_job(one_device(), os.path.join(run_root, "one")),
        "two": train_job(two_replicas(), os.path.join(run_root, "two")),
    }
    # Last: Keras' failure aborts the process' collective ops (later steps would fail too).
    results["steps_per_execution"] = steps_per_execution(two_replicas())
    return results


if __name__ == "__main__":
    try:
        print("RESULT " + json.dumps(main(sys.argv[1])), flush=True)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
