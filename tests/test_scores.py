"""`VAE.score` (keras_vae.scores): deterministic per-example anomaly scores that equal the
package's own log-likelihood and test-step ELBO on the same noise, for every model family."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_vae import scores as sc
from keras_vae.model import VAE

FAMILIES = {
    "paper": {},
    "iaf": {"posterior": "iaf", "flow_steps": 2},
    "vamp": {"prior": "vamp", "prior_components": 5},
    "conditional_mixture": {"prior": "mixture", "prior_components": 3, "num_classes": 3},
    "iwae": {"objective": "iwae", "num_samples": 4},
}
BATCH = 9


def _model(family: str) -> VAE:
    keras_seed = 3
    return VAE(
        data_shape=(6,), latent_dim=2, hidden_units=(8,), seed=keras_seed, **FAMILIES[family]
    )


def _data(vae: VAE, seed: int = 0):
    x = np.random.default_rng(seed).random((BATCH, 6)).astype("float32")
    labels = np.arange(BATCH) % vae.num_classes if vae.conditional else None
    return x, labels


def _rows(labels, rows):
    return None if labels is None else labels[rows]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    vae = _model(request.param)
    return vae, *_data(vae)


def test_scores_of_a_row_do_not_depend_on_the_rest_of_the_batch(family):
    vae, x, labels = family
    together = vae.score(x, num_samples=30, labels=labels)
    order = np.random.default_rng(1).permutation(BATCH)
    shuffled = vae.score(x[order], num_samples=30, labels=_rows(labels, order))
    for name, a, b in zip(sc.SCORE_NAMES, together, shuffled):
        np.testing.assert_array_equal(np.asarray(a)[order], np.asarray(b), err_msg=name)
    for i in (0, BATCH - 1):
        alone = vae.score(x[i : i + 1], num_samples=30, labels=_rows(labels, slice(i, i + 1)))
        for name, a, b in zip(sc.SCORE_NAMES, together, alone):
            assert np.asarray(a)[i] == np.asarray(b)[0], (name, i)
    again = vae.score(x, num_samples=30, labels=labels)
    for a, b in zip(together, again):
        np.testing.assert_array_equal(a, b)


def test_log_likelihood_equals_vae_log_likelihood_on_the_same_noise(family):
    vae, x, labels = family
    k = 40
    noise = np.broadcast_to(sc.score_noise(vae.latent_dim, k).numpy(), (BATCH, k, vae.latent_dim))
    expected = vae.log_likelihood(x, num_samples=k, noise=noise, labels=labels)
    got = vae.score(x, num_samples=k, labels=labels).log_likelihood
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_elbo_equals_the_test_steps_per_example_elbo(family):
    """With K = the model's L samples and the same noise, the score's elbo, reconstruction and
    kl are the numbers `test_step` averages (for an iwae model: its Monte Carlo ELBO)."""
    vae, x, labels = family
    k = vae.num_samples
    noise = np.broadcast_to(sc.score_noise(vae.latent_dim, k).numpy(), (BATCH, k, vae.latent_dim))
    terms = vae.latent_terms(tf.constant(x), noise=tf.constant(noise), labels=labels)
    expected = vae.objective_values(terms)
    got = vae.score(x, num_samples=k, labels=labels)
    for name in ("elbo", "reconstruction", "kl"):
        np.testing.assert_allclose(getattr(got, name), expected[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.elbo, got.reconstruction - got.kl, rtol=1e-6, atol=1e-5)


def test_chunked_and_one_pass_scores_agree(family):
    vae, x, labels = family
    noise = sc.score_noise(vae.latent_dim, 23)
    label_tensor = None if labels is None else tf.constant(labels, tf.int32)
    one_pass = sc.score_graph(vae, x, noise, label_tensor)
    chunked = sc.score_graph(vae, x, noise, label_tensor, sample_chunk=5)  # last chunk masked
    for name, a, b in zip(sc.SCORE_NAMES, one_pass, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


def test_log_likelihood_bounds_the_elbo_and_rises_with_k():
    """IWAE_K >= the Monte Carlo ELBO on the same draws, and more samples tighten the bound
    on average (a monte_carlo-estimator model, whose elbo is the mean of the same log w)."""
    vae = VAE(data_shape=(6,), latent_dim=2, hidden_units=(8,), estimator="monte_carlo", seed=1)
    x = np.random.default_rng(4).random((200, 6)).astype("float32")
    few, many = vae.score(x, num_samples=2), vae.score(x, num_samples=200)
    assert np.all(np.asarray(few.log_likelihood) >= np.asarray(few.elbo) - 1e-5)
    gain = np.asarray(many.log_likelihood) - np.asarray(few.log_likelihood)
    assert gain.mean() > 3 * gain.std() / np.sqrt(gain.size), gain.mean()


def test_the_seed_fixes_the_noise():
    vae = _model("paper")
    x, _ = _data(vae)
    a = vae.score(x, num_samples=10, seed=1).log_likelihood
    b = vae.score(x, num_samples=10, seed=2).log_likelihood
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(
        sc.score_noise(2, 10, seed=1),
        tf.random.stateless_normal([10, 2], seed=[1, sc.SCORE_SEED_STREAM], alg="philox"),
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_gives_nan_scores_never_a_number(bad):
    """Every score of a row holding NaN or +-inf is NaN (the encoder's ReLU maps NaN to 0, so
    without the row check its KL would be a confident number); other rows are untouched."""
    vae = _model("paper")
    x, _ = _data(vae)
    clean = vae.score(x, num_samples=10)
    x[2, 3] = bad
    scores = vae.score(x, num_samples=10)
    for name, values, reference in zip(sc.SCORE_NAMES, scores, clean):
        values = np.asarray(values)
        assert np.isnan(values[2]), name
        np.testing.assert_array_equal(np.delete(values, 2), np.delete(reference, 2))


def test_memory_is_bounded_by_chunks():
    vae = VAE(data_shape=(784,), latent_dim=2, hidden_units=(8,))
    rows = sc.score_rows_per_chunk(vae, 100)
    samples = sc.score_sample_chunk(vae, 100)
    assert rows * samples * 784 * 4 <= sc.CHUNK_BYTES
    big = VAE(data_shape=(64, 64, 3), latent_dim=2, hidden_units=(8,))
    assert sc.score_sample_chunk(big, 100_000) * 64 * 64 * 3 * 4 <= sc.CHUNK_BYTES


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_samples": 0}, "[1, 100000]"),
        ({"num_samples": 100_001}, "[1, 100000]"),
        ({"num_samples": 2.5}, "[1, 100000]"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs, fragment):
    vae = _model("paper")
    x, _ = _data(vae)
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        vae.score(x, **kwargs)


def test_wrong_shapes_and_missing_labels_are_refused():
    vae = _model("paper")
    with pytest.raises(ValueError, match=r"Expected `x` of shape \[batch, 6\]"):
        vae.score(np.zeros((3, 5), "float32"))
    conditional = _model("conditional_mixture")
    x, _ = _data(conditional)
    with pytest.raises(ValueError, match="conditional"):
        conditional.score(x)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        conditional.score(x, labels=np.full(BATCH, 3))
