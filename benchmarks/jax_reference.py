"""The JAX reference point: the same VAE as ONE jitted function per epoch (`jax.lax.scan`).

What XLA reaches on this CPU when nothing but the training steps runs: the 784-400-20 ReLU VAE
(or the conv VAE of `keras_vae.networks`, same shapes, or ``burda``: the reproductions'
784-200-200-50 tanh VAE with each batch dynamically binarized inside the step), Bernoulli
likelihood on logits, analytic KL, one z sample per example, Adam 1e-3 (Keras' epsilon 1e-7),
batch 128 by default; ``--num-samples K`` > 1 trains the MLPs on the IWAE bound instead (K
draws per example: log mean_k p(x, z_k) / q(z_k|x), as `--objective iwae`). MNIST's 60,000
training images live on the device as float32 in [0, 1]; each epoch draws a permutation,
reshapes the kept examples to [steps, batch, 784] and scans the step over them inside one
`jax.jit` call, so there is no per-step Python, no input pipeline and no host round trip. It
is hand-written from the model's definition (no code from elsewhere).

It runs in a SEPARATE virtualenv with JAX (never a dependency of the package):

    python3 -m venv /work/jaxvenv && /work/jaxvenv/bin/pip install jax jaxlib numpy
    /work/jaxvenv/bin/python benchmarks/jax_reference.py --model classic --batch-size 128

Prints one JSON object (examples/s per timed epoch, the median, the final loss); the paired
benchmark (`benchmarks/train_job.py`) calls it round by round between `keras-vae train` runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    # The parameter pytrees: an MLP's lists of Dense layers, the conv VAE's named layers.
    MLPParams: TypeAlias = dict[str, list[dict[str, jax.Array]]]
    ConvParams: TypeAlias = dict[str, dict[str, jax.Array]]
    Params: TypeAlias = MLPParams | ConvParams
    Outputs: TypeAlias = tuple[jax.Array, jax.Array, jax.Array]  # logits, mean, stddev
    EpochState: TypeAlias = tuple[Params, Params, Params, jax.Array]  # params, m, v, t

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
LATENT = 20
ADAM = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


def read_mnist_images(folder: Path) -> np.ndarray:
    """The 60,000 training images as float32 in [0, 1], shape (60000, 28, 28)."""
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "rb") as handle:
        raw = handle.read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return images.astype(np.float32) / 255.0


def glorot(key: jax.Array, shape: tuple[int, ...], fan_in: int, fan_out: int) -> jax.Array:
    """Glorot-uniform initial weights of `shape`."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def dense_params(key: jax.Array, widths: Sequence[int]) -> list[dict[str, jax.Array]]:
    """Weights and zero biases of a chain of Dense layers of `widths`."""
    keys = jax.random.split(key, len(widths) - 1)
    return [
        {"w": glorot(k, (a, b), a, b), "b": jnp.zeros((b,))}
        for k, a, b in zip(keys, widths[:-1], widths[1:])
    ]


def mlp_init(key: jax.Array, hidden: Sequence[int] = (400,), latent: int = LATENT) -> MLPParams:
    """The MLP VAE's parameters: encoder, Gaussian head, decoder."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "enc": dense_params(k1, [784, *hidden]),
        "head": dense_params(k2, [hidden[-1], 2 * latent]),
        "dec": dense_params(k3, [latent, *reversed(hidden), 784]),
    }


def mlp_apply(
    params: MLPParams,
    x: jax.Array,
    noise: jax.Array,
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
) -> Outputs:
    """The MLP VAE's forward pass: decoder logits, posterior mean and stddev."""
    latent = noise.shape[-1]
    h = x.reshape(len(x), -1)
    for layer in params["enc"]:
        h = activation(h @ layer["w"] + layer["b"])
    out = h @ params["head"][0]["w"] + params["head"][0]["b"]
    mean, raw = out[:, :latent], out[:, latent:]
    stddev = jax.nn.softplus(raw) + 1e-4  # keras_vae.networks.MIN_POSTERIOR_STDDEV
    h = mean + stddev * noise
    for layer in params["dec"][:-1]:
        h = activation(h @ layer["w"] + layer["b"])
    logits = h @ params["dec"][-1]["w"] + params["dec"][-1]["b"]
    return logits.reshape(*noise.shape[:-1], *x.shape[1:]), mean, stddev


