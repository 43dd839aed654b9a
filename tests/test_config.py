"""The run config: validation with errors that name the argument and the allowed values, and
the JSON round trip that makes `config.json` enough to rerun."""

import dataclasses
import json
import math

import pytest
from helpers import assert_exit_2_and_unchanged

from keras_vae.config import Config, DataConfig, ModelConfig, RuntimeConfig, TrainingConfig
from keras_vae.limits import MAX_SEED, check_at_least

NAN, INF = math.nan, math.inf

# (section class, bad keyword arguments, regex the message must match: argument + allowed values)
BAD_ARGUMENTS = [
    (ModelConfig, {"likelihood": "bernouli"}, r"likelihood.*\['bernoulli', 'gaussian'\]"),
    (
        ModelConfig,
        {"estimator": "mc"},
        r"estimator.*\['auto', 'analytic_kl', 'monte_carlo', 'analytic_entropy'\]",
    ),
    (
        ModelConfig,
        {"num_samples": 0},
        r"`num_samples`, expected an integer in \[1, 10000\].*num_samples=0",
    ),
    (ModelConfig, {"num_samples": 1.5}, r"`num_samples`, expected an integer in \[1, 10000\]"),
    (ModelConfig, {"beta": -0.5}, r"`beta`, expected a finite number >= 0.*beta=-0.5"),
    (
        ModelConfig,
        {"latent_dim": 0},
        r"`latent_dim`, expected an integer in \[1, 65536\].*latent_dim=0",
    ),
    (ModelConfig, {"latent_dim": True}, r"`latent_dim`, expected an integer in \[1, 65536\]"),
    (ModelConfig, {"architecture": "rnn"}, r"architecture.*\['mlp', 'conv'\]"),
    (ModelConfig, {"hidden_units": (400, 0)}, r"`hidden_units`, expected one or more positive"),
    (ModelConfig, {"likelihood_scale": -1.0}, r"`likelihood_scale`, expected a finite.*learned"),
    (ModelConfig, {"likelihood_scale": "learnt"}, r"`likelihood_scale`.*'learned'"),
    (ModelConfig, {"kl_warmup_steps": -1}, r"`kl_warmup_steps`, expected an integer in \[0, "),
    (DataConfig, {"binarization": "yes"}, r"binarization.*\['none', 'static', 'dynamic'\]"),
    (DataConfig, {"test_fraction": 1.0}, r"`test_fraction`, expected a number in \(0, 1\)"),
    (TrainingConfig, {"epochs": 0}, r"`epochs`, expected an integer in \[1, 2147483647\]"),
    (TrainingConfig, {"batch_size": 0}, r"`batch_size`, expected an integer in \[1, 2147483647\]"),
    (TrainingConfig, {"learning_rate": 0.0}, r"`learning_rate`, expected a finite positive number"),
    (TrainingConfig, {"optimizer": "lbfgs"}, r"optimizer.*\['adam', 'adagrad', 'sgd', 'rmsprop'\]"),
    (TrainingConfig, {"jit_compile": "yes"}, r"`jit_compile`, expected True, False or 'auto'"),
    (TrainingConfig, {"steps_per_execution": 0}, r"`steps_per_execution`, expected an integer"),
    (RuntimeConfig, {"strategy": "tpu"}, r"strategy.*'one_device', 'mirrored'"),
    (RuntimeConfig, {"mixed_precision": "fp8"}, r"mixed_precision.*\['none', 'float16'"),
]


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


# Non-finite and out-of-range numbers: refused with the usual message, never accepted to give NaN
# weights and a config.json holding NaN (not JSON; and NaN != NaN refuses the identical rerun).
NON_FINITE = [
    (ModelConfig, {"beta": NAN}, r"`beta`, expected a finite number >= 0\. Received: beta=nan$"),
    (ModelConfig, {"beta": INF}, r"`beta`, expected a finite number >= 0\. Received: beta=inf$"),
    (ModelConfig, {"beta": -INF}, r"`beta`, expected a finite number >= 0.*beta=-inf"),
    (ModelConfig, {"beta": 1e39}, r"`beta`, expected a finite number >= 0 \(above the float32"),
    (ModelConfig, {"likelihood_scale": INF}, r"`likelihood_scale`, expected a finite.*=inf"),
    (ModelConfig, {"likelihood_scale": "inf"}, r"`likelihood_scale`, expected a finite.*'inf'"),
    (ModelConfig, {"likelihood_scale": NAN}, r"`likelihood_scale`, expected a finite.*=nan"),
    (ModelConfig, {"likelihood_scale": 1e39}, r"`likelihood_scale`, expected a finite"),
    (ModelConfig, {"kl_warmup_steps": INF}, r"`kl_warmup_steps`, expected an integer in \[0, "),
    (ModelConfig, {"latent_dim": NAN}, r"`latent_dim`, expected an integer in \[1, 65536\]"),
    (ModelConfig, {"hidden_units": [INF]}, r"`hidden_units`, expected one or more positive"),
    (ModelConfig, {"hidden_units": [NAN]}, r"`hidden_units`, expected one or more positive"),
    (ModelConfig, {"hidden_units": [16.5]}, r"`hidden_units`, expected one or more positive"),
    (TrainingConfig, {"learning_rate": INF}, r"`learning_rate`, expected a finite positive number"),
    (TrainingConfig, {"learning_rate": NAN}, r"`learning_rate`, expected a finite positive number"),
    (
        TrainingConfig,
        {"learning_rate": "0.1"},
        r"`learning_rate`, expected a finite positive number",
    ),
    (TrainingConfig, {"epochs": INF}, r"`epochs`, expected an integer in \[1, 2147483647\]"),
    (DataConfig, {"test_fraction": NAN}, r"`test_fraction`, expected a number in \(0, 1\)"),
    (DataConfig, {"test_fraction": INF}, r"`test_fraction`, expected a number in \(0, 1\)"),
    (DataConfig, {"shuffle_buffer": 0}, r"`shuffle_buffer`, expected an integer >= 1"),
    (DataConfig, {"shuffle_buffer": INF}, r"`shuffle_buffer`, expected an integer >= 1"),
    (RuntimeConfig, {"seed": MAX_SEED + 1}, r"`seed`, expected an integer in \[0, 4294967295\]"),
    (RuntimeConfig, {"seed": -1}, r"`seed`, expected an integer in \[0, 4294967295\]"),
    (RuntimeConfig, {"seed": INF}, r"`seed`, expected an integer in \[0, 4294967295\]"),
    (RuntimeConfig, {"seed": 10**400}, r"`seed`, expected an integer in \[0, 4294967295\]"),
]


