"""Where the conv VAE's training step goes: each layer's forward and backward, TF's kernels.

The conv model (32-64 filters, latent 20, batch 128) is built as `keras-vae train --architecture
conv` builds it: XLA off on CPU (`keras_vae.execution.resolve_jit_compile`), so every
convolution is one of TensorFlow's (oneDNN) kernels. Each part runs `--steps` times inside one
graph `tf.while_loop` (no Python between steps; inputs shifted by a loop-carried zero, as in
step_breakdown.py); a part's time is the median over `--repeats` runs divided by the steps:

- ``train_step``: `VAE.train_step` (loss, gradients, Adam, metrics), the whole step;
- per layer with weights (encoder and decoder, in order): its forward pass, and its forward
  and backward pass (the weights' gradients, and the input's for every layer but the first,
  whose input is the data), with the layer's own activation;
- the rate of one large float32 matmul (2048 x 2048 x 2048) as this CPU's reference.

FLOPs per layer: `common.layer_forward_flops` (2 per multiply-add); forward + backward counts
three times the forward (two for the first layer).

    python benchmarks/conv_layers.py        # about 2 minutes on 2 cores

Writes ``benchmarks/results/conv_layers.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import common  # first: puts the repository on sys.path
import invocation
import keras
import tensorflow as tf
from step_breakdown import looped, seconds_per_step

from keras_vae.config import Config
from keras_vae.data import make_datasets
from keras_vae.train import build_model

if TYPE_CHECKING:
    from keras_vae.model import VAE

BATCH_SIZE = 128


def weighted_layers(vae: VAE) -> list[tuple[str, keras.layers.Layer]]:
    """("encoder/conv_0", layer), ... for every layer with weights, in the order data flows."""
    return [
        (f"{network.name}/{layer.name}", layer)
        for network in (vae.encoder, vae.decoder)
        for layer in network.layers
        if layer.trainable_weights
    ]


def layer_parts(
    layer: keras.layers.Layer, input_gradient: bool
) -> dict[str, Callable[[tf.Tensor], tf.Tensor]]:
    """The layer's forward pass and its forward and backward pass, as loop parts."""
    x = tf.random.normal([BATCH_SIZE, *layer.input.shape[1:]], seed=1)

    def forward(shift: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(layer(x + shift))

    def forward_backward(shift: tf.Tensor) -> tf.Tensor:
        inputs = x + shift
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = layer(inputs)
            loss = tf.reduce_sum(out * out)
        sources = [*layer.trainable_weights, *([inputs] if input_gradient else [])]
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, sources)])

    return {"forward": forward, "forward_backward": forward_backward}


def measure(steps: int, repeats: int, mnist: str) -> dict[str, Any]:
    """The train step's time per step and each weighted layer's, with their GFLOP/s."""
    config = Config.from_dict(
        {
            "data": {"dataset": mnist},
            "model": {"architecture": "conv", "latent_dim": 20},
            "training": {"batch_size": BATCH_SIZE},
        }
    )
    train, _, info = make_datasets(config.data, BATCH_SIZE)
    x = next(iter(train))
    x = x[0] if isinstance(x, tuple) else x
    vae = build_model(config, info)
    vae.fit(train.take(2), epochs=1, verbose=0)  # builds the optimizer and metrics

    def train_step(shift: tf.Tensor) -> tf.Tensor:
        return vae.train_step(x + shift)["loss"]

    def timed(part: Callable[[tf.Tensor], tf.Tensor]) -> float:
        return seconds_per_step(looped(part, steps, jit_compile=False), steps, repeats)

    step = timed(train_step)
    rows: list[dict[str, Any]] = []
    for index, (name, layer) in enumerate(weighted_layers(vae)):
        flops = BATCH_SIZE * common.layer_forward_flops(layer)
        seconds = {kind: timed(part) for kind, part in layer_parts(layer, index > 0).items()}
        backward_flops = flops * (3 if index > 0 else 2)
        rows.append(
            {
                "layer": name,
                "kind": type(layer).__name__,
                "input_shape": list(layer.input.shape[1:]),
                "output_shape": list(layer.output.shape[1:]),
                "forward_ms": round(1e3 * seconds["forward"], 3),
                "forward_backward_ms": round(1e3 * seconds["forward_backward"], 3),
                "share_of_step": round(seconds["forward_backward"] / step, 3),
                "forward_gflops": round(flops / seconds["forward"] / 1e9, 1),
                "forward_backward_gflops": round(
                    backward_flops / seconds["forward_backward"] / 1e9, 1
                ),
            }
        )
        print(rows[-1], flush=True)
    layers_ms = sum(row["forward_backward_ms"] for row in rows)
    return {
        "model": "conv 32-64, latent 20, Bernoulli, Adam, XLA off (keras-vae train's CPU default)",
        "batch_size": BATCH_SIZE,
        "train_step_ms": round(1e3 * step, 3),
        "layers_forward_backward_ms": round(layers_ms, 3),
        "layers_share_of_step": round(layers_ms / (1e3 * step), 3),
        "step_examples_per_second": round(BATCH_SIZE / step),
        "matmul_2048_gflops": common.matmul_gflops([(2048, 2048, 2048)], repeats, chain=2)[0][
            "gflops_median"
        ],
        "layers": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed loop")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=None, help="MNIST IDX folder (default: shared data)")
    args, run = invocation.start("conv_layers", parser, argv)
    mnist = args.data or str(common.shared_data_dir() / "mnist")
    result = measure(args.steps, args.repeats, mnist)
    print({k: v for k, v in result.items() if k != "layers"}, flush=True)
    return invocation.finish(run, result)


if __name__ == "__main__":
    sys.exit(main())
