"""The checks of the encoder and decoder SavedModels (`keras_vae.export.saved_model`) against
the Keras model, run on the written folder before an export is committed: every signature
reloaded with ``tf.saved_model.load`` and compared with the Keras API on random inputs (labels
spread over [0, K) for a conditional model), and every input it must refuse refused.

    >>> check_encoder(vae, "export/encoder/1")["z_mean"] <= 1e-5       # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    check_refuses_bad_labels,
    label_feed,
    refuses,
    scaled_tolerance,
)
from keras_vae.export.graph_ops import decoded
from keras_vae.latent_draws import draw_latent, prior_noise, prior_uniform
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
)

# Rows of the decoder's `sample` checked against the Keras prior: enough uniforms to fall in
# every component's interval of a small mixture (a few would miss a wrong cdf).
CHECK_SAMPLE_ROWS = 256


def _run(
    signature: Callable[..., dict[str, tf.Tensor]], **inputs: np.ndarray
) -> dict[str, tf.Tensor]:
    return signature(**{name: tf.constant(value) for name, value in inputs.items()})


def check_encoder(model: keras.Model, path: str | Path) -> dict[str, float]:
    """Reload the encoder SavedModel and compare both signatures with Keras on random data in
    [0, 1] and standard normal noise (and labels spread over [0, K), `check_labels`):
    ``serving_default`` against `model.encode`, ``posterior_sample`` against
    `model.posterior_sample`; a noise batch of another size (and every `bad_labels` value, a
    label batch of another size) must be refused.

    Returns:
        The max absolute error of each output; `ExportError` if above `FLOAT32_TOLERANCE`
        (for ``posterior_sample``'s ``z`` and ``log_q``, `scaled_tolerance`).
    """
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(size=(CHECK_BATCH, *model.data_shape)).astype(np.float32)
    noise = rng.standard_normal((CHECK_BATCH, int(model.latent_dim))).astype(np.float32)
    labels = label_feed(model, CHECK_BATCH)
    signatures = tf.saved_model.load(str(path)).signatures
    got = _run(signatures[SERVING_DEFAULT], x=x, **labels)
    z_mean, z_stddev = model.encode(x, labels.get(LABEL))
    errors = {
        "z_mean": check_close("encoder z_mean", z_mean, got["z_mean"], FLOAT32_TOLERANCE),
        "z_stddev": check_close("encoder z_stddev", z_stddev, got["z_stddev"], FLOAT32_TOLERANCE),
    }
    feed = {"x": x, **labels, "noise": noise}
    drawn = _run(signatures[POSTERIOR_SAMPLE], **feed)
    # the Keras API, not the export's code
    z, log_q = model.posterior_sample(x, noise=noise, labels=labels.get(LABEL))
    expected = {"z": z, "log_q": log_q, "z_mean": z_mean, "z_stddev": z_stddev}
    for name, value in expected.items():
        value = np.asarray(value, np.float32)
        scaled = name in ("z", "log_q")
        tolerance = scaled_tolerance(value) if scaled else FLOAT32_TOLERANCE
        errors[f"{POSTERIOR_SAMPLE}_{name}"] = check_close(
            f"encoder {POSTERIOR_SAMPLE} {name}", value, drawn[name], tolerance
        )
    if not refuses(signatures[POSTERIOR_SAMPLE], **{**feed, "noise": noise[:-1]}):
        raise ExportError(
            f"The exported encoder's {POSTERIOR_SAMPLE} signature ran on {CHECK_BATCH} "
            f"examples with {CHECK_BATCH - 1} noise rows instead of refusing them; nothing was "
            "written."
        )
    if model.conditional:
        check_refuses_bad_labels(
            int(model.num_classes),
            "encoder",
            signatures,
            {SERVING_DEFAULT: {"x": x, **labels}, POSTERIOR_SAMPLE: feed},
        )
    return errors


def expected_draws(
    model: keras.Model,
    noise: tf.Tensor,
    uniform: tf.Tensor,
    labels: tf.Tensor | None,
    sampler: str,
    temperature: float,
) -> dict[str, np.ndarray]:
    """z (and component) of `noise` and `uniform` through the Keras model's live mixture of
    `sampler` (`VAE.latent_mixture`) at `temperature`, and x_mean decoded from z."""
    z, component = draw_latent(model.latent_mixture(sampler), noise, uniform, labels, temperature)
    expected = {} if component is None else {COMPONENT: np.asarray(component, np.int32)}
    z = np.asarray(z, np.float32)
    return {"z": z, "x_mean": np.asarray(decoded(model, z, labels)), **expected}


def expected_sample(
    model: keras.Model,
    num_samples: int,
    seed: int,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """What the decoder's ``sample`` must return for (`num_samples`, `seed`), from the Keras
    model (`expected_draws` of eps [seed, 0] and u [seed, 1])."""
    n, s = tf.constant(num_samples, tf.int32), tf.constant(seed, tf.int32)
    noise, uniform = prior_noise(n, s, int(model.latent_dim)), prior_uniform(n, s)
    return expected_draws(model, noise, uniform, None, sampler, temperature)


def check_count_sample(
    model: keras.Model,
    signature: Callable[..., dict[str, tf.Tensor]],
    max_samples: int,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, float]:
    """Check an unconditional decoder's ``sample`` (num_samples, seed): `CHECK_SAMPLE_ROWS`
    rows (at most `max_samples`) twice with one seed (identical outputs required), its ``z``
    (and ``component``) against the Keras prior's draws from the same eps and u
    (`expected_sample`), its ``x_mean`` against the Keras decoder at the returned ``z``, and
    `max_samples` + 1 rows refused."""
    seed = CHECK_SEED % 2**31
    rows = min(CHECK_SAMPLE_ROWS, max_samples)
    n, seed_tensor = tf.constant(rows, tf.int32), tf.constant(seed, tf.int32)
    first = signature(num_samples=n, seed=seed_tensor)
    again = signature(num_samples=n, seed=seed_tensor)
    for name in first:
        check_close(f"decoder sample {name} (same seed twice)", first[name], again[name], 0.0)
    errors = {
        "sample_x_mean": check_close(
            "decoder sample x_mean", decoded(model, first["z"]), first["x_mean"], FLOAT32_TOLERANCE
        )
    }
    expected = expected_sample(model, rows, seed, sampler, temperature)
    errors["sample_z"] = check_close(
        "decoder sample z", expected["z"], first["z"], FLOAT32_TOLERANCE
    )
    _check_output_names(model, SAMPLE, first, expected)
    if COMPONENT in expected:
        check_close("decoder sample component", expected[COMPONENT], first[COMPONENT], 0.0)
    if max_samples < 2**31 - 1 and not refuses(
        signature, num_samples=np.int32(max_samples + 1), seed=np.int32(seed)
    ):
        raise ExportError(
            f"The exported decoder's sample signature accepted {max_samples + 1} rows, "
            f"above its cap of {max_samples}; nothing was written."
        )
    return errors


def check_decoder(
    model: keras.Model,
    path: str | Path,
    max_samples: int = DEFAULT_MAX_SAMPLES_PER_REQUEST,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, float]:
    """Reload the decoder SavedModel and compare its signatures with Keras, z drawn by
    `sampler` at `temperature` as the decoder was written.

    ``serving_default`` on z ~ N(0, I) (and labels spread over [0, K)) against the Keras
    decoder; an unconditional ``sample`` by `check_count_sample`; ``generate`` (and a
    conditional ``sample``) on `CHECK_SAMPLE_ROWS` rows (at most `max_samples`) of
    `check_seeds` (and labels) by `check_row_seeded`; each must refuse `max_samples` + 1
    rows, and a conditional one every `bad_labels` value and label and seed batches of
    different sizes.
    """
    rng = np.random.default_rng(CHECK_SEED)
    z = rng.standard_normal((CHECK_BATCH, model.latent_dim)).astype(np.float32)
    labels = label_feed(model, CHECK_BATCH)
    signatures = tf.saved_model.load(str(path)).signatures
    got = _run(signatures[SERVING_DEFAULT], z=z, **labels)
    x_mean = decoded(model, z, labels.get(LABEL))
    errors = {"x_mean": check_close("decoder x_mean", x_mean, got["x_mean"], FLOAT32_TOLERANCE)}
    rows = min(CHECK_SAMPLE_ROWS, max_samples)
    row_labels, seeds = label_feed(model, rows), check_seeds(rows)
    row_seeded = (SAMPLE, GENERATE) if model.conditional else (GENERATE,)
    if not model.conditional:
        errors.update(
            check_count_sample(model, signatures[SAMPLE], max_samples, sampler, temperature)
        )
    for key in row_seeded:
        errors.update(
            check_row_seeded(
                model, signatures[key], key, seeds, row_labels.get(LABEL), sampler, temperature
            )
        )
    if model.conditional:
        check_refuses_bad_labels(
            int(model.num_classes),
            "decoder",
            signatures,
            {
                SERVING_DEFAULT: {"z": z, **labels},
                **{key: {**row_labels, SEEDS: seeds} for key in row_seeded},
            },
        )
    for key in row_seeded:
        one_label = {**row_labels, LABEL: row_labels[LABEL][:1]} if model.conditional else {}
        if rows > 1 and one_label and not refuses(signatures[key], **one_label, seed=seeds):
            raise ExportError(
                f"The exported decoder's {key} signature ran on 1 label and {rows} seeds "
                "instead of refusing them (one seed per label); nothing was written."
            )
        check_refuses_above_cap(signatures[key], key, max_samples, model.conditional)
    return errors


def check_seeds(rows: int) -> np.ndarray:
    """int64 seeds [rows] a per-row ``generate`` or ``sample`` is checked on: both int64
    ends, -1, 0, 1, a repeat (two labels, one seed: the same z) and the rest drawn over the
    whole range.

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


def expected_row_sample(
    model: keras.Model,
    labels: np.ndarray | None,
    seeds: np.ndarray,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """What a per-row ``generate`` (a conditional ``sample``) must return for `seeds` (and
    `labels`), from the Keras model, one row at a time (`tf.random.stateless_normal` /
    `stateless_uniform` of [seed, 0] / [seed, 1], no `map_fn`): z (and component) from its
    live prior parameters, x_mean decoded from z (with the labels)."""
    latent_dim = int(model.latent_dim)

    def pair(seed: int, stream: int) -> tf.Tensor:
        return tf.constant([seed, stream], tf.int64)

    z = np.stack(
        [
            tf.random.stateless_normal([latent_dim], seed=pair(s, 0), alg="philox").numpy()
            for s in seeds.tolist()
        ]
    ).reshape(len(seeds), latent_dim)
    u = np.array(
        [
            tf.random.stateless_uniform([], seed=pair(s, 1), alg="philox").numpy()
            for s in seeds.tolist()
        ],
        np.float32,
    )
    z, u = tf.constant(z, tf.float32), tf.constant(u)
    row_labels = None if labels is None else tf.constant(labels, tf.int32)
    return expected_draws(model, z, u, row_labels, sampler, temperature)


def check_refuses_above_cap(
    signature: Callable[..., dict[str, tf.Tensor]],
    key: str,
    max_samples: int,
    conditional: bool = False,
) -> None:
    """`ExportError` unless a per-row (seed, and label) signature refuses `max_samples` + 1
    rows (nothing to check when the cap is int32's largest)."""
    if max_samples >= 2**31 - 1:
        return
    seeds = np.zeros(max_samples + 1, np.int64)
    feed: dict[str, np.ndarray] = {
        SEEDS: seeds,
        **({LABEL: seeds.astype(np.int32)} if conditional else {}),
    }
    if not refuses(signature, **feed):
        raise ExportError(
            f"The exported decoder's {key} signature accepted {max_samples + 1} rows, "
            f"above its cap of {max_samples}; nothing was written."
        )


def _check_output_names(
    model: keras.Model,
    key: str,
    got: Mapping[str, tf.Tensor | np.ndarray],
    expected: Mapping[str, np.ndarray],
) -> None:
    if sorted(got) != sorted(expected):
        raise ExportError(
            f"The exported decoder's {key} signature outputs {sorted(got)}, but a "
            f"{model.prior_name} prior's must be {sorted(expected)}; nothing was written."
        )


def check_row_seeded(
    model: keras.Model,
    signature: Callable[..., dict[str, tf.Tensor]],
    key: str,
    seeds: np.ndarray,
    labels: np.ndarray | None = None,
    sampler: str = "prior",
    temperature: float = 1.0,
) -> dict[str, float]:
    """Check a per-row signature (``generate``, a conditional ``sample``) on `seeds` (and
    `labels`): twice the same outputs, against `expected_row_sample` (z to
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
    expected = expected_row_sample(model, labels, seeds, sampler, temperature)
    _check_output_names(model, key, first, expected)
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
