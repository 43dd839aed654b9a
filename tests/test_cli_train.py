"""`keras-vae train`: bad input fails with one line and exit code 2 before writing anything,
and a real run on the bundled digits writes a run directory whose numbers hold up."""

import gzip
import json
import math
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import add_training_callback, assert_exit_2_and_unchanged, assert_one_line_error

from keras_vae import __version__
from keras_vae.cli import build_parser, main
from keras_vae.cli.train import config_from_args
from keras_vae.config import Config, DataConfig
from keras_vae.data import make_datasets

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def keras_vae_command() -> list[str]:
    """The installed console script, beside this Python (falls back to `python -m`)."""
    script = pathlib.Path(sys.executable).with_name("keras-vae")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_vae.cli"]


# ------------------------------------------------------------------------------ bad input
def corrupt_npz(folder: pathlib.Path) -> str:
    path = folder / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    return str(path)


def wrong_arrays_npz(folder: pathlib.Path) -> str:
    path = folder / "wrong.npz"
    np.savez(path, pixels=np.zeros((4, 3, 3), np.uint8))
    return str(path)


def corrupt_idx_folder(folder: pathlib.Path) -> str:
    """The four MNIST file names; the training images truncated inside their data."""
    mnist = folder / "mnist"
    mnist.mkdir()
    header = bytes([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28])
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    for name, magic in [
        ("train-labels-idx1-ubyte.gz", 1),
        ("t10k-images-idx3-ubyte.gz", 3),
        ("t10k-labels-idx1-ubyte.gz", 1),
    ]:
        (mnist / name).write_bytes(gzip.compress(bytes([0, 0, 8, magic]) + b"garbage"))
    return str(mnist)


def not_gzip_idx_folder(folder: pathlib.Path) -> str:
    mnist = folder / "mnist_bad_gz"
    mnist.mkdir()
    for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (mnist / f"{name}-ubyte.gz").write_bytes(b"\x1f\x8b definitely not gzip")
    return str(mnist)


BAD_FLAGS = {
    "unknown-likelihood": (["--likelihood", "poisson"], ["--likelihood", "'poisson'", "bernoulli"]),
    "unknown-estimator": (["--estimator", "mc"], ["--estimator", "analytic_kl", "monte_carlo"]),
    "num-samples-0": (["--num-samples", "0"], ["num_samples", "[1, 10000]"]),
    "beta-negative": (["--beta", "-1"], ["beta", ">= 0", "beta=-1.0"]),
    "latent-dim-0": (["--latent-dim", "0"], ["latent_dim", "[1, 65536]"]),
    "epochs-0": (["--epochs", "0"], ["epochs", "[1, 2147483647]"]),
    "epochs-not-int": (["--epochs", "two"], ["--epochs", "'two'"]),
    "learning-rate-0": (["--learning-rate", "0"], ["learning_rate", "positive"]),
    "likelihood-scale": (["--likelihood-scale", "-2"], ["likelihood_scale", "learned"]),
    "hidden-units": (["--hidden-units", "400,0"], ["--hidden-units", "400,0"]),
    "binarize-gaussian": (
        ["--binarization", "dynamic", "--likelihood", "gaussian"],
        ["binarization='dynamic'", "likelihood='gaussian'"],
    ),
    "batch-too-large": (["--batch-size", "5000"], ["batch_size=5000", "1437"]),
    # model families: a combination without the closed form it needs, or a part's size
    # without its part, or out of range
    "iwae-analytic-kl": (
        ["--objective", "iwae", "--estimator", "analytic_kl"],
        ["iwae", "'analytic_kl'", "--estimator monte_carlo"],
    ),
    "vamp-analytic-kl": (
        ["--prior", "vamp", "--estimator", "analytic_kl"],
        ["closed-form KL", "analytic_entropy or monte_carlo"],
    ),
    "mixture-analytic-kl": (
        ["--prior", "mixture", "--posterior", "iaf", "--estimator", "analytic_kl"],
        ["closed-form KL", "use --estimator monte_carlo."],
    ),
    "iaf-analytic-entropy": (
        ["--posterior", "iaf", "--estimator", "analytic_entropy"],
        ["closed-form entropy", "--estimator monte_carlo"],
    ),
    "flow-steps-without-iaf": (["--flow-steps", "2"], ["--posterior iaf", "flow_steps=2"]),
    "flow-steps-0": (["--posterior", "iaf", "--flow-steps", "0"], ["flow_steps", "[1, 64]"]),
    "flow-units-0": (
        ["--posterior", "iaf", "--flow-hidden-units", "8,0"],
        ["--flow-hidden-units", "8,0"],
    ),
    "prior-components-0": (
        ["--prior", "vamp", "--prior-components", "0"],
        ["prior_components", "[1, 100000]"],
    ),
    "prior-components-without-prior": (
        ["--prior-components", "5"],
        ["--prior vamp", "prior_components=5"],
    ),
    "unknown-prior": (["--prior", "flow"], ["--prior", "'flow'", "vamp", "mixture"]),
    "missing-output": (None, ["--output"]),
}

