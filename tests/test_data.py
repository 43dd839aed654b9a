"""Tests for keras_vae.data: every source on real or tiny synthetic files, then the pipelines."""

import gzip
import pathlib
import struct
import tracemalloc
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_vae import data
from keras_vae.config import DataConfig
from keras_vae.data import DataError, load_splits, make_datasets, to_unit_interval

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x000008NN (NN = number of dims), dims, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: pathlib.Path, payload: bytes, gz: bool) -> pathlib.Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.fixture(params=[True, False], ids=["gz", "raw"])
def idx_folder(tmp_path, request):
    """Tiny MNIST-layout folder: 12 train and 5 test images of 4x3, labels 0..9."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (12, 4, 3), dtype=np.uint8),
        "train_labels": np.arange(12, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        "test_labels": np.array([3, 1, 4, 1, 5], np.uint8),
    }
    for key, name in IDX_NAMES.items():
        write_file(tmp_path / name, idx_bytes(arrays[key]), request.param)
    return types.SimpleNamespace(path=tmp_path, arrays=arrays, gz=request.param)


def idx_path(folder, key: str) -> pathlib.Path:
    return folder.path / (IDX_NAMES[key] + (".gz" if folder.gz else ""))


def overwrite(folder, key: str, payload: bytes) -> None:
    """Replace one of the folder's IDX files, compressed like the others."""
    idx_path(folder, key).write_bytes(gzip.compress(payload) if folder.gz else payload)


def save_npz(tmp_path: pathlib.Path, name: str = "data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


# ------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist(shared_data_dir):
    return load_splits(str(shared_data_dir / "mnist"))


def test_real_mnist_from_idx_folder(mnist):
    train, test = mnist["train"], mnist["test"]
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    train_counts = np.bincount(train.labels, minlength=10)
    test_counts = np.bincount(test.labels, minlength=10)
    assert train_counts[:2].tolist() == [5923, 6742] and train_counts.sum() == 60000
    assert test_counts[:2].tolist() == [980, 1135] and test_counts.sum() == 10000
    assert to_unit_interval(train.images).mean() == pytest.approx(0.1307, abs=1e-4)


def test_real_binarized_mnist_npz(shared_data_dir):
    splits = load_splits(str(shared_data_dir / "binarized-mnist" / "binarized_mnist.npz"))
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (50000, 784) and test.images.shape == (10000, 784)
    assert train.labels is None and test.labels is None
    # Stored binary data becomes uint8 {0, 255}, i.e. exactly {0, 1} after scaling.
    assert np.unique(to_unit_interval(train.images)).tolist() == [0.0, 1.0]
    assert np.unique(to_unit_interval(test.images)).tolist() == [0.0, 1.0]


def test_real_frey_faces_split_is_deterministic(shared_data_dir):
    path = str(shared_data_dir / "frey-face" / "frey_faces.npz")
    first = load_splits(path, test_fraction=0.2, seed=3)
    again = load_splits(path, test_fraction=0.2, seed=3)
    other = load_splits(path, test_fraction=0.2, seed=4)
    assert first["train"].images.shape == (1572, 28, 20)
    assert first["test"].images.shape == (393, 28, 20)
    assert first["train"].labels is None
    np.testing.assert_array_equal(first["test"].images, again["test"].images)
    assert not np.array_equal(first["test"].images, other["test"].images)
    # The two splits partition the 1965 faces: same total intensity as the file.
    with np.load(path) as npz:
        total = npz["images"].sum(dtype=np.int64)
    split_total = sum(first[k].images.sum(dtype=np.int64) for k in ("train", "test"))
    assert split_total == total


# ------------------------------------------------------------------------------------------
# IDX folders
# ------------------------------------------------------------------------------------------


def test_idx_folder_round_trip(idx_folder):
    splits = load_splits(str(idx_folder.path))
    np.testing.assert_array_equal(splits["train"].images, idx_folder.arrays["train_images"])
    np.testing.assert_array_equal(splits["test"].labels, [3, 1, 4, 1, 5])
    assert splits["train"].labels.dtype == np.int64


@pytest.mark.parametrize("payload", [b"plain bytes", b"\x1f\x8b\x08\x00 broken deflate"])
def test_idx_corrupt_gzip(tmp_path, payload):
    for name in IDX_NAMES.values():
        (tmp_path / (name + ".gz")).write_bytes(payload)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz .*corrupt or not gzip"):
        load_splits(str(tmp_path))


def test_idx_wrong_magic(idx_folder):
    overwrite(idx_folder, "train_images", idx_bytes(np.zeros(12, np.uint8)))  # a labels file
    with pytest.raises(DataError, match=r"magic number 0x00000801, expected 0x00000803"):
        load_splits(str(idx_folder.path))


def test_idx_truncated(idx_folder):
    overwrite(idx_folder, "test_images", idx_bytes(idx_folder.arrays["test_images"])[:-7])
    with pytest.raises(DataError, match=r"is truncated: header says \(5, 4, 3\) = 60 bytes"):
        load_splits(str(idx_folder.path))


def test_idx_reads_no_more_than_its_files_hold_nor_its_header_declares(idx_folder):
    """A header declaring 2**31 images over 60 bytes, and a gzip inflating to 64 MB behind a
    header of 60 bytes: each refused in one line, holding a few MB at most (the file was
    read whole, and a gzip inflated whole, before the header was checked)."""
    huge = struct.pack(">4I", 0x0803, 2**31, 4, 3) + bytes(60)
    inflating = idx_bytes(idx_folder.arrays["test_images"]) + bytes(64 * 2**20)
    for payload, fragment in [
        (huge, r"is truncated: header says \(2147483648, 4, 3\)"),
        (inflating, r"has trailing bytes: header says \(5, 4, 3\) = 60 bytes of data, found more"),
    ]:
        overwrite(idx_folder, "test_images", payload)
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match=fragment):
                load_splits(str(idx_folder.path))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20 * 2**20, peak


