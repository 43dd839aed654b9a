"""`keras_vae.VAE`: its numbers against an independent NumPy computation, its Keras contract
(fit / evaluate / predict on any input rank and structure, jit, steps_per_execution, callbacks)
and its serialization.

NumPy references use only the encoder's and decoder's forward passes; the ELBO maths
(likelihoods, KL, averaging over samples and examples) is recomputed here from scratch.
Reparameterisation noise is injected with `{"x": x, "noise": eps}` so results are exact.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_config_round_trip, assert_save_load_round_trip

from keras_vae import VAE
from keras_vae.networks import MIN_POSTERIOR_STDDEV, PositiveScale

RTOL = 2e-5  # float32 sums of ~100 terms against float64


@pytest.fixture(autouse=True)
def seeded_weights():
    """Same initial weights in every run, so the few inequalities here are reproducible."""
    keras.utils.set_random_seed(1234)


def tiny_vae(data_shape=(8, 8), **kwargs) -> VAE:
    options = {"latent_dim": 2, "hidden_units": (16,), "seed": 0, **kwargs}
    vae = VAE(data_shape=data_shape, **options)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2))
    return vae


def uniform(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def normal(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def log_sigmoid(t):
    return -np.logaddexp(0.0, -t)


def numpy_elbo(vae: VAE, x: np.ndarray, noise: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example SGVB terms in float64, from the networks' outputs only.

    `noise` is [batch, L, latent_dim], as the VAE takes it.
    """
    x64 = x.astype(np.float64)
    z_mean, z_stddev = (np.asarray(t, np.float64) for t in vae.encoder(x))
    z = z_mean[:, None, :] + z_stddev[:, None, :] * noise  # [batch, L, latent]
    batch, num_samples = noise.shape[:2]
    outputs = vae.decoder(z.reshape(batch * num_samples, -1).astype(np.float32))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    location, *scale = (np.asarray(o, np.float64).reshape(batch, num_samples, -1) for o in outputs)
    target = x64.reshape(batch, 1, -1)
    if vae.likelihood == "bernoulli":
        log_px = target * log_sigmoid(location) + (1 - target) * log_sigmoid(-location)
    else:
        sigma = scale[0] if scale else vae.likelihood_scale
        log_px = (
            -0.5 * ((target - location) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi)
        )
    reconstruction = log_px.sum(-1).mean(1)
    if vae.estimator == "analytic_kl":
        kl = 0.5 * np.sum(z_mean**2 + z_stddev**2 - 1 - np.log(z_stddev**2), axis=-1)
    else:
        log_q = -0.5 * noise.astype(np.float64) ** 2 - np.log(z_stddev)[:, None, :]
        log_p = -0.5 * z**2
        kl = (log_q - log_p).sum(-1).mean(1)  # the 0.5 log 2 pi terms cancel
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


def evaluate(vae, x, **kwargs) -> dict[str, float]:
    return vae.evaluate(x, verbose=0, return_dict=True, **kwargs)


