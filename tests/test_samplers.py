"""Issue 26's samplers: `VAE.sample(..., sampler="prior"|"aggregate", temperature=T)`,
``keras-vae fit-sampler``, ``sample --sampler/--temperature`` and ``export --sampler/--temperature``
(the aggregate mixture baked into the decoder's ``sample`` and ``generate`` and the LiteRT
``sample``).

Two real runs of the train job on the bundled 8x8 digits (latent 3), one conditional, each
with a fitted aggregate sampler (full covariance unconditional, diagonal per class
conditional) and exported with it (the conditional one at T = 0.8), LiteRT included.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import TENSORFLOW_ONLY_PRELUDE, assert_exit_2_and_unchanged, run_python, train_run

from keras_vae.aggregate_sampler import SAMPLER_FILE, fit_aggregate_sampler, read_aggregate_sampler
from keras_vae.cli import main
from keras_vae.latent_draws import LatentMixture, draw_latent, row_prior_noise, row_prior_uniform
from keras_vae.model import VAE
from keras_vae.run_reader import load_run, load_split

LATENT = 3
SEEDS = np.array([-(2**63), 2**63 - 1, -1, 0, 7, 7, 123456789, 42], np.int64)
TEMPERATURE = {"plain": 1.0, "conditional": 0.8}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """{"plain", "conditional"}: finished digits runs, each with its aggregate sampler."""
    out = {}
    for name, model in (("plain", {}), ("conditional", {"conditional": True})):
        config = {"model": {"latent_dim": LATENT, "hidden_units": [16], **model}}
        run_dir = train_run(tmp_path_factory.mktemp(name), {**config, "training": {"epochs": 2}})
        covariance = "diag" if model else "full"
        args = ["fit-sampler", run_dir, "--components", "3", "--covariance", covariance]
        assert main([str(a) for a in args]) == 0
        out[name] = run_dir
    return out


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict[str, Path]:
    """Each run exported with --sampler aggregate (and its TEMPERATURE) and --tflite."""
    root = tmp_path_factory.mktemp("aggregate_exports")
    for name, run_dir in runs.items():
        args = ["export", run_dir, "--out", root / name, "--sampler", "aggregate", "--tflite"]
        args += ["--temperature", str(TEMPERATURE[name])]
        assert main([str(a) for a in args]) == 0
    return {name: root / name for name in runs}


def expected_rows(run_dir: Path, seeds: np.ndarray, labels=None, temperature=1.0) -> dict:
    """What ``generate`` must return: `VAE.sample` / `sample_latent` with one seed per row."""
    model = load_run(run_dir).model
    drawn = {"sampler": "aggregate", "temperature": temperature}
    z = model.sample_latent(len(seeds), seeds, labels, **drawn)
    x = model.sample(len(seeds), seeds, labels, **drawn)
    return {"z": np.asarray(z), "x_mean": np.asarray(x)}


# ------------------------------------------------------------------------------- draws
def test_temperature_scales_the_prior_variance_to_t_squared():
    vae = VAE(data_shape=(4,), latent_dim=5, hidden_units=(8,))
    n = 20_000
    for t in (0.5, 2.0):
        z = np.asarray(vae.sample_latent(n, seed=3, temperature=t), np.float64)
        variance = z.var(axis=0, ddof=1)
        se = t**2 * np.sqrt(2 / (n - 1))  # of a Gaussian sample variance
        assert np.all(np.abs(variance - t**2) < 4 * se), (t, variance)
        assert np.all(np.abs(z.mean(axis=0)) < 4 * t / np.sqrt(n))
    plain = vae.sample_latent(64, seed=3)  # T = 1 is the old draw, bit for bit
    np.testing.assert_array_equal(plain, tf.random.stateless_normal((64, 5), seed=[3, 0]))


def test_draw_latent_per_class_full_covariance_has_the_mixture_moments():
    """Two class rows of a 2-component, 2-D full-covariance mixture: row label_i's mixture,
    its weights, means and covariances (L L^T, times T^2) within standard errors."""
    chol = np.array([[[1.0, 0.0], [0.8, 0.6]], [[0.5, 0.0], [-0.3, 0.4]]], np.float32)
    loc = np.array([[[-5.0, 0.0], [5.0, 0.0]], [[0.0, 40.0], [0.0, 60.0]]], np.float32)
    weights = np.array([[0.3, 0.7], [0.5, 0.5]])
    mixture = LatentMixture(np.log(weights).astype(np.float32), loc, np.stack([chol, chol]))
    n, t = 40_000, 0.5
    rng = np.random.default_rng(0)
    noise = tf.constant(rng.standard_normal((n, 2)), tf.float32)
    uniform = tf.constant(rng.uniform(size=n), tf.float32)
    for label in (0, 1):
        labels = tf.fill([n], label)
        z, component = draw_latent(mixture, noise, uniform, labels, temperature=t)
        z, component = np.asarray(z, np.float64), np.asarray(component)
        share = np.bincount(component, minlength=2) / n
        assert np.all(np.abs(share - weights[label]) < 4 * np.sqrt(weights[label] * 0.7 / n))
        for k in range(2):
            rows = z[component == k]
            covariance = t**2 * chol[k] @ chol[k].T
            se = np.sqrt(np.diag(covariance) / len(rows))
            assert np.all(np.abs(rows.mean(axis=0) - loc[label, k]) < 4 * se)
            np.testing.assert_allclose(
                np.cov(rows.T), covariance, atol=6 * covariance.max() / np.sqrt(len(rows))
            )


def test_vae_sample_seeds_per_row_are_independent_of_the_batch():
    vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,), prior="mixture", prior_components=3)
    both = np.asarray(vae.sample_latent(3, seed=[5, -1, 9]))
    x = np.asarray(vae.sample(3, seed=[5, -1, 9]))
    for i, seed in enumerate([5, -1, 9]):  # z bit for bit; x up to the matmul's batch rounding
        np.testing.assert_array_equal(both[i], np.asarray(vae.sample_latent(1, seed=[seed]))[0])
        alone = np.asarray(vae.sample(1, seed=[seed]))[0]
        np.testing.assert_allclose(x[i], alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="one per sample"):
        vae.sample(3, seed=[1, 2])
    with pytest.raises(ValueError, match="must be an integer"):
        vae.sample(3, seed=1.5)
    with pytest.raises(ValueError, match="temperature"):
        vae.sample(3, seed=1, temperature=float("nan"))
    with pytest.raises(ValueError, match="fit-sampler"):
        vae.sample(3, seed=1, sampler="aggregate")


# ------------------------------------------------------------------------------ fitting
def test_fitted_sampler_matches_the_training_codes(runs):
    """EM's M-step keeps sum_k w_k mu_k equal to the codes' mean: per class row, to float32."""
    for run_dir in runs.values():
        run = load_run(run_dir)
        sampler = run.model.aggregate_sampler
        split = load_split(run, split="train")
        labels = split.labels if run.model.conditional else None
        codes = np.asarray(run.model.central_z(split.images, labels), np.float64)
        rows = [codes] if labels is None else [codes[labels == k] for k in range(10)]
        assert sampler.examples == tuple(len(r) for r in rows)
        weights = np.exp(sampler.mixture.log_weights.astype(np.float64))
        means = np.einsum("ck,ckd->cd", weights, sampler.mixture.loc)
        expected = np.stack([r.mean(axis=0) for r in rows])
        np.testing.assert_allclose(means, expected, atol=1e-4 * (1 + np.abs(expected).max()))
        assert sampler.covariance == ("diag" if labels is not None else "full")
        assert sampler.mixture.scale.ndim == (3 if labels is not None else 4)


@pytest.mark.parametrize("name", ["plain", "conditional"])
def test_fit_sampler_draws_the_samples_figure_as_sample_does(name, runs, tmp_path):
    """figures/samples_aggregate.png is `keras-vae sample --sampler aggregate` of the grid of
    figures/samples.png (64 samples; one row of 10 per class), byte for byte, and claimed."""
    figure = runs[name] / "figures" / "samples_aggregate.png"
    grid = ["--label", "all", "-n", "10"] if name == "conditional" else ["-n", "64"]
    out = tmp_path / "grid.png"
    assert (
        main(["sample", str(runs[name]), *grid, "--sampler", "aggregate", "--out", str(out)]) == 0
    )
    assert figure.read_bytes() == out.read_bytes()
    manifest = json.loads((runs[name] / ".keras-vae-manifest.json").read_text())
    assert {SAMPLER_FILE, "figures/samples_aggregate.png"} <= set(manifest["files"])


def test_aggregate_sampler_works_on_an_iaf_posterior():
    """Fitted on an IAF's codes (`central_z`: the flow's image of the base mean): the mixture's
    weighted mean is the codes' mean, and samples draw from it."""
    vae = VAE(data_shape=(6,), latent_dim=3, hidden_units=(8,), posterior="iaf")
    x = np.random.default_rng(0).uniform(size=(300, 6)).astype(np.float32)
    sampler = fit_aggregate_sampler(vae, x, components=2)
    codes = np.asarray(vae.central_z(x), np.float64)
    mean = np.einsum(
        "ck,ckd->cd", np.exp(sampler.mixture.log_weights.astype(np.float64)), sampler.mixture.loc
    )
    np.testing.assert_allclose(mean[0], codes.mean(axis=0), atol=1e-4)
    vae.aggregate_sampler = sampler
    assert vae.sample(5, seed=1, sampler="aggregate").shape == (5, 6)


