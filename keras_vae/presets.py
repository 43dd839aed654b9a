"""Presets: trained VAEs as folders in KerasHub's layout, loadable offline.

A preset folder holds the three files KerasHub names so:

- ``config.json``: ``keras.saving.serialize_keras_object(vae)`` without compile or build state,
  enough to rebuild the VAE (``data_shape`` included);
- ``model.weights.h5``: ``vae.save_weights``: the float32 weights, no optimizer state;
- ``metadata.json``: the format (`FORMAT`, `FORMAT_VERSION`), the keras-vae, Keras and
  TensorFlow versions and, for a preset made from a run (`keras_vae.preset_claims`), the train
  command, recipe, epochs, data, the run's config (``run_config``: the commands' ``--dataset``
  default) and the numbers measured on the saved weights (``measured``).

A preset is a name of `list_presets()` (a folder shipped in ``keras_vae/preset_folders``), the
path of a preset folder, or an ``hf://ORG/MODEL`` or ``kaggle://ORG/MODEL/keras/VARIANT``
handle, whose files keras-hub's own preset loader fetches (``pip install keras-hub``, with
huggingface_hub or kagglehub). That needs the network, so no test covers it: to stay offline,
download the folder and pass its path.

Reading is strict: a missing file, invalid JSON, unexpected keys, weights that do not fit the
config, or a metadata.json of another format version raise one `PresetError` (a `ValueError`)
naming the file and the fix. Writing (`keras_vae.preset_writer.save_preset`) is atomic (the
folder appears whole or not at all), into a missing or empty folder or over a preset keras-vae
wrote, never anywhere else.

Example:

>>> import tempfile
>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> folder = vae.save_to_preset(Path(tempfile.mkdtemp()) / "tiny")
>>> sorted(path.name for path in folder.iterdir())
['config.json', 'metadata.json', 'model.weights.h5']
>>> load_preset(folder).model.latent_dim
2
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_vae import run_reader as rd
from keras_vae.config import Config, DataConfig, ModelConfig
from keras_vae.data.checks import one_line
from keras_vae.json_files import JSONFileError, read_json_file
from keras_vae.limits import user_path
from keras_vae.registration import VAE_REGISTERED_NAME

if TYPE_CHECKING:
    from keras_vae.model import VAE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
FORMAT = "keras-vae preset"
FORMAT_VERSION = 1
SHIPPED = Path(__file__).resolve().parent / "preset_folders"
HUB_PREFIXES = ("hf://", "kaggle://")
CONFIG_KEYS = {"module", "class_name", "config", "registered_name"}
# metadata.json: every key below is present (null where it does not apply); "description" may be.
RUN_KEYS = ("command", "recipe", "epochs", "data", "trained_on", "run_config", "run_metrics")
VERSION_KEYS = ("keras_vae_version", "keras_version", "tensorflow_version")
METADATA_KEYS = {"format", "format_version", *VERSION_KEYS, "parameter_count", "date_saved"}
METADATA_KEYS |= {*RUN_KEYS, "measured"}
OPTIONAL_KEYS = {"description"}
NO_DATASET = ""  # the dataset of a preset saved from a model alone: the commands need --dataset
_FIX = "restore it, or save the preset again with `vae.save_to_preset(folder)`"


class PresetError(ValueError):
    """A preset that cannot be found or read; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """A loaded preset: its local folder, its name (a shipped one's in `list_presets()`, else
    the folder or handle given), the `VAE` with its weights, and the checked metadata.json."""

    path: Path
    name: str
    model: Any
    metadata: dict[str, Any]


def list_presets() -> list[str]:
    """The names of the presets shipped inside keras-vae, sorted.

    Example:
        >>> "mnist_vae_quick" in list_presets()
        True
    """
    if not SHIPPED.is_dir():
        return []
    found = [path for path in SHIPPED.iterdir() if not path.name.startswith(".")]
    return sorted(path.name for path in found if (path / METADATA_FILE).is_file())