def test_idx_label_count_mismatch(idx_folder):
    overwrite(idx_folder, "train_labels", idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match=r"has 11 labels but .* has 12 images"):
        load_splits(str(idx_folder.path))


def test_idx_missing_files(idx_folder, tmp_path_factory):
    idx_path(idx_folder, "test_labels").unlink()
    with pytest.raises(DataError, match=r"Missing t10k-labels-idx1-ubyte\(\.gz\) in "):
        load_splits(str(idx_folder.path))
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DataError, match=r"No MNIST IDX files in .*train-images-idx3-ubyte"):
        load_splits(str(empty))


@pytest.mark.parametrize("dataset", ["/no/such/folder", "missing.npz", "./relative"])
def test_missing_paths(dataset):
    with pytest.raises(DataError, match=r"not found: .*Pass --dataset digits"):
        load_splits(dataset)


# ------------------------------------------------------------------------------------------
# npz files and value checks
# ------------------------------------------------------------------------------------------


def test_npz_keras_layout(tmp_path):
    x_train = np.random.default_rng(0).random((6, 5, 4, 1)).astype(np.float64)
    path = save_npz(
        tmp_path,
        x_train=x_train,
        x_test=x_train[:2],
        y_train=np.arange(6).reshape(6, 1),  # (N, 1) as keras.datasets.cifar10
        y_test=np.array([0, 1]),
    )
    splits = load_splits(path)
    assert splits["train"].images.shape == (6, 5, 4)  # grey channel axis dropped
    assert splits["train"].images.dtype == np.float32
    np.testing.assert_allclose(splits["train"].images, x_train[..., 0], rtol=1e-6)
    assert splits["train"].labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_npz_unknown_keys(tmp_path):
    path = save_npz(tmp_path, features=np.zeros((3, 2)), targets=np.zeros(3))
    with pytest.raises(DataError, match=r"Unrecognised arrays \['features', 'targets'\]"):
        load_splits(path)


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"Cannot read .*broken\.npz"):
        load_splits(str(path))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[-1.0, 0.5], [3.0, 0.0]]), r"values in \[-1\.0, 3\.0\], expected \[0, 1\]"),
        (np.array([[np.nan, 0.5], [0.0, 0.0]]), r"contain NaN"),
        (np.array([[np.inf, 0.5], [0.0, 0.0]]), r"contain inf"),
        (np.array([[300, 5], [0, 0]]), r"integer values in \[0, 300\], expected 0\.\.255"),
    ],
)
def test_npz_bad_values(tmp_path, bad, message):
    path = save_npz(tmp_path, train=bad, test=bad)
    with pytest.raises(DataError, match=message):
        load_splits(path)


