"""`VAE`: a `keras.Model` whose `train_step` maximises the SGVB estimate of the ELBO.

>>> import numpy as np, keras
>>> vae = VAE(data_shape=(8, 8), latent_dim=2, hidden_units=(32,))
>>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> history = vae.fit(np.random.rand(64, 8, 8), batch_size=16, epochs=1, verbose=0)
>>> sorted(history.history)
['elbo', 'kl', 'loss', 'reconstruction']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae import device_data, distributions, execution, importance, objectives, scores
from keras_vae.compat import reducible_logs
from keras_vae.config import ModelConfig
from keras_vae.networks import build_decoder, build_encoder
from keras_vae.noise import replica_normal, stateless_seed
from keras_vae.parts import build_posterior, build_prior, priors
from keras_vae.replicas import BatchLayout, average_over_global_batch, batch_layout

METRIC_NAMES = ("loss", "elbo", "reconstruction", "kl")
IWAE_METRIC = "iwae"  # the importance-weighted bound, reported by models trained on it
DREG_LOSS = "dreg_loss"  # the per-example DReG surrogate's negative (not a metric)


def metric_names(objective: str) -> tuple[str, ...]:
    """The metrics `fit` and `evaluate` report for an objective ("elbo" or "iwae")."""
    return (*METRIC_NAMES, IWAE_METRIC) if objective == "iwae" else METRIC_NAMES


def _batch_size(x) -> int | tf.Tensor:
    """Axis 0 of a batch: static where known."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) and shape[0] is not None:
        return int(shape[0])
    return tf.shape(x)[0]


LABEL_KEY = "label"  # the labels of a conditional model's dict inputs