def resolve_preset(preset: str | os.PathLike) -> tuple[Path, str]:
    """(local folder, name) of a preset name, folder or hub handle; a handle is downloaded.

    Raises:
        PresetError: an empty or unknown name, a path that is not a folder, or a failed download.
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise PresetError(
            "A preset is a name, a folder or an hf:// or kaggle:// handle. "
            f"Received: preset={preset!r}"
        )
    text = os.fspath(preset)
    if not text.strip():
        raise PresetError(
            "A preset cannot be empty: pass a shipped name (see keras_vae.list_presets()), "
            f"a preset folder or an hf:// or kaggle:// handle. Received: preset={text!r}"
        )
    if text.startswith(HUB_PREFIXES):
        return _download(text), text
    if text in list_presets():
        return SHIPPED / text, text
    path = user_path("preset", text)
    if path.is_dir():
        shipped = path.resolve().parent == SHIPPED
        return path, path.name if shipped else str(path)
    if path.exists():
        raise PresetError(f"{path} is a file, not a preset folder ({', '.join(PRESET_FILES)}).")
    raise PresetError(
        f"Unknown preset {text!r}: not a shipped name ({', '.join(list_presets()) or 'none'}), "
        "an existing preset folder or an hf:// or kaggle:// handle; see "
        f"keras_vae.list_presets(). Received: preset={text!r}"
    )


def _download(handle: str) -> Path:
    """The local folder of a hub preset, its files fetched by keras-hub (needs the network)."""
    from keras_vae.compat import keras_hub_preset_file

    try:
        paths = [Path(keras_hub_preset_file(handle, name)) for name in PRESET_FILES]
    except ImportError:
        raise PresetError(
            f"Loading {handle} needs keras-hub (`pip install keras-hub`, plus huggingface_hub "
            "for hf:// or kagglehub for kaggle://), whose loader downloads presets; or "
            f"download the preset folder yourself and pass its path. Received: preset={handle!r}"
        ) from None
    except Exception as error:  # the hubs' clients raise many types; all mean "not fetched"
        raise PresetError(f"Cannot fetch {handle} ({one_line(error)[:300]}).") from None
    if len({path.parent for path in paths}) != 1:
        raise PresetError(f"{handle}: keras-hub put the preset's files in different folders.")
    return paths[0].parent


def _require_file(path: Path) -> Path:
    if not path.is_file():
        what = "is not a file" if path.exists() else "is missing"
        raise PresetError(
            f"{path} {what}: a preset folder holds {', '.join(PRESET_FILES)}; {_FIX}."
        )
    return path


def _read_json(path: Path) -> Any:
    _require_file(path)
    try:
        return read_json_file(path, _FIX)
    except JSONFileError as error:
        raise PresetError(str(error)) from None


def check_metadata(values: Any, path: str | os.PathLike) -> dict[str, Any]:
    """`values` (the contents of `path`, a metadata.json) if they are this format's, else a
    `PresetError` saying what is wrong: another format or version, missing or unknown keys."""
    if not isinstance(values, dict):
        raise PresetError(f"{path} holds a JSON {type(values).__name__}, not an object; {_FIX}.")
    claimed = (values.get("format"), values.get("format_version"))
    if claimed != (FORMAT, FORMAT_VERSION):
        from keras_vae import __version__

        raise PresetError(
            f"{path} claims format {claimed[0]!r} version {claimed[1]!r}, but keras-vae "
            f"{__version__} reads {FORMAT!r} version {FORMAT_VERSION}: load it with the "
            f"keras-vae that wrote it ({values.get('keras_vae_version')}) or save it again "
            f"with this one. Received: format_version={claimed[1]!r}"
        )
    missing, unknown = METADATA_KEYS - set(values), set(values) - METADATA_KEYS - OPTIONAL_KEYS
    if missing or unknown:
        raise PresetError(
            f"{path} has wrong keys (missing: {sorted(missing)}, unexpected: {sorted(unknown)}); "
            f"{_FIX}."
        )
    return values


def _build_model(values: Any, path: Path, weights_bytes: int) -> VAE:
    """The VAE of a config.json's contents (weights not loaded), built only once its
    parameters are known to fit in the `weights_bytes` of model.weights.h5."""
    import keras

    from keras_vae.memory import check_saved_weights_fit
    from keras_vae.model import VAE

    if (
        not isinstance(values, dict)
        or set(values) != CONFIG_KEYS
        or values["registered_name"] != VAE_REGISTERED_NAME
    ):
        raise PresetError(
            f"{path} is not a keras_vae VAE's config (expected the keys {sorted(CONFIG_KEYS)} "
            f"with registered_name {VAE_REGISTERED_NAME!r}); {_FIX}."
        )
    try:
        check_saved_weights_fit(values, weights_bytes)
    except ValueError as error:
        raise PresetError(f"{path}: {error}; {_FIX}.") from None
    try:
        model = keras.saving.deserialize_keras_object(values)
    except Exception as error:  # Keras re-raises constructor errors as several types
        raise PresetError(f"{path} is not a valid VAE config ({one_line(error)[:300]}).") from None
    if not isinstance(model, VAE):
        raise PresetError(f"{path} builds a {type(model).__name__}, not a VAE; {_FIX}.")
    return model


_WEIGHTS_FIX = f"restore {CONFIG_FILE} and {WEIGHTS_FILE} from one save, or save the preset again"


def _weight_arrays(path: Path) -> list[tuple[Any, tuple[int, ...]]]:
    """(dtype, shape) of every array in the weights file, read from its metadata only."""
    import h5py

    arrays: list[tuple[Any, tuple[int, ...]]] = []

    def collect(_: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            arrays.append((item.dtype, tuple(item.shape)))

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(collect)
    except OSError as error:
        raise PresetError(
            f"{path} is corrupt or truncated ({one_line(error)}); {_WEIGHTS_FIX}."
        ) from None
    return arrays


def _load_weights(model: VAE, path: Path, arrays: list[tuple[Any, tuple[int, ...]]]) -> None:
    """Load `path` into `model` after checking its `arrays` are float32, one per weight, of
    the weights' shapes (so no array is read that is larger than the model's), and that the
    weights loaded are all finite."""
    import numpy as np

    from keras_vae.finite_weights import check_finite_weights

    dtypes = [dtype for dtype, _ in arrays]
    if len(arrays) != len(model.weights) or any(dtype != np.float32 for dtype in dtypes):
        raise PresetError(
            f"{path} holds {len(arrays)} arrays ({sorted({str(d) for d in dtypes})}), but the "
            f"VAE of {CONFIG_FILE} has {len(model.weights)} float32 weights; {_WEIGHTS_FIX}."
        )
    shapes = sorted(shape for _, shape in arrays)
    if shapes != sorted(tuple(weight.shape) for weight in model.weights):
        raise PresetError(
            f"{path} does not fit {CONFIG_FILE} (its arrays have other shapes than the "
            f"VAE's weights); {_WEIGHTS_FIX}."
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
        # Keras warns (and keeps fresh weights) where a saved layer is missing: not a fit either
        skipped = [w for w in caught if "saving" in w.filename]
        if skipped:
            raise ValueError(str(skipped[0].message))
    except Exception as error:  # Keras and h5py raise many types; all mean "does not fit"
        raise PresetError(
            f"{path} does not fit {CONFIG_FILE} ({one_line(error)[:300]}); {_WEIGHTS_FIX}."
        ) from None
    try:  # it fits, but a damaged file's NaN would give plausible numbers
        check_finite_weights(model)
    except ValueError as error:
        raise PresetError(f"{path}: {error}; {_WEIGHTS_FIX}.") from None


def load_preset(preset: str | os.PathLike) -> Preset:
    """Read a preset (name, folder or hub handle; see the module docstring), checked strictly.

    Raises:
        PresetError: the preset is unknown, or a file is missing, corrupt or inconsistent.

    Example:
        >>> load_preset("mnist_vae_quick").model.data_shape
        (28, 28)
    """
    folder, name = resolve_preset(preset)
    metadata = check_metadata(_read_json(folder / METADATA_FILE), folder / METADATA_FILE)
    config = _read_json(folder / CONFIG_FILE)
    weights = _require_file(folder / WEIGHTS_FILE)  # before building the model
    arrays = _weight_arrays(weights)  # metadata only: a corrupt file is refused first
    model = _build_model(config, folder / CONFIG_FILE, weights.stat().st_size)
    _load_weights(model, weights, arrays)
    return Preset(path=folder, name=name, model=model, metadata=metadata)


def preset_run(preset: str | os.PathLike) -> rd.Run:
    """A preset as the `keras_vae.run_reader.Run` that `evaluate`, `sample`, `reconstruct`,
    `score` and `export` read: its model, and the config of the run that made it (its
    dataset is their ``--dataset`` default). Nothing is ever written into it.

    A preset saved from a model alone has no run config: the model's section comes from the
    model, and its dataset is `NO_DATASET`, so a command that reads data asks for --dataset.

    Example:
        >>> preset_run("mnist_vae_quick").config.data.dataset
        'mnist'
    """
    loaded = load_preset(preset)
    values = loaded.metadata["run_config"]
    try:
        if values is None:
            model_config = loaded.model.get_config()
            names = [field.name for field in dataclasses.fields(ModelConfig)]
            section = ModelConfig(**{name: model_config[name] for name in names})
            config = Config(model=section, data=DataConfig(dataset=NO_DATASET))
        else:
            config = Config.from_dict(values)
    except (TypeError, ValueError, KeyError) as error:
        raise PresetError(
            f"{loaded.path / METADATA_FILE} holds an invalid run_config ({one_line(error)}); "
            f"{_FIX}."
        ) from None
    metrics = loaded.metadata["run_metrics"]
    return rd.Run(
        path=loaded.path,
        config=config,
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
        model=loaded.model,
        preset=loaded.name,
    )
