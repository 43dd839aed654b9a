"""The decoder's batchable ``generate`` signature (issue 16, item 3): ``seed`` int64 [batch]
(and ``label`` for a conditional model) -> ``x_mean``, ``z`` (and ``component`` for a mixture
prior), row i from seed i alone, at most max_samples_per_request rows; ``sample`` unchanged;
the warm-up records and the scorer's record in export.json of a default export.

Three tiny decoders (6 inputs, latent 2, random mixture logits) written and checked by
`keras_vae.export.saved_model`, and one real run (the bundled digits) through `export_run`.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TENSORFLOW_ONLY_PRELUDE, run_python

from keras_vae.export import ExportError, export_run, saved_model, saved_model_checks
from keras_vae.model import VAE
from keras_vae.parts.priors import sample_from_noise

CAP = 64
LATENT = 2
K = 3
MODELS = {
    "normal": {},
    "conditional": {"num_classes": K},
    "mixture": {"prior": "mixture", "prior_components": K},
}
SEEDS = np.array([-(2**63), 2**63 - 1, -1, 0, 7, 7, 123456789], np.int64)


def tiny_model(name: str) -> VAE:
    vae = VAE(data_shape=(6,), latent_dim=LATENT, hidden_units=(8,), **MODELS[name])
    for weight in vae.prior_layer.weights:  # unequal mixture weights, spread components
        value = np.random.default_rng(1).normal(0, 1.0, weight.shape)
        weight.assign(value.astype(np.float32))
    return vae


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """{name: (model, generate signature)}, each decoder written and checked (the check
    includes `check_row_seeded` on generate)."""
    root = tmp_path_factory.mktemp("generate")
    out = {}
    for name in MODELS:
        model = tiny_model(name)
        saved_model.write_decoder(model, root / name, max_samples=CAP)
        errors = saved_model_checks.check_decoder(model, root / name, max_samples=CAP)
        assert {"generate_z", "generate_x_mean"} <= set(errors)
        signatures = tf.saved_model.load(str(root / name)).signatures
        out[name] = (model, signatures)
    return out


@pytest.fixture(scope="module")
def real_export(tiny_run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("generate_export") / "export"
    export_run(tiny_run_dir, out)
    return out


def philox_rows(seeds, stream: int, shape) -> np.ndarray:
    """The documented per-row draws: stateless Philox of [seed_i, stream] alone."""
    draw = tf.random.stateless_normal if stream == 0 else tf.random.stateless_uniform
    rows = [draw(shape, seed=tf.constant([s, stream], tf.int64), alg="philox") for s in seeds]
    return np.stack([r.numpy() for r in rows])


def generate(signature, seeds, labels=None) -> dict[str, np.ndarray]:
    feed = {"seed": tf.constant(np.asarray(seeds, np.int64))}
    if labels is not None:
        feed["label"] = tf.constant(np.asarray(labels, np.int32))
    return {key: value.numpy() for key, value in signature(**feed).items()}


def test_rows_depend_only_on_their_own_seed(decoders):
    """[s1, s2] equals [s1] and [s2] run apart (z and component exactly), and every z is the
    documented Philox draw of its seed."""
    for name, (model, signatures) in decoders.items():
        labels = np.arange(len(SEEDS)) % K if model.conditional else None
        both = generate(signatures["generate"], SEEDS, labels)
        eps = philox_rows(SEEDS.tolist(), 0, [LATENT])
        if name != "mixture":
            np.testing.assert_array_equal(both["z"], eps, err_msg=name)
        for i, seed in enumerate(SEEDS):
            alone = generate(
                signatures["generate"], [seed], None if labels is None else labels[i : i + 1]
            )
            assert sorted(alone) == sorted(both), name
            for key, value in alone.items():
                if key == "x_mean":
                    np.testing.assert_allclose(value[0], both[key][i], rtol=0, atol=1e-6)
                else:
                    np.testing.assert_array_equal(value[0], both[key][i], err_msg=f"{name} {key}")
        np.testing.assert_array_equal(both["z"][4], both["z"][5])  # the same seed twice


def test_conditional_generate_equals_sample_and_the_label_matters(decoders):
    model, signatures = decoders["conditional"]
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    got = generate(signatures["generate"], SEEDS, labels)
    sample = signatures["sample"](label=tf.constant(labels, tf.int32), seed=tf.constant(SEEDS))
    for key, value in sample.items():
        np.testing.assert_array_equal(got[key], value.numpy())
    np.testing.assert_allclose(got["x_mean"], model.decode(got["z"], labels), rtol=0, atol=1e-5)
    other = generate(signatures["generate"], SEEDS, (labels + 1) % K)
    np.testing.assert_array_equal(other["z"], got["z"])  # the prior is not conditioned
    assert np.abs(other["x_mean"] - got["x_mean"]).max() > 1e-4
    for bad in ([K] * len(SEEDS), [-1] * len(SEEDS), labels[:-1]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
            generate(signatures["generate"], SEEDS, bad)


def test_mixture_generate_outputs_each_rows_component(decoders):
    model, signatures = decoders["mixture"]
    got = generate(signatures["generate"], SEEDS)
    assert got["component"].dtype == np.int32
    eps, u = philox_rows(SEEDS.tolist(), 0, [LATENT]), philox_rows(SEEDS.tolist(), 1, [])
    z, component = sample_from_noise(model.prior_parameters(), eps, u)
    np.testing.assert_array_equal(got["component"], np.asarray(component))
    np.testing.assert_allclose(got["z"], np.asarray(z), rtol=0, atol=1e-6)
    many = generate(signatures["generate"], np.arange(CAP))["component"]
    assert len(set(many.tolist())) > 1  # the uniforms reach more than one component


def test_generate_is_capped(decoders):
    for model, signatures in decoders.values():
        labels = (lambda n: np.zeros(n, np.int32)) if model.conditional else (lambda n: None)
        assert generate(signatures["generate"], np.arange(CAP), labels(CAP))["z"].shape == (
            CAP,
            LATENT,
        )
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"<= {CAP} rows.*max_samples"):
            generate(signatures["generate"], np.arange(CAP + 1), labels(CAP + 1))


def test_the_check_catches_rows_that_depend_on_the_batch(decoders, tmp_path):
    """A generate drawing the batch's noise from its first seed (row i depends on seed 0)
    passes none of `check_row_seeded`."""
    model, _ = decoders["normal"]

    def batch_seeded(seed):
        key = tf.stack([seed[0], tf.constant(0, tf.int64)])
        z = tf.random.stateless_normal([tf.shape(seed)[0], LATENT], seed=key, alg="philox")
        return {"x_mean": model.decode(z, training=False), "z": z}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint("generate", batch_seeded, [tf.TensorSpec([None], tf.int64, name="seed")])
    archive.write_out(str(tmp_path / "broken"), verbose=False)
    signature = tf.saved_model.load(str(tmp_path / "broken")).signatures["generate"]
    with pytest.raises(ExportError, match="generate z"):
        saved_model_checks.check_row_seeded(
            model, signature, "generate", saved_model_checks.check_seeds(8)
        )


def test_a_default_export_records_generate_warmup_and_the_scorer(real_export):
    record = json.loads((real_export / "export.json").read_text())
    decoder = record["models"]["decoder"]["signatures"]
    assert sorted(decoder) == ["generate", "sample", "serving_default"]
    assert decoder["generate"]["inputs"] == {"seed": {"dtype": "int64", "shape": [-1]}}
    assert sorted(decoder["generate"]["outputs"]) == ["x_mean", "z"]
    assert sorted(decoder["sample"]["inputs"]) == ["num_samples", "seed"]  # unchanged
    # Warm-up at batch sizes 1, 2, 4 for each batchable signature (not the scalar `sample`).
    warmups = {name: info["warmup_records"] for name, info in record["models"].items()}
    assert warmups == {"encoder": 6, "decoder": 6, "scorer": 3}
    for name in warmups:
        assert (real_export / name / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    scorer = record["models"]["scorer"]
    assert scorer["path"] == "scorer/1"
    assert (scorer["score_samples"], scorer["score_seed"], scorer["calibration"]) == (100, 0, None)
    assert sorted(scorer["signatures"]["serving_default"]["outputs"]) == [
        "elbo",
        "kl",
        "log_likelihood",
        "reconstruction",
    ]  # no is_anomaly: the run is not calibrated


TF_ONLY_GENERATE = (
    TENSORFLOW_ONLY_PRELUDE
    + r"""
