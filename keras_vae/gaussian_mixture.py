"""Gaussian mixtures fitted by EM in NumPy: the density the `aggregate` sampler draws codes from.

`fit_gaussian_mixture(x, K)` fits K Gaussians (full or diagonal covariances) to the rows of
`x` (the training images' posterior means, per class for a conditional model) and returns a
frozen `GaussianMixture` whose `log_density` and `sample` are plain NumPy (no TensorFlow, no
SciPy, no scikit-learn).

The fit, in float64:
- initialisation: greedy k-means++ seeding (Arthur and Vassilvitskii 2007; 2 + log K
  candidates per centre, as scikit-learn) with `np.random.default_rng(seed)`, then at most
  `LLOYD_ITERATIONS` Lloyd iterations (stopping early when no point changes centre), then
  one M-step from the hard assignments (responsibilities 1 for the nearest centre);
- E-step: responsibilities by log-sum-exp of the components' log-densities, computed through
  the Cholesky factors of the precisions; M-step: the closed-form weights, means and
  covariances, `regularization` (eps) added to every covariance's diagonal.
The objective those steps increase monotonically is the *regularized* mean log-likelihood
``mean_i log sum_k w_k N(x_i; mu_k, S_k) exp(-eps/2 tr(S_k^-1))``: each component's
log-density averaged over a jitter u ~ N(0, eps I) of the point (E_u log N(x + u) =
log N(x) - eps/2 tr(S^-1)), whose M-step covariance is exactly the weighted scatter + eps I.
`log_likelihood_history` records it (non-decreasing up to the float rounding of its mean,
~1e-16 of its size, once EM has converged); it lies at most ``eps/2 max_k tr(S_k^-1)`` below the
plain mean log-density (`log_density(x).mean()`), and above it never.

A component whose responsibility mass falls below `EMPTY_MASS` (fewer than 1e-12 of one
example, e.g. more components than distinct points) keeps its previous mean and covariance
(at initialisation: its k-means centre and the data's covariance) and gets the weight its
mass gives, which may be exactly 0: such a component is never sampled and adds nothing to the
density, and no NaN arises. Keeping the old parameters is a generalized EM step, so the
objective still never decreases.

Example:

>>> rng = np.random.default_rng(0)
>>> x = np.concatenate([rng.normal(-5.0, 1.0, (200, 2)), rng.normal(5.0, 1.0, (200, 2))])
>>> mixture = fit_gaussian_mixture(x, components=2, seed=0)
>>> np.round(np.sort(mixture.means[:, 0])).tolist(), mixture.converged
([-5.0, 5.0], True)
>>> draws, component = mixture.sample(3, seed=1)
>>> draws.shape, component.dtype.name
((3, 2), 'int64')
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np

from keras_vae.limits import FLOAT32_MAX, MAX_COUNT, MAX_SEED, check_at_least, check_choice

COVARIANCE_TYPES = ("full", "diag")
LLOYD_ITERATIONS = 10  # k-means refinements of the k-means++ centres before EM
EMPTY_MASS = 1e-12  # responsibility mass (in examples) under which a component is empty
_T = TypeVar("_T")  # `_plain_integer` returns what it is given, or an int


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """A fitted Gaussian mixture and the record of its fit.

    Attributes:
        weights: [K] float64, non-negative, summing to 1.
        means: [K, D] float64.
        covariances: [K, D, D] float64, symmetric positive definite (diagonal for "diag").
        covariance_type: "full" or "diag".
        log_likelihood_history: the regularized mean log-likelihood per example (see the
            module docstring) after initialisation, then after every EM iteration.
        iterations: the EM iterations run.
        converged: whether the last iteration gained less than the tolerance.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    log_likelihood_history: tuple[float, ...]
    iterations: int
    converged: bool

    def __post_init__(self) -> None:
        """Check the parameters; keep them as read-only float64 copies (lists are accepted)."""
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        for name in ("weights", "means", "covariances"):
            value = np.array(getattr(self, name), dtype=np.float64)
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        history = tuple(float(value) for value in self.log_likelihood_history)
        object.__setattr__(self, "log_likelihood_history", history)
        weights, means, covariances = self.weights, self.means, self.covariances
        k, d = np.shape(means) if np.ndim(means) == 2 else (0, 0)
        if k < 1 or np.shape(weights) != (k,) or np.shape(covariances) != (k, d, d):
            raise ValueError(
                "Received inconsistent mixture shapes, expected weights [K], means [K, D] and "
                f"covariances [K, D, D] with K, D >= 1. Received: weights {np.shape(weights)}, "
                f"means {np.shape(means)}, covariances {np.shape(covariances)}"
            )
        if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)):
            raise ValueError(
                "Received invalid mixture weights, expected finite non-negative numbers. "
                f"Received: weights={np.asarray(weights).tolist()}"
            )
        if abs(float(np.sum(weights)) - 1.0) > 1e-9:
            raise ValueError(
                "Received mixture weights that do not sum to 1, expected a sum within 1e-9 of "
                f"1. Received: sum(weights)={float(np.sum(weights))!r}"
            )
        bad = int(np.size(means) - np.isfinite(means).sum())
        bad += int(np.size(covariances) - np.isfinite(covariances).sum())
        if bad:
            raise ValueError(
                "Received non-finite mixture parameters, expected finite means and "
                f"covariances. Received: {bad} NaN or infinite values"
            )

    @property
    def components(self) -> int:
        """K, the number of components."""
        return int(self.weights.shape[0])

    @property
    def dimensions(self) -> int:
        """D, the dimension of a point."""
        return int(self.means.shape[1])

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log p(x) of each row of `x` [n, D] under the mixture, [n] float64."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dimensions:
            raise ValueError(
                f"Received an invalid value for `x`, expected an array [n, {self.dimensions}]. "
                f"Received: x with shape {x.shape}"
            )
        joint = weighted_log_densities(
            x, self.weights, self.means, precision_factors(self.covariances), 0.0
        )
        return log_sum_exp(joint)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` draws: (x [n, D] float64, component [n] int64), from `default_rng(seed)`.

        The components are drawn first (`rng.choice`), then standard normal noise for all rows,
        each row's noise multiplied by its component's covariance Cholesky factor.
        """
        check_at_least("n", _plain_integer(n), 0, maximum=MAX_COUNT)
        check_at_least("seed", _plain_integer(seed), 0, maximum=MAX_SEED)
        rng = np.random.default_rng(seed)
        component = rng.choice(self.components, size=n, p=self.weights).astype(np.int64)
        noise = rng.standard_normal((n, self.dimensions))
        factors = np.linalg.cholesky(self.covariances)
        x = np.empty_like(noise)
        for k in range(self.components):
            rows = component == k
            x[rows] = self.means[k] + noise[rows] @ factors[k].T
        return x, component


def fit_gaussian_mixture(
    x: np.ndarray,
    components: int,
    covariance_type: str = "full",
    seed: int = 0,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
    regularization: float = 1e-6,
) -> GaussianMixture:
    """Fit a `components`-Gaussian mixture to the rows of `x` by EM (see the module docstring).

    Args:
        x: [n, D] finite numbers.
        components: K, 1 <= K <= n.
        covariance_type: "full" or "diag". Defaults to "full".
        seed: seeds the k-means++ initialisation (0 <= seed < 2**32). Defaults to 0.
        max_iterations: EM iterations at most (>= 1). Defaults to 200.
        tolerance: stop when an iteration gains less than this in the mean (regularized)
            log-likelihood (> 0). Defaults to 1e-6.
        regularization: added to every covariance's diagonal (> 0). Defaults to 1e-6.

    Returns:
        The `GaussianMixture`; the same inputs and seed give bitwise the same one.
    """
    x = _checked_data(x)
    n = x.shape[0]
    components = _plain_integer(components)
    check_at_least("components", components, 1, maximum=n)
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    seed = _plain_integer(seed)
    check_at_least("seed", seed, 0, maximum=MAX_SEED)
    max_iterations = _plain_integer(max_iterations)
    check_at_least("max_iterations", max_iterations, 1, maximum=MAX_COUNT)
    check_at_least("tolerance", tolerance, 0, integer=False, exclusive=True)
    check_at_least("regularization", regularization, 0, integer=False, exclusive=True)

    rng = np.random.default_rng(seed)
    centres = refine_centres(x, seed_centres(x, components, rng))
    assignment = nearest_centres(x, centres)
    hard = np.zeros((n, components))
    hard[np.arange(n), assignment] = 1.0
    data_covariance = np.atleast_2d(np.cov(x, rowvar=False, bias=True))
    if covariance_type == "diag":
        data_covariance = np.diag(np.diag(data_covariance))
    data_covariance = data_covariance + regularization * np.eye(x.shape[1])
    fallback = np.broadcast_to(data_covariance, (components, *data_covariance.shape))
    weights, means, covariances = maximize(
        x, hard, centres, fallback, covariance_type, regularization
    )

    history: list[float] = []
    converged = False
    iterations = 0
    while True:
        joint = weighted_log_densities(
            x, weights, means, precision_factors(covariances), regularization
        )
        log_norm = log_sum_exp(joint)
        history.append(float(np.mean(log_norm)))
        if iterations >= 1 and history[-1] - history[-2] < tolerance:
            converged = True
            break
        if iterations == max_iterations:
            break
        responsibilities = np.exp(joint - log_norm[:, None])
        weights, means, covariances = maximize(
            x, responsibilities, means, covariances, covariance_type, regularization
        )
        iterations += 1
    return GaussianMixture(
        weights=weights,
        means=means,
        covariances=covariances,
        covariance_type=covariance_type,
        log_likelihood_history=tuple(history),
        iterations=iterations,
        converged=converged,
    )


def maximize(
    x: np.ndarray,
    responsibilities: np.ndarray,
    previous_means: np.ndarray,
    previous_covariances: np.ndarray,
    covariance_type: str,
    regularization: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The M-step: weights [K], means [K, D], covariances [K, D, D] from [n, K] responsibilities.

    A component with less than `EMPTY_MASS` responsibility keeps its previous mean and
    covariance.
    """
    mass = responsibilities.sum(axis=0)
    weights = mass / mass.sum()
    means = np.array(previous_means, dtype=np.float64)
    covariances = np.array(previous_covariances, dtype=np.float64)
    dimensions = x.shape[1]
    weighted = np.empty_like(x)  # reused: fresh [n, D] temporaries cost more than the maths
    for k in np.flatnonzero(mass >= EMPTY_MASS):
        r = responsibilities[:, k]
        means[k] = r @ x / mass[k]
        np.subtract(x, means[k], out=weighted)
        np.multiply(weighted, np.sqrt(r)[:, None], out=weighted)
        if covariance_type == "full":
            scatter = weighted.T @ weighted / mass[k]  # A.T @ A: one symmetric product (syrk)
            scatter = (scatter + scatter.T) / 2.0
        else:
            scatter = np.diag(np.square(weighted).sum(axis=0) / mass[k])
        covariances[k] = scatter + regularization * np.eye(dimensions)
    return weights, means, covariances


def precision_factors(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P [K, D, D], log det S [K]) with P = L^-1 for the Cholesky factor L of each S, so that
    S^-1 = P^T P and the Mahalanobis distance of d is |P d|^2."""
    factors = np.linalg.cholesky(covariances)
    identity = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    inverse = np.linalg.solve(factors, identity)
    log_det = 2.0 * np.log(np.diagonal(factors, axis1=-2, axis2=-1)).sum(axis=-1)
    return inverse, log_det


def weighted_log_densities(
    x: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precision: tuple[np.ndarray, np.ndarray],
    regularization: float,
) -> np.ndarray:
    """[n, K]: log w_k + log N(x_i; mu_k, S_k) - regularization/2 tr(S_k^-1).

    With `regularization` 0 these are the plain joint log-densities; with the fit's
    regularization they are the terms of the objective EM increases (module docstring).
    A weight 0 gives -inf.
    """
    inverse, log_det = precision
    n, d = x.shape
    out = np.empty((n, weights.shape[0]))
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    centred, whitened = np.empty_like(x), np.empty_like(x)
    for k in range(weights.shape[0]):
        np.subtract(x, means[k], out=centred)
        np.matmul(centred, inverse[k].T, out=whitened)
        out[:, k] = np.einsum("ij,ij->i", whitened, whitened)
    penalty = regularization / 2.0 * np.square(inverse).sum(axis=(1, 2))
    constant = log_weights - 0.5 * (d * np.log(2.0 * np.pi) + log_det) - penalty
    return constant - 0.5 * out


def log_sum_exp(a: np.ndarray) -> np.ndarray:
    """log sum_k exp(a[:, k]) for each row, stable (rows need one finite entry)."""
    peak = np.max(a, axis=1)
    return peak + np.log(np.sum(np.exp(a - peak[:, None]), axis=1))


def seed_centres(x: np.ndarray, components: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: the first centre a uniform row; for each next one, 2 + log K candidate
    rows drawn with probability proportional to their squared distance to the nearest centre
    so far (uniformly when every row is already a centre, as with duplicated points), keeping
    the candidate that most lowers the sum of those distances."""
    n = x.shape[0]
    trials = 2 + int(np.log(components))
    chosen = [int(rng.integers(n))]
    nearest = np.square(x - x[chosen[0]]).sum(axis=1)
    for _ in range(1, components):
        total = nearest.sum()
        p = nearest / total if total > 0 else None
        candidates = rng.choice(n, size=trials, p=p)
        distances = np.stack([np.square(x - x[c]).sum(axis=1) for c in candidates])
        reduced = np.minimum(nearest, distances)
        best = int(np.argmin(reduced.sum(axis=1)))
        chosen.append(int(candidates[best]))
        nearest = reduced[best]
    return x[chosen].copy()


def nearest_centres(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[n] int64: each row's nearest centre, by |c|^2 - 2 x.c (|x|^2 is the same for all c)."""
    distances = np.square(centres).sum(axis=1) - 2.0 * x @ centres.T
    return np.argmin(distances, axis=1).astype(np.int64)


def refine_centres(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """At most `LLOYD_ITERATIONS` Lloyd iterations; a centre left with no row stays put."""
    centres = centres.copy()
    assignment = nearest_centres(x, centres)
    for _ in range(LLOYD_ITERATIONS):
        counts = np.bincount(assignment, minlength=centres.shape[0])
        sums = np.zeros_like(centres)
        np.add.at(sums, assignment, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        updated = nearest_centres(x, centres)
        if np.array_equal(updated, assignment):
            break
        assignment = updated
    return centres


def _checked_data(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            "Received an invalid value for `x`, expected a 2-D array [examples, dimensions]. "
            f"Received: x with shape {x.shape}"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            "Received an empty `x`, expected at least one example and one dimension. "
            f"Received: x with shape {x.shape}"
        )
    bad = int(x.size - np.isfinite(x).sum())
    if bad:
        raise ValueError(
            f"Received non-finite values in `x`, expected finite numbers. Received: {bad} NaN "
            f"or infinite values of {x.size} in x with shape {x.shape}"
        )
    if np.abs(x).max() > FLOAT32_MAX:
        raise ValueError(
            f"Received values in `x` beyond the float32 maximum {FLOAT32_MAX}, expected smaller "
            f"magnitudes. Received: max(|x|)={float(np.abs(x).max())!r}"
        )
    return x


def _plain_integer(value: _T) -> _T | int:
    """NumPy integers as Python ints (the limits' checks take Python numbers); else unchanged."""
    return int(value) if isinstance(value, np.integer) else value
