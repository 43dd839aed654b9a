"""Self-contained encoder and decoder SavedModels with the signatures TF Serving serves.

* encoder, ``serving_default``: ``x`` float32 [batch, *data_shape] -> ``z_mean``, ``z_stddev``
  float32 [batch, latent_dim] (the Gaussian q(z|x), or an IAF's Gaussian base q_0).
* encoder, ``posterior_sample``: ``x`` float32 [batch, *data_shape] and ``noise`` float32
  [batch, latent_dim] (standard normal draws; both batched on axis 0, so TF Serving's batcher
  can merge requests) -> ``z`` [batch, latent_dim], ``log_q`` [batch] (log q(z|x)), ``z_mean``,
  ``z_stddev``: z = z_mean + z_stddev * noise, then the flow for an IAF posterior. ``x`` and
  ``noise`` of different batch sizes fail with InvalidArgumentError.
* decoder, ``serving_default``: ``z`` float32 [batch, latent_dim] -> ``x_mean`` float32
  [batch, *data_shape] (Bernoulli probabilities or the Gaussian mean).
* decoder, ``sample``: ``num_samples`` int32 scalar, ``seed`` int32 scalar -> ``x_mean`` and
  ``z`` drawn from the model's own prior, a pure function of the seed: the same seed gives
  the same samples, in any process, on any machine with the same TensorFlow. eps =
  `tf.random.stateless_normal` with seed [seed, 0]; for p(z) = N(0, I), z = eps. For a
  mixture or vamp prior, also ``component`` int32 [num_samples]: u =
  `tf.random.stateless_uniform` [num_samples] with seed [seed, 1], and z, component =
  `keras_vae.parts.priors.sample_from_noise(params, eps, u)` with the prior's mixture
  parameters evaluated once at export (`baked_prior`) and stored as constants, so the
  decoder needs neither the encoder nor the pseudo-inputs. ``num_samples``
  must be in [0, max_samples_per_request] (default 10,000, set with ``keras-vae export
  --max-samples-per-request``, recorded in export.json): a larger request fails with
  InvalidArgumentError naming the cap before anything is allocated, so no request can make
  the server allocate more than that many rows.

* decoder, ``generate``: ``seed`` int64 [batch] -> ``x_mean``, ``z`` (and ``component``),
  batched on axis 0 so TF Serving's batcher can merge requests: row i from seed i alone
  (`row_prior_noise` and `row_prior_uniform`, as the conditional ``sample`` below), so the
  same seed gives the same row whatever else is in the batch. At most
  max_samples_per_request rows. (``sample`` stays as it was, for older clients.)

A conditional model (``model.conditional``, K = ``model.num_classes``) has the same two models
with a class label in every signature, ``label`` int32 [batch] with values in [0, K):

* encoder, ``serving_default``: ``x``, ``label`` -> ``z_mean``, ``z_stddev`` of q(z|x, y);
  ``posterior_sample``: ``x``, ``label``, ``noise`` -> ``z``, ``log_q``, ``z_mean``,
  ``z_stddev``.
* decoder, ``serving_default``: ``z``, ``label`` -> ``x_mean`` (E[x|z, y]).
* decoder, ``sample``: ``label`` int32 [batch] and ``seed`` int64 [batch], one per row ->
  ``x_mean``, ``z`` (and ``component``): row i's eps is `row_prior_noise` of seed i alone
  (``stateless_normal([latent_dim], seed=[seed_i, 0], alg="philox")``; u likewise with
  [seed_i, 1], `row_prior_uniform`), then z as above from the prior and x_mean decoded with
  label i. So the same (label, seed) gives the same image whatever else is in the batch,
  and both inputs are batched on axis 0 (TF Serving's batcher may merge requests). At most
  max_samples_per_request rows; label and seed of different lengths fail.
* decoder, ``generate``: ``seed`` int64 [batch] and ``label`` int32 [batch] -> the same
  rows as ``sample`` (`generated_rows`).

Every label is checked before the one-hot (`checked_label`): a value outside [0, K), or a
label batch of another size than the other inputs', fails with InvalidArgumentError (``labels
must be class indices in [0, K) (this model has num_classes=K)``), never a silent zero row.

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
    bad_labels,
    check_close,
    check_labels,
)
from keras_vae.parts.priors import MixtureParams, sample_from_noise
from keras_vae.signatures import (
    COMPONENT,
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    GENERATE,
    INT64_MAX,
    INT64_MIN,
    LABEL,
    POSTERIOR_SAMPLE,
    SAMPLE,
    SEEDS,
    SERVING_DEFAULT,
    check_max_samples,
    label_range,
)

SAMPLE_SEED_STREAM = 0  # second word of the stateless seed [seed, 0] of eps
COMPONENT_SEED_STREAM = 1  # second word of the stateless seed [seed, 1] of u (mixture priors)
# Rows of the decoder's `sample` checked against the Keras prior: enough uniforms to fall in
# every component's interval of a small mixture (a few would miss a wrong cdf).
CHECK_SAMPLE_ROWS = 256


def _seed_pair(seed: tf.Tensor, stream: int) -> tf.Tensor:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(stream, tf.int32)])


def prior_noise(num_samples: tf.Tensor, seed: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """eps ~ N(0, I), [num_samples, latent_dim], a pure function of the int32 `seed`.

    Example:
        >>> a = prior_noise(tf.constant(2), tf.constant(5), 3)
        >>> bool(tf.reduce_all(a == prior_noise(tf.constant(2), tf.constant(5), 3)))
        True
    """
    return tf.random.stateless_normal(
        tf.stack([num_samples, latent_dim]),
        seed=_seed_pair(seed, SAMPLE_SEED_STREAM),
        dtype=tf.float32,
    )


def prior_uniform(num_samples: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """u ~ U[0, 1), [num_samples] float32, a pure function of the int32 `seed` (seed [seed, 1]):
    what picks a mixture prior's component.

    Example:
        >>> u = prior_uniform(tf.constant(3), tf.constant(5))
        >>> u.shape, bool(tf.reduce_all((u >= 0) & (u < 1)))
        (TensorShape([3]), True)
    """
    return tf.random.stateless_uniform(
        tf.reshape(num_samples, [1]),
        seed=_seed_pair(seed, COMPONENT_SEED_STREAM),
        dtype=tf.float32,
    )


def baked_prior(model: keras.Model) -> MixtureParams | None:
    """The prior's mixture parameters (log_weights [K], loc and scale [K, latent_dim]) as
    float32 NumPy arrays, evaluated once (training=False) for an export to hold as constants;
    None for p(z) = N(0, I), whose draws need no parameters."""
    if model.prior_name == "normal":
        return None
    params = model.prior_parameters(training=False)
    return MixtureParams(*(np.asarray(t, np.float32) for t in params))


def sample_baked(
    params: MixtureParams, noise: tf.Tensor, uniform: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(z [n, D], component int32 [n]) of `baked_prior` constants: `sample_from_noise`."""
    constants = MixtureParams(*(tf.constant(a, tf.float32) for a in params))
    z, component = sample_from_noise(constants, noise, uniform)
    return z, tf.cast(component, tf.int32)


