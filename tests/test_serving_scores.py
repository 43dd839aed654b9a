"""`ServingClient.score`, `.generate` and `.metadata` (issue 16, item 5) against the stand-in TF
Serving of tests/serving_fakes.py (REST and gRPC, with TF Serving's model status API: REST
``GET /v1/models/NAME``, gRPC ``ModelService.GetModelStatus``).

The served models are tiny `tf.Module` SavedModels with the signatures `keras-vae export`
writes (28x28 data and latent 20, as the serving README's curl examples assume) and closed-form
outputs, so every served number has a NumPy reference: a calibrated ``scorer`` (x -> elbo,
log_likelihood, reconstruction, kl, is_anomaly), a conditional uncalibrated ``cscorer`` (x,
label -> the four scores), a ``decoder`` (versions 1 and 2) whose ``generate`` (seed -> x_mean,
z, component) draws like a mixture prior's, a conditional ``cdecoder`` and an ``encoder``.
Like the exported ones, the stand-ins refuse non-finite x, out-of-range labels and more than
`CAP` rows with an InvalidArgumentError.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import readme_curl_lines, send_readme_curl
from serving_fakes import client_for as fake_client
from serving_fakes import serving, status_entry

from keras_vae.serving import (
    SCORE_NAMES,
    ModelVersion,
    ScoreResult,
    ServingClient,
    ServingError,
)
from keras_vae.signatures import INT64_MAX, INT64_MIN, label_range

DATA_SHAPE = (28, 28)
LATENT = 20
K = 3  # classes of the conditional stand-ins
CAP = 8  # rows per request the stand-ins accept (export.json's max_samples_per_request)
THRESHOLD = -120.0  # the calibrated scorer: anomalous where log_likelihood < THRESHOLD
SERVING_DIR = Path(__file__).resolve().parents[1] / "serving"
BROKEN = "decoder version 3 failed to load: Not found: saved_model.pb"
W = np.random.default_rng(0).normal(0, 0.3, (LATENT, 28 * 28)).astype(np.float32)


# ---------------------------------------------------------------------------- the stand-ins
def reference_scores(x, labels=None) -> dict[str, np.ndarray]:
    """What the stand-in scorers serve for `x` (and `labels`), in NumPy."""
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    reconstruction = -np.sum(np.square(flat - 0.5), axis=1)
    kl = np.mean(np.abs(flat), axis=1)
    if labels is not None:
        kl = kl + np.asarray(labels, np.float32)
    elbo = reconstruction - kl
    return {"elbo": elbo, "log_likelihood": elbo + 0.25, "reconstruction": reconstruction, "kl": kl}


def reference_rows(seeds, labels=None) -> dict[str, np.ndarray]:
    """What the stand-in decoders' ``generate`` serves for `seeds` (and `labels`), in NumPy."""
    seeds = np.asarray(seeds, np.int64)
    z = (np.mod(seeds, 1000)[:, None] + np.arange(LATENT)).astype(np.float32) / 1000.0
    if labels is not None:
        z = z + np.asarray(labels, np.float32)[:, None]
    x_mean = 1 / (1 + np.exp(-(z @ W)))
    out = {"x_mean": x_mean.reshape(-1, *DATA_SHAPE), "z": z}
    if labels is None:
        out["component"] = np.mod(seeds, K).astype(np.int32)
    return out


def _checked_rows(x):
    tf.debugging.assert_less_equal(
        tf.shape(x)[0], CAP, message=f"at most {CAP} rows per request (max_samples_per_request)"
    )


def _checked_labels(label):
    message = label_range(K)
    tf.debugging.assert_non_negative(label, message=message)
    tf.debugging.assert_less(label, K, message=message)