def test_fit_in_python_equals_the_command(runs):
    run = load_run(runs["plain"])
    split = load_split(run, split="train")
    fitted = fit_aggregate_sampler(run.model, split.images, components=3, covariance="full")
    for a, b in zip(fitted.mixture, run.model.aggregate_sampler.mixture):
        np.testing.assert_array_equal(a, b)


def test_train_overwrite_removes_the_fitted_sampler(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--epochs", "1", "--latent-dim", "2"]
    assert main([*args, "--output", str(run_dir), "--verbose", "0"]) == 0
    assert main(["fit-sampler", str(run_dir), "--components", "2"]) == 0
    assert (run_dir / SAMPLER_FILE).is_file()
    assert main([*args, "--output", str(run_dir), "--overwrite", "--verbose", "0"]) == 0
    assert not (run_dir / SAMPLER_FILE).exists()
    assert not (run_dir / "figures" / "samples_aggregate.png").exists()
    assert load_run(run_dir).model.aggregate_sampler is None


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e9", "abc"])
def test_a_bad_temperature_is_one_line_and_writes_nothing(value, tiny_run_dir, tmp_path, capsys):
    run_dir = Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    for argv in (
        ["sample", run_dir, "--temperature", value, "--out", tmp_path / "s.png"],
        ["export", run_dir, "--temperature", value, "--out", tmp_path / "export"],
    ):
        assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "temperature")


