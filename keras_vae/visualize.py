"""What a trained VAE looks like: runs the model, then draws with `keras_vae.figures`.

`render_figures` makes the figures `train` writes into ``RUN_DIR/figures``:

- ``reconstructions.png``: the first 10 test examples (top row) above their reconstructions;
- ``samples.png``: 64 draws x ~ E[x|z], z ~ p(z), in an 8 x 8 grid (seed 0); for a
  conditional model one row per class (the first 20), the same 10 draws of z down each
  column, so only the class changes along a column;
- ``learning_curves.png``: train and validation ELBO and KL per epoch (900 x 400 px);
- latent_dim == 2: ``manifold.png``, the paper's Figure 4 (decoded 20 x 20 grid of Gaussian
  quantiles), and ``latent_space.png``, the test set's posterior means coloured by label
  (600 x 600 px; only when the data has labels); a conditional model draws one manifold per
  class instead, ``manifold_class_<k>.png`` for the first 10 classes;
- latent_dim != 2: ``traversals.png``, one row per latent dimension (the up to 10 with the
  largest average KL on the test set, most informative first), each set to 9 values from -3
  to 3 around the first test example's posterior mean.

Example:

>>> figures = render_figures(model, test_data, history)      # doctest: +SKIP
>>> save_figures(figures, "runs/mnist/figures")               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import tensorflow as tf

from keras_vae import figures
from keras_vae.atomic import check_output_file, write_atomically, write_output, written_in_place
from keras_vae.limits import check_sampler, user_path

if TYPE_CHECKING:
    from keras_vae.model import VAE
    from keras_vae.run_reader import Run

NUM_RECONSTRUCTIONS = 10
NUM_SAMPLES = 64
SAMPLE_SEED = 0
MANIFOLD_SIZE = 20
TRAVERSAL_DIMS = 10
TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 9).astype(np.float32)
MAX_EXAMPLES = 10_000  # test examples encoded for the scatter plot and for ranking dimensions
MAX_GRID_IMAGES = 10_000  # largest -n of `keras-vae sample` / `reconstruct`
BATCH = 1_000
CLASS_SAMPLE_COLUMNS = 10  # samples.png of a conditional model: draws of z per class row
MAX_CLASS_ROWS = 20  # ... and at most this many classes (rows)
MAX_CLASS_MANIFOLDS = 10  # manifold_class_<k>.png for at most this many classes


def collect_examples(
    dataset: tf.data.Dataset, limit: int = MAX_EXAMPLES
) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to `limit` examples (and labels, or None) from a batched `(x, y)` or `x` pipeline."""
    xs, ys, count = [], [], 0
    for batch in dataset:
        x, y = batch if isinstance(batch, tuple) else (batch, None)
        xs.append(np.asarray(x))
        if y is not None:
            ys.append(np.asarray(y))
        count += len(xs[-1])
        if count >= limit:
            break
    if not xs:
        raise ValueError("The dataset is empty; expected at least one example.")
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit] if ys else None


