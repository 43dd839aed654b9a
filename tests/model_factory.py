"""Small random-weight models over the families x conditional, and what the export tests of
every kind share: a model of any kind (`small_model`), the kinds by name (`MODEL_KINDS`),
signature summaries (`signature_io`), the LiteRT decoder files' interpreters
(`interpreters`), the exporter's scaled tolerance (`assert_scaled_close`), a real run
trained and exported (`trained_export`), the client's protocols (`CLIENT_PROTOCOLS`), and one
script that runs every SavedModel signature of any kind in a process that cannot import
keras_vae (`run_in_pure_tensorflow`, `assert_pure_tensorflow_close`).

    >>> model = small_model(posterior="iaf", prior="mixture", conditional=True, seed=1)
    >>> model.posterior_name, model.prior_name, model.conditional
    ('iaf', 'mixture', True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from helpers import TENSORFLOW_ONLY_PRELUDE, run_python, train_run

from keras_vae.export import export_run, export_utils, litert_models, saved_model_signatures
from keras_vae.model import VAE
from keras_vae.run_reader import load_model

# name: (posterior, prior, conditional)
MODEL_KINDS = {
    "gaussian-normal": ("gaussian", "normal", False),
    "iaf-normal": ("iaf", "normal", False),
    "gaussian-vamp": ("gaussian", "vamp", False),
    "iaf-mixture": ("iaf", "mixture", False),
    "conditional-gaussian-normal": ("gaussian", "normal", True),
    "conditional-iaf-vamp": ("iaf", "vamp", True),
}
# The serving client's protocols and REST formats every client test runs with.
CLIENT_PROTOCOLS = pytest.mark.parametrize(
    "protocol, rest_format",
    [("rest", "columnar"), ("rest", "row"), ("grpc", "columnar")],
    ids=["rest-columnar", "rest-row", "grpc"],
)
# Mixture logits of `small_model(randomize="parts")`: weights ~ 0.53 / 0.12 / 0.35.
MIXTURE_LOGITS = np.array([1.0, -0.5, 0.3])


def small_model(
    posterior: str = "gaussian",
    prior: str = "normal",
    conditional: bool = False,
    seed: int = 0,
    *,
    data_shape: tuple[int, ...] = (8, 8),
    latent_dim: int = 3,
    num_classes: int = 3,
    prior_components: int = 3,
    flow_steps: int = 2,
    randomize: str = "parts",
) -> VAE:
    """A tiny VAE (hidden units (8,)) of the kind, with random weights from `seed`.

    Fresh weights would let a broken export pass: a fresh IAF is the identity, a fresh
    mixture prior has equal weights and fresh biases are 0. `randomize` "parts" draws the
    flow's and the prior's weights (pseudo-inputs uniform in [0, 1], mixture logits
    `MIXTURE_LOGITS`, the others normal(0, 0.5)); "all" also the encoder's and the decoder's
    (pseudo-inputs uniform, every other weight normal(0, 0.5)), so the label matters too.
    """
    if randomize not in ("parts", "all"):
        raise ValueError(f"randomize must be 'parts' or 'all'. Received: randomize={randomize!r}")
    kwargs = {"data_shape": data_shape, "latent_dim": latent_dim, "hidden_units": (8,)}
    if posterior == "iaf":
        kwargs.update(posterior="iaf", flow_steps=flow_steps, flow_hidden_units=(8,))
    if prior != "normal":
        kwargs.update(prior=prior, prior_components=prior_components)
    if conditional:
        kwargs["num_classes"] = num_classes
    vae = VAE(**kwargs)
    rng = np.random.default_rng(seed)
    parts = (vae.encoder, vae.decoder) if randomize == "all" else ()
    parts += (vae.posterior_layer, vae.prior_layer)
    for weight in [w for part in parts for w in part.weights]:
        if "pseudo_inputs" in weight.path:
            value = rng.uniform(0, 1, weight.shape)
        elif "logits" in weight.path and randomize == "parts":
            value = MIXTURE_LOGITS[: weight.shape[0]]
        else:
            value = rng.normal(0, 0.5, weight.shape)
        weight.assign(value.astype(np.float32))
    return vae


def kind_model(name: str, seed: int, **kwargs) -> VAE:
    """`small_model` of the kind `name` of `MODEL_KINDS`."""
    posterior, prior, conditional = MODEL_KINDS[name]
    return small_model(posterior, prior, conditional, seed, **kwargs)


def trained_export(folder: Path, config: dict) -> tuple[VAE, Path]:
    """(model, export folder) of the real train job on `config` in `folder`, then
    `export_run(..., tflite=True)` into folder/export."""
    run_dir = train_run(folder, config)
    export_run(run_dir, folder / "export", tflite=True)
    return load_model(run_dir), folder / "export"


def signature_io(path) -> dict:
    """{signature: {"inputs", "outputs"}} of a SavedModel, as export.json records them."""
    return {
        key: {part: value[part] for part in ("inputs", "outputs")}
        for key, value in saved_model_signatures(path).items()
    }


def interpreters(folder: Path) -> dict:
    """{file: `ai_edge_litert` interpreter} of the LiteRT decoder files in folder/tflite."""
    from ai_edge_litert.interpreter import Interpreter

    return {
        name: Interpreter(model_path=str(Path(folder) / "tflite" / name))
        for name in litert_models.VARIANTS
    }


def assert_scaled_close(got, expected, err_msg: str = "") -> None:
    """Within 1e-5 relative to the largest |expected| (at least absolutely), as the exporter
    checks a flow's z and log q (`keras_vae.export.export_utils.scaled_tolerance`)."""
    expected = np.asarray(expected)
    atol = export_utils.scaled_tolerance(expected)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=atol, err_msg=err_msg)


