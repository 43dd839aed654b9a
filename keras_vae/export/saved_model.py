"""Self-contained encoder and decoder SavedModels with the signatures TF Serving serves.

* encoder, ``serving_default``: ``x`` float32 [batch, *data_shape] -> ``z_mean``, ``z_stddev``
  float32 [batch, latent_dim].
* decoder, ``serving_default``: ``z`` float32 [batch, latent_dim] -> ``x_mean`` float32
  [batch, *data_shape] (Bernoulli probabilities or the Gaussian mean).
* decoder, ``sample``: ``num_samples`` int32 scalar, ``seed`` int32 scalar -> ``x_mean`` and
  ``z``, z ~ N(0, I) from `tf.random.stateless_normal` with seed [seed, 0]: the same seed gives
  the same samples, in any process, on any machine with the same TensorFlow. ``num_samples``
  must be in [0, max_samples_per_request] (default 10,000, set with ``keras-vae export
  --max-samples-per-request``, recorded in export.json): a larger request fails with
  InvalidArgumentError naming the cap before anything is allocated, so no request can make
  the server allocate more than that many rows.

The graphs hold only TensorFlow ops and the weights, so they load with ``tf.saved_model.load``
(or TF Serving, or ``saved_model_cli``) without keras_vae or custom objects. Inputs of the
wrong shape, rank or dtype fail with `tf.errors.InvalidArgumentError` (`tf.ensure_shape`
checks every input: TF Serving feeds tensors without comparing them with the signature).

    >>> write_decoder(vae, "export/decoder/1")                          # doctest: +SKIP
    >>> sample = tf.saved_model.load("export/decoder/1").signatures["sample"]  # doctest: +SKIP
    >>> sample(num_samples=tf.constant(4), seed=tf.constant(0))["z"].shape   # doctest: +SKIP
    TensorShape([4, 20])
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_vae.export.export_utils import (
    CHECK_BATCH,
    CHECK_SEED,
    FLOAT32_TOLERANCE,
    ExportError,
    check_close,
)
from keras_vae.signatures import (
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    SAMPLE,
    SERVING_DEFAULT,
    check_max_samples,
)

SAMPLE_SEED_STREAM = 0  # second word of the stateless seed [seed, 0]


def prior_noise(num_samples: tf.Tensor, seed: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """z ~ N(0, I), [num_samples, latent_dim], a pure function of the int32 `seed`.

    Example:
        >>> a = prior_noise(tf.constant(2), tf.constant(5), 3)
        >>> bool(tf.reduce_all(a == prior_noise(tf.constant(2), tf.constant(5), 3)))
        True
    """
    seed_pair = tf.stack([tf.cast(seed, tf.int32), tf.constant(SAMPLE_SEED_STREAM, tf.int32)])
    return tf.random.stateless_normal(
        tf.stack([num_samples, latent_dim]), seed=seed_pair, dtype=tf.float32
    )


def _decode(model: keras.Model, z: tf.Tensor) -> tf.Tensor:
    return tf.cast(model.decode(z, training=False), tf.float32)


def encoder_archive(model: keras.Model) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.encoder` with the encoder's ``serving_default``."""
    x_shape = [None, *model.data_shape]

    def serving_default(x):
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        z_mean, z_stddev = model.encode(x, training=False)
        return {
            "z_mean": tf.cast(z_mean, tf.float32),
            "z_stddev": tf.cast(z_stddev, tf.float32),
        }

    archive = keras.export.ExportArchive()
    archive.track(model.encoder)
    archive.add_endpoint(
        SERVING_DEFAULT,
        serving_default,
        input_signature=[tf.TensorSpec(x_shape, tf.float32, name="x")],
    )
    return archive


