"""Figures as PNG: image grids drawn with NumPy + Pillow, plots with matplotlib (Agg backend).

Pure functions of arrays; nothing here touches a model (`keras_vae.visualize` does that).

Image grids have an exact, documented size. Each example is drawn as a tile of
``image_shape(data_shape)`` pixels enlarged by an integer ``scale`` (by default the smallest
that makes the tile's longer side at least `MIN_TILE` pixels), tiles are separated and framed by
`PAD` pixels of grey, so a grid of R rows and C columns of h x w examples is
``grid_size(R, C, (h, w), scale)`` = (C (w scale + PAD) + PAD, R (h scale + PAD) + PAD) pixels
(width, height). Pixel values are the data clipped to [0, 1] and mapped to 0..255.

Example:

>>> import numpy as np
>>> grid = image_grid(np.zeros((6, 28, 28)), columns=3)
>>> grid.shape, grid_size(2, 3, (28, 28), 1)
((62, 92), (92, 62))
>>> png_bytes(grid)[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAD = 2
MIN_TILE = 28
BACKGROUND = 128  # mid grey: visible between white-on-black digits and grey faces alike
DPI = 100
MAX_LEGEND_CLASSES = 20  # more labels: a colour bar instead of a legend


# ----------------------------------------------------------------------------------------------
# Image grids
# ----------------------------------------------------------------------------------------------


def image_shape(data_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape one example is drawn in: (H, W) grey or (H, W, 3) colour.

    HxW and HxWx1 are grey images, HxWx3 colour; other channel counts show channel 0. A
    vector of D values is drawn as h x (D / h) with h the largest divisor of D <= sqrt(D)
    (28 x 28 for binarized MNIST's 784).

    Example:
        >>> image_shape((784,)), image_shape((28, 20)), image_shape((32, 32, 3))
        ((28, 28), (28, 20), (32, 32, 3))
    """
    shape = tuple(int(d) for d in data_shape)
    if len(shape) == 2:
        return shape
    if len(shape) == 3:
        return shape if shape[2] == 3 else shape[:2]
    size = math.prod(shape)
    height = max(h for h in range(1, math.isqrt(size) + 1) if size % h == 0)
    return (height, size // height)


def to_images(x: np.ndarray, data_shape: Sequence[int]) -> np.ndarray:
    """A batch [N, *data_shape] as float images [N, *image_shape(data_shape)] in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    data_shape = tuple(int(d) for d in data_shape)
    if x.shape[1:] != data_shape:
        raise ValueError(
            f"Expected a batch of examples of shape {data_shape}. Received: x.shape={x.shape}"
        )
    shape = image_shape(data_shape)
    if len(data_shape) == 3 and data_shape[2] != 3:
        x = x[..., 0]
    return np.clip(x.reshape((len(x), *shape)), 0.0, 1.0)


def tile_scale(tile_shape: Sequence[int]) -> int:
    """The smallest integer enlargement making the tile's longer side >= `MIN_TILE` pixels."""
    return max(1, math.ceil(MIN_TILE / max(tile_shape[:2])))


def grid_size(rows: int, columns: int, tile_shape: Sequence[int], scale: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid of `rows` x `columns` tiles of `tile_shape` (h, w)."""
    height, width = tile_shape[:2]
    return (columns * (width * scale + PAD) + PAD, rows * (height * scale + PAD) + PAD)


def image_grid(
    images: np.ndarray, columns: int, scale: int | None = None, rows: int | None = None
) -> np.ndarray:
    """Tile images [N, h, w] or [N, h, w, 3] (floats in [0, 1]) row by row into one uint8 image.

    Args:
        images: the tiles, first to last filling rows left to right; an all-NaN tile leaves
            its cell empty (grey).
        columns: tiles per row (>= 1).
        scale: integer enlargement of each tile; None: `tile_scale`.
        rows: number of rows (default: just enough for all images); empty cells stay grey.

    Returns:
        uint8 pixels of shape (height, width) or (height, width, 3), sized by `grid_size`.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(
            "Expected images of shape [N, h, w] or [N, h, w, 3] with N >= 1. "
            f"Received: images.shape={images.shape}"
        )
    if columns < 1:
        raise ValueError(f"Expected columns >= 1. Received: columns={columns}")
    scale = tile_scale(images.shape[1:3]) if scale is None else int(scale)
    rows = math.ceil(len(images) / columns) if rows is None else rows
    if rows * columns < len(images):
        raise ValueError(f"{len(images)} images do not fit in {rows} rows x {columns} columns.")
    height, width = images.shape[1:3]
    grid_width, grid_height = grid_size(rows, columns, (height, width), scale)
    grid = np.full((grid_height, grid_width, *images.shape[3:]), BACKGROUND, dtype=np.uint8)
    for index, image in enumerate(images):
        if np.isnan(image).all():  # an empty cell
            continue
        tile = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        tile = tile.repeat(scale, axis=0).repeat(scale, axis=1)
        row, column = divmod(index, columns)
        top = PAD + row * (height * scale + PAD)
        left = PAD + column * (width * scale + PAD)
        grid[top : top + height * scale, left : left + width * scale] = tile
    return grid


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding of uint8 pixels (height, width) grey or (height, width, 3) RGB."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def reconstruction_grid(
    inputs: np.ndarray,
    reconstructions: np.ndarray,
    data_shape: Sequence[int],
    columns: int = 10,
) -> np.ndarray:
    """Inputs above their reconstructions: for each block of `columns` examples, one row of
    inputs then one row of reconstructions (2 ceil(N / columns) rows, `min(N, columns)` columns).

    Example:
        >>> x = np.random.rand(3, 8, 8)
        >>> reconstruction_grid(x, x, (8, 8)).shape   # 2 rows x 3 columns of 32 px tiles
        (70, 104)
    """
    a, b = to_images(inputs, data_shape), to_images(reconstructions, data_shape)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} inputs but {len(b)} reconstructions; expected as many.")
    columns = min(columns, len(a))
    blocks = math.ceil(len(a) / columns)
    tiles = np.full((2 * blocks * columns, *a.shape[1:]), np.nan, dtype=np.float32)
    for block in range(blocks):
        chunk = slice(block * columns, (block + 1) * columns)
        start = 2 * block * columns
        tiles[start : start + len(a[chunk])] = a[chunk]
        tiles[start + columns : start + columns + len(b[chunk])] = b[chunk]
    return image_grid(tiles, columns)


