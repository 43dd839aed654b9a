"""The ELBO's three estimators on trained models: the same expectation, different variances.

Kingma & Welling's estimators A (``monte_carlo``) and B (``analytic_kl``) and the second
closed form, ``analytic_entropy`` (1/L sum_l log p(x, z_l) + H[q]), evaluated with L = 1 on the
same test images with `--draws` independent noise draws each. For each estimator: the mean
ELBO over images and draws, the per-image variance over draws (averaged over images: the
noise the estimator adds to a training step), and the paired difference of its mean from
``monte_carlo`` with its standard error (zero in expectation).

Models: trained by the real job (`keras_vae.train.train_and_evaluate`, as `keras-vae train`
does) on MNIST, 784-400-20 ReLU, Bernoulli, batch 128: the paper's VAE (normal prior: all three
estimators apply) and the VampPrior (K = 500: no closed-form KL, so monte_carlo vs
analytic_entropy).

    python benchmarks/estimators.py --epochs 3 --draws 200 --examples 1000

Writes ``benchmarks/results/estimators.json``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import common  # first: puts the repository on sys.path
import invocation
import numpy as np
import tensorflow as tf

from keras_vae import objectives
from keras_vae.config import Config
from keras_vae.data import load_splits, to_unit_interval
from keras_vae.run_reader import load_model
from keras_vae.train import train_and_evaluate

if TYPE_CHECKING:
    from keras_vae.model import VAE

MODELS = {
    "vae (normal prior)": ({}, ("analytic_kl", "monte_carlo", "analytic_entropy")),
    "vamp (K=500)": (
        {"prior": "vamp", "prior_components": 500},
        ("monte_carlo", "analytic_entropy"),
    ),
}


def train(run_dir: Path, parts: dict, epochs: int) -> Path:
    """Train the 784-400-20 MNIST model with the model config `parts` into `run_dir`."""
    config = Config.from_dict(
        {
            "model": {"latent_dim": 20, "hidden_units": [400], **parts},
            "data": {"dataset": str(common.shared_data_dir() / "mnist")},
            "training": {"epochs": epochs, "batch_size": 128},
        }
    )
    train_and_evaluate(config, run_dir, verbose=0)
    return run_dir


def estimates(model: VAE, x: np.ndarray, estimator: str, draws: int, seed: int) -> np.ndarray:
    """[draws, examples] single-sample (L = 1) ELBO estimates by `estimator`; draw d uses
    noise seed (seed, d) for every estimator, so the estimators are compared on common noise."""
    z_mean, z_stddev, context = model.encode_all(tf.constant(x))
    prior = model.prior_parameters()
    rows = []
    for d in range(draws):
        noise = tf.random.stateless_normal([1, *z_mean.shape], seed=[seed, d])

        def log_likelihood(z: tf.Tensor) -> tf.Tensor:
            return model.log_likelihood_given_z(x, z)

        if model.prior_name == "normal":
            terms = objectives.gaussian_latent_terms(
                z_mean, z_stddev, noise, log_likelihood, estimator
            )
        else:
            z, log_q = model.posterior_layer.sample(z_mean, z_stddev, noise, context)
            terms = objectives.LatentTerms(
                log_likelihood(z),
                model.prior_layer.log_prob(z, prior),
                log_q,
                entropy=model.posterior_layer.entropy(z_stddev),
            )
        rows.append(objectives.elbo_from_terms(terms, estimator).elbo.numpy())
    return np.stack(rows).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = invocation.argument_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    args, run = invocation.start("estimators", parser, argv)
    images = load_splits(str(common.shared_data_dir() / "mnist"))["test"].images
    x = to_unit_interval(images[: args.examples])
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (parts, applicable) in MODELS.items():
            model = load_model(train(Path(scratch) / name.split()[0], parts, args.epochs))
            values = {e: estimates(model, x, e, args.draws, seed=1) for e in applicable}
            reference = values["monte_carlo"]
            rows = {}
            for estimator, draws in values.items():
                per_image_mean = draws.mean(axis=0)
                difference = per_image_mean - reference.mean(axis=0)
                rows[estimator] = {
                    "mean_elbo": float(draws.mean()),
                    "mean_per_image_variance": float(draws.var(axis=0, ddof=1).mean()),
                    "minus_monte_carlo": float(difference.mean()),
                    "minus_monte_carlo_stderr": float(
                        difference.std(ddof=1) / np.sqrt(len(difference))
                    ),
                }
                print(f"{name:20} {estimator:17} {rows[estimator]}", flush=True)
            results[name] = {"parts": parts, "estimators": rows}
    return invocation.finish(
        run,
        {
            "data": f"MNIST test images 0..{args.examples - 1} (grayscale in [0, 1])",
            "training": f"train_and_evaluate, 784-400-20 ReLU, Bernoulli, batch 128, "
            f"{args.epochs} epochs on the 60,000 MNIST training images",
            "draws_per_image": args.draws,
            "models": results,
        },
        args.results / "estimators.json",
    )


if __name__ == "__main__":
    sys.exit(main())
