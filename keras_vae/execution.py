"""How a model's steps run: XLA, steps per execution, and blocks of steps.

- XLA: `resolve_jit_compile` (training), `resolve_importance_jit_compile` (the
  log-likelihood), and XLA per replica where Keras' whole-step XLA cannot go
  (`uses_replica_jit`, `per_replica_xla`);
- steps per execution: `resolve_steps_per_execution`, `check_steps_per_execution` (what
  Keras cannot run) and `fit_steps_per_execution` (train exactly `steps_per_epoch` steps);
- `ExecutionPolicy`: all of it, resolved once by `VAE.compile`; `prepare_fit`,
  `saved_compile_config` and `compile_from_config` are what the VAE's `fit`,
  `get_compile_config` and `compile_from_config` overrides call;
- blocks: several steps in one `train_step` call; their format is `keras_vae.blocks`.

Keras runs `steps_per_execution` steps per call for as long as the data lasts: with
`steps_per_epoch` not a multiple of it, the last call of every epoch runs a whole execution
anyway, unless the end of the data cuts it short. On a repeated (infinite) dataset,
`fit(steps_per_epoch=117)` with `steps_per_execution=50` trains 150 steps per epoch and reports
117. `fit_steps_per_execution` picks a setting that trains exactly `steps_per_epoch` steps, or
says why it cannot.

Example:
    >>> fit_steps_per_execution(50, steps_per_epoch=117, num_batches=None, auto=True)
    39
    >>> fit_steps_per_execution(50, steps_per_epoch=117, num_batches=117, auto=False)
    50
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from keras_vae.blocks import is_stepped_dataset, largest_divisor_at_most
from keras_vae.compat import set_steps_per_execution
from keras_vae.limits import check_choice

KERAS_DEFAULT_BATCH_SIZE = 32
# Train steps per call into the compiled function when `steps_per_execution="auto"`: enough
# to make Keras' per-call Python work (callbacks, iterator, logs) negligible next to the steps.
DEFAULT_STEPS_PER_EXECUTION = 50
# Strategies whose all-reduce runs across devices outside the step function: Keras'
# whole-step XLA (`compile(jit_compile=True)`) cannot span them, so XLA is applied per replica.
_CROSS_DEVICE_STRATEGIES = (
    tf.distribute.MirroredStrategy,
    tf.distribute.MultiWorkerMirroredStrategy,
)
_FIT_SIGNATURE = inspect.signature(keras.Model.fit)
# Per-model XLA-compiled gradient functions (`per_replica_xla`), kept outside the model so
# that SavedModel exports of it do not pick them up.
_REPLICA_XLA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------- XLA
def resolve_jit_compile(setting: bool | str, architecture: str = "mlp") -> bool:
    """`jit_compile` for a run: True/False as given; "auto" means on with a GPU or TPU, and
    on CPU for the MLP but not the conv architecture.

    XLA is the standard path on GPUs and TPUs. On CPU it speeds the MLP VAE up by fusing its
    elementwise work and optimizer update, but runs the conv VAE slower (XLA's CPU
    convolutions do not use oneDNN): benchmarks/throughput.py measures both (its results are
    in benchmarks/results/throughput.json).

    Example:
        >>> resolve_jit_compile(False)
        False
    """
    return _resolve_xla(setting, on_cpu=architecture == "mlp")


def resolve_importance_jit_compile(setting: bool | str) -> bool:
    """`jit_compile` for the importance-weighted log-likelihood: True/False as given; "auto"
    means XLA on a GPU or TPU only.

    On CPU XLA is slower here, unlike for training (benchmarks/evaluate_speed.py, results in
    benchmarks/results/evaluate_speed.json).

    Example:
        >>> resolve_importance_jit_compile(True)
        True
    """
    return _resolve_xla(setting, on_cpu=False)


def has_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or a TPU.

    Example:
        >>> has_accelerator() in (True, False)
        True
    """
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _resolve_xla(setting: bool | str, on_cpu: bool) -> bool:
    """True/False as given; "auto": XLA on a GPU or TPU, and on CPU when `on_cpu`."""
    if setting in (True, False):
        return bool(setting)
    check_choice("jit_compile", setting, ("auto",))
    return has_accelerator() or on_cpu