def test_integer_binary_data_becomes_uint8_0_255(tmp_path):
    x = np.array([[0, 1], [1, 1]], dtype=np.int64)
    splits = load_splits(save_npz(tmp_path, train=x, test=x))
    assert splits["train"].images.dtype == np.uint8
    assert splits["train"].images.tolist() == [[0, 255], [255, 255]]


def test_error_messages_are_one_line(tmp_path):
    path = save_npz(tmp_path, foo=np.zeros((3, 2)))
    with pytest.raises(DataError) as error:
        load_splits(path)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------
# digits and TFDS
# ------------------------------------------------------------------------------------------


def test_digits():
    splits = load_splits("digits", test_fraction=0.2, seed=0)
    train, test = splits["train"], splits["test"]
    assert len(train.images) + len(test.images) == 1797 and len(test.images) == 360
    assert train.images.shape[1:] == (8, 8) and train.images.dtype == np.float32
    assert train.images.min() >= 0 and max(train.images.max(), test.images.max()) == 1.0
    # Stratified: every class has about 20% of its examples in test.
    ratios = np.bincount(test.labels) / (np.bincount(test.labels) + np.bincount(train.labels))
    np.testing.assert_allclose(ratios, 0.2, atol=0.01)
    again = load_splits("digits", test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again["test"].labels, test.labels)


def test_a_path_object_is_a_dataset_and_a_config_is_refused_in_one_line(idx_folder):
    as_text = load_splits(str(idx_folder.path))
    as_path = load_splits(idx_folder.path)
    np.testing.assert_array_equal(as_path["test"].images, as_text["test"].images)
    with pytest.raises(TypeError) as error:
        load_splits(DataConfig("digits"))
    message = str(error.value)
    assert "\n" not in message and message.endswith("Received: dataset of type DataConfig")
    assert "make_datasets" in message


def test_tfds_mnist_with_mock_data():
    with tfds.testing.mock_data(num_examples=5):
        splits = load_splits("mnist")
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (5, 28, 28) and test.images.shape == (5, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64


def test_tfds_unknown_name():
    with pytest.raises(DataError, match=r"Dataset 'not_a_dataset' not found") as error:
        load_splits("not_a_dataset")
    assert "\n" not in str(error.value)


def test_tfds_download_failure(monkeypatch):
    class OfflineBuilder:
        info = types.SimpleNamespace(features={"image": None}, splits={})

        def download_and_prepare(self):
            raise ConnectionError("Failed to resolve 'storage.googleapis.com'\ndetails")

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: OfflineBuilder())
    with pytest.raises(
        DataError, match=r"TFDS cannot load 'mnist' \(ConnectionError: Failed to resolve"
    ) as error:
        load_splits("mnist")
    assert "\n" not in str(error.value)


def test_tfds_test_split_choice():
    assert data.pick_test_split(["train", "test", "validation"]) == "test"
    assert data.pick_test_split(["train", "validation"]) == "validation"
    with pytest.raises(DataError, match=r"no 'test' or 'validation'"):
        data.pick_test_split(["train"], "some_set")


