"""Where one training step's time goes: the classic MLP VAE and the IWAE k=50 reproduction's
network, the default settings (XLA).

Each part runs `--steps` times inside one XLA-compiled `tf.while_loop`, so no Python or call
overhead is counted; a part's time is the loop's median time over `--repeats` runs divided by
the steps. Every iteration's inputs are shifted by a loop-carried zero (``1e-30 * total``) so
that XLA cannot hoist a part out of the loop as loop-invariant. The parts, from the
whole step down:

- ``train_step``: `VAE.train_step` as `fit` runs it (loss, gradients, Adam update, metrics);
- ``train_step_sgd``: the same with plain SGD (the update without Adam's moments);
- ``gradients``: loss and gradients, no update (the gradients are summed so none is skipped);
- ``forward``: the loss alone;
- ``matmuls``: the step's matrix multiplies alone, with distinct operands (see throughput.py);
  their rate is also measured outside XLA, in TensorFlow's own (oneDNN) kernels.

Cases: ``classic_b128`` and ``classic_b512`` (784-400-20 ReLU, Adam) and ``iwae_k50_b20``
(784-200-200-50 tanh, dynamically binarized MNIST, the IWAE bound with 50 draws per example,
batch 20: the iwae_k50 row of benchmarks/reproductions, whose decoder runs on 1,000 rows).

    python benchmarks/step_breakdown.py            # all three, about 3 minutes
    python benchmarks/step_breakdown.py --cases iwae_k50_b20

Writes ``benchmarks/results/step_breakdown.json`` (``--cases`` keeps the other cases' results).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import common  # first: puts the repository on sys.path
import invocation
import keras
import numpy as np
import tensorflow as tf
import throughput

from keras_vae.compat import replica_gradients
from keras_vae.config import Config, ModelConfig
from keras_vae.data import make_datasets
from keras_vae.replicas import batch_layout
from keras_vae.train import build_model

if TYPE_CHECKING:
    from keras_vae.model import VAE


def looped(
    part: Callable[[tf.Tensor], tf.Tensor], steps: int, jit_compile: bool = True
) -> Callable[[], tf.Tensor]:
    """A compiled function (XLA unless `jit_compile` is False) running `part(shift)` `steps`
    times in one loop; `part` returns a scalar.

    `shift` is a loop-carried float32 zero the part adds to its inputs.
    """

    @tf.function(jit_compile=jit_compile)
    def run() -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            total += tf.cast(part(1e-30 * total), tf.float32)
        return total

    return run


def seconds_per_step(run: Callable[[], tf.Tensor], steps: int, repeats: int) -> float:
    """Median seconds of one of `run`'s `steps` steps, over `repeats` calls after a compile."""
    run().numpy()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps


def parts(
    vae: VAE, x: tf.Tensor
) -> tuple[dict[str, Callable[[tf.Tensor], tf.Tensor]], list[keras.Variable], int]:
    """The loop parts of one training step, the model's trainable variables, matmul FLOPs."""
    layout = batch_layout(x)
    variables = vae.trainable_variables

    def train_step(shift: tf.Tensor) -> tf.Tensor:
        return vae.train_step(x + shift)["loss"]

    def gradients(shift: tf.Tensor) -> tf.Tensor:
        _, grads = replica_gradients(vae, x + shift, None, layout)
        return tf.add_n([tf.reduce_sum(g) for g in grads])

    def forward(shift: tf.Tensor) -> tf.Tensor:
        terms = vae.elbo_terms(x + shift, None, training=True, layout=layout)
        return tf.reduce_mean(terms.reconstruction - terms.kl)

    shapes = throughput.step_matmuls(vae, int(x.shape[0]), vae.num_samples)
    operands = [
        (tf.random.normal([m, k], seed=i), tf.random.normal([k, n], seed=i + 1))
        for i, (m, k, n) in enumerate(shapes)
    ]

    def matmuls(shift: tf.Tensor) -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(tf.matmul(a + shift, b)) for a, b in operands])

    flops = sum(2 * m * k * n for m, k, n in shapes)
    return (
        {
            "train_step": train_step,
            "gradients": gradients,
            "forward": forward,
            "matmuls": matmuls,
        },
        variables,
        flops,
    )


