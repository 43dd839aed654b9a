"""The ``aggregate`` sampler: z drawn where the encoder puts the training images, not from the
prior's "holes" (ex-post density estimation, Ghosh et al. 2020, "From Variational to
Deterministic Autoencoders").

`fit_aggregate_sampler` encodes the training images to their central codes (the posterior
mean, or its IAF image: `VAE.central_z`) and fits a K-component Gaussian mixture to them by EM
(`keras_vae.gaussian_mixture`), one per class for a conditional model. The mixture is kept as
a `keras_vae.latent_draws.LatentMixture` (log weights, means and Cholesky factors of the
covariances, float32) that `VAE.sample(..., sampler="aggregate")` and every export draw from.
``keras-vae fit-sampler RUN_DIR`` stores it as ``RUN_DIR/aggregate_sampler.npz``, claimed in
the run's manifest (`keras_vae.run_files`); `keras_vae.run_reader.load_run` attaches it to the
model after checking it as strictly as a command-line argument (`read_aggregate_sampler`).

    >>> import numpy as np
    >>> from keras_vae.model import VAE
    >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
    >>> x = np.random.default_rng(0).uniform(size=(64, 4)).astype("float32")
    >>> vae.aggregate_sampler = fit_aggregate_sampler(vae, x, components=2)
    >>> vae.sample(3, seed=0, sampler="aggregate").shape
    TensorShape([3, 4])
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from keras_vae.gaussian_mixture import COVARIANCE_TYPES, fit_gaussian_mixture
from keras_vae.latent_draws import LatentMixture
from keras_vae.limits import (
    DEFAULT_SAMPLER_COMPONENTS,
    MAX_SAMPLER_COMPONENTS,
    MAX_SEED,
    check_at_least,
    check_choice,
)
from keras_vae.npz_files import read_npz
from keras_vae.run_files import check_run_file_owned

if TYPE_CHECKING:
    from keras_vae.model import VAE

SAMPLER_FILE = "aggregate_sampler.npz"
FIGURE_FILE = "figures/samples_aggregate.png"  # figures/samples.png's grid, from this sampler
FIT_SAMPLER = "keras-vae fit-sampler"
FORMAT_VERSION = 1
DEFAULT_COMPONENTS = DEFAULT_SAMPLER_COMPONENTS
MAX_COMPONENTS = MAX_SAMPLER_COMPONENTS
MAX_SCALE_ENTRIES = 2**25  # C * K * D (* D): 256 MB in EM's float64, 128 MB in a file
MAX_FILE_BYTES = 512 * 2**20  # the largest mixture's arrays, with room to spare
ARRAYS = ("log_weights", "loc", "scale")
MIN_WEIGHT = 1e-30  # the weight of a component EM emptied (log 0 would not be finite)
_REFIT = f"run `{FIT_SAMPLER} RUN_DIR` again to rewrite it"


class SamplerFileError(ValueError):
    """A run's aggregate_sampler.npz is missing, not this run's, or invalid; the message
    says the fix."""


@dataclasses.dataclass(frozen=True)
class AggregateSampler:
    """A fitted aggregate sampler: the `mixture` and how it was fitted (`summary`)."""

    mixture: LatentMixture
    covariance: str
    seed: int
    examples: tuple[int, ...]  # codes fitted, per class row
    log_likelihood: tuple[float, ...]  # mean log-density of those codes, per class row
    iterations: tuple[int, ...]

    @property
    def components(self) -> int:
        """K, the mixture's components per class row."""
        return int(self.mixture.log_weights.shape[1])

    def summary(self) -> dict[str, Any]:
        """What export.json and the command print: components, covariance, seed, examples,
        the codes' mean log-density, EM iterations (per class row)."""
        return {
            "components": self.components,
            "covariance": self.covariance,
            "seed": self.seed,
            "examples": list(self.examples),
            "log_likelihood": [round(v, 6) for v in self.log_likelihood],
            "iterations": list(self.iterations),
        }


