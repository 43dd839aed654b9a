"""The anomaly scorer export (issue 16, item 3): ``DIR/scorer/<version>/`` with
``serving_default`` x -> elbo, log_likelihood, reconstruction, kl (and ``is_anomaly`` once the
run is calibrated), equal to `VAE.score` in a TensorFlow-only process and through
``saved_model_cli run``; non-finite x and too many rows refused; ``scorer.tflite`` and
``encoder.tflite`` (builtin ops) equal to the SavedModels; export.json; ``--score-samples``.

One calibrated copy of the tiny digits run goes through `export_run(..., tflite=True)`; a tiny
conditional VampPrior model is written and checked by the export modules directly.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from helpers import (
    TENSORFLOW_ONLY_PRELUDE,
    assert_exit_2_and_unchanged,
    console_script,
    run_command,
    run_python,
)

from keras_vae import scores
from keras_vae.calibration import calibration_record, is_anomaly, write_calibration
from keras_vae.export import (
    ExportError,
    export_run,
    export_utils,
    graph_ops,
    list_versions,
    litert,
    litert_checks,
    litert_models,
    scorer,
    scorer_checks,
)
from keras_vae.model import VAE
from keras_vae.run_reader import load_model

K = 30  # importance samples of the calibration, so of the exported scorer
NAMES = list(scores.SCORE_NAMES)


def assert_scores_close(got, expected, names=NAMES, err_msg=""):
    """Each score within 1e-5 relative to its largest |value| (`scaled_tolerance`)."""
    for name in names:
        want = np.asarray(expected[name], np.float32)
        atol = export_utils.scaled_tolerance(want)
        np.testing.assert_allclose(got[name], want, rtol=0, atol=atol, err_msg=f"{err_msg} {name}")


def examples(seed: int, rows: int) -> np.ndarray:
    """Grey images and binary ones, which score differently."""
    x = np.random.default_rng(seed).uniform(size=(rows, 8, 8)).astype(np.float32)
    x[: rows // 3] = (x[: rows // 3] > 0.5).astype(np.float32)
    return x


@pytest.fixture(scope="module")
def inputs():
    return examples(16, 6)


@pytest.fixture(scope="module")
def calibrated(tiny_run_dir, tmp_path_factory):
    """(run, model, calibration): a copy of the tiny run calibrated at a rate of 1/2 on other
    examples like `inputs`, so some of them are flagged and none sits on the threshold."""
    run = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(tiny_run_dir, run)
    model = load_model(run)
    log_likelihood = np.asarray(model.score(examples(17, 30), num_samples=K).log_likelihood)
    record = calibration_record(log_likelihood, "log_likelihood", 0.5, K, 0, {"dataset": "test"})
    write_calibration(run, record)
    return run, model, record


@pytest.fixture(scope="module")
def exported(calibrated, tmp_path_factory):
    run, _, _ = calibrated
    out = tmp_path_factory.mktemp("scorer_export") / "export"
    return out, export_run(run, out, tflite=True)


@pytest.fixture(scope="module")
def keras_scores(calibrated, inputs):
    _, model, record = calibrated
    expected = {n: np.asarray(v) for n, v in zip(NAMES, model.score(inputs, num_samples=K))}
    expected["is_anomaly"] = is_anomaly(expected["log_likelihood"], record["threshold"], "below")
    return expected


def test_export_json_records_the_scorer(exported, calibrated):
    out, returned = exported
    record = json.loads((out / "export.json").read_text())
    assert record["models"]["scorer"] == json.loads(json.dumps(returned["models"]["scorer"]))
    entry = record["models"]["scorer"]
    assert entry["path"] == "scorer/1" and list_versions(out / "scorer") == [1]
    assert (entry["score_samples"], entry["score_seed"]) == (K, 0)  # K from the calibration
    assert entry["calibration"]["threshold"] == calibrated[2]["threshold"]
    assert entry["warmup_records"] == 3
    assert all(0 <= error <= 1e-5 for error in entry["max_abs_error"].values())
    signature = entry["signatures"]["serving_default"]
    assert signature["inputs"] == {"x": {"dtype": "float32", "shape": [-1, 8, 8]}}
    batch = {"dtype": "float32", "shape": [-1]}
    assert signature["outputs"] == {
        **dict.fromkeys(NAMES, batch),
        "is_anomaly": {"dtype": "bool", "shape": [-1]},
    }
    files = record["tflite"]["files"]
    assert sorted(files) == sorted([*litert_models.VARIANTS, "encoder.tflite", "scorer.tflite"])
    assert sorted(files["scorer.tflite"]["signatures"]) == ["score", "score_with_noise"]
    assert sorted(files["encoder.tflite"]["signatures"]) == ["encode", "posterior_sample"]
    assert files["scorer.tflite"]["score_samples"] == K
    for name in ("encoder.tflite", "scorer.tflite"):
        assert files[name]["max_abs_error"] <= files[name]["tolerance"] < 1e-3
        assert files[name]["wrong_inputs_refused"] >= 4
        assert (out / "tflite" / name).stat().st_size == files[name]["size_bytes"]


def test_is_anomaly_flags_both_ways(keras_scores):
    """The calibration at rate 1/2 flags some of the inputs and not others, so the
    `is_anomaly` checks below can tell a constant from the rule."""
    assert 0 < keras_scores["is_anomaly"].sum() < len(keras_scores["is_anomaly"])


TF_ONLY_SCORER = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json
import numpy as np
import tensorflow as tf

folder, x_path = sys.argv[1], sys.argv[2]
score = tf.saved_model.load(folder + "/scorer/1").signatures["serving_default"]
x = np.load(x_path)
both = {k: v.numpy().tolist() for k, v in score(x=tf.constant(x)).items()}
apart = [{k: v.numpy().tolist()[0] for k, v in score(x=tf.constant(x[i : i + 1])).items()}
         for i in range(len(x))]


def refusal(value):
    try:
        out = score(x=tf.constant(value))
    except tf.errors.InvalidArgumentError as error:
        return "refused: " + error.message
    return "ran: " + json.dumps({k: v.numpy().tolist() for k, v in out.items()})


nan = x.copy()
nan[1, 3, 3] = np.nan
inf = x.copy()
inf[0, 0, 0] = np.inf
print(json.dumps({
    "both": both,
    "apart": apart,
    "nan": refusal(nan),
    "inf": refusal(inf),
    "rows": refusal(np.zeros((10_001, 8, 8), np.float32)),
    "shape": refusal(np.zeros((2, 8, 9), np.float32)),
}))
"""
)


