"""The papers' recipes as train features: learning-rate schedules, Adam's parameters, the KL
warm-up in epochs, the data-mean output bias, gated layers and `--recipe`.

The validation split and early stopping have their own file (test_early_stopping.py).
Schedules are checked against their formulas written out here, not against the code's own
tables; a resumed run must equal an uninterrupted one (test_resume.py says why bitwise, up to
`RTOL`).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from helpers import FailAt, assert_same_results, assert_train_refused

from keras_vae import recipes
from keras_vae.cli import build_parser
from keras_vae.cli.train import config_from_args
from keras_vae.config import Config, TrainingConfig
from keras_vae.data import load_splits, make_pipelines, to_unit_interval
from keras_vae.model import VAE
from keras_vae.networks import GatedDense
from keras_vae.schedules import learning_rate, make_optimizer
from keras_vae.train import build_model, train_and_evaluate

SMALL = {
    "model": {"latent_dim": 2, "hidden_units": [16]},
    "training": {"batch_size": 64},
    "runtime": {"seed": 3},
}
DIGITS_STEPS_PER_EPOCH = 1437 // 64  # the digits training split at batch 64


def config_with(**training) -> Config:
    return Config.from_dict({**SMALL, "training": {**SMALL["training"], **training}})


def rate_at(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


# ------------------------------------------------------------------------------ schedules
def test_burda_schedule_at_every_stage_boundary():
    spe, base = 7, 0.002
    schedule = learning_rate(
        TrainingConfig(learning_rate_schedule="burda", learning_rate=base), spe
    )
    # yburda/iwae experiments.py: stage i runs 3**i epochs at 1e-4 * round(10**(1 - i/7), 1)
    # for a base of 1e-3, i.e. a factor round(10**(1 - i/7), 1) / 10.
    factors = [round(10 ** (1 - i / 7), 1) / 10 for i in range(8)]
    starts = [sum(3**j for j in range(i)) for i in range(8)]  # 0, 1, 4, 13, ..., 1093
    assert starts == [0, 1, 4, 13, 40, 121, 364, 1093] and starts[-1] + 3**7 == 3280
    for i, start in enumerate(starts):
        assert rate_at(schedule, start * spe) == pytest.approx(base * factors[i], rel=1e-6)
        last = (start + 3**i) * spe - 1  # the stage's last step
        assert rate_at(schedule, last) == pytest.approx(base * factors[i], rel=1e-6)
        if i:
            assert rate_at(schedule, start * spe - 1) == pytest.approx(base * factors[i - 1])
    assert rate_at(schedule, 5000 * spe) == pytest.approx(base * 0.1)  # after 3,280 epochs
    for i, factor in enumerate(factors):  # the code's rounding moves a rate by < 2 %
        assert abs(factor / 10 ** (-i / 7) - 1) < 0.02


def test_exponential_and_cosine_schedules_follow_their_formulas():
    spe, base = 7, 0.01
    exponential = learning_rate(
        TrainingConfig(learning_rate=base, learning_rate_schedule="exponential",
                       learning_rate_decay=0.5), spe,
    )  # fmt: skip
    cosine = learning_rate(
        TrainingConfig(learning_rate=base, epochs=10, learning_rate_schedule="cosine",
                       learning_rate_alpha=0.1), spe,
    )  # fmt: skip
    for step in (0, 6, 7, 20, 69, 70, 100):
        assert rate_at(exponential, step) == pytest.approx(base * 0.5 ** (step // spe), rel=1e-6)
        progress = min(step, 70) / 70  # 10 epochs of 7 steps, then the last rate
        expected = base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert rate_at(cosine, step) == pytest.approx(expected, rel=1e-5)
    assert TrainingConfig(learning_rate_schedule="exponential").learning_rate_decay == 0.95
    assert learning_rate(TrainingConfig(learning_rate=0.3), spe) == 0.3  # constant: a float


def test_adam_gets_the_configured_moments_and_epsilon():
    optimizer = make_optimizer(
        TrainingConfig(adam_beta_1=0.99, adam_beta_2=0.9, adam_epsilon=5e-6), steps_per_epoch=3
    )
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.99, 0.9, 5e-6)


@pytest.fixture(scope="module")
def burda_runs(tmp_path_factory):
    """The burda schedule over 5 digits epochs (stages 0, 1, 1, 1, 2): uninterrupted, and
    killed mid-stage (after epoch index 2) then resumed."""
    config = config_with(epochs=5, learning_rate_schedule="burda", learning_rate=0.01)
    whole = train_and_evaluate(config, tmp_path_factory.mktemp("whole") / "run", verbose=0)
    run_dir = tmp_path_factory.mktemp("resumed") / "run"
    with pytest.raises(RuntimeError, match="interrupted"):
        train_and_evaluate(config, run_dir, verbose=0, callbacks=[FailAt(epoch=2)])
    return whole, train_and_evaluate(config, run_dir, verbose=0)


def test_a_run_resumed_mid_stage_equals_the_uninterrupted_one(burda_runs):
    whole, resumed = burda_runs
    assert resumed["resumed_from_epoch"] == 2
    assert_same_results(resumed, whole)
    # The history's rate is each epoch's own (that of its last step).
    expected = [0.01 * f for f in (1.0, 0.72, 0.72, 0.72, 0.52)]
    np.testing.assert_allclose(whole["history"]["learning_rate"], expected, rtol=1e-6)


# ------------------------------------------------------------------------------ warm-up, bias
def test_kl_warmup_in_epochs_becomes_steps():
    config = config_with(kl_warmup_epochs=3)
    pipelines = make_pipelines(config.data, 64, seed=3)
    model = build_model(config, pipelines.info, pipelines)
    assert model.kl_warmup_steps == 3 * DIGITS_STEPS_PER_EPOCH
    model.optimizer.iterations.assign(DIGITS_STEPS_PER_EPOCH - 1)  # the first epoch's last step
    assert float(model.kl_weight()) == pytest.approx(1 / 3)  # step s is weighted (s + 1) / W
    with pytest.raises(ValueError, match="in steps or in epochs, not both"):
        Config.from_dict({"model": {"kl_warmup_steps": 5}, "training": {"kl_warmup_epochs": 2}})


def test_output_bias_starts_at_the_logit_of_the_training_mean():
    config = Config.from_dict(
        {
            **SMALL,
            "data": {"validation_examples": 100},
            "training": {"init_output_bias": "data-mean"},
        }
    )
    pipelines = make_pipelines(config.data, 64, seed=3)
    model = build_model(config, pipelines.info, pipelines)
    train = to_unit_interval(load_splits("digits")["train"].images[:-100])  # validation held out
    mean = np.clip(train.astype(np.float64).mean(axis=0), 1e-3, 1 - 1e-3)
    bias = model.decoder.get_layer("location_flat").bias.numpy().reshape(mean.shape)
    np.testing.assert_allclose(bias, np.log(mean / (1 - mean)), rtol=1e-5, atol=1e-5)
    # The decoder's mean at z's bias-only path is then the data mean: other layers are
    # untouched (their bias is still zero).
    assert not np.any(model.decoder.get_layer("hidden_0").bias.numpy())


# ------------------------------------------------------------------------------ gated layers
def test_gated_dense_is_a_linear_map_times_a_sigmoid_gate(tmp_path):
    layer = GatedDense(3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    out = layer(x).numpy()
    w, b = layer.linear.kernel.numpy(), layer.linear.bias.numpy()
    v, c = layer.gate.kernel.numpy(), layer.gate.bias.numpy()
    np.testing.assert_allclose(out, (x @ w + b) / (1 + np.exp(-(x @ v + c))), rtol=1e-5, atol=1e-6)
    vae = VAE(data_shape=(5,), latent_dim=2, hidden_units=(6, 4), activation="gated")
    assert isinstance(vae.encoder.get_layer("hidden_1"), GatedDense)
    path = tmp_path / "gated.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.decode(np.ones((2, 2))), vae.decode(np.ones((2, 2))))


# ------------------------------------------------------------------------------ --recipe
# Written out from the authors' code, not read from keras_vae.recipes: section -> field -> value
BURDA2015 = {  # yburda/iwae
    "model": dict(latent_dim=50, hidden_units=[200, 200], activation="tanh"),
    "data": dict(dataset="mnist", binarization="dynamic", validation_examples=400),
    "training": dict(
        recipe="burda2015",
        epochs=3280,
        batch_size=20,
        optimizer="adam",
        learning_rate=1e-3,
        learning_rate_schedule="burda",
        adam_beta_1=0.99,
        adam_beta_2=0.999,
        adam_epsilon=5e-6,  # 1e-4 on their loss summed over the batch of 20
        init_output_bias="data-mean",
    ),
}
VAMPPRIOR2018 = {  # jmtomczak/vae_vampprior experiment.py defaults, model vae, static_mnist
    "model": dict(
        latent_dim=40,
        hidden_units=[300, 300],
        activation="gated",
        prior="vamp",
        prior_components=500,
    ),
    "data": dict(dataset="binarized_mnist", binarization="static", validation_examples="source"),
    "training": dict(
        recipe="vampprior2018",
        epochs=2000,
        batch_size=100,
        learning_rate=5e-4,
        adam_epsilon=1e-8,
        kl_warmup_epochs=100,
        early_stopping_patience=50,
    ),
}


@pytest.mark.parametrize(
    ("name", "expected"), [("burda2015", BURDA2015), ("vampprior2018", VAMPPRIOR2018)]
)
def test_a_recipe_resolves_to_the_papers_settings_in_config_json(name, expected):
    args = build_parser().parse_args(["train", "--recipe", name, "--output", "x"])
    stored = json.loads(config_from_args(args).to_json())
    default = json.loads(Config().to_json())
    for section, values in stored.items():
        for key, value in values.items():
            wanted = expected.get(section, {}).get(key, default[section][key])
            if key == "estimator":  # "auto", resolved by the parts
                continue
            assert value == wanted, (section, key)


def test_an_explicit_flag_wins_over_the_recipe():
    argv = ["train", "--recipe", "burda2015", "--batch-size", "7", "--objective", "iwae"]
    argv += ["--num-samples", "5", "--learning-rate-schedule", "constant", "--output", "x"]
    config = config_from_args(build_parser().parse_args(argv))
    assert config.training.batch_size == 7 and config.training.learning_rate_schedule == "constant"
    assert (config.model.objective, config.model.num_samples) == ("iwae", 5)
    assert config.model.hidden_units == (200, 200) and config.training.adam_beta_1 == 0.99
    assert recipes.resolve({"training": {"recipe": "burda2015", "epochs": 3}}).training.epochs == 3


BAD_TRAIN_FLAGS = [
    ("--recipe burda2016", "--recipe"),
    ("--learning-rate-schedule step", "--learning-rate-schedule"),
    ("--validation-examples 1437", "would leave no training example"),
    ("--validation-examples -1", "--validation-examples"),
    ("--validation-examples some", "validation"),
    ("--validation-examples source", "no validation split of its own"),
    ("--learning-rate-schedule exponential --learning-rate-decay nan", "decay"),
    ("--learning-rate-schedule exponential --learning-rate-decay 0", "decay"),
    ("--learning-rate-schedule exponential --learning-rate-decay 1.5", "decay"),
    ("--learning-rate-schedule cosine --learning-rate-alpha inf", "alpha"),
    ("--learning-rate-schedule cosine --learning-rate-alpha -0.1", "alpha"),
    ("--learning-rate-decay 0.5", "belongs to the exponential schedule"),
    ("--adam-beta-1 1", "adam_beta_1"),
    ("--adam-beta-2 -0.5", "adam_beta_2"),
    ("--adam-epsilon 0", "adam_epsilon"),
    ("--optimizer sgd --adam-beta-1 0.5", "--optimizer adam"),
    ("--early-stopping-patience 3", "--validation-examples"),
    ("--early-stopping-patience -1", "early_stopping_patience"),
    ("--kl-warmup-epochs 2 --kl-warmup-steps 5", "not both"),
    ("--kl-warmup-epochs -2", "kl_warmup_epochs"),
    ("--init-output-bias data-mean --architecture conv", "per-pixel"),
    ("--activation gated --architecture conv", "mlp"),
    ("--gradient-estimator dreg", "--objective iwae"),
    ("--objective iwae --prior vamp --gradient-estimator dreg", "dreg"),
]


@pytest.mark.parametrize(("flags", "fragment"), BAD_TRAIN_FLAGS)
def test_bad_recipe_flags_exit_2_and_write_nothing(flags, fragment, tmp_path, capsys):
    assert_train_refused(["--dataset", "digits", *flags.split()], tmp_path, capsys, fragment)
