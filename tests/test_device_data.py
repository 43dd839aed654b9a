"""The device-resident training path (`keras_vae.device_data`): the batches it draws, and that
it trains exactly as the streaming path where both draw the same numbers.

What each batch is, written out here from the documented rule: batch k of epoch e holds the
examples at positions k*B .. (k+1)*B - 1 of argsort(uniform_N(key = [seed, e])) (float64
Philox draws, `keras_vae.data.epoch_order`); with dynamic binarization its noise seed is
s_e + k, s_e = uniform int64 in [0, 2**62) from the same key.

Dynamic binarization is drawn inside XLA on the device path and by TensorFlow's kernels on the
streaming path, from the same Philox key and, by `keras_vae.noise.unit_uniform`, to the same
bits: both paths train on the same numbers, so a run may resume on the other path.
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import FailAt, assert_exit_2_and_unchanged, assert_same_results

from keras_vae.blocks import INDEX_STEPS_KEY, SEED_STEPS_KEY
from keras_vae.config import Config, DataConfig
from keras_vae.data import prepared_splits, to_unit_interval
from keras_vae.data.epochs import batch_from_split
from keras_vae.device_data import (
    DeviceData,
    index_blocks,
    limit_megabytes,
    split_megabytes,
)
from keras_vae.noise import unit_uniform
from keras_vae.train import train_and_evaluate

SEED, BATCH = 3, 64
NUM_TRAIN = 1437  # digits


def run_config(binarization: str = "none", limit_mb: int = 1024, epochs: int = 3) -> Config:
    return Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "data": {"binarization": binarization},
            "training": {"epochs": epochs, "batch_size": BATCH, "steps_per_execution": 11},
            "runtime": {"seed": SEED, "device_data_limit_mb": limit_mb},
        }
    )


def documented_order(epoch: int) -> np.ndarray:
    key = tf.constant([SEED, epoch], tf.int64)
    return np.argsort(
        tf.random.stateless_uniform([NUM_TRAIN], key, dtype=tf.float64), kind="stable"
    )


def documented_seed(epoch: int) -> int:
    key = tf.constant([SEED, epoch], tf.int64)
    return int(tf.random.stateless_uniform([], key, 0, 2**62, dtype=tf.int64))


def test_block_k_of_epoch_e_holds_the_documented_examples_and_seeds():
    config = DataConfig("digits", binarization="dynamic")
    blocks = list(index_blocks(NUM_TRAIN, config, BATCH, SEED, epochs=3, first_epoch=1, steps=11))
    assert len(blocks) == 2 * 2  # epochs 1 and 2, 22 steps each in blocks of 11
    for epoch in (1, 2):
        indices = np.concatenate([b[INDEX_STEPS_KEY] for b in blocks[2 * (epoch - 1) : 2 * epoch]])
        seeds = np.concatenate([b[SEED_STEPS_KEY] for b in blocks[2 * (epoch - 1) : 2 * epoch]])
        order = documented_order(epoch)
        np.testing.assert_array_equal(indices.reshape(-1), order[: 22 * BATCH])
        assert len(set(indices.reshape(-1).tolist())) == 22 * BATCH  # each example at most once
        np.testing.assert_array_equal(seeds, documented_seed(epoch) + np.arange(22))


def test_the_device_batch_is_the_gathered_examples_binarized_with_its_seed():
    split = prepared_splits(DataConfig("digits"))["train"]
    grey = to_unit_interval(split.images)
    data = DeviceData(split, dynamic=True)
    indices = tf.constant(documented_order(0)[:BATCH])
    draw = tf.function(data.batch, jit_compile=True)  # as in the compiled training loop
    x, labels = (t.numpy() for t in draw(indices, tf.constant(7, tf.int64)))
    again = draw(indices, tf.constant(7, tf.int64))[0].numpy()
    other = draw(indices, tf.constant(8, tf.int64))[0].numpy()
    np.testing.assert_array_equal(labels, split.labels[indices.numpy()])
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x, again)  # a function of (examples, seed)
    assert np.any(x != other)
    p = grey[indices.numpy()]
    assert np.all(x[p == 0] == 0) and np.all(x[p == 1] == 1)  # certain pixels are kept
    # Bernoulli(p): the mean of the draws is p's within 4 standard errors.
    middle = (p > 0) & (p < 1)
    error = np.sqrt(np.sum(p[middle] * (1 - p[middle]))) / middle.sum()
    assert abs(x[middle].mean() - p[middle].mean()) < 4 * error
    plain = DeviceData(split, dynamic=False).batch(indices)[0]
    np.testing.assert_array_equal(plain, grey[indices.numpy()])


def test_binarization_noise_is_the_kernels_uniform_bit_for_bit_inside_xla():
    """The pinned draw: TensorFlow's stateless_uniform (Philox), which earlier versions used on
    the streaming path, computed from raw bits so that XLA does not change it."""
    key = tf.constant([123456789012, 0x5EED], tf.int64)
    kernel = tf.random.stateless_uniform([64, 784], seed=key, alg="philox").numpy()
    xla = tf.function(unit_uniform, jit_compile=True)([64, 784], key).numpy()
    np.testing.assert_array_equal(unit_uniform([64, 784], key).numpy(), kernel)
    np.testing.assert_array_equal(xla, kernel)
    assert xla.min() >= 0.0 and xla.max() < 1.0


@pytest.mark.parametrize("seed", [None, 5])
def test_a_uint8_batch_is_the_same_inside_xla_and_in_tf_data(seed):
    """Every uint8 value, as TensorFlow divides it by 255 (the streaming path's numbers of
    earlier versions), and the same inside XLA (whose division differs by 1 ulp for some)."""
    images = tf.constant(np.repeat(np.arange(256, dtype=np.uint8), 64).reshape(256, 64))
    index, key = tf.range(256), None if seed is None else tf.constant(seed, tf.int64)
    eager = batch_from_split(images, None, index, key)[0].numpy()
    xla = tf.function(batch_from_split, jit_compile=True)(images, None, index, key)[0].numpy()
    np.testing.assert_array_equal(xla, eager)
    if seed is None:
        np.testing.assert_array_equal(eager, (tf.cast(images, tf.float32) / 255.0).numpy())


@pytest.fixture(scope="module", params=["none", "dynamic"])
def paths(request, tmp_path_factory):
    """(binarization, {limit: metrics}): the same run on the device path and on the streaming
    path (limit 0 MB)."""
    binarization = request.param
    results = {
        limit: train_and_evaluate(
            run_config(binarization, limit_mb=limit),
            tmp_path_factory.mktemp(f"{binarization}{limit}") / "run",
            verbose=0,
        )
        for limit in (1024, 0)
    }
    return binarization, results


def test_the_device_path_trains_exactly_as_the_streaming_path(paths):
    _, results = paths
    device, stream = results[1024], results[0]
    assert (device["data_path"], stream["data_path"]) == ("device", "stream")
    for key, value in stream.items():
        if key not in ("data_path", "examples_per_second"):
            assert device[key] == value, key


@pytest.mark.parametrize("resumed_limit", [1024, 0])
def test_a_killed_device_run_resumes_to_the_same_numbers_on_either_path(
    paths, resumed_limit, tmp_path
):
    binarization, results = paths
    config = run_config(binarization, limit_mb=1024)
    with pytest.raises(RuntimeError, match="interrupted"):
        train_and_evaluate(config, tmp_path / "run", verbose=0, callbacks=[FailAt(epoch=1)])
    resumed = run_config(binarization, limit_mb=resumed_limit)  # no config conflict
    metrics = train_and_evaluate(resumed, tmp_path / "run", verbose=0)
    assert metrics.pop("data_path") == ("device" if resumed_limit else "stream")
    uninterrupted = {k: v for k, v in results[1024].items() if k != "data_path"}
    assert_same_results(metrics, uninterrupted)


def test_auto_places_a_split_of_at_most_a_quarter_of_memory_up_to_1024_mb(tmp_path):
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert limit_megabytes("auto") == min(1024, memory_mb // 4)
    assert limit_megabytes(7) == 7
    assert Config().runtime.device_data_limit_mb == "auto"  # the default: digits fit
    config = Config.from_dict({"data": {"dataset": "digits"}, "training": {"epochs": 1}})
    assert train_and_evaluate(config, tmp_path / "run", verbose=0)["data_path"] == "device"


def test_a_split_over_the_limit_streams_and_the_run_says_so(tmp_path, capsys):
    split = prepared_splits(DataConfig("digits"))["train"]
    assert 0 < split_megabytes(split) < 1  # so a 0 MB limit is the tiny budget
    train_and_evaluate(run_config(limit_mb=0, epochs=1), tmp_path / "stream", verbose=2)
    train_and_evaluate(run_config(epochs=1), tmp_path / "device", verbose=2)
    out = capsys.readouterr().out
    assert "Training data: streamed through tf.data" in out
    assert "Training data: on the device" in out
    # The progress lines count the optimizer steps on both paths: 22 per epoch.
    assert re.findall(r"^(\d+)/(\d+) - ", out, re.MULTILINE) == [("22", "22")] * 2


@pytest.mark.parametrize("value", ["-1", "abc", "1e30", "2.5", "AUTO", str(2**40 + 1)])
def test_a_bad_device_data_limit_exits_2_and_writes_nothing(value, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--device-data-limit-mb", value]
    assert_exit_2_and_unchanged([*argv, "--output", tmp_path / "run"], [tmp_path], capsys, "limit")


class _CallCounter(keras.callbacks.Callback):
    """Calls into the compiled train function per epoch (Keras' batch hooks run per call)."""

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(0)

    def on_train_batch_begin(self, batch, logs=None):
        self.calls[-1] += 1


@pytest.mark.parametrize(
    ("limit_mb", "steps_per_execution", "calls"),
    [
        (1024, "auto", 1),  # on the device: the whole epoch (119 steps) in one block
        (0, "auto", 7),  # streaming: blocks of 17, the largest divisor of 119 up to 50
        (1024, 17, 7),  # an explicit setting is kept on either path
    ],
)
def test_auto_runs_a_whole_epoch_per_call_on_the_device_path(
    tmp_path, limit_mb, steps_per_execution, calls
):
    """Digits at batch 12: 119 = 7 x 17 steps an epoch; the same numbers whatever the block
    (test_the_device_path_trains_exactly_as_the_streaming_path, tests/test_fast_path.py)."""
    config = Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "training": {"epochs": 2, "batch_size": 12, "steps_per_execution": steps_per_execution},
            "runtime": {"seed": SEED, "device_data_limit_mb": limit_mb},
        }
    )
    counter = _CallCounter()
    metrics = train_and_evaluate(config, tmp_path / "run", verbose=0, callbacks=[counter])
    assert counter.calls == [calls, calls]
    assert metrics["data_path"] == ("device" if limit_mb else "stream")
    assert len(metrics["history"]["elbo"]) == 2


def test_the_final_training_set_evaluation_stacks_at_most_50_batches_a_block():
    """A whole-epoch training block is only indices; the final `evaluate` of the training set
    stacks images, so its blocks stay those of the streaming path (119 = 7 x 17 here)."""
    from keras_vae import train
    from keras_vae.blocks import STEPS_KEY
    from keras_vae.feed import make_feed

    config = Config.from_dict(
        {
            "model": {"latent_dim": 2, "hidden_units": [16]},
            "training": {"epochs": 1, "batch_size": 12},
            "runtime": {"seed": SEED},
        }
    )
    pipelines = train.make_pipelines(config.data, 12, SEED)
    model = train.build_model(config, pipelines.info, pipelines)
    feed = make_feed(model, pipelines, 0, config)
    assert (feed.data_path, feed.block) == ("device", 119)
    shapes = [block[STEPS_KEY].shape.as_list() for block in feed.training_set()]
    assert shapes == [[17, 12, 8, 8]] * 7