class Scorer(tf.Module):
    def __init__(self, conditional: bool, calibrated: bool):
        super().__init__()
        self.conditional, self.calibrated = conditional, calibrated

    def scores(self, x, label=None):
        _checked_rows(x)
        tf.debugging.assert_all_finite(x, "x must be finite")
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        reconstruction = -tf.reduce_sum(tf.square(flat - 0.5), axis=1)
        kl = tf.reduce_mean(tf.abs(flat), axis=1)
        if label is not None:
            _checked_labels(label)
            kl += tf.cast(label, tf.float32)
        elbo = reconstruction - kl
        out = {"elbo": elbo, "log_likelihood": elbo + 0.25, "reconstruction": reconstruction}
        out["kl"] = kl
        if self.calibrated:
            out["is_anomaly"] = out["log_likelihood"] < THRESHOLD
        return out

    def signatures(self):
        x = tf.TensorSpec([None, *DATA_SHAPE], tf.float32, name="x")
        if self.conditional:
            label = tf.TensorSpec([None], tf.int32, name="label")
            serve = tf.function(lambda x, label: self.scores(x, label), input_signature=[x, label])
        else:
            serve = tf.function(lambda x: self.scores(x), input_signature=[x])
        return {"serving_default": serve.get_concrete_function()}


class Decoder(tf.Module):
    def __init__(self, conditional: bool):
        super().__init__()
        self.conditional = conditional
        self.w = tf.constant(W)

    def decode(self, z, label=None):
        x_mean = tf.sigmoid(tf.matmul(z, self.w))
        return {"x_mean": tf.reshape(x_mean, [-1, *DATA_SHAPE])}

    def generate(self, seed, label=None):
        _checked_rows(seed)
        offset = tf.cast(tf.math.floormod(seed, 1000), tf.float32)[:, None]
        z = (offset + tf.range(LATENT, dtype=tf.float32)) / 1000.0
        if label is not None:
            _checked_labels(label)
            z += tf.cast(label, tf.float32)[:, None]
        out = {"x_mean": self.decode(z)["x_mean"], "z": z}
        if label is None:
            out["component"] = tf.cast(tf.math.floormod(seed, K), tf.int32)
        return out

    def signatures(self):
        z = tf.TensorSpec([None, LATENT], tf.float32, name="z")
        seed = tf.TensorSpec([None], tf.int64, name="seed")
        if not self.conditional:
            decode = tf.function(lambda z: self.decode(z), input_signature=[z])
            generate = tf.function(lambda seed: self.generate(seed), input_signature=[seed])
        else:
            label = tf.TensorSpec([None], tf.int32, name="label")
            decode = tf.function(lambda z, label: self.decode(z, label), input_signature=[z, label])
            generate = tf.function(
                lambda seed, label: self.generate(seed, label), input_signature=[seed, label]
            )
        return {
            "serving_default": decode.get_concrete_function(),
            "generate": generate.get_concrete_function(),
        }


class Encoder(tf.Module):
    def signatures(self):
        def encode(x):
            flat = tf.reshape(x, [-1, 28 * 28])
            return {"z_mean": flat[:, :LATENT], "z_stddev": tf.ones_like(flat[:, :LATENT])}

        spec = tf.TensorSpec([None, *DATA_SHAPE], tf.float32, name="x")
        encode = tf.function(encode, input_signature=[spec])
        return {"serving_default": encode.get_concrete_function()}


