"""EM for Gaussian mixtures (keras_vae.gaussian_mixture), checked against known truths and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from keras_vae.gaussian_mixture import GaussianMixture, fit_gaussian_mixture, maximize

# A well separated 3-component truth in 3-D: unequal weights, correlated unequal scales.
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])
TRUE_MEANS = np.array([[0.0, 0.0, 0.0], [8.0, -6.0, 2.0], [-7.0, 5.0, 9.0]])
TRUE_COVARIANCES = np.array(
    [
        [[1.0, 0.6, 0.2], [0.6, 2.0, -0.3], [0.2, -0.3, 0.5]],
        [[0.5, -0.2, 0.0], [-0.2, 0.8, 0.1], [0.0, 0.1, 1.5]],
        [[2.0, 0.0, 0.9], [0.0, 0.3, 0.0], [0.9, 0.0, 1.0]],
    ]
)
TRUE_DIAGONAL = np.array([np.diag(v) for v in ([1.0, 0.3, 2.0], [0.4, 1.5, 0.7], [2.5, 0.6, 0.2])])
N = 20_000


def draw_truth(covariances: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n points of the true mixture, drawn with NumPy alone (not the module's sampler)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, TRUE_WEIGHTS)
    parts = [
        rng.multivariate_normal(m, c, size=k) for m, c, k in zip(TRUE_MEANS, covariances, counts)
    ]
    return rng.permutation(np.concatenate(parts))


def standard_errors(covariances: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """SEs of the weights [K], means [K, D] and covariance entries [K, D, D] fitted from n points
    of the truth: sqrt(w(1-w)/n), sqrt(S_ii/(n w)), sqrt((S_ij^2 + S_ii S_jj)/(n w))."""
    w = TRUE_WEIGHTS
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    outer = variances[:, :, None] * variances[:, None, :]
    return (
        np.sqrt(w * (1 - w) / n),
        np.sqrt(variances / (n * w[:, None])),
        np.sqrt((covariances**2 + outer) / (n * w[:, None, None])),
    )


def z_scores(fitted: GaussianMixture, reference: tuple, errors: tuple) -> np.ndarray:
    """|fitted - reference| / SE of every weight, mean and upper-triangle covariance entry, the
    fitted components matched to the reference's by nearest mean."""
    weights, means, covariances = reference
    order = [int(np.argmin(np.square(fitted.means - m).sum(axis=1))) for m in means]
    assert sorted(order) == list(range(len(weights)))
    rows, cols = np.triu_indices(means.shape[1])
    covariance_z = np.abs(fitted.covariances[order] - covariances) / errors[2]
    return np.concatenate(
        [
            np.abs(fitted.weights[order] - weights) / errors[0],
            (np.abs(fitted.means[order] - means) / errors[1]).ravel(),
            covariance_z[:, rows, cols].ravel(),
        ]
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_recovers_a_known_mixture_within_standard_errors(covariance_type):
    covariances = TRUE_COVARIANCES if covariance_type == "full" else TRUE_DIAGONAL
    x = draw_truth(covariances, N, seed=1)
    fitted = fit_gaussian_mixture(x, 3, covariance_type, seed=0)
    assert fitted.converged and fitted.iterations < 200
    errors = standard_errors(covariances, N)
    truth = (TRUE_WEIGHTS, TRUE_MEANS, covariances)
    assert z_scores(fitted, truth, errors).max() < 4.0
    # The check is sharp: the truth moved by 10 SE in any one number fails it.
    moved = tuple(value + 10.0 * error for value, error in zip(truth, errors))
    assert z_scores(fitted, moved, errors).min() > 4.0
    if covariance_type == "diag":
        off_diagonal = fitted.covariances * (1 - np.eye(3))
        assert np.count_nonzero(off_diagonal) == 0


def banana(n: int, seed: int) -> np.ndarray:
    """Data that no mixture generated: a curved, heavy-tailed 4-D cloud."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, 4))
    x[:, 1] = x[:, 0] ** 2 + 0.1 * x[:, 1]
    return x


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("data", "components"), [("mixture", 3), ("mixture", 5), ("banana", 5)])
def test_log_likelihood_never_decreases(covariance_type, seed, data, components):
    x = draw_truth(TRUE_COVARIANCES, 2000, seed) if data == "mixture" else banana(2000, seed)
    regularization = 1e-3
    fitted = fit_gaussian_mixture(
        x,
        components,
        covariance_type,
        seed=seed,
        max_iterations=60,
        tolerance=1e-300,  # run until EM stalls at float rounding, or 60 iterations
        regularization=regularization,
    )
    history = np.array(fitted.log_likelihood_history)
    assert len(history) == fitted.iterations + 1
    # EM's objective only rises. Once converged, float rounding of the mean log-likelihood moves
    # it by ~2e-16 of its size either way (seen here); allowed: 1e-13 of it, no more.
    gains = np.diff(history)
    assert np.all(gains >= -1e-13 * np.abs(history[1:]))
    assert fitted.converged == (gains[-1] < 1e-300)
    if (data, components) != ("mixture", 3):  # not already at the optimum after initialisation
        assert history[-1] - history[0] > 1e-3
    # The recorded (regularized) objective lies below the plain mean log-density by at most
    # regularization/2 * max_k tr(S_k^-1).
    gap = fitted.log_density(x).mean() - history[-1]
    bound = regularization / 2 * np.trace(np.linalg.inv(fitted.covariances), axis1=1, axis2=2)
    assert -1e-12 <= gap <= bound.max() + 1e-12


def scipy_log_density(mixture: GaussianMixture, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        terms = [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
            for w, m, c in zip(mixture.weights, mixture.means, mixture.covariances)
        ]
    return special.logsumexp(np.stack(terms, axis=1), axis=1)


@pytest.mark.parametrize("weights", [TRUE_WEIGHTS, np.array([0.6, 0.4, 0.0])])
@pytest.mark.parametrize("covariances", [TRUE_COVARIANCES, TRUE_DIAGONAL])
def test_log_density_equals_scipy(weights, covariances):
    covariance_type = "diag" if np.count_nonzero(covariances * (1 - np.eye(3))) == 0 else "full"
    mixture = GaussianMixture(
        weights.tolist(), TRUE_MEANS.tolist(), covariances.tolist(), covariance_type, (), 0, False
    )
    x = np.random.default_rng(0).normal(0.0, 8.0, size=(500, 3))
    expected = scipy_log_density(mixture, x)
    np.testing.assert_allclose(mixture.log_density(x), expected, rtol=0, atol=1e-10)
    assert mixture.log_density(x).dtype == np.float64


def test_sample_matches_the_mixture_and_its_seed():
    mixture = GaussianMixture(TRUE_WEIGHTS, TRUE_MEANS, TRUE_COVARIANCES, "full", (), 0, False)
    x, component = mixture.sample(N, seed=5)
    assert x.shape == (N, 3) and x.dtype == np.float64 and component.dtype == np.int64
    frequency = np.bincount(component, minlength=3) / N
    se = np.sqrt(TRUE_WEIGHTS * (1 - TRUE_WEIGHTS) / N)
    assert np.all(np.abs(frequency - TRUE_WEIGHTS) < 4 * se)
    for k in range(3):
        rows = x[component == k]
        se_mean = np.sqrt(np.diag(TRUE_COVARIANCES[k]) / len(rows))
        assert np.all(np.abs(rows.mean(axis=0) - TRUE_MEANS[k]) < 4 * se_mean)
        variance = np.diag(TRUE_COVARIANCES[k])
        se_cov = np.sqrt((TRUE_COVARIANCES[k] ** 2 + np.outer(variance, variance)) / len(rows))
        assert np.all(np.abs(np.cov(rows, rowvar=False) - TRUE_COVARIANCES[k]) < 4 * se_cov)
    again, again_component = mixture.sample(N, seed=5)
    assert np.array_equal(again, x) and np.array_equal(again_component, component)
    other, _ = mixture.sample(N, seed=6)
    assert not np.array_equal(other, x)


def test_fit_is_deterministic_for_a_seed():
    x = banana(3000, seed=0)
    first = fit_gaussian_mixture(x, 4, seed=7)
    second = fit_gaussian_mixture(x.copy(), 4, seed=7)
    for name in ("weights", "means", "covariances"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert first.log_likelihood_history == second.log_likelihood_history
    assert (first.iterations, first.converged) == (second.iterations, second.converged)
    assert not first.means.flags.writeable  # frozen: the arrays too
    other = fit_gaussian_mixture(x, 4, seed=8)
    assert other.log_likelihood_history[0] != first.log_likelihood_history[0]


def test_components_without_points_stay_finite():
    # 3 distinct points, 10 copies each, 5 components: 2 components get no responsibility.
    points = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    x = np.repeat(points, 10, axis=0)
    regularization = 1e-6
    fitted = fit_gaussian_mixture(x, 5, seed=0, regularization=regularization)
    assert np.all(np.isfinite(fitted.means)) and np.all(np.isfinite(fitted.covariances))
    np.testing.assert_array_equal(np.sort(fitted.weights), [0, 0, 1 / 3, 1 / 3, 1 / 3])
    used = fitted.weights > 0
    np.testing.assert_allclose(np.sort(fitted.means[used], axis=0), np.sort(points, axis=0))
    np.testing.assert_allclose(
        fitted.covariances[used], np.broadcast_to(1e-6 * np.eye(2), (3, 2, 2))
    )
    # Each point: log(1/3) + log N(0; 0, eps I) - eps/2 tr((eps I)^-1).
    expected = np.log(1 / 3) - np.log(2 * np.pi * regularization) - 1.0
    np.testing.assert_allclose(fitted.log_likelihood_history[-1], expected, rtol=1e-12)
    assert np.all(np.diff(fitted.log_likelihood_history) >= 0)
    assert np.all(np.isfinite(fitted.log_density(np.array([[50.0, -50.0], [0.0, 0.0]]))))
    _, component = fitted.sample(1000, seed=0)
    assert np.all(used[component])
    # All points identical, K = n: one component takes them, the others stay finite at weight 0.
    same = fit_gaussian_mixture(np.ones((4, 3)), 4, "diag", seed=1)
    np.testing.assert_array_equal(np.sort(same.weights), [0, 0, 0, 1])
    assert np.all(np.isfinite(same.covariances)) and np.all(np.isfinite(same.means))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("lost_mass", [0.0, 1e-13])
def test_m_step_keeps_a_component_that_lost_its_responsibility(covariance_type, lost_mass):
    # What an EM iteration does when a component's responsibility vanishes mid-fit.
    x = banana(500, seed=3)
    responsibilities = np.random.default_rng(0).dirichlet([1.0, 1.0, 1.0], size=500)
    responsibilities[:, 1] = lost_mass / 500
    previous_means = np.arange(12.0).reshape(3, 4)
    previous_covariances = np.stack([np.eye(4) * (k + 1) for k in range(3)])
    weights, means, covariances = maximize(
        x, responsibilities, previous_means, previous_covariances, covariance_type, 1e-6
    )
    np.testing.assert_allclose(weights[1], lost_mass / responsibilities.sum(), rtol=1e-12, atol=0)
    assert np.array_equal(means[1], previous_means[1])
    assert np.array_equal(covariances[1], previous_covariances[1])
    for k in (0, 2):  # the others: the closed-form weighted mean and scatter + eps I
        r = responsibilities[:, k]
        mean = r @ x / r.sum()
        scatter = (x - mean).T @ ((x - mean) * r[:, None]) / r.sum()
        if covariance_type == "diag":
            scatter = np.diag(np.diag(scatter))
        np.testing.assert_allclose(means[k], mean, rtol=1e-12)
        np.testing.assert_allclose(
            covariances[k], scatter + 1e-6 * np.eye(4), rtol=1e-12, atol=1e-15
        )


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.zeros(5), {}, r"expected a 2-D array .* Received: x with shape \(5,\)"),
        (np.zeros((2, 3, 4)), {}, r"2-D array .* shape \(2, 3, 4\)"),
        (np.zeros((0, 3)), {}, r"empty `x`.* Received: x with shape \(0, 3\)"),
        (np.zeros((3, 0)), {}, r"empty `x`.* shape \(3, 0\)"),
        (
            np.array([[0.0, np.nan], [np.inf, 1.0], [2.0, 3.0]]),
            {},
            r"Received: 2 NaN or infinite values of 6",
        ),
        (np.array([[1e39, 0.0], [0.0, 0.0]]), {}, r"beyond the float32 maximum .*=1e\+39"),
        (
            np.zeros((4, 2)),
            {"components": 0},
            r"`components`, expected an integer in \[1, 4\]. Received: components=0",
        ),
        (np.zeros((4, 2)), {"components": 5}, r"in \[1, 4\]. Received: components=5"),
        (np.zeros((4, 2)), {"components": 2.5}, r"Received: components=2.5"),
        (
            np.zeros((4, 2)),
            {"covariance_type": "spherical"},
            r"Unknown covariance_type 'spherical'. Expected one of \['full', 'diag'\]",
        ),
        (
            np.zeros((4, 2)),
            {"tolerance": 0.0},
            r"`tolerance`, expected a finite positive number. Received: tolerance=0.0",
        ),
        (np.zeros((4, 2)), {"tolerance": -1e-3}, r"Received: tolerance=-0.001"),
        (np.zeros((4, 2)), {"tolerance": float("nan")}, r"Received: tolerance=nan"),
        (
            np.zeros((4, 2)),
            {"regularization": 0.0},
            r"`regularization`, expected a finite positive number",
        ),
        (np.zeros((4, 2)), {"regularization": float("inf")}, r"Received: regularization=inf"),
        (
            np.zeros((4, 2)),
            {"max_iterations": 0},
            r"`max_iterations`, expected an integer in \[1, .*Received: max_iterations=0",
        ),
        (
            np.zeros((4, 2)),
            {"seed": -1},
            r"`seed`, expected an integer in \[0, 4294967295\]. Received: seed=-1",
        ),
    ],
)
def test_invalid_arguments_are_one_line_errors(x, kwargs, message):
    arguments = {"components": 2, **kwargs}
    with pytest.raises(ValueError, match=message) as error:
        fit_gaussian_mixture(x, **arguments)
    assert "\n" not in str(error.value)


def test_numpy_integers_are_accepted():
    x = banana(200, seed=0)
    fitted = fit_gaussian_mixture(x, np.int64(2), seed=np.uint32(3), max_iterations=np.int32(5))
    reference = fit_gaussian_mixture(x, 2, seed=3, max_iterations=5)
    assert fitted.log_likelihood_history == reference.log_likelihood_history


@pytest.mark.parametrize(
    ("weights", "means", "covariances", "message"),
    [
        ([0.5, 0.5], np.zeros((2, 2)), np.zeros((3, 2, 2)), r"inconsistent mixture shapes"),
        ([0.5, 0.6], np.zeros((2, 2)), np.stack([np.eye(2)] * 2), r"sum\(weights\)=1.1"),
        ([1.5, -0.5], np.zeros((2, 2)), np.stack([np.eye(2)] * 2), r"non-negative"),
        ([0.5, 0.5], np.full((2, 2), np.nan), np.stack([np.eye(2)] * 2), r"Received: 4 NaN"),
    ],
)
def test_mixture_checks_its_parameters(weights, means, covariances, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(np.array(weights), means, covariances, "full", (), 0, False)
    with pytest.raises(ValueError, match="Unknown covariance_type 'tied'"):
        GaussianMixture(TRUE_WEIGHTS, TRUE_MEANS, TRUE_COVARIANCES, "tied", (), 0, False)


def test_log_density_and_sample_refuse_bad_arguments():
    mixture = GaussianMixture(TRUE_WEIGHTS, TRUE_MEANS, TRUE_COVARIANCES, "full", (), 0, False)
    with pytest.raises(
        ValueError, match=r"expected an array \[n, 3\]. Received: x with shape \(4, 2\)"
    ):
        mixture.log_density(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"Received: n=-1"):
        mixture.sample(-1, seed=0)
    with pytest.raises(ValueError, match=r"Received: seed=-2"):
        mixture.sample(3, seed=-2)
