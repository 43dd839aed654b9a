"""`VAE`: a `keras.Model` whose `train_step` maximises the SGVB estimate of the ELBO.

>>> import numpy as np, keras
>>> vae = VAE(data_shape=(8, 8), latent_dim=2, hidden_units=(32,))
>>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> history = vae.fit(np.random.rand(64, 8, 8), batch_size=16, epochs=1, verbose=0)
>>> sorted(history.history)
['elbo', 'kl', 'loss', 'reconstruction']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_vae import distributions, execution, importance, objectives
from keras_vae.compat import reducible_logs
from keras_vae.config import ModelConfig
from keras_vae.networks import build_decoder, build_encoder
from keras_vae.noise import replica_normal, stateless_seed
from keras_vae.replicas import BatchLayout, average_over_global_batch, batch_layout

METRIC_NAMES = ("loss", "elbo", "reconstruction", "kl")


def _unpack_inputs(data: Any) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(x, noise or None) from x, (x,), (x, y[, w]) or {"x": x, "noise": eps}."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    noise = None
    if isinstance(x, dict):
        noise = x.get("noise")
        x = x["x"]
    return tf.cast(x, tf.float32), noise


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """Variational autoencoder trained with the SGVB estimator (Kingma & Welling, 2014).

    q(z|x) is a diagonal Gaussian, p(z) = N(0, I) and p(x|z) a Bernoulli or Gaussian over all
    data dimensions; `fit` maximises the ELBO (minimises `loss` = -(reconstruction - beta * kl))
    and reports, per example in nats, `loss`, `elbo`, `reconstruction` (E_q log p(x|z)) and
    `kl`. Inputs may be vectors, HxW or HxWxC, with or without labels (ignored). Pass
    `{"x": x, "noise": eps}` with eps of shape [batch, num_samples, latent_dim] to supply the
    reparameterisation noise yourself (common random numbers, exact reproducibility).

    Args:
        data_shape: shape of one example, e.g. (28, 28).
        latent_dim: size of z. Default 20.
        architecture: "mlp" or "conv". Default "mlp".
        hidden_units: hidden widths (mlp) or filters per stride-2 block (conv).
            Default (400,) for mlp, (32, 64) for conv.
        activation: hidden activation. Default "relu" ("tanh" in the paper).
        likelihood: "bernoulli" or "gaussian". Default "bernoulli".
        likelihood_scale: Gaussian standard deviation, a float or "learned". Default 1.0.
        estimator: "analytic_kl" (default) or "monte_carlo".
        num_samples: L, samples of z per datapoint. Default 1.
        beta: KL weight. Default 1.0.
        kl_warmup_steps: linear warm-up of the KL weight over this many steps. Default 0.
        seed: seed of the reparameterisation noise. Default None.

    Example:
        >>> vae = VAE(data_shape=(784,), latent_dim=2, hidden_units=(16,))
        >>> vae.sample(3, seed=1).shape
        TensorShape([3, 784])
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int = 20,
        architecture: str = "mlp",
        hidden_units: Sequence[int] | None = None,
        activation: str = "relu",
        likelihood: str = "bernoulli",
        likelihood_scale: float | str = 1.0,
        estimator: str = "analytic_kl",
        num_samples: int = 1,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spec = ModelConfig(
            latent_dim=latent_dim,
            architecture=architecture,
            hidden_units=hidden_units,
            activation=activation,
            likelihood=likelihood,
            likelihood_scale=likelihood_scale,
            estimator=estimator,
            num_samples=num_samples,
            beta=beta,
            kl_warmup_steps=kl_warmup_steps,
        )
        data_shape = tuple(int(d) for d in data_shape)
        if not data_shape or min(data_shape) < 1:
            raise ValueError(
                "Received an invalid value for `data_shape`, expected one or more positive "
                f"integers. Received: data_shape={data_shape!r}"
            )
        self.data_shape = data_shape
        self.latent_dim = spec.latent_dim
        self.architecture = spec.architecture
        self.hidden_units = spec.hidden_units
        self.activation = spec.activation
        self.likelihood = spec.likelihood
        self.likelihood_scale = spec.likelihood_scale
        self.estimator = spec.estimator
        self.num_samples = spec.num_samples
        self.beta = spec.beta
        self.kl_warmup_steps = spec.kl_warmup_steps
        self.seed = seed

        self.learned_scale = spec.likelihood == "gaussian" and spec.likelihood_scale == "learned"
        self.encoder = build_encoder(
            data_shape, spec.latent_dim, spec.architecture, spec.hidden_units, spec.activation
        )
        self.decoder = build_decoder(
            data_shape,
            spec.latent_dim,
            spec.architecture,
            spec.hidden_units,
            spec.activation,
            spec.likelihood,
            learned_scale=self.learned_scale,
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="reparameterisation_seed")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self.execution_policy: execution.ExecutionPolicy | None = None  # set by `compile`
        self.built = True

    @classmethod
    def from_model_config(
        cls, data_shape: Sequence[int], config: ModelConfig, seed: int | None = None
    ) -> VAE:
        """Build from a `ModelConfig` (what `keras-vae train` does)."""
        return cls(data_shape=data_shape, seed=seed, **vars(config))

    # ----------------------------------------------------------------- building blocks
    def posterior(self, x: tf.Tensor, training: bool = False):
        """q(z|x) as a `tfd.Distribution` with batch shape [batch], event shape [latent_dim]."""
        z_mean, z_stddev = self.encoder(x, training=training)
        return distributions.posterior(z_mean, z_stddev)

    def prior(self):
        """p(z) = N(0, I) as a `tfd.Distribution` with event shape [latent_dim]."""
        return distributions.prior(self.latent_dim)

    def likelihood_from_z(self, z: tf.Tensor, training: bool = False):
        """p(x|z) for z of shape [..., latent_dim]: a distribution over [..., *data_shape]."""
        location, scale = self._likelihood_parameters(z, training)
        return distributions.likelihood(self.likelihood, location, len(self.data_shape), scale)

    def log_likelihood_given_z(self, x: tf.Tensor, z: tf.Tensor, training: bool = False):
        """log p(x|z), [...], for z of shape [..., latent_dim] and x broadcastable to
        [..., *data_shape]: `likelihood_from_z(z).log_prob(x)` in closed form (cheaper; what
        the training and importance-sampling losses use)."""
        location, scale = self._likelihood_parameters(z, training)
        return distributions.log_likelihood(
            self.likelihood, location, x, len(self.data_shape), scale
        )

    def _likelihood_parameters(self, z: tf.Tensor, training: bool):
        """(location, scale) of p(x|z), shaped [..., *data_shape] (scale may be a float)."""
        leading = tf.shape(z)[:-1]
        outputs = self.decoder(tf.reshape(z, [-1, self.latent_dim]), training=training)
        if self.learned_scale:
            location, scale = outputs
        else:
            location, scale = outputs, self.likelihood_scale

        def unflatten(t):
            return tf.reshape(t, tf.concat([leading, self.data_shape], axis=0))

        location = unflatten(location)
        if self.learned_scale:
            scale = unflatten(scale)
        return location, scale

    def elbo_terms(
        self,
        x: tf.Tensor,
        noise: tf.Tensor | None = None,
        training: bool = False,
        layout: BatchLayout | None = None,
    ) -> objectives.ElboTerms:
        """Per-example SGVB terms for a batch; `noise` is [batch, L, latent_dim] or None.

        Without `noise`, it is drawn from the seed generator for the GLOBAL batch and sliced at
        this replica's `layout` (see `keras_vae.noise.replica_normal`), so replicas never
        share draws and the result does not depend on the number of replicas.
        """
        z_mean, z_stddev = self.encoder(x, training=training)
        if noise is None:
            batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
            seed = stateless_seed(self.seed_generator)
            noise = replica_normal(self.num_samples, batch, self.latent_dim, seed, layout)
        else:
            noise = tf.transpose(tf.cast(noise, z_mean.dtype), [1, 0, 2])

        def log_likelihood(z):
            return self.log_likelihood_given_z(x, z, training=training)

        return objectives.elbo_terms(z_mean, z_stddev, noise, log_likelihood, self.estimator)

    def kl_weight(self) -> tf.Tensor:
        """The current KL weight: `beta`, ramped up linearly over `kl_warmup_steps`."""
        optimizer = getattr(self, "optimizer", None)  # None or missing before `compile`
        step = optimizer.iterations if optimizer is not None else 0
        return objectives.kl_weight(self.beta, self.kl_warmup_steps, step)

    # ----------------------------------------------------------------- metrics
    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def _update_metrics(self, terms: objectives.ElboTerms, per_example_loss: tf.Tensor) -> dict:
        values = {
            "loss": per_example_loss,
            "elbo": terms.elbo,
            "reconstruction": terms.reconstruction,
            "kl": terms.kl,
        }
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # ----------------------------------------------------------------- compile and fit
    # Thin overrides: the policy is `keras_vae.execution.ExecutionPolicy`.
    def compile(
        self, optimizer="rmsprop", *, jit_compile="auto", steps_per_execution="auto", **kwargs
    ):
        """`keras.Model.compile`, with fast defaults and `jit_compile=True` working under
        multi-device strategies.

        `jit_compile="auto"` and `steps_per_execution="auto"` (the defaults) pick the settings
        benchmarks/throughput.py found fastest: see `keras_vae.execution.resolve_jit_compile`
        (XLA with a GPU or TPU, and on CPU for the MLP) and
        `keras_vae.execution.resolve_steps_per_execution` (50; 1 with several mirrored
        replicas). Both are saved as given, so a loaded model resolves them again.

        Keras XLA-compiles the whole step, `strategy.run` included, which fails when the
        variables are mirrored over several devices (`MirroredStrategy`,
        `MultiWorkerMirroredStrategy`). There, `jit_compile=True` instead compiles each
        replica's forward and backward pass and leaves the all-reduce and the update outside
        XLA; `self.replica_jit_compile` tells which applies. `steps_per_execution > 1` with
        several mirrored replicas raises a ValueError (a Keras 3 bug, see
        `keras_vae.execution.check_steps_per_execution`). Call inside the strategy's scope.
        """
        policy = execution.ExecutionPolicy.resolve(
            self.distribute_strategy, self.architecture, jit_compile, steps_per_execution
        )
        super().compile(optimizer=optimizer, **policy.compile_arguments(), **kwargs)
        self.execution_policy = policy

    @property
    def replica_jit_compile(self) -> bool:
        """Whether `compile(jit_compile=True)` XLA-compiles each replica's step instead of
        the whole step (under multi-device strategies)."""
        return self.execution_policy is not None and self.execution_policy.replica_jit_compile

    @property
    def compiled_steps_per_execution(self) -> int:
        """`steps_per_execution` as compiled ("auto" resolved), before `fit` adapts it."""
        return self.execution_policy.steps_per_execution

    def get_compile_config(self) -> dict[str, Any]:
        """Keras' compile config, with `jit_compile` and `steps_per_execution` as given."""
        return execution.saved_compile_config(self, super().get_compile_config())

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Recompile a loaded `.keras` file through our `compile` (Keras skips overrides)."""
        execution.compile_from_config(self, config)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, training exactly `steps_per_epoch` steps per epoch.

        Keras runs whole executions of `steps_per_execution` steps while data lasts, so with
        a `steps_per_epoch` that is not a multiple of it, on repeated data, every epoch would
        train extra steps. Here "auto" lowers `steps_per_execution` to a divisor of
        `steps_per_epoch` for this call, and an explicit setting raises a ValueError that says
        how to fix it (`keras_vae.execution.prepare_fit`).

        A dataset of `{"x_steps": xs}` blocks (see `train_step`) runs one block per call.

        Example:
            >>> vae.fit(train.repeat(), epochs=3, steps_per_epoch=117)  # doctest: +SKIP
        """
        execution.prepare_fit(self, x, y, *args, **kwargs)
        return super().fit(x, y, *args, **kwargs)

    # ----------------------------------------------------------------- training
    def train_step(self, data):
        """One optimizer step on a batch, or one per batch of a `{"x_steps": xs}` block.

        A block xs of shape [steps, batch, *data_shape] runs its steps in order in one
        `tf.while_loop` (inside the compiled function: one XLA computation for all of them
        with `jit_compile`), each exactly the step the batch alone would make: same noise,
        same update, same metrics. `keras-vae train` feeds blocks (see
        `keras_vae.execution.stack_steps`) so that no per-step work is left outside the
        compiled loop; one replica only (a mirrored strategy would split the block's axis 0).
        """
        return self._run_steps(data, self._train_on_batch)

    def _train_on_batch(self, x, noise) -> dict[str, tf.Tensor]:
        layout = batch_layout(x)  # outside XLA: it may all-gather the replicas' batch sizes
        compute = execution.per_replica_xla(self, self._gradients)
        terms, per_example_loss, gradients = compute(x, noise, layout)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update_metrics(terms, per_example_loss)

    def _gradients(self, x, noise, layout: BatchLayout):
        """This replica's ELBO terms, per-example losses and gradients of its loss share."""
        with tf.GradientTape() as tape:
            terms = self.elbo_terms(x, noise, training=True, layout=layout)
            per_example_loss = -(terms.reconstruction - self.kl_weight() * terms.kl)
            loss = average_over_global_batch(per_example_loss, layout.global_size, self.losses)
            scaled_loss = self.optimizer.scale_loss(loss)
        return terms, per_example_loss, tape.gradient(scaled_loss, self.trainable_variables)

    def test_step(self, data):
        """The ELBO terms of a batch, or of each batch of a `{"x_steps": xs}` block in turn
        (the same numbers, in one compiled loop; see `train_step`)."""
        return self._run_steps(data, self._test_on_batch)

    def _run_steps(self, data, on_batch) -> dict[str, tf.Tensor]:
        """`on_batch(x, noise)` on a batch, or on each batch of a block in one `tf.while_loop`;
        the logs Keras reduces."""
        steps = execution.stacked_steps(data)
        if steps is None:
            return reducible_logs(on_batch(*_unpack_inputs(data)))

        def body(index):
            on_batch(tf.cast(steps[index], tf.float32), None)
            return (index + 1,)

        tf.while_loop(lambda index: index < tf.shape(steps)[0], body, (tf.constant(0),))
        return reducible_logs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _test_on_batch(self, x, noise) -> dict[str, tf.Tensor]:
        terms = self.elbo_terms(x, noise, training=False, layout=batch_layout(x))
        per_example_loss = -(terms.reconstruction - self.kl_weight() * terms.kl)
        return self._update_metrics(terms, per_example_loss)

    # ----------------------------------------------------------------- inference
    def call(self, inputs, training: bool = False):
        """Deterministic reconstruction: E[x|z] at z = the posterior mean."""
        x, _ = _unpack_inputs(inputs)
        z_mean, _ = self.encoder(x, training=training)
        return self.decode(z_mean, training=training)

    def encode(self, x, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(z_mean, z_stddev) of q(z|x), each [batch, latent_dim]."""
        return self.encoder(tf.cast(x, tf.float32), training=training)

    def decode(self, z, training: bool = False) -> tf.Tensor:
        """E[x|z]: Bernoulli probabilities or the Gaussian mean, [batch, *data_shape]."""
        outputs = self.decoder(tf.cast(z, tf.float32), training=training)
        location = outputs[0] if self.learned_scale else outputs
        return distributions.likelihood_mean(self.likelihood, location)

    def reconstruct(self, x) -> tf.Tensor:
        """Same as `call`: the decoder mean at the posterior mean."""
        return self(x, training=False)

    def sample(self, num_samples: int, seed: int | None = None) -> tf.Tensor:
        """E[x|z] for `num_samples` draws z ~ p(z); the same integer seed gives the same draws."""
        z = keras.random.normal(
            (num_samples, self.latent_dim), seed=self.seed_generator if seed is None else seed
        )
        return self.decode(z)

    # ----------------------------------------------------------------- evaluation
    # Thin: importance sampling lives in `keras_vae.importance`.
    def log_likelihood(
        self,
        x,
        num_samples: int = 5000,
        chunk_size: int | None = None,
        seed: int | Sequence[int] | None = None,
        noise=None,
        jit_compile: bool | str = "auto",
    ) -> tf.Tensor:
        """Importance-weighted estimate of log p(x) per example, in nats, shape [batch]
        (Burda et al., 2015; `keras_vae.importance.importance_weighted_terms` tells the
        arguments).

        Example:
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.log_likelihood(tf.zeros((3, 4)), num_samples=100, seed=0).shape
            TensorShape([3])
        """
        return self.importance_weighted_terms(
            x, num_samples, chunk_size, seed, noise, jit_compile
        ).log_likelihood

    def importance_weighted_terms(
        self,
        x,
        num_samples: int = 5000,
        chunk_size: int | None = None,
        seed: int | Sequence[int] | None = None,
        noise=None,
        jit_compile: bool | str = "auto",
    ) -> objectives.ImportanceWeightedTerms:
        """Importance-weighted log p(x), the K-sample ELBO and the Monte Carlo error, per
        example: `keras_vae.importance.importance_weighted_terms` of this model."""
        return importance.importance_weighted_terms(
            self, x, num_samples, chunk_size, seed, noise, jit_compile
        )

    def default_chunk_size(self, batch_size: int) -> int:
        """Importance samples per chunk (`keras_vae.importance.default_chunk_size`)."""
        return importance.default_chunk_size(self, batch_size)

    # ----------------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "data_shape": list(self.data_shape),
            "latent_dim": self.latent_dim,
            "architecture": self.architecture,
            "hidden_units": list(self.hidden_units),
            "activation": self.activation,
            "likelihood": self.likelihood,
            "likelihood_scale": self.likelihood_scale,
            "estimator": self.estimator,
            "num_samples": self.num_samples,
            "beta": self.beta,
            "kl_warmup_steps": self.kl_warmup_steps,
            "seed": self.seed,
        }