BAD_DATA = {
    "missing-npz": (lambda d: str(d / "nowhere" / "data.npz"), ["not found", "data.npz"]),
    "missing-folder": (lambda d: str(d / "no_such_folder") + "/", ["not found"]),
    "corrupt-npz": (corrupt_npz, ["corrupt.npz"]),
    "npz-wrong-arrays": (wrong_arrays_npz, ["Unrecognised arrays", "pixels"]),
    "idx-truncated": (corrupt_idx_folder, ["train-images-idx3-ubyte.gz", "truncated"]),
    "idx-not-gzip": (not_gzip_idx_folder, ["re-download"]),
    "unknown-tfds-name": (lambda d: "no_such_dataset_xyz", ["no_such_dataset_xyz"]),
}


@pytest.mark.parametrize("name", list(BAD_FLAGS))
def test_bad_flags_fail_with_one_line_and_write_nothing(name, tmp_path, capsys):
    extra, fragments = BAD_FLAGS[name]
    output = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--epochs", "1"]
    argv += ["--output", str(output)] + extra if extra is not None else []
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, *fragments)
    assert not output.exists()


@pytest.mark.parametrize("name", list(BAD_DATA))
def test_missing_or_corrupt_data_fails_with_one_line_and_writes_nothing(name, tmp_path, capsys):
    make_dataset, fragments = BAD_DATA[name]
    dataset = make_dataset(tmp_path)
    output = tmp_path / "run"
    argv = ["train", "--dataset", dataset, "--output", output]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "keras-vae train: error:", *fragments)
    assert not output.exists()


