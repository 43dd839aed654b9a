"""The export folder TF Serving reads: its layout, version numbers, and which of it is ours.

Layout of an export folder ``DIR`` (each ``DIR/<model>`` is a TF Serving model base path)::

    DIR/encoder/<version>/   SavedModel
    DIR/decoder/<version>/   SavedModel
    DIR/scorer/<version>/    SavedModel (anomaly scores, `keras_vae.export.scorer`)
    DIR/tflite/              decoder.tflite, decoder_float16.tflite, decoder_dynamic_int8.tflite,
                             encoder.tflite, scorer.tflite
    DIR/export.json          what was exported, from which run, with which signatures
    DIR/.keras-vae-manifest.json   what keras-vae wrote here (`keras_vae.ownership`)

Versions are positive int64 numbers (TF Serving's), shared by all models; how a new
one appears (all models at once, or none) is `keras_vae.export.transaction`. An export goes
only into an empty folder, a folder it exported into before, or one marked for exports.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> resolve_version(out, version=None, overwrite=False)
    1
    >>> (out / "decoder" / "3").mkdir(parents=True)
    >>> resolve_version(out, version=None, overwrite=False)
    4
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from keras_vae import ownership
from keras_vae.json_files import read_json_file
from keras_vae.limits import user_path
from keras_vae.signatures import DECODER, ENCODER, EXPORT_JSON, MAX_VERSION, SCORER

MODEL_NAMES = (ENCODER, DECODER, SCORER)
TFLITE_DIR = "tflite"
TFLITE_FILES = (
    "decoder.tflite",
    "decoder_float16.tflite",
    "decoder_dynamic_int8.tflite",
    "encoder.tflite",
    "scorer.tflite",
)


class VersionExistsError(ValueError):
    """The requested version already exists and `overwrite` was not given.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> (out / "encoder" / "2").mkdir(parents=True)
        >>> try:
        ...     resolve_version(out, version=2, overwrite=False)
        ... except ValueError as error:  # a VersionExistsError is a ValueError
        ...     print(type(error).__name__, "|", str(error).split("; ")[1])
        VersionExistsError | pass --overwrite to replace it, or omit --version to write version 3.
    """


def check_version(version: object) -> int:
    """`version` as an int after checking it is in [1, 2**63 - 1] (TF Serving's int64 version).

    Example:
        >>> check_version(2)
        2
    """
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise ValueError(
            "Received an invalid value for `version`, expected an integer in [1, 2**63 - 1] "
            "(TF Serving loads numbered folders 1, 2, ... as int64 versions). "
            f"Received: version={version!r}"
        )
    return version


def list_versions(model_dir: str | os.PathLike) -> list[int]:
    """The version folders TF Serving would load from one model base path, ascending ([] if it
    is missing): names that are int64 numbers >= 1.

    Example:
        >>> import tempfile
        >>> model_dir = Path(tempfile.mkdtemp())
        >>> for name in ("3", "tmp", "1", "0"):
        ...     (model_dir / name).mkdir()
        >>> list_versions(model_dir), list_versions(model_dir / "missing")
        ([1, 3], [])
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    numbers = (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())
    return sorted(n for n in numbers if 1 <= n <= MAX_VERSION)


def existing_versions(out_dir: str | os.PathLike, models: Sequence[str] = MODEL_NAMES) -> set[int]:
    """Every version number any of `models` has under `out_dir`."""
    return {v for name in models for v in list_versions(Path(out_dir) / name)}


def take_out_dir(out_dir: str | os.PathLike) -> ownership.Manifest:
    """Claim `out_dir` for an export: its manifest (`keras_vae.ownership`), created when the
    folder is missing, empty or marked for exports; an export folder of an older keras-vae
    (export.json, no manifest) is adopted with the versions its export.json lists.

    Raises:
        ownership.FolderNotOursError: the folder is a file, not writable, or holds files
            keras-vae did not write; nothing is touched.
    """
    path = user_path("out_dir", out_dir)
    adopt, trees = older_export(path)
    manifest = ownership.Manifest.take(path, "export", adopt=adopt)
    if trees:
        manifest.claim(trees=trees, folders=[ENCODER, DECODER, TFLITE_DIR])
    return manifest


def check_out_dir_is_ours(path: Path) -> None:
    """`take_out_dir`'s checks without writing anything (to refuse before loading a model)."""
    ownership.Manifest.check_takeable(path, "export", adopt=older_export(path)[0])


def older_export(path: Path) -> tuple[list[str], list[str]]:
    """(files, version folders) an export of an older keras-vae wrote into `path`, from its
    export.json; ([], []) when `path` has a manifest or is not such a folder."""
    if (path / ownership.MANIFEST_FILE).exists() or not (path / EXPORT_JSON).is_file():
        return [], []
    try:
        record = read_json_file(path / EXPORT_JSON, "it is left alone")
        versions = [int(h["version"]) for h in record["history"]]
        ours = isinstance(record["models"], dict) and "format_version" in record
    except (ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        return [], []  # not an export.json of ours: the folder stays foreign
    # Those keras-vae versions wrote no scorer: a scorer/ there is not theirs.
    files = [EXPORT_JSON, *(f"{TFLITE_DIR}/{name}" for name in TFLITE_FILES[:3])]
    trees = [f"{model}/{v}" for model in (ENCODER, DECODER) for v in versions]
    return files, trees


def resolve_version(
    out_dir: str | os.PathLike,
    version: int | None,
    overwrite: bool,
    models: Sequence[str] = MODEL_NAMES,
    manifest: ownership.Manifest | None = None,
) -> int:
    """The version to write: `version`, or one above the highest existing one (1 if none).

    All models share version numbers, so ``encoder/3``, ``decoder/3`` and ``scorer/3`` always
    come from the same export.

    Raises:
        ValueError: `version` is not in [1, 2**63 - 1], or the next one would not be.
        VersionExistsError: `version` exists for some model and `overwrite` is False, or it
            exists but was not written by keras-vae (per `manifest`).

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> for name in ("1", "3", "tmp"):
        ...     (out / "decoder" / name).mkdir(parents=True)
        >>> resolve_version(out, version=None, overwrite=False)  # one above the highest
        4
        >>> resolve_version(out, version=2, overwrite=False), resolve_version(out, 3, True)
        (2, 3)
        >>> resolve_version(out, version=3, overwrite=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        keras_vae.export.layout.VersionExistsError: Version 3 already exists (...); pass \
--overwrite to replace it, or omit --version to write version 4.
    """
    taken = existing_versions(out_dir, models)
    if version is None:
        version = max(taken, default=0) + 1
        if version > MAX_VERSION:
            raise ValueError(
                f"{out_dir} already holds version {MAX_VERSION}, the largest TF Serving "
                "accepts; pass --version with a free number, or export into another folder."
            )
        return version
    version = check_version(version)
    if version in taken and not overwrite:
        where = ", ".join(str(Path(out_dir) / m / str(version)) for m in models)
        raise VersionExistsError(
            f"Version {version} already exists ({where}); pass --overwrite to replace it, or "
            f"omit --version to write version {max(taken) + 1}."
        )
    if version in taken and manifest is not None:
        foreign = [
            f"{m}/{version}"
            for m in models
            if (Path(out_dir) / m / str(version)).exists() and not manifest.owns(f"{m}/{version}")
        ]
        if foreign:
            raise VersionExistsError(
                f"{', '.join(foreign)} in {out_dir} was not written by keras-vae export; "
                "--overwrite replaces only versions keras-vae exported. Choose another --version."
            )
    return version
