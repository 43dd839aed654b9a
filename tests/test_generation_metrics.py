"""The generation benchmark's metrics (benchmarks/generation_metrics.py) against independent
references, its classifier's cache, and its report section's verdicts on issue 26's targets."""

import json

import numpy as np
import pytest
import scipy.linalg
from helpers import load_benchmark_modules
from scipy.spatial.distance import cdist

metrics, report = load_benchmark_modules("generation_metrics", "report_generation")


def correlated(rng, n, d, shift=0.0):
    """n draws of a d-dimensional Gaussian with a random full covariance."""
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


# ----------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------


def test_frechet_distance_equals_scipy_sqrtm_of_the_product():
    rng = np.random.default_rng(0)
    for n_a, n_b, d in [(60, 45, 6), (200, 300, 12)]:
        a, b = correlated(rng, n_a, d), correlated(rng, n_b, d, shift=0.3)
        cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        assert np.abs(root.imag).max() < 1e-8
        expected = (
            np.sum((a.mean(0) - b.mean(0)) ** 2)
            + np.trace(cov_a)
            + np.trace(cov_b)
            - 2 * np.trace(root.real)
        )
        assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
        assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_with_equal_covariances_is_the_squared_mean_distance():
    a = correlated(np.random.default_rng(1), 100, 5)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift**2), abs=1e-9)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_one_distribution_is_its_finite_sample_bias():
    """Two samples of N(0, I_d), n each: E[FD] = 2d/n (the means) + d(d+1)/(2n) (the
    covariances, to first order), matched within 4 standard errors of 30 repetitions; a shift
    of 0.5 per dimension (FD about 2) is far above it."""
    rng = np.random.default_rng(2)
    d, n, repeats = 8, 2000, 30
    values = [
        metrics.frechet_distance(rng.normal(size=(n, d)), rng.normal(size=(n, d)))
        for _ in range(repeats)
    ]
    expected = 2 * d / n + d * (d + 1) / (2 * n)
    stderr = np.std(values, ddof=1) / np.sqrt(repeats)
    assert abs(np.mean(values) - expected) < 4 * stderr
    assert stderr < 0.1 * expected  # the check above is a tight one
    shifted = metrics.frechet_distance(rng.normal(size=(n, d)), rng.normal(0.5, 1, (n, d)))
    assert shifted == pytest.approx(d * 0.25, rel=0.1) and shifted > 30 * max(values)


