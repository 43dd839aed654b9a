"""Run the real train job in its own process, for tests that kill it: `python train_driver.py
CONFIG_JSON RUN_DIR PAUSE_SECONDS`.

It calls `keras_vae.train.train_and_evaluate` like `keras-vae train` does, pausing
PAUSE_SECONDS at each epoch end (before the backup of that epoch is written) so that a test has
time to kill it mid-run. The pause changes no number. Prints the metrics as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_vae.config import Config  # noqa: E402
from keras_vae.train import train_and_evaluate  # noqa: E402


class PauseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def main(argv: list[str]) -> int:
    config_path, run_dir, seconds = argv
    config = Config.from_json(Path(config_path).read_text())
    metrics = train_and_evaluate(
        config, run_dir, verbose=0, callbacks=[PauseAtEpochEnd(float(seconds))]
    )
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
