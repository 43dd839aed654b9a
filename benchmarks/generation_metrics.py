"""Generation-quality metrics on feature vectors, NumPy only: the Fréchet distance between two
Gaussians fitted to the features (FID's formula), and precision and recall of generated
samples against real ones from k-nearest-neighbour balls (Kynkäänniemi et al. 2019).

Every computation is in float64. Distances are computed in blocks of `chunk_size` rows, so
10,000 x 10,000 samples in 128 dimensions need a few blocks of 1,000 x 10,000 (80 MB each),
never the whole 10,000 x 10,000 matrix.

Example:

>>> rng = np.random.default_rng(0)
>>> real = rng.normal(size=(500, 4))
>>> round(frechet_distance(real, real + 1.0), 6)  # a shift by 1 in 4 dimensions: 4
4.0
>>> precision_recall(real, real)
(1.0, 1.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

DEFAULT_CHUNK_SIZE = 1000
NEGATIVE_EIGENVALUE_TOLERANCE = 1e-8  # relative to the largest eigenvalue: rounding, not data


def checked_features(name: str, features: npt.ArrayLike, min_rows: int) -> np.ndarray:
    """`features` as a finite float64 [n, d] array with n >= `min_rows`, or a one-line
    ValueError naming `name`.

    >>> checked_features("real", [[1, 2], [3, 4]], 2).dtype
    dtype('float64')
    """
    array = np.asarray(features, np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(
            f"`{name}` must be a 2-D array [examples, features]. Received: shape {array.shape}"
        )
    if array.shape[0] < min_rows:
        raise ValueError(
            f"`{name}` needs at least {min_rows} rows. Received: {array.shape[0]} rows"
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(f"`{name}` must be finite. Received: {bad} rows with NaN or inf")
    return array


def check_same_width(a: np.ndarray, b: np.ndarray, names: str) -> None:
    """A one-line ValueError unless the two arrays have as many features (columns)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names} must have the same number of features. Received: {a.shape[1]} and "
            f"{b.shape[1]}"
        )


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric PSD matrix, from its eigendecomposition (eigenvalues
    below zero by rounding set to 0; a clearly negative one is a ValueError).

    >>> symmetric_sqrt(np.diag([4.0, 9.0])).tolist()
    [[2.0, 0.0], [0.0, 3.0]]
    """
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    eigenvalues = clipped_eigenvalues(eigenvalues)
    return (vectors * np.sqrt(eigenvalues)) @ vectors.T


def clipped_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding's tiny negatives set to 0."""
    scale = max(float(np.abs(eigenvalues).max(initial=0.0)), np.finfo(np.float64).tiny)
    if eigenvalues.min(initial=0.0) < -NEGATIVE_EIGENVALUE_TOLERANCE * scale:
        raise ValueError(
            "a covariance product is not positive semi-definite beyond rounding. Received: "
            f"smallest eigenvalue {eigenvalues.min():.3g}, largest {eigenvalues.max():.3g}"
        )
    return np.clip(eigenvalues, 0.0, None)


def frechet_distance(features_a: npt.ArrayLike, features_b: npt.ArrayLike) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features:
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), sample covariances (ddof = 1).

    Tr((S_a S_b)^(1/2)) is computed in the symmetric form Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)):
    S_a S_b is similar to the symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2), so the trace is the
    sum of the square roots of that matrix's eigenvalues, from `numpy.linalg.eigh`. This needs
    no complex arithmetic and no regularisation when a covariance is singular (fewer rows than
    features), unlike `scipy.linalg.sqrtm` of the non-symmetric product.

    Args:
        features_a: [n_a, d], n_a >= 2, finite.
        features_b: [n_b, d], n_b >= 2, finite.

    Returns:
        The distance, >= 0 (up to rounding), in the features' squared units.

    Example:

    >>> a = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    >>> frechet_distance(a, a + 3.0)  # equal covariances: ||mu_a - mu_b||^2 = 9 + 9
    18.0
    """
    a = checked_features("features_a", features_a, 2)
    b = checked_features("features_b", features_b, 2)
    check_same_width(a, b, "`features_a` and `features_b`")
    mean_term = float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2))
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = symmetric_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(clipped_eigenvalues(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def squared_distances(rows: np.ndarray, others: np.ndarray, others_norms: np.ndarray) -> np.ndarray:
    """[len(rows), len(others)] squared Euclidean distances (>= 0), float64, built in place
    from ||x||^2 + ||y||^2 - 2 x.y."""
    block = rows @ others.T
    block *= -2.0
    block += np.einsum("ij,ij->i", rows, rows)[:, None]
    block += others_norms[None, :]
    np.maximum(block, 0.0, out=block)
    return block


def kth_neighbour_radii(features: np.ndarray, k: int, chunk_size: int) -> np.ndarray:
    """Each row's squared distance to its k-th nearest OTHER row (itself excluded)."""
    norms = np.einsum("ij,ij->i", features, features)
    radii = np.empty(len(features), np.float64)
    for start in range(0, len(features), chunk_size):
        block = squared_distances(features[start : start + chunk_size], features, norms)
        # the row itself is one of the smallest (distance 0): the k-th other is at index k
        radii[start : start + len(block)] = np.partition(block, k, axis=1)[:, k]
    return radii


def covered_fraction(
    queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk_size: int
) -> float:
    """The fraction of `queries` inside at least one ball (centre i, squared radius radii[i])."""
    norms = np.einsum("ij,ij->i", centres, centres)
    inside = 0
    for start in range(0, len(queries), chunk_size):
        block = squared_distances(queries[start : start + chunk_size], centres, norms)
        inside += int((block <= radii[None, :]).any(axis=1).sum())
    return inside / len(queries)


def precision_recall(
    real: npt.ArrayLike, fake: npt.ArrayLike, k: int = 3, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` samples against
    `real` ones, in feature space.

    Each real sample's ball has as radius the distance to its k-th nearest real neighbour
    (itself excluded); precision is the fraction of fake samples inside at least one real
    ball (on the boundary counts as inside). Recall is the same with the roles swapped: the
    fraction of real samples inside at least one fake sample's ball.

    Args:
        real: [n_real, d] features, n_real > k, finite.
        fake: [n_fake, d] features, n_fake > k, finite.
        k: the neighbour that sets a ball's radius, >= 1. Defaults to 3 (the paper's).
        chunk_size: rows of distances computed at once, >= 1. Defaults to 1,000.

    Returns:
        (precision, recall), each in [0, 1].

    Example:

    >>> real = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> precision_recall(real, real + 100.0, k=1)  # far apart: no overlap
    (0.0, 0.0)
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise ValueError(f"`chunk_size` must be an integer >= 1. Received: {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an integer >= 1. Received: {chunk_size}")
    real = checked_features("real", real, k + 1)
    fake = checked_features("fake", fake, k + 1)
    check_same_width(real, fake, "`real` and `fake`")
    precision = covered_fraction(fake, real, kth_neighbour_radii(real, k, chunk_size), chunk_size)
    recall = covered_fraction(real, fake, kth_neighbour_radii(fake, k, chunk_size), chunk_size)
    return precision, recall