def uses_replica_jit(strategy: tf.distribute.Strategy) -> bool:
    """Whether XLA must be applied per replica (Mirrored and MultiWorkerMirrored strategies).

    Keras' `jit_compile=True` compiles the whole step including `strategy.run`, which fails
    when variables live on several devices ("Trying to access resource ... located in device
    ..."). Compiling each replica's forward and backward pass instead works, and keeps the
    all-reduce outside XLA.

    Example:
        >>> uses_replica_jit(tf.distribute.get_strategy())
        False
    """
    return isinstance(strategy, _CROSS_DEVICE_STRATEGIES)


def per_replica_xla(model: keras.Model, function: Callable) -> Callable:
    """`function` (a replica's forward and backward pass), XLA-compiled when `model`'s
    `ExecutionPolicy` says so (`replica_jit_compile`), else as it is.

    The compiled function is made once per model and kept outside it.

    Example:
        >>> per_replica_xla(keras.Sequential(), abs) is abs  # not compiled: no policy
        True
    """
    policy = getattr(model, "execution_policy", None)
    if policy is None or not policy.replica_jit_compile:
        return function
    if model not in _REPLICA_XLA:
        _REPLICA_XLA[model] = tf.function(function, jit_compile=True)
    return _REPLICA_XLA[model]


# ---------------------------------------------------------------------- steps per execution
def resolve_steps_per_execution(setting: int | str, strategy: tf.distribute.Strategy) -> int:
    """`steps_per_execution` for a run: an integer as given; "auto" means
    `DEFAULT_STEPS_PER_EXECUTION`, or 1 where Keras cannot run more (several mirrored
    replicas, see `check_steps_per_execution`).

    benchmarks/throughput.py compares 1 and 50 steps per execution (results in
    benchmarks/results/throughput.json). `VAE.fit` lowers the setting to a divisor of
    `steps_per_epoch` where needed (`prepare_fit`).

    Example:
        >>> resolve_steps_per_execution("auto", tf.distribute.get_strategy())
        50
    """
    if setting == "auto":
        replicas = strategy.num_replicas_in_sync
        if replicas > 1 and uses_replica_jit(strategy):
            return 1
        return DEFAULT_STEPS_PER_EXECUTION
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(
            "Received an invalid value for `steps_per_execution`, expected an integer >= 1 or "
            f"'auto'. Received: steps_per_execution={setting!r}"
        )
    return setting


def check_steps_per_execution(strategy: tf.distribute.Strategy, steps_per_execution: int) -> None:
    """Refuse `steps_per_execution > 1` where Keras 3 cannot run it: several mirrored replicas.

    Keras runs the extra steps in a `tf.while_loop` whose `tf.cond` wraps `strategy.run`; the
    optimizer's cross-replica `merge_call` inside that cond fails at run time ("You must feed a
    value for placeholder tensor ...", keras-team/keras#19246; Keras 3.15, TF 2.21), even for
    a plain `Sequential` model. One replica (any strategy) is fine. tests/test_distribute.py
    checks that Keras still fails, so this check can go when Keras is fixed.

    Example:
        >>> check_steps_per_execution(tf.distribute.get_strategy(), 50)  # one replica: fine

    Raises:
        ValueError: with the fix, before anything is traced or written.
    """
    replicas = strategy.num_replicas_in_sync
    if steps_per_execution > 1 and replicas > 1 and uses_replica_jit(strategy):
        raise ValueError(
            f"steps_per_execution={steps_per_execution} does not work with {replicas} mirrored "
            "replicas in Keras 3 (keras-team/keras#19246); use steps_per_execution=1 with "
            f"strategy {type(strategy).__name__}."
        )