# Runs in a fresh interpreter that cannot import keras_vae: what TF Serving or any user gets.
# A conditional input file (with "label") feeds every signature its labels and checks that an
# out-of-range label is refused; an unconditional one asks ``sample`` for 7 rows of seed 11.
PURE_TF_SCRIPT = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json

import numpy as np
import tensorflow as tf

folders, inputs, results = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
data = np.load(inputs)
label = {"label": data["label"]} if "label" in data.files else {}
feeds = {
    ("encoder", "serving_default"): {"x": data["x"], **label},
    ("encoder", "posterior_sample"): {"x": data["x"], **label, "noise": data["noise"]},
    ("decoder", "serving_default"): {"z": data["z"], **label},
    ("decoder", "sample"): (
        {**label, "seed": data["seed"]}
        if label
        else {"num_samples": np.int32(7), "seed": np.int32(11)}
    ),
}


def run_signature_def(path, key, feed):
    # TF Serving's path: a Session fed and fetched through the SignatureDef's tensor names.
    with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        signature = meta.signature_def[key]
        fetch = {k: v.name for k, v in signature.outputs.items()}
        return sess.run(fetch, {signature.inputs[k].name: v for k, v in feed.items()})


out = {}
for name, folder in folders.items():
    for (part, key), feed in feeds.items():
        path = folder + "/" + part + "/1"
        function = tf.saved_model.load(path).signatures[key]
        eager = function(**{k: tf.constant(v) for k, v in feed.items()})
        for output, value in eager.items():
            out[f"{name}/{key}/{output}"] = value.numpy()
        for output, value in run_signature_def(path, key, feed).items():
            out[f"session/{name}/{key}/{output}"] = value
    if not label:
        continue
    bad = dict(feeds[("decoder", "sample")], label=np.full(len(data["label"]), 10**6, np.int32))
    try:
        tf.saved_model.load(folder + "/decoder/1").signatures["sample"](
            **{k: tf.constant(v) for k, v in bad.items()}
        )
    except tf.errors.InvalidArgumentError as error:
        out[f"refused/{name}"] = np.array("num_classes" in str(error))
assert "keras_vae" not in sys.modules
np.savez(results, **out)
print("ok")
"""
)


def run_in_pure_tensorflow(
    folders: Mapping[str, Path], inputs: Mapping[str, np.ndarray], tmp_path: Path
):
    """Run every SavedModel signature of each export folder (`PURE_TF_SCRIPT`) on `inputs`
    (x, noise, z, and for conditional exports label and seed) in a process that cannot import
    keras_vae; returns the loaded results, ``name/signature/output`` (eager),
    ``session/name/signature/output`` (through the SignatureDefs) and ``refused/name``."""
    np.savez(tmp_path / "in.npz", **inputs)
    done = run_python(
        PURE_TF_SCRIPT,
        json.dumps({name: str(folder) for name, folder in folders.items()}),
        str(tmp_path / "in.npz"),
        str(tmp_path / "out.npz"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(tmp_path / "out.npz")


def assert_pure_tensorflow_close(got, name: str, expected: Mapping[str, np.ndarray]) -> dict:
    """Export `name`'s outputs in `run_in_pure_tensorflow`'s results `got`, eager and through
    the SignatureDefs, are exactly `expected`'s ``signature/output`` keys, each within
    `assert_scaled_close`; returns {"": eager outputs, "session/": session outputs}."""
    found = {}
    for prefix in ("", "session/"):
        outputs = {
            key[len(prefix + name) + 1 :]: got[key]
            for key in got.files
            if key.startswith(f"{prefix}{name}/")
        }
        assert sorted(outputs) == sorted(expected), (prefix, name)
        for key, value in expected.items():
            assert_scaled_close(outputs[key], value, err_msg=f"{prefix}{name}/{key}")
        found[prefix] = outputs
    return found