def test_aggregate_without_a_fitted_sampler_is_one_line_and_writes_nothing(
    tiny_run_dir, tmp_path, capsys
):
    run_dir = Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    for argv in (
        ["sample", run_dir, "--sampler", "aggregate", "--out", tmp_path / "s.png"],
        ["export", run_dir, "--sampler", "aggregate", "--out", tmp_path / "export"],
        [
            "sample",
            "--preset",
            "mnist_vae_quick",
            "--sampler",
            "aggregate",
            "--out",
            tmp_path / "p.png",
        ],
    ):
        assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "no aggregate sampler", "fit-sampler")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--components", "0"], "components"),
        (["--components", "1001"], "components"),
        (["--components", "500"], "cannot fit 500 components"),
        (["--covariance", "spherical"], "covariance"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_fit_sampler_refuses_bad_input(flags, fragment, runs, tmp_path, capsys):
    """Also a class with fewer training images (about 144) than components (500)."""
    run_dir = Path(shutil.copytree(runs["conditional"], tmp_path / "run"))
    assert_exit_2_and_unchanged(["fit-sampler", run_dir, *flags], [tmp_path], capsys, fragment)


def test_a_mixture_too_large_to_hold_is_refused_before_any_work(tmp_path, capsys):
    """1,000 full 200 x 200 covariances per class, 10 classes: 400M entries, refused before
    the training images are encoded; nothing written."""
    run_dir = tmp_path / "run"
    args = ["--dataset", "digits", "--epochs", "1", "--latent-dim", "200", "--conditional"]
    assert main(["train", *args, "--output", str(run_dir), "--verbose", "0"]) == 0
    capsys.readouterr()  # train's own output
    argv = ["fit-sampler", run_dir, "--components", "1000"]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "400,000,000 scale entries", "diag")


