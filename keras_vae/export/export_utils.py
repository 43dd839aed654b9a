"""Helpers shared by the export formats' checks: the error type, numeric comparisons with
their tolerances, refusal checks of a reloaded signature, signature summaries.

>>> import numpy as np
>>> max_abs_error(np.zeros(3), np.array([0.0, -2.0, 1.0]))
2.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_vae.signatures import LABEL, label_range

if TYPE_CHECKING:
    import tensorflow as tf

# Exported float32 graphs must reproduce the Keras model to this absolute tolerance.
FLOAT32_TOLERANCE = 1e-5
# Examples the exporter pushes through every signature to check it against Keras.
CHECK_BATCH = 4
CHECK_SEED = 20140101  # NumPy seed of those check inputs (AEVB's arXiv year, nothing magic)


def check_labels(num_classes: int, rows: int) -> np.ndarray:
    """int32 labels [rows] a conditional export is checked on: spread evenly over
    [0, num_classes), the first 0 and (for rows > 1) the last num_classes - 1.

    Example:
        >>> check_labels(10, 4).tolist()
        [0, 3, 6, 9]
    """
    return np.linspace(0, num_classes - 1, rows).round().astype(np.int32)


def label_feed(model: Any, rows: int) -> dict[str, np.ndarray]:
    """``{"label": check_labels(K, rows)}`` for a conditional `model`, {} for another: the
    labels a check feeds beside its other inputs.

    Example:
        >>> from types import SimpleNamespace
        >>> label_feed(SimpleNamespace(conditional=True, num_classes=3), 2)["label"].tolist()
        [0, 2]
    """
    return {LABEL: check_labels(int(model.num_classes), rows)} if model.conditional else {}


def bad_labels(num_classes: int) -> list[int]:
    """Labels every signature of a conditional export must refuse: K, -1 and the int32 ends.

    Example:
        >>> bad_labels(3)
        [3, -1, 2147483647, -2147483648]
    """
    return [num_classes, -1, 2**31 - 1, -(2**31)]


def bad_label_feeds(feed: Mapping[str, Any], num_classes: int) -> dict[str, dict[str, Any]]:
    """{"label B": `feed` with its last label B} for each `bad_labels` value B.

    Example:
        >>> sorted(bad_label_feeds({"label": np.zeros(2, np.int32)}, 3))[:2]
        ['label -1', 'label -2147483648']
    """
    cases = {}
    for bad in bad_labels(num_classes):
        wrong = np.array(feed[LABEL], copy=True)
        wrong[-1] = bad
        cases[f"label {bad}"] = {**feed, LABEL: wrong}
    return cases


class ExportError(RuntimeError):
    """An export was written but failed its own checks (wrong numbers, NaN, dropped weights).

    Nothing is committed when it is raised: no version folder, no tflite file, no export.json.

    Example:
        >>> check_close("decoder x_mean", [0.5], [0.75], tolerance=1e-5)
        Traceback (most recent call last):
        ...
        keras_vae.export.export_utils.ExportError: The exported decoder x_mean differs from the \