def sample_grid(
    samples: np.ndarray, data_shape: Sequence[int], columns: int | None = None
) -> np.ndarray:
    """Samples in a near-square grid: `columns` (default ceil(sqrt(N))) per row."""
    images = to_images(samples, data_shape)
    columns = columns or math.ceil(math.sqrt(len(images)))
    return image_grid(images, columns)


def gaussian_quantiles(n: int) -> np.ndarray:
    """The n standard-normal quantiles at probabilities (i + 0.5) / n, i = 0..n-1.

    Example:
        >>> gaussian_quantiles(3).round(3).tolist()
        [-0.967, 0.0, 0.967]
    """
    if n < 1:
        raise ValueError(f"Expected n >= 1. Received: n={n}")
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / n) for i in range(n)])


def manifold_latents(n: int) -> np.ndarray:
    """The latent grid of the paper's Figure 4: [n * n, 2] codes, row-major.

    Linearly spaced coordinates on the unit square mapped through the Gaussian inverse CDF,
    so the grid covers p(z) with equal probability mass per cell. z_1 grows left to right,
    z_2 from bottom to top (row 0 is the top row).
    """
    q = gaussian_quantiles(n)
    z1, z2 = np.meshgrid(q, q[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1).astype(np.float32)


def manifold_grid(decoded: np.ndarray, data_shape: Sequence[int], n: int) -> np.ndarray:
    """The decoded `manifold_latents(n)` as an n x n image grid."""
    return image_grid(to_images(decoded, data_shape), columns=n)


def traversal_latents(center: np.ndarray, dims: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Codes [len(dims) * len(values), latent_dim]: row r sets dimension dims[r] of `center` to
    each of `values` in turn, all other dimensions fixed.

    Example:
        >>> traversal_latents(np.zeros(3), [2], np.array([-1.0, 1.0])).tolist()
        [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]
    """
    center = np.asarray(center, dtype=np.float32)
    codes = np.repeat(center[None], len(dims) * len(values), axis=0)
    for row, dim in enumerate(dims):
        codes[row * len(values) : (row + 1) * len(values), dim] = values
    return codes


def traversal_grid(decoded: np.ndarray, data_shape: Sequence[int], num_values: int) -> np.ndarray:
    """The decoded `traversal_latents` as a grid with one latent dimension per row."""
    return image_grid(to_images(decoded, data_shape), columns=num_values)


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib, no pyplot state)
# ----------------------------------------------------------------------------------------------


def _figure(width: int, height: int) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def learning_curves(
    history: Mapping[str, Sequence[float]], width: int = 900, height: int = 400
) -> bytes:
    """Train and validation ELBO (left) and KL (right) per epoch, as a `width` x `height` PNG.

    Args:
        history: per-epoch logs as in `History.history`: "elbo", "kl" and, when validated,
            "val_elbo", "val_kl" (nats per example).

    Example:
        >>> png = learning_curves({"elbo": [-120.0, -100.0], "kl": [10.0, 12.0]})
        >>> png[:4]
        b'\\x89PNG'
    """
    missing = [key for key in ("elbo", "kl") if key not in history]
    if missing:
        raise ValueError(f"history lacks {missing}; expected per-epoch 'elbo' and 'kl' logs.")
    figure = _figure(width, height)
    axes = figure.subplots(1, 2)
    for ax, key, title in zip(axes, ("elbo", "kl"), ("ELBO (nats / example)", "KL(q || p)")):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], marker="o", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="s", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return _png(figure)


def latent_scatter(z_mean: np.ndarray, labels: np.ndarray | None = None, size: int = 600) -> bytes:
    """Posterior means [N, 2] as points coloured by label (a legend for up to
    `MAX_LEGEND_CLASSES` labels, else a colour bar), as a `size` x `size` PNG."""
    import matplotlib

    z_mean = np.asarray(z_mean)
    labels = None if labels is None else np.asarray(labels)
    if z_mean.ndim != 2 or z_mean.shape[1] != 2:
        raise ValueError(f"Expected z_mean of shape [N, 2]. Received: {z_mean.shape}")
    figure = _figure(size, size)
    ax = figure.subplots()
    classes = np.unique(labels) if labels is not None else np.array([])
    if labels is None:
        ax.scatter(z_mean[:, 0], z_mean[:, 1], s=2, alpha=0.5)
    elif len(classes) <= MAX_LEGEND_CLASSES:
        colours = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
        for index, label in enumerate(classes):
            chosen = labels == label
            # the two rows of [n, 2].T are x and y, never `s` (mypy cannot count them)
            ax.scatter(*z_mean[chosen].T, s=2, alpha=0.7, color=colours(index), label=str(label))  # type: ignore[misc]
        ax.legend(title="label", markerscale=4, loc="best", fontsize="small")
    else:
        points = ax.scatter(z_mean[:, 0], z_mean[:, 1], c=labels, cmap="viridis", s=2)
        figure.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z_1 (posterior mean)")
    ax.set_ylabel("z_2 (posterior mean)")
    ax.set_title("Test set in latent space")
    figure.tight_layout()
    return _png(figure)