# ------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"likelihood": "poisson"}, r"likelihood.*\['bernoulli', 'gaussian'\].*'poisson'"),
        ({"estimator": "iwae"}, r"estimator.*\['auto', 'analytic_kl', 'monte_carlo', .*'iwae'"),
        ({"num_samples": 0}, r"`num_samples`, expected an integer in \[1, 10000\].*num_samples=0"),
        ({"beta": -1.0}, r"`beta`, expected a finite number >= 0.*beta=-1.0"),
        ({"latent_dim": 0}, r"`latent_dim`, expected an integer in \[1, 65536\].*latent_dim=0"),
        ({"data_shape": (0, 3)}, r"`data_shape`, expected one or more positive integers"),
        ({"data_shape": (16,), "architecture": "conv"}, r"HxW or HxWxC.*data_shape=\(16,\)"),
    ],
    ids=["likelihood", "estimator", "num_samples", "beta", "latent_dim", "data_shape", "conv"],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    options = {"data_shape": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        VAE(**options)


# ------------------------------------------------------------------------------ the numbers
@pytest.mark.parametrize(
    "options",
    [
        {"likelihood": "bernoulli"},
        {"likelihood": "bernoulli", "estimator": "monte_carlo", "num_samples": 3},
        {"likelihood": "gaussian", "likelihood_scale": 0.3, "num_samples": 2},
        {"likelihood": "gaussian", "likelihood_scale": "learned", "architecture": "conv"},
    ],
    ids=["bernoulli", "bernoulli-mc-L3", "gaussian-fixed-L2", "gaussian-learned-conv"],
)
def test_evaluate_reports_per_example_means_in_nats(options):
    """37 examples in batches of 16 (last batch 5): evaluate == the NumPy mean over examples."""
    vae = tiny_vae(**options)
    x = uniform((37, 8, 8))
    noise = normal((37, vae.num_samples, 2))
    expected = {k: v.mean() for k, v in numpy_elbo(vae, x, noise).items()}
    got = evaluate(vae, {"x": x, "noise": noise}, batch_size=16)
    for name in ("elbo", "reconstruction", "kl"):
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(got["loss"], -expected["elbo"], rtol=RTOL)


def test_fit_reports_the_elbo_of_the_weights_before_the_step():
    """One full-batch step: fit's metrics are the per-example means at the initial weights."""
    vae = tiny_vae()
    x, noise = uniform((24, 8, 8)), normal((24, 1, 2))
    expected = numpy_elbo(vae, x, noise)
    history = vae.fit({"x": x, "noise": noise}, batch_size=24, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["elbo"][0], expected["elbo"].mean(), rtol=RTOL)
    np.testing.assert_allclose(history["kl"][0], expected["kl"].mean(), rtol=RTOL)
    after = numpy_elbo(vae, x, noise)["elbo"].mean()
    assert after > expected["elbo"].mean()  # and the step went uphill


def test_fixed_scale_gaussian_loss_is_squared_error_plus_kl_plus_constant():
    """loss = sum (x - mean)^2 / (2 sigma^2) + KL + D (log sigma + log(2 pi) / 2), the
    constant documented for the squared-error loss of blog posts."""
    sigma, data_shape = 0.3, (4, 3)
    vae = tiny_vae(data_shape, likelihood="gaussian", likelihood_scale=sigma, num_samples=2)
    x, noise = uniform((10, *data_shape)), normal((10, 2, 2))
    z_mean, z_stddev = (np.asarray(t, np.float64) for t in vae.encode(x))
    z = z_mean[:, None] + z_stddev[:, None] * noise
    mean = np.asarray(vae.decode(z.reshape(20, 2).astype(np.float32)), np.float64)
    squared_error = ((x.reshape(10, 1, 12) - mean.reshape(10, 2, 12)) ** 2).sum(-1).mean(1)
    kl = 0.5 * np.sum(z_mean**2 + z_stddev**2 - 1 - np.log(z_stddev**2), axis=-1)
    constant = 12 * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    expected = np.mean(squared_error / (2 * sigma**2) + kl + constant)
    got = evaluate(vae, {"x": x, "noise": noise}, batch_size=10)
    np.testing.assert_allclose(got["loss"], expected, rtol=RTOL)


def test_beta_zero_makes_loss_the_negative_reconstruction():
    vae = tiny_vae(beta=0.0)
    got = evaluate(vae, {"x": uniform((20, 8, 8)), "noise": normal((20, 1, 2))})
    assert got["kl"] > 0.01
    np.testing.assert_allclose(got["loss"], -got["reconstruction"], rtol=1e-6)


def test_kl_warmup_ramps_the_kl_weight_linearly():
    """kl_weight = beta * min(1, (step + 1) / N), and each step's loss uses that weight."""
    beta, warmup = 0.5, 10
    vae = tiny_vae(beta=beta, kl_warmup_steps=warmup)
    batch = {"x": uniform((16, 8, 8)), "noise": normal((16, 1, 2))}
    for step in range(13):
        weight = beta * min(1.0, (step + 1) / warmup)
        np.testing.assert_allclose(float(vae.kl_weight()), weight, rtol=1e-6)
        logs = vae.train_on_batch(batch, return_dict=True)
        np.testing.assert_allclose(
            logs["loss"], -logs["reconstruction"] + weight * logs["kl"], rtol=1e-5
        )
        assert int(vae.optimizer.iterations) == step + 1
    assert float(vae.kl_weight()) == beta


# ------------------------------------------------------------------------------ Keras contract
@pytest.mark.parametrize(
    "architecture, data_shape",
    [("mlp", (16,)), ("mlp", (7, 5)), ("mlp", (6, 4, 3)), ("conv", (7, 5)), ("conv", (6, 4, 3))],
)
def test_fit_and_predict_on_any_input_rank(architecture, data_shape):
    hidden_units = (4, 8) if architecture == "conv" else (8,)
    vae = tiny_vae(data_shape, architecture=architecture, hidden_units=hidden_units)
    x = uniform((32, *data_shape))
    history = vae.fit(x, batch_size=16, epochs=2, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values())
    assert history["elbo"][1] < 0
    reconstruction = vae.predict(x, verbose=0)
    assert reconstruction.shape == x.shape
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1  # Bernoulli probabilities
    z_mean, z_stddev = vae.encode(x)
    assert z_mean.shape == z_stddev.shape == (32, 2)
    assert vae.decode(z_mean).shape == x.shape


def test_numpy_and_tf_data_with_and_without_labels_give_the_same_numbers():
    vae = tiny_vae()
    x, y, noise = uniform((37, 8, 8)), np.arange(37) % 10, normal((37, 1, 2))
    inputs = {"x": x, "noise": noise}
    expected = numpy_elbo(vae, x, noise)["elbo"].mean()
    results = {
        "numpy": evaluate(vae, inputs, batch_size=16),
        "numpy+labels": evaluate(vae, inputs, y=y, batch_size=16),
        "tf.data": evaluate(vae, tf.data.Dataset.from_tensor_slices(inputs).batch(16)),
        "tf.data+labels": evaluate(vae, tf.data.Dataset.from_tensor_slices((inputs, y)).batch(16)),
    }
    for name, result in results.items():
        np.testing.assert_allclose(result["elbo"], expected, rtol=RTOL, err_msg=name)

    # Training accepts the same four structures without injected noise.
    histories = [
        vae.fit(x, batch_size=16, verbose=0),
        vae.fit(x, y, batch_size=16, verbose=0),
        vae.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), verbose=0),
        vae.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), verbose=0),
    ]
    assert int(vae.optimizer.iterations) == 4 * 3
    assert all(np.isfinite(h.history["elbo"]).all() for h in histories)