def test_frechet_distance_of_singular_covariances_needs_no_regularisation():
    """Fewer rows than features: the symmetric form stays real and matches the closed form
    for a shift (equal covariances) to the square roots of rounding-level eigenvalues (about
    1e-8 each for the 16 zero ones, times 2)."""
    a = np.random.default_rng(3).normal(size=(5, 20))
    assert metrics.frechet_distance(a, a + 0.1) == pytest.approx(20 * 0.01, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# Precision and recall
# ----------------------------------------------------------------------------------------------


def brute_force_precision_recall(real, fake, k):
    """Kynkäänniemi et al.'s definition with SciPy's full distance matrices."""

    def covered(queries, centres):
        own = cdist(centres, centres)
        radii = np.sort(own, axis=1)[:, k]  # column 0 is the centre itself
        return float(np.mean((cdist(queries, centres) <= radii[None, :]).any(axis=1)))

    return covered(fake, real), covered(real, fake)


def test_precision_recall_equal_scipy_brute_force_at_every_chunk_size():
    rng = np.random.default_rng(4)
    real, fake = correlated(rng, 300, 6), correlated(rng, 250, 6, shift=0.8)
    for k in (1, 3, 5):
        expected = brute_force_precision_recall(real, fake, k)
        assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # not a trivial case
        for chunk_size in (1, 7, 100, 10_000):
            assert metrics.precision_recall(real, fake, k, chunk_size) == pytest.approx(
                expected, abs=1e-12
            )


def test_identical_sets_give_one_and_far_apart_sets_give_zero():
    real = correlated(np.random.default_rng(5), 400, 10)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_samples_covering_half_the_modes_have_half_the_recall_and_full_precision():
    """Four clusters of real samples 50 apart in 2-D; fake samples from two of them: precision
    about 1, recall about 0.5 (at most 0.5: the other clusters are out of every fake ball;
    less the covered clusters' tails). In 2-D k-NN balls cover a sample's own distribution
    almost entirely (in high dimension they do not, so both would fall below 1 and 0.5)."""
    rng = np.random.default_rng(6)
    centres = 50.0 * np.eye(4, 2)
    centres[3] = [50.0, 50.0]
    real = np.concatenate([rng.normal(size=(1000, 2)) + c for c in centres])
    fake = np.concatenate([rng.normal(size=(2000, 2)) + c for c in centres[:2]])
    precision, recall = metrics.precision_recall(real, fake, k=3, chunk_size=300)
    assert precision >= 0.95
    assert 0.45 <= recall <= 0.5


@pytest.mark.parametrize(
    "real, fake, k, message",
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), 3, "same number of features. Received: 3 and 4"),
        (np.zeros((3, 2)), np.zeros((10, 2)), 3, "`real` needs at least 4 rows. Received: 3"),
        (np.zeros(10), np.zeros((10, 1)), 3, "2-D array .* Received: shape \\(10,\\)"),
        (np.full((10, 2), np.nan), np.zeros((10, 2)), 3, "finite. Received: 10 rows"),
        (np.zeros((10, 2)), np.zeros((10, 2)), 0, "`k` must be an integer >= 1. Received: k=0"),
    ],
)
def test_precision_recall_refuse_bad_input_in_one_line(real, fake, k, message):
    with pytest.raises(ValueError, match=message) as error:
        metrics.precision_recall(real, fake, k)
    assert "\n" not in str(error.value)


def test_frechet_distance_refuses_bad_input_in_one_line():
    with pytest.raises(ValueError, match="`features_a` needs at least 2 rows. Received: 1"):
        metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same number of features. Received: 3 and 2"):
        metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="`features_b` must be finite. Received: 1 rows"):
        metrics.frechet_distance(np.zeros((5, 3)), np.r_[np.zeros((4, 3)), [[np.inf, 0, 0]]])
    with pytest.raises(ValueError, match="`chunk_size` must be an integer >= 1. Received: 0"):
        metrics.precision_recall(np.zeros((5, 3)), np.zeros((5, 3)), 3, chunk_size=0)


# ----------------------------------------------------------------------------------------------
# The classifier's cache
# ----------------------------------------------------------------------------------------------