def central_codes(model: VAE, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The codes z of zero noise (`VAE.central_z`) of `images`, float64 [n, latent_dim], in
    `keras_vae.visualize.in_batches`."""
    from keras_vae.visualize import in_batches

    codes = [np.asarray(z, np.float64) for z in in_batches(model.central_z, images, labels)]
    return np.concatenate(codes) if codes else np.zeros((0, int(model.latent_dim)))


def check_fit_arguments(components: Any, covariance: Any, seed: Any) -> None:
    """`ValueError` unless `components` is an integer in [1, `MAX_COMPONENTS`], `covariance`
    one of `COVARIANCE_TYPES` and `seed` an integer in [0, `MAX_SEED`].

    Example:
        >>> check_fit_arguments(10, "full", 0)
    """
    check_at_least("components", components, 1, maximum=MAX_COMPONENTS)
    check_choice("covariance", covariance, COVARIANCE_TYPES)
    check_at_least("seed", seed, 0, maximum=MAX_SEED)


def check_mixture_size(model: VAE, components: int, covariance: str) -> int:
    """The mixture's scale entries (C x K x D, or x D again for full covariances), after
    checking they stay within `MAX_SCALE_ENTRIES`: what EM holds in float64, the file and
    every export in float32. A one-line `ValueError` naming the fix otherwise.

    Example:
        >>> from keras_vae.model import VAE
        >>> check_mixture_size(VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,)), 10, "full")
        40
    """
    classes = int(model.num_classes) if model.conditional else 1
    width = int(model.latent_dim)
    entries = classes * components * width * (width if covariance == "full" else 1)
    if entries > MAX_SCALE_ENTRIES:
        raise ValueError(
            f"A {covariance}-covariance mixture of {components} components x {classes} "
            f"class(es) in {width} latent dimensions has {entries:,} scale entries, over the "
            f"{MAX_SCALE_ENTRIES:,} allowed; use --covariance diag or fewer --components."
        )
    return entries


def fit_aggregate_sampler(
    model: VAE,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    components: int = DEFAULT_COMPONENTS,
    covariance: str = "full",
    seed: int = 0,
) -> AggregateSampler:
    """Fit the aggregate sampler of `model` on the training `images` (float32 in [0, 1]) and,
    for a conditional model, their `labels` (one mixture per class).

    Raises:
        ValueError: bad `components`, `covariance` or `seed`, a mixture over
            `check_mixture_size`, missing labels, or a class with fewer images than
            `components`.
    """
    check_fit_arguments(components, covariance, seed)
    check_mixture_size(model, components, covariance)
    if model.conditional and labels is None:
        raise ValueError(
            "A conditional model's aggregate sampler is fitted per class: pass labels."
        )
    given = model.checked_labels(labels, len(images)) if model.conditional else None
    codes = central_codes(model, images, None if given is None else np.asarray(given))
    rows = (
        [codes]
        if given is None
        else [codes[np.asarray(given) == k] for k in range(model.num_classes)]
    )
    mixtures = []
    for k, row in enumerate(rows):
        if len(row) < components:
            where = "" if given is None else f" of class {k}"
            raise ValueError(
                f"{len(row)} training images{where} cannot fit {components} components; "
                "lower --components or train on more data."
            )
        mixtures.append(fit_gaussian_mixture(row, components, covariance, seed=seed))
    scale = [np.linalg.cholesky(m.covariances) for m in mixtures]
    if covariance == "diag":
        scale = [np.diagonal(s, axis1=-2, axis2=-1) for s in scale]
    mixture = LatentMixture(
        # an emptied component keeps its parameters at a negligible, finite weight
        np.stack([np.log(np.maximum(m.weights, MIN_WEIGHT)) for m in mixtures]).astype(np.float32),
        np.stack([m.means for m in mixtures]).astype(np.float32),
        np.stack(scale).astype(np.float32),
    )
    return AggregateSampler(
        mixture,
        covariance,
        int(seed),
        tuple(len(row) for row in rows),
        tuple(float(m.log_density(row).mean()) for m, row in zip(mixtures, rows)),
        tuple(int(m.iterations) for m in mixtures),
    )


def sampler_bytes(sampler: AggregateSampler) -> bytes:
    """The ``aggregate_sampler.npz`` of `sampler`: its three arrays and a JSON ``metadata``."""
    metadata = {"format_version": FORMAT_VERSION, **sampler.summary()}
    buffer = io.BytesIO()
    np.savez(buffer, **sampler.mixture._asdict(), metadata=np.array(json.dumps(metadata)))
    return buffer.getvalue()


def check_mixture(mixture: LatentMixture, model: VAE, covariance: str) -> None:
    """`ValueError` unless `mixture` fits `model` (class rows, latent width), is float32 and
    finite, its weights sum to 1 per class row and its scales are positive Cholesky factors."""
    classes = int(model.num_classes) if model.conditional else 1
    log_weights, loc, scale = mixture
    if any(a.dtype != np.float32 for a in mixture):
        raise ValueError("its arrays are not all float32")
    if log_weights.ndim != 2 or log_weights.shape[0] != classes:
        raise ValueError(f"log_weights has shape {log_weights.shape}, expected ({classes}, K)")
    if not 1 <= log_weights.shape[1] <= MAX_COMPONENTS:
        raise ValueError(
            f"it has {log_weights.shape[1]} components, expected 1 to {MAX_COMPONENTS}"
        )
    width = int(model.latent_dim)
    tail = (width, width) if covariance == "full" else (width,)
    if loc.shape != (*log_weights.shape, width) or scale.shape != (*log_weights.shape, *tail):
        raise ValueError(
            f"loc {loc.shape} and scale {scale.shape} do not fit {log_weights.shape} components "
            f"of this model's latent_dim={width} ({covariance} covariance)"
        )
    if not all(np.isfinite(a).all() for a in mixture):
        raise ValueError("it holds NaN or infinite values")
    total = np.exp(log_weights.astype(np.float64)).sum(axis=1)
    if np.abs(total - 1).max() > 1e-4:
        raise ValueError(f"its weights sum to {total.tolist()}, not 1")
    diagonal = scale if covariance == "diag" else np.diagonal(scale, axis1=-2, axis2=-1)
    upper = 0.0 if covariance == "diag" else np.abs(np.triu(scale, 1)).max(initial=0.0)
    if (diagonal <= 0).any() or upper != 0:
        raise ValueError("its scales are not lower-triangular with a positive diagonal")


def read_aggregate_sampler(run_dir: str | os.PathLike, model: VAE) -> AggregateSampler | None:
    """The run's aggregate sampler, checked against `model`, or None when none was fitted.

    Raises:
        SamplerFileError: the file is not this run's (`keras_vae.run_files`), too large,
            unreadable, or does not fit the model.
    """
    path = Path(run_dir) / SAMPLER_FILE
    if not os.path.lexists(path):
        return None
    check_run_file_owned(run_dir, SAMPLER_FILE, FIT_SAMPLER, error=SamplerFileError)
    try:
        size = path.stat().st_size
        if not path.is_file() or size > MAX_FILE_BYTES:
            raise ValueError(f"it is not a regular file of at most {MAX_FILE_BYTES:,} bytes")
        arrays = read_npz(path, stored_only=True)
        if sorted(arrays) != sorted((*ARRAYS, "metadata")):
            raise ValueError(f"it holds {sorted(arrays)}, expected {[*ARRAYS, 'metadata']}")
        metadata = json.loads(str(arrays.pop("metadata")))
        if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"its metadata is not format_version {FORMAT_VERSION}")
        check_choice("covariance", metadata.get("covariance"), COVARIANCE_TYPES)
        mixture = LatentMixture(**arrays)
        check_mixture(mixture, model, metadata["covariance"])
        rows = mixture.log_weights.shape[0]
        fields: dict[str, Any] = {  # JSON values, checked to be lists just below
            key: metadata.get(key) for key in ("examples", "log_likelihood", "iterations")
        }
        if any(not isinstance(v, list) or len(v) != rows for v in fields.values()):
            raise ValueError(f"its metadata does not list {list(fields)} per class row")
        check_at_least("seed", metadata.get("seed"), 0, maximum=MAX_SEED)
        return AggregateSampler(
            mixture,
            metadata["covariance"],
            int(metadata["seed"]),
            tuple(int(v) for v in fields["examples"]),
            tuple(float(v) for v in fields["log_likelihood"]),
            tuple(int(v) for v in fields["iterations"]),
        )
    except (
        OSError,
        ValueError,
        TypeError,
        KeyError,
        RecursionError,
    ) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SamplerFileError(f"{path} is invalid ({detail}); {_REFIT}.") from None


def attach_aggregate_sampler(model: VAE, run_dir: str | os.PathLike) -> None:
    """Set `model.aggregate_sampler` from the run's file (left None when none was fitted)."""
    model.aggregate_sampler = read_aggregate_sampler(run_dir, model)


