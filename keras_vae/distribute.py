"""Distribution: strategies by name, and the replica-context rules that keep a custom
`train_step` exact under any number of replicas and workers.

A custom `train_step` gets none of Keras' automatic loss scaling: under `tf.distribute` the
optimizer SUMS the gradients of all replicas, so each replica must divide its per-example
losses by the GLOBAL batch size. Everything the VAE needs for that lives here:

- `batch_layout`: the global batch size and this replica's offset in the global batch;
- `average_over_global_batch`: the one loss-scaling helper;
- `replica_normal`: reparameterisation noise drawn for the GLOBAL batch and sliced per
  replica, so replicas never share noise and results depend neither on the replica count
  nor on XLA (`standard_normal`);
- `reducible_logs`: the multi-worker workaround for Keras' scalar-log reduction;
- `model_inputs`: the auto-shard policy (DATA) of the input pipelines.

They work in any replica context: no strategy, `OneDeviceStrategy`, `MirroredStrategy`,
`MultiWorkerMirroredStrategy` and `TPUStrategy` (static shapes, stateless RNG,
`ReplicaContext` collectives only). The cluster rules live here too: `is_chief` and
`worker_output_dir` (only the chief writes RUN_DIR), `check_same_on_all_workers`, and the
checks of what Keras 3 cannot run (`check_global_batch`, `check_steps_per_execution`).

>>> get_strategy("one_device").num_replicas_in_sync
1
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import tensorflow as tf

from keras_vae.config import STRATEGIES, check_choice

_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}  # see `get_strategy`
# Strategies whose all-reduce runs across devices outside the step function: Keras'
# whole-step XLA (`compile(jit_compile=True)`) cannot span them, so XLA is applied per replica.
_CROSS_DEVICE_STRATEGIES = (
    tf.distribute.MirroredStrategy,
    tf.distribute.MultiWorkerMirroredStrategy,
)
# The stateless RNG algorithm of the reparameterisation and importance-sampling noise. The
# default, "auto_select", is Philox on CPU and GPU (the same raw bits with and without XLA;
# see `standard_normal` for the floats), but under XLA it passes the algorithm as a runtime
# tensor and the compiled kernel is 10-20x slower: 1.7 ms instead of 0.08 ms for a
# [1, 128, 20] draw on 2 CPU cores, a quarter of the 784-400-20 VAE's train step
# (benchmarks/throughput.py). Naming it keeps the numbers.
RNG_ALG = "philox"


def get_strategy(
    name: str = "auto", devices: Sequence[str] | None = None
) -> tf.distribute.Strategy:
    """Return the strategy called `name`.

    Create it before any other TensorFlow call: `MultiWorkerMirroredStrategy` configures the
    runtime's collective ops and fails once the runtime has started. Strategies are cached:
    the same arguments return the same object, because two mirrored strategies over the same
    devices in one process number their collective ops alike and mix them up ("Shape mismatch
    in the collective instance ...").

    Args:
        name: "auto" (multi-worker when TF_CONFIG names several workers, else mirrored when
            more than one GPU is visible, else one device), "one_device" (the first GPU, or
            the CPU), "mirrored" (`MirroredStrategy` over all visible GPUs; the CPU when there
            is none) or "multi_worker" (`MultiWorkerMirroredStrategy` configured from
            TF_CONFIG; every worker runs the same program).
        devices: for "mirrored" only: the devices to mirror over, e.g. ["/cpu:0", "/cpu:1"]
            for logical CPU devices in tests. Default None: all visible GPUs.

    Example:
        >>> get_strategy("mirrored").num_replicas_in_sync >= 1
        True
    """
    check_choice("strategy", name, STRATEGIES)
    if devices is not None and name != "mirrored":
        raise ValueError(
            "`devices` is only for strategy='mirrored'. "
            f"Received: strategy={name!r}, devices={list(devices)!r}"
        )
    # Physical devices: listing them does not start the runtime (logical devices would).
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if _tf_config_workers() > 1:
            name = "multi_worker"
        else:
            name = "mirrored" if len(gpus) > 1 else "one_device"
    key = (name, None if devices is None else tuple(devices))
    if key not in _STRATEGIES:
        if name == "one_device":
            _STRATEGIES[key] = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
        elif name == "mirrored":
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=key[1] and list(key[1]))
        else:
            _tf_config_workers()  # a malformed TF_CONFIG fails here with a clear message
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[key]


def _tf_config_workers() -> int:
    """How many workers TF_CONFIG describes (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(
            f"TF_CONFIG is not a JSON object with a 'cluster' ({error}). Received: {raw!r}"
        ) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


# ---------------------------------------------------------------------- cluster roles
def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` over more than one worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on non-chief workers.

    `StrategyExtended.should_checkpoint` is TensorFlow's public answer: True for single-host
    strategies, and for the chief (or worker 0 when TF_CONFIG has no chief) of a cluster.
    """
    return bool(strategy.extended.should_checkpoint)


def worker_output_dir(run_dir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes the run's files: `run_dir` on the chief, else a temporary dir.

    Keras' multi-worker pattern: every worker runs the same code, including saves (reading
    synchronized variables can be a collective that all workers must join), but only the
    chief's files land in RUN_DIR. The other workers' temporary dirs are removed at exit.

    Example:
        >>> worker_output_dir("runs/x", get_strategy("one_device"))
        PosixPath('runs/x')
    """
    if is_chief(strategy):
        return Path(run_dir)
    path = Path(tempfile.mkdtemp(prefix="keras-vae-worker-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def check_same_on_all_workers(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Raise if `value` differs between workers (e.g. the epoch a resumed run starts from).

    Workers that disagree would run different numbers of collective steps and hang. The usual
    cause is a RUN_DIR that is not on storage all workers share.

    Raises:
        ValueError: naming the smallest and largest values and the fix.
    """
    if not is_multi_worker(strategy):
        return

    @tf.function
    def gather():
        def per_replica():
            return tf.distribute.get_replica_context().all_gather(tf.constant([value]), axis=0)

        return strategy.run(per_replica)

    values = strategy.experimental_local_results(gather())[0].numpy()
    smallest, largest = int(values.min()), int(values.max())
    if largest != smallest:
        raise ValueError(
            f"The workers disagree on {what}: from {smallest} to {largest}. Every worker must "
            "see the same RUN_DIR (put it on storage all workers share, e.g. NFS or GCS)."
        )


# ---------------------------------------------------------------------- the global batch
def check_global_batch(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """Require a global batch size that splits evenly over the replicas.

    `average_over_global_batch` is exact for any split, but Keras' `fit` reduces the first
    batch across replicas to build the model, which fails on unequal per-replica shapes.

    Raises:
        ValueError: naming the replica count and the nearest valid batch sizes.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        lower = max(replicas, batch_size - batch_size % replicas)
        raise ValueError(
            f"The global batch size must be a multiple of the {replicas} replicas, so every "
            f"replica gets the same number of examples. Received: batch_size={batch_size}; "
            f"use e.g. {lower} or {lower + replicas}."
        )


class BatchLayout(NamedTuple):
    """Where this replica's examples sit in the global batch (ints, or int32 tensors)."""

    global_size: int | tf.Tensor  # examples in the global batch, over all replicas
    offset: int | tf.Tensor  # index of this replica's first example in the global batch


def batch_layout(per_example: tf.Tensor) -> BatchLayout:
    """The global batch size and this replica's offset, for a tensor whose axis 0 is the batch.

    Static per-replica batch shapes (dropped-remainder batches divisible by the replica count,
    the training case) are the same on every replica, so the layout is arithmetic. Otherwise
    (uneven splits, the last evaluation batch, multi-worker pipelines whose shapes are not
    static) the local sizes are all-gathered: one small collective that does not depend on the
    forward pass, so it overlaps with it. Replicas hold consecutive slices of the global batch
    in replica order, as `experimental_distribute_dataset` splits it.

    Example:
        >>> batch_layout(tf.zeros([8, 3]))
        BatchLayout(global_size=8, offset=0)
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    static = per_example.shape[0]
    if replicas == 1:
        size = static if static is not None else tf.shape(per_example)[0]
        return BatchLayout(global_size=size, offset=0)
    replica_id = context.replica_id_in_sync_group
    if static is not None:
        return BatchLayout(global_size=static * replicas, offset=replica_id * static)
    sizes = context.all_gather(tf.shape(per_example)[:1], axis=0)
    before = tf.cast(tf.range(replicas) < replica_id, sizes.dtype)
    return BatchLayout(global_size=tf.reduce_sum(sizes), offset=tf.reduce_sum(sizes * before))


def average_over_global_batch(
    per_example: tf.Tensor,
    global_size: int | tf.Tensor | None = None,
    regularization_losses: Sequence[tf.Tensor] = (),
) -> tf.Tensor:
    """This replica's share of the mean loss: local sum / GLOBAL batch size (+ its share of
    the regularisation losses).

    Summed over replicas by the optimizer's all-reduce, these shares give exactly the gradient
    of the mean over the global batch, whatever the number of replicas and however unevenly the
    global batch is split. `tf.nn.compute_average_loss` alone assumes equal splits.

    Args:
        per_example: losses of this replica's examples, shape [local_batch].
        global_size: the global batch size. Default None: from `batch_layout(per_example)`.
        regularization_losses: `model.losses`, counted once over all replicas. Default ().

    Example:
        >>> float(average_over_global_batch(tf.constant([1.0, 3.0])))
        2.0
    """
    if global_size is None:
        global_size = batch_layout(per_example).global_size
    loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_size)
    if regularization_losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(list(regularization_losses)))
    return loss


def replica_normal(
    num_samples: int,
    local_batch: int | tf.Tensor,
    latent_dim: int,
    seed: tf.Tensor,
    layout: BatchLayout | None = None,
) -> tf.Tensor:
    """Standard normal noise [num_samples, local_batch, latent_dim] for this replica.

    Drawn for the GLOBAL batch from the step's stateless `seed` and sliced at this replica's
    offset: replicas get different noise (a seed generator alone gives every replica the same
    draws) and the noise of an example depends only on the seed and its position in the global
    batch (not on the replica count, nor on XLA: see `standard_normal`), so one replica and
    many replicas train identically for the same seed.

    Args:
        num_samples: L, draws per example.
        local_batch: this replica's batch size.
        latent_dim: size of z.
        seed: int32 [2] stateless seed (one per step).
        layout: this replica's `BatchLayout`. Default None: one replica.

    Example:
        >>> replica_normal(1, 4, 2, tf.constant([1, 2])).shape
        TensorShape([1, 4, 2])
    """
    context = tf.distribute.get_replica_context()
    if layout is None or context is None or context.num_replicas_in_sync == 1:
        return standard_normal([num_samples, local_batch, latent_dim], seed)
    noise = standard_normal([num_samples, layout.global_size, latent_dim], seed)
    return tf.slice(noise, [0, layout.offset, 0], [num_samples, local_batch, latent_dim])


def standard_normal(shape, seed: tf.Tensor) -> tf.Tensor:
    """float32 N(0, 1) draws: Box-Muller on stateless Philox bits, the same with or without XLA.

    `tf.random.stateless_normal` (and `stateless_uniform`) give different numbers when XLA
    compiles them with a seed known only at run time (TF 2.21), so a run's noise would depend
    on `jit_compile`; the raw 32-bit draws agree. Uniforms are built from their top 24 bits,
    u = (k + 1/2) / 2**24, so |z| <= 5.8 (P(|z| > 5.8) is 7e-9 under N(0, 1)).

    Example:
        >>> standard_normal([2, 3], tf.constant([1, 2])).shape
        TensorShape([2, 3])
    """
    bits = tf.random.stateless_uniform(
        [2, *shape], seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg=RNG_ALG
    )
    uniform = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * 2.0**-24
    radius = tf.sqrt(-2.0 * tf.math.log(uniform[0]))
    return radius * tf.cos((2.0 * math.pi) * uniform[1])


def stateless_seed(seed_generator) -> tf.Tensor:
    """The next int32 seed pair of a `keras.random.SeedGenerator` (as `keras.random` draws it)."""
    state = seed_generator.next()
    return tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)


# ---------------------------------------------------------------------- Keras glue
def reducible_logs(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The logs a `train_step`/`test_step` returns, in a shape Keras can reduce across workers.

    Workaround for keras-team/keras#20585 (also tensorflow/tensorflow#72388, Keras 3.x with
    TF 2.16+): under a multi-worker `MultiWorkerMirroredStrategy`, Keras' `reduce_per_replica`
    reduces every log with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Giving each log a leading
    axis of length 1 makes that reduction the mean over replicas, a scalar again. Elsewhere the
    logs are returned unchanged. Epoch logs and `evaluate` results do not come from here but
    from the metrics' sum-aggregated variables, so they are exact either way.
    tests/test_multi_worker.py checks that Keras still needs this; when that check fails,
    Keras is fixed and this function can go.
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with the DATA auto-shard policy, for `experimental_distribute_dataset`.

    The pipelines of `keras_vae.data` are in-memory `from_tensor_slices` datasets: there are no
    files to shard by (AUTO would try FILE, warn and fall back). With DATA, every worker builds
    the same pipeline (same seed, same shuffle order) and keeps its slice of each GLOBAL batch:
    step t trains on exactly the examples of the single-process batch t, each once. The
    training set drops its last incomplete batch (documented in `make_datasets`); the test
    set's last, smaller batch is split as evenly as possible, so every test example is
    evaluated exactly once. The cost is that each worker reads the whole (in-memory) dataset.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def model_inputs(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """What `fit` and `evaluate` get: the model input alone, with the DATA auto-shard policy.

    Labels, which the VAE ignores, are dropped: under a multi-worker strategy Keras 3 (3.15)
    first reduces one batch with `strategy.reduce("MEAN", batch, axis=None)`, which fails on
    an (x, y) tuple ("Attempt to convert a value (PerReplica...) ... to a Tensor").

    Example:
        >>> data = tf.data.Dataset.from_tensor_slices(([[0.5]], [3]))
        >>> model_inputs(data).element_spec
        TensorSpec(shape=(1,), dtype=tf.float32, name=None)
    """
    if isinstance(dataset.element_spec, tuple):
        dataset = dataset.map(lambda x, *_: x, num_parallel_calls=tf.data.AUTOTUNE)
    return shard_by_data(dataset)


def uses_replica_jit(strategy: tf.distribute.Strategy) -> bool:
    """Whether XLA must be applied per replica (Mirrored and MultiWorkerMirrored strategies).

    Keras' `jit_compile=True` compiles the whole step including `strategy.run`, which fails
    when variables live on several devices ("Trying to access resource ... located in device
    ..."). Compiling each replica's forward and backward pass instead works, and keeps the
    all-reduce outside XLA.
    """
    return isinstance(strategy, _CROSS_DEVICE_STRATEGIES)


def check_steps_per_execution(strategy: tf.distribute.Strategy, steps_per_execution: int) -> None:
    """Refuse `steps_per_execution > 1` where Keras 3 cannot run it: several mirrored replicas.

    Keras runs the extra steps in a `tf.while_loop` whose `tf.cond` wraps `strategy.run`; the
    optimizer's cross-replica `merge_call` inside that cond fails at run time ("You must feed a
    value for placeholder tensor ...", keras-team/keras#19246; Keras 3.15, TF 2.21), even for
    a plain `Sequential` model. One replica (any strategy) is fine. tests/test_distribute.py
    checks that Keras still fails, so this check can go when Keras is fixed.

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


def resolve_jit_compile(setting: bool | str, architecture: str = "mlp") -> bool:
    """`jit_compile` for a run: True/False as given; "auto" means on with a GPU or TPU, and
    on CPU for the MLP but not the conv architecture.

    XLA is the standard path on GPUs and TPUs. On CPU (TF 2.21, 2 cores,
    benchmarks/throughput.py) it speeds the MLP VAE up by fusing its elementwise work and
    optimizer update (784-400-20, batch 128, 50 steps per execution: 1.15x the examples per
    second, 1.27x more examples per CPU-second), but runs the conv VAE 1.6-2.3x slower (XLA's
    CPU convolutions do not use oneDNN).

    Example:
        >>> resolve_jit_compile(False)
        False
    """
    return _resolve_xla(setting, on_cpu=architecture == "mlp")


def has_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or a TPU."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def resolve_importance_jit_compile(setting: bool | str) -> bool:
    """`jit_compile` for the importance-weighted log-likelihood: True/False as given; "auto"
    means XLA on a GPU or TPU only.

    On CPU XLA is slower here, unlike for training: 784-400-20, K = 5000, chunks of 26 samples
    (benchmarks/evaluate_speed.py, 2 cores): 14.2 s per 1000 MNIST test images without XLA,
    18.6 s with it (29.4 vs 35.2 s on an older, loaded machine).

    Example:
        >>> resolve_importance_jit_compile(True)
        True
    """
    return _resolve_xla(setting, on_cpu=False)


def _resolve_xla(setting: bool | str, on_cpu: bool) -> bool:
    """True/False as given; "auto": XLA on a GPU or TPU, and on CPU when `on_cpu`."""
    if setting in (True, False):
        return bool(setting)
    check_choice("jit_compile", setting, ("auto",))
    return has_accelerator() or on_cpu


# Train steps per call into the compiled function when `steps_per_execution="auto"`: enough
# to make Keras' per-call Python work (callbacks, iterator, logs) negligible next to the steps.
DEFAULT_STEPS_PER_EXECUTION = 50


def resolve_steps_per_execution(setting: int | str, strategy: tf.distribute.Strategy) -> int:
    """`steps_per_execution` for a run: an integer as given; "auto" means
    `DEFAULT_STEPS_PER_EXECUTION`, or 1 where Keras cannot run more (several mirrored
    replicas, see `check_steps_per_execution`).

    Measured on 2 CPU cores (benchmarks/throughput.py, batch 128): 50 steps per execution
    train the MLP VAE 1.34x faster than 1 (no XLA; 1.36x with XLA), and the conv VAE 1.07x
    (its steps are ten times longer, so the per-call overhead matters less). `VAE.fit` lowers
    it to a divisor of `steps_per_epoch` where needed (`keras_vae.execution`).

    Example:
        >>> resolve_steps_per_execution("auto", get_strategy("one_device"))
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