def test_jit_compile_and_steps_per_execution():
    """XLA with 3 steps per execution over 10 batches (a remainder of 1): every step runs, and
    the compiled test step gives the eager numbers."""
    vae = VAE(data_shape=(8, 8), latent_dim=2, hidden_units=(16,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=3)
    x = uniform((160, 8, 8))
    history = vae.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert int(vae.optimizer.iterations) == 10
    assert all(np.isfinite(v).all() for v in history.values())
    noise = normal((40, 1, 2))
    expected = numpy_elbo(vae, x[:40], noise)["elbo"].mean()
    got = evaluate(vae, {"x": x[:40], "noise": noise}, batch_size=16)
    np.testing.assert_allclose(got["elbo"], expected, rtol=1e-4)


def test_call_is_deterministic_and_is_the_decoder_mean_at_the_posterior_mean():
    vae = tiny_vae()
    x = uniform((10, 8, 8))
    first, second = vae.predict(x, verbose=0), vae.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)
    z_mean, _ = vae.encoder(x)
    logits = np.asarray(vae.decoder(z_mean), np.float64)
    np.testing.assert_allclose(first, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(vae.reconstruct(x)), np.asarray(vae(x)))


def test_sample_is_reproducible_for_a_seed():
    vae = tiny_vae()
    a, b, c = vae.sample(6, seed=3), vae.sample(6, seed=3), vae.sample(6, seed=4)
    assert a.shape == (6, 8, 8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3
    unseeded = [np.asarray(vae.sample(6)) for _ in range(2)]  # the model's own seed stream
    assert np.abs(unseeded[0] - unseeded[1]).max() > 1e-3


def test_posterior_scale_is_positive_and_safe():
    low = PositiveScale()(keras.ops.array([-1e4, -50.0, 0.0, 50.0]))
    np.testing.assert_allclose(
        np.asarray(low),
        [MIN_POSTERIOR_STDDEV, MIN_POSTERIOR_STDDEV, math.log(2) + 1e-4, 50.0],
        rtol=1e-5,
    )
    vae = tiny_vae()
    extreme = np.concatenate([uniform((4, 8, 8)) * 1e4, -uniform((4, 8, 8)) * 1e4])
    _, z_stddev = vae.encode(extreme)
    assert np.all(np.asarray(z_stddev) >= MIN_POSTERIOR_STDDEV)
    with tf.GradientTape() as tape:
        elbo = tf.reduce_mean(vae.elbo_terms(tf.constant(extreme)).elbo)
    gradients = tape.gradient(elbo, vae.trainable_variables)
    assert np.isfinite(float(elbo))
    assert all(g is not None and np.isfinite(g).all() for g in gradients)


def test_val_elbo_drives_model_checkpoint_and_early_stopping(tmp_path):
    """Validation with injected noise makes each epoch's val_elbo a function of the weights, so
    the checkpoint kept for the best val_elbo must reproduce exactly that maximum."""
    vae = tiny_vae()
    x, noise = uniform((64, 8, 8)), normal((16, 1, 2))
    validation = ({"x": x[48:], "noise": noise},)
    path = tmp_path / "best.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(
        path, monitor="val_elbo", mode="max", save_best_only=True
    )
    history = vae.fit(
        x[:48],
        validation_data=validation,
        batch_size=16,
        epochs=4,
        callbacks=[checkpoint],
        verbose=0,
    ).history
    assert {"val_elbo", "val_kl", "val_reconstruction", "val_loss"} <= set(history)
    best = keras.saving.load_model(path)
    np.testing.assert_allclose(
        evaluate(best, validation[0])["elbo"], max(history["val_elbo"]), rtol=1e-6
    )
    # An unreachable min_delta: epoch 0 improves on -inf, epoch 1 cannot improve, training
    # stops; were val_elbo missing, EarlyStopping would only warn and all 5 epochs would run.
    stop = keras.callbacks.EarlyStopping(monitor="val_elbo", mode="max", min_delta=1e6, patience=1)
    history = vae.fit(
        x[:48], validation_data=validation, batch_size=16, epochs=5, callbacks=[stop], verbose=0
    ).history
    assert len(history["val_elbo"]) == 2