def burda_init(key: jax.Array) -> MLPParams:
    """The 784-200-200-50 MLP's parameters."""
    return mlp_init(key, hidden=(200, 200), latent=50)


def burda_apply(params: MLPParams, x: jax.Array, noise: jax.Array) -> Outputs:
    """The 784-200-200-50 tanh MLP's forward pass."""
    return mlp_apply(params, x, noise, activation=jnp.tanh)


def conv_init(key: jax.Array, filters: tuple[int, int] = (32, 64)) -> ConvParams:
    """`keras_vae.networks`' conv VAE: two stride-2 3x3 convs, their transposes, a 3x3 head."""
    keys = jax.random.split(key, 8)
    f1, f2 = filters
    hidden = 7 * 7 * f2

    def kernel(k: jax.Array, cin: int, cout: int) -> dict[str, jax.Array]:
        return {"w": glorot(k, (3, 3, cin, cout), 9 * cin, 9 * cout), "b": jnp.zeros((cout,))}

    return {
        "c1": kernel(keys[0], 1, f1),
        "c2": kernel(keys[1], f1, f2),
        "head": dense_params(keys[2], [hidden, 2 * LATENT])[0],
        "fc": dense_params(keys[3], [LATENT, hidden])[0],
        "t1": kernel(keys[4], f2, f2),
        "t2": kernel(keys[5], f2, f1),
        "out": kernel(keys[6], f1, 1),
    }


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, p: dict[str, jax.Array], stride: int) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, p["w"], (stride, stride), "SAME", None, None, _DIMENSIONS)
    return y + p["b"]


def _conv_transpose(x: jax.Array, p: dict[str, jax.Array], stride: int) -> jax.Array:
    y = jax.lax.conv_transpose(x, p["w"], (stride, stride), "SAME", dimension_numbers=_DIMENSIONS)
    return y + p["b"]


def conv_apply(params: ConvParams, x: jax.Array, noise: jax.Array) -> Outputs:
    """The conv VAE's forward pass: decoder logits, posterior mean and stddev."""
    h = jax.nn.relu(_conv(x[..., None], params["c1"], 2))
    h = jax.nn.relu(_conv(h, params["c2"], 2))
    out = h.reshape(len(x), -1) @ params["head"]["w"] + params["head"]["b"]
    mean, raw = out[:, :LATENT], out[:, LATENT:]
    stddev = jax.nn.softplus(raw) + 1e-4
    z = mean + stddev * noise
    h = jax.nn.relu(z @ params["fc"]["w"] + params["fc"]["b"]).reshape(len(x), 7, 7, -1)
    h = jax.nn.relu(_conv_transpose(h, params["t1"], 2))
    h = jax.nn.relu(_conv_transpose(h, params["t2"], 2))
    return _conv(h, params["out"], 1)[..., 0], mean, stddev


# name: (init, apply, latent size, dynamic binarization: a Bernoulli draw per batch)
MODELS: dict[str, tuple[Callable[[jax.Array], Params], Callable[..., Outputs], int, bool]] = {
    "classic": (mlp_init, mlp_apply, LATENT, False),
    "conv": (conv_init, conv_apply, LATENT, False),
    "burda": (burda_init, burda_apply, 50, True),  # 784-200-200-50 tanh, yburda/iwae's net
}


