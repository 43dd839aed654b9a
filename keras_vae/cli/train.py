"""`keras-vae train`: flags -> `Config` -> `keras_vae.train.train_and_evaluate`."""

from __future__ import annotations

import argparse
import json
import sys

from keras_vae import config as cfg

HELP = (
    "Train a VAE, evaluate it on held-out data and write RUN_DIR (model.keras, config.json, "
    "metrics.json, figures/). Rerunning the same command continues an interrupted run from its "
    "last completed epoch; on a finished run it does nothing; a different config is refused "
    "unless --overwrite."
)


def hidden_units(text: str) -> tuple[int, ...]:
    """'500' or '400,200' -> (500,) or (400, 200)."""
    try:
        units = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 400,200; received {text!r}"
        ) from None
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers; received {text!r}")
    return units


def steps_per_execution(text: str) -> int | str:
    """'auto' or a positive integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto'; received {text!r}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = cfg.Config()
    model, data, training, runtime = (
        defaults.model,
        defaults.data,
        defaults.training,
        defaults.runtime,
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="RUN_DIR",
        help="run directory to write model.keras, config.json, metrics.json; rerunning the "
        "same command continues an interrupted run from its last completed epoch",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a RUN_DIR that holds another (or a finished) run: delete its "
        "model.keras, metrics.json, config.json, backup/, logs/ and figures/ first",
    )
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=data.dataset,
        help="'digits' (offline default), a TFDS name (mnist, fashion_mnist, "
        "binarized_mnist, ...), a folder of MNIST IDX files, or an .npz file",
    )
    group.add_argument("--data-dir", default=None, help="TFDS data_dir")
    group.add_argument(
        "--binarization",
        choices=cfg.BINARIZATIONS,
        default=data.binarization,
        help="binarize pixels for the Bernoulli likelihood",
    )
    group = parser.add_argument_group("model")
    group.add_argument("--latent-dim", type=int, default=model.latent_dim)
    group.add_argument("--architecture", choices=cfg.ARCHITECTURES, default=model.architecture)
    group.add_argument(
        "--hidden-units",
        type=hidden_units,
        default=None,
        help="e.g. 500 or 400,200 (default: 400 for mlp, 32,64 for conv)",
    )
    group.add_argument("--activation", default=model.activation)
    group.add_argument("--likelihood", choices=cfg.LIKELIHOODS, default=model.likelihood)
    group.add_argument(
        "--likelihood-scale",
        default=model.likelihood_scale,
        help="Gaussian standard deviation: a positive number or 'learned'",
    )
    group.add_argument("--estimator", choices=cfg.ESTIMATORS, default=model.estimator)
    group.add_argument(
        "--num-samples", type=int, default=model.num_samples, help="L, samples of z per datapoint"
    )
    group.add_argument("--beta", type=float, default=model.beta)
    group.add_argument("--kl-warmup-steps", type=int, default=model.kl_warmup_steps)
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=training.epochs)
    group.add_argument(
        "--batch-size", type=int, default=training.batch_size, help="global batch size"
    )
    group.add_argument("--learning-rate", type=float, default=training.learning_rate)
    group.add_argument("--optimizer", choices=cfg.OPTIMIZERS, default=training.optimizer)
    group.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=training.jit_compile,
        help="XLA-compile the train step (default: on with a GPU or TPU; on CPU for mlp, off "
        "for conv; per replica under mirrored and multi_worker)",
    )
    group.add_argument(
        "--steps-per-execution",
        type=steps_per_execution,
        default=training.steps_per_execution,
        help="train steps per call into the compiled function, at most N: the largest divisor "
        "of the steps per epoch up to N (with XLA and one replica, a block of steps in one "
        "compiled loop); 'auto' (default) is 50, or 1 with several mirrored replicas "
        "(keras-team/keras#19246)",
    )
    group = parser.add_argument_group("runtime")
    group.add_argument("--seed", type=int, default=runtime.seed)
    group.add_argument(
        "--strategy",
        choices=cfg.STRATEGIES,
        default=runtime.strategy,
        help="tf.distribute strategy: mirrored = all visible GPUs, multi_worker = "
        "MultiWorkerMirroredStrategy from TF_CONFIG (run the same command on every worker), "
        "auto = multi_worker if TF_CONFIG lists several workers, else mirrored with 2+ GPUs, "
        "else one_device; --batch-size is the global batch",
    )
    group.add_argument(
        "--mixed-precision",
        choices=cfg.MIXED_PRECISION,
        default=runtime.mixed_precision,
        help="Keras mixed_float16 (with loss scaling) or mixed_bfloat16 policy; "
        "distributions and losses stay float32",
    )
    group.add_argument(
        "--tensorboard",
        action="store_true",
        help="log scalars (elbo, kl, reconstruction, learning rate) and images "
        "(reconstructions, samples) every epoch to RUN_DIR/logs",
    )
    group.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="progress output: 0 silent, 1 a bar of the optimizer steps done with examples/s, "
        "2 one line per epoch",
    )


def config_from_args(args: argparse.Namespace) -> cfg.Config:
    """The validated `Config` the flags describe (raises ValueError naming a bad flag)."""
    return cfg.Config(
        model=cfg.ModelConfig(
            latent_dim=args.latent_dim,
            architecture=args.architecture,
            hidden_units=args.hidden_units,
            activation=args.activation,
            likelihood=args.likelihood,
            likelihood_scale=args.likelihood_scale,
            estimator=args.estimator,
            num_samples=args.num_samples,
            beta=args.beta,
            kl_warmup_steps=args.kl_warmup_steps,
        ),
        data=cfg.DataConfig(
            dataset=args.dataset, data_dir=args.data_dir, binarization=args.binarization
        ),
        training=cfg.TrainingConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            optimizer=args.optimizer,
            jit_compile=args.jit_compile,
            steps_per_execution=args.steps_per_execution,
        ),
        runtime=cfg.RuntimeConfig(
            seed=args.seed,
            strategy=args.strategy,
            mixed_precision=args.mixed_precision,
            tensorboard=args.tensorboard,
        ),
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from keras_vae import resume  # imports TensorFlow: after validation
    from keras_vae.train import train_and_evaluate

    status = resume.inspect_run_dir(args.output, config, overwrite=args.overwrite)
    if status == resume.FINISHED:
        print(
            f"{args.output} already holds this finished run; nothing to train "
            "(pass --overwrite to train it again).",
            file=sys.stderr,
        )
    metrics = train_and_evaluate(
        config, args.output, verbose=args.verbose, overwrite=args.overwrite
    )
    summary = {k: v for k, v in metrics.items() if k != "history"}
    print(json.dumps(summary, indent=2))
    return 0