# ------------------------------------------------------------------------------------------
# Pipelines
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grey_npz(tmp_path_factory):
    """256 train / 37 test grey 6x5 images with labels, and the same without labels."""
    rng = np.random.default_rng(7)
    x_train = rng.integers(0, 256, (256, 6, 5), dtype=np.uint8)
    x_test = rng.integers(0, 256, (37, 6, 5), dtype=np.uint8)
    y_train, y_test = rng.integers(0, 4, 256), rng.integers(0, 4, 37)
    folder = tmp_path_factory.mktemp("npz")
    labelled = save_npz(
        folder, "labelled.npz", x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test
    )
    unlabelled = save_npz(folder, "unlabelled.npz", x_train=x_train, x_test=x_test)
    return types.SimpleNamespace(
        labelled=labelled, unlabelled=unlabelled, x_train=x_train, x_test=x_test, y_test=y_test
    )


def epoch(dataset: tf.data.Dataset) -> np.ndarray:
    """All images of one pass, concatenated."""
    return np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in dataset])


def sorted_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_train_batches_are_static_and_drop_the_remainder():
    train, test, info = make_datasets(DataConfig("digits"), batch_size=100)
    assert info == data.DatasetInfo("digits", (8, 8), 1437, 360, True, 10)
    assert train.element_spec[0].shape.as_list() == [100, 8, 8]
    assert train.element_spec[0].dtype == tf.float32 and train.element_spec[1].dtype == tf.int64
    sizes = [int(x.shape[0]) for x, _ in train]
    assert sizes == [100] * 14  # 1437 // 100; 37 examples skipped this epoch
    assert test.element_spec[0].shape.as_list() == [None, 8, 8]


def test_test_pipeline_yields_every_example_once(grey_npz):
    _, test, info = make_datasets(DataConfig(grey_npz.labelled), batch_size=16)
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in test])
    assert [len(x) for x in xs] == [16, 16, 5] and info.num_test == 37
    x = np.concatenate(xs)
    np.testing.assert_allclose(x, grey_npz.x_test / 255.0, rtol=1e-6)
    assert x.sum(dtype=np.float64) == pytest.approx(grey_npz.x_test.sum() / 255.0, rel=1e-6)
    np.testing.assert_array_equal(np.concatenate(ys), grey_npz.y_test)


def test_shuffling_is_seeded_and_changes_every_epoch(grey_npz):
    config = DataConfig(grey_npz.labelled)
    train_a, _, _ = make_datasets(config, batch_size=32, seed=5)
    train_b, _, _ = make_datasets(config, batch_size=32, seed=5)
    train_c, _, _ = make_datasets(config, batch_size=32, seed=6)
    first_a, second_a = epoch(train_a), epoch(train_a)
    np.testing.assert_array_equal(first_a, epoch(train_b))
    np.testing.assert_array_equal(second_a, epoch(train_b))
    assert not np.array_equal(first_a, second_a)
    assert not np.array_equal(first_a, epoch(train_c))
    # 256 = 8 batches of 32: each epoch is a permutation of the whole training set.
    np.testing.assert_allclose(sorted_rows(first_a), sorted_rows(grey_npz.x_train / 255.0))


