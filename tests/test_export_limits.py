"""A served decoder's `sample` signature is bounded (issue 12, item 1): at most
`max_samples_per_request` rows per request (10,000 by default, `--max-samples-per-request` at
export, recorded in export.json); a larger request is refused before anything is allocated."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_exit_2_and_unchanged, console_script, run_command

from keras_vae.cli import main
from keras_vae.export import export_run
from keras_vae.signatures import DEFAULT_MAX_SAMPLES_PER_REQUEST, MAX_SAMPLES_KEY

CAP = 50


@pytest.fixture(scope="module")
def capped(tiny_run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("capped") / "export"
    assert (
        main(["export", str(tiny_run_dir), "--out", str(out), f"--max-samples-per-request={CAP}"])
        == 0
    )
    return out


def sample_signature(out: Path):
    return tf.saved_model.load(str(out / "decoder" / "1")).signatures["sample"]


def test_the_cap_is_recorded_and_enforced(capped):
    record = json.loads((capped / "export.json").read_text())
    assert record[MAX_SAMPLES_KEY] == CAP
    sample = sample_signature(capped)
    seed = tf.constant(0, tf.int32)
    assert sample(num_samples=tf.constant(CAP), seed=seed)["z"].shape[0] == CAP
    for too_many in (CAP + 1, 10_000_000, 2**31 - 1):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=rf"<= {CAP}.*max_samples_per_request"
        ):
            sample(num_samples=tf.constant(too_many), seed=seed)


def test_default_cap_is_ten_thousand(tiny_run_dir, tmp_path):
    out = tmp_path / "export"
    record = export_run(tiny_run_dir, out)
    assert record[MAX_SAMPLES_KEY] == DEFAULT_MAX_SAMPLES_PER_REQUEST == 10_000
    sample = sample_signature(out)
    with pytest.raises(tf.errors.InvalidArgumentError, match="<= 10000"):
        sample(num_samples=tf.constant(10_001), seed=tf.constant(0))


@pytest.mark.slow
def test_saved_model_cli_is_refused_above_the_cap(capped, tmp_path):
    """As TF Serving runs it: a process with only TensorFlow, through `saved_model_cli run`."""
    cli = console_script("saved_model_cli")  # it comes with TensorFlow
    np.save(tmp_path / "seed.npy", np.int32(3))

    def run(n: int) -> subprocess.CompletedProcess:
        np.save(tmp_path / "n.npy", np.int32(n))
        command = [
            cli, "run", "--dir", str(capped / "decoder" / "1"), "--tag_set", "serve",
            "--signature_def", "sample",
            "--inputs", f"num_samples={tmp_path / 'n.npy'};seed={tmp_path / 'seed.npy'}",
            "--outdir", str(tmp_path / f"out{n}"),
        ]  # fmt: skip
        return run_command(command, env={"TF_CPP_MIN_LOG_LEVEL": "3"})

    refused = run(CAP + 1)
    assert refused.returncode != 0
    assert f"num_samples must be <= {CAP}" in refused.stderr
    accepted = run(CAP)
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert np.load(tmp_path / f"out{CAP}" / "z.npy").shape == (CAP, 2)


@pytest.mark.parametrize("value", ["0", "-1", str(2**31), "1e3", "nan", "ten"])
def test_cli_refuses_bad_caps_before_writing(tiny_run_dir, tmp_path, capsys, value):
    out = tmp_path / "export"
    argv = ["export", tiny_run_dir, "--out", out, "--max-samples-per-request", value]
    line = assert_exit_2_and_unchanged(argv, [tiny_run_dir, tmp_path], capsys)
    assert "max-samples-per-request" in line.replace("_", "-"), line
    assert not out.exists()


def test_the_samples_drawn_under_the_cap_are_unchanged(capped, tiny_run_dir):
    """The check adds no randomness: the same seed still gives the same rows as before."""
    from keras_vae.latent_draws import prior_noise

    sample = sample_signature(capped)
    got = sample(num_samples=tf.constant(7), seed=tf.constant(11))["z"].numpy()
    np.testing.assert_array_equal(got, prior_noise(tf.constant(7), tf.constant(11), 2).numpy())
