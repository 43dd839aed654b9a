"""`keras-vae export RUN_DIR --out DIR [--version N] [--overwrite] [--tflite]
[--max-samples-per-request N] [--score-samples K]`.

Flags -> `keras_vae.export.export_run`; prints what was written as JSON.

    $ keras-vae export runs/mnist --out export --tflite
    $ keras-vae export --preset mnist_vae_quick --out export
"""

from __future__ import annotations

import argparse
import json

from keras_vae.cli.arguments import (
    add_out_argument,
    add_run_or_preset_arguments,
    add_sampler_arguments,
    run_or_preset,
)
from keras_vae.signatures import (
    CALIBRATION_KEY,
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    DEFAULT_SCORE_SAMPLES,
    MAX_SAMPLES_KEY,
    MAX_SAMPLES_LIMIT,
    MAX_SCORE_ROW_SAMPLES,
    MAX_SCORE_SAMPLES,
    SAMPLER_KEY,
    SCORE_SAMPLES_KEY,
    SCORER,
    check_score_budget,
)

HELP = (
    "Export a trained run for TF Serving (DIR/encoder/<version>, DIR/decoder/<version>, "
    "DIR/scorer/<version> SavedModels) and, with --tflite, LiteRT (DIR/tflite/*.tflite)."
)

OUT_HELP = (
    "export folder; DIR/encoder, DIR/decoder and DIR/scorer are TF Serving model base paths. "
    "It must be missing, empty, or a folder keras-vae exported into before: files keras-vae "
    "did not write are never replaced or deleted"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `keras-vae export`'s arguments to `parser`."""
    add_run_or_preset_arguments(parser)
    add_out_argument(parser, "DIR", OUT_HELP)
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        metavar="N",
        help="version number to write, 1 to 2**63-1 (TF Serving's int64); default: one "
        "above the highest existing one",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace version N if it already exists"
    )
    parser.add_argument(
        "--max-samples-per-request",
        type=int,
        default=DEFAULT_MAX_SAMPLES_PER_REQUEST,
        metavar="N",
        help="the most rows one request to the decoder's `sample` or `generate` signature "
        "may generate, or the scorer may score "
        f"(default {DEFAULT_MAX_SAMPLES_PER_REQUEST:,}; larger requests fail with "
        "InvalidArgumentError); recorded in export.json",
    )
    parser.add_argument(
        "--score-samples",
        type=int,
        default=None,
        metavar="K",
        help=f"importance samples per example in the scorer, 1 to {MAX_SCORE_SAMPLES:,} "
        "(fixed at export; default: the K of the run's calibration.json, else "
        f"{DEFAULT_SCORE_SAMPLES}); K x --max-samples-per-request may be at most "
        f"{MAX_SCORE_ROW_SAMPLES:,}, which bounds one scorer request's time; recorded in "
        "export.json",
    )
    add_sampler_arguments(
        parser, "the decoder's sample and generate signatures (and LiteRT sample), baked in,"
    )
    parser.add_argument(
        "--tflite",
        action="store_true",
        help="also write DIR/tflite/decoder.tflite and its float16 and dynamic-int8 "
        "variants, encoder.tflite and scorer.tflite",
    )


def summary(record: dict) -> dict:
    """The part of the export record worth printing: where things went and how exact."""
    out = {
        "version": record["version"],
        "run_dir": record["run_dir"],
        **({"preset": record["preset"]} if "preset" in record else {}),
        MAX_SAMPLES_KEY: record[MAX_SAMPLES_KEY],
        SAMPLER_KEY: record[SAMPLER_KEY],
        SCORE_SAMPLES_KEY: record["models"][SCORER][SCORE_SAMPLES_KEY],
        "calibrated": record["models"][SCORER][CALIBRATION_KEY] is not None,
        "models": {
            name: {
                "base_path": info["base_path"],
                "version_dir": info["path"],
                "signatures": sorted(info["signatures"]),
                "max_abs_error": max(info["max_abs_error"].values()),
            }
            for name, info in record["models"].items()
        },
    }
    if record.get("tflite"):
        out["tflite"] = {
            name: {"size_bytes": info["size_bytes"], "max_abs_error": info["max_abs_error"]}
            for name, info in record["tflite"]["files"].items()
        }
    return out


def run(args: argparse.Namespace) -> int:
    """Export the run or preset and print a summary of export.json as JSON; returns 0."""
    k, cap = args.score_samples, args.max_samples_per_request
    if k is not None and 1 <= k <= MAX_SCORE_SAMPLES and 1 <= cap <= MAX_SAMPLES_LIMIT:
        check_score_budget(k, cap)  # before TensorFlow is imported; export_run checks again
    from keras_vae.export import export_run  # imports TensorFlow

    record = export_run(
        run_or_preset(args),
        args.out,
        version=args.version,
        overwrite=args.overwrite,
        tflite=args.tflite,
        max_samples_per_request=args.max_samples_per_request,
        score_samples=args.score_samples,
        sampler=args.sampler,
        temperature=args.temperature,
    )
    print(json.dumps(summary(record), indent=2))
    return 0