def test_dynamic_binarization(grey_npz):
    config = DataConfig(grey_npz.unlabelled, binarization="dynamic")
    train, test, _ = make_datasets(config, batch_size=32, seed=1)
    first, second = epoch(train), epoch(train)
    assert set(np.unique(first)) == {0.0, 1.0}
    # Same images (no remainder dropped), different draws.
    assert not np.array_equal(sorted_rows(first), sorted_rows(second))
    # Mean matches the grey mean within 4 binomial standard errors.
    p = grey_npz.x_train / 255.0
    standard_error = np.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(first.mean() - p.mean()) < 4 * standard_error
    # Deterministic for a seed: a second pipeline repeats both epochs.
    again, _, _ = make_datasets(config, batch_size=32, seed=1)
    np.testing.assert_array_equal(first, epoch(again))
    np.testing.assert_array_equal(second, epoch(again))
    # New noise every epoch, not just new images under the same noise: with shuffle_buffer=1
    # the order is fixed, and the draws must still change.
    unshuffled = DataConfig(grey_npz.unlabelled, binarization="dynamic", shuffle_buffer=1)
    fixed_order, _, _ = make_datasets(unshuffled, batch_size=32, seed=1)
    assert not np.array_equal(epoch(fixed_order), epoch(fixed_order))
    # Test set: one fixed draw.
    test_first = epoch(test)
    assert set(np.unique(test_first)) == {0.0, 1.0}
    np.testing.assert_array_equal(test_first, epoch(test))


def test_static_binarization_is_fixed(grey_npz):
    config = DataConfig(grey_npz.unlabelled, binarization="static")
    train, test, _ = make_datasets(config, batch_size=32, seed=1)
    first, second = epoch(train), epoch(train)
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)  # reshuffled...
    np.testing.assert_array_equal(sorted_rows(first), sorted_rows(second))  # ...same draws
    p = grey_npz.x_train / 255.0
    assert abs(first.mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / p.size
    np.testing.assert_array_equal(epoch(test), epoch(test))


def test_binarizing_binary_data_is_a_no_op(tmp_path):
    x = (np.random.default_rng(0).random((64, 10)) < 0.3).astype(np.uint8)
    path = save_npz(tmp_path, train=x, test=x)
    for binarization in ("static", "dynamic"):
        train, test, _ = make_datasets(DataConfig(path, binarization=binarization), 16)
        np.testing.assert_array_equal(sorted_rows(epoch(train)), sorted_rows(x))
        np.testing.assert_array_equal(epoch(test), x)


def test_elements_without_labels_are_bare_tensors(grey_npz):
    train, test, info = make_datasets(DataConfig(grey_npz.unlabelled), batch_size=32)
    assert isinstance(train.element_spec, tf.TensorSpec)
    assert isinstance(test.element_spec, tf.TensorSpec)
    assert info.has_labels is False and info.num_classes is None
    assert info.data_shape == (6, 5) and info.num_train == 256


def test_batch_size_larger_than_training_set(grey_npz):
    with pytest.raises(DataError, match=r"batch_size=300 exceeds the 256 training examples"):
        make_datasets(DataConfig(grey_npz.unlabelled), batch_size=300)


def test_prepared_splits_draws_binarization_as_the_pipelines_do():
    grey = data.prepared_splits(DataConfig("digits"), seed=5)
    static = data.prepared_splits(DataConfig("digits", binarization="static"), seed=5)
    dynamic = data.prepared_splits(DataConfig("digits", binarization="dynamic"), seed=5)
    # static: a fixed draw for both splits; dynamic: only the test split is drawn up front
    for name in ("train", "test"):
        assert set(np.unique(static[name].images)) == {0, 255}
    np.testing.assert_array_equal(dynamic["train"].images, grey["train"].images)
    np.testing.assert_array_equal(dynamic["test"].images, static["test"].images)
    assert len(np.unique(grey["train"].images)) > 2
    # the same seed gives the same draw, another seed another one
    again = data.prepared_splits(DataConfig("digits", binarization="static"), seed=5)
    other = data.prepared_splits(DataConfig("digits", binarization="static"), seed=6)
    np.testing.assert_array_equal(again["train"].images, static["train"].images)
    assert (other["train"].images != static["train"].images).mean() > 0.05
    # only what is asked for
    assert list(data.prepared_splits(DataConfig("digits"), splits=["test"])) == ["test"]
    with pytest.raises(ValueError, match="validation"):
        data.prepared_splits(DataConfig("digits"), splits=["validation"])
