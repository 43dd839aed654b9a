"""Where the time of `keras-vae train` goes: the whole job, phase by phase and epoch by epoch.

Runs the real job (`keras_vae.train.train_and_evaluate`, as the CLI does) with a profiling
callback and timers around its phases, and writes ``benchmarks/results/profile_train.json``:

- phases: imports, data loading and pipelines, building the model, `fit` (the first epoch,
  which traces and compiles, separately), the final evaluation of test and train sets, the
  figures, saving `model.keras` and `metrics.json`;
- per epoch: wall seconds, the seconds inside calls into the compiled train function, the
  wait for the first block (pipeline start), validation, the backup write, and what is left
  (Keras' loop, callbacks, logs).

    python benchmarks/profile_train.py                      # classic model, batch 128, 4 epochs
    python benchmarks/profile_train.py --model conv --epochs 3

``--trace DIR`` also records a TensorBoard profile (``tf.profiler``) of the third epoch.
"""

from __future__ import annotations

import tempfile
import time

T0 = time.perf_counter()

import common  # noqa: E402  first: puts the repository on sys.path
import invocation  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T0

import types  # noqa: E402  (for annotations, after the timed imports)
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from keras_vae import resume, train, visualize  # noqa: E402
from keras_vae.callbacks import validation  # noqa: E402
from keras_vae.config import Config  # noqa: E402

MODELS = {
    "classic": {"hidden_units": [400], "activation": "relu", "latent_dim": 20},
    "conv": {"architecture": "conv", "latent_dim": 20},
    "burda": {"hidden_units": [200, 200], "activation": "tanh", "latent_dim": 50},
}
DATA = {"burda": {"binarization": "dynamic"}}  # the reproductions' input (recipe burda2015)


