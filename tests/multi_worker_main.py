"""One worker of a `MultiWorkerMirroredStrategy` cluster, started by tests/test_multi_worker.py.

Every worker runs this same program with its own TF_CONFIG (or none: a single process).
It creates the strategy first (TensorFlow requires it), optionally records two raw facts
(what Keras does without `compat.reducible_logs`, and which examples each worker gets),
then runs the real `train_and_evaluate` and saves this worker's final weights.

    TF_CONFIG=... python tests/multi_worker_main.py --config CONFIG.json --run-dir RUN_DIR \\
        --weights-out W0.npz [--checks DATA.npz] [--epoch-delay SECONDS]

Lines starting with ``RESULT `` carry JSON for the test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_vae import distribute  # noqa: E402
from keras_vae.config import Config, DataConfig  # noqa: E402


def report(name: str, value) -> None:
    print("RESULT " + json.dumps({name: value}), flush=True)


def raw_keras_logs(strategy, config: Config) -> str | None:
    """Fit the VAE WITHOUT `compat.reducible_logs`: Keras' error, or None if it works."""
    import tensorflow as tf

    from keras_vae import model_training as model_module
    from keras_vae.model import VAE

    data = tf.data.Dataset.from_tensor_slices(tf.fill([8, 3], 0.5)).batch(4)
    workaround = model_module.reducible_logs
    model_module.reducible_logs = lambda logs: logs
    try:
        with strategy.scope():
            vae = VAE(data_shape=(3,), latent_dim=1, hidden_units=(2,))
            vae.compile(optimizer="sgd")
        vae.fit(distribute.model_inputs(data), epochs=1, verbose=0)
    except ValueError as error:
        return str(error)
    finally:
        model_module.reducible_logs = workaround
    return None


def example_ids(strategy, npz_path: str, batch_size: int, seed: int) -> dict:
    """Example indices per step: this worker's share, and the undistributed global batches.

    The file's pixels encode each example's index (i % 256, i // 256), so the pipelines of
    `keras_vae.data.make_datasets` can be followed through `shard_by_data`.
    """
    import numpy as np

    from keras_vae.data import make_datasets

    def ids(x):
        pixels = np.rint(np.asarray(x) * 255).astype(int)
        return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()

    def batches(distributed: bool) -> dict:
        train, test, _ = make_datasets(DataConfig(dataset=npz_path), batch_size, seed)
        result = {}
        for name, dataset in {"train": train, "test": test}.items():
            if distributed:
                dataset = strategy.experimental_distribute_dataset(
                    distribute.shard_by_data(dataset)
                )
            steps = []
            for batch in dataset:
                local = strategy.experimental_local_results(batch) if distributed else [batch]
                steps.append([i for part in local for i in ids(part)])
            result[name] = steps
        return result

    return {"local": batches(distributed=True), "global": batches(distributed=False)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--weights-out", required=True)
    parser.add_argument("--checks", default=None, help="an .npz whose pixels encode indices")
    parser.add_argument("--epoch-delay", type=float, default=0.0)
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as handle:
        config = Config.from_dict(json.load(handle))

    strategy = distribute.get_strategy(config.runtime.strategy)  # before any other TF call
    import keras
    import numpy as np

    from keras_vae.train import train_and_evaluate

    report("worker", {"chief": distribute.is_chief(strategy), "pid": os.getpid()})
    if args.checks:
        task = strategy.cluster_resolver.task_id
        try:  # each worker passes its own index: they must be told they disagree
            distribute.check_same_on_all_workers(strategy, task, "the worker index")
            report("disagreement_error", None)
        except ValueError as error:
            report("disagreement_error", str(error))
        report("raw_keras_error", raw_keras_logs(strategy, config))
        report("ids", example_ids(strategy, args.checks, 8, config.runtime.seed))

    class Finish(keras.callbacks.Callback):
        """Slow epochs down (a window to kill the run in) and save the final weights."""

        def on_epoch_end(self, epoch, logs=None):
            print(f"EPOCH_DONE {epoch + 1}", flush=True)
            time.sleep(args.epoch_delay)

        def on_train_end(self, logs=None):
            np.savez(args.weights_out, *self.model.get_weights())

    metrics = train_and_evaluate(config, args.run_dir, verbose=2, callbacks=[Finish()])
    report("metrics", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
