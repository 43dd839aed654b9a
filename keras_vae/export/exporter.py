"""`export_run`: a trained run directory -> the TF Serving / LiteRT export folder.

    >>> record = export_run("runs/mnist", "export", tflite=True)   # doctest: +SKIP
    >>> record["version"], sorted(record["models"])                # doctest: +SKIP
    (1, ['decoder', 'encoder', 'scorer'])

See `keras_vae.export.layout` for the folder layout and how versions appear atomically.
"""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from keras_vae.atomic import folders_removed_on_failure, write_json_atomically
from keras_vae.export import layout, transaction
from keras_vae.export.export_utils import ExportError, saved_model_signatures
from keras_vae.json_files import read_json_file
from keras_vae.limits import check_sampler, user_path
from keras_vae.ownership import MANIFEST_FILE
from keras_vae.signatures import (
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    GENERATE,
    LABEL,
    LABEL_INPUT_KEY,
    MAX_SAMPLES_KEY,
    NUM_CLASSES_KEY,
    POSTERIOR_SAMPLE,
    SAMPLE,
    SAMPLER_KEY,
    SCORER,
    SERVING_DEFAULT,
    WARMUP_RECORDS_KEY,
    check_max_samples,
    check_score_budget,
)

if TYPE_CHECKING:
    from keras_vae.model import VAE
    from keras_vae.run_reader import Run

FORMAT_VERSION = 1


def _read_export_json(path: Path) -> dict[str, Any]:
    """The existing export.json, or {} when it is missing or unreadable (it is rewritten)."""
    try:
        values = read_json_file(path, "it is rewritten")
    except ValueError:  # a JSONFileError: missing, unreadable, too large or deep, not JSON
        return {}
    return values if isinstance(values, dict) else {}


def model_parts(model: VAE) -> dict[str, Any]:
    """The latent parts export.json records under "model", as the model's config has them:
    the posterior and its flow steps (0 for a Gaussian), the prior and its components (0
    for N(0, I)) and the objective it was trained on.

    Example:
        >>> from keras_vae.model import VAE
        >>> parts = model_parts(VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)))
        >>> parts["posterior"], parts["flow_steps"], parts["prior"], parts["prior_components"]
        ('gaussian', 0, 'normal', 0)
    """
    return {
        "posterior": model.posterior_name,
        "flow_steps": int(model.flow_steps),
        "prior": model.prior_name,
        "prior_components": int(model.prior_components),
        "objective": model.objective,
    }


def model_condition(model: VAE) -> dict[str, Any]:
    """What export.json records under "model" about a conditional model's label: K
    (``num_classes``) and the ``label_input`` every signature takes; {} for an unconditional
    model, whose record stays as it was.

    Example:
        >>> from keras_vae.model import VAE
        >>> model_condition(VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)))
        {}
        >>> record = model_condition(
        ...     VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,), num_classes=3)
        ... )
        >>> record["num_classes"], record["label_input"]["maximum"]
        (3, 2)
    """
    if not model.conditional:
        return {}
    num_classes = int(model.num_classes)
    return {
        NUM_CLASSES_KEY: num_classes,
        LABEL_INPUT_KEY: {
            "name": LABEL,
            "dtype": "int32",
            "shape": [-1],
            "minimum": 0,
            "maximum": num_classes - 1,
            "description": f"class index y in [0, {num_classes}), one per row; others fail",
            "signatures": {
                "encoder": [SERVING_DEFAULT, POSTERIOR_SAMPLE],
                "decoder": [SERVING_DEFAULT, SAMPLE, GENERATE],
                SCORER: [SERVING_DEFAULT],
                "tflite": [
                    "decode",
                    "sample",
                    "encode",
                    POSTERIOR_SAMPLE,
                    "score",
                    "score_with_noise",
                ],
            },
        },
    }