Keras model by 0.25 (shapes (1,) vs (1,)), more than the allowed 1e-05; nothing was written.
    """


def max_abs_error(expected: Any, actual: Any) -> float:
    """max |expected - actual| in float64; `inf` when either holds NaN or the shapes differ."""
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    if expected.shape != actual.shape:
        return float("inf")
    if not (np.isfinite(expected).all() and np.isfinite(actual).all()):
        return float("inf")
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(expected - actual)))


def check_close(what: str, expected: Any, actual: Any, tolerance: float) -> float:
    """`max_abs_error`, raising `ExportError` naming `what` when it is above `tolerance`.

    Example:
        >>> check_close("decoder x_mean", [0.5], [0.5], tolerance=1e-5)
        0.0
    """
    actual_array = np.asarray(actual)
    if actual_array.dtype.kind == "f" and np.isnan(actual_array).any():
        raise ExportError(
            f"The exported {what} contains NaN (the Keras model's does not); the conversion is "
            "broken, nothing was written."
        )
    error = max_abs_error(expected, actual)
    if not error <= tolerance:
        shapes = f"{np.shape(expected)} vs {np.shape(actual)}"
        raise ExportError(
            f"The exported {what} differs from the Keras model by {error:.3g} (shapes "
            f"{shapes}), more than the allowed {tolerance:g}; nothing was written."
        )
    return error


def scaled_tolerance(expected: np.ndarray) -> float:
    """`FLOAT32_TOLERANCE` relative to the largest |value| of `expected`, at least absolute:
    an IAF's z can be large (each step scales it by up to e^3, and float32 rounding with it),
    and log q sums latent_dim log-densities.

    Example:
        >>> scaled_tolerance(np.array([-300.0, 2.0]))
        0.003
    """
    largest = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    return FLOAT32_TOLERANCE * max(1.0, largest)


def refuses(signature: Callable[..., dict[str, tf.Tensor]], **inputs: np.ndarray) -> bool:
    """Whether a reloaded SavedModel signature fails with InvalidArgumentError on `inputs`."""
    import tensorflow as tf

    try:
        signature(**{name: tf.constant(value) for name, value in inputs.items()})
    except tf.errors.InvalidArgumentError:
        return True
    return False


def check_refuses_bad_labels(
    num_classes: int,
    part: str,
    signatures: Mapping[str, Any],
    inputs: Mapping[str, Mapping[str, np.ndarray]],
) -> None:
    """Every signature of `part` refuses each `bad_labels` value in one row, and a label
    batch of another size; `inputs` holds each signature's well-formed inputs (with
    ``label``). `ExportError` naming the first one that ran."""
    for key, feed in inputs.items():
        cases = bad_label_feeds(feed, num_classes)
        if len(feed) > 1:  # the label's row count must match the other inputs'
            cases["one label fewer than the rows"] = {**feed, LABEL: feed[LABEL][:-1]}
        for case, wrong_feed in cases.items():
            if not refuses(signatures[key], **wrong_feed):
                raise ExportError(
                    f"The exported {part}'s {key} signature ran on {case} instead of refusing "
                    f"it ({label_range(num_classes)}, one per row); nothing was written."
                )


def tensor_info(dtype: str, shape: Any) -> dict[str, Any]:
    """One input or output as export.json records it: -1 marks a dimension of any size."""
    return {"dtype": dtype, "shape": [-1 if d is None or int(d) < 0 else int(d) for d in shape]}


def saved_model_signatures(path: str | Path) -> dict[str, dict[str, Any]]:
    """The SignatureDefs of a SavedModel as TF Serving reads them, from `saved_model.pb`.

    Returns ``{signature: {"method_name", "inputs": {name: {dtype, shape}}, "outputs": ...}}``
    for the "serve" tag, leaving out TF's internal ``__saved_model_init_op``.

    Example:
        >>> saved_model_signatures("export/decoder/1")["sample"]["inputs"]  # doctest: +SKIP
        {'num_samples': {'dtype': 'int32', 'shape': []}, 'seed': {'dtype': 'int32', 'shape': []}}
    """
    import tensorflow as tf

    from keras_vae.compat import saved_model_proto

    proto = saved_model_proto((Path(path) / "saved_model.pb").read_bytes())
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise ExportError(f"{path} has no MetaGraph tagged 'serve', which TF Serving needs.")

    def describe(infos: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: tensor_info(
                tf.dtypes.as_dtype(info.dtype).name,
                [dim.size for dim in info.tensor_shape.dim],
            )
            for name, info in sorted(infos.items())
        }

    return {
        key: {
            "method_name": sig.method_name,
            "inputs": describe(sig.inputs),
            "outputs": describe(sig.outputs),
        }
        for key, sig in sorted(graphs[0].signature_def.items())
        if not key.startswith("__")
    }
