"""Export a trained VAE for TF Serving (SavedModel) and for devices (LiteRT / TFLite).

One module per format, as in `keras.src.export`: `saved_model` (encoder and decoder with their
serving signatures), `scorer` (the anomaly scorer SavedModel), `tflite` (the decoder for
on-device sampling), `tflite_models` (the encoder and the scorer for devices), `warmup` (TF
Serving warm-up requests), `layout` (numbered version folders written atomically) and
`exporter` (`export_run`, which ties them together).

    >>> from keras_vae.export import export_run
    >>> export_run("runs/mnist", "export", tflite=True)["version"]   # doctest: +SKIP
    1
"""

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