def test_the_scorer_in_a_tensorflow_only_process_equals_keras(
    exported, inputs, keras_scores, tmp_path
):
    """Loaded without keras_vae: the scores of a batch equal VAE.score to 1e-5, each row's
    alone the same; is_anomaly is the calibration's rule; NaN or infinite x, 10,001 rows (the
    default cap is 10,000) and x of another shape are refused, never scored."""
    np.save(tmp_path / "x.npy", inputs)
    done = run_python(TF_ONLY_SCORER, str(exported[0]), str(tmp_path / "x.npy"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert_scores_close(result["both"], keras_scores)
    assert result["both"]["is_anomaly"] == keras_scores["is_anomaly"].tolist()
    for i, row in enumerate(result["apart"]):
        assert_scores_close(
            {n: [row[n]] for n in NAMES}, {n: keras_scores[n][i : i + 1] for n in NAMES}
        )
        assert row["is_anomaly"] == bool(keras_scores["is_anomaly"][i])
    for case in ("nan", "inf"):
        assert result[case].startswith("refused") and "x must be finite" in result[case]
    assert result["rows"].startswith("refused") and "x must have <= 10000 rows" in result["rows"]
    assert "max_samples_per_request" in result["rows"]
    assert result["shape"].startswith("refused"), result["shape"]


def test_saved_model_cli_run_equals_keras(exported, inputs, keras_scores, tmp_path):
    """As a TF Serving operator would try it: `saved_model_cli run` on an .npy of examples."""
    np.save(tmp_path / "x.npy", inputs)
    command = [
        console_script("saved_model_cli"), "run", "--dir", str(exported[0] / "scorer" / "1"),
        "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"x={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out"),
    ]  # fmt: skip
    done = run_command(command, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    got = {name: np.load(tmp_path / "out" / f"{name}.npy") for name in [*NAMES, "is_anomaly"]}
    assert_scores_close(got, keras_scores)
    np.testing.assert_array_equal(got["is_anomaly"], keras_scores["is_anomaly"])


def test_litert_scorer_and_encoder_equal_the_saved_models(exported, calibrated, inputs):
    """scorer.tflite's ``score`` equals the scorer SavedModel (the same baked noise), its
    ``score_with_noise`` on that noise too and on other noise `score_graph`; encoder.tflite
    equals the encoder SavedModel; both files hold builtin ops only."""
    out, _ = exported
    model = calibrated[1]
    served = tf.saved_model.load(str(out / "scorer" / "1")).signatures["serving_default"]
    served = {k: v.numpy() for k, v in served(x=tf.constant(inputs)).items()}
    scorer_file = Interpreter(model_path=str(out / "tflite" / "scorer.tflite"))
    got = scorer_file.get_signature_runner("score")(x=inputs)
    assert_scores_close(got, served, err_msg="score")
    np.testing.assert_array_equal(got["is_anomaly"], served["is_anomaly"])
    noise = np.asarray(scores.score_noise(2, K, 0))
    with_noise = scorer_file.get_signature_runner("score_with_noise")
    assert_scores_close(with_noise(x=inputs, noise=noise), served, err_msg="baked noise")
    other = np.random.default_rng(3).standard_normal((K, 2)).astype(np.float32)
    expected = scorer_checks.expected_scores(model, inputs, other)
    assert_scores_close(with_noise(x=inputs, noise=other), expected, err_msg="other noise")
    assert np.abs(expected["log_likelihood"] - served["log_likelihood"]).max() > 1e-4
    with pytest.raises((RuntimeError, ValueError)):
        with_noise(x=inputs, noise=other[:-1])  # exactly K rows
    encoder = tf.saved_model.load(str(out / "encoder" / "1")).signatures
    encoder_file = Interpreter(model_path=str(out / "tflite" / "encoder.tflite"))
    encoded = encoder_file.get_signature_runner("encode")(x=inputs)
    want = {k: v.numpy() for k, v in encoder["serving_default"](x=tf.constant(inputs)).items()}
    for name in ("z_mean", "z_stddev"):
        np.testing.assert_allclose(encoded[name], want[name], rtol=0, atol=1e-5)
    eps = np.random.default_rng(4).standard_normal((len(inputs), 2)).astype(np.float32)
    drawn = encoder_file.get_signature_runner("posterior_sample")(x=inputs, noise=eps)
    want = encoder["posterior_sample"](x=tf.constant(inputs), noise=tf.constant(eps))
    for name in ("z", "log_q", "z_mean", "z_stddev"):
        np.testing.assert_allclose(drawn[name], want[name].numpy(), rtol=0, atol=1e-5)
    for name in ("encoder.tflite", "scorer.tflite"):
        ops = litert_checks.operators((out / "tflite" / name).read_bytes())  # ExportError on custom
        assert "FULLY_CONNECTED" in ops and not [op for op in ops if "FLEX" in op]


def test_litert_scorer_never_gives_a_nan_input_a_finite_score(exported, inputs):
    """TFLite has no assertion op: a NaN example gets NaN scores and is an anomaly; the other
    rows keep their numbers."""
    runner = Interpreter(model_path=str(exported[0] / "tflite" / "scorer.tflite"))
    runner = runner.get_signature_runner("score")
    clean = runner(x=inputs)
    x = inputs.copy()
    x[2, 4, 4] = np.nan
    got = runner(x=x)
    for name in NAMES:
        assert np.isnan(got[name][2]), name
        np.testing.assert_array_equal(np.delete(got[name], 2), np.delete(clean[name], 2))
    assert got["is_anomaly"][2]


def test_a_conditional_vamp_scorer_takes_labels(tmp_path):
    """write_scorer / check_scorer and the LiteRT files of a conditional VampPrior model:
    scores given y equal VAE.score(x, labels=y), the label matters, bad labels are refused."""
    model = VAE(
        data_shape=(6,), latent_dim=2, hidden_units=(8,), num_classes=3, prior="vamp",
        prior_components=3, posterior="iaf", flow_steps=1, flow_hidden_units=(8,),
    )  # fmt: skip
    calibration = {"score": "kl", "threshold": 0.5, "anomaly_if": "above"}
    scorer.write_scorer(model, tmp_path / "scorer", 10, max_samples=8, calibration=calibration)
    errors = scorer_checks.check_scorer(
        model, tmp_path / "scorer", scorer.ScorerSettings(10, 8, calibration)
    )
    assert sorted(errors) == sorted(NAMES)
    signature = tf.saved_model.load(str(tmp_path / "scorer")).signatures["serving_default"]
    x = np.random.default_rng(5).uniform(size=(3, 6)).astype(np.float32)
    labels = np.array([0, 1, 2], np.int32)
    got = {k: v.numpy() for k, v in signature(x=tf.constant(x), label=tf.constant(labels)).items()}
    expected = scorer_checks.expected_scores(model, x, 10, labels, calibration)
    assert_scores_close(got, expected)
    np.testing.assert_array_equal(got["is_anomaly"], expected["is_anomaly"])
    other = signature(x=tf.constant(x), label=tf.constant((labels + 1) % 3))
    assert np.abs(other["log_likelihood"].numpy() - got["log_likelihood"]).max() > 1e-5
    for bad in ([0, 1, 3], [0, -1, 2], [0, 1]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
            signature(x=tf.constant(x), label=tf.constant(bad, tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="<= 8 rows"):
        signature(x=tf.zeros([9, 6]), label=tf.zeros([9], tf.int32))
    files = litert.write_litert_models(
        model, tmp_path / "tflite", tmp_path / "work", 10, calibration
    )
    assert all(entry["max_abs_error"] <= 1e-5 for entry in files.values())
    runner = Interpreter(model_path=str(tmp_path / "tflite" / "scorer.tflite"))
    got = runner.get_signature_runner("score")(x=x, label=labels)
    assert_scores_close(got, expected)
    with pytest.raises((RuntimeError, ValueError), match="GATHER|gather"):
        runner.get_signature_runner("score")(x=x, label=np.array([0, 1, 3], np.int32))


def test_the_check_refuses_a_scorer_of_other_weights(tmp_path):
    a = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    b = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    scorer.write_scorer(a, tmp_path / "scorer", 5)
    assert (
        scorer_checks.check_scorer(a, tmp_path / "scorer", scorer.ScorerSettings(5))["elbo"] <= 1e-5
    )
    with pytest.raises(ExportError, match="scorer elbo differs"):
        scorer_checks.check_scorer(b, tmp_path / "scorer", scorer.ScorerSettings(5))
    with pytest.raises(ExportError, match="outputs"):  # calibrated check, uncalibrated export
        scorer_checks.check_scorer(
            a, tmp_path / "scorer", scorer.ScorerSettings(5, calibration=CALIBRATION)
        )


CALIBRATION = {"score": "elbo", "threshold": -3.0, "anomaly_if": "below"}


@pytest.mark.parametrize("value", ["0", "-1", "100001", "1e3", "ten"])
def test_cli_refuses_bad_score_samples_before_writing(tiny_run_dir, tmp_path, capsys, value):
    out = tmp_path / "export"
    argv = ["export", tiny_run_dir, "--out", out, "--score-samples", value]
    line = assert_exit_2_and_unchanged(argv, [tiny_run_dir, tmp_path], capsys)
    assert "score" in line and value in line, line
    assert not out.exists()


def test_a_calibrated_run_refuses_another_k(calibrated, tmp_path, capsys):
    run, _, _ = calibrated
    argv = ["export", run, "--out", tmp_path / "export", "--score-samples", str(K + 1)]
    assert_exit_2_and_unchanged(argv, [run, tmp_path], capsys, f"{K} importance samples")


@pytest.mark.parametrize("anomaly_if", ["below", "above"])
def test_a_nan_score_is_an_anomaly_in_a_graph(anomaly_if):
    """Traced as the exports are: TensorFlow's optimizer turns ``not (s >= t)`` into
    ``s < t`` (False for NaN), so `anomaly_flags` tests NaN explicitly."""
    calibration = {"score": "elbo", "threshold": 0.0, "anomaly_if": anomaly_if}
    flags = tf.function(lambda s: graph_ops.anomaly_flags(s * 1.0, calibration))
    got = flags(tf.constant([np.nan, -1.0, 1.0, 0.0], tf.float32)).numpy().tolist()
    assert got == (
        [True, True, False, False] if anomaly_if == "below" else [True, False, True, False]
    )
