"""The run config: validation with errors that name the argument and the allowed values, and
the JSON round trip that makes `config.json` enough to rerun."""

import dataclasses
import json

import pytest

from keras_vae.config import Config, DataConfig, ModelConfig, RuntimeConfig, TrainingConfig

# (section class, bad keyword arguments, regex the message must match: argument + allowed values)
BAD_ARGUMENTS = [
    (ModelConfig, {"likelihood": "bernouli"}, r"likelihood.*\['bernoulli', 'gaussian'\]"),
    (ModelConfig, {"estimator": "mc"}, r"estimator.*\['analytic_kl', 'monte_carlo'\]"),
    (ModelConfig, {"num_samples": 0}, r"`num_samples`, expected an integer >= 1.*num_samples=0"),
    (ModelConfig, {"num_samples": 1.5}, r"`num_samples`, expected an integer >= 1"),
    (ModelConfig, {"beta": -0.5}, r"`beta`, expected a number >= 0.*beta=-0.5"),
    (ModelConfig, {"latent_dim": 0}, r"`latent_dim`, expected an integer >= 1.*latent_dim=0"),
    (ModelConfig, {"latent_dim": True}, r"`latent_dim`, expected an integer >= 1"),
    (ModelConfig, {"architecture": "rnn"}, r"architecture.*\['mlp', 'conv'\]"),
    (ModelConfig, {"hidden_units": (400, 0)}, r"`hidden_units`, expected one or more positive"),
    (ModelConfig, {"likelihood_scale": -1.0}, r"`likelihood_scale`, expected a positive.*learned"),
    (ModelConfig, {"likelihood_scale": "learnt"}, r"`likelihood_scale`.*'learned'"),
    (ModelConfig, {"kl_warmup_steps": -1}, r"`kl_warmup_steps`, expected an integer >= 0"),
    (DataConfig, {"binarization": "yes"}, r"binarization.*\['none', 'static', 'dynamic'\]"),
    (DataConfig, {"test_fraction": 1.0}, r"`test_fraction`, expected a number in \(0, 1\)"),
    (TrainingConfig, {"epochs": 0}, r"`epochs`, expected an integer >= 1"),
    (TrainingConfig, {"batch_size": 0}, r"`batch_size`, expected an integer >= 1"),
    (TrainingConfig, {"learning_rate": 0.0}, r"`learning_rate`, expected a positive number"),
    (TrainingConfig, {"optimizer": "lbfgs"}, r"optimizer.*\['adam', 'adagrad', 'sgd', 'rmsprop'\]"),
    (TrainingConfig, {"jit_compile": "yes"}, r"`jit_compile`, expected True, False or 'auto'"),
    (TrainingConfig, {"steps_per_execution": 0}, r"`steps_per_execution`, expected an integer"),
    (RuntimeConfig, {"strategy": "tpu"}, r"strategy.*'one_device', 'mirrored'"),
    (RuntimeConfig, {"mixed_precision": "fp8"}, r"mixed_precision.*\['none', 'float16'"),
]


@pytest.mark.parametrize(
    "section, kwargs, match",
    BAD_ARGUMENTS,
    ids=[f"{s.__name__}-{next(iter(k))}={next(iter(k.values()))}" for s, k, _ in BAD_ARGUMENTS],
)
def test_bad_arguments_name_the_argument_and_allowed_values(section, kwargs, match):
    with pytest.raises(ValueError, match=match):
        section(**kwargs)


def test_received_value_is_quoted():
    with pytest.raises(ValueError, match=r"Received: likelihood='bernouli'$"):
        ModelConfig(likelihood="bernouli")


def test_binarization_needs_the_bernoulli_likelihood():
    with pytest.raises(ValueError, match=r"binarization='dynamic', likelihood='gaussian'"):
        Config(model=ModelConfig(likelihood="gaussian"), data=DataConfig(binarization="dynamic"))


def test_hidden_units_defaults_and_normalisation():
    assert ModelConfig().hidden_units == (400,)
    assert ModelConfig(architecture="conv").hidden_units == (32, 64)
    assert ModelConfig(hidden_units=500).hidden_units == (500,)
    assert ModelConfig(hidden_units=[400, 200]).hidden_units == (400, 200)
    assert ModelConfig(likelihood_scale="0.25").likelihood_scale == 0.25
    assert ModelConfig(likelihood_scale="learned").likelihood_scale == "learned"


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "model": {
                "latent_dim": 3,
                "architecture": "conv",
                "hidden_units": [8, 16],
                "activation": "tanh",
                "likelihood": "gaussian",
                "likelihood_scale": "learned",
                "estimator": "monte_carlo",
                "num_samples": 4,
                "beta": 0.5,
                "kl_warmup_steps": 100,
            },
            "data": {"dataset": "/data/mnist", "test_fraction": 0.1, "shuffle_buffer": 1000},
            "training": {"epochs": 3, "batch_size": 32, "jit_compile": True, "optimizer": "sgd"},
            "runtime": {"seed": 7, "strategy": "mirrored", "mixed_precision": "bfloat16"},
        },
    ],
    ids=["defaults", "every_field"],
)
def test_json_round_trip(values):
    config = Config.from_dict(values)
    text = config.to_json()
    again = Config.from_json(text)
    assert again == config
    assert again.to_json() == text
    assert json.loads(text)["model"]["hidden_units"] == list(config.model.hidden_units)
    for name, value in values.get("model", {}).items():  # every given field survived
        expected = tuple(value) if name == "hidden_units" else value
        assert getattr(again.model, name) == expected


def test_every_field_is_written():
    written = json.loads(Config().to_json())
    expected = {
        "model": ModelConfig,
        "data": DataConfig,
        "training": TrainingConfig,
        "runtime": RuntimeConfig,
    }
    assert set(written) == set(expected)
    for name, cls in expected.items():
        assert set(written[name]) == {f.name for f in dataclasses.fields(cls)}


def test_unknown_sections_and_keys_are_rejected():
    with pytest.raises(ValueError, match=r"Unknown config sections \['optimiser'\]"):
        Config.from_dict({"optimiser": {}})
    with pytest.raises(ValueError, match=r"Unknown keys \['latent'\] in config section 'model'"):
        Config.from_dict({"model": {"latent": 2}})