def sampler_record(model: VAE, sampler: str, temperature: float) -> dict[str, Any]:
    """What export.json records of the decoder's draws: the sampler, the temperature and,
    for the aggregate sampler, its `AggregateSampler.summary`."""
    record: dict[str, Any] = {"name": sampler, "temperature": float(temperature)}
    if sampler == "aggregate":
        record.update(cast("AggregateSampler", model.aggregate_sampler).summary())  # fitted
    return record


def fit_sampler_run(
    run_dir: str | os.PathLike,
    components: int = DEFAULT_COMPONENTS,
    covariance: str = "full",
    seed: int = 0,
    dataset: str | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """``keras-vae fit-sampler``: fit the aggregate sampler of a trained run on its training
    images (or `dataset`'s, prepared as the run's) and write ``RUN_DIR/aggregate_sampler.npz``.
    Dynamically binarized training data is binarized once, with `seed`, as the encoder saw it.

    Also draws ``figures/samples.png``'s grid from the new sampler into
    ``RUN_DIR/figures/samples_aggregate.png`` (`samples_figure`).

    Returns:
        {"out", "figure", "examples", "components", "covariance", "seed", "log_likelihood",
        "iterations"}.

    Raises:
        ValueError: bad arguments, an unusable run folder or data (`RunDirError`,
            `DataError`), or a sampler file keras-vae did not write; nothing written then.

    Example:
        >>> fit_sampler_run("runs/mnist", components=10)["components"]   # doctest: +SKIP
        10
    """
    from keras_vae import run_reader as rd
    from keras_vae.data.pipelines import binarize
    from keras_vae.run_files import check_run_file_writable, write_run_file

    check_fit_arguments(components, covariance, seed)
    folder = rd.check_run_dir(run_dir)
    check_run_file_writable(folder, SAMPLER_FILE, FIT_SAMPLER, SamplerFileError)
    run = rd.load_run(folder, with_model=False)  # the old sampler file is not read: replaced
    run = dataclasses.replace(run, model=rd.load_model(folder))
    split = rd.load_split(run, dataset, data_dir, split="train")
    images, labels = split.images, split.labels
    if run.config.data.binarization == "dynamic":
        images = binarize(images, seed).astype(np.float32) / np.float32(255)
    if run.model.conditional:
        from keras_vae.evaluate import check_run_labels

        labels = check_run_labels(run.model, labels, dataset or run.config.data.dataset)
    check_run_file_writable(folder, FIGURE_FILE, FIT_SAMPLER, SamplerFileError)
    sampler = fit_aggregate_sampler(run.model, images, labels, components, covariance, seed)
    path = write_run_file(
        folder, SAMPLER_FILE, sampler_bytes(sampler), FIT_SAMPLER, SamplerFileError
    )
    run.model.aggregate_sampler = sampler
    figure = write_run_file(
        folder, FIGURE_FILE, samples_figure(run.model), FIT_SAMPLER, SamplerFileError
    )
    return {"out": str(path), "figure": str(figure), **sampler.summary()}


def samples_figure(model: VAE) -> bytes:
    """The PNG of ``figures/samples.png``'s grid drawn by the aggregate sampler: 64 samples,
    seed 0 (one row per class of a conditional model)."""
    from keras_vae import figures, visualize

    drawn: dict[str, Any] = {"sampler": "aggregate"}
    if model.conditional:
        return figures.png_bytes(visualize.class_sample_pixels(model, **drawn))
    return figures.png_bytes(visualize.sample_pixels(model, **drawn))