def test_a_sampler_file_keras_vae_did_not_write_is_never_read_or_replaced(
    runs, tiny_run_dir, tmp_path, capsys
):
    run_dir = Path(shutil.copytree(tiny_run_dir, tmp_path / "run"))
    shutil.copy(runs["plain"] / SAMPLER_FILE, run_dir / SAMPLER_FILE)  # not in its manifest
    for argv in (["fit-sampler", run_dir], ["sample", run_dir, "--out", tmp_path / "s.png"]):
        assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "did not write it", SAMPLER_FILE)


def _broken(arrays: dict, case: str) -> dict:
    arrays = dict(arrays)
    if case == "nan":
        arrays["loc"] = np.where(
            np.arange(arrays["loc"].size).reshape(arrays["loc"].shape) == 0, np.nan, arrays["loc"]
        ).astype(np.float32)
    elif case == "weights":
        arrays["log_weights"] = arrays["log_weights"] + np.float32(0.5)
    elif case == "upper":
        arrays["scale"] = arrays["scale"] + np.triu(
            np.ones(arrays["scale"].shape[-2:], np.float32), 1
        )
    elif case == "width":
        arrays["loc"] = arrays["loc"][..., :-1]
    elif case == "float64":
        arrays["scale"] = arrays["scale"].astype(np.float64)
    elif case == "extra":
        arrays["more"] = np.zeros(3)
    elif case == "metadata":
        arrays["metadata"] = np.array("[" * 100_000)
    return arrays


@pytest.mark.parametrize(
    "case",
    ["nan", "weights", "upper", "width", "float64", "extra", "metadata", "truncated", "pickle"],
)
def test_a_corrupt_sampler_file_is_one_line_and_changes_nothing(case, runs, tmp_path, capsys):
    run_dir = Path(shutil.copytree(runs["plain"], tmp_path / "run"))
    path = run_dir / SAMPLER_FILE
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif case == "pickle":
        np.savez(path, log_weights=np.array([object()], dtype=object))
    else:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
        with open(path, "wb") as file:
            np.savez(file, **_broken(arrays, case))
    argv = ["sample", run_dir, "--sampler", "aggregate", "--out", tmp_path / "s.png"]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, SAMPLER_FILE, "fit-sampler")
    with pytest.raises(ValueError, match="is invalid"):
        read_aggregate_sampler(run_dir, load_run(runs["plain"]).model)


# ------------------------------------------------------------------------------ exports
PURE_TF_GENERATE = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json
import numpy as np
import tensorflow as tf

folder, inputs, results = sys.argv[1], sys.argv[2], sys.argv[3]
data = dict(np.load(inputs))
path = folder + "/decoder/1"
out = {}
signatures = tf.saved_model.load(path).signatures
feed = {"seed": data["seed"], **({"label": data["label"]} if "label" in data else {})}
for key, value in signatures["generate"](**{k: tf.constant(v) for k, v in feed.items()}).items():
    out["generate/" + key] = value.numpy()
if "label" not in data:
    sample = signatures["sample"](num_samples=tf.constant(9), seed=tf.constant(11))
    out.update({"sample/" + key: value.numpy() for key, value in sample.items()})
with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    signature = meta.signature_def["generate"]
    fetch = {k: v.name for k, v in signature.outputs.items()}
    got = sess.run(fetch, {signature.inputs[k].name: v for k, v in feed.items()})
    out.update({"session/" + key: value for key, value in got.items()})