# ------------------------------------------------------------------------------ serialization
@pytest.mark.parametrize(
    "options, data_shape",
    [
        ({"architecture": "mlp", "likelihood": "bernoulli"}, (8, 8)),
        ({"architecture": "conv", "likelihood": "bernoulli", "hidden_units": (4, 8)}, (8, 8)),
        ({"architecture": "mlp", "likelihood": "gaussian", "likelihood_scale": 0.2}, (8, 8)),
        ({"architecture": "mlp", "likelihood": "gaussian", "likelihood_scale": "learned"}, (6,)),
        (
            {
                "architecture": "conv",
                "likelihood": "gaussian",
                "likelihood_scale": "learned",
                "hidden_units": (4,),
                "estimator": "monte_carlo",
                "num_samples": 2,
                "beta": 0.5,
            },
            (7, 5, 2),
        ),
    ],
    ids=[
        "mlp-bernoulli",
        "conv-bernoulli",
        "mlp-gaussian-fixed",
        "mlp-gaussian-learned",
        "conv-gaussian-learned-mc",
    ],
)
def test_save_load_and_config_round_trip(options, data_shape, tmp_path):
    vae = tiny_vae(data_shape, **options)
    x = uniform((20, *data_shape))
    vae.fit(x, batch_size=10, epochs=1, verbose=0)  # weights no longer at their initial values
    loaded = assert_save_load_round_trip(vae, x, tmp_path)
    noise = normal((20, vae.num_samples, 2))
    inputs = {"x": x, "noise": noise}
    assert evaluate(loaded, inputs) == evaluate(vae, inputs)
    assert int(loaded.optimizer.iterations) == 2  # compiled on load, optimizer state restored
    for name in ("data_shape", "estimator", "num_samples", "beta", "likelihood_scale"):
        got = getattr(loaded, name)
        assert got == getattr(vae, name), name
    assert_config_round_trip(vae, x)


def test_constructor_arguments_are_the_model_config_fields_with_their_defaults():
    """The config is declared once: `VAE`'s keyword arguments are `ModelConfig`'s fields."""
    import dataclasses
    import inspect

    from keras_vae.config import ModelConfig

    parameters = dict(inspect.signature(VAE).parameters)
    assert list(parameters)[0] == "data_shape" and list(parameters)[-2:] == ["seed", "kwargs"]
    fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    given = {name: p.default for name, p in list(parameters.items())[1:-2]}
    assert given == fields


def test_get_config_keys_and_attributes_read_through_the_model_config():
    vae = tiny_vae(prior="mixture", prior_components=3, num_classes=4)
    config = vae.get_config()
    model_keys = [key for key in config if key not in keras.Model().get_config()]
    assert model_keys == [
        "data_shape", "latent_dim", "architecture", "hidden_units", "activation", "likelihood",
        "likelihood_scale", "estimator", "num_samples", "beta", "kl_warmup_steps", "posterior",
        "flow_steps", "flow_hidden_units", "prior", "prior_components", "objective",
        "gradient_estimator", "conditional", "num_classes", "seed",
    ]  # fmt: skip
    assert config["hidden_units"] == [16] and config["flow_hidden_units"] == []
    assert (config["conditional"], config["num_classes"], config["prior"]) == (True, 4, "mixture")
    assert tiny_vae().get_config()["num_classes"] is None and tiny_vae().num_classes == 0
    assert (vae.latent_dim, vae.hidden_units, vae.estimator) == (2, (16,), "analytic_entropy")
    assert (vae.posterior_name, vae.prior_name, vae.num_classes, vae.conditional) == (
        "gaussian",
        "mixture",
        4,
        True,
    )
    assert vae.config.prior_components == vae.prior_components == 3
    with pytest.raises(AttributeError, match="no attribute 'latent_dimension'"):
        vae.latent_dimension  # noqa: B018
