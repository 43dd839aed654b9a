"""`train --tensorboard`: the event files under RUN_DIR/logs hold the epoch scalars (elbo, kl,
reconstruction, learning rate: equal to the run's history) and the reconstruction and sample
images of every epoch (PNGs of the documented size)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vae import figures, visualize
from keras_vae.callbacks import LearningRateLogger
from keras_vae.cli import main
from keras_vae.model import VAE

EPOCHS = 2
LEARNING_RATE = 0.002


def read_events(folder: Path) -> dict[str, dict[int, object]]:
    """{tag: {step: value}}: floats for scalars, decoded pixel arrays for images."""
    events: dict[str, dict[int, object]] = defaultdict(dict)
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "images":  # [width, height, png...] as strings
                    width, height, png = int(tensor[0]), int(tensor[1]), tensor[2]
                    pixels = np.asarray(Image.open(io.BytesIO(png)))
                    assert pixels.shape[:2] == (height, width)
                    events[value.tag][event.step] = pixels
                else:
                    events[value.tag][event.step] = float(tensor)
    return events


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("tensorboard") / "run"
    code = main(
        [
            "train",
            f"--output={run_dir}",
            "--dataset=digits",
            "--latent-dim=2",
            "--hidden-units=16",
            f"--epochs={EPOCHS}",
            "--batch-size=128",
            f"--learning-rate={LEARNING_RATE}",
            "--tensorboard",
            "--verbose=0",
        ]
    )
    assert code == 0
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_config_records_tensorboard(tensorboard_run):
    run_dir, _ = tensorboard_run
    assert '"tensorboard": true' in (run_dir / "config.json").read_text()


@pytest.mark.parametrize("split, prefix", [("train", ""), ("validation", "val_")])
def test_scalars_are_the_epoch_metrics(tensorboard_run, split, prefix):
    run_dir, metrics = tensorboard_run
    events = read_events(run_dir / "logs" / split)
    for name in ("elbo", "kl", "reconstruction"):
        logged = events[f"epoch_{name}"]
        assert sorted(logged) == list(range(EPOCHS))
        np.testing.assert_allclose(
            [logged[step] for step in range(EPOCHS)],
            metrics["history"][prefix + name],
            rtol=1e-6,
            err_msg=name,
        )


def test_learning_rate_is_logged(tensorboard_run):
    run_dir, metrics = tensorboard_run
    events = read_events(run_dir / "logs" / "train")
    logged = [events["epoch_learning_rate"][step] for step in range(EPOCHS)]
    np.testing.assert_allclose(logged, [LEARNING_RATE] * EPOCHS, rtol=1e-6)
    np.testing.assert_allclose(metrics["history"]["learning_rate"], logged, rtol=1e-6)


def test_images_every_epoch(tensorboard_run):
    run_dir, _ = tensorboard_run
    events = read_events(run_dir / "logs" / "images")
    expected = {
        "reconstructions": figures.grid_size(2, visualize.NUM_RECONSTRUCTIONS, (8, 8), 4),
        "samples": figures.grid_size(8, 8, (8, 8), 4),
    }
    for tag, (width, height) in expected.items():
        assert sorted(events[tag]) == list(range(EPOCHS)), tag
        for pixels in events[tag].values():
            assert pixels.shape[:2] == (height, width) and pixels.std() > 0
        # Training changes the decoder, so the same inputs / the same z look different.
        assert not np.array_equal(events[tag][0], events[tag][EPOCHS - 1])
    # The last epoch's images are the trained model's (same as the figures of the run).
    final = np.asarray(Image.open(run_dir / "figures" / "samples.png"))
    logged = np.squeeze(events["samples"][EPOCHS - 1]).astype(int)
    assert np.abs(logged - final).max() <= 1


def test_without_the_flag_nothing_is_logged(tiny_run_dir):
    assert not (tiny_run_dir / "logs").exists()


def test_learning_rate_logger_follows_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
    model.compile(optimizer=keras.optimizers.SGD(schedule))
    history = model.fit(
        np.full((8, 4), 0.5, np.float32),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[LearningRateLogger()],
    )
    # 2 steps per epoch: the rate of each epoch's last step, 0.1 * 0.5**1 (step 1) and
    # 0.1 * 0.5**3 (step 3), not the next step's
    np.testing.assert_allclose(history.history["learning_rate"], [0.05, 0.0125], rtol=1e-6)
