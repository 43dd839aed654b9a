"""Figures: exact pixel layout of the grids, the manifold's Gaussian quantiles, and the PNGs that
`train` writes into RUN_DIR/figures (valid, of the documented size, showing the model)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from helpers import train_run
from PIL import Image

from keras_vae import distributions, figures, visualize
from keras_vae.run_reader import load_run, load_test_split

RNG = np.random.default_rng(0)


def png_array(data: bytes | Path) -> np.ndarray:
    raw = data.read_bytes() if isinstance(data, Path) else data
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(raw)))


def tile(grid: np.ndarray, row: int, column: int, shape: tuple[int, int], scale: int):
    """The pixels of one cell of a grid laid out as `figures` documents."""
    height, width = shape[0] * scale, shape[1] * scale
    top = figures.PAD + row * (height + figures.PAD)
    left = figures.PAD + column * (width + figures.PAD)
    return grid[top : top + height, left : left + width]


def expected_tile(image: np.ndarray, scale: int) -> np.ndarray:
    """Independent reference: 0..255 quantisation, then a Kronecker-product enlargement."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return np.kron(pixels, np.ones((scale, scale), np.uint8))


# ---------------------------------------------------------------------------------- pure layout


@pytest.mark.parametrize(
    "data_shape, expected",
    [((28, 28), (28, 28)), ((28, 20, 1), (28, 20)), ((4, 5, 3), (4, 5, 3)), ((4, 5, 2), (4, 5)),
     ((784,), (28, 28)), ((560,), (20, 28)), ((7,), (1, 7)), ((2, 3, 4, 5), (10, 12))],
)  # fmt: skip
def test_image_shape(data_shape, expected):
    assert figures.image_shape(data_shape) == expected
    assert math.prod(expected[:2]) * (expected[2] if len(expected) == 3 else 1) <= math.prod(
        data_shape
    )


def test_image_grid_places_every_tile_exactly():
    images = RNG.random((7, 5, 3)).astype(np.float32)
    grid = figures.image_grid(images, columns=3, scale=2)
    assert grid.dtype == np.uint8
    assert grid.shape[::-1] == figures.grid_size(3, 3, (5, 3), 2) == (3 * 8 + 2, 3 * 12 + 2)
    for index, image in enumerate(images):
        row, column = divmod(index, 3)
        np.testing.assert_array_equal(tile(grid, row, column, (5, 3), 2), expected_tile(image, 2))
    # the two unused cells and the frame stay background grey
    assert (tile(grid, 2, 1, (5, 3), 2) == figures.BACKGROUND).all()
    assert (grid[: figures.PAD] == figures.BACKGROUND).all()
    assert (grid[:, -figures.PAD :] == figures.BACKGROUND).all()


def test_default_scale_makes_tiles_at_least_min_tile():
    assert figures.tile_scale((8, 8)) == 4 and figures.tile_scale((28, 28)) == 1
    assert figures.tile_scale((28, 20)) == 1 and figures.tile_scale((5, 9)) == 4
    grid = figures.image_grid(np.zeros((1, 8, 8)), columns=1)
    assert grid.shape == (8 * 4 + 2 * figures.PAD,) * 2


def test_colour_images_and_png_round_trip_losslessly():
    images = RNG.random((4, 6, 6, 3))
    grid = figures.image_grid(images, columns=2)
    assert grid.shape[2] == 3
    np.testing.assert_array_equal(png_array(figures.png_bytes(grid)), grid)