import json
import numpy as np
import tensorflow as tf

folder, expected_path = sys.argv[1], sys.argv[2]
generate = tf.saved_model.load(folder + "/decoder/1").signatures["generate"]
seeds = np.array([5, -3, 2**62], np.int64)
both = generate(seed=tf.constant(seeds))
apart = [generate(seed=tf.constant(seeds[i : i + 1]))["z"].numpy()[0] for i in range(3)]
expected = np.load(expected_path)
try:
    generate(seed=tf.constant(np.arange(10_001, dtype=np.int64)))
    refused = ""
except tf.errors.InvalidArgumentError as error:
    refused = error.message
print(json.dumps({
    "z_equal": bool(np.array_equal(both["z"].numpy(), np.stack(apart))),
    "z_expected": bool(np.array_equal(both["z"].numpy(), expected)),
    "x_mean_shape": list(both["x_mean"].shape),
    "refused": refused,
}))
"""
)


def test_generate_in_a_tensorflow_only_process(real_export, tmp_path):
    seeds = [5, -3, 2**62]
    np.save(tmp_path / "z.npy", philox_rows(seeds, 0, [LATENT]))
    done = run_python(TF_ONLY_GENERATE, str(real_export), str(tmp_path / "z.npy"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["z_equal"] and result["z_expected"], result
    assert result["x_mean_shape"] == [3, 8, 8]
    assert "<= 10000 rows" in result["refused"] and "max_samples_per_request" in result["refused"]