def _rows(labels: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if labels is None else labels[i : i + BATCH]


def in_batches(
    call: Callable[[np.ndarray, np.ndarray | None], Any],
    x: np.ndarray,
    labels: np.ndarray | None = None,
) -> list:
    """``call(batch, its labels or None)`` for each batch of `BATCH` rows of `x`, in order
    (`labels` [N]: a conditional model's)."""
    return [call(x[i : i + BATCH], _rows(labels, i)) for i in range(0, len(x), BATCH)]


def encode(
    model: VAE, x: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and standard deviations [N, latent_dim], in batches of `BATCH`
    (`labels` [N]: a conditional model's)."""
    parts = in_batches(model.encode, x, labels)
    return (
        np.concatenate([np.asarray(mean) for mean, _ in parts]),
        np.concatenate([np.asarray(stddev) for _, stddev in parts]),
    )


def decode(model: VAE, z: np.ndarray, labels: np.ndarray | int | None = None) -> np.ndarray:
    """E[x|z] for codes [N, latent_dim], in batches of `BATCH` (`labels`: one class for all
    rows or one per row, for a conditional model)."""
    if labels is not None and np.ndim(labels) == 0:
        labels = np.full(len(z), int(labels))
    rows = cast("np.ndarray | None", labels)  # an int became one label per row above
    return np.concatenate([np.asarray(x) for x in in_batches(model.decode, z, rows)])


def kl_per_dimension(z_mean: np.ndarray, z_stddev: np.ndarray) -> np.ndarray:
    """Average KL(q(z_j|x) || N(0, 1)) per latent dimension j over the examples, in nats.

    Example:
        >>> kl_per_dimension(np.array([[0.0, 1.0]]), np.ones((1, 2))).tolist()
        [0.0, 0.5]
    """
    var = np.square(z_stddev)
    return np.mean(0.5 * (np.square(z_mean) + var - 1.0 - np.log(var)), axis=0)


def sample_pixels(
    model: VAE,
    num_samples: int = NUM_SAMPLES,
    seed: int = SAMPLE_SEED,
    label: int | None = None,
    **sampler: Any,
) -> np.ndarray:
    """uint8 grid of `num_samples` samples (of class `label`, conditional models; `sampler`:
    the `sampler` and `temperature` of `VAE.sample`); the same integer seed gives the same
    pixels."""
    samples = np.asarray(model.sample(num_samples, seed=seed, labels=label, **sampler))
    return figures.sample_grid(samples, model.data_shape)


def class_sample_pixels(
    model: VAE,
    columns: int = CLASS_SAMPLE_COLUMNS,
    seed: int = SAMPLE_SEED,
    classes: Sequence[int] | None = None,
    **sampler: Any,
) -> np.ndarray:
    """uint8 grid of a conditional model's samples, one row per class of `classes` (default:
    the first `MAX_CLASS_ROWS`), every row from the same `columns` seeded draws: from the
    prior, the same z down a column, so only the label changes and the style is held fixed;
    from a per-class aggregate sampler, the same noise through each class's mixture."""
    classes = list(range(min(model.num_classes, MAX_CLASS_ROWS))) if classes is None else classes
    codes = np.concatenate(
        [np.asarray(model.sample_latent(columns, seed, k, **sampler)) for k in classes]
    )
    labels = np.repeat(np.asarray(classes, np.int32), columns)
    images = figures.to_images(decode(model, codes, labels), model.data_shape)
    return figures.image_grid(images, columns)


def reconstruction_pixels(
    model: VAE,
    x: np.ndarray,
    columns: int = NUM_RECONSTRUCTIONS,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 grid of `x` above its reconstructions (`figures.reconstruction_grid`), with the
    true `labels` for a conditional model."""
    reconstructions = np.asarray(model.reconstruct(x, labels))
    return figures.reconstruction_grid(x, reconstructions, model.data_shape, columns)


def render_figures(
    model: VAE, test_data: tf.data.Dataset, history: Mapping[str, Sequence[float]]
) -> dict[str, bytes]:
    """The run's figures as {file name: PNG bytes} (see the module docstring)."""
    x, labels = collect_examples(test_data)
    conditional = getattr(model, "conditional", False)
    given = labels if conditional else None  # what the model is conditioned on
    shape = model.data_shape
    samples = class_sample_pixels(model) if conditional else sample_pixels(model)
    rendered = {
        "reconstructions.png": figures.png_bytes(
            reconstruction_pixels(
                model,
                x[:NUM_RECONSTRUCTIONS],
                labels=None if given is None else given[:NUM_RECONSTRUCTIONS],
            )
        ),
        "samples.png": figures.png_bytes(samples),
        "learning_curves.png": figures.learning_curves(history),
    }
    z_mean, z_stddev = encode(model, x, given)
    if model.latent_dim == 2:
        grid = figures.manifold_latents(MANIFOLD_SIZE)
        if conditional:
            for k in range(min(model.num_classes, MAX_CLASS_MANIFOLDS)):
                rendered[f"manifold_class_{k}.png"] = figures.png_bytes(
                    figures.manifold_grid(decode(model, grid, k), shape, MANIFOLD_SIZE)
                )
        else:
            rendered["manifold.png"] = figures.png_bytes(
                figures.manifold_grid(decode(model, grid), shape, MANIFOLD_SIZE)
            )
        if labels is not None:
            rendered["latent_space.png"] = figures.latent_scatter(z_mean, labels)
    else:
        ranking = np.argsort(-kl_per_dimension(z_mean, z_stddev), kind="stable")
        dims = [int(d) for d in ranking[:TRAVERSAL_DIMS]]
        codes = figures.traversal_latents(z_mean[0], dims, TRAVERSAL_VALUES)
        label = int(cast("np.ndarray", given)[0]) if conditional else None  # labelled data
        decoded = decode(model, codes, label)
        rendered["traversals.png"] = figures.png_bytes(
            figures.traversal_grid(decoded, shape, len(TRAVERSAL_VALUES))
        )
    return rendered


def save_figures(rendered: Mapping[str, bytes], folder: str | os.PathLike) -> None:
    """Write each PNG atomically into `folder` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in rendered.items():
        write_atomically(folder / name, png)


# ----------------------------------------------------------------------------------------------
# `keras-vae sample` and `keras-vae reconstruct`
# ----------------------------------------------------------------------------------------------


def check_count(name: str, value: int, maximum: int = MAX_GRID_IMAGES) -> int:
    """`value` if it is an integer in [1, maximum], else a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected an integer in [1, {maximum}]. "
            f"Received: {name}={value!r}"
        )
    return value


def check_png_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """The output path as a `Path`, after checking it names a .png file that may be written
    (`keras_vae.atomic.check_output_file`'s rules; none of the command's `inputs`).

    Raises:
        ValueError: the name does not end in .png, or `check_output_file` refuses it.
    """
    path = user_path("out", path)
    named_file = not path.is_dir() and not written_in_place(path)  # /dev/stdout: any name
    if named_file and path.suffix.lower() != ".png":
        raise ValueError(
            f"Output path {path} does not end in .png; figures are written as PNG files."
        )
    return check_output_file(path, "ending in .png", inputs)


def _write_png(pixels: np.ndarray, out: Path, **summary: Any) -> dict:
    write_output(out, figures.png_bytes(pixels))
    return {"out": str(out), **summary, "width": pixels.shape[1], "height": pixels.shape[0]}


def sample_run(
    run_dir: str | os.PathLike | Run,
    out: str | os.PathLike,
    num_samples: int = NUM_SAMPLES,
    seed: int = SAMPLE_SEED,
    label: int | str | None = None,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict:
    """Write a grid of `num_samples` samples of a trained run (a run directory, or a preset's
    `Run` from `keras_vae.presets.preset_run`) to the PNG `out`, z drawn by `sampler` at
    `temperature` (`VAE.sample_latent`).

    Everything is checked before `out` is written; the same seed gives the same PNG bytes.
    A conditional run needs `label`: a class in [0, K) (`num_samples` images of it) or "all"
    (one row per class, `num_samples` per row, the same z down each column).

    Returns:
        {"out", "num_samples", "seed", "sampler", "temperature", "width", "height"}
        (pixels), and "label".

    Example:
        >>> sample_run("runs/mnist", "samples.png", num_samples=100, seed=1)  # doctest: +SKIP
        {'out': 'samples.png', 'num_samples': 100, 'seed': 1, 'sampler': 'prior', ...}
    """
    from keras_vae.run_reader import input_paths, load_run

    check_count("num_samples", num_samples)
    drawn: dict[str, Any] = {"sampler": sampler, "temperature": check_sampler(sampler, temperature)}
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            f"Received an invalid value for `seed`, expected an integer >= 0. Received: {seed!r}"
        )
    out = check_png_path(out, input_paths(run_dir))
    model = load_run(run_dir).model
    label = check_sample_label(model, label, num_samples)
    model.latent_mixture(sampler)  # a ValueError if the run has no fitted aggregate sampler
    if label == "all":
        pixels = class_sample_pixels(model, num_samples, seed, range(model.num_classes), **drawn)
    else:
        pixels = sample_pixels(model, num_samples, seed, cast("int | None", label), **drawn)
    extra = {} if label is None else {"label": label}
    return _write_png(pixels, out, num_samples=num_samples, seed=seed, **drawn, **extra)


def check_sample_label(model: VAE, label: int | str | None, num_samples: int) -> int | str | None:
    """`label` checked against `model`: None for an unconditional model, a class in [0, K) or
    "all" for a conditional one (at most `MAX_GRID_IMAGES` images in all); else a one-line
    `ValueError` saying what is allowed."""
    classes = getattr(model, "num_classes", 0)
    if not classes:
        if label is not None:
            raise ValueError(
                f"--label {label} asks for a class, but this run is not conditional (trained "
                "without --conditional); drop --label."
            )
        return None
    if label is None:
        raise ValueError(
            f"This run is conditional ({classes} classes): pass --label K with K in "
            f"[0, {classes - 1}], or --label all for one row per class."
        )
    if label == "all":
        if classes * num_samples > MAX_GRID_IMAGES:
            raise ValueError(
                f"--label all draws {classes} x {num_samples} images, above the "
                f"{MAX_GRID_IMAGES:,} a grid may hold; lower -n."
            )
        return "all"
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
        raise ValueError(
            f"--label {label} is not a class of this run: expected an integer in "
            f"[0, {classes - 1}] or 'all'."
        )
    return label


def reconstruct_run(
    run_dir: str | os.PathLike | Run,
    out: str | os.PathLike,
    dataset: str | None = None,
    data_dir: str | None = None,
    num_examples: int = NUM_RECONSTRUCTIONS,
) -> dict:
    """Write the first `num_examples` held-out examples above their reconstructions to `out`
    (`run_dir`: a run directory, or a preset's `Run`).

    The examples come from the run's own held-out split, or from `dataset`'s (checked to fit
    the model: same example shape, values in [0, 1] for Bernoulli, no NaN). Fewer examples
    than asked are used when the split is smaller. Rows of 10: inputs, then reconstructions.

    Returns:
        {"out", "dataset", "num_examples", "width", "height"}.
    """
    from keras_vae.run_reader import input_paths, load_run, load_test_split

    check_count("num_examples", num_examples)
    out = check_png_path(out, input_paths(run_dir, dataset))
    run = load_run(run_dir)
    split = load_test_split(run, dataset, data_dir)
    x = split.images[:num_examples]
    labels = None
    if getattr(run.model, "conditional", False):  # reconstructed with their true labels
        if split.labels is None:
            raise ValueError(
                f"This run is conditional, but {dataset or run.config.data.dataset} has no "
                "labels to reconstruct with; pass a --dataset with labels."
            )
        labels = split.labels[:num_examples]
        if labels.max(initial=0) >= run.model.num_classes:
            raise ValueError(
                f"The labels of {dataset or run.config.data.dataset} reach "
                f"{int(labels.max())}, outside this run's {run.model.num_classes} classes."
            )
    pixels = reconstruction_pixels(run.model, x, labels=labels)
    name = dataset or run.config.data.dataset
    return _write_png(pixels, out, dataset=name, num_examples=len(x))