def decoder_archive(
    model: keras.Model, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.decoder` with ``serving_default`` (z) and ``sample``
    (at most `max_samples` rows per request)."""
    max_samples = check_max_samples(max_samples)
    latent_dim = int(model.latent_dim)
    z_shape = [None, latent_dim]

    def serving_default(z):
        z = tf.ensure_shape(z, z_shape, name="check_z_shape")
        return {"x_mean": _decode(model, z)}

    def sample(num_samples, seed):
        num_samples = tf.ensure_shape(num_samples, [], name="check_num_samples_shape")
        seed = tf.ensure_shape(seed, [], name="check_seed_shape")
        checks = [
            tf.debugging.assert_non_negative(
                num_samples, message="num_samples must be >= 0", name="check_num_samples"
            ),
            tf.debugging.assert_less_equal(
                num_samples,
                tf.constant(max_samples, tf.int32),
                message=f"num_samples must be <= {max_samples}, this model's "
                "max_samples_per_request (set by keras-vae export --max-samples-per-request); "
                "send several requests",
                name="check_max_samples_per_request",
            ),
        ]
        with tf.control_dependencies(checks):
            z = prior_noise(num_samples, seed, latent_dim)
        return {"x_mean": _decode(model, z), "z": z}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    archive.add_endpoint(
        SERVING_DEFAULT,
        serving_default,
        input_signature=[tf.TensorSpec(z_shape, tf.float32, name="z")],
    )
    archive.add_endpoint(
        SAMPLE,
        sample,
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ],
    )
    return archive


def write_encoder(model: keras.Model, path: str | Path) -> None:
    """Write the encoder SavedModel to `path` (a folder that must not exist yet)."""
    encoder_archive(model).write_out(str(path), verbose=False)


def write_decoder(
    model: keras.Model, path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> None:
    """Write the decoder SavedModel to `path` (a folder that must not exist yet)."""
    decoder_archive(model, max_samples).write_out(str(path), verbose=False)


def check_encoder(model: keras.Model, path: str | Path) -> dict[str, float]:
    """Reload the encoder SavedModel and compare it with Keras on random data in [0, 1].

    Returns:
        The max absolute error of each output; `ExportError` if above `FLOAT32_TOLERANCE`.
    """
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(size=(CHECK_BATCH, *model.data_shape)).astype(np.float32)
    signature = tf.saved_model.load(str(path)).signatures[SERVING_DEFAULT]
    got = signature(x=tf.constant(x))
    z_mean, z_stddev = model.encode(x)
    return {
        "z_mean": check_close("encoder z_mean", z_mean, got["z_mean"], FLOAT32_TOLERANCE),
        "z_stddev": check_close("encoder z_stddev", z_stddev, got["z_stddev"], FLOAT32_TOLERANCE),
    }


def check_decoder(
    model: keras.Model, path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> dict[str, float]:
    """Reload the decoder SavedModel and compare both signatures with Keras.

    ``serving_default`` on z ~ N(0, I); ``sample`` twice with one seed (identical z required)
    and its ``x_mean`` against the Keras decoder at the returned ``z``; ``sample`` of
    `max_samples` + 1 rows must be refused.
    """
    rng = np.random.default_rng(CHECK_SEED)
    z = rng.standard_normal((CHECK_BATCH, model.latent_dim)).astype(np.float32)
    signatures = tf.saved_model.load(str(path)).signatures
    got = signatures[SERVING_DEFAULT](z=tf.constant(z))
    errors = {
        "x_mean": check_close("decoder x_mean", _decode(model, z), got["x_mean"], FLOAT32_TOLERANCE)
    }
    n, seed = tf.constant(CHECK_BATCH, tf.int32), tf.constant(CHECK_SEED % 2**31, tf.int32)
    first = signatures[SAMPLE](num_samples=n, seed=seed)
    again = signatures[SAMPLE](num_samples=n, seed=seed)
    check_close("decoder sample z (same seed twice)", first["z"], again["z"], 0.0)
    errors["sample_x_mean"] = check_close(
        "decoder sample x_mean", _decode(model, first["z"]), first["x_mean"], FLOAT32_TOLERANCE
    )
    if max_samples < 2**31 - 1:
        try:
            signatures[SAMPLE](num_samples=tf.constant(max_samples + 1, tf.int32), seed=seed)
        except tf.errors.InvalidArgumentError:
            pass
        else:
            raise ExportError(
                f"The exported decoder's sample signature accepted {max_samples + 1} rows, "
                f"above its cap of {max_samples}; nothing was written."
            )
    return errors
