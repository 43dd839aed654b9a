"""Export a trained VAE for TF Serving (SavedModel) and for devices (LiteRT / TFLite).

One module per format, as in `keras.src.export`, building apart from checking:
`saved_model` (encoder and decoder with their serving signatures; checked by
`saved_model_checks`), `scorer` (the anomaly scorer SavedModel; `scorer_checks`), `litert`
(the LiteRT files for devices: decoder, encoder and scorer; graphs in `litert_models` and
`litert_ops`, checks in `litert_checks` and `litert_parity`; `tflite` keeps the old module
name importable). The graphs share `graph_ops` (decode, encode, labels, row cap, scores) and
`keras_vae.latent_draws` (the prior's seeded draws and baked parameters); the checks share
`export_utils`. Then `warmup` (TF Serving warm-up requests), `layout` (numbered version
folders), `transaction` (all or nothing) and `exporter` (`export_run`, which ties them
together).

    >>> from keras_vae.export import export_run
    >>> export_run("runs/mnist", "export", tflite=True)["version"]   # doctest: +SKIP
    1
"""

from __future__ import annotations

from keras_vae.export.export_utils import ExportError, saved_model_signatures
from keras_vae.export.exporter import export_run
from keras_vae.export.layout import (
    EXPORT_JSON,
    MODEL_NAMES,
    TFLITE_DIR,
    VersionExistsError,
    list_versions,
    resolve_version,
)

__all__ = [
    "EXPORT_JSON",
    "MODEL_NAMES",
    "TFLITE_DIR",
    "ExportError",
    "VersionExistsError",
    "export_run",
    "list_versions",
    "resolve_version",
    "saved_model_signatures",
]