def test_classifier_is_cached_with_its_accuracy_and_a_stale_cache_is_not_reused(
    tmp_path, shared_data_dir
):
    """1 epoch on 500 images: trained, recorded, then read back; another seed or a changed
    file is not the cached classifier."""
    (classifier,) = load_benchmark_modules("generation_classifier")
    cache, mnist = tmp_path / "judge.keras", shared_data_dir / "mnist"
    model, info = classifier.load_or_train_classifier(cache, mnist, 1, seed=0, train_examples=500)
    record = json.loads(cache.with_suffix(".json").read_text())
    assert not info["reused"] and record["test_examples"] == 10_000
    assert record["test_accuracy"] > 0.3  # 500 images, 1 epoch: well above chance (0.1)
    assert len(record["per_class_test_accuracy"]) == 10
    again, reused = classifier.load_or_train_classifier(cache, mnist, 1, seed=0, train_examples=500)
    assert reused == {**record, "reused": True}
    images = np.random.default_rng(0).uniform(size=(7, 784)).astype(np.float32)
    np.testing.assert_array_equal(
        classifier.predict_labels(model, images), classifier.predict_labels(again, images)
    )
    assert classifier.features(again, images.reshape(7, 28, 28)).shape == (7, 128)
    assert classifier.load_cached(cache, 1, 1, 500) is None  # another seed
    cache.with_suffix(".json").write_text(json.dumps({**record, "sha256": "0" * 64}))
    assert classifier.load_cached(cache, 1, 0, 500) is None  # not the file it recorded
    with pytest.raises(ValueError, match=r"\[n, 28, 28, 1\]. Received: shape \(2, 27\)"):
        classifier.as_classifier_input(np.zeros((2, 27)))


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def generation_result(
    label_accuracy, frechet_prior, frechet_aggregate, epochs=10, cooler_accuracy=(1.0,) * 10
):
    """A hand-made generation.json: the two targets' models, classifier at 0.98 per class;
    `cooler_accuracy` the conditional model's at aggregate T=0.7."""
    real = [0.98] * 10

    def sampler(fd, accuracy=None):
        row = {"frechet_distance": fd, "precision": 0.7, "recall": 0.4}
        if accuracy is not None:
            row |= {"label_accuracy": accuracy, "mean_label_accuracy": float(np.mean(accuracy))}
        return row

    def model(what, rows):
        return {"what": what, "latent_dim": 20, "samplers": rows}

    return {
        "machine": {"cpu": "cpu", "cores": 2, "tensorflow": "2", "keras": "3"},
        "load_average_before": [1.0],
        "load_average_after": [1.5],
        "started": "now",
        "command": "python benchmarks/generation.py",
        "epochs": epochs,
        "samples": 10_000,
        "components": 10,
        "sample_seed": 0,
        "neighbours": 3,
        "features": "the classifier's 128 penultimate activations",
        "real": "the 10,000 MNIST test images",
        "classifier": {
            "architecture": "a conv net",
            "epochs": 5,
            "test_accuracy": 0.98,
            "per_class_test_accuracy": real,
        },
        "floor": {"what": "two halves", "frechet_distance": 0.5, "precision": 0.8, "recall": 0.8},
        "models": {
            "vae-z20": model(
                "VAE",
                {"prior T=1": sampler(frechet_prior), "aggregate": sampler(frechet_aggregate)},
            ),
            "cvae-z20": model(
                "conditional VAE",
                {
                    "prior T=1": sampler(9.0, [0.9] * 10),
                    "aggregate": sampler(4.0, label_accuracy),
                    "aggregate T=0.7": sampler(5.0, list(cooler_accuracy)),
                },
            ),
        },
        "targets": load_benchmark_modules("generation")[0].TARGETS,
    }


def target_rows(section):
    lines = section.splitlines()
    return [line for line in lines[lines.index("Issue 26's targets:") :] if line.startswith("| `")]


def test_report_judges_both_targets_met():
    section = report.generation(generation_result([0.98] * 9 + [0.99], 10.0, 7.0))
    labels, cooler, frechet = target_rows(section)
    assert labels.endswith("| at or above the classifier for all 10 digits | met |")
    assert cooler.startswith("| `cvae-z20`, aggregate T=0.7, 10 epochs")
    assert cooler.endswith("| at or above the classifier for all 10 digits | met |")
    assert frechet.endswith("| 7.00 vs 10.00: 30% lower | met |")
    row = next(
        line for line in section.splitlines() if line.startswith("| `cvae-z20` samples, agg")
    )
    assert row.endswith("| 0.980 | 0.990 | 0.981 |")
    floor = next(line for line in section.splitlines() if line.startswith("| **floor**"))
    assert "| 0.50 | 0.800 | 0.800 | 0.980 (classifier, real digits) |" in floor


def test_report_judges_both_targets_not_met_and_names_the_digits_below():
    accuracy = [0.99] * 10
    accuracy[3], accuracy[9] = 0.97, 0.5
    section = report.generation(generation_result(accuracy, 10.0, 7.2, cooler_accuracy=accuracy))
    labels, cooler, frechet = target_rows(section)
    assert labels.endswith("| below the classifier for digits 3, 9 | **not met** |")
    assert cooler.endswith("| below the classifier for digits 3, 9 | **not met** |")
    assert frechet.endswith("| 7.20 vs 10.00: 28% lower | **not met** |")


def test_report_does_not_judge_the_label_target_at_other_epochs():
    section = report.generation(generation_result([1.0] * 10, 10.0, 5.0, epochs=1))
    labels, cooler, _ = target_rows(section)
    assert labels.endswith("| measured at 1 epoch | not judged |")
    assert cooler.endswith("| measured at 1 epoch | not judged |")