# name: (batch size, the model if not the classic one, binarization)
CASES = {
    "classic_b128": (128, None, None),
    "classic_b512": (512, None, None),
    "iwae_k50_b20": (
        20,
        ModelConfig(
            latent_dim=50,
            hidden_units=(200, 200),
            activation="tanh",
            objective="iwae",
            num_samples=50,
        ),
        "dynamic",
    ),
}


def case_config(name: str, mnist: str) -> Config:
    """The run configuration of case `name`: Adam 1e-3, XLA, 50 steps per execution."""
    batch_size, model, binarization = CASES[name]
    config = throughput.run_config(throughput.Case("classic", batch_size, True, 50), mnist)
    if model is None:
        return config
    # a case with its own model names its binarization
    data = dataclasses.replace(config.data, binarization=cast(str, binarization))
    return dataclasses.replace(config, model=model, data=data)


def measure(name: str, steps: int, repeats: int, mnist: str) -> dict[str, Any]:
    """Each part's time per step for case `name`, with rates and shares of the step."""
    config = case_config(name, mnist)
    batch_size = config.training.batch_size
    train, _, info = make_datasets(config.data, batch_size)
    batch = next(iter(train))
    x = batch[0] if isinstance(batch, tuple) else batch
    vae = build_model(config, info)
    vae.fit(train.take(2), epochs=1, verbose=0)  # builds the optimizer and metrics
    functions, variables, flops = parts(vae, x)
    result = {}
    for part_name, part in functions.items():
        result[part_name] = seconds_per_step(looped(part, steps), steps, repeats)
    # The same matmuls in TensorFlow's own (oneDNN) kernels, outside XLA, for comparison.
    tf_matmuls = looped(functions["matmuls"], steps, jit_compile=False)
    tf_matmul_seconds = seconds_per_step(tf_matmuls, steps, repeats)
    sgd_vae = build_model(config, info)
    sgd_vae.compile(optimizer=keras.optimizers.SGD(1e-3), jit_compile=True)
    sgd_vae.fit(train.take(2), epochs=1, verbose=0)
    sgd_step = looped(lambda shift: sgd_vae.train_step(x + shift)["loss"], steps)
    result["train_step_sgd"] = seconds_per_step(sgd_step, steps, repeats)
    step = result["train_step"]
    ms = {part: round(1e3 * seconds, 4) for part, seconds in result.items()}
    model = config.model
    units = cast("tuple[int, ...]", model.hidden_units)  # resolved by ModelConfig: not None
    widths = "-".join(map(str, (784, *units, model.latent_dim)))
    objective = "ELBO" if model.objective == "elbo" else f"IWAE k={model.num_samples}"
    return {
        "model": f"{widths} {model.activation}, {objective}",
        "batch_size": batch_size,
        "milliseconds_per_step": ms,
        "fraction_of_step": {part: round(s / step, 3) for part, s in result.items()},
        "adam_update_ms": round(1e3 * (step - result["gradients"]), 4),
        "matmul_gflops": round(flops / result["matmuls"] / 1e9, 1),
        "matmul_gflops_without_xla": round(flops / tf_matmul_seconds / 1e9, 1),
        "step_examples_per_second": round(batch_size / step),
        "parameters": int(sum(np.prod(v.shape) for v in variables)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=200, help="steps per timed loop")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default=None, help="MNIST IDX folder (default: shared data)")
    args, run = invocation.start("step_breakdown", parser, argv)
    mnist = args.data or str(common.shared_data_dir() / "mnist")
    cases = {}
    for name in args.cases:
        cases[name] = measure(name, args.steps, args.repeats, mnist)
        print(name, cases[name], flush=True)
    setting = "Bernoulli likelihood, Adam, XLA, 50 steps per execution"
    return invocation.finish(run, {"setting": setting, "cases": cases}, merge="cases")


if __name__ == "__main__":
    sys.exit(main())