@pytest.mark.parametrize(
    "section, kwargs, match",
    BAD_ARGUMENTS + NON_FINITE,
    ids=[
        f"{s.__name__}-{next(iter(k))}={next(iter(k.values()))!s:.12}"
        for s, k, _ in BAD_ARGUMENTS + NON_FINITE
    ],
)
def test_bad_values_are_refused_naming_the_argument_and_allowed_values(section, kwargs, match):
    """BAD_ARGUMENTS and NON_FINITE: each section refuses them, the message matching."""
    with pytest.raises(ValueError, match=match):
        section(**kwargs)


def test_check_at_least_message_and_bounds():
    with pytest.raises(ValueError) as error:
        check_at_least("beta", NAN, 0, integer=False)
    assert str(error.value) == (
        "Received an invalid value for `beta`, expected a finite number >= 0. Received: beta=nan"
    )
    check_at_least("seed", MAX_SEED, 0, maximum=MAX_SEED)
    check_at_least("seed", 0, 0, maximum=MAX_SEED)
    check_at_least("beta", 0.0, 0, integer=False)
    check_at_least("learning_rate", 1e-30, 0, integer=False, exclusive=True)
    with pytest.raises(ValueError, match=r"expected a finite positive number\. "):
        check_at_least("learning_rate", 0.0, 0, integer=False, exclusive=True)
    with pytest.raises(ValueError, match=r"expected an integer in \[1, 10\]\. .*k=11$"):
        check_at_least("k", 11, 1, maximum=10)


def test_largest_seed_and_finite_extremes_are_accepted():
    assert RuntimeConfig(seed=MAX_SEED).seed == MAX_SEED == 2**32 - 1
    assert ModelConfig(beta=0.0, likelihood_scale=1e-30).beta == 0.0
    assert TrainingConfig(learning_rate=3e38).learning_rate == 3e38
    assert DataConfig(shuffle_buffer=1).shuffle_buffer == 1
    assert ModelConfig(hidden_units=[16.0]).hidden_units == (16,)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"model": {"beta": NaN}}', r"`beta`, expected a finite number >= 0.*beta=nan"),
        ('{"model": {"beta": -Infinity}}', r"`beta`, expected a finite number >= 0"),
        ('{"training": {"learning_rate": Infinity}}', r"`learning_rate`, expected a finite"),
        ('{"model": {"likelihood_scale": Infinity}}', r"`likelihood_scale`, expected a finite"),
        ('{"model": {"hidden_units": [Infinity]}}', r"`hidden_units`, expected one or more"),
        ('{"data": {"test_fraction": NaN}}', r"`test_fraction`, expected a number in"),
        ('{"runtime": {"seed": 4294967296}}', r"`seed`, expected an integer in \[0, 4294967295\]"),
        ('{"runtime": {"seed": 1e400}}', r"`seed`, expected an integer in"),
        ('{"data": {"dataset": NaN}}', r"`data.dataset`, expected a finite number or a string"),
        ('{"model": {"activation": Infinity}}', r"`model.activation`, expected a finite"),
        ("[]", r"Expected a config object"),
    ],
)
def test_from_json_refuses_nan_and_infinity(text, match):
    """Python's json reads NaN and Infinity (not JSON); a config holding them is refused."""
    with pytest.raises(ValueError, match=match):
        Config.from_json(text)
    with pytest.raises(ValueError, match=match):
        Config.from_dict(json.loads(text))


def test_to_json_never_writes_nan():
    config = Config()
    object.__setattr__(config.model, "beta", NAN)  # bypassing the checks
    with pytest.raises(ValueError, match="not JSON compliant"):
        config.to_json()


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--beta", "nan"], "beta=nan"),
        (["--beta", "inf"], "beta=inf"),
        (["--learning-rate", "inf"], "learning_rate=inf"),
        (["--likelihood", "gaussian", "--likelihood-scale", "inf"], "likelihood_scale='inf'"),
        (["--seed", "4294967296"], "seed=4294967296"),
        (["--seed", "-1"], "seed=-1"),
    ],
)
def test_train_refuses_non_finite_flags_before_writing(flags, fragment, tmp_path, capsys):
    """`keras-vae train --beta nan` (and friends): one line, exit 2, no run folder."""
    out = tmp_path / "run"
    argv = ["train", "--output", out, "--epochs", "1", *flags]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, fragment)
    assert not out.exists()
