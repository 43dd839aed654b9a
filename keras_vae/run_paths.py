"""Every path of a run directory, and `RunDirError`, the error every run-folder check raises.

`RunFolder` knows the layout::

    RUN_DIR/config.json            the resolved `Config` (enough to rerun)
    RUN_DIR/model.keras            the trained VAE
    RUN_DIR/metrics.json           train's (and evaluate's) results
    RUN_DIR/figures/*.png          samples, reconstructions, learning curves, traversals
    RUN_DIR/backup/state.npz       the training state while a run is unfinished (`resume`)
    RUN_DIR/logs/...               TensorBoard event files (``--tensorboard``)
    RUN_DIR/.keras-vae-manifest.json   what keras-vae wrote here (`keras_vae.ownership`)

What training into a folder means is decided by `keras_vae.run_setup.prepare`; a finished run
is read by `keras_vae.run_reader` (no TensorFlow here).

    >>> RunFolder(Path("runs/x")).backup_state
    PosixPath('runs/x/backup/state.npz')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from keras_vae import ownership
from keras_vae.limits import user_path

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"
STATE_FILE = "state.npz"
LOGS_DIR = "logs"
FIGURES_DIR = "figures"
# What `--tensorboard` writes under RUN_DIR/logs (keras_vae.callbacks.tensorboard), listed in
# the manifest.
LOG_FILES = f"{LOGS_DIR}/**/events.out.tfevents.*"
LOG_FOLDERS = tuple(f"{LOGS_DIR}{sub}" for sub in ("", "/train", "/validation", "/images"))
# The files a run of an older keras-vae (before manifests) wrote, adopted when it is resumed.
LEGACY_RUN_FILES = (MODEL_FILE, METRICS_FILE, CONFIG_FILE, f"{BACKUP_DIR}/{STATE_FILE}")
TRAIN_HINT = "pass the folder written by `keras-vae train --output RUN_DIR`"


class RunDirError(ValueError):
    """A run directory or the data given with it is unusable; the message says the fix."""


def _below_root(*parts: str) -> property:
    """A `RunFolder` property: the path ``RUN_DIR/<parts>``."""
    return property(lambda self: self.root.joinpath(*parts), doc=f"RUN_DIR/{'/'.join(parts)}")


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The paths of one run directory (see the module docstring).

    Example:
        >>> RunFolder(Path("runs/x")).model
        PosixPath('runs/x/model.keras')
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", user_path("run_dir", self.root))

    model = _below_root(MODEL_FILE)
    config = _below_root(CONFIG_FILE)
    metrics = _below_root(METRICS_FILE)
    backup = _below_root(BACKUP_DIR)
    backup_state = _below_root(BACKUP_DIR, STATE_FILE)
    logs = _below_root(LOGS_DIR)
    figures = _below_root(FIGURES_DIR)
    manifest = _below_root(ownership.MANIFEST_FILE)

    def has_backup(self) -> bool:
        """Whether the backup's state file exists (the run did not finish)."""
        return self.backup_state.is_file()

    def is_finished(self) -> bool:
        """Model and metrics written and no backup left: the run ended."""
        return self.model.is_file() and self.metrics.is_file() and not self.has_backup()
