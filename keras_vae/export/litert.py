"""Export to LiteRT (TFLite) flatbuffers, builtin ops only: the decoder for on-device sampling
(`write_tflite`) and the encoder and the anomaly scorer (`write_litert_models`). The graphs
are built in `keras_vae.export.litert_models` (guards and prior tables:
`keras_vae.export.litert_ops`), checked by `keras_vae.export.litert_checks` and
`keras_vae.export.litert_parity`.

The decoder: three files, each with two signatures:

* ``decode``: ``z`` float32 [n, latent_dim] -> ``x_mean`` float32 [n, *data_shape].
* ``sample`` for p(z) = N(0, I): ``noise`` float32 [n, latent_dim], standard normal draws ->
  ``x_mean`` and ``z`` (= noise). TFLite has no builtin stateless random op, so the app draws
  the noise (e.g. ``java.util.Random.nextGaussian``) and the same noise always gives the same
  samples, equal to the SavedModel's ``serving_default`` on that z.
* ``sample`` for a mixture or vamp prior: ``noise`` float32 [n, latent_dim] and ``uniform``
  float32 [n] in [0, 1) (e.g. ``java.util.Random.nextFloat``) -> ``x_mean``, ``z`` and
  ``component`` int32 [n]: the mapping of `keras_vae.parts.priors.sample_from_noise` (component
  c = #{j < K-1: u >= cdf_j}, z = loc_c + scale_c * noise) with the prior's parameters baked in
  at export (`keras_vae.latent_draws.baked_prior`), as the SavedModel's ``sample``
  does, so the same (noise, uniform) give the same z and component as the SavedModel's
  ``sample`` for its own eps and u (a u below 0 picks the first component, one of 1 or more
  the last). The parameters are stored as int32 bit patterns (`mixture_tables`) and u is
  compared with the cdf as bits (`component_from_bits`, the same order as the floats'), so
  the quantized files, which turn every float constant into float16 or int8, still sample
  exactly this prior: only their decoder is approximate. (This uses the BITCAST builtin,
  in TFLite/LiteRT runtimes since TF 2.13.)
* ``sample`` with ``keras-vae export --sampler aggregate``: ``noise`` and ``uniform`` as for a
  mixture prior, through the aggregate sampler's mixture (`keras_vae.aggregate_sampler`;
  full covariances as z = loc_c + L_c noise, in MUL and SUM builtins), with ``--temperature T``
  the noise scaled by T first (T also stored as bits): `keras_vae.latent_draws.draw_latent`,
  the numbers of the SavedModel's ``sample`` and ``generate``.

A conditional model's files take a class label too, ``label`` int32 [n] in [0, K):
``decode`` (z, label) and ``sample`` (noise, label[, uniform]), z and component as above
(the prior is not conditioned; a per-class aggregate sampler draws row i from label i's
mixture) and x_mean decoded with each row's label, the same numbers as the SavedModel's for
the same noise (its ``sample`` draws eps and u per row from the seeds).
A label outside [0, K), of another rank or row count makes the run fail (`exact_labels`:
GATHER from the table [0, ..., K-1] at the label), never an output.

Every latent input takes exactly rank 2 with last dimension ``latent_dim``, and ``uniform``
exactly rank 1 with as many rows as ``noise`` (`exact_uniform`); anything else is refused. TFLite
runtimes resize inputs non-strictly (``ai_edge_litert``'s signature runner and Android's
``Interpreter`` take whatever shape the caller passes), so the refusal is built into each graph
from builtin ops (`exact_latents`): an input of another rank -- ``(latent_dim,)``,
``(1, 2, latent_dim)``, even ``(1, a, b)`` with ``a * b == latent_dim`` -- or another width
(``(n, latent_dim +- 1)``) makes the run fail instead of returning outputs. An app gets the
runtime's error for that run, never a result: in Python the signature runner raises
``RuntimeError`` with TFLite's message, ``... num_input_elements != num_output_elements
(1 != 2)Node number 3 (RESHAPE) failed to prepare.`` for a wrong rank (the counts are the rank
and 2) and ``gather index out of boundsNode number 8 (GATHER) failed to invoke.`` for a wrong
width (node numbers vary); on Android the run throws instead of filling the outputs. The
interpreter stays usable: the next call with an ``[n, latent_dim]`` input runs normally. The
input shapes recorded in export.json stay ``[-1, latent_dim]``. (The Python signature runner
refuses an empty batch with ``ValueError`` before the graph runs; the lower-level
``Interpreter.invoke`` runs ``[0, latent_dim]``, giving empty outputs, and refuses ``[0, w]``
for any other ``w``.)

``decoder.tflite`` is float32; ``decoder_float16.tflite`` stores float16 weights;
``decoder_dynamic_int8.tflite`` int8 weights with float activations (dynamic-range
quantization). Every file is run in ``ai_edge_litert``'s interpreter against the Keras
decoder (and, for ``sample``, the Keras prior) before it is accepted: float32 must agree to
1e-5, no output may be NaN, the file must hold at least the bytes its weights need (a
conversion that silently drops weights gives a tiny file), every signature must refuse inputs
of the wrong rank or width (``uniform`` and ``label`` also of another row count, ``label``
also out of range; `check_rejects_wrong_rank`), and only builtin ops are allowed (no Flex
delegate, no custom ops).

The encoder and the anomaly scorer, float32:

* ``encoder.tflite``, ``encode``: ``x`` float32 [n, *data_shape] -> ``z_mean``, ``z_stddev``
  [n, latent_dim], the SavedModel encoder's ``serving_default``; ``posterior_sample``: ``x``
  and ``noise`` float32 [n, latent_dim] (standard normal draws the app makes) -> ``z``,
  ``log_q`` [n], ``z_mean``, ``z_stddev``, as the SavedModel's ``posterior_sample``.
* ``scorer.tflite``, ``score``: ``x`` -> ``elbo``, ``log_likelihood``, ``reconstruction``,
  ``kl`` float32 [n] (and ``is_anomaly`` bool [n] once calibrated), with the scorer
  SavedModel's K noise rows (`keras_vae.scores.score_noise`) baked in, so it gives the
  SavedModel's numbers; ``score_with_noise``: ``x`` and ``noise`` float32 [K, latent_dim]
  (the same K as ``score``; the same rows for every example) -> the same outputs with the
  app's own standard normal draws.
  TFLite has no builtin stateless random op (``tf.random.stateless_normal`` is not one), so
  the noise is a constant or an input.

A conditional model's signatures take ``label`` int32 [n] in [0, K) too. Every input is
checked inside the graph with builtin ops, as the decoder files are
(`keras_vae.export.litert_ops`): ``x`` of another rank or trailing shape, ``noise``
of another width (or, in ``posterior_sample``, another row count than ``x``), a label out of
range or of another row count make the run fail instead of returning outputs.

Each file is run in ``ai_edge_litert``'s interpreter against the Keras model before it is
accepted (`check_file`): outputs to `FLOAT32_TOLERANCE` (scaled by their size like
`keras_vae.export.export_utils.scaled_tolerance`), no NaN, builtin ops only, the weights' bytes
present and every wrong input refused.

    >>> record = write_tflite(vae, "export/tflite", work_dir="/tmp/x")   # doctest: +SKIP
    >>> record["files"]["decoder.tflite"]["max_abs_error"] <= 1e-5         # doctest: +SKIP
    True
    >>> files = write_litert_models(vae, "export/tflite", "/tmp/x", 100)  # doctest: +SKIP
    >>> sorted(files)                                                      # doctest: +SKIP
    ['encoder.tflite', 'scorer.tflite']
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vae.export.export_utils import CHECK_BATCH, bad_labels
from keras_vae.export.litert_models import (
    ENCODER_FILE,
    SCORE,
    SCORER_FILE,
    SIGNATURES,
    VARIANTS,
    convert,
    encoder_litert_archive,
    litert_archive,
    scorer_litert_archive,
)
from keras_vae.export.litert_parity import (
    check_file,
    check_scorer_flags,
    check_variant,
    expected_encoder,
    weight_count,
    x_mean_weight_count,
)
from keras_vae.export.scorer import check_calibration
from keras_vae.export.scorer_checks import expected_scores
from keras_vae.scores import score_noise
from keras_vae.signatures import IS_ANOMALY, LABEL

LITERT_HINT = "install it with `pip install 'keras-vae[litert]'` (ai-edge-litert)"


def check_litert_available() -> None:
    """Raise `ValueError` before anything is written if ai_edge_litert is not installed."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise ValueError(
            f"--tflite checks every converted file in the LiteRT interpreter; {LITERT_HINT}."
        )