def save(module, folder) -> None:
    tf.saved_model.save(module, str(folder), signatures=module.signatures())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stand_in_export")
    save(Scorer(conditional=False, calibrated=True), folder / "scorer" / "1")
    save(Scorer(conditional=True, calibrated=False), folder / "cscorer" / "1")
    save(Decoder(conditional=False), folder / "decoder" / "1")
    shutil.copytree(folder / "decoder" / "1", folder / "decoder" / "2")
    save(Decoder(conditional=True), folder / "cdecoder" / "1")
    save(Encoder(), folder / "encoder" / "1")
    # Decoder version 3 failed to load (END, with its error), as TF Serving reports it.
    with serving(folder, failed={"decoder": status_entry(3, "END", 5, BROKEN)}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_log(server):
    server.reset()


def client_for(server, protocol="rest", rest_format="columnar", **kwargs) -> ServingClient:
    """The stand-ins' client: their shapes and cap unless given."""
    kwargs.setdefault("data_shape", DATA_SHAPE)
    kwargs.setdefault("latent_dim", LATENT)
    kwargs.setdefault("max_samples_per_request", CAP)
    return fake_client(server, protocol, rest_format=rest_format, **kwargs)


CLIENTS = {"rest-columnar": ("rest", "columnar"), "rest-row": ("rest", "row"), "grpc": ("grpc",)}


def x_batch(rows: int, seed: int = 0) -> np.ndarray:
    """x in [0, 1]; the odd rows far from 0.5, so their log_likelihood is below THRESHOLD."""
    x = np.random.default_rng(seed).uniform(0.4, 0.6, (rows, *DATA_SHAPE)).astype(np.float32)
    x[1::2] = np.round(x[1::2])
    return x


# ---------------------------------------------------------------------------- score
@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_score_returns_the_served_scores_and_flags(server, kind):
    x = x_batch(5)
    with client_for(server, *CLIENTS[kind]) as client:
        scores = client.score(x)
    assert isinstance(scores, ScoreResult) and scores._fields[:4] == SCORE_NAMES
    expected = reference_scores(x)
    for name in SCORE_NAMES:
        value = getattr(scores, name)
        assert value.dtype == np.float32 and value.shape == (5,), name
        np.testing.assert_allclose(value, expected[name], rtol=1e-6, err_msg=name)
    assert scores.is_anomaly.dtype == np.bool_
    np.testing.assert_array_equal(scores.is_anomaly, expected["log_likelihood"] < THRESHOLD)
    assert scores.is_anomaly.any() and not scores.is_anomaly.all()  # both kinds of rows
    assert server.requests == [(CLIENTS[kind][0], "predict", "scorer")]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_uncalibrated_conditional_scorer(server, protocol):
    """No is_anomaly output: None. Labels reach the server (they change kl), one per row or
    one for all; data_shape unknown: read from the scorer's own metadata."""
    x = x_batch(3)
    kwargs = {"scorer": "cscorer", "num_classes": K, "data_shape": None}
    with client_for(server, protocol, **kwargs) as client:
        scores = client.score(x, labels=[0, 1, 2])
        same = client.score(x, labels=2)
    assert scores.is_anomaly is None and same.is_anomaly is None
    np.testing.assert_allclose(scores.kl, reference_scores(x, [0, 1, 2])["kl"], rtol=1e-6)
    np.testing.assert_allclose(same.elbo, reference_scores(x, [2, 2, 2])["elbo"], rtol=1e-6)
    assert [kind for _, kind, model in server.requests] == ["metadata", "predict", "predict"]


# ---------------------------------------------------------------------------- generate
@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_generate_returns_the_served_rows(server, kind):
    seeds = [INT64_MIN, -1, 0, 7, INT64_MAX]
    with client_for(server, *CLIENTS[kind]) as client:
        samples = client.generate(seeds)
        one = client.generate(np.array([7], np.uint64))
    expected = reference_rows(seeds)
    assert samples.x_mean.shape == (5, *DATA_SHAPE) and samples.z.shape == (5, LATENT)
    np.testing.assert_allclose(samples.x_mean, expected["x_mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(samples.z, expected["z"], rtol=0, atol=1e-6)
    assert samples.component.dtype == np.int32
    np.testing.assert_array_equal(samples.component, expected["component"])
    np.testing.assert_array_equal(one.z[0], samples.z[3])
    predicts = [r for r in server.requests if r[1] == "predict"]
    assert predicts == [(CLIENTS[kind][0], "predict", "decoder")] * 2


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_generate_on_a_conditional_decoder(server, protocol):
    kwargs = {"decoder": "cdecoder", "num_classes": K}
    with client_for(server, protocol, **kwargs) as client:
        samples = client.generate([1, 2, 3], labels=[0, 2, 1])
        twos = client.generate([1, 2, 3], labels=2)
    expected = reference_rows([1, 2, 3], [0, 2, 1])
    np.testing.assert_allclose(samples.z, expected["z"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(samples.x_mean, expected["x_mean"], rtol=0, atol=1e-6)
    assert samples.component is None
    np.testing.assert_allclose(twos.z, reference_rows([1, 2, 3], [2, 2, 2])["z"], atol=1e-6)


# ---------------------------------------------------------------------------- bad calls
X1 = x_batch(1)
NAN_X = x_batch(3)
NAN_X[1, 4, 5] = np.nan
INF_X = x_batch(2).astype(np.float64)
INF_X[0, 0, 0] = 1e39  # finite in float64, inf in float32
# id: (client kwargs, method, args, kwargs, pattern of the ValueError)
BAD_CALLS = {
    "score NaN": ({}, "score", (NAN_X,), {}, r"NaN or inf .* in 1 of 3 rows: \[1\]\. The served"),
    "score inf in float32": ({}, "score", (INF_X,), {}, r"in 1 of 2 rows: \[0\]"),
    "score wrong shape": ({}, "score", (np.zeros((2, 784)),), {}, r"shape \(2, 784\)"),
    "score empty": ({}, "score", (np.zeros((0, 28, 28)),), {}, "empty batch"),
    "score strings": ({}, "score", (np.full((1, 28, 28), "a"),), {}, "dtype"),
    "score too many rows": (
        {},
        "score",
        (x_batch(CAP + 1),),
        {},
        rf"`x` has {CAP + 1} rows, more than max_samples_per_request={CAP}.*`score` request",
    ),
    "score labels, unconditional": (
        {"num_classes": 0},
        "score",
        (X1,),
        {"labels": [0]},
        "this export is unconditional",
    ),
    "score labels missing": ({"num_classes": K}, "score", (X1,), {}, "pass `labels`"),
    "score label out of range": (
        {"num_classes": K},
        "score",
        (X1,),
        {"labels": [K]},
        r"holds values from 3 to 3; expected integer class indices in \[0, 3\)",
    ),
    "score labels per row": (
        {"num_classes": K},
        "score",
        (x_batch(2),),
        {"labels": [0, 1, 2]},
        "`labels` has 3 values but `x` has 2 rows",
    ),
    "generate float seeds": ({}, "generate", ([1.0, 2.0],), {}, "has dtype float64"),
    "generate bool seeds": ({}, "generate", ([True],), {}, "has dtype bool"),
    "generate seed past int64": ({}, "generate", ([INT64_MAX + 1],), {}, r"to 9223372036854775808"),
    "generate seed below int64": ({}, "generate", ([INT64_MIN - 1],), {}, r"\[-2\*\*63, 2\*\*63"),
    "generate 2-D seeds": ({}, "generate", ([[1, 2]],), {}, r"`seeds` has shape \(1, 2\)"),
    "generate scalar seed": ({}, "generate", (3,), {}, r"`seeds` has shape \(\)"),
    "generate no seeds": ({}, "generate", ([],), {}, r"`seeds` has shape \(0,\)"),
    "generate too many rows": (
        {},
        "generate",
        (list(range(CAP + 1)),),
        {},
        rf"`seeds` has {CAP + 1} rows, more than max_samples_per_request={CAP}.*`generate`",
    ),
    "generate labels missing": ({"num_classes": K}, "generate", ([1],), {}, "per row of `seeds`"),
    "generate labels, unconditional": (
        {"num_classes": 0},
        "generate",
        ([1],),
        {"labels": 0},
        "this export is unconditional",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_calls_are_refused_before_anything_is_sent(server, case):
    settings, method, args, kwargs, pattern = BAD_CALLS[case]
    with client_for(server, **settings) as client, pytest.raises(ValueError, match=pattern):
        getattr(client, method)(*args, **kwargs)
    assert server.requests == []


# ---------------------------------------------------------------------------- server failures
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_server_errors_are_serving_errors_with_the_servers_message(server, protocol):
    where = f"127.0.0.1:{server.rest_port if protocol == 'rest' else server.grpc_port}"
    # A client that knows neither K nor the cap: the stand-in's own refusals come back.
    loose = {"num_classes": None, "max_samples_per_request": 100}
    with client_for(server, protocol, scorer="cscorer", decoder="cdecoder", **loose) as client:
        with pytest.raises(ServingError, match=re.escape(label_range(K))) as error:
            client.score(X1, labels=[K])
        assert error.value.code == "INVALID_ARGUMENT" and where in str(error.value)
        assert "model 'cscorer', signature 'serving_default'" in str(error.value)
        with pytest.raises(ServingError, match=f"at most {CAP} rows per request") as error:
            client.generate(list(range(CAP + 1)), labels=0)
        assert error.value.code == "INVALID_ARGUMENT"
        assert "model 'cdecoder', signature 'generate'" in str(error.value)
    client = client_for(server, protocol, scorer="no_scorer")
    pattern = r"Servable not found.*Is the scorer exported"
    with client, pytest.raises(ServingError, match=pattern):
        client.score(X1)
    with client_for(server, protocol, decoder="encoder") as client:  # it has no `generate`
        with pytest.raises(ServingError, match=r'"generate" not found') as error:
            client.generate([1])
        assert error.value.code == "INVALID_ARGUMENT"


def _rest_outputs(change):
    def hook(payload):
        change(payload["outputs"])
        return payload

    return hook


def _grpc_output(name, change):
    def hook(response):
        value = change(tf.make_ndarray(response.outputs[name]))
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    return hook


# id: (protocol, rest_format, call, tampered response, pattern of the ServingError)
BAD_RESPONSES = {
    "rest is_anomaly as numbers": (
        "rest",
        "columnar",
        "score",
        _rest_outputs(lambda o: o.__setitem__("is_anomaly", [int(v) for v in o["is_anomaly"]])),
        r"output 'is_anomaly' has dtype int64; expected booleans",
    ),
    "rest elbo missing": (
        "rest",
        "columnar",
        "score",
        _rest_outputs(lambda o: o.pop("elbo")),
        r"lacks outputs \['elbo'\]",
    ),
    "grpc kl too short": (
        "grpc",
        "columnar",
        "score",
        _grpc_output("kl", lambda v: v[:1]),
        r"output 'kl' has shape \(1,\) but expected \(2,\)",
    ),
    "grpc is_anomaly too long": (
        "grpc",
        "columnar",
        "score",
        _grpc_output("is_anomaly", lambda v: np.concatenate([v, v])),
        r"output 'is_anomaly' has shape \(4,\) but expected \(2,\)",
    ),
    "rest-row component in one row only": (
        "rest",
        "row",
        "generate",
        lambda p: {"predictions": [p["predictions"][0], {"x_mean": [], "z": []}]},
        r"row 1 of 'predictions' lacks outputs \['component'\]",
    ),
    "grpc generate z NaN": (
        "grpc",
        "columnar",
        "generate",
        _grpc_output("z", lambda v: np.full_like(v, np.nan)),
        r"signature 'generate'.*output 'z' contains NaN",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
def test_malformed_responses_are_serving_errors(server, case):
    protocol, rest_format, call, tamper, pattern = BAD_RESPONSES[case]
    server.tamper[protocol, "predict"] = tamper
    client = client_for(server, protocol, rest_format)
    with client, pytest.raises(ServingError, match=pattern) as error:
        client.score(x_batch(2)) if call == "score" else client.generate([1, 2])
    assert error.value.code is None


def test_non_finite_scores_are_passed_on(server):
    """A score the model could not make finite is no reason to lose the row's other scores."""
    server.tamper["grpc", "predict"] = _grpc_output("log_likelihood", lambda v: v - np.inf)
    with client_for(server, "grpc") as client:
        scores = client.score(x_batch(2))
    assert np.isneginf(scores.log_likelihood).all() and np.isfinite(scores.elbo).all()


# ---------------------------------------------------------------------------- deadlines
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_every_call_has_one_deadline(server, protocol):
    server.delay = 2.0
    with client_for(server, protocol, timeout=0.3) as client:
        for call in (lambda: client.score(X1), lambda: client.generate([1]), client.metadata):
            start = time.monotonic()
            with pytest.raises(ServingError, match=r"timed out after 0\.3 s"):
                call()
            assert time.monotonic() - start < 0.3 + 1.0
    server.delay = 0.7  # one request fits in the timeout, metadata and predict together do not
    client = client_for(server, protocol, timeout=1.0, data_shape=None)
    with client, pytest.raises(ServingError, match=r"model 'scorer'.*timed out after 1 s"):
        client.score(X1)


# ---------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_metadata_reports_versions_states_and_signatures(server, protocol):
    with client_for(server, protocol) as client:
        served = client.metadata()
    assert sorted(served) == ["decoder", "encoder", "scorer"]
    decoder = served["decoder"]
    assert decoder.name == "decoder" and decoder.version == 2  # the latest available
    assert decoder.versions == (
        ModelVersion(1, "AVAILABLE", None),
        ModelVersion(2, "AVAILABLE", None),
        ModelVersion(3, "END", f"NOT_FOUND: {BROKEN}"),
    )
    assert sorted(decoder.signatures) == ["generate", "serving_default"]
    generate = decoder.signatures["generate"]
    assert generate["inputs"] == {"seed": {"dtype": "int64", "shape": [-1]}}
    assert generate["outputs"] == {
        "x_mean": {"dtype": "float32", "shape": [-1, 28, 28]},
        "z": {"dtype": "float32", "shape": [-1, LATENT]},
        "component": {"dtype": "int32", "shape": [-1]},
    }
    scorer = served["scorer"]
    assert scorer.versions == (ModelVersion(1, "AVAILABLE", None),) and scorer.version == 1
    outputs = scorer.signatures["serving_default"]["outputs"]
    assert outputs["is_anomaly"] == {"dtype": "bool", "shape": [-1]}
    assert {outputs[name]["dtype"] for name in SCORE_NAMES} == {"float32"}
    kinds = [(kind, model) for _, kind, model in server.requests]
    models = ("encoder", "decoder", "scorer")
    assert kinds == [(kind, m) for m in models for kind in ("status", "metadata")]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_metadata_of_one_model_and_one_version(server, protocol):
    with client_for(server, protocol, version=1) as client:
        served = client.metadata("decoder")
    assert list(served) == ["decoder"]
    assert served["decoder"].version == 1
    assert served["decoder"].versions == (ModelVersion(1, "AVAILABLE", None),)
    with client_for(server, protocol) as client:
        served = client.metadata("cscorer")
    assert list(served) == ["cscorer"]
    assert sorted(served["cscorer"].signatures["serving_default"]["inputs"]) == ["label", "x"]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_model_the_server_does_not_serve(server, protocol):
    with client_for(server, protocol) as client:
        with pytest.raises(ServingError, match=r"does not serve model 'nope'") as error:
            client.metadata("nope")
        assert error.value.code == "NOT_FOUND" and "model 'nope'" in str(error.value)
        with pytest.raises(ValueError, match="`model`"):
            client.metadata("a/b")
    client = client_for(server, protocol, version=9)
    pattern = r"does not serve version 9 of model 'scorer'"
    with client, pytest.raises(ServingError, match=pattern):
        client.metadata("scorer")
    # Without a name: the client's models the server does not serve are left out...
    with client_for(server, protocol, scorer="old_export_has_no_scorer") as client:
        assert sorted(client.metadata()) == ["decoder", "encoder"]
    # ...unless it serves none of them.
    client = client_for(server, protocol, encoder="a", decoder="b", scorer="c")
    pattern = r"serves none of this client's models \['a', 'b', 'c'\]"
    with client, pytest.raises(ServingError, match=pattern):
        client.metadata()


# ---------------------------------------------------------------------------- the README
def readme_section_commands() -> list[str]:
    """The curl commands of serving/README.md's "Scoring and generating" section (```sh
    blocks; the ```bash blocks run in tests/test_serving.py against an unconditional export)."""
    text = (SERVING_DIR / "README.md").read_text()
    section = text.split("## Scoring and generating with the client", 1)[1].split("\n## ", 1)[0]
    return readme_curl_lines(section, "sh")


def test_the_readme_scoring_and_generate_requests_run(server):
    commands = readme_section_commands()
    kinds = {"score": 0, "generate": 0, "status": 0}
    for command in commands:
        url, body, response = send_readme_curl(command, server.rest_port)
        if body is None:
            assert response.status_code == 200, (command, response.text[:300])
            kinds["status"] += 1
            continue
        assert response.status_code == 200, (command, response.text[:300])
        payload = response.json()
        result = payload.get("outputs", payload.get("predictions"))
        if isinstance(result, list) and isinstance(result[0], dict):  # rows of outputs
            result = {key: [row[key] for row in result] for key in result[0]}
        if "/scorer:" in url:
            assert set(result) == {*SCORE_NAMES, "is_anomaly"}
            rows = len(result["elbo"])
            for name in SCORE_NAMES:
                assert np.asarray(result[name]).shape == (rows,) and np.isfinite(result[name]).all()
            kinds["score"] += 1
        else:
            assert '"generate"' in body
            z = np.asarray(result["z"], np.float32)
            assert z.ndim == 2 and z.shape[1] == LATENT
            assert np.asarray(result["x_mean"]).shape == (len(z), *DATA_SHAPE)
            kinds["generate"] += 1
    assert all(kinds.values()), kinds


# ---------------------------------------------------------------------------- the real exports
@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    """(vae, folder, x, VAE.score of x, threshold): `keras_vae.export`'s scorer (K=16,
    calibrated at the median log_likelihood of x) and decoder of a tiny VAE, cap 4 rows."""
    from keras_vae.export.saved_model import write_decoder
    from keras_vae.export.scorer import write_scorer
    from keras_vae.model import VAE

    folder = tmp_path_factory.mktemp("real_export")
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,))
    x = np.random.default_rng(1).uniform(size=(4, 6)).astype(np.float32)
    expected = vae.score(x, num_samples=16, seed=0)
    threshold = float(np.median(expected.log_likelihood))
    calibration = {"score": "log_likelihood", "threshold": threshold, "anomaly_if": "below"}
    write_scorer(vae, folder / "scorer" / "1", 16, max_samples=4, calibration=calibration)
    write_decoder(vae, folder / "decoder" / "1", max_samples=4)
    return vae, folder, x, expected, threshold


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_exported_scorer_and_generate_through_the_client(real_export, protocol):
    """The client's scores are `VAE.score`'s, its flags the threshold's, and `generate`'s
    x_mean decodes its z."""
    vae, folder, x, expected, threshold = real_export
    shapes = {"data_shape": (6,), "latent_dim": 2, "max_samples_per_request": 4}
    with serving(folder) as fake, client_for(fake, protocol, **shapes) as client:
        scores = client.score(x)
        samples = client.generate([5, -5, 2**40])
        with pytest.raises(ValueError, match="rows, more than max_samples_per_request=4"):
            client.score(np.concatenate([x, x[:1]]))
    for name in SCORE_NAMES:
        want = np.asarray(getattr(expected, name))
        np.testing.assert_allclose(getattr(scores, name), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(scores.is_anomaly, ~(scores.log_likelihood >= threshold))
    assert scores.is_anomaly.sum() == 2  # the two rows below the median
    assert samples.x_mean.shape == (3, 6) and samples.component is None
    np.testing.assert_allclose(samples.x_mean, vae.decode(samples.z), rtol=0, atol=1e-5)
