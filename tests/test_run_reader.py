"""Tests for keras_vae.run_reader: loading a run directory and checking data against its model."""

import json
import zipfile
from unittest import mock

import keras
import numpy as np
import pytest

from keras_vae import run_reader as rd
from keras_vae.config import Config, DataConfig
from keras_vae.data import make_datasets
from keras_vae.model import VAE
from keras_vae.registration import VAE_REGISTERED_NAME
from keras_vae.run_reader import RunDirError


def assert_one_line_error(call, *fragments):
    with pytest.raises(RunDirError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_load_run_reads_model_config_and_metrics(tiny_run_dir):
    run = rd.load_run(tiny_run_dir)
    assert isinstance(run.model, VAE)
    assert run.data_shape == (8, 8)
    assert run.config == Config.from_json((tiny_run_dir / "config.json").read_text())
    assert run.config.model.latent_dim == run.model.latent_dim == 2
    assert run.metrics == json.loads((tiny_run_dir / "metrics.json").read_text())
    # The loaded weights are the trained ones: same reconstruction as a second load.
    x = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    again = rd.load_model(tiny_run_dir)
    np.testing.assert_array_equal(run.model.reconstruct(x), again.reconstruct(x))


def test_load_run_without_model_reads_shape_from_metrics(tiny_run_dir):
    run = rd.load_run(tiny_run_dir, with_model=False)
    assert run.model is None
    assert run.data_shape == (8, 8)


def test_missing_run_dir(tmp_path):
    missing = tmp_path / "nope"
    assert_one_line_error(lambda: rd.load_run(missing), "not found", str(missing), "--output")


def test_run_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    assert_one_line_error(lambda: rd.load_run(path), "is a file")


def test_missing_model_suggests_resuming_when_a_backup_exists(run_copy):
    (run_copy / "model.keras").unlink()
    message = assert_one_line_error(lambda: rd.load_model(run_copy), "has no model.keras")
    assert "backup" not in message
    (run_copy / "backup").mkdir()
    assert_one_line_error(lambda: rd.load_model(run_copy), "rerun the same train command")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"this is not a zip file",
        lambda data: data[: len(data) // 2],
    ],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_model(run_copy, damage):
    path = run_copy / "model.keras"
    path.write_bytes(damage(path.read_bytes()))
    assert_one_line_error(lambda: rd.load_run(run_copy), str(path), "retrain the run")


def test_model_path_that_is_a_folder(run_copy):
    (run_copy / "model.keras").unlink()
    (run_copy / "model.keras").mkdir()
    assert_one_line_error(lambda: rd.load_model(run_copy), "is not a file")


def test_model_that_is_not_a_vae(run_copy):
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(run_copy / "model.keras")
    assert_one_line_error(lambda: rd.load_model(run_copy), "holds a Sequential, not a keras_vae")


def rewrite_archive_config(path, edit) -> None:
    """Replace the config.json inside the .keras archive `path` by `edit(its text)`."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, edit(data.decode()) if info.filename == "config.json" else data)


def grow(text: str) -> str:
    values = json.loads(text)
    values["config"]["hidden_units"] = [16384, 16384]  # 2.2 GB of float32 weights
    return json.dumps(values)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (grow, "parameters (2.2 GB of float32), more than its"),
        (lambda text: "[" * 10_000 + "]" * 10_000, "config.json is nested deeper than 64"),
        (lambda text: text.replace('"keras_vae>VAE"', '"keras_vae>Other"'), "not a keras_vae VAE"),
    ],
    ids=["huge", "deep", "not_a_vae"],
)
def test_an_edited_archive_config_is_refused_before_keras_builds_it(run_copy, edit, fragment):
    """A few edited bytes of model.keras's config.json asked Keras to build gigabytes (5 GB
    of memory for this one) before anything was checked; now they are one line, and nothing
    is built."""
    rewrite_archive_config(run_copy / "model.keras", edit)
    with mock.patch("keras.saving.load_model", side_effect=AssertionError("built")):
        assert_one_line_error(lambda: rd.load_model(run_copy), fragment, "retrain the run")


def test_the_registered_name_is_the_vaes():
    assert keras.saving.get_registered_name(VAE) == VAE_REGISTERED_NAME


def test_corrupt_or_invalid_config(run_copy):
    path = run_copy / "config.json"
    path.write_text('{"model": ')
    assert_one_line_error(lambda: rd.load_config(run_copy), "not valid JSON", str(path))
    path.write_text('{"model": {"latent_dim": 0}}')
    assert_one_line_error(lambda: rd.load_config(run_copy), "latent_dim", "not a valid")
    path.write_text("[1, 2]")
    assert_one_line_error(lambda: rd.load_config(run_copy), "expected an object")
    path.unlink()
    assert_one_line_error(lambda: rd.load_config(run_copy), "has no config.json")


def test_metrics_missing_or_corrupt(run_copy):
    path = run_copy / "metrics.json"
    path.write_bytes(b"\xff\xfe not text")
    assert_one_line_error(lambda: rd.load_metrics(run_copy), "not UTF-8")
    path.write_text("{")
    assert_one_line_error(lambda: rd.load_metrics(run_copy), "not valid JSON")
    path.unlink()
    assert rd.load_metrics(run_copy) == {}


def test_check_data_shape():
    rd.check_data_shape((8, 8), [8, 8])
    assert_one_line_error(
        lambda: rd.check_data_shape((784,), (28, 28), "npz"), "(784,)", "(28, 28)", "npz"
    )


def test_check_data_values():
    rd.check_data_values(np.array([0.0, 0.5, 1.0]), "bernoulli")
    rd.check_data_values(np.array([0, 1], np.uint8), "bernoulli")
    rd.check_data_values(np.array([-3.0, 7.0]), "gaussian")  # a density needs no range
    assert_one_line_error(
        lambda: rd.check_data_values(np.array([0.0, 1.5]), "bernoulli"),
        "[0.0, 1.5]",
        "divide by 255",
    )
    assert_one_line_error(
        lambda: rd.check_data_values(np.array([255], np.uint8), "bernoulli"), "[255.0, 255.0]"
    )
    assert_one_line_error(lambda: rd.check_data_values(np.zeros((0, 3)), "bernoulli"), "empty")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_check_data_values_rejects_nan_and_inf(likelihood):
    nan = np.array([0.5, np.nan, np.nan])
    assert_one_line_error(lambda: rd.check_data_values(nan, likelihood), "2 NaN")
    inf = np.array([0.5, np.inf])
    assert_one_line_error(lambda: rd.check_data_values(inf, likelihood), "inf")


def test_check_data_casts_and_checks(tiny_run_dir):
    model = rd.load_model(tiny_run_dir)
    checked = rd.check_data(np.ones((2, 8, 8), np.float64), model)
    assert checked.dtype == np.float32 and checked.shape == (2, 8, 8)
    assert_one_line_error(lambda: rd.check_data(np.ones((2, 64)), model, "x"), "(64,)")


@pytest.mark.parametrize("binarization", ["none", "static", "dynamic"])
def test_load_test_split_equals_the_train_jobs_test_pipeline(binarization):
    config = Config(data=DataConfig(dataset="digits", binarization=binarization))
    config = Config.from_dict({**config.to_dict(), "runtime": {"seed": 3}})
    run = rd.Run(path=None, config=config, metrics={"data_shape": [8, 8]})
    test = rd.load_test_split(run)
    _, test_ds, info = make_datasets(config.data, batch_size=100, seed=3)
    pipeline_x = np.concatenate([x.numpy() for x, _ in test_ds])
    pipeline_y = np.concatenate([y.numpy() for _, y in test_ds])
    assert test.images.shape == (info.num_test, 8, 8) and test.images.dtype == np.float32
    np.testing.assert_array_equal(test.images, pipeline_x)
    np.testing.assert_array_equal(test.labels, pipeline_y)
    if binarization != "none":
        assert set(np.unique(test.images)) == {0.0, 1.0}


def test_load_test_split_rejects_a_dataset_of_another_shape(tmp_path):
    path = tmp_path / "small.npz"
    np.savez(path, x_train=np.zeros((4, 5, 5), np.uint8), x_test=np.zeros((2, 5, 5), np.uint8))
    run = rd.Run(path=None, config=Config(), metrics={"data_shape": [8, 8]})
    assert_one_line_error(
        lambda: rd.load_test_split(run, dataset=str(path)), "(5, 5)", "(8, 8)", str(path)
    )
