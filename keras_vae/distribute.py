"""Distribution: strategies by name, cluster roles, and how input pipelines are sharded.

- `get_strategy`: a `tf.distribute.Strategy` from a name ("auto", "one_device", "mirrored",
  "multi_worker"), cached;
- cluster roles: `is_multi_worker`, `is_chief` and `worker_output_dir` (only the chief writes
  RUN_DIR), `check_same_on_all_workers`;
- input distribution: `shard_by_data` and `model_inputs` (the DATA auto-shard policy).

What a replica does inside a step lives elsewhere: the global-batch arithmetic in
`keras_vae.replicas`, the noise in `keras_vae.noise`, the XLA and steps-per-execution policy
in `keras_vae.execution`.

>>> get_strategy("one_device").num_replicas_in_sync
1
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from keras_vae.config import STRATEGIES
from keras_vae.limits import check_choice

_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}  # see `get_strategy`


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
            more than one GPU is visible, else TensorFlow's default strategy: one device,
            the GPU when there is one, as Keras runs with no strategy), "one_device"
            (`OneDeviceStrategy` pinned to the first GPU, or the CPU: Keras then distributes
            every input block to it, which made `keras-vae train` 18-33% slower per epoch on
            this project's 2-core CPU, docs/performance.md), "mirrored"
            (`MirroredStrategy` over all visible GPUs; the CPU when there is none) or
            "multi_worker" (`MultiWorkerMirroredStrategy` configured from TF_CONFIG; every
            worker runs the same program).
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
        elif len(gpus) > 1:
            name = "mirrored"
        else:  # one device: no input distribution around each step (see the docstring)
            return tf.distribute.get_strategy()
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
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` over more than one worker.

    Example:
        >>> is_multi_worker(get_strategy("one_device"))
        False
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on non-chief workers.

    `StrategyExtended.should_checkpoint` is TensorFlow's public answer: True for single-host
    strategies, and for the chief (or worker 0 when TF_CONFIG has no chief) of a cluster.

    Example:
        >>> is_chief(get_strategy("one_device"))
        True
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
    def gather() -> tf.Tensor | tf.distribute.DistributedValues:
        def per_replica() -> tf.Tensor:
            return tf.distribute.get_replica_context().all_gather(tf.constant([value]), axis=0)

        return strategy.run(per_replica)

    values = strategy.experimental_local_results(gather())[0].numpy()
    smallest, largest = int(values.min()), int(values.max())
    if largest != smallest:
        raise ValueError(
            f"The workers disagree on {what}: from {smallest} to {largest}. Every worker must "
            "see the same RUN_DIR (put it on storage all workers share, e.g. NFS or GCS)."
        )


# ---------------------------------------------------------------------- input pipelines
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


def model_inputs(dataset: tf.data.Dataset, labels: bool = False) -> tf.data.Dataset:
    """What `fit` and `evaluate` get: the model input alone, with the DATA auto-shard policy.

    Labels, which an unconditional VAE ignores, are dropped: under a multi-worker strategy
    Keras 3 (3.15) first reduces one batch with `strategy.reduce("MEAN", batch, axis=None)`,
    which fails on an (x, y) tuple ("Attempt to convert a value (PerReplica...) ... to a
    Tensor"). A conditional VAE (`labels=True`) gets ``{"x": x, "label": y}`` dicts.

    Example:
        >>> data = tf.data.Dataset.from_tensor_slices(([[0.5]], [3]))
        >>> model_inputs(data).element_spec
        TensorSpec(shape=(1,), dtype=tf.float32, name=None)
        >>> sorted(model_inputs(data, labels=True).element_spec)
        ['label', 'x']
    """
    if isinstance(dataset.element_spec, tuple):
        if labels:
            dataset = dataset.map(
                lambda x, y, *_: {"x": x, "label": tf.cast(y, tf.int32)},
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            dataset = dataset.map(lambda x, *_: x, num_parallel_calls=tf.data.AUTOTUNE)
    elif labels:
        raise ValueError("A conditional model needs labelled data: (x, y) elements.")
    return shard_by_data(dataset)