# ---------------------------------------------------------------------- steps per epoch
def batches_per_epoch(x: Any, batch_size: int | None = None) -> int | None:
    """Batches one pass over `fit`'s `x` yields, or None when unknown or infinite.

    A `tf.data.Dataset` tells its cardinality; arrays (or dicts/lists of them) give
    ceil(examples / batch_size); a `keras.utils.PyDataset` gives its length. Generators, lists
    of plain values and distributed datasets are unknown.

    Example:
        >>> batches_per_epoch(tf.data.Dataset.range(10).batch(4))
        3
        >>> batches_per_epoch(tf.data.Dataset.range(10).repeat()) is None
        True
    """
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        return cardinality if cardinality >= 0 else None
    if isinstance(x, Mapping):
        x = next(iter(x.values()), None)
    elif isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape"):
        x = x[0]
    if hasattr(x, "shape") and getattr(x, "ndim", len(x.shape)) >= 1:
        examples = x.shape[0]
        if examples is None:
            return None
        return math.ceil(int(examples) / (batch_size or KERAS_DEFAULT_BATCH_SIZE))
    if isinstance(x, keras.utils.PyDataset):
        try:
            return len(x)
        except TypeError:
            return None
    return None


def fit_steps_per_execution(
    steps_per_execution: int, steps_per_epoch: int | None, num_batches: int | None, auto: bool
) -> int:
    """`steps_per_execution` for a `fit` that must train exactly `steps_per_epoch` steps.

    Unchanged when every epoch already ends on an execution boundary: no `steps_per_epoch`
    (the data's end ends the epoch), a multiple of `steps_per_execution`, or exactly one pass
    over finite data (its end cuts the last execution). Otherwise "auto" settles for the largest
    divisor of `steps_per_epoch` not above `steps_per_execution`, and an explicit setting raises.

    Args:
        steps_per_execution: the compiled setting ("auto" already resolved to an integer).
        steps_per_epoch: `fit`'s argument.
        num_batches: `batches_per_epoch` of the data, None if unknown or infinite.
        auto: whether the user asked for "auto" (then it may be changed).

    Raises:
        ValueError: an explicit `steps_per_execution` that would train extra steps.
    """
    if steps_per_epoch is None or steps_per_execution == 1:
        return steps_per_execution
    if steps_per_epoch % steps_per_execution == 0 or num_batches == steps_per_epoch:
        return steps_per_execution
    if auto:
        return largest_divisor_at_most(steps_per_epoch, steps_per_execution)
    executions = math.ceil(steps_per_epoch / steps_per_execution)
    raise ValueError(
        f"steps_per_epoch={steps_per_epoch} is not a multiple of "
        f"steps_per_execution={steps_per_execution}: on this data Keras would train "
        f"{executions * steps_per_execution} steps per epoch, not {steps_per_epoch} (each call "
        "runs whole executions while data lasts). Pass a steps_per_epoch that is a multiple of "
        f"{steps_per_execution}, compile with steps_per_execution="
        f"{largest_divisor_at_most(steps_per_epoch, steps_per_execution)} (a divisor of "
        f"{steps_per_epoch}) or 'auto', or give fit exactly {steps_per_epoch} batches of "
        "finite data."
    )