def test_reconstruction_grid_puts_inputs_above_their_reconstructions():
    inputs, outputs = RNG.random((13, 8, 8)), RNG.random((13, 8, 8))
    grid = figures.reconstruction_grid(inputs, outputs, (8, 8), columns=10)
    assert grid.shape[::-1] == figures.grid_size(4, 10, (8, 8), 4)
    for index in range(13):
        block, column = divmod(index, 10)
        top, bottom = (tile(grid, 2 * block + k, column, (8, 8), 4) for k in (0, 1))
        np.testing.assert_array_equal(top, expected_tile(inputs[index], 4))
        np.testing.assert_array_equal(bottom, expected_tile(outputs[index], 4))
    for column in range(3, 10):  # the last block has 3 examples; its other cells are empty
        assert (tile(grid, 2, column, (8, 8), 4) == figures.BACKGROUND).all()
        assert (tile(grid, 3, column, (8, 8), 4) == figures.BACKGROUND).all()


def test_vectors_are_drawn_as_images_and_values_clipped():
    x = np.linspace(-1, 2, 2 * 784, dtype=np.float32).reshape(2, 784)
    images = figures.to_images(x, (784,))
    assert images.shape == (2, 28, 28)
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(images[1].ravel(), np.clip(x[1], 0, 1))
    with pytest.raises(ValueError, match=r"shape \(28, 28\)"):
        figures.to_images(x, (28, 28))


def test_manifold_latents_are_gaussian_quantiles_of_a_regular_grid():
    n = 7
    z = figures.manifold_latents(n)
    assert z.shape == (n * n, 2)
    reference = scipy.stats.norm.ppf((np.arange(n) + 0.5) / n)  # independent inverse CDF
    grid = z.reshape(n, n, 2)
    np.testing.assert_allclose(grid[0, :, 0], reference, rtol=1e-6, atol=1e-6)  # z1 across
    np.testing.assert_allclose(grid[:, 0, 1], reference[::-1], rtol=1e-6, atol=1e-6)  # z2 up
    assert (grid[:, :, 0] == grid[0, :, 0]).all() and (grid[:, 0, 1] == grid[:, :, 1].T).all()
    # equal probability mass per cell: the CDF of the codes is the regular grid
    np.testing.assert_allclose(scipy.stats.norm.cdf(grid[0, :, 0]), (np.arange(n) + 0.5) / n)


def test_traversal_latents_change_one_dimension_per_row():
    center = RNG.normal(size=5).astype(np.float32)
    values = np.array([-2.0, 0.0, 2.0], np.float32)
    codes = figures.traversal_latents(center, [3, 0], values).reshape(2, 3, 5)
    for row, dim in enumerate([3, 0]):
        np.testing.assert_array_equal(codes[row, :, dim], values)
        others = np.delete(codes[row], dim, axis=1)
        np.testing.assert_array_equal(others, np.tile(np.delete(center, dim), (3, 1)))


def test_kl_per_dimension_sums_to_the_closed_form_kl():
    mean = RNG.normal(size=(50, 4)).astype(np.float32)
    stddev = RNG.uniform(0.2, 2.0, size=(50, 4)).astype(np.float32)
    kl = distributions.posterior(mean, stddev).kl_divergence(distributions.prior(4))
    np.testing.assert_allclose(
        visualize.kl_per_dimension(mean, stddev).sum(), np.mean(kl), rtol=1e-5
    )


@pytest.mark.parametrize("labels", [None, np.arange(300) % 10, np.arange(300) % 37])
def test_latent_scatter_has_its_documented_size(labels):
    png = png_array(figures.latent_scatter(RNG.normal(size=(300, 2)), labels, size=500))
    assert png.shape[:2] == (500, 500) and png.std() > 0


def test_learning_curves_size_and_bad_history():
    history = {
        "elbo": [-60.0, -50.0, -45.0],
        "kl": [1.0, 2.0, 2.5],
        "val_elbo": [-58.0, -49.0, -46.0],
        "val_kl": [1.1, 2.1, 2.4],
    }
    png = png_array(figures.learning_curves(history, width=700, height=300))
    assert png.shape[:2] == (300, 700) and png.std() > 0
    with pytest.raises(ValueError, match="'kl'"):
        figures.learning_curves({"elbo": [-1.0]})


