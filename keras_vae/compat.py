"""Every use of a private or undocumented API in keras-vae, one function each.

Each function says WHY the private route is taken and WHAT would replace it, so that an
upgrade of Keras, TensorFlow or LiteRT has one file to check. Code elsewhere calls these
functions and never reaches into a library's internals itself.

- `reducible_logs`: Keras' multi-worker reduction of scalar logs (keras-team/keras#20585);
- `set_steps_per_execution`: change `steps_per_execution` after `compile`;
- `replica_gradients`: `VAE._gradients`, for benchmarks/step_breakdown.py;
- `tflite_schema`: the TFLite flatbuffer bindings, to list a converted model's operators;
- `saved_model_proto`: the `SavedModel` protocol buffer, to read signatures as TF Serving does;
- `keras_hub_preset_file`: keras-hub's preset file getter, for ``hf://`` / ``kaggle://`` presets;
- `in_xla_context`: whether ops traced now will be XLA-compiled (`jit_compile=True`).

>>> logs = {"loss": tf.constant(1.0)}
>>> reducible_logs(logs) is logs  # one worker: nothing to work around
True
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from keras_vae.distribute import is_multi_worker

if TYPE_CHECKING:
    from keras_vae.replicas import BatchLayout
    from keras_vae.tensor_types import LabelsLike


def reducible_logs(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The logs a `train_step`/`test_step` returns, in a shape Keras can reduce across workers.

    Why: keras-team/keras#20585 (also tensorflow/tensorflow#72388, Keras 3.x with TF 2.16+):
    under a multi-worker `MultiWorkerMirroredStrategy`, Keras' `reduce_per_replica` reduces
    every log with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Giving each log a leading axis of
    length 1 makes that reduction the mean over replicas, a scalar again. Elsewhere the logs
    are returned unchanged. Epoch logs and `evaluate` results do not come from here but from
    the metrics' sum-aggregated variables, so they are exact either way.

    Replace: nothing, once Keras reduces scalar logs; tests/test_multi_worker.py checks that
    Keras still needs this, and when that check fails this function can go.

    Example:
        >>> reducible_logs({"loss": tf.constant(1.0)})["loss"].shape
        TensorShape([])
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def set_steps_per_execution(model: keras.Model, steps: int) -> None:
    """Make the next `fit` of a compiled `model` run `steps` steps per call.

    Why: Keras 3 (3.15) has no public way to change `steps_per_execution` after `compile`.
    `compile` stores it as an attribute, and the train, test and predict functions, built on
    first use, bake it in, so the cached functions are dropped to be rebuilt with the new
    value. Recompiling would do the same publicly but resets the compile state, on every
    `fit` whose `steps_per_epoch` calls for another setting.

    Replace: `compile(steps_per_execution=steps)`, or a public setter if Keras adds one.

    Example:
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(loss="mse", steps_per_execution=4)
        >>> set_steps_per_execution(model, 2)
        >>> model.steps_per_execution
        2
    """
    if steps != model.steps_per_execution:
        model.steps_per_execution = steps
        model.train_function = model.test_function = model.predict_function = None


def replica_gradients(
    model: keras.Model,
    x: tf.Tensor,
    noise: tf.Tensor | None,
    layout: BatchLayout,
    labels: LabelsLike = None,
) -> Any:
    """`model._gradients(x, labels, noise, layout)`: a `VAE` train step without its update.

    Why: benchmarks/step_breakdown.py times the loss and gradients of one step apart from the
    optimizer update; `VAE.train_step` does both, and the gradient half has no public name.

    Replace: a public `VAE` method, if a caller outside benchmarks ever needs one.

    Returns:
        (per-example objective values, gradients), as `VAE.train_step` computes them.

    Example:
        >>> from keras_vae.model import VAE
        >>> from keras_vae.replicas import batch_layout
        >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
        >>> vae.compile(optimizer="sgd")
        >>> x = tf.zeros([3, 4])
        >>> _, gradients = replica_gradients(vae, x, None, batch_layout(x))
        >>> len(gradients) == len(vae.trainable_variables)
        True
    """
    return model._gradients(x, labels, noise, layout)


def tflite_schema() -> ModuleType:
    """The Python flatbuffer bindings of the TFLite schema (`ModelT`, `BuiltinOperator`).

    Why: `keras_vae.export.litert_checks.operators` lists the operators of a converted model to
    refuse Flex and custom ops; neither TensorFlow nor LiteRT has a public call that returns
    them (`tf.lite.experimental.Analyzer` only prints), and the bindings TensorFlow ships
    sit in `tensorflow.lite.python`, outside its public API.

    Replace: bindings generated by `flatc --python` from LiteRT's public `schema.fbs`, or a
    public op-listing call if LiteRT adds one.

    Example:
        >>> hasattr(tflite_schema(), "ModelT")
        True
    """
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def saved_model_proto(content: bytes) -> Any:
    """The `SavedModel` protocol buffer parsed from the bytes of a `saved_model.pb` file.

    Why: the export checks a SavedModel's signatures as TF Serving reads them, from the
    protocol buffer, without loading (and running) the model; TensorFlow's public API has no
    reader for the file, and its generated protobuf modules (`tensorflow.core.protobuf`) are
    outside that API.

    Replace: `tf.saved_model.load(path).signatures` (public, but it loads the whole model),
    or a public reader if TensorFlow adds one.

    Example:
        >>> saved_model_proto(b"").meta_graphs
        []
    """
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2.SavedModel.FromString(content)


def keras_hub_preset_file(handle: str, name: str) -> str:
    """The local path of file `name` of the hub preset `handle` (``hf://ORG/MODEL`` or
    ``kaggle://ORG/MODEL/keras/VARIANT``), downloaded and cached by keras-hub.

    Why: keras-hub fetches a preset's files with `keras_hub.src.utils.preset_utils.get_file`
    (Kaggle, Hugging Face, GCS; with its cache and its error messages), but exports it only
    through `from_preset` of its own model classes; a keras-vae preset is not one of them.

    Replace: a public keras-hub function that returns a preset's local files.

    Raises:
        ImportError: keras-hub is not installed (it is not a keras-vae dependency).
    """
    from keras_hub.src.utils.preset_utils import get_file

    return get_file(handle, name)


def in_xla_context() -> bool:
    """Whether the graph being traced (or one it is nested in) will be compiled by XLA.

    No public API says whether a `tf.function(jit_compile=True)` is tracing; TensorFlow's own
    gradient and control-flow code asks `control_flow_util.GraphOrParentsInXlaContext`, and so
    do we (`keras_vae.networks.OneFilterConv2D` picks its kernel by it, and `in_xla_on_cpu`
    builds on it). Replace it if TensorFlow ever exposes the question. Eagerly: False.

    Example:
        >>> in_xla_context()
        False
    """
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def in_xla_on_cpu() -> bool:
    """Whether the graph being traced will be compiled by XLA for a CPU (no GPU or TPU seen).

    There some ops lower slowly and keras-vae writes them out (`keras_vae.noise.philox_bits`,
    `keras_vae.distributions.softplus`); elsewhere it keeps TensorFlow's op.

    Example:
        >>> in_xla_on_cpu()
        False
    """
    from keras_vae.execution import has_accelerator  # it imports this module

    return in_xla_context() and not has_accelerator()
