"""The PyTorch reference point: the official PyTorch VAE example's model and loop, timed here.

Same model as pytorch/examples `vae/main.py` (784-400-20 ReLU, sigmoid decoder, BCE summed
over pixels + analytic KL, Adam 1e-3, batch 128, shuffled MNIST), written from its description
(not copied) so the ratio keras-vae / PyTorch is measured on the same machine in the same
session. Three data loops:

- ``example``: the example's own input path: a dataset that, like torchvision's `MNIST`, makes a
  PIL image of each 28x28 uint8 example and converts it as `ToTensor` does (float in [0, 1],
  [1, 28, 28]), batched by `DataLoader(batch_size=128, shuffle=True)` with no worker processes
  (the example's setting without CUDA). Needs Pillow; skipped without it;
- ``dataloader``: `torch.utils.data.DataLoader(TensorDataset(...), batch_size=128,
  shuffle=True)`, the example's loop (per-example fetch + collate) minus its PIL decoding;
- ``tensor``: one random permutation per epoch, slicing a float tensor (no DataLoader), the
  fastest plain-PyTorch loop.

It runs in a SEPARATE virtualenv that has torch (never the project's), reads MNIST's IDX files
with NumPy, and writes ``benchmarks/results/pytorch_baseline.json``:

    /work/torchvenv/bin/python benchmarks/pytorch_baseline.py --epochs 6
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

RESULTS = Path(__file__).resolve().parent / "results" / "pytorch_baseline.json"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def read_mnist_images(folder: Path) -> np.ndarray:
    """The 60,000 training images as float32 in [0, 1], shape (60000, 784)."""
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "rb") as handle:
        raw = handle.read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784)
    return images.astype(np.float32) / 255.0


class VAE(nn.Module):
    """784-400-20 encoder, 20-400-784 decoder, ReLU hidden units."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = functional.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(functional.relu(self.fc3(z)))), mu, logvar


class ConvVAE(nn.Module):
    """keras_vae's conv VAE: 3x3 stride-2 convs (32, 64), their transposes, a 3x3 output conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.mean = nn.Linear(7 * 7 * 64, 20)
        self.raw_stddev = nn.Linear(7 * 7 * 64, 20)
        self.project = nn.Linear(20, 7 * 7 * 64)
        self.deconv1 = nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        self.out = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = functional.relu(self.conv2(functional.relu(self.conv1(x.view(-1, 1, 28, 28)))))
        h = h.flatten(1)
        mu = self.mean(h)
        stddev = functional.softplus(self.raw_stddev(h)) + 1e-4
        z = mu + torch.randn_like(mu) * stddev
        h = functional.relu(self.project(z)).view(-1, 64, 7, 7)
        h = functional.relu(self.deconv2(functional.relu(self.deconv1(h))))
        return torch.sigmoid(self.out(h)).view(len(x), -1), mu, 2 * torch.log(stddev)


MODELS = {"classic": VAE, "conv": ConvVAE}


def loss_function(
    recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """The batch's summed BCE plus the analytic KL, as the example's loss."""
    bce = functional.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[torch.Tensor]
) -> tuple[float, int]:
    """One epoch; returns (mean loss per example, examples)."""
    model.train()
    total, count = 0.0, 0
    for x in batches:
        optimizer.zero_grad()
        recon, mu, logvar = model(x)
        loss = loss_function(recon, x, mu, logvar)
        loss.backward()
        optimizer.step()
        total += loss.item()  # the example's loop syncs the loss every step, as here
        count += len(x)
    return total / count, count


def dataloader_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """One epoch's shuffled batches from a `DataLoader` over a `TensorDataset`."""
    dataset = torch.utils.data.TensorDataset(images)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    return (x for (x,) in loader)


class PilMnist(torch.utils.data.Dataset):
    """28x28 uint8 images served as torchvision's MNIST + ToTensor serve them: via PIL."""

    def __init__(self, images: torch.Tensor) -> None:
        self.data = (images * 255).round().to(torch.uint8).view(-1, 28, 28)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        picture = Image.fromarray(self.data[index].numpy(), mode="L")
        pixels = torch.from_numpy(np.array(picture, np.uint8, copy=True))
        return pixels.view(1, 28, 28).float().div(255), 0  # (image, target) as the example


def example_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """One epoch's shuffled batches through PIL and a `DataLoader`, as the example's."""
    loader = torch.utils.data.DataLoader(PilMnist(images), batch_size=batch_size, shuffle=True)
    return (x.view(len(x), -1) for x, _ in loader)


def tensor_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """One epoch's batches by slicing a random permutation of the tensor."""
    order = torch.randperm(len(images))
    for start in range(0, len(images), batch_size):
        yield images[order[start : start + batch_size]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of MNIST IDX")
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs per loop (+1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="3 epochs per loop")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's (= cores)")
    parser.add_argument("--model", choices=sorted(MODELS), default="classic")
    parser.add_argument("--loops", default=None, help="comma-separated loops (default: all)")
    parser.add_argument("--examples", type=int, default=0, help="train on the first N images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = 3 if args.quick else args.epochs
    torch.manual_seed(0)
    images = torch.from_numpy(read_mnist_images(args.data))
    if args.examples:
        images = images[: args.examples]
    load_before = [round(x, 2) for x in os.getloadavg()]
    loops = {"dataloader": dataloader_batches, "tensor": tensor_batches}
    try:
        import PIL  # noqa: F401

        loops = {"example": example_batches, **loops}
    except ImportError:
        print("Pillow is not installed: skipping the example's PIL input path")
    if args.loops:
        loops = {name: loops[name] for name in args.loops.split(",")}
    runs: dict[str, dict[str, Any]] = {
        name: {"model": MODELS[args.model](), "seconds": [], "loss": []} for name in loops
    }  # interleaved, so both loops see the same background load
    for run in runs.values():
        run["optimizer"] = torch.optim.Adam(run["model"].parameters(), lr=1e-3)
    for _ in range(epochs + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            loss, count = train_epoch(
                run["model"], run["optimizer"], loops[name](images, args.batch_size)
            )
            run["seconds"].append(time.perf_counter() - start)
            run["loss"].append(round(loss, 3))
    results = {}
    for name, run in runs.items():
        timed = run["seconds"][1:]
        results[name] = {
            "examples_per_second_median": round(len(images) / statistics.median(timed)),
            "examples_per_second_best": round(len(images) / min(timed)),
            "epoch_seconds": [round(s, 3) for s in run["seconds"]],
            "loss_per_example": run["loss"],
        }
        print(f"{name:10s} {results[name]['examples_per_second_median']:>8d} examples/s (median)")
    payload = {
        "benchmark": "pytorch_baseline",
        "model": args.model,
        "description": "784-400-20 ReLU" if args.model == "classic" else "conv 32-64",
        "loss": "Bernoulli (BCE sum) + analytic KL, Adam 1e-3",
        "batch_size": args.batch_size,
        "timed_epochs": epochs,
        "machine": {
            "cpu": platform.processor(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "loops": results,
        "pillow": _pillow_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


def _pillow_version() -> str | None:
    try:
        import PIL

        return PIL.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