def row_prior_noise(seeds: tf.Tensor, latent_dim: int) -> tf.Tensor:
    """eps ~ N(0, I), [n, latent_dim], row i a pure function of the int64 ``seeds[i]`` alone:
    ``tf.random.stateless_normal([latent_dim], seed=[seeds[i], 0], alg="philox")`` (every
    int64 seed, negative ones included, is its own Philox key), so a row does not depend on
    the other rows of its batch.

    Example:
        >>> both = row_prior_noise(tf.constant([7, -1], tf.int64), 3)
        >>> alone = row_prior_noise(tf.constant([-1], tf.int64), 3)
        >>> bool(tf.reduce_all(both[1] == alone[0]))
        True
    """

    def row(seed: tf.Tensor) -> tf.Tensor:
        pair = tf.stack([seed, tf.constant(SAMPLE_SEED_STREAM, tf.int64)])
        return tf.random.stateless_normal([latent_dim], seed=pair, dtype=tf.float32, alg="philox")

    spec = tf.TensorSpec([latent_dim], tf.float32)
    return tf.map_fn(row, tf.cast(seeds, tf.int64), fn_output_signature=spec)


def row_prior_uniform(seeds: tf.Tensor) -> tf.Tensor:
    """u ~ U[0, 1), [n] float32, u[i] = ``tf.random.stateless_uniform([], seed=[seeds[i], 1],
    alg="philox")``: what picks each row's mixture component (`row_prior_noise`'s twin).

    Example:
        >>> u = row_prior_uniform(tf.constant([3, 4], tf.int64))
        >>> u.shape, bool(tf.reduce_all((u >= 0) & (u < 1)))
        (TensorShape([2]), True)
    """

    def row(seed: tf.Tensor) -> tf.Tensor:
        pair = tf.stack([seed, tf.constant(COMPONENT_SEED_STREAM, tf.int64)])
        return tf.random.stateless_uniform([], seed=pair, dtype=tf.float32, alg="philox")

    spec = tf.TensorSpec([], tf.float32)
    return tf.map_fn(row, tf.cast(seeds, tf.int64), fn_output_signature=spec)


