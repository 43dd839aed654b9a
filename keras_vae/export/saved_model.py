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
  parameters evaluated once at export (`keras_vae.latent_draws.baked_prior`) and
  stored as constants, so the decoder needs neither the encoder nor the pseudo-inputs.
  ``num_samples`` must be in [0, max_samples_per_request] (default 10,000, set with
  ``keras-vae export --max-samples-per-request``, recorded in export.json): a larger
  request fails with InvalidArgumentError naming the cap before anything is allocated, so
  no request can make the server allocate more than that many rows.

* The draws of ``sample`` and ``generate`` go through `keras_vae.latent_draws.draw_latent`
  with the sampler chosen at export (``keras-vae export --sampler prior|aggregate
  --temperature T``, recorded in export.json under ``sampler``): eps is scaled by T, and with
  ``--sampler aggregate`` z is drawn from the Gaussian mixture ``keras-vae fit-sampler`` fitted
  to the training codes (per class for a conditional model, full or diagonal covariances),
  baked in as constants, with ``component`` among the outputs. Their inputs do not change.
  `VAE.sample(n, seed, labels, sampler=..., temperature=...)` gives the same numbers (an
  integer seed: ``sample``'s; one seed per row: ``generate``'s).
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

Each signature is written once, taking ``label=None`` for an unconditional model
(`keras_vae.export.graph_ops.add_endpoint`); the checks against the Keras model are in
`keras_vae.export.saved_model_checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import keras
import tensorflow as tf

from keras_vae.export.graph_ops import (
    add_endpoint,
    checked_label,
    decoded,
    encoded,
    posterior_outputs,
    row_cap,
    track_encoder,
)
from keras_vae.latent_draws import (
    LatentMixture,
    draw_latent,
    prior_noise,
    prior_uniform,
    row_prior_noise,
    row_prior_uniform,
)
from keras_vae.limits import check_sampler
from keras_vae.signatures import (
    COMPONENT,
    DEFAULT_MAX_SAMPLES_PER_REQUEST,
    GENERATE,
    POSTERIOR_SAMPLE,
    SAMPLE,
    SEEDS,
    SERVING_DEFAULT,
    check_max_samples,
)


def _check_noise_batch(x: tf.Tensor, noise: tf.Tensor) -> tf.Operation:
    """The assertion that `posterior_sample` got one noise row per example of `x`."""
    return tf.debugging.assert_equal(
        tf.shape(noise)[0],
        tf.shape(x)[0],
        message="posterior_sample takes one noise row per example: noise must have as many "
        "rows as x (noise batch size, then x batch size)",
        name="check_noise_batch",
    )


def encoder_archive(model: keras.Model) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.encoder` (and an IAF's flow) with the encoder's
    ``serving_default`` (x[, label]) and ``posterior_sample`` (x[, label], noise): q(z|x)
    (q(z|x, y), each label checked by `checked_label`)."""
    x_shape = [None, *model.data_shape]
    noise_shape = [None, int(model.latent_dim)]
    num_classes = int(model.num_classes)

    def serving_default(x: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        if label is not None:
            label = checked_label(label, num_classes, tf.shape(x)[0], "x")
        return encoded(model, x, label)

    def posterior_sample(
        x: tf.Tensor, noise: tf.Tensor, label: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        x = tf.ensure_shape(x, x_shape, name="check_x_shape")
        noise = tf.ensure_shape(noise, noise_shape, name="check_noise_shape")
        same_batch = _check_noise_batch(x, noise)
        if label is None:
            with tf.control_dependencies([same_batch]):
                x = tf.identity(x)
        else:
            label = checked_label(label, num_classes, tf.shape(x)[0], "x", (same_batch,))
        return posterior_outputs(model, x, noise, label)

    archive = keras.export.ExportArchive()
    track_encoder(archive, model)
    x_spec = tf.TensorSpec(x_shape, tf.float32, name="x")
    noise_spec = tf.TensorSpec(noise_shape, tf.float32, name="noise")
    label_at = 1 if model.conditional else None
    add_endpoint(archive, SERVING_DEFAULT, serving_default, [x_spec], label_at)
    add_endpoint(archive, POSTERIOR_SAMPLE, posterior_sample, [x_spec, noise_spec], label_at)
    return archive


def generated_rows(
    model: keras.Model,
    draws: Draws,
    max_samples: int,
    seed: tf.Tensor,
    label: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """The decoder's ``generate`` (the rows of a conditional decoder's ``sample``): one row per
    int64 seed, eps `row_prior_noise` and u `row_prior_uniform` of seed i alone, z (and component)
    by `draws` (the sampler's mixture and temperature), x_mean decoded (with label i). At most
    `max_samples` rows, and for a conditional model one label per seed, each checked
    (`checked_label`); InvalidArgumentError otherwise."""
    seed = tf.ensure_shape(seed, [None], name="check_seed_shape")
    inputs = "seed" if label is None else "label and seed"
    cap = row_cap(tf.shape(seed)[0], max_samples, inputs)
    if label is None:
        with tf.control_dependencies([cap]):
            seed = tf.identity(seed)
    else:
        num_classes = int(model.num_classes)
        label = checked_label(label, num_classes, tf.shape(seed)[0], "seed", (cap,))
        with tf.control_dependencies([label]):
            seed = tf.identity(seed)
    noise = row_prior_noise(seed, int(model.latent_dim))
    uniform = None if draws.mixture is None else row_prior_uniform(seed)
    return drawn_outputs(model, draws, noise, uniform, label)


class Draws(NamedTuple):
    """What the decoder's ``sample`` and ``generate`` map their noise through: the sampler's
    mixture (None: N(0, I)) and the temperature (`keras_vae.latent_draws.draw_latent`)."""

    mixture: LatentMixture | None
    temperature: float = 1.0


def drawn_outputs(
    model: keras.Model,
    draws: Draws,
    noise: tf.Tensor,
    uniform: tf.Tensor | None,
    label: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """``x_mean``, ``z`` (and ``component`` for a mixture) of the draws' noise and uniforms."""
    z, component = draw_latent(draws.mixture, noise, uniform, label, draws.temperature)
    extra = {} if component is None else {COMPONENT: component}
    return {"x_mean": decoded(model, z, label), "z": z, **extra}


def decoder_archive(
    model: keras.Model,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> keras.export.ExportArchive:
    """An `ExportArchive` of `model.decoder` with ``serving_default`` (z[, label]),
    ``generate`` (seed[, label]) and ``sample``: (num_samples, seed), or for a conditional
    model (label, seed) giving ``generate``'s rows; at most `max_samples` rows per request,
    z drawn by `sampler` at `temperature` (`VAE.sample_latent`), its mixture baked in."""
    max_samples = check_max_samples(max_samples)
    latent_dim = int(model.latent_dim)
    z_shape = [None, latent_dim]
    num_classes = int(model.num_classes)
    draws = Draws(model.latent_mixture(sampler), check_sampler(sampler, temperature))

    def serving_default(z: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        z = tf.ensure_shape(z, z_shape, name="check_z_shape")
        if label is not None:
            label = checked_label(label, num_classes, tf.shape(z)[0], "z")
        return {"x_mean": decoded(model, z, label)}

    def generate(seed: tf.Tensor, label: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        return generated_rows(model, draws, max_samples, seed, label)

    def sample(num_samples: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        num_samples = tf.ensure_shape(num_samples, [], name="check_num_samples_shape")
        seed = tf.ensure_shape(seed, [], name="check_seed_shape")
        checks = [
            tf.debugging.assert_non_negative(
                num_samples, message="num_samples must be >= 0", name="check_num_samples"
            ),
            row_cap(num_samples, max_samples, "num_samples", rows=False),
        ]
        with tf.control_dependencies(checks):
            noise = prior_noise(num_samples, seed, latent_dim)
            uniform = None if draws.mixture is None else prior_uniform(num_samples, seed)
        return drawn_outputs(model, draws, noise, uniform)

    archive = keras.export.ExportArchive()
    archive.track(model.decoder)
    z_spec = tf.TensorSpec(z_shape, tf.float32, name="z")
    seed_spec = tf.TensorSpec([None], tf.int64, name=SEEDS)
    label_at = 1 if model.conditional else None
    add_endpoint(archive, SERVING_DEFAULT, serving_default, [z_spec], label_at)
    if model.conditional:  # one (label, seed) per row: generate's rows
        add_endpoint(archive, SAMPLE, generate, [seed_spec], label_at=0)
    else:
        count_specs = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ]
        add_endpoint(archive, SAMPLE, sample, count_specs)
    add_endpoint(archive, GENERATE, generate, [seed_spec], label_at)
    return archive


def write_encoder(model: keras.Model, path: str | Path) -> None:
    """Write the encoder SavedModel to `path` (a folder that must not exist yet)."""
    encoder_archive(model).write_out(str(path), verbose=False)


def write_decoder(
    model: keras.Model,
    path: str | Path,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> None:
    """Write the decoder SavedModel to `path` (a folder that must not exist yet), drawing z by
    `sampler` at `temperature` in ``sample`` and ``generate``."""
    archive = decoder_archive(model, max_samples, sampler, temperature)
    archive.write_out(str(path), verbose=False)
