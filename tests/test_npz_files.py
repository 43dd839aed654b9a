"""Every .npz keras-vae reads (a --dataset file, a run's backup/state.npz, its
aggregate_sampler.npz) goes through `keras_vae.npz_files.read_npz`: a header declaring more
than its member holds is refused before anything that size is allocated (np.load allocated
29 GiB for a 1 KB file and died with a traceback), as are pickled objects, members that are not
arrays, truncated data and, in keras-vae's own files, compressed members.
"""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from helpers import assert_exit_2_and_unchanged

from keras_vae.npz_files import read_npz
from keras_vae.run_paths import RunDirError

HUGE_SHAPE = (10_000_000, 784)  # float32: 29 GiB declared


def npy_bytes(header: dict, data: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy member with `header` (descr, fortran_order, shape) written as is, then `data`."""
    buffer = io.BytesIO()
    write = {
        (1, 0): np.lib.format.write_array_header_1_0,
        (2, 0): np.lib.format.write_array_header_2_0,
    }
    write[version](buffer, header)
    return buffer.getvalue() + data


def write_npz(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def float32_header(shape) -> dict:
    return {"descr": "<f4", "fortran_order": False, "shape": shape}


def test_it_reads_what_numpy_writes_exactly(tmp_path):
    arrays = {
        "images": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "scores": np.linspace(-1, 1, 5, dtype=np.float64),
        "labels": np.array([3, 1], dtype=np.int64),
        "metadata": np.array('{"format_version": 1}'),
        "empty": np.zeros((0, 7), np.float32),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        read = read_npz(path)
        assert sorted(read) == sorted(arrays)
        for name, array in arrays.items():
            assert read[name].dtype == array.dtype and np.array_equal(read[name], array), name
    version_2 = tmp_path / "v2.npz"
    data = np.arange(3, dtype="<f4")
    write_npz(version_2, {"x.npy": npy_bytes(float32_header((3,)), data.tobytes(), (2, 0))})
    assert np.array_equal(read_npz(version_2)["x"], data)


@pytest.mark.parametrize(
    "members, fragment",
    [
        ({"x.npy": npy_bytes(float32_header(HUGE_SHAPE), b"\0" * 1000)}, "declares shape"),
        ({"x.npy": npy_bytes(float32_header((100_000, 784)), b"\0" * 1000)}, "holds 1,000"),
        ({"x.npy": npy_bytes(float32_header((4,)), b"\0" * 12)}, "holds 12 bytes"),
        ({"x.npy": npy_bytes(float32_header((4,)), b"\0" * 20)}, "holds 20 bytes"),
        ({"x.npy": npy_bytes({**float32_header((1,)), "descr": "|O"}, b"\0" * 8)}, "pickle"),
        ({"x.npy": b"\x93NUMPY\x03\x00" + b"\0" * 60}, r"format \(3, 0\)"),
        ({"x.npy": b"not an array at all"}, "magic"),
        ({"notes.txt": b"hello"}, "is not an array"),
    ],
    ids=["huge", "large", "truncated", "overlong", "object", "version", "magic", "not_npy"],
)
def test_a_damaged_or_hostile_member_is_refused_before_it_is_allocated(members, fragment, tmp_path):
    path = tmp_path / "bad.npz"
    write_npz(path, members)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=fragment):
            read_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # np.load allocated the 313 MB (large) or 29 GiB (huge) declared


def test_own_files_must_be_stored_and_a_non_zip_is_a_value_error(tmp_path):
    path = tmp_path / "state.npz"
    np.savez_compressed(path, x=np.zeros(10))
    with pytest.raises(ValueError, match="is compressed"):
        read_npz(path, stored_only=True)
    assert read_npz(path)["x"].shape == (10,)
    plain = tmp_path / "plain.npz"
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npy").rename(plain)  # a .npy named .npz: np.load returned an array
    with pytest.raises(ValueError, match="zip"):
        read_npz(plain)
    with pytest.raises(ValueError, match="is not a regular file"):
        read_npz(tmp_path)  # a folder
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # opening it to read blocked until a writer came
    with pytest.raises(ValueError, match="is not a regular file"):
        read_npz(fifo)


def test_a_hostile_dataset_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    data = tmp_path / "images.npz"
    write_npz(data, {"images.npy": npy_bytes(float32_header(HUGE_SHAPE), b"\0" * 1000)})
    argv = ["train", "--dataset", data, "--epochs", "1", "--output", tmp_path / "run"]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "images.npz", "declares shape")


def test_a_hostile_state_file_is_a_run_dir_error(tmp_path):
    from keras_vae.resume import read_progress

    path = tmp_path / "state.npz"
    metadata = np.array('{"variables": [], "epoch": 3}')
    buffer = io.BytesIO()
    np.save(buffer, metadata)
    write_npz(
        path,
        {
            "metadata.npy": buffer.getvalue(),
            "v0.npy": npy_bytes(float32_header(HUGE_SHAPE), b"\0" * 100),
        },
    )
    with pytest.raises(RunDirError, match="Cannot read the state .*declares shape"):
        read_progress(path)
