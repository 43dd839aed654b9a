"""The old name of the LiteRT decoder module, kept importable: a thin module that only
re-exports the public names the former ``keras_vae.export.tflite`` defined, from their new
homes (`keras_vae.export.litert`, `keras_vae.export.litert_models`,
`keras_vae.export.litert_ops`, `keras_vae.export.litert_checks` and
`keras_vae.export.litert_parity`). New code imports those modules directly.

    >>> from keras_vae.export.tflite import write_tflite
    >>> from keras_vae.export.litert import write_tflite as new
    >>> write_tflite is new
    True
"""

from __future__ import annotations

from keras_vae.export.litert import LITERT_HINT, check_litert_available, write_tflite
from keras_vae.export.litert_checks import (
    MIN_SIZE_FRACTION,
    check_rejects_wrong_rank,
    describe_signatures,
    interpreter,
    operators,
    run_signature,
    wrong_latent_shapes,
    wrong_uniform_shapes,
)
from keras_vae.export.litert_models import (
    BYTES_PER_WEIGHT,
    DECODE,
    SAMPLE,
    VARIANTS,
    convert,
    litert_archive,
)
from keras_vae.export.litert_ops import (
    component_from_bits,
    exact_labels,
    exact_latents,
    exact_uniform,
    mixture_tables,
    sample_from_tables,
)
from keras_vae.export.litert_parity import (
    QUANTIZED_TOLERANCE,
    check_sample,
    check_uniforms,
    check_variant,
    x_mean_weight_count,
)

__all__ = [
    "BYTES_PER_WEIGHT",
    "DECODE",
    "LITERT_HINT",
    "MIN_SIZE_FRACTION",
    "QUANTIZED_TOLERANCE",
    "SAMPLE",
    "VARIANTS",
    "check_litert_available",
    "check_rejects_wrong_rank",
    "check_sample",
    "check_uniforms",
    "check_variant",
    "component_from_bits",
    "convert",
    "describe_signatures",
    "exact_labels",
    "exact_latents",
    "exact_uniform",
    "interpreter",
    "litert_archive",
    "operators",
    "mixture_tables",
    "run_signature",
    "sample_from_tables",
    "write_tflite",
    "wrong_latent_shapes",
    "wrong_uniform_shapes",
    "x_mean_weight_count",
]
