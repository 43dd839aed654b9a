"""What a trained VAE looks like: runs the model, then draws with `keras_vae.figures`.

`render_figures` makes the figures `train` writes into ``RUN_DIR/figures``:

- ``reconstructions.png``: the first 10 test examples (top row) above their reconstructions;
- ``samples.png``: 64 draws x ~ E[x|z], z ~ p(z), in an 8 x 8 grid (seed 0);
- ``learning_curves.png``: train and validation ELBO and KL per epoch (900 x 400 px);
- latent_dim == 2: ``manifold.png``, the paper's Figure 4 (decoded 20 x 20 grid of Gaussian
  quantiles), and ``latent_space.png``, the test set's posterior means coloured by label
  (600 x 600 px; only when the data has labels);
- latent_dim != 2: ``traversals.png``, one row per latent dimension (the up to 10 with the
  largest average KL on the test set, most informative first), each set to 9 values from -3
  to 3 around the first test example's posterior mean.

Example:

>>> figures = render_figures(model, test_data, history)      # doctest: +SKIP
>>> save_figures(figures, "runs/mnist/figures")               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_vae import figures
from keras_vae.atomic import write_atomically

NUM_RECONSTRUCTIONS = 10
NUM_SAMPLES = 64
SAMPLE_SEED = 0
MANIFOLD_SIZE = 20
TRAVERSAL_DIMS = 10
TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 9).astype(np.float32)
MAX_EXAMPLES = 10_000  # test examples encoded for the scatter plot and for ranking dimensions
MAX_GRID_IMAGES = 10_000  # largest -n of `keras-vae sample` / `reconstruct`
BATCH = 1_000


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


def encode(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and standard deviations [N, latent_dim], in batches of `BATCH`."""
    parts = [model.encode(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return (
        np.concatenate([np.asarray(mean) for mean, _ in parts]),
        np.concatenate([np.asarray(stddev) for _, stddev in parts]),
    )


def decode(model, z: np.ndarray) -> np.ndarray:
    """E[x|z] for codes [N, latent_dim], in batches of `BATCH`."""
    return np.concatenate(
        [np.asarray(model.decode(z[i : i + BATCH])) for i in range(0, len(z), BATCH)]
    )


def kl_per_dimension(z_mean: np.ndarray, z_stddev: np.ndarray) -> np.ndarray:
    """Average KL(q(z_j|x) || N(0, 1)) per latent dimension j over the examples, in nats.

    Example:
        >>> kl_per_dimension(np.array([[0.0, 1.0]]), np.ones((1, 2))).tolist()
        [0.0, 0.5]
    """
    var = np.square(z_stddev)
    return np.mean(0.5 * (np.square(z_mean) + var - 1.0 - np.log(var)), axis=0)


def sample_pixels(model, num_samples: int = NUM_SAMPLES, seed: int = SAMPLE_SEED) -> np.ndarray:
    """uint8 grid of `num_samples` prior samples; the same integer seed gives the same pixels."""
    samples = np.asarray(model.sample(num_samples, seed=seed))
    return figures.sample_grid(samples, model.data_shape)


def reconstruction_pixels(model, x: np.ndarray, columns: int = NUM_RECONSTRUCTIONS) -> np.ndarray:
    """uint8 grid of `x` above its reconstructions (`figures.reconstruction_grid`)."""
    reconstructions = np.asarray(model.reconstruct(x))
    return figures.reconstruction_grid(x, reconstructions, model.data_shape, columns)


def render_figures(
    model, test_data: tf.data.Dataset, history: Mapping[str, Sequence[float]]
) -> dict[str, bytes]:
    """The run's figures as {file name: PNG bytes} (see the module docstring)."""
    x, labels = collect_examples(test_data)
    shape = model.data_shape
    rendered = {
        "reconstructions.png": figures.png_bytes(
            reconstruction_pixels(model, x[:NUM_RECONSTRUCTIONS])
        ),
        "samples.png": figures.png_bytes(sample_pixels(model)),
        "learning_curves.png": figures.learning_curves(history),
    }
    z_mean, z_stddev = encode(model, x)
    if model.latent_dim == 2:
        decoded = decode(model, figures.manifold_latents(MANIFOLD_SIZE))
        rendered["manifold.png"] = figures.png_bytes(
            figures.manifold_grid(decoded, shape, MANIFOLD_SIZE)
        )
        if labels is not None:
            rendered["latent_space.png"] = figures.latent_scatter(z_mean, labels)
    else:
        ranking = np.argsort(-kl_per_dimension(z_mean, z_stddev), kind="stable")
        dims = [int(d) for d in ranking[:TRAVERSAL_DIMS]]
        codes = figures.traversal_latents(z_mean[0], dims, TRAVERSAL_VALUES)
        rendered["traversals.png"] = figures.png_bytes(
            figures.traversal_grid(decode(model, codes), shape, len(TRAVERSAL_VALUES))
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


def check_png_path(path: str | os.PathLike) -> Path:
    """The output path as a `Path`, after checking it names a .png file in a writable folder.

    Raises:
        ValueError: the name does not end in .png, is a folder, or its folder is missing or
            not writable.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        raise ValueError(f"Output path {path} is a folder; pass a file name ending in .png.")
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"Output path {path} does not end in .png; figures are written as PNG files."
        )
    if not path.parent.is_dir():
        raise ValueError(
            f"The folder of the output path does not exist: {path.parent}; create it first "
            "or write elsewhere."
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"Cannot write {path} (permission denied); write elsewhere.")
    return path


def _write_png(pixels: np.ndarray, out: Path, **summary) -> dict:
    write_atomically(out, figures.png_bytes(pixels))
    return {"out": str(out), **summary, "width": pixels.shape[1], "height": pixels.shape[0]}


def sample_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    num_samples: int = NUM_SAMPLES,
    seed: int = SAMPLE_SEED,
) -> dict:
    """Write a grid of `num_samples` prior samples of a trained run to the PNG `out`.

    Everything is checked before `out` is written; the same seed gives the same PNG bytes.

    Returns:
        {"out", "num_samples", "seed", "width", "height"} (pixels).

    Example:
        >>> sample_run("runs/mnist", "samples.png", num_samples=100, seed=1)  # doctest: +SKIP
        {'out': 'samples.png', 'num_samples': 100, 'seed': 1, 'width': 302, 'height': 302}
    """
    from keras_vae.run_dir import load_run

    check_count("num_samples", num_samples)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            f"Received an invalid value for `seed`, expected an integer >= 0. Received: {seed!r}"
        )
    out = check_png_path(out)
    model = load_run(run_dir).model
    pixels = sample_pixels(model, num_samples, seed)
    return _write_png(pixels, out, num_samples=num_samples, seed=seed)


def reconstruct_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    dataset: str | None = None,
    data_dir: str | None = None,
    num_examples: int = NUM_RECONSTRUCTIONS,
) -> dict:
    """Write the first `num_examples` held-out examples above their reconstructions to `out`.

    The examples come from the run's own held-out split, or from `dataset`'s (checked to fit
    the model: same example shape, values in [0, 1] for Bernoulli, no NaN). Fewer examples
    than asked are used when the split is smaller. Rows of 10: inputs, then reconstructions.

    Returns:
        {"out", "dataset", "num_examples", "width", "height"}.
    """
    from keras_vae.run_dir import load_run, load_test_split

    check_count("num_examples", num_examples)
    out = check_png_path(out)
    run = load_run(run_dir)
    x = load_test_split(run, dataset, data_dir).images[:num_examples]
    pixels = reconstruction_pixels(run.model, x)
    name = dataset or run.config.data.dataset
    return _write_png(pixels, out, dataset=name, num_examples=len(x))