def checked_label(
    label: tf.Tensor,
    num_classes: int,
    rows: tf.Tensor | None = None,
    rows_of: str = "",
    checks: tuple = (),
) -> tf.Tensor:
    """`label` itself once it is int32 [batch] (as many rows as `rows_of` when `rows` is
    given) with every value in [0, num_classes): otherwise the signature fails with
    InvalidArgumentError naming K (the one-hot of an out-of-range label would be a zero row,
    a silent wrong class). `checks` run first (e.g. a request's row cap)."""
    label = tf.ensure_shape(label, [None], name="check_label_shape")
    checks = list(checks)
    if rows is not None:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(label)[0],
                rows,
                message=f"one label per row: label must have as many rows as {rows_of} "
                f"(label batch size, then {rows_of} batch size)",
                name="check_label_batch",
            )
        )
    with tf.control_dependencies(checks):
        in_range = [
            tf.debugging.assert_non_negative(
                label, message=label_range(num_classes), name="check_label_non_negative"
            ),
            tf.debugging.assert_less(
                label,
                tf.constant(num_classes, tf.int32),
                message=label_range(num_classes),
                name="check_label_below_num_classes",
            ),
        ]
    with tf.control_dependencies(in_range):
        return tf.identity(label)


def _decode(model: keras.Model, z: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
    if labels is None:
        return tf.cast(model.decode(z, training=False), tf.float32)
    return tf.cast(model.decode(z, labels, training=False), tf.float32)


def _posterior_sample(
    model: keras.Model, x: tf.Tensor, noise: tf.Tensor, labels: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """z, log_q, z_mean and z_stddev of one draw per example, as the Keras posterior gives."""
    z_mean, z_stddev, context = model.encode_all(x, training=False, labels=labels)
    noise = tf.cast(noise, z_mean.dtype)[tf.newaxis]
    z, log_q = model.posterior_layer.sample(z_mean, z_stddev, noise, context)
    return {
        "z": tf.cast(z[0], tf.float32),
        "log_q": tf.cast(log_q[0], tf.float32),
        "z_mean": tf.cast(z_mean, tf.float32),
        "z_stddev": tf.cast(z_stddev, tf.float32),
    }


def encoder_archive(model: keras.Model) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.encoder` (and an IAF's flow) with the encoder's
    ``serving_default`` (x) and ``posterior_sample`` (x, noise)."""
    x_shape = [None, *model.data_shape]
    noise_shape = [None, int(model.latent_dim)]

    def serving_default(x):
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        z_mean, z_stddev = model.encode(x, training=False)
        return {
            "z_mean": tf.cast(z_mean, tf.float32),
            "z_stddev": tf.cast(z_stddev, tf.float32),
        }

    def posterior_sample(x, noise):
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        noise = tf.ensure_shape(noise, noise_shape, name="check_noise_shape")
        same_batch = _check_noise_batch(x, noise)
        with tf.control_dependencies([same_batch]):
            x = tf.identity(x)
        return _posterior_sample(model, x, noise)

    archive = keras.export.ExportArchive()
    archive.track(model.encoder)
    if model.posterior_layer.weights:  # the IAF's MADE steps
        archive.track(model.posterior_layer)
    if model.conditional:
        _add_conditional_encoder_endpoints(archive, model)
        return archive
    archive.add_endpoint(
        SERVING_DEFAULT,
        serving_default,
        input_signature=[tf.TensorSpec(x_shape, tf.float32, name="x")],
    )
    archive.add_endpoint(
        POSTERIOR_SAMPLE,
        posterior_sample,
        input_signature=[
            tf.TensorSpec(x_shape, tf.float32, name="x"),
            tf.TensorSpec(noise_shape, tf.float32, name="noise"),
        ],
    )
    return archive


def _check_noise_batch(x: tf.Tensor, noise: tf.Tensor) -> tf.Operation:
    """The assertion that `posterior_sample` got one noise row per example of `x`."""
    return tf.debugging.assert_equal(
        tf.shape(noise)[0],
        tf.shape(x)[0],
        message="posterior_sample takes one noise row per example: noise must have as many "
        "rows as x (noise batch size, then x batch size)",
        name="check_noise_batch",
    )


def _add_conditional_encoder_endpoints(
    archive: keras.export.ExportArchive, model: keras.Model
) -> None:
    """A conditional encoder's ``serving_default`` (x, label) and ``posterior_sample``
    (x, label, noise): q(z|x, y), each label checked (`checked_label`)."""
    x_shape = [None, *model.data_shape]
    noise_shape = [None, int(model.latent_dim)]
    num_classes = int(model.num_classes)

    def serving_default(x, label):
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        label = checked_label(label, num_classes, tf.shape(x)[0], "x")
        z_mean, z_stddev = model.encode(x, label, training=False)
        return {
            "z_mean": tf.cast(z_mean, tf.float32),
            "z_stddev": tf.cast(z_stddev, tf.float32),
        }

    def posterior_sample(x, label, noise):
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        noise = tf.ensure_shape(noise, noise_shape, name="check_noise_shape")
        same_batch = _check_noise_batch(x, noise)
        label = checked_label(label, num_classes, tf.shape(x)[0], "x", (same_batch,))
        return _posterior_sample(model, x, noise, label)

    x_spec = tf.TensorSpec(x_shape, tf.float32, name="x")
    label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)
    archive.add_endpoint(SERVING_DEFAULT, serving_default, input_signature=[x_spec, label_spec])
    archive.add_endpoint(
        POSTERIOR_SAMPLE,
        posterior_sample,
        input_signature=[x_spec, label_spec, tf.TensorSpec(noise_shape, tf.float32, name="noise")],
    )


def generated_rows(
    model: keras.Model,
    params: MixtureParams | None,
    max_samples: int,
    seed: tf.Tensor,
    label: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """The decoder's ``generate`` (the rows of a conditional decoder's ``sample``): one row per
    int64 seed, eps `row_prior_noise` and u `row_prior_uniform` of seed i alone, z (and component)
    from the prior (`baked_prior` `params`), x_mean decoded (with label i). At most
    `max_samples` rows, and for a conditional model one label per seed, each checked
    (`checked_label`); InvalidArgumentError otherwise."""
    seed = tf.ensure_shape(seed, [None], name="check_seed_shape")
    inputs = "seed" if label is None else "label and seed"
    cap = tf.debugging.assert_less_equal(
        tf.shape(seed)[0],
        tf.constant(max_samples, tf.int32),
        message=f"{inputs} must have <= {max_samples} rows, this model's "
        "max_samples_per_request (set by keras-vae export --max-samples-per-request); "
        "send several requests",
        name="check_max_samples_per_request",
    )
    if label is None:
        with tf.control_dependencies([cap]):
            seed = tf.identity(seed)
    else:
        num_classes = int(model.num_classes)
        label = checked_label(label, num_classes, tf.shape(seed)[0], "seed", (cap,))
        with tf.control_dependencies([label]):
            seed = tf.identity(seed)
    extra = {}
    z = row_prior_noise(seed, int(model.latent_dim))
    if params is not None:
        z, extra[COMPONENT] = sample_baked(params, z, row_prior_uniform(seed))
    return {"x_mean": _decode(model, z, label), "z": z, **extra}


def _add_conditional_decoder_endpoints(
    archive: keras.export.ExportArchive, model: keras.Model, max_samples: int
) -> None:
    """A conditional decoder's ``serving_default`` (z, label) and ``sample`` (label, seed: one
    int64 seed per row, `row_prior_noise`), at most `max_samples` rows per request."""
    latent_dim = int(model.latent_dim)
    z_shape = [None, latent_dim]
    num_classes = int(model.num_classes)
    params = baked_prior(model)

    def serving_default(z, label):
        z = tf.ensure_shape(z, z_shape, name="check_z_shape")
        label = checked_label(label, num_classes, tf.shape(z)[0], "z")
        return {"x_mean": _decode(model, z, label)}

    def sample(label, seed):
        return generated_rows(model, params, max_samples, seed, label)

    def generate(seed, label):
        return generated_rows(model, params, max_samples, seed, label)

    label_spec = tf.TensorSpec([None], tf.int32, name=LABEL)
    archive.add_endpoint(
        SERVING_DEFAULT,
        serving_default,
        input_signature=[tf.TensorSpec(z_shape, tf.float32, name="z"), label_spec],
    )
    seed_spec = tf.TensorSpec([None], tf.int64, name=SEEDS)
    archive.add_endpoint(SAMPLE, sample, input_signature=[label_spec, seed_spec])
    archive.add_endpoint(GENERATE, generate, input_signature=[seed_spec, label_spec])


def decoder_archive(
    model: keras.Model, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.decoder` with ``serving_default`` (z) and ``sample``
    (at most `max_samples` rows per request, from the model's prior: `baked_prior`)."""
    max_samples = check_max_samples(max_samples)
    latent_dim = int(model.latent_dim)
    z_shape = [None, latent_dim]
    params = baked_prior(model)

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
        extra = {}
        with tf.control_dependencies(checks):
            z = prior_noise(num_samples, seed, latent_dim)
            if params is not None:
                z, extra[COMPONENT] = sample_baked(params, z, prior_uniform(num_samples, seed))
        return {"x_mean": _decode(model, z), "z": z, **extra}

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    if model.conditional:
        _add_conditional_decoder_endpoints(archive, model, max_samples)
        return archive
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
    archive.add_endpoint(
        GENERATE,
        lambda seed: generated_rows(model, params, max_samples, seed),
        input_signature=[tf.TensorSpec([None], tf.int64, name=SEEDS)],
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


def scaled_tolerance(expected: np.ndarray) -> float:
    """`FLOAT32_TOLERANCE` relative to the largest |value| of `expected`, at least absolute:
    an IAF's z can be large (each step scales it by up to e^3, and float32 rounding with it),
    and log q sums latent_dim log-densities."""
    largest = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    return FLOAT32_TOLERANCE * max(1.0, largest)


def check_encoder(model: keras.Model, path: str | Path) -> dict[str, float]:
    """Reload the encoder SavedModel and compare both signatures with Keras on random data in
    [0, 1] (and standard normal noise); ``posterior_sample`` must refuse a noise batch of
    another size.

    Returns:
        The max absolute error of each output; `ExportError` if above `FLOAT32_TOLERANCE`
        (for ``posterior_sample``'s ``z`` and ``log_q``, `scaled_tolerance`).
    """
    if model.conditional:
        return check_conditional_encoder(model, path)
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(size=(CHECK_BATCH, *model.data_shape)).astype(np.float32)
    noise = rng.standard_normal((CHECK_BATCH, int(model.latent_dim))).astype(np.float32)
    signatures = tf.saved_model.load(str(path)).signatures
    got = signatures[SERVING_DEFAULT](x=tf.constant(x))
    z_mean, z_stddev = model.encode(x)
    errors = {
        "z_mean": check_close("encoder z_mean", z_mean, got["z_mean"], FLOAT32_TOLERANCE),
        "z_stddev": check_close("encoder z_stddev", z_stddev, got["z_stddev"], FLOAT32_TOLERANCE),
    }
    drawn = signatures[POSTERIOR_SAMPLE](x=tf.constant(x), noise=tf.constant(noise))
    z, log_q = model.posterior_sample(x, noise=noise)  # the Keras API, not the export's code
    expected = {"z": z, "log_q": log_q, "z_mean": z_mean, "z_stddev": z_stddev}
    expected = {name: np.asarray(value, np.float32) for name, value in expected.items()}
    for name, value in expected.items():
        scaled = name in ("z", "log_q")
        tolerance = scaled_tolerance(value) if scaled else FLOAT32_TOLERANCE
        errors[f"{POSTERIOR_SAMPLE}_{name}"] = check_close(
            f"encoder {POSTERIOR_SAMPLE} {name}", value, drawn[name], tolerance
        )
    try:
        signatures[POSTERIOR_SAMPLE](x=tf.constant(x), noise=tf.constant(noise[:-1]))
    except tf.errors.InvalidArgumentError:
        pass
    else:
        raise ExportError(
            f"The exported encoder's {POSTERIOR_SAMPLE} signature ran on {CHECK_BATCH} "
            f"examples with {CHECK_BATCH - 1} noise rows instead of refusing them; nothing was "
            "written."
        )
    return errors


def expected_sample(model: keras.Model, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """What the decoder's ``sample`` must return for (`num_samples`, `seed`), from the Keras
    model: z (and component) from its live prior parameters, x_mean decoded from z."""
    n, s = tf.constant(num_samples, tf.int32), tf.constant(seed, tf.int32)
    z = prior_noise(n, s, int(model.latent_dim))
    expected = {}
    if model.prior_name != "normal":
        z, component = sample_from_noise(
            model.prior_parameters(training=False), z, prior_uniform(n, s)
        )
        expected[COMPONENT] = np.asarray(component, np.int32)
    return {"z": np.asarray(z), "x_mean": np.asarray(_decode(model, z)), **expected}


def check_decoder(
    model: keras.Model, path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> dict[str, float]:
    """Reload the decoder SavedModel and compare both signatures with Keras.

    ``serving_default`` on z ~ N(0, I); ``sample`` of `CHECK_SAMPLE_ROWS` rows (at most
    `max_samples`) twice with one seed (identical outputs required), its ``z`` (and
    ``component``) against the Keras prior's draws from the same eps and u
    (`expected_sample`) and its ``x_mean`` against the Keras decoder at the returned ``z``;
    ``generate`` on `check_seeds` likewise, one row per seed (`check_row_seeded`); both
    signatures must refuse `max_samples` + 1 rows.
    """
    if model.conditional:
        return check_conditional_decoder(model, path, max_samples)
    rng = np.random.default_rng(CHECK_SEED)
    z = rng.standard_normal((CHECK_BATCH, model.latent_dim)).astype(np.float32)
    signatures = tf.saved_model.load(str(path)).signatures
    got = signatures[SERVING_DEFAULT](z=tf.constant(z))
    errors = {
        "x_mean": check_close("decoder x_mean", _decode(model, z), got["x_mean"], FLOAT32_TOLERANCE)
    }
    seed = CHECK_SEED % 2**31
    rows = min(CHECK_SAMPLE_ROWS, max_samples)
    n, seed_tensor = tf.constant(rows, tf.int32), tf.constant(seed, tf.int32)
    first = signatures[SAMPLE](num_samples=n, seed=seed_tensor)
    again = signatures[SAMPLE](num_samples=n, seed=seed_tensor)
    for name in first:
        check_close(f"decoder sample {name} (same seed twice)", first[name], again[name], 0.0)
    errors["sample_x_mean"] = check_close(
        "decoder sample x_mean", _decode(model, first["z"]), first["x_mean"], FLOAT32_TOLERANCE
    )
    expected = expected_sample(model, rows, seed)
    errors["sample_z"] = check_close(
        "decoder sample z", expected["z"], first["z"], FLOAT32_TOLERANCE
    )
    if sorted(first) != sorted(expected):
        raise ExportError(
            f"The exported decoder's sample signature outputs {sorted(first)}, but a "
            f"{model.prior_name} prior's must be {sorted(expected)}; nothing was written."
        )
    if COMPONENT in expected:
        check_close("decoder sample component", expected[COMPONENT], first[COMPONENT], 0.0)
    if max_samples < 2**31 - 1:
        try:
            signatures[SAMPLE](num_samples=tf.constant(max_samples + 1, tf.int32), seed=seed_tensor)
        except tf.errors.InvalidArgumentError:
            pass
        else:
            raise ExportError(
                f"The exported decoder's sample signature accepted {max_samples + 1} rows, "
                f"above its cap of {max_samples}; nothing was written."
            )
    errors.update(check_row_seeded(model, signatures[GENERATE], GENERATE, check_seeds(rows)))
    check_refuses_above_cap(signatures[GENERATE], GENERATE, max_samples)
    return errors


# ---------------------------------------------------------------------- conditional checks
def _refuses(signature, **inputs) -> bool:
    """Whether a signature fails with InvalidArgumentError on `inputs` (NumPy arrays)."""
    try:
        signature(**{name: tf.constant(value) for name, value in inputs.items()})
    except tf.errors.InvalidArgumentError:
        return True
    return False


def _check_refuses_bad_labels(
    model: keras.Model, part: str, signatures, inputs: dict[str, dict[str, np.ndarray]]
) -> None:
    """Every signature of `part` refuses each `bad_labels` value in one row, and a label
    batch of another size; `inputs` holds each signature's well-formed inputs."""
    num_classes = int(model.num_classes)
    for key, feed in inputs.items():
        labels = feed[LABEL]
        cases = {}
        for bad in bad_labels(num_classes):
            wrong = labels.copy()
            wrong[-1] = bad
            cases[f"label {bad}"] = {**feed, LABEL: wrong}
        others = {name: value for name, value in feed.items() if name != LABEL}
        if others:  # the label's row count must match the other inputs'
            cases["one label fewer than the rows"] = {**feed, LABEL: labels[:-1]}
        for case, wrong_feed in cases.items():
            if not _refuses(signatures[key], **wrong_feed):
                raise ExportError(
                    f"The exported {part}'s {key} signature ran on {case} instead of refusing "
                    f"it ({label_range(num_classes)}, one per row); nothing was written."
                )


def check_conditional_encoder(model: keras.Model, path: str | Path) -> dict[str, float]:
    """`check_encoder` for a conditional model: both signatures with labels spread over
    [0, K) (`check_labels`) against `model.encode(x, labels)` and
    `model.posterior_sample(x, noise, labels=labels)`; every out-of-range label
    (`bad_labels`), a label batch of another size and a noise batch of another size must be
    refused."""
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(size=(CHECK_BATCH, *model.data_shape)).astype(np.float32)
    noise = rng.standard_normal((CHECK_BATCH, int(model.latent_dim))).astype(np.float32)
    labels = check_labels(int(model.num_classes), CHECK_BATCH)
    signatures = tf.saved_model.load(str(path)).signatures
    got = signatures[SERVING_DEFAULT](x=tf.constant(x), label=tf.constant(labels))
    z_mean, z_stddev = model.encode(x, labels)
    errors = {
        "z_mean": check_close("encoder z_mean", z_mean, got["z_mean"], FLOAT32_TOLERANCE),
        "z_stddev": check_close("encoder z_stddev", z_stddev, got["z_stddev"], FLOAT32_TOLERANCE),
    }
    feed = {"x": x, LABEL: labels, "noise": noise}
    drawn = signatures[POSTERIOR_SAMPLE](**{k: tf.constant(v) for k, v in feed.items()})
    z, log_q = model.posterior_sample(x, noise=noise, labels=labels)
    expected = {"z": z, "log_q": log_q, "z_mean": z_mean, "z_stddev": z_stddev}
    for name, value in expected.items():
        value = np.asarray(value, np.float32)
        scaled = name in ("z", "log_q")
        tolerance = scaled_tolerance(value) if scaled else FLOAT32_TOLERANCE
        errors[f"{POSTERIOR_SAMPLE}_{name}"] = check_close(
            f"encoder {POSTERIOR_SAMPLE} {name}", value, drawn[name], tolerance
        )
    if not _refuses(signatures[POSTERIOR_SAMPLE], **{**feed, "noise": noise[:-1]}):
        raise ExportError(
            f"The exported encoder's {POSTERIOR_SAMPLE} signature ran on {CHECK_BATCH} "
            f"examples with {CHECK_BATCH - 1} noise rows instead of refusing them; nothing was "
            "written."
        )
    _check_refuses_bad_labels(
        model,
        "encoder",
        signatures,
        {SERVING_DEFAULT: {"x": x, LABEL: labels}, POSTERIOR_SAMPLE: feed},
    )
    return errors


def check_seeds(rows: int) -> np.ndarray:
    """int64 seeds [rows] a conditional ``sample`` is checked on: both int64 ends, -1, 0, 1,
    a repeat (two labels, one seed: the same z) and the rest drawn over the whole range.

    Example:
        >>> seeds = check_seeds(8)
        >>> seeds.dtype, int(seeds[0]) == -(2**63), int(seeds[1]) == 2**63 - 1
        (dtype('int64'), True, True)
    """
    ends = np.array([INT64_MIN, INT64_MAX, -1, 0, 1, 0], np.int64)
    drawn = np.random.default_rng(CHECK_SEED).integers(
        INT64_MIN, INT64_MAX, size=max(0, rows - len(ends)), dtype=np.int64, endpoint=True
    )
    return np.concatenate([ends, drawn])[:rows]


def expected_conditional_sample(
    model: keras.Model, labels: np.ndarray, seeds: np.ndarray
) -> dict[str, np.ndarray]:
    """What a conditional decoder's ``sample`` must return for (`labels`, `seeds`), from the
    Keras model, one row at a time (`tf.random.stateless_normal` / `stateless_uniform` of
    [seed, 0] / [seed, 1], no `map_fn`): z (and component) from its live prior
    parameters, x_mean decoded from z with the labels."""
    latent_dim = int(model.latent_dim)

    def pair(seed: int, stream: int) -> tf.Tensor:
        return tf.constant([seed, stream], tf.int64)

    z = np.stack(
        [
            tf.random.stateless_normal([latent_dim], seed=pair(s, 0), alg="philox").numpy()
            for s in seeds.tolist()
        ]
    ).reshape(len(seeds), latent_dim)
    expected = {}
    if model.prior_name != "normal":
        u = np.array(
            [
                tf.random.stateless_uniform([], seed=pair(s, 1), alg="philox").numpy()
                for s in seeds.tolist()
            ],
            np.float32,
        )
        z, component = sample_from_noise(model.prior_parameters(training=False), z, u)
        expected[COMPONENT] = np.asarray(component, np.int32)
    z = np.asarray(z, np.float32)
    return {"z": z, "x_mean": np.asarray(_decode(model, z, labels)), **expected}


def check_conditional_decoder(
    model: keras.Model, path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST
) -> dict[str, float]:
    """`check_decoder` for a conditional model: ``serving_default`` (z, label) against
    `model.decode(z, labels)`; ``sample`` on `CHECK_SAMPLE_ROWS` rows (at most
    `max_samples`) of labels spread over [0, K) and `check_seeds` twice (identical outputs),
    against `expected_conditional_sample`, and its first row alone and its rows reversed
    against the same rows of the batch (a row depends on its own label and seed only), and
    ``generate`` likewise (`check_row_seeded`); in both, `bad_labels`, label and seed
    batches of different sizes and `max_samples` + 1 rows must be refused."""
    num_classes = int(model.num_classes)
    rng = np.random.default_rng(CHECK_SEED)
    z = rng.standard_normal((CHECK_BATCH, model.latent_dim)).astype(np.float32)
    labels = check_labels(num_classes, CHECK_BATCH)
    signatures = tf.saved_model.load(str(path)).signatures
    got = signatures[SERVING_DEFAULT](z=tf.constant(z), label=tf.constant(labels))
    x_mean = _decode(model, z, labels)
    errors = {"x_mean": check_close("decoder x_mean", x_mean, got["x_mean"], FLOAT32_TOLERANCE)}
    rows = min(CHECK_SAMPLE_ROWS, max_samples)
    row_labels, seeds = check_labels(num_classes, rows), check_seeds(rows)
    for key in (SAMPLE, GENERATE):
        errors.update(check_row_seeded(model, signatures[key], key, seeds, row_labels))
    _check_refuses_bad_labels(
        model,
        "decoder",
        signatures,
        {
            SERVING_DEFAULT: {"z": z, LABEL: labels},
            SAMPLE: {LABEL: row_labels, SEEDS: seeds},
            GENERATE: {LABEL: row_labels, SEEDS: seeds},
        },
    )
    for key in (SAMPLE, GENERATE):
        if rows > 1 and not _refuses(signatures[key], label=row_labels[:1], seed=seeds):
            raise ExportError(
                f"The exported decoder's {key} signature ran on 1 label and {rows} seeds "
                "instead of refusing them (one seed per label); nothing was written."
            )
        check_refuses_above_cap(signatures[key], key, max_samples, conditional=True)
    return errors


def check_refuses_above_cap(
    signature, key: str, max_samples: int, conditional: bool = False
) -> None:
    """`ExportError` unless a per-row (seed, and label) signature refuses `max_samples` + 1
    rows (nothing to check when the cap is int32's largest)."""
    if max_samples >= 2**31 - 1:
        return
    seeds = np.zeros(max_samples + 1, np.int64)
    feed = {SEEDS: seeds, **({LABEL: seeds.astype(np.int32)} if conditional else {})}
    if not _refuses(signature, **feed):
        raise ExportError(
            f"The exported decoder's {key} signature accepted {max_samples + 1} rows, "
            f"above its cap of {max_samples}; nothing was written."
        )


def check_row_seeded(
    model: keras.Model,
    signature,
    key: str,
    seeds: np.ndarray,
    labels: np.ndarray | None = None,
) -> dict[str, float]:
    """Check a per-row signature (``generate``, a conditional ``sample``) on `seeds` (and
    `labels`): twice the same outputs, against `expected_conditional_sample` (z to
    `FLOAT32_TOLERANCE`, component exactly, x_mean likewise), and its first row alone and
    its rows reversed against the same rows of the batch (a row depends on its own seed and
    label only). Returns ``{key_z, key_x_mean}`` errors; `ExportError` on any difference."""
    feed_labels = {} if labels is None else {LABEL: labels}

    def run(order: slice) -> dict[str, np.ndarray]:
        feed = {SEEDS: tf.constant(seeds[order], tf.int64)}
        feed.update({name: tf.constant(v[order], tf.int32) for name, v in feed_labels.items()})
        return {name: value.numpy() for name, value in signature(**feed).items()}

    first, again = run(slice(None)), run(slice(None))
    what = "seeds" if labels is None else "labels and seeds"
    for name in first:
        check_close(f"decoder {key} {name} (same {what} twice)", first[name], again[name], 0.0)
    expected = expected_conditional_sample(model, labels, seeds)
    if sorted(first) != sorted(expected):
        raise ExportError(
            f"The exported decoder's {key} signature outputs {sorted(first)}, but a "
            f"{model.prior_name} prior's must be {sorted(expected)}; nothing was written."
        )
    errors = {
        f"{key}_z": check_close(f"decoder {key} z", expected["z"], first["z"], FLOAT32_TOLERANCE),
        f"{key}_x_mean": check_close(
            f"decoder {key} x_mean", expected["x_mean"], first["x_mean"], FLOAT32_TOLERANCE
        ),
    }
    if COMPONENT in expected:
        check_close(f"decoder {key} component", expected[COMPONENT], first[COMPONENT], 0.0)
    alone, reverse = run(slice(0, 1)), run(slice(None, None, -1))
    for name, value in first.items():
        check_close(
            f"decoder {key} {name} (row 0 alone)", value[:1], alone[name], FLOAT32_TOLERANCE
        )
        check_close(
            f"decoder {key} {name} (rows reversed)", value[::-1], reverse[name], FLOAT32_TOLERANCE
        )
    return errors