# ---------------------------------------------------------------------- the policy
@dataclasses.dataclass(frozen=True)
class ExecutionPolicy:
    """How a model's steps run, resolved once by `compile` for its strategy and architecture.

    Attributes:
        given: `jit_compile` and `steps_per_execution` as passed to `compile`, "auto" kept:
            what a saved model's compile config holds, so that it resolves them again on the
            machine that loads it.
        jit_compile: what Keras' `compile` gets: XLA over the whole step.
        replica_jit_compile: XLA over each replica's forward and backward pass instead (asked
            for with `jit_compile=True` under a strategy where `uses_replica_jit`).
        steps_per_execution: the compiled setting, before `fit` adapts it (`prepare_fit`).

    Example:
        >>> policy = ExecutionPolicy.resolve(tf.distribute.get_strategy(), "mlp", True)
        >>> policy.jit_compile, policy.replica_jit_compile, policy.steps_per_execution
        (True, False, 50)
    """

    given: Mapping[str, bool | int | str]
    jit_compile: bool
    replica_jit_compile: bool
    steps_per_execution: int

    @classmethod
    def resolve(
        cls,
        strategy: tf.distribute.Strategy,
        architecture: str = "mlp",
        jit_compile: bool | str = "auto",
        steps_per_execution: int | str = "auto",
    ) -> ExecutionPolicy:
        """The policy for `compile(jit_compile=..., steps_per_execution=...)` under `strategy`.

        Raises:
            ValueError: an invalid setting, or one Keras cannot run (`check_steps_per_execution`).
        """
        given = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution}
        jit = resolve_jit_compile(jit_compile, architecture)
        steps = resolve_steps_per_execution(steps_per_execution, strategy)
        check_steps_per_execution(strategy, steps)
        per_replica = jit and uses_replica_jit(strategy)
        return cls(given, jit and not per_replica, per_replica, steps)

    def compile_arguments(self) -> dict[str, bool | int]:
        """The `jit_compile` and `steps_per_execution` arguments of Keras' `compile`."""
        return {"jit_compile": self.jit_compile, "steps_per_execution": self.steps_per_execution}

    def steps_for_fit(self, x: Any, steps_per_epoch: int | None, batch_size: int | None) -> int:
        """`steps_per_execution` for a `fit` on `x`: 1 for a dataset of `{"x_steps": xs}`
        blocks (each element is already a block of steps), else `fit_steps_per_execution`."""
        if is_stepped_dataset(x):
            return 1
        return fit_steps_per_execution(
            self.steps_per_execution,
            steps_per_epoch,
            batches_per_epoch(x, batch_size),
            auto=self.given["steps_per_execution"] == "auto",
        )


def prepare_fit(
    model: keras.Model, x: Any = None, y: Any = None, *args: Any, **kwargs: Any
) -> None:
    """Before `model.fit(x, y, *args, **kwargs)`: set `steps_per_execution` so that the fit
    trains exactly `steps_per_epoch` steps per epoch (`ExecutionPolicy.steps_for_fit`).

    Nothing happens before `compile` (no policy yet): Keras' own `fit` then says what is wrong.

    Example:
        >>> prepare_fit(keras.Sequential(), None, epochs=3)  # not compiled: nothing to do
    """
    policy = getattr(model, "execution_policy", None)
    if policy is None:
        return
    given = _FIT_SIGNATURE.bind(model, x, y, *args, **kwargs).arguments
    steps = policy.steps_for_fit(x, given.get("steps_per_epoch"), given.get("batch_size"))
    set_steps_per_execution(model, steps)


def saved_compile_config(model: keras.Model, config: dict[str, Any]) -> dict[str, Any]:
    """Keras' compile `config` of `model`, with `jit_compile` and `steps_per_execution` as
    given to `compile` ("auto" kept), for `get_compile_config`.

    Example:
        >>> saved_compile_config(keras.Sequential(), {})  # not compiled
        {}
    """
    policy = getattr(model, "execution_policy", None)
    if not config or policy is None:
        return config
    return {**config, **policy.given}


def compile_from_config(model: keras.Model, config: dict[str, Any]) -> None:
    """Recompile a loaded `.keras` model through its own `compile` (Keras skips overridden
    ones), then build the optimizer so that the saved variables load into it.

    Example:
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> compile_from_config(model, {"optimizer": "sgd", "loss": "mse"})
        >>> model.optimizer.built
        True
    """
    model.compile(**keras.saving.deserialize_keras_object(config))
    if model.built:
        model.optimizer.build(model.trainable_variables)