def test_bad_grid_arguments_are_named():
    with pytest.raises(ValueError, match="columns"):
        figures.image_grid(np.zeros((2, 4, 4)), columns=0)
    with pytest.raises(ValueError, match="images.shape"):
        figures.image_grid(np.zeros((0, 4, 4)), columns=1)
    with pytest.raises(ValueError, match="n >= 1"):
        figures.gaussian_quantiles(0)


# ------------------------------------------------------------------- the figures train writes

SCALE = 4  # the 8x8 digits are drawn 4x enlarged (MIN_TILE 28)


def test_train_writes_the_latent_2_figures(tiny_run_dir):
    """latent_dim == 2 with labels: reconstructions, samples, curves, manifold, latent space."""
    folder = tiny_run_dir / "figures"
    assert sorted(p.name for p in folder.iterdir()) == [
        "latent_space.png",
        "learning_curves.png",
        "manifold.png",
        "reconstructions.png",
        "samples.png",
    ]
    n = visualize.MANIFOLD_SIZE
    sizes = {
        "reconstructions.png": figures.grid_size(2, 10, (8, 8), SCALE),
        "samples.png": figures.grid_size(8, 8, (8, 8), SCALE),
        "manifold.png": figures.grid_size(n, n, (8, 8), SCALE),
        "learning_curves.png": (900, 400),
        "latent_space.png": (600, 600),
    }
    for name, (width, height) in sizes.items():
        pixels = png_array(folder / name)
        assert pixels.shape[:2] == (height, width), name
        assert pixels.std() > 0, name


def test_train_figures_show_this_model(tiny_run_dir):
    """Parity: the top row is the held-out inputs, the bottom row the model's reconstructions,
    the samples and the manifold are the model's decodings."""
    run = load_run(tiny_run_dir)
    x = load_test_split(run).images[:10]
    grid = png_array(tiny_run_dir / "figures" / "reconstructions.png")
    reconstructions = np.asarray(run.model.reconstruct(x))
    for column in range(10):
        top = tile(grid, 0, column, (8, 8), SCALE)
        np.testing.assert_array_equal(top, expected_tile(x[column], SCALE))
        got = tile(grid, 1, column, (8, 8), SCALE).astype(int)
        # +-1 grey level: float round-off between the saved and the reloaded model
        assert np.abs(got - expected_tile(reconstructions[column], SCALE)).max() <= 1
    samples = png_array(tiny_run_dir / "figures" / "samples.png").astype(int)
    assert np.abs(samples - visualize.sample_pixels(run.model)).max() <= 1
    n = visualize.MANIFOLD_SIZE
    decoded = np.asarray(run.model.decode(figures.manifold_latents(n)))
    manifold = png_array(tiny_run_dir / "figures" / "manifold.png").astype(int)
    assert np.abs(manifold - figures.manifold_grid(decoded, (8, 8), n)).max() <= 1


@pytest.fixture(scope="module")
def latent_3_run(tmp_path_factory) -> Path:
    config = {
        "model": {"latent_dim": 3, "hidden_units": [16]},
        "training": {"epochs": 1, "batch_size": 128},
    }
    return train_run(tmp_path_factory.mktemp("latent3"), config)


def test_train_writes_traversals_when_latent_dim_is_not_2(latent_3_run):
    folder = latent_3_run / "figures"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["learning_curves.png", "reconstructions.png", "samples.png", "traversals.png"]
    values = len(visualize.TRAVERSAL_VALUES)
    pixels = png_array(folder / "traversals.png")
    assert pixels.shape[::-1] == figures.grid_size(3, values, (8, 8), SCALE)  # one row per dim
    # Each row varies one latent dimension, so the row's tiles differ from each other.
    for row in range(3):
        first, last = (tile(pixels, row, c, (8, 8), SCALE) for c in (0, values - 1))
        assert not np.array_equal(first, last)
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temporaries left