def test_failed_run_leaves_an_existing_run_dir_unchanged(tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()  # empty: a folder train may write into, but bad data stops it first
    argv = ["train", "--dataset", corrupt_npz(tmp_path), "--output", output]
    assert_exit_2_and_unchanged(argv, [output], capsys, "corrupt.npz")
    assert list(output.iterdir()) == []  # not even the manifest


def test_help_lists_every_flag_of_the_issue(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flags = [
        *("--dataset", "--data-dir", "--epochs", "--batch-size", "--latent-dim"),
        *("--architecture", "--hidden-units", "--activation", "--likelihood", "--estimator"),
        *("--num-samples", "--beta", "--learning-rate", "--seed", "--output"),
    ]
    for flag in flags:
        assert flag in text, flag
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-vae {__version__}"


@pytest.mark.slow
def test_console_script_reports_bad_data_and_its_version(tmp_path):
    output = tmp_path / "run"
    result = subprocess.run(
        [*keras_vae_command(), "train", "--dataset", corrupt_npz(tmp_path), "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "keras-vae train: error:", "corrupt.npz")
    assert "Traceback" not in result.stderr
    assert not output.exists()
    version = subprocess.run(
        [*keras_vae_command(), "--version"], capture_output=True, text=True, timeout=300
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"keras-vae {__version__}"


# ------------------------------------------------------------------------------ a real run
TRAIN_ARGV = ["train", "--dataset", "digits", "--epochs", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """`keras-vae train --dataset digits --epochs 2 --output DIR`, as a user types it."""
    output = tmp_path_factory.mktemp("cli") / "run"
    result = subprocess.run(
        [*keras_vae_command(), *TRAIN_ARGV, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


@pytest.mark.slow
def test_train_writes_model_config_and_metrics(digits_run):
    output, result = digits_run
    assert {"config.json", "metrics.json", "model.keras"} <= {p.name for p in output.iterdir()}
    assert "Epoch 2/2" in result.stdout  # Keras's progress output
    expected = config_from_args(build_parser().parse_args([*TRAIN_ARGV, "--output", "x"]))
    assert Config.from_json((output / "config.json").read_text()) == expected

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert metrics["examples_per_second"] > 0
    for split in ("train", "test"):
        elbo, reconstruction, kl = (
            metrics[f"{split}_{k}"] for k in ("elbo", "reconstruction", "kl")
        )
        assert math.isfinite(elbo) and elbo < 0
        assert kl > 0 and reconstruction < 0
        # Means of 1437 / 360 float32 values of size <= |reconstruction|: rounding bound.
        tolerance = metrics[f"num_{split}"] * FLOAT32_EPS * abs(reconstruction)
        assert abs(elbo - (reconstruction - kl)) <= tolerance
    # 8x8 digits in [0, 1] under a Bernoulli decoder: the ELBO cannot exceed minus the sum of
    # the pixels' binary entropies (-13.7 nats on average), and 22 Adam steps leave the
    # untrained model's -64 log 2 = -44.4 nats well behind (measured: -31.8 for seeds 3, 4).
    assert -64 * math.log(2) + 5 < metrics["test_elbo"] < -13
    assert len(metrics["history"]["val_elbo"]) == 2


@pytest.mark.slow
def test_saved_model_reproduces_the_reported_test_metrics(digits_run):
    """The reloaded model's evaluate() gives test_kl exactly (closed form, no noise) and
    test_elbo within Monte Carlo error (4.5 standard errors of the difference of two
    independent single-draw means)."""
    output, _ = digits_run
    metrics = json.loads((output / "metrics.json").read_text())
    config = Config.from_json((output / "config.json").read_text())
    model = keras.saving.load_model(output / "model.keras")
    _, test_data, info = make_datasets(
        DataConfig(**vars(config.data)), config.training.batch_size, config.runtime.seed
    )
    result = model.evaluate(test_data, return_dict=True, verbose=0)
    np.testing.assert_allclose(result["kl"], metrics["test_kl"], rtol=1e-5)

    x = np.concatenate([batch[0] for batch in test_data.as_numpy_iterator()])
    assert len(x) == info.num_test == metrics["num_test"]
    draws = np.stack([model.elbo_terms(x).elbo.numpy() for _ in range(8)])  # [8, num_test]
    within_example_var = draws.var(axis=0, ddof=1).mean()
    se_difference = math.sqrt(2 * within_example_var / len(x))
    assert abs(result["elbo"] - metrics["test_elbo"]) < 4.5 * se_difference
    # The mean of 8 more draws is a sharper reference: SE^2 = var/N (1 + 1/8).
    se_mean = math.sqrt(within_example_var / len(x) * (1 + 1 / 8))
    assert abs(draws.mean() - metrics["test_elbo"]) < 4.5 * se_mean


def test_a_diverged_training_stops_in_one_line_exit_1_writing_no_model(tmp_path, capsys):
    """A learning rate of 1e8 makes epoch 1's loss NaN. train used to go on to the last epoch,
    write a model.keras of NaN weights (which every other command refuses) and exit 0."""
    run_dir = tmp_path / "run"
    flags = ["--dataset=digits", "--epochs=5", "--learning-rate=1e8", "--verbose=0"]
    assert main(["train", f"--output={run_dir}", *flags]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "keras-vae train: error: The training loss of epoch 1 is nan: the model diverged (no "
        "epoch was backed up). Lower --learning-rate (or check the data) and train again with "
        "--overwrite."
    ]
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()


def test_a_run_that_diverges_later_keeps_its_last_finite_epoch_backed_up(
    tmp_path, monkeypatch, capsys
):
    """The check runs before the backup: epoch 3's NaN weights are never saved over epoch 2."""
    from keras_vae import resume

    class LossBecomesNaN(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                logs["loss"] = float("nan")

    add_training_callback(monkeypatch, LossBecomesNaN())
    run_dir = tmp_path / "run"
    assert main(["train", f"--output={run_dir}", "--dataset=digits", "--epochs=6"]) == 1
    assert "epoch 3 is nan: the model diverged (the backup keeps epochs 1-2)" in (
        capsys.readouterr().err
    )
    assert resume.read_progress(run_dir / "backup" / "state.npz")["epoch"] == 2
    assert not (run_dir / "model.keras").exists()