class Timers:
    """Accumulating wall-clock timers by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(
        self, owner: types.ModuleType | type, name: str, key: str | None = None
    ) -> Callable[..., Any]:
        """Replace `owner.name` by a timed version that adds its time to `key`."""
        original = getattr(owner, name)
        key = key or name

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)
        return original


class EpochProfile(keras.callbacks.Callback):
    """Per epoch: wall time, time inside `train_function` calls, first block, validation."""

    def __init__(self, trace_dir: str | None = None) -> None:
        super().__init__()
        self.epochs: list[dict[str, float]] = []
        self.trace_dir = trace_dir
        self._wrapped = False

    def _wrap_train_function(self) -> None:
        model = self.model
        function = model.train_function
        if function is None or getattr(function, "_profiled", False):
            return

        def timed(iterator: Iterator[Any]) -> dict[str, Any]:
            start = time.perf_counter()
            try:
                return function(iterator)
            finally:
                seconds = time.perf_counter() - start
                self._current["train_function"] += seconds
                if self._current["calls"] == 0:
                    self._current["first_call"] = seconds
                self._current["calls"] += 1

        # a marker attribute on the function (mypy knows no attributes of functions)
        timed._profiled = True  # type: ignore[attr-defined]
        model.train_function = timed

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._wrap_train_function()
        self._current = {"train_function": 0.0, "calls": 0, "first_call": 0.0}
        self._start = time.perf_counter()
        if self.trace_dir and epoch == 2:
            tf.profiler.experimental.start(self.trace_dir)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._wrap_train_function()

    def on_test_begin(
        self, logs: dict[str, Any] | None = None
    ) -> None:  # Keras' validation (several replicas)
        self._test_start = time.perf_counter()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._current["validation"] = time.perf_counter() - self._test_start

    def add_validation(self, seconds: float) -> None:
        """`BlockValidation.evaluate` time (one replica), when it ran inside an epoch."""
        current = getattr(self, "_current", None)
        if current is not None and "wall" not in current:
            current["validation"] = current.get("validation", 0.0) + seconds

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._current["wall"] = time.perf_counter() - self._start
        if self.trace_dir and epoch == 2:
            tf.profiler.experimental.stop()
        self.epochs.append(self._current)


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="classic")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--device-data-limit-mb", type=int, default=None, help="as keras-vae train's flag"
    )
    parser.add_argument("--trace", default=None, help="folder for a TensorBoard profile")
    parser.add_argument("--out", default=None, help="results file (default: results/...)")
    args = invocation.parse(parser, argv)
    name = f"profile_train_{args.model}_b{args.batch_size}"
    run = invocation.ResultsRun(name, invocation.arguments_record(args, as_text=False))

    mnist = str(common.shared_data_dir() / "mnist")
    config = Config.from_dict(
        {
            "data": {"dataset": mnist, **DATA.get(args.model, {})},
            "model": MODELS[args.model],
            "training": {"epochs": args.epochs, "batch_size": args.batch_size},
            "runtime": {}
            if args.device_data_limit_mb is None
            else {"device_data_limit_mb": args.device_data_limit_mb},
        }
    )
    timers = Timers()
    timers.wrap(train, "make_pipelines", "data")
    timers.wrap(train, "build_model", "build_model")
    timers.wrap(visualize, "render_figures", "figures")
    timers.wrap(visualize, "save_figures", "figures")
    timers.wrap(train, "save_model_atomically", "save_model")
    timers.wrap(resume.RunBackup, "save", "backup_writes")
    timers.wrap(keras.Model, "fit", "fit")
    timers.wrap(keras.Model, "evaluate", "evaluate_calls")
    profile = EpochProfile(args.trace)
    evaluate_blocks = validation.BlockValidation.evaluate

    def timed_validation(self: validation.BlockValidation) -> dict[str, float]:
        start = time.perf_counter()
        try:
            return evaluate_blocks(self)
        finally:
            profile.add_validation(time.perf_counter() - start)

    # patched, to time the validation (mypy refuses an assignment to a method)
    validation.BlockValidation.evaluate = timed_validation  # type: ignore[method-assign]
    before = common.load_average()
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        metrics = train.train_and_evaluate(config, run_dir, verbose=0, callbacks=[profile])
        job_seconds = time.perf_counter() - start
    epochs = profile.epochs
    backups = timers.seconds.get("backup_writes", 0.0)
    phases = {
        "imports": IMPORT_SECONDS,
        "data": timers.seconds.get("data", 0.0),
        "build_model": timers.seconds.get("build_model", 0.0),
        "fit_first_epoch": epochs[0]["wall"],
        "fit_later_epochs": sum(e["wall"] for e in epochs[1:]),
        "backup_writes": backups,
        "final_evaluation": timers.seconds.get("evaluate_calls", 0.0),
        "figures": timers.seconds.get("figures", 0.0),
        "save_model": timers.seconds.get("save_model", 0.0),
    }
    phases["other"] = job_seconds - sum(v for k, v in phases.items() if k != "imports")
    examples = (60000 // args.batch_size) * args.batch_size
    rows = []
    for index, epoch in enumerate(epochs):
        rest = epoch["wall"] - epoch["train_function"] - epoch.get("validation", 0.0)
        rows.append(
            {
                "epoch": index + 1,
                "wall": round(epoch["wall"], 3),
                "train_function": round(epoch["train_function"], 3),
                "calls": epoch["calls"],
                "first_call": round(epoch["first_call"], 3),
                "validation": round(epoch.get("validation", 0.0), 3),
                "keras_loop_and_callbacks": round(rest, 3),
                "examples_per_second": round(examples / epoch["wall"]),
                "train_function_examples_per_second": round(examples / epoch["train_function"]),
            }
        )
        print(rows[-1], flush=True)
    results = {
        "model": args.model,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "job_seconds": round(job_seconds, 3),
        "phases_seconds": {k: round(v, 3) for k, v in phases.items()},
        "per_epoch": rows,
        "examples_per_second_metrics_json": round(metrics["examples_per_second"]),
        "test_elbo": metrics["test_elbo"],
        "load_average_before": before,
        "load_average_after": common.load_average(),
    }
    print({k: v for k, v in results.items() if k != "per_epoch"})
    return invocation.finish(run, results, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