assert "keras_vae" not in sys.modules
np.savez(results, **out)
print("ok")
"""
)


@pytest.mark.parametrize("name", ["plain", "conditional"])
def test_exported_draws_equal_vae_sample_in_a_tensorflow_only_process(
    name, runs, exports, tmp_path
):
    labels = np.arange(len(SEEDS), dtype=np.int32) % 10 if name == "conditional" else None
    feed = {"seed": SEEDS, **({} if labels is None else {"label": labels})}
    np.savez(tmp_path / "in.npz", **feed)
    done = run_python(
        PURE_TF_GENERATE, str(exports[name]), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    expected = expected_rows(runs[name], SEEDS, labels, TEMPERATURE[name])
    for prefix in ("generate/", "session/"):
        for key in ("z", "x_mean"):
            np.testing.assert_allclose(got[prefix + key], expected[key], rtol=0, atol=1e-5)
        assert got[prefix + "component"].shape == (len(SEEDS),)
    if labels is None:  # the count signature: VAE.sample with the same integer seed
        model = load_run(runs[name]).model
        z = model.sample_latent(9, 11, sampler="aggregate")
        np.testing.assert_allclose(got["sample/z"], z, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got["sample/x_mean"], model.decode(z), rtol=0, atol=1e-5)
    record = json.loads((exports[name] / "export.json").read_text())
    assert record["sampler"]["name"] == "aggregate"
    assert record["sampler"]["temperature"] == TEMPERATURE[name]
    assert record["sampler"]["components"] == 3


def test_exported_rows_do_not_depend_on_the_batch(exports):
    generate = tf.saved_model.load(str(exports["conditional"] / "decoder/1")).signatures["generate"]
    labels = np.arange(len(SEEDS), dtype=np.int32) % 10

    def run(order):
        out = generate(seed=tf.constant(SEEDS[order]), label=tf.constant(labels[order]))
        return {key: value.numpy() for key, value in out.items()}

    batch, reverse = run(slice(None)), run(slice(None, None, -1))
    for i in range(len(SEEDS)):
        alone = run(slice(i, i + 1))
        for key, value in batch.items():  # x_mean up to the matmul's batch rounding
            atol = 1e-6 if key == "x_mean" else 0
            np.testing.assert_allclose(alone[key][0], value[i], rtol=0, atol=atol)
            np.testing.assert_allclose(reverse[key][-1 - i], value[i], rtol=0, atol=atol)


@pytest.mark.parametrize("name", ["plain", "conditional"])
def test_litert_sample_equals_the_saved_model_in_builtin_ops(name, exports):
    from ai_edge_litert.interpreter import Interpreter

    labels = np.arange(len(SEEDS), dtype=np.int32) % 10 if name == "conditional" else None
    saved = tf.saved_model.load(str(exports[name] / "decoder/1")).signatures["generate"]
    feed = {
        "seed": tf.constant(SEEDS),
        **({} if labels is None else {"label": tf.constant(labels)}),
    }
    expected = {key: value.numpy() for key, value in saved(**feed).items()}
    noise = row_prior_noise(tf.constant(SEEDS), LATENT).numpy()
    uniform = row_prior_uniform(tf.constant(SEEDS)).numpy()
    record = json.loads((exports[name] / "export.json").read_text())
    for file_name in ("decoder.tflite", "decoder_float16.tflite"):
        runner = Interpreter(model_path=str(exports[name] / "tflite" / file_name))
        sample = runner.get_signature_runner("sample")
        got = sample(noise=noise, uniform=uniform, **({} if labels is None else {"label": labels}))
        np.testing.assert_array_equal(got["component"], expected["component"])
        np.testing.assert_allclose(got["z"], expected["z"], rtol=0, atol=1e-5)
        if file_name == "decoder.tflite":
            np.testing.assert_allclose(got["x_mean"], expected["x_mean"], rtol=0, atol=1e-5)
        ops = record["tflite"]["files"][file_name]["ops"]
        assert not [op for op in ops if "FLEX" in op.upper() or "CUSTOM" in op.upper()], ops