def export_run(
    run_dir: str | os.PathLike | Run,
    out_dir: str | os.PathLike,
    version: int | None = None,
    overwrite: bool = False,
    tflite: bool = False,
    max_samples_per_request: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    score_samples: int | None = None,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Export a trained run as TF Serving SavedModels (and LiteRT files) into `out_dir`.

    Writes ``out_dir/encoder/<version>/``, ``out_dir/decoder/<version>/``,
    ``out_dir/scorer/<version>/`` (`keras_vae.export.scorer`) and, with `tflite`,
    ``out_dir/tflite/decoder{,_float16,_dynamic_int8}.tflite``, ``encoder.tflite`` and
    ``scorer.tflite`` (`keras_vae.export.litert`), then ``out_dir/export.json``, as one
    transaction (`keras_vae.export.transaction`): all of them appear, or none does. Every
    SavedModel carries TF Serving warm-up requests (`keras_vae.export.warmup`), each replayed
    against it; every artifact is reloaded and compared with the Keras model before anything
    is moved into place; bad input is refused before anything is written.

    Args:
        run_dir: a folder written by `keras_vae.train.train_and_evaluate` (`keras-vae train`),
            or a preset's `keras_vae.run_reader.Run` (`keras_vae.presets.preset_run`).
        out_dir: the export folder: missing, empty, marked for exports, or one keras-vae
            exported into before (`keras_vae.ownership`); created if missing.
        version: an integer in [1, 2**63 - 1]; None (default) takes one above the highest
            existing one.
        overwrite: replace an existing `version` (one keras-vae wrote). Default False: refuse.
        tflite: also write the LiteRT decoder files. Default False.
        max_samples_per_request: the most rows one request to the decoder's ``sample`` or
            ``generate`` signature may ask for, or the scorer may score (larger ones fail
            with InvalidArgumentError). Default 10,000.
        score_samples: K importance samples the scorer uses per example, in [1, 100000].
            Default None: the K the run was calibrated with (``RUN_DIR/calibration.json``),
            else 100. A calibrated run refuses another K (its threshold holds for its K).
        sampler: what the decoder's ``sample`` and ``generate`` (and the LiteRT ``sample``)
            draw z from: "prior" (default) or "aggregate", the mixture `keras-vae
            fit-sampler` fitted to the run's training codes, baked in as constants.
        temperature: the scale T of their Gaussian noise, in (0, 1000]. Default 1.

    Returns:
        The record written to ``out_dir/export.json`` (without its history).

    Raises:
        ValueError: the run directory is unusable (`keras_vae.run_reader.RunDirError`) or its
            calibration.json is (`keras_vae.calibration.CalibrationError`), the version or
            `score_samples` is invalid, the version exists (`layout.VersionExistsError`), or
            `out_dir` is not ours to write (`keras_vae.ownership.FolderNotOursError`);
            nothing written then.
        ExportError: an exported artifact disagrees with the Keras model; nothing committed.

    Example:
        >>> export_run("runs/mnist", "export", version=1)   # doctest: +SKIP
    """
    from keras_vae import __version__
    from keras_vae.run_reader import load_run

    max_samples = check_max_samples(max_samples_per_request)
    temperature = check_sampler(sampler, temperature)
    if score_samples is not None:
        from keras_vae.scores import check_score_samples

        score_samples = check_score_samples(score_samples)
    if version is not None:
        layout.check_version(version)
    out_path = user_path("out_dir", out_dir)
    layout.check_out_dir_is_ours(out_path)  # reads only
    if tflite:
        from keras_vae.export.litert import check_litert_available

        check_litert_available()
    run = load_run(run_dir)  # RunDirError (a ValueError) for a missing or corrupt run
    model = run.model
    model.latent_mixture(sampler)  # a ValueError if the run has no fitted aggregate sampler
    # A preset is scored as an uncalibrated run: calibration.json belongs to run folders.
    calibrated_in = None if run.preset else run.path
    score_samples, score_seed, calibration = _scoring(calibrated_in, score_samples)
    check_score_budget(score_samples, max_samples)  # K may come from calibration.json
    # Everything above only read; a failure from here on leaves no new folder behind.
    with folders_removed_on_failure(out_path, own_files=(MANIFEST_FILE,)):
        manifest = layout.take_out_dir(out_path)
        out_dir = manifest.folder
        transaction.recover(out_dir)  # a killed export's leftovers, before counting versions
        version = layout.resolve_version(out_dir, version, overwrite, manifest=manifest)

        import tensorflow as tf

        from keras_vae.aggregate_sampler import sampler_record
        from keras_vae.export import saved_model, saved_model_checks, scorer, scorer_checks

        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "exported_at": _now(),
            "keras_vae_version": __version__,
            "tensorflow_version": tf.__version__,
            "run_dir": str(run.path.resolve()),
            **({"preset": run.preset} if run.preset else {}),
            "run_config": run.config.to_dict(),
            "model": {
                "data_shape": list(model.data_shape),
                "latent_dim": int(model.latent_dim),
                "likelihood": model.likelihood,
                "x_mean": "Bernoulli probabilities"
                if model.likelihood == "bernoulli"
                else "Gaussian mean",
                **model_parts(model),
                **model_condition(model),
            },
            MAX_SAMPLES_KEY: max_samples,
            SAMPLER_KEY: sampler_record(model, sampler, temperature),
            "models": {},
            "tflite": None,
        }
        writers = {
            "encoder": (saved_model.write_encoder, saved_model_checks.check_encoder),
            "decoder": tuple(
                functools.partial(
                    function, max_samples=max_samples, sampler=sampler, temperature=temperature
                )
                for function in (saved_model.write_decoder, saved_model_checks.check_decoder)
            ),
            SCORER: (
                functools.partial(
                    scorer.write_scorer,
                    score_samples=score_samples,
                    max_samples=max_samples,
                    calibration=calibration,
                    seed=score_seed,
                ),
                functools.partial(
                    scorer_checks.check_scorer,
                    settings=scorer.ScorerSettings(
                        score_samples, max_samples, calibration, score_seed
                    ),
                ),
            ),
        }
        with transaction.ExportTransaction(out_dir) as export:
            staging = export.staging
            for name, (write, check) in writers.items():
                path = staging / name
                write(model, path)
                errors = check(model, path)
                record["models"][name] = {
                    "path": f"{name}/{version}",
                    "base_path": str((out_dir / name).resolve()),
                    "signatures": saved_model_signatures(path),
                    "max_abs_error": errors,
                    WARMUP_RECORDS_KEY: _warm_up(path, name, max_samples),
                }
                export.add(name, f"{name}/{version}")
            record["models"][SCORER].update(
                scorer.scorer_record(score_samples, score_seed, calibration)
            )
            if tflite:
                from keras_vae.export.litert import write_litert_models, write_tflite

                tflite_dir, work_dir = staging / layout.TFLITE_DIR, staging / "work"
                record["tflite"] = {
                    "path": layout.TFLITE_DIR,
                    "version": version,
                    **write_tflite(model, tflite_dir, work_dir, sampler, temperature),
                }
                record["tflite"]["files"].update(
                    write_litert_models(
                        model, tflite_dir, work_dir, score_samples, calibration, score_seed
                    )
                )
                export.add(layout.TFLITE_DIR, layout.TFLITE_DIR)
            write_json_atomically(staging / layout.EXPORT_JSON, _with_history(out_dir, record))
            export.add(layout.EXPORT_JSON, layout.EXPORT_JSON)
            manifest.claim(
                layout.EXPORT_JSON,
                *(f"{layout.TFLITE_DIR}/{name}" for name in layout.TFLITE_FILES),
                trees=[f"{name}/{version}" for name in writers],
                folders=[*writers, layout.TFLITE_DIR],
            )
            export.commit(overwrite=overwrite, replaceable=(layout.TFLITE_DIR, layout.EXPORT_JSON))
    return record


def _scoring(run_path: Path | None, score_samples: int | None) -> tuple[int, int, dict | None]:
    """(K, seed, calibration record or None) of the run's scorer: a calibrated run scores with
    the K and seed its threshold was picked with (another `score_samples` is refused), an
    uncalibrated one (or `run_path` None: a preset) with `score_samples` (default 100) and
    seed 0."""
    from keras_vae.calibration import CALIBRATION_FILE, read_calibration
    from keras_vae.scores import DEFAULT_SCORE_SAMPLES, DEFAULT_SCORE_SEED

    # CalibrationError (a ValueError) if corrupt
    calibration = None if run_path is None else read_calibration(run_path)
    if calibration is None:
        return score_samples or DEFAULT_SCORE_SAMPLES, DEFAULT_SCORE_SEED, None
    calibrated = int(calibration["importance_samples"])
    if score_samples is not None and score_samples != calibrated:
        run_path = cast(Path, run_path)  # not None: the calibration was read from it
        raise ValueError(
            f"{run_path / CALIBRATION_FILE} holds a threshold for scores with {calibrated} "
            f"importance samples; the scorer's is_anomaly needs the same K. Export with "
            f"--score-samples {calibrated} (or omit it), or calibrate again with "
            f"--importance-samples {score_samples}. Received: score_samples={score_samples}"
        )
    return calibrated, int(calibration["seed"]), calibration


def _now() -> str:
    """The UTC time, to the second, export.json records."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _warm_up(saved_model_dir: Path, name: str, max_rows: int) -> int:
    """Write the SavedModel's TF Serving warm-up requests and replay every one against it
    (`keras_vae.export.warmup`; `ExportError` naming a failing record); their number."""
    from keras_vae.export.warmup import replay_warmup_requests, write_warmup_requests

    written = write_warmup_requests(saved_model_dir, name, max_rows)
    replayed = replay_warmup_requests(saved_model_dir)
    if replayed != written:
        raise ExportError(
            f"{written} warm-up records were written into {saved_model_dir} but {replayed} "
            "read back; nothing was written."
        )
    return written


def _with_history(out_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """`record` plus ``history``: one line per version currently exported, oldest first."""
    previous = _read_export_json(out_dir / layout.EXPORT_JSON)
    history = [h for h in previous.get("history", []) if isinstance(h, dict)]
    history = [h for h in history if h.get("version") != record["version"]]
    tflite = record["tflite"] is not None
    if tflite:  # the tflite folder now holds this version's files only
        history = [{**h, "tflite": False} for h in history]
    history.append(
        {
            "version": record["version"],
            "run_dir": record["run_dir"],
            "exported_at": record["exported_at"],
            "tflite": tflite,
        }
    )
    history.sort(key=lambda h: h.get("version", 0))
    values = {**record, "history": history}
    if not tflite and isinstance(previous.get("tflite"), dict):
        values["tflite"] = previous["tflite"]  # still on disk, from an earlier version
    return values