def _unpack_inputs(data: Any) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None]:
    """(x, labels or None, noise or None) from x, (x,), (x, y[, w]) or
    {"x": x, "label": y, "noise": eps}."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    noise, labels = None, y
    if isinstance(x, dict):
        noise = x.get("noise")
        labels = x.get(LABEL_KEY, labels)
        x = x["x"]
    return tf.cast(x, tf.float32), labels, noise


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """Variational autoencoder trained with the SGVB estimator (Kingma & Welling, 2014).

    By default q(z|x) is a diagonal Gaussian, p(z) = N(0, I) and p(x|z) a Bernoulli or
    Gaussian over all data dimensions; `fit` maximises the ELBO (minimises `loss` =
    -(reconstruction - beta * kl)) and reports, per example in nats, `loss`, `elbo`,
    `reconstruction` (E_q log p(x|z)) and `kl`. The latent parts can be swapped
    (`keras_vae.parts`): an IAF posterior, a VampPrior or a mixture prior, and the IWAE bound
    as the objective (then also reported as `iwae`). Inputs may be vectors, HxW or HxWxC,
    with or without labels (ignored). Pass
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
        estimator: "analytic_kl", "monte_carlo", "analytic_entropy" or "auto" (default:
            analytic_kl where it applies, else analytic_entropy, else monte_carlo).
        num_samples: L, samples of z per datapoint (k for the iwae objective). Default 1.
        beta: KL weight. Default 1.0.
        kl_warmup_steps: linear warm-up of the KL weight over this many steps. Default 0.
        posterior: "gaussian" (default) or "iaf".
        flow_steps: IAF steps (iaf only). Default 2.
        flow_hidden_units: hidden widths of each IAF step's MADE. Default (128, 128).
        prior: "normal" (default), "vamp" or "mixture".
        prior_components: K of the vamp (default 500) or mixture (default 10) prior.
        objective: "elbo" (default) or "iwae".
        gradient_estimator: "standard" (default) or "dreg" (iwae, gaussian posterior).
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
        estimator: str = "auto",
        num_samples: int = 1,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        posterior: str = "gaussian",
        flow_steps: int | None = None,
        flow_hidden_units: Sequence[int] | None = None,
        prior: str = "normal",
        prior_components: int | None = None,
        objective: str = "elbo",
        gradient_estimator: str = "standard",
        conditional: bool = False,
        num_classes: int | None = None,
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
            posterior=posterior,
            flow_steps=flow_steps,
            flow_hidden_units=flow_hidden_units,
            prior=prior,
            prior_components=prior_components,
            objective=objective,
            gradient_estimator=gradient_estimator,
            conditional=bool(conditional or num_classes),
            num_classes=num_classes or None,
        )
        if spec.conditional and spec.num_classes is None:
            raise ValueError(
                "A conditional VAE needs `num_classes`, the number of classes K (labels lie in "
                "[0, K)). Received: num_classes=None"
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
        self.posterior_name = spec.posterior
        self.flow_steps = spec.flow_steps
        self.flow_hidden_units = spec.flow_hidden_units
        self.prior_name = spec.prior
        self.prior_components = spec.prior_components
        self.objective = spec.objective
        self.gradient_estimator = spec.gradient_estimator
        self.num_classes = spec.num_classes or 0  # 0: unconditional
        self.seed = seed

        self.learned_scale = spec.likelihood == "gaussian" and spec.likelihood_scale == "learned"
        self.posterior_layer = build_posterior(
            spec.posterior, spec.latent_dim, spec.flow_steps, spec.flow_hidden_units
        )
        self.prior_layer = build_prior(
            spec.prior, spec.latent_dim, spec.prior_components, data_shape
        )
        self.encoder = build_encoder(
            data_shape,
            spec.latent_dim,
            spec.architecture,
            spec.hidden_units,
            spec.activation,
            context_units=self.posterior_layer.context_units,
            num_classes=self.num_classes,
        )
        self.decoder = build_decoder(
            data_shape,
            spec.latent_dim,
            spec.architecture,
            spec.hidden_units,
            spec.activation,
            spec.likelihood,
            learned_scale=self.learned_scale,
            num_classes=self.num_classes,
        )
        self.seed_generator = keras.random.SeedGenerator(seed, name="reparameterisation_seed")
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in metric_names(spec.objective)
        }
        self.execution_policy: execution.ExecutionPolicy | None = None  # set by `compile`
        self.built = True

    @classmethod
    def from_model_config(
        cls,
        data_shape: Sequence[int],
        config: ModelConfig,
        seed: int | None = None,
        num_classes: int | None = None,
    ) -> VAE:
        """Build from a `ModelConfig` (what `keras-vae train` does); a conditional config
        without `num_classes` takes `num_classes` (the data's)."""
        values = vars(config)
        if config.conditional and config.num_classes is None:
            values = {**values, "num_classes": num_classes}
        return cls(data_shape=data_shape, seed=seed, **values)

    @property
    def conditional(self) -> bool:
        """Whether q(z|x, y) and p(x|z, y) take the class label y."""
        return self.num_classes > 0

    # ----------------------------------------------------------------- building blocks
    def checked_labels(self, labels, batch=None) -> tf.Tensor | None:
        """int32 labels [batch] for a conditional model (None for an unconditional one);
        a `ValueError` when they are missing or, where they are known (eager), not integers
        in [0, num_classes)."""
        if not self.conditional:
            return None
        if labels is None:
            raise ValueError(
                f"This VAE is conditional ({self.num_classes} classes): pass the labels, e.g. "
                "fit on (x, y) pairs or {'x': x, 'label': y}, encode(x, labels), "
                "decode(z, labels), sample(n, labels=...)."
            )
        if not tf.is_tensor(labels) or tf.executing_eagerly():
            values = np.asarray(labels)
            if values.dtype.kind not in "iu" and not (
                values.dtype.kind == "f"
                and np.all(np.isfinite(values))
                and np.all(values == np.round(values))
            ):
                raise ValueError(
                    "Labels must be integer class indices in "
                    f"[0, {self.num_classes}). Received: dtype {values.dtype}"
                )
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"Labels must lie in [0, {self.num_classes}) for this model. Received: "
                    f"labels from {values.min()} to {values.max()}"
                )
            labels = tf.constant(values.astype(np.int32))
            if batch is not None and labels.shape.rank == 0:
                labels = tf.fill([batch], labels)
        return tf.cast(labels, tf.int32)

    def _encoder_inputs(self, x, labels):
        return [x, labels] if self.conditional else x

    def encode_all(self, x: tf.Tensor, training: bool = False, labels=None):
        """(z_mean, z_stddev, context or None): the encoder's Gaussian and, for an IAF
        posterior, the features its flow steps see (`labels` [batch]: conditional models)."""
        labels = self.checked_labels(labels, _batch_size(x))
        outputs = self.encoder(self._encoder_inputs(x, labels), training=training)
        context = outputs[2] if len(outputs) > 2 else None
        return outputs[0], outputs[1], context

    def posterior(self, x: tf.Tensor, training: bool = False, labels=None):
        """q(z|x) as a `tfd.Distribution` with batch shape [batch], event shape [latent_dim]
        (Gaussian posterior only: an IAF's density is `posterior_sample`'s log q)."""
        if self.posterior_name != "gaussian":
            raise ValueError(
                f"The {self.posterior_name} posterior is not a closed-form distribution; use "
                "`posterior_sample(x)`, which returns z and log q(z|x)."
            )
        z_mean, z_stddev, _ = self.encode_all(x, training, labels)
        return distributions.posterior(z_mean, z_stddev)

    def posterior_sample(
        self, x, noise=None, seed: int | None = None, training: bool = False, labels=None
    ):
        """(z, log q(z|x)), each for one draw per example: z [batch, latent_dim], log q
        [batch]; `noise` [batch, latent_dim] standard normal draws (default: drawn)."""
        x = tf.cast(x, tf.float32)
        z_mean, z_stddev, context = self.encode_all(x, training, labels)
        if noise is None:
            noise = keras.random.normal(
                tf.shape(z_mean), seed=self.seed_generator if seed is None else seed
            )
        noise = tf.cast(noise, z_mean.dtype)[tf.newaxis]
        z, log_q = self.posterior_layer.sample(z_mean, z_stddev, noise, context)
        return z[0], log_q[0]

    def prior_parameters(self, training: bool = False) -> priors.MixtureParams:
        """p(z) as a Gaussian mixture's `MixtureParams` (the VampPrior encodes its
        pseudo-inputs: call once per batch)."""

        def encode(u):
            # a conditional VampPrior's pseudo-input k has the fixed label k mod num_classes
            labels = None
            if self.conditional:
                labels = tf.range(tf.shape(u)[0]) % self.num_classes
            z_mean, z_stddev, _ = self.encode_all(u, training, labels)
            return z_mean, z_stddev

        return self.prior_layer.components(encode if self.prior_layer.uses_encoder else None)

    def prior(self):
        """p(z) as a `tfd.Distribution` with event shape [latent_dim]: N(0, I), or the
        learned Gaussian mixture (`tfd.MixtureSameFamily`) of a vamp or mixture prior."""
        return self.prior_layer.distribution(self.prior_parameters())

    def likelihood_from_z(self, z: tf.Tensor, training: bool = False, labels=None):
        """p(x|z) for z of shape [..., latent_dim]: a distribution over [..., *data_shape]."""
        location, scale = self._likelihood_parameters(z, training, labels)
        return distributions.likelihood(self.likelihood, location, len(self.data_shape), scale)

    def log_likelihood_given_z(
        self, x: tf.Tensor, z: tf.Tensor, training: bool = False, labels=None
    ):
        """log p(x|z), [...], for z of shape [..., latent_dim] and x broadcastable to
        [..., *data_shape]: `likelihood_from_z(z).log_prob(x)` in closed form (cheaper; what
        the training and importance-sampling losses use)."""
        location, scale = self._likelihood_parameters(z, training, labels)
        return distributions.log_likelihood(
            self.likelihood, location, x, len(self.data_shape), scale
        )

    def _likelihood_parameters(self, z: tf.Tensor, training: bool, labels=None):
        """(location, scale) of p(x|z[, y]), shaped [..., *data_shape] (scale may be a float);
        `labels` [batch] for z [..., batch, latent_dim] (repeated over the leading axes)."""
        leading = tf.shape(z)[:-1]
        flat = tf.reshape(z, [-1, self.latent_dim])
        inputs = flat
        if self.conditional:
            labels = self.checked_labels(labels)
            repeats = tf.shape(flat)[0] // tf.maximum(tf.shape(labels)[0], 1)
            inputs = [flat, tf.tile(labels, [repeats])]
        outputs = self.decoder(inputs, training=training)
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

    def latent_terms(
        self,
        x: tf.Tensor,
        noise: tf.Tensor | None = None,
        training: bool = False,
        layout: BatchLayout | None = None,
        labels=None,
    ) -> objectives.LatentTerms:
        """log p(x|z), log p(z) and log q(z|x) of L samples per example (and the closed
        forms the estimator uses); `noise` is [batch, L, latent_dim] or None.

        Without `noise`, it is drawn from the seed generator for the GLOBAL batch and sliced at
        this replica's `layout` (see `keras_vae.noise.replica_normal`), so replicas never
        share draws and the result does not depend on the number of replicas.
        """
        labels = self.checked_labels(labels)
        z_mean, z_stddev, context = self.encode_all(x, training, labels)
        if noise is None:
            seed = stateless_seed(self.seed_generator)
            noise = replica_normal(self.num_samples, _batch_size(x), self.latent_dim, seed, layout)
        else:
            noise = tf.transpose(tf.cast(noise, z_mean.dtype), [1, 0, 2])

        def log_likelihood(z):
            return self.log_likelihood_given_z(x, z, training=training, labels=labels)

        if self.estimator == "analytic_kl":  # the paper's model (the config checks)
            return objectives.gaussian_latent_terms(
                z_mean, z_stddev, noise, log_likelihood, self.estimator
            )
        encoded = (z_mean, z_stddev, context)
        prior = self.prior_parameters(training)
        terms = self.sampled_terms(x, encoded, noise, prior, training, labels)
        if self.estimator == "analytic_entropy":
            terms = terms._replace(entropy=self.posterior_layer.entropy(z_stddev))
        return terms

    def sampled_terms(
        self, x, encoded, noise, prior, training: bool = False, labels=None
    ) -> objectives.LatentTerms:
        """log p(x|z), log p(z) and log q(z|x) [L, batch] of the posterior part's draws for
        `noise` [L, batch, latent_dim]: the one definition of an importance weight's parts
        (training and `keras_vae.importance` both use it). `encoded` is `encode_all(x)`,
        `prior` the `prior_parameters()`, each computed once by the caller."""
        z_mean, z_stddev, context = encoded
        z, log_q = self.posterior_layer.sample(z_mean, z_stddev, noise, context)
        log_p = self.prior_layer.log_prob(z, prior)
        log_px = self.log_likelihood_given_z(x, z, training=training, labels=labels)
        frozen = None
        if self.gradient_estimator == "dreg" and training:  # the gaussian posterior (config)
            frozen_q = distributions.posterior(tf.stop_gradient(z_mean), tf.stop_gradient(z_stddev))
            frozen = frozen_q.log_prob(z)
        return objectives.LatentTerms(log_px, log_p, log_q, log_posterior_frozen=frozen)

    def elbo_terms(
        self,
        x: tf.Tensor,
        noise: tf.Tensor | None = None,
        training: bool = False,
        layout: BatchLayout | None = None,
        labels=None,
    ) -> objectives.ElboTerms:
        """Per-example SGVB terms for a batch by the model's estimator (the Monte Carlo ELBO
        of the same samples for an iwae model); `noise` as in `latent_terms`."""
        terms = self.latent_terms(x, noise, training, layout, labels)
        return objectives.elbo_from_terms(terms, self.estimator)

    def objective_values(self, terms: objectives.LatentTerms) -> dict[str, tf.Tensor]:
        """Per-example `loss` (what `fit` minimises, with the current KL weight) and the
        reported metrics, [batch] each."""
        weight = self.kl_weight()
        if self.objective == "iwae":
            bound = objectives.iwae_from_terms(terms, weight)
            return {
                "loss": -bound.tempered_bound,
                "elbo": bound.elbo,
                "reconstruction": bound.reconstruction,
                "kl": bound.kl,
                IWAE_METRIC: bound.bound,
                **(
                    {DREG_LOSS: -objectives.dreg_surrogate(terms, weight)}
                    if terms.log_posterior_frozen is not None
                    else {}
                ),
            }
        elbo = objectives.elbo_from_terms(terms, self.estimator)
        return {
            "loss": -(elbo.reconstruction - weight * elbo.kl),
            "elbo": elbo.elbo,
            "reconstruction": elbo.reconstruction,
            "kl": elbo.kl,
        }

    def kl_weight(self) -> tf.Tensor:
        """The current KL weight: `beta`, ramped up linearly over `kl_warmup_steps`."""
        optimizer = getattr(self, "optimizer", None)  # None or missing before `compile`
        step = optimizer.iterations if optimizer is not None else 0
        return objectives.kl_weight(self.beta, self.kl_warmup_steps, step)

    # ----------------------------------------------------------------- metrics
    @property
    def metric_names_reported(self) -> tuple[str, ...]:
        """The per-example quantities written to metrics.json as train_*/test_* (all but
        `loss`): elbo, kl, reconstruction, and iwae for an iwae model."""
        return tuple(name for name in self.trackers if name != "loss")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def _update_metrics(self, values: dict[str, tf.Tensor]) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name])
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
    # Not converted by AutoGraph (Keras' tf.function would convert every function they call):
    # this code has no Python control flow on tensors, and converting it took 1.5 s of the
    # first epoch (benchmarks/profile_train.py).
    @tf.autograph.experimental.do_not_convert
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

    def _train_on_batch(self, x, labels, noise) -> dict[str, tf.Tensor]:
        layout = batch_layout(x)  # outside XLA: it may all-gather the replicas' batch sizes
        compute = execution.per_replica_xla(self, self._gradients)
        values, gradients = compute(x, self.checked_labels(labels), noise, layout)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update_metrics(values)

    def _gradients(self, x, labels, noise, layout: BatchLayout):
        """This replica's per-example objective values and the gradients of its loss share
        (the encoder's, with DReG, those of the doubly reparameterized surrogate)."""
        dreg = self.gradient_estimator == "dreg"
        with tf.GradientTape(persistent=dreg) as tape:
            terms = self.latent_terms(x, noise, True, layout, labels)
            values = self.objective_values(terms)
            loss = average_over_global_batch(values["loss"], layout.global_size, self.losses)
            scaled_loss = self.optimizer.scale_loss(loss)
            if dreg:
                surrogate = average_over_global_batch(values[DREG_LOSS], layout.global_size, [])
                scaled_surrogate = self.optimizer.scale_loss(surrogate)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        if dreg:
            encoder = {id(v) for v in self.encoder.trainable_variables}
            chosen = [i for i, v in enumerate(self.trainable_variables) if id(v) in encoder]
            encoder_gradients = tape.gradient(
                scaled_surrogate, [self.trainable_variables[i] for i in chosen]
            )
            for i, gradient in zip(chosen, encoder_gradients):
                gradients[i] = gradient
        values = {k: v for k, v in values.items() if k != DREG_LOSS}
        return values, gradients

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        """The ELBO terms of a batch, or of each batch of a `{"x_steps": xs}` block in turn
        (the same numbers, in one compiled loop; see `train_step`)."""
        return self._run_steps(data, self._test_on_batch)

    def _run_steps(self, data, on_batch) -> dict[str, tf.Tensor]:
        """`on_batch(x, labels, noise)` on a batch, or on each batch of a block in one
        `tf.while_loop`; the logs Keras reduces."""
        block = device_data.block_batches(self, data)
        if block is None:
            return reducible_logs(on_batch(*_unpack_inputs(data)))
        num_steps, batch_at = block

        def body(index):
            x, labels = batch_at(index)
            on_batch(x, labels if self.conditional else None, None)
            return (index + 1,)

        tf.while_loop(lambda index: index < num_steps, body, (tf.constant(0),))
        return reducible_logs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _test_on_batch(self, x, labels, noise) -> dict[str, tf.Tensor]:
        labels = self.checked_labels(labels)
        terms = self.latent_terms(x, noise, False, batch_layout(x), labels)
        return self._update_metrics(self.objective_values(terms))

    # ----------------------------------------------------------------- inference
    def call(self, inputs, training: bool = False):
        """Deterministic reconstruction: E[x|z] at z = the posterior mean (for an IAF, the
        flow of the Gaussian base's mean)."""
        x, labels, _ = _unpack_inputs(inputs)
        labels = self.checked_labels(labels)
        return self.decode(self.central_z(x, labels, training), labels, training=training)

    def central_z(self, x, labels=None, training: bool = False) -> tf.Tensor:
        """The z of zero noise, [batch, latent_dim]: the posterior mean, or its IAF image."""
        z_mean, z_stddev, context = self.encode_all(tf.cast(x, tf.float32), training, labels)
        if self.posterior_name == "gaussian":
            return z_mean
        z, _ = self.posterior_layer.sample(
            z_mean, z_stddev, tf.zeros_like(z_mean)[tf.newaxis], context
        )
        return z[0]

    def encode(self, x, labels=None, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(z_mean, z_stddev) of q(z|x) (q(z|x, y) with `labels` [batch] for a conditional
        model; of its Gaussian base, for an IAF), each [batch, latent_dim]."""
        x = tf.cast(x, tf.float32)
        z_mean, z_stddev, _ = self.encode_all(x, training, labels)
        return z_mean, z_stddev

    def decode(self, z, labels=None, training: bool = False) -> tf.Tensor:
        """E[x|z] (E[x|z, y] with `labels` [batch] or one label for all rows, conditional
        models): Bernoulli probabilities or the Gaussian mean, [batch, *data_shape]."""
        z = tf.cast(z, tf.float32)
        inputs = z
        if self.conditional:
            inputs = [z, self.checked_labels(labels, _batch_size(z))]
        outputs = self.decoder(inputs, training=training)
        location = outputs[0] if self.learned_scale else outputs
        return distributions.likelihood_mean(self.likelihood, location)

    def reconstruct(self, x, labels=None) -> tf.Tensor:
        """Same as `call`: the decoder mean at the posterior mean (with the true `labels` for a
        conditional model)."""
        if self.conditional:
            return self({"x": x, LABEL_KEY: self.checked_labels(labels, _batch_size(x))})
        return self(x, training=False)

    def sample(self, num_samples: int, seed: int | None = None, labels=None) -> tf.Tensor:
        """E[x|z] for `num_samples` draws z ~ p(z); the same integer seed gives the same draws.
        A conditional model needs `labels`: one class for all rows, or one per row."""
        labels = self.checked_labels(labels, num_samples)
        return self.decode(self.sample_prior(num_samples, seed), labels)

    def sample_prior(self, num_samples: int, seed: int | None = None) -> tf.Tensor:
        """`num_samples` draws z ~ p(z), [num_samples, latent_dim] (a mixture: a component
        by a uniform draw, then its Gaussian: `keras_vae.parts.priors.sample_from_noise`)."""
        shape = (num_samples, self.latent_dim)
        if self.prior_name == "normal":
            return keras.random.normal(shape, seed=self.seed_generator if seed is None else seed)
        generator = self.seed_generator if seed is None else keras.random.SeedGenerator(seed)
        noise = keras.random.normal(shape, seed=generator)
        uniform = keras.random.uniform((num_samples,), seed=generator)
        z, _ = priors.sample_from_noise(self.prior_parameters(), noise, uniform)
        return z

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
        labels=None,
    ) -> tf.Tensor:
        """Importance-weighted estimate of log p(x) (log p(x|y) with `labels`, conditional
        models) per example, in nats, shape [batch]
        (Burda et al., 2015; `keras_vae.importance.importance_weighted_terms` tells the
        arguments).

        Example:
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.log_likelihood(tf.zeros((3, 4)), num_samples=100, seed=0).shape
            TensorShape([3])
        """
        return self.importance_weighted_terms(
            x, num_samples, chunk_size, seed, noise, jit_compile, labels
        ).log_likelihood

    def importance_weighted_terms(
        self,
        x,
        num_samples: int = 5000,
        chunk_size: int | None = None,
        seed: int | Sequence[int] | None = None,
        noise=None,
        jit_compile: bool | str = "auto",
        labels=None,
    ) -> objectives.ImportanceWeightedTerms:
        """Importance-weighted log p(x), the K-sample ELBO and the Monte Carlo error, per
        example: `keras_vae.importance.importance_weighted_terms` of this model."""
        return importance.importance_weighted_terms(
            self, x, num_samples, chunk_size, seed, noise, jit_compile, labels
        )

    def score(
        self,
        x,
        num_samples: int = 100,
        seed: int = 0,
        labels=None,
    ) -> scores.Scores:
        """Per-example anomaly scores in nats: `elbo`, importance-weighted `log_likelihood`
        (K = `num_samples`), `reconstruction` and `kl`, each [batch]; deterministic (the same
        x, seed and K give the same numbers whatever else is in the batch):
        `keras_vae.scores.score`.

        Example:
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> vae.score(tf.fill((3, 4), 0.5), num_samples=10).elbo.shape
            TensorShape([3])
        """
        return scores.score(self, x, num_samples, seed, labels)

    def default_chunk_size(self, batch_size: int) -> int:
        """Importance samples per chunk (`keras_vae.importance.default_chunk_size`)."""
        return importance.default_chunk_size(self, batch_size)

    # ----------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, preset: str | os.PathLike) -> VAE:
        """A trained VAE from a preset: a name of `keras_vae.list_presets()` (shipped in the
        package: no download), a preset folder (``config.json``, ``model.weights.h5``,
        ``metadata.json``), or an ``hf://`` / ``kaggle://`` handle fetched by keras-hub's
        loader (needs keras-hub and the network; untested offline). See
        `keras_vae.presets`.

        Raises:
            ValueError: the preset is unknown, or a file is missing, corrupt or does not fit
                the others (`keras_vae.presets.PresetError`, naming the file and the fix).

        Example:
            >>> vae = VAE.from_preset("mnist_vae_quick")
            >>> vae.data_shape, vae.latent_dim
            ((28, 28), 20)
        """
        from keras_vae.presets import load_preset

        model = load_preset(preset).model
        if not isinstance(model, cls):
            raise ValueError(
                f"The preset holds a {type(model).__name__}, not a {cls.__name__}. "
                f"Received: preset={preset!r}"
            )
        return model

    def save_to_preset(self, preset_dir: str | os.PathLike) -> Path:
        """Write this VAE as a preset folder (`keras_vae.presets.save_preset`): its config,
        float32 weights (no optimizer state) and metadata, atomically, into a missing or
        empty folder or over a preset keras-vae wrote (any other folder is refused).

        Example:
            >>> import tempfile, pathlib
            >>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,))
            >>> folder = vae.save_to_preset(pathlib.Path(tempfile.mkdtemp()) / "tiny")
            >>> VAE.from_preset(folder).get_config() == vae.get_config()
            True
        """
        from keras_vae.presets import save_preset

        return save_preset(self, preset_dir)

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
            "posterior": self.posterior_name,
            "flow_steps": self.flow_steps,
            "flow_hidden_units": list(self.flow_hidden_units),
            "prior": self.prior_name,
            "prior_components": self.prior_components,
            "objective": self.objective,
            "gradient_estimator": self.gradient_estimator,
            "conditional": self.conditional,
            "num_classes": self.num_classes or None,
            "seed": self.seed,
        }
