"""Issue 24 class 4: the memory of training a config is estimated before anything is built
(`keras_vae.memory`), and what cannot fit the limit (`--memory-limit-mb`, by default half of
this machine's memory) is refused with one line naming the estimate and the limit, exit 2,
nothing written.
"""

from __future__ import annotations

import os

import pytest
from helpers import assert_exit_2_and_unchanged

from keras_vae.config import Config
from keras_vae.data import make_pipelines
from keras_vae.memory import memory_limit_bytes, training_memory
from keras_vae.train import build_model

MODELS = {
    "mlp": {},
    "gated": {"activation": "gated", "hidden_units": [32, 16]},
    "conditional": {"conditional": True, "num_classes": 10},
    "gaussian_learned_scale": {"likelihood": "gaussian", "likelihood_scale": "learned"},
    "iaf": {"posterior": "iaf", "flow_steps": 2, "flow_hidden_units": [32, 32]},
    "mixture": {"prior": "mixture", "prior_components": 7},
    "vamp": {"prior": "vamp", "prior_components": 9},
    "conv": {"architecture": "conv", "hidden_units": [8, 16]},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_estimate_counts_every_parameter_the_model_builds(name):
    config = Config.from_dict(
        {"data": {"dataset": "digits"}, "model": {"latent_dim": 3, **MODELS[name]}}
    )
    pipelines = make_pipelines(config.data, 32, 0)
    model = build_model(config, pipelines.info, pipelines)
    assert training_memory(config, pipelines.info.data_shape).parameters == model.count_params()


def test_activations_grow_with_the_batch_and_the_samples():
    def activations(**training_and_model) -> int:
        batch = training_and_model.pop("batch_size", 100)
        config = Config.from_dict({"model": training_and_model, "training": {"batch_size": batch}})
        return training_memory(config, (28, 28)).activations

    base = activations()
    assert activations(batch_size=200) == 2 * base
    assert base < activations(objective="iwae", num_samples=5) < 5 * base


# The configs the hostile user ran until the allocator failed, on the 8x8 digits.
TOO_BIG = {
    "iaf": ["--posterior", "iaf", "--flow-steps", "64", "--flow-hidden-units", "65536,65536"],
    "mixture": ["--prior", "mixture", "--prior-components", "100000", "--latent-dim", "65536"],
    "iwae": ["--objective", "iwae", "--num-samples", "10000", "--hidden-units", "4000"],
    "wide": ["--hidden-units", "65536,65536"],
}


@pytest.mark.parametrize("name", sorted(TOO_BIG))
def test_what_cannot_fit_is_refused_before_anything_is_built(name, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "1", *TOO_BIG[name]]
    line = assert_exit_2_and_unchanged(
        [*argv, "--output", tmp_path / "run"], [tmp_path], capsys, "GB", "limit", "parameters"
    )
    assert not (tmp_path / "run").exists(), line


def test_the_limit_is_a_config_field(tmp_path, capsys):
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory_limit_bytes("auto") == memory // 2
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--output", tmp_path / "run"]
    assert_exit_2_and_unchanged(
        [*argv, "--memory-limit-mb", "1"], [tmp_path], capsys, "limit of 1 MB"
    )
    from keras_vae.cli import main

    assert main([str(a) for a in [*argv, "--memory-limit-mb", "0", "--verbose", "0"]]) == 0