def write_tflite(
    model: keras.Model,
    out_dir: str | Path,
    work_dir: str | Path,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Convert, check and write the three decoder files into `out_dir`.

    Args:
        model: the trained `VAE`.
        out_dir: folder for the .tflite files (created).
        work_dir: scratch folder for the intermediate SavedModel.
        sampler: what ``sample`` maps its noise through: "prior" or "aggregate".
        temperature: the scale of ``sample``'s Gaussian noise.

    Returns:
        ``{"files": {file name: {size_bytes, max_abs_error, ops, signatures, ...}}, ...}``.
    """
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    source = work_dir / "litert_saved_model"
    litert_archive(model, sampler, temperature).write_out(str(source), verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for file_name, quantization in VARIANTS.items():
        content = convert(source, quantization)
        files[file_name] = check_variant(
            model, content, file_name, quantization, sampler, temperature
        )
        (out_dir / file_name).write_bytes(content)
    return {
        "files": files,
        "x_mean_weights": x_mean_weight_count(model),
        "checked_on": f"{CHECK_BATCH} draws z ~ N(0, I) against the Keras decoder"
        + (
            ""
            if model.latent_mixture(sampler) is None
            else f"; sample also with uniforms at every cdf boundary, against the Keras {sampler}"
        )
        + (
            f"; labels spread over [0, {model.num_classes}), and the labels "
            f"{bad_labels(int(model.num_classes))} refused"
            if model.conditional
            else ""
        ),
    }


def write_litert_models(
    model: keras.Model,
    out_dir: str | Path,
    work_dir: str | Path,
    score_samples: int,
    calibration: Mapping[str, Any] | None = None,
    score_seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Convert, check and write ``encoder.tflite`` and ``scorer.tflite`` into `out_dir`.

    Args:
        model: the trained `VAE`.
        out_dir: folder for the .tflite files (created).
        work_dir: scratch folder for the intermediate SavedModels.
        score_samples: K, the noise rows baked into ``score`` (the scorer SavedModel's).
        calibration: the run's calibration record (``is_anomaly`` output), or None.
        score_seed: the seed of `keras_vae.scores.score_noise`. Default 0.

    Returns:
        ``{file name: {size_bytes, max_abs_error, ops, signatures, ...}}``.
    """
    calibration = check_calibration(calibration)
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise = np.asarray(score_noise(int(model.latent_dim), score_samples, score_seed), np.float32)

    def expected_score(signature: str, feed: Mapping[str, np.ndarray]) -> dict:
        given = noise if signature == SCORE else feed["noise"]
        expected: dict[str, Any] = expected_scores(model, feed["x"], given, feed.get(LABEL))
        if calibration is not None:
            expected[IS_ANOMALY] = None  # `check_scorer_flags` checks it
        return expected

    encoder_weights = weight_count(model.encoder, model.posterior_layer)
    plans: dict[
        str,
        tuple[
            keras.export.ExportArchive,
            Callable[[str, Mapping[str, np.ndarray]], Mapping[str, Any]],
            int,
            int | None,
        ],
    ] = {
        ENCODER_FILE: (
            encoder_litert_archive(model),
            functools.partial(expected_encoder, model),
            encoder_weights,
            None,
        ),
        SCORER_FILE: (
            scorer_litert_archive(model, noise, calibration),
            expected_score,
            encoder_weights + x_mean_weight_count(model),
            int(score_samples),
        ),
    }
    records = {}
    for file_name, (archive, expected_fn, weights, noise_rows) in plans.items():
        source = work_dir / f"litert_{Path(file_name).stem}"
        archive.write_out(str(source), verbose=False)
        content = convert(source, signature_keys=SIGNATURES[file_name])
        records[file_name] = check_file(model, content, file_name, expected_fn, weights, noise_rows)
        if file_name == SCORER_FILE:
            check_scorer_flags(model, content, calibration)
        (out_dir / file_name).write_bytes(content)
    records[SCORER_FILE]["score_samples"] = int(score_samples)
    records[SCORER_FILE]["score_seed"] = int(score_seed)
    records[SCORER_FILE]["outputs_is_anomaly"] = calibration is not None
    return records
