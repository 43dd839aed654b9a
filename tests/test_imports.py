"""What importing keras_vae loads: the serving client and the config without TensorFlow, and
the package's Keras classes registered as soon as Keras is imported (keras_vae/registration.py),
whichever of keras and keras_vae comes first. Each import runs in a fresh interpreter, whose
last line of output is a JSON object."""

from __future__ import annotations

import json
import pathlib
import re
import sys
import textwrap

import pytest
from helpers import run_command, run_python

from keras_vae.registration import KERAS_MODULES

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_vae"
HEAVY = ("tensorflow", "keras", "tensorflow_probability")
LOADED_HEAVY = f"[m for m in {HEAVY!r} if m in sys.modules]"
LIGHT = ("serving", "config", "limits", "signatures", "json_files", "npz_files")
# keras_vae.__all__, the public API (a name added there is added here too).
CONFIGS = ["Config", "DataConfig", "ModelConfig", "RuntimeConfig", "TrainingConfig"]
DATA = ["DataError", "load_splits", "make_datasets"]
PUBLIC = ["VAE", "__version__", "list_presets", "train_and_evaluate", *CONFIGS, *DATA]


def run(code: str) -> dict:
    """The JSON object `code` prints last, run in a fresh interpreter."""
    result = run_python(textwrap.dedent(code))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved_vae(tmp_path_factory) -> pathlib.Path:
    """A tiny untrained VAE written by `VAE.save`."""
    from keras_vae.model import VAE

    path = tmp_path_factory.mktemp("imports") / "tiny.keras"
    VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)).save(path)
    return path


def test_the_light_modules_import_no_tensorflow():
    found = run(f"""
        import json, sys, time
        start = time.process_time()
        import {", ".join(f"keras_vae.{name}" for name in LIGHT)}
        seconds = time.process_time() - start
        print(json.dumps({{"heavy": {LOADED_HEAVY}, "seconds": seconds}}))
    """)
    assert found["heavy"] == [], found
    assert found["seconds"] < 1.0, found  # CPU seconds: TensorFlow alone takes several


def test_a_rest_call_loads_no_tensorflow():
    """The client's REST path (here failing to connect) needs no TensorFlow either."""
    found = run(f"""
        import json, sys
        from keras_vae.serving import ServingClient, ServingError
        client = ServingClient("127.0.0.1", rest_port=9, timeout=2, data_shape=(2,), latent_dim=1)
        try:
            client.decode([[0.0]])
        except ServingError as error:
            message = str(error)
        print(json.dumps({{"heavy": {LOADED_HEAVY}, "message": message}}))
    """)
    assert found["heavy"] == [], found
    assert "cannot connect" in found["message"], found


@pytest.mark.parametrize("first", ["keras_vae", "keras"], ids=["keras-vae-first", "keras-first"])
def test_load_model_finds_the_vae_after_import_keras_vae(saved_vae, first):
    """`keras.saving.load_model` reads a `.keras` file of `VAE.save` without custom_objects,
    whether keras is imported after keras_vae (the post-import hook) or before."""
    second = "keras" if first == "keras_vae" else "keras_vae"
    found = run(f"""
        import json
        import {first}
        import {second}
        model = keras.saving.load_model({str(saved_vae)!r})
        kind = type(model)
        print(json.dumps({{
            "type": f"{{kind.__module__}}.{{kind.__name__}}",
            "is_vae": isinstance(model, keras_vae.VAE),
            "latent_dim": model.latent_dim,
        }}))
    """)
    assert found == {"type": "keras_vae.model.VAE", "is_vae": True, "latent_dim": 2}


def test_every_public_name_resolves():
    found = run("""
        import json, keras_vae
        names = keras_vae.__all__
        print(json.dumps({name: getattr(keras_vae, name) is not None for name in names}))
    """)
    assert sorted(found) == sorted(PUBLIC)
    assert all(found.values()), found


def test_the_classes_are_registered_once_keras_is_imported():
    names = ("keras_vae>VAE", "keras_vae>IAFPosterior", "keras_vae>MixturePrior")
    found = run(f"""
        import json
        import keras_vae
        import keras
        get = keras.saving.get_registered_object
        print(json.dumps({{name: get(name) is not None for name in {names!r}}}))
    """)
    assert found == dict.fromkeys(names, True)


def test_every_module_with_a_keras_class_is_imported_by_the_hook():
    """A class registered in a module the hook does not import would not load."""
    registering = set()
    for path in PACKAGE.rglob("*.py"):
        if re.search(r"^@keras\.saving\.register_keras_serializable", path.read_text(), re.M):
            registering.add(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    assert registering, "no registered class found: the scan is broken"
    assert registering <= set(KERAS_MODULES), sorted(registering - set(KERAS_MODULES))


def test_pytest_given_one_module_runs_its_examples():
    """`pytest keras_vae/networks.py`: pytest's assertion rewriter loads a file named on its
    command line, one loader for several modules, which the hook cannot wrap in place. Its
    loading must still be counted, or the hook registered (importing keras_vae.model, which
    imports keras_vae.networks) while networks.py was half-loaded: a circular import error."""
    result = run_command(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"]
        + ["-o", "addopts=", "-q", "--doctest-modules", "keras_vae/networks.py"],
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b[1-9]\d* passed\b", result.stdout), result.stdout[-1000:]
