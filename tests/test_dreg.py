"""DReG (`--gradient-estimator dreg`, Tucker et al. 2018): the encoder's IWAE gradient
through z alone, with the importance weights squared.

On one fixed model (3 epochs of IWAE training on the binarized digits: at initialisation the
weights are dominated by single samples and neither estimator is stable) and one batch, both
estimators are computed on the SAME noise draws: the
decoder's gradients must be identical, the encoder's means must agree within their Monte
Carlo error (both are unbiased for the same gradient), and at k = 50 DReG's variance must be
far lower (docs/families.md quotes the ratio this test prints with `pytest -s`).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import ModelConfig
from keras_vae.data import load_splits, to_unit_interval
from keras_vae.model import VAE
from keras_vae.replicas import batch_layout

K, DRAWS, LATENT = 50, 40, 4
# The IWAE model both estimators train (the 8x8 digits, k = K), but for gradient_estimator
IWAE_MODEL = dict(data_shape=(64,), latent_dim=LATENT, hidden_units=(32,), objective="iwae")


def models(images: np.ndarray) -> dict[str, VAE]:
    """The two estimators on one model trained for 3 epochs (same weights)."""
    built = {}
    for name in ("standard", "dreg"):
        vae = VAE(**IWAE_MODEL, num_samples=K, gradient_estimator=name, seed=0)
        vae.compile(optimizer="sgd", jit_compile=False)
        built[name] = vae
    built["standard"].fit(images, batch_size=64, epochs=3, verbose=0)
    built["dreg"].set_weights(built["standard"].get_weights())
    return built


def encoder_and_decoder_gradients(vae: VAE, x: tf.Tensor, noise: tf.Tensor):
    _, gradients = vae._gradients(x, None, noise, batch_layout(x))
    encoder = {id(v) for v in vae.encoder.trainable_variables}
    flat = [
        (id(v) in encoder, g.numpy().ravel()) for v, g in zip(vae.trainable_variables, gradients)
    ]
    return (
        np.concatenate([g for is_encoder, g in flat if is_encoder]),
        np.concatenate([g for is_encoder, g in flat if not is_encoder]),
    )


def test_dreg_lowers_the_encoder_gradient_variance_at_k_50():
    images = to_unit_interval(load_splits("digits")["train"].images).reshape(-1, 64)
    images = (images > 0.5).astype(np.float32)
    x = tf.constant(images[:16])
    built = models(images)
    draws = {"standard": [], "dreg": []}
    for seed in range(DRAWS):
        noise = tf.random.stateless_normal([16, K, LATENT], seed=[seed, 0])
        for name, vae in built.items():
            draws[name].append(encoder_and_decoder_gradients(vae, x, noise))
    for (_, decoder_standard), (_, decoder_dreg) in zip(draws["standard"], draws["dreg"]):
        np.testing.assert_allclose(decoder_dreg, decoder_standard, rtol=1e-5, atol=1e-7)
    encoder = {name: np.stack([e for e, _ in d]) for name, d in draws.items()}
    variance = {name: e.var(axis=0, ddof=1).sum() for name, e in encoder.items()}
    ratio = variance["dreg"] / variance["standard"]
    print(f"\nencoder gradient variance at k={K}: DReG / standard = {ratio:.3f}")
    assert ratio < 0.2  # 0.08 measured here
    # Unbiased for the same gradient: the mean difference is within its Monte Carlo error
    # (paired draws; 5 standard errors of the squared norm's scale).
    difference = encoder["dreg"] - encoder["standard"]
    error = np.sqrt(difference.var(axis=0, ddof=1).sum() / DRAWS)
    assert np.linalg.norm(difference.mean(axis=0)) < 5 * error


@pytest.mark.parametrize(
    "parts",
    [{"objective": "elbo"}, {"posterior": "iaf"}, {"prior": "vamp"}],
)
def test_dreg_needs_the_iwae_with_a_gaussian_posterior_alone_on_the_encoder(parts):
    values = {"objective": "iwae", "num_samples": 5, "gradient_estimator": "dreg", **parts}
    with pytest.raises(ValueError, match="--gradient-estimator dreg"):
        ModelConfig(**values)
