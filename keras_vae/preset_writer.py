"""Writing presets (`save_preset`): atomically, into a missing or empty folder or over a
preset keras-vae wrote, never anywhere else; `keras_vae.presets` reads them.

The files go to a temporary folder beside the target, are read back with
`keras_vae.presets.load_preset`, then renamed into place, so the folder appears whole or not
at all; a failed save also removes the parent folders it created.

Example:

>>> import tempfile
>>> from pathlib import Path
>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
>>> folder = save_preset(vae, Path(tempfile.mkdtemp()) / "new" / "tiny", {"epochs": 0})
>>> load_preset(folder).metadata["epochs"]
0
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_vae.atomic import (
    TEMPORARY_MARK,
    current_umask,
    file_mode,
    folders_removed_on_failure,
    write_json_atomically,
)
from keras_vae.json_files import read_json_file
from keras_vae.limits import user_path
from keras_vae.ownership import FolderNotOursError
from keras_vae.presets import (
    CONFIG_FILE,
    CONFIG_KEYS,
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    PRESET_FILES,
    RUN_KEYS,
    WEIGHTS_FILE,
    check_metadata,
    load_preset,
)

if TYPE_CHECKING:
    from keras_vae.model import VAE


def _check_ours(folder: Path) -> None:
    """Refuse (`FolderNotOursError`) a file, or a non-empty folder that is not our preset."""
    if folder.exists() and not folder.is_dir():
        raise FolderNotOursError(f"{folder} is a file; pass a folder for the preset.")
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    if not names:
        return
    if set(names) <= set(PRESET_FILES):
        try:
            if read_json_file(folder / METADATA_FILE, "")["format"] == FORMAT:
                return
        except (ValueError, TypeError, KeyError):
            pass
    shown = ", ".join(repr(name) for name in names[:3]) + (" ..." if len(names) > 3 else "")
    raise FolderNotOursError(
        f"{folder} is not empty ({shown}) and holds no preset keras-vae wrote; a preset is "
        "written only into a missing or empty folder or over a keras-vae preset, and nothing "
        "else is ever deleted: choose another folder."
    )


def _replace_folder(staging: Path, folder: Path) -> None:
    """Move the finished `staging` folder to `folder` (missing, empty, or our preset)."""
    if folder.is_dir() and any(folder.iterdir()):
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old{TEMPORARY_MARK}")
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old)
    else:
        os.replace(staging, folder)  # renaming over an empty folder replaces it


def save_preset(
    model: VAE, folder: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write `model` as a preset folder, atomically: the files are written into a temporary
    folder beside `folder`, read back with `load_preset`, then renamed into place.

    Args:
        model: a `keras_vae.VAE`.
        folder: missing, empty, or a preset keras-vae wrote (replaced); created if missing.
        metadata: values of `RUN_KEYS`, ``measured`` or ``description``; the rest is filled
            in (format, versions, parameter count, date; null for a key not given).

    Returns:
        The folder, as a `Path`.

    Raises:
        FolderNotOursError: `folder` is a file or holds anything but a keras-vae preset.
        PresetError: `metadata` has keys a preset does not have.
    """
    import keras
    import tensorflow as tf

    from keras_vae import __version__

    folder = user_path("folder", folder)
    _check_ours(folder)
    values = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "keras_vae_version": __version__,
        "keras_version": keras.version(),
        "tensorflow_version": tf.__version__,
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **dict.fromkeys(RUN_KEYS),
        "measured": None,
        **(metadata or {}),
    }
    check_metadata(values, "metadata")
    config = keras.saving.serialize_keras_object(model)
    config = {key: value for key, value in config.items() if key in CONFIG_KEYS}  # as KerasHub
    with folders_removed_on_failure(folder.parent):  # a failed save leaves no new parents
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TEMPORARY_MARK, dir=folder.parent)
        )
        try:
            os.chmod(staging, 0o777 & ~current_umask())
            write_json_atomically(staging / CONFIG_FILE, config)
            # A compiled model's save_weights adds its optimizer's state: save an uncompiled copy.
            plain = type(model).from_config(model.get_config())
            plain.set_weights(model.get_weights())
            plain.save_weights(staging / WEIGHTS_FILE)
            os.chmod(staging / WEIGHTS_FILE, file_mode())
            write_json_atomically(staging / METADATA_FILE, values)
            load_preset(staging)  # what was written reads back
            _replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
