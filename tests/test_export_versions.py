"""Version folders and atomicity: next free version, refused overwrites change nothing,
--overwrite replaces, a killed export leaves no version, bad input exits 2 before writing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_exit_2_and_unchanged,
    console_script,
    run_command,
    train_run,
    tree_digest,
)

from keras_vae.export import VersionExistsError, export_run, list_versions
from keras_vae.export.layout import resolve_version
from keras_vae.export.transaction import STAGING_PREFIX
from keras_vae.run_reader import RunDirError, load_model


@pytest.fixture(scope="module")
def other_run(tmp_path_factory, mnist_run):
    """The same architecture with other weights (one epoch from another seed, on the same
    images), to see which one was exported."""
    config = json.loads((mnist_run / "config.json").read_text())
    config["runtime"]["seed"] = 7
    config["training"].update(epochs=1, jit_compile=False)  # XLA would take longer than it
    path = train_run(tmp_path_factory.mktemp("other_run"), config)
    return path, load_model(path)


def served_x_mean(out, version: int, z: np.ndarray) -> np.ndarray:
    decoder = tf.saved_model.load(str(out / "decoder" / str(version)))
    return decoder.signatures["serving_default"](z=tf.constant(z))["x_mean"].numpy()


def test_versions_count_up_and_history_is_kept(mnist_run, tmp_path):
    out = tmp_path / "export"
    first = export_run(mnist_run, out)
    digest_v1 = tree_digest(out / "decoder" / "1")
    second = export_run(mnist_run, out)
    assert (first["version"], second["version"]) == (1, 2)
    assert list_versions(out / "encoder") == list_versions(out / "decoder") == [1, 2]
    assert tree_digest(out / "decoder" / "1") == digest_v1  # an old version is never touched
    record = json.loads((out / "export.json").read_text())
    assert record["version"] == 2
    assert [h["version"] for h in record["history"]] == [1, 2]
    assert record["tflite"] is None
    third = export_run(mnist_run, out, version=7)
    assert third["version"] == 7
    assert export_run(mnist_run, out)["version"] == 8  # one above the highest


def test_refused_overwrite_changes_nothing_and_overwrite_replaces(mnist_run, other_run, tmp_path):
    out = tmp_path / "export"
    export_run(mnist_run, out, version=1)
    before = tree_digest(out)
    other_dir, other = other_run
    with pytest.raises(VersionExistsError, match="--overwrite"):
        export_run(other_dir, out, version=1)
    assert tree_digest(out) == before

    z = np.random.default_rng(1).standard_normal((3, other.latent_dim)).astype(np.float32)
    record = export_run(other_dir, out, version=1, overwrite=True)
    assert record["version"] == 1
    np.testing.assert_allclose(served_x_mean(out, 1, z), other.decode(z), rtol=0, atol=1e-5)
    assert list_versions(out / "decoder") == [1]
    history = json.loads((out / "export.json").read_text())["history"]
    assert [h["run_dir"] for h in history] == [str(other_dir.resolve())]
    assert not list(out.glob(f"{STAGING_PREFIX}*"))


def test_encoder_and_decoder_share_version_numbers(tmp_path):
    (tmp_path / "encoder" / "4").mkdir(parents=True)
    (tmp_path / "decoder" / "2").mkdir(parents=True)
    (tmp_path / "decoder" / "notes").mkdir()  # not a version: TF Serving ignores it too
    assert resolve_version(tmp_path, None, overwrite=False) == 5
    with pytest.raises(VersionExistsError):
        resolve_version(tmp_path, 2, overwrite=False)
    assert resolve_version(tmp_path, 2, overwrite=True) == 2


@pytest.mark.parametrize("version", [0, -3, 1.5, True, "2", 2**63, 99999999999999999999])
def test_invalid_versions_are_refused_before_writing(mnist_run, tmp_path, version):
    out = tmp_path / "export"
    with pytest.raises(ValueError, match="version"):
        export_run(mnist_run, out, version=version)
    assert not out.exists()


def test_versions_stay_within_int64(tmp_path):
    """TF Serving's versions are int64: no folder above 2**63 - 1 is written or counted on."""
    (tmp_path / "decoder" / "99999999999999999999").mkdir(parents=True)  # TF Serving ignores it
    assert list_versions(tmp_path / "decoder") == []
    assert resolve_version(tmp_path, None, overwrite=False) == 1
    (tmp_path / "encoder" / str(2**63 - 1)).mkdir(parents=True)
    assert list_versions(tmp_path / "encoder") == [2**63 - 1]
    with pytest.raises(ValueError, match="largest TF Serving accepts"):
        resolve_version(tmp_path, None, overwrite=False)
    assert resolve_version(tmp_path, 3, overwrite=False) == 3


def test_cli_version_above_int64_exits_2_and_writes_nothing(mnist_run, tmp_path, capsys):
    out = tmp_path / "export"
    for version in ("99999999999999999999", str(2**63), "0", "-1"):
        argv = ["export", mnist_run, "--out", out, "--version", version]
        assert_exit_2_and_unchanged(argv, [mnist_run, tmp_path], capsys, "2**63 - 1")
    assert not out.exists()


def test_a_run_without_model_is_refused_before_writing(mnist_run, tmp_path):
    incomplete = tmp_path / "run"
    incomplete.mkdir()
    shutil.copy(mnist_run / "config.json", incomplete / "config.json")
    out = tmp_path / "export"
    with pytest.raises(RunDirError, match="no model.keras"):
        export_run(incomplete, out)
    assert not out.exists()
    with pytest.raises(RunDirError, match="not found"):
        export_run(tmp_path / "missing", out)
    assert not out.exists()


def test_out_that_is_a_file_is_refused(mnist_run, tmp_path):
    target = tmp_path / "export"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        export_run(mnist_run, target)
    assert target.read_text() == "not a folder"


def test_cli_bad_input_exits_2_with_one_line_and_changes_nothing(mnist_run, tmp_path, capsys):
    out = tmp_path / "export"
    export_run(mnist_run, out, version=1)
    before = tree_digest(out)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    shutil.copy(mnist_run / "config.json", incomplete / "config.json")
    cases = [
        ([str(incomplete), "--out", str(out)], "no model.keras"),
        ([str(mnist_run), "--out", str(out), "--version", "1"], "--overwrite"),
        ([str(mnist_run), "--out", str(out), "--version", "0"], "an integer in [1, 2**63 - 1]"),
    ]
    for args, fragment in cases:
        line = assert_exit_2_and_unchanged(["export", *args], [out, incomplete], capsys, fragment)
        assert line.startswith("keras-vae export: error:")
    assert tree_digest(out) == before


@pytest.mark.slow
def test_cli_through_the_console_script(mnist_run, tmp_path):
    out = tmp_path / "export"
    done = run_command([console_script(), "export", mnist_run, "--out", out])
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)
    assert printed["version"] == 1
    assert printed["models"]["decoder"]["signatures"] == ["generate", "sample", "serving_default"]
    assert printed["models"]["encoder"]["max_abs_error"] <= 1e-5
    assert list_versions(out / "decoder") == [1]
