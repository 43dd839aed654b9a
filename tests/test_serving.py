"""The `keras_vae.serving` client and the `serving/` kit, against the stand-in TF Serving of
tests/serving_fakes.py (`FakeModelServer`, REST and gRPC on 127.0.0.1) over the real MNIST
export. The slow server used for the timeout tests answers within a few seconds;
`FakeModelServer.tamper` swaps a response for a malformed one (the response-validation tests).
The client's transport (deadline, size cap, keep-alive) is tested against tiny local servers in
tests/test_serving_client.py.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import time

import numpy as np
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from helpers import (
    LATENT_DIM,
    assert_export_parity,
    keras_reference,
    readme_curl_lines,
    rng_inputs,
    send_readme_curl,
)
from serving_fakes import client_for, serving
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.config import model_server_config_pb2

from keras_vae.serving import ServingClient, ServingError
from keras_vae.signatures import DEFAULT_MAX_SAMPLES_PER_REQUEST as DEFAULT_CAP
from keras_vae.signatures import MAX_SAMPLES_KEY

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SERVING_DIR = REPO / "serving"
TOL = 1e-5


@pytest.fixture(scope="module")
def server(mnist_export):
    with serving(mnist_export) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_log(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


CLIENTS = [("rest", "columnar"), ("rest", "row"), ("grpc", "columnar")]


@pytest.mark.parametrize("protocol,rest_format", CLIENTS, ids=["rest-columnar", "rest-row", "grpc"])
def test_client_results_equal_keras(server, mnist_model, protocol, rest_format):
    with client_for(server, protocol, rest_format=rest_format) as client:
        x, z = rng_inputs(mnist_model, 3, seed=21)
        z_mean, z_stddev = client.encode(x)
        assert_export_parity(
            {"z_mean": z_mean, "z_stddev": z_stddev}, keras_reference(mnist_model, x=x), TOL
        )
        x_mean = client.decode(z)
        assert x_mean.shape == (3, 28, 28) and x_mean.dtype == np.float32
        assert_export_parity({"x_mean": x_mean}, keras_reference(mnist_model, z=z), TOL)
        samples = client.sample(4, seed=9)
        again = client.sample(4, seed=9)
        np.testing.assert_array_equal(samples.z, again.z)
        np.testing.assert_array_equal(
            samples.z, tf.random.stateless_normal([4, LATENT_DIM], seed=[9, 0])
        )
        np.testing.assert_allclose(samples.x_mean, mnist_model.decode(samples.z), rtol=0, atol=TOL)
    # Four predictions, and the two metadata calls that told the client the shapes.
    assert server.predict_count() == 4
    assert sorted(m for _, kind, m in server.requests if kind == "metadata") == [
        "decoder",
        "encoder",
    ]
    assert {p for p, _, _ in server.requests} == {protocol}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_shapes_come_from_the_metadata_api_and_bad_input_is_never_sent(server, protocol):
    with client_for(server, protocol) as client:  # no data_shape, no latent_dim given
        with pytest.raises(ValueError, match=r"shape \(2, 28, 27\).*\[batch, 28, 28\]"):
            client.encode(np.zeros((2, 28, 27)))
        with pytest.raises(ValueError, match=r"shape \(20,\).*\[batch, 20\]"):
            client.decode(np.zeros(LATENT_DIM))
        assert client.data_shape == (28, 28) and client.latent_dim == LATENT_DIM
    assert [kind for _, kind, _ in server.requests] == ["metadata", "metadata"]


BAD_CALLS = {
    "encode 1 x 784": ("encode", (np.zeros((1, 784)),), "shape"),
    "encode empty batch": ("encode", (np.zeros((0, 28, 28)),), "empty batch"),
    "encode NaN": ("encode", (np.full((1, 28, 28), np.nan),), "NaN"),
    "encode strings": ("encode", (np.full((1, 28, 28), "a"),), "dtype"),
    "decode wrong width": ("decode", (np.zeros((2, LATENT_DIM - 1)),), "shape"),
    "decode inf": ("decode", (np.full((1, LATENT_DIM), np.inf),), "inf"),
    "sample zero": ("sample", (0, 1), "`n`"),
    "sample float n": ("sample", (2.0, 1), "`n`"),
    "sample seed too big": ("sample", (2, 2**31), "`seed`"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_client_validates_before_sending(server, case):
    method, args, message = BAD_CALLS[case]
    client = client_for(server, data_shape=(28, 28), latent_dim=LATENT_DIM)
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(client, method)(*args)
    assert server.requests == []


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="protocol"):
        ServingClient(protocol="http")
    with pytest.raises(ValueError, match="timeout"):
        ServingClient(timeout=0)
    with pytest.raises(ValueError, match="rest_port"):
        ServingClient(rest_port=70000)
    with pytest.raises(ValueError, match="rest_format"):
        ServingClient(rest_format="rows")


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_server_errors_say_what_failed(server, protocol):
    with client_for(server, protocol, decoder="no_such_model", latent_dim=LATENT_DIM) as client:
        with pytest.raises(ServingError, match=r"no_such_model.*(HTTP 404|NOT_FOUND)") as error:
            client.decode(np.zeros((1, LATENT_DIM)))
        assert "Servable not found" in str(error.value)
    with client_for(server, protocol) as client:
        # Bypass the client's checks: the server's own invalid-argument error comes through.
        bad = {"z": np.zeros((1, 3), np.float32)}
        pattern = r"(HTTP 400|INVALID_ARGUMENT).*Shape of tensor z \[1,3\]"
        with pytest.raises(ServingError, match=pattern):
            client.predict("decoder", "serving_default", bad, ("x_mean",))


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_versions_are_addressed(server, mnist_model, protocol):
    z = np.zeros((1, LATENT_DIM), np.float32)
    with client_for(server, protocol, version=1, latent_dim=LATENT_DIM) as client:
        np.testing.assert_allclose(client.decode(z), mnist_model.decode(z), rtol=0, atol=TOL)
    client = client_for(server, protocol, version=2, latent_dim=LATENT_DIM)
    with client, pytest.raises(ServingError, match=r"Specific\(decoder, 2\)"):
        client.decode(z)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_timeouts(server, protocol):
    server.delay = 2.0
    client = client_for(server, protocol, timeout=0.3, latent_dim=LATENT_DIM)
    with client, pytest.raises(ServingError, match=r"timed out after 0\.3 s"):
        client.decode(np.zeros((1, LATENT_DIM)))


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_no_server_listening(protocol):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ServingClient(
        "127.0.0.1", protocol=protocol, rest_port=port, grpc_port=port, timeout=5, latent_dim=2
    )
    with pytest.raises(ServingError, match=r"cannot (connect|reach).*is TF Serving running"):
        client.decode(np.zeros((1, 2)))


def test_from_export_reads_the_shapes(server):
    client = ServingClient.from_export(server.export_dir, "127.0.0.1", rest_port=server.rest_port)
    assert client.data_shape == (28, 28) and client.latent_dim == LATENT_DIM
    with pytest.raises(ValueError, match="export.json"):
        ServingClient.from_export(server.export_dir / "encoder")


def test_from_export_reads_the_sample_cap(server):
    record = json.loads((server.export_dir / "export.json").read_text())
    client = ServingClient.from_export(server.export_dir, "127.0.0.1")
    assert client.max_samples_per_request == record[MAX_SAMPLES_KEY]


# ---------------------------------------------------------------------------- hardening
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_sample_cap_is_checked_before_sending(server, protocol):
    with client_for(server, protocol, max_samples_per_request=3) as client:
        pattern = r"`n`=4 .*max_samples_per_request=3.*--max-samples-per-request"
        with pytest.raises(ValueError, match=pattern):
            client.sample(4, seed=0)
        assert server.requests == []  # not even a metadata request
        assert client.sample(3, seed=0).z.shape == (3, LATENT_DIM)
    client = client_for(server, protocol)  # the default cap
    with client, pytest.raises(ValueError, match=f"max_samples_per_request={DEFAULT_CAP}"):
        client.sample(DEFAULT_CAP + 1, seed=0)
    assert server.predict_count() == 1


def test_the_served_sample_signature_has_the_same_cap(server):
    """The client's cap and the exported signature's agree: past the client's check (by
    calling `predict` directly), the model refuses the same request."""
    inputs = {"num_samples": np.int32(DEFAULT_CAP + 1), "seed": np.int32(0)}
    pattern = f"HTTP 400.*num_samples must be <= {DEFAULT_CAP}"
    with client_for(server) as client, pytest.raises(ServingError, match=pattern):
        client.predict("decoder", "sample", inputs, ("x_mean", "z"))


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_one_deadline_covers_the_metadata_and_the_predict_request(server, protocol):
    server.delay = 0.7  # each request alone fits in the timeout, both together do not
    client = client_for(server, protocol, timeout=1.0)  # no shapes: encode reads metadata first
    start = time.monotonic()
    with client, pytest.raises(ServingError, match=r"model 'encoder'.*timed out after 1 s"):
        client.encode(np.zeros((1, 28, 28)))
    assert time.monotonic() - start < 1.0 + 1.5


def _outputs(payload, change):
    change(payload["outputs"])
    return payload


def _set(path, value):
    def change(tree):
        for key in path[:-1]:
            tree = tree[key]
        tree[path[-1]] = value

    return change


def _grpc_output(name, change):
    def hook(response):
        value = change(tf.make_ndarray(response.outputs[name]).copy())
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    return hook


def _nan_at(index):
    def change(value):
        value[index] = np.nan
        return value

    return change


def _truncate_tensor_content(response):
    proto = response.outputs["x_mean"]
    proto.tensor_content = proto.tensor_content[:-4]
    return response


def _drop_grpc_output(name):
    def hook(response):
        del response.outputs[name]
        return response

    return hook


Z2 = np.zeros((2, LATENT_DIM), np.float32)
X2 = np.full((2, 28, 28), 0.5, np.float32)
# id: (protocol, rest_format, call, tampered response, pattern of the ServingError)
BAD_RESPONSES = {
    "rest ragged": (
        "rest-columnar",
        "decode",
        lambda p: _outputs(p, lambda o: o[0].__setitem__(0, o[0][0][:-1])),
        r"output 'x_mean' is not a rectangular array of numbers",
    ),
    "rest strings": (
        "rest-columnar",
        "decode",
        lambda p: {"outputs": [[["a"] * 28] * 28] * 2},
        r"output 'x_mean' holds strings",
    ),
    "rest nulls": (
        "rest-columnar",
        "decode",
        lambda p: _outputs(p, _set((0, 0, 0), None)),
        r"output 'x_mean' holds null values",
    ),
    "rest booleans": (
        "rest-columnar",
        "decode",
        lambda p: {"outputs": [[[True] * 28] * 28] * 2},
        r"output 'x_mean' holds booleans",
    ),
    "rest too few rows": (
        "rest-columnar",
        "decode",
        lambda p: {"outputs": p["outputs"][:1]},
        r"output 'x_mean' has shape \(1, 28, 28\) but expected \(2, 28, 28\)",
    ),
    "rest NaN": (
        "rest-columnar",
        "decode",
        lambda p: _outputs(p, _set((1, 3, 4), float("nan"))),
        r"output 'x_mean' contains NaN",
    ),
    "rest beyond float32": (
        "rest-columnar",
        "decode",
        lambda p: _outputs(p, _set((0, 0, 0), 1e39)),
        r"output 'x_mean' contains inf",
    ),
    "rest not JSON": (
        "rest-columnar",
        "decode",
        lambda p: b"<html>busy</html>",
        r"not a JSON object",
    ),
    "rest row not an object": (
        "rest-row",
        "encode",
        lambda p: {"predictions": [p["predictions"][0], [0.5] * LATENT_DIM]},
        r"row 1 of 'predictions' is a list, expected an object",
    ),
    "rest row lacks a key": (
        "rest-row",
        "encode",
        lambda p: {"predictions": [{"z_mean": [0.0] * LATENT_DIM}] * 2},
        r"row 0 of 'predictions' lacks outputs \['z_stddev'\]",
    ),
    "rest predictions not a list": (
        "rest-row",
        "encode",
        lambda p: {"predictions": {"z_mean": [], "z_stddev": []}},
        r"'predictions' is a dict, expected a list",
    ),
    "rest z_mean too narrow": (
        "rest-columnar",
        "encode",
        lambda p: _outputs(p, lambda o: o.__setitem__("z_mean", [r[:-1] for r in o["z_mean"]])),
        rf"output 'z_mean' has shape \(2, {LATENT_DIM - 1}\) but expected \(2, {LATENT_DIM}\)",
    ),
    "rest z_stddev zero": (
        "rest-columnar",
        "encode",
        lambda p: _outputs(p, _set(("z_stddev", 1, 2), 0.0)),
        r"output 'z_stddev' has values <= 0",
    ),
    "rest sample too few": (
        "rest-columnar",
        "sample",
        lambda p: _outputs(p, lambda o: o.__setitem__("x_mean", o["x_mean"][:-1])),
        r"signature 'sample'.*output 'x_mean' has shape \(3, 28, 28\) but expected \(4, 28, 28\)",
    ),
    "rest sample z NaN": (
        "rest-columnar",
        "sample",
        lambda p: _outputs(p, _set(("z", 2, 0), float("nan"))),
        r"output 'z' contains NaN",
    ),
    "rest outputs not an object": (
        "rest-columnar",
        "sample",
        lambda p: {"outputs": [1.0, 2.0]},
        r"'outputs' is a list, expected an object",
    ),
    "grpc too few rows": (
        "grpc",
        "decode",
        _grpc_output("x_mean", lambda v: v[:1]),
        r"output 'x_mean' has shape \(1, 28, 28\) but expected \(2, 28, 28\)",
    ),
    "grpc NaN": ("grpc", "decode", _grpc_output("x_mean", _nan_at((0, 1, 2))), "contains NaN"),
    "grpc strings": (
        "grpc",
        "decode",
        _grpc_output("x_mean", lambda v: np.full(v.shape, b"a", dtype=object)),
        r"output 'x_mean' holds bytes values",
    ),
    "grpc corrupt tensor": (
        "grpc",
        "decode",
        _truncate_tensor_content,
        r"output 'x_mean' is not a valid tensor",
    ),
    "grpc z too narrow": (
        "grpc",
        "sample",
        _grpc_output("z", lambda v: v[:, :-1]),
        rf"output 'z' has shape \(4, {LATENT_DIM - 1}\) but expected \(4, {LATENT_DIM}\)",
    ),
    "grpc z missing": ("grpc", "sample", _drop_grpc_output("z"), r"lacks outputs \['z'\]"),
    "grpc z_stddev negative": (
        "grpc",
        "encode",
        _grpc_output("z_stddev", lambda v: -v),
        r"output 'z_stddev' has values <= 0",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
def test_malformed_responses_raise_serving_error(server, case):
    kind, call, tamper, pattern = BAD_RESPONSES[case]
    protocol, _, rest_format = kind.partition("-")
    server.tamper[protocol, "predict"] = tamper
    rest_format = rest_format or "columnar"
    shapes = {"data_shape": (28, 28), "latent_dim": LATENT_DIM}
    client = client_for(server, protocol, rest_format=rest_format, **shapes)
    model = "encoder" if call == "encode" else "decoder"
    with client, pytest.raises(ServingError, match=pattern) as error:
        if call == "encode":
            client.encode(X2)
        elif call == "decode":
            client.decode(Z2)
        else:
            client.sample(4, seed=3)
    port = server.rest_port if protocol == "rest" else server.grpc_port
    assert f"model '{model}'" in str(error.value) and f"127.0.0.1:{port}" in str(error.value)
    assert server.predict_count() == 1


def _rest_signature(payload, model_signature="serving_default"):
    return payload["metadata"]["signature_def"]["signature_def"][model_signature]


def _grpc_signatures(change):
    def hook(response):
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        change(signatures.signature_def["serving_default"])
        response.metadata["signature_def"].Pack(signatures)
        return response

    return hook


def _unknown_dims(payload):
    for dim in _rest_signature(payload)["inputs"]["x"]["tensor_shape"]["dim"]:
        dim["size"] = "-1"
    return payload


def _change(change):
    def hook(payload):
        change(payload)
        return payload

    return hook


# id: (protocol, call, tampered metadata response, pattern of the ServingError)
BAD_METADATA = {
    "rest no x": (
        "rest",
        "encode",
        _change(lambda p: _rest_signature(p)["inputs"].pop("x")),
        r"model 'encoder', signature 'serving_default'.*has no input 'x'",
    ),
    "rest inputs a list": (
        "rest",
        "encode",
        _change(lambda p: _rest_signature(p).__setitem__("inputs", [])),
        r"unexpected response layout.*inputs is a list",
    ),
    "rest unknown sizes": (
        "rest",
        "encode",
        _unknown_dims,
        r"input 'x' has shape \[-1, -1, -1\].*every size after the batch axis known",
    ),
    "rest no signature_def": (
        "rest",
        "decode",
        lambda p: {"metadata": {}},
        r"model 'decoder'.*unexpected response layout",
    ),
    "grpc no z": (
        "grpc",
        "decode",
        _grpc_signatures(lambda sig: sig.inputs.pop("z")),
        r"model 'decoder', signature 'serving_default'.*has no input 'z'",
    ),
    "grpc no x_mean": (
        "grpc",
        "decode latent given",
        _grpc_signatures(lambda sig: sig.outputs.pop("x_mean")),
        r"has no output 'x_mean'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_malformed_metadata_raises_serving_error(server, case):
    protocol, call, tamper, pattern = BAD_METADATA[case]
    server.tamper[protocol, "metadata"] = tamper
    port = server.rest_port if protocol == "rest" else server.grpc_port
    latent_dim = LATENT_DIM if call == "decode latent given" else None
    client = client_for(server, protocol, latent_dim=latent_dim)
    with client, pytest.raises(ServingError, match=pattern) as error:
        if call == "encode":
            client.encode(X2)
        else:
            client.decode(Z2)
    assert f"127.0.0.1:{port}" in str(error.value)
    assert server.predict_count() == 0


# ---------------------------------------------------------------------------- the serving/ kit
def readme_commands() -> list[str]:
    return readme_curl_lines((SERVING_DIR / "README.md").read_text())


def test_readme_curl_examples_run_against_the_wire_format(server):
    commands = readme_commands()
    assert len(commands) >= 7
    checked = 0
    for command in commands:
        url, body, response = send_readme_curl(command, server.rest_port)
        assert response.status_code == 200, (command, response.text[:300])
        payload = response.json()
        if url.endswith(":predict"):
            result = payload["predictions"] if "instances" in body else payload["outputs"]
            if isinstance(result, list) and isinstance(result[0], dict):  # rows of outputs
                result = {key: [row[key] for row in result] for key in result[0]}
            columns = result if isinstance(result, dict) else {"": result}
            for values in columns.values():
                values = np.asarray(values, np.float32)
                assert values.ndim >= 2 and np.isfinite(values).all()
        checked += 1
    assert checked == len(commands)


def test_readme_sample_example_is_deterministic_and_shaped(server):
    command = next(c for c in readme_commands() if '"sample"' in c)
    body = shlex.split(command)[shlex.split(command).index("-d") + 1]
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/decoder:predict"
    first = requests.post(url, data=body, timeout=30).json()["outputs"]
    second = requests.post(url, data=body, timeout=30).json()["outputs"]
    assert first == second
    request = json.loads(body)["inputs"]
    assert np.asarray(first["x_mean"]).shape == (request["num_samples"], 28, 28)
    assert np.asarray(first["z"]).shape == (request["num_samples"], LATENT_DIM)


def test_models_config_serves_every_model_of_the_export_layout():
    config = text_format.Parse(
        (SERVING_DIR / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    models = {c.name: c for c in config.model_config_list.config}
    assert sorted(models) == ["decoder", "encoder", "scorer"]
    for name, model in models.items():
        assert model.base_path == f"/models/{name}"  # the export folder mounted at /models
        assert model.model_platform == "tensorflow"


BATCHING_FIELDS = {
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "allowed_batch_sizes",
    "pad_variable_length_inputs",
}


def test_batching_config_is_valid_batching_parameters():
    """Field names of TF Serving's BatchingParameters, and its rule that the last allowed batch
    size equals max_batch_size (checked by TF Serving at start-up)."""
    values: dict[str, list[str]] = {}
    for line in (SERVING_DIR / "batching.config").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"(\w+)\s*(?:\{\s*value:\s*(\S+)\s*\}|:\s*(\S+))", line)
        assert match, line
        values.setdefault(match[1], []).append(match[2] or match[3])
    assert set(values) <= BATCHING_FIELDS
    sizes = [int(v) for v in values["allowed_batch_sizes"]]
    assert sizes == sorted(sizes) and sizes[-1] == int(values["max_batch_size"][0])


def test_docker_compose_runs_tf_serving_on_the_export_folder():
    text = (SERVING_DIR / "docker-compose.yml").read_text()
    assert "image: ${TF_SERVING_IMAGE:-tensorflow/serving:latest}" in text
    assert "${EXPORT_DIR:-../export}:/models:ro" in text
    for mounted in ("models.config", "batching.config"):
        assert f"./{mounted}:/config/{mounted}:ro" in text
        assert (SERVING_DIR / mounted).is_file()
    assert "--model_config_file=/config/models.config" in text
    assert "--batching_parameters_file=/config/batching.config" in text
    assert '"8501:8501"' in text and '"8500:8500"' in text