def make_epoch(
    apply: Callable[..., Outputs],
    batch_size: int,
    steps: int,
    latent: int = LATENT,
    dynamic: bool = False,
    samples: int = 1,
) -> Callable[..., tuple[Params, Params, Params, jax.Array, jax.Array]]:
    """A jitted function: (params, adam state, images, key) -> the same after one epoch;
    `dynamic` binarizes each batch with its own Bernoulli draw inside the step; `samples` > 1
    trains on the IWAE bound with that many draws per example."""
    noise_shape = (batch_size, latent) if samples == 1 else (samples, batch_size, latent)

    def loss_fn(params: Params, x: jax.Array, noise: jax.Array) -> jax.Array:
        logits, mean, stddev = apply(params, x, noise)
        log_px = -jnp.sum(jnp.logaddexp(0.0, logits) - x * logits, axis=(-2, -1))
        if samples == 1:
            kl = 0.5 * jnp.sum(mean**2 + stddev**2 - 1.0 - 2.0 * jnp.log(stddev), axis=1)
            return jnp.mean(kl - log_px)
        z = mean + stddev * noise  # log p(z) - log q(z|x), the Gaussians' constants cancel
        log_w = log_px + jnp.sum(0.5 * (noise**2 - z**2) + jnp.log(stddev), axis=-1)
        return -jnp.mean(jax.nn.logsumexp(log_w, axis=0) - np.log(samples))

    grad_fn = jax.value_and_grad(loss_fn)

    def step(
        carry: EpochState, inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[EpochState, jax.Array]:
        params, m, v, t = carry
        x, key = inputs
        noise_key, binarize_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, noise_shape)
        if dynamic:
            x = (jax.random.uniform(binarize_key, x.shape) < x).astype(jnp.float32)
        loss, grads = grad_fn(params, x, noise)
        t = t + 1
        lr = ADAM["learning_rate"] * jnp.sqrt(1 - ADAM["beta_2"] ** t) / (1 - ADAM["beta_1"] ** t)
        m = jax.tree.map(lambda m, g: ADAM["beta_1"] * m + (1 - ADAM["beta_1"]) * g, m, grads)
        v = jax.tree.map(lambda v, g: ADAM["beta_2"] * v + (1 - ADAM["beta_2"]) * g * g, v, grads)
        params = jax.tree.map(
            lambda p, m, v: p - lr * m / (jnp.sqrt(v) + ADAM["epsilon"]), params, m, v
        )
        return (params, m, v, t), loss

    @jax.jit
    def epoch(
        params: Params, m: Params, v: Params, t: jax.Array, images: jax.Array, key: jax.Array
    ) -> tuple[Params, Params, Params, jax.Array, jax.Array]:
        order_key, noise_key = jax.random.split(key)
        order = jax.random.permutation(order_key, len(images))[: steps * batch_size]
        batches = images[order].reshape(steps, batch_size, *images.shape[1:])
        keys = jax.random.split(noise_key, steps)
        (params, m, v, t), losses = jax.lax.scan(step, (params, m, v, t), (batches, keys))
        return params, m, v, t, jnp.mean(losses)

    return epoch


def run(
    model: str,
    batch_size: int,
    epochs: int,
    data: Path,
    seed: int = 0,
    examples: int = 0,
    samples: int = 1,
) -> dict:
    """One warm-up epoch (compiles) and `epochs` timed ones; examples/s per epoch.

    `examples` > 0 trains on the first that many images only (shorter epochs for conv);
    `samples` > 1 trains an MLP on the IWAE bound."""
    init, apply, latent, dynamic = MODELS[model]
    if samples > 1 and model == "conv":
        raise SystemExit("--num-samples > 1 is for the MLPs (classic, burda), not conv")
    images = read_mnist_images(data)
    images = jnp.asarray(images[:examples] if examples else images)
    steps = len(images) // batch_size
    key = jax.random.PRNGKey(seed)
    params = init(key)
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    epoch = make_epoch(apply, batch_size, steps, latent, dynamic, samples)
    seconds, losses = [], []
    for index in range(epochs + 1):
        key, epoch_key = jax.random.split(key)
        start = time.perf_counter()
        params, m, v, t, loss = epoch(params, m, v, t, images, epoch_key)
        loss = float(loss)  # blocks until the epoch is done
        seconds.append(time.perf_counter() - start)
        losses.append(round(loss, 3))
        del index
    rates = [steps * batch_size / s for s in seconds[1:]]
    return {
        "model": model,
        "batch_size": batch_size,
        "num_samples": samples,
        "examples_per_epoch": steps * batch_size,
        "epoch_seconds": [round(s, 3) for s in seconds],
        "examples_per_second": [round(r) for r in rates],
        "examples_per_second_median": round(statistics.median(rates)),
        "loss_per_example": losses,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="classic")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (+1 warm-up)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of MNIST IDX")
    parser.add_argument("--examples", type=int, default=0, help="train on the first N images")
    parser.add_argument("--num-samples", type=int, default=1, help="K > 1: the IWAE bound")
    args = parser.parse_args()
    result = run(
        args.model,
        args.batch_size,
        args.epochs,
        args.data,
        examples=args.examples,
        samples=args.num_samples,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
