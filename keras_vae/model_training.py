"""How a `VAE` learns: the objective of a batch, the train and test steps, the metrics.

`TrainingMixin` is the part of `keras_vae.model.VAE` that `fit` and `evaluate` run (what a
trained model is used through is `keras_vae.model_inference.InferenceMixin`):
`latent_terms` gathers log p(x|z), log p(z) and log q(z|x) of a batch's samples, the objective
(`keras_vae.objectives`) turns them into the loss and the reported metrics, and `train_step` /
`test_step` run one batch, or a block of batches in one compiled loop.

>>> import numpy as np, keras
>>> from keras_vae.model import VAE
>>> vae = VAE(data_shape=(4,), latent_dim=2, hidden_units=(8,), objective="iwae", num_samples=3)
>>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
>>> sorted(vae.evaluate(np.random.rand(8, 4), verbose=0, return_dict=True))
['elbo', 'iwae', 'kl', 'loss', 'reconstruction']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from keras_vae import device_data, distributions, execution, objectives
from keras_vae.compat import reducible_logs
from keras_vae.model_attributes import VAEMixinBase
from keras_vae.model_inference import batch_size_of, unpack_inputs
from keras_vae.noise import replica_normal, stateless_seed
from keras_vae.parts.priors import MixtureParams
from keras_vae.replicas import BatchLayout, average_over_global_batch, batch_layout
from keras_vae.tensor_types import LabelsLike

METRIC_NAMES = ("loss", "elbo", "reconstruction", "kl")
IWAE_METRIC = "iwae"  # the importance-weighted bound, reported by models trained on it
DREG_LOSS = "dreg_loss"  # the per-example DReG surrogate's negative (not a metric)


def metric_names(objective: str) -> tuple[str, ...]:
    """The metrics `fit` and `evaluate` report for an objective ("elbo" or "iwae")."""
    return (*METRIC_NAMES, IWAE_METRIC) if objective == "iwae" else METRIC_NAMES


class TrainingMixin(VAEMixinBase):
    """`VAE`'s objective, steps and metrics (mixed into `keras_vae.model.VAE`)."""

    # The host class, `VAE`, sets these: `InferenceMixin`'s methods.
    checked_labels: Callable[..., tf.Tensor | None]
    encode_all: Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]]
    log_likelihood_given_z: Callable[..., tf.Tensor]
    prior_parameters: Callable[..., MixtureParams]

    def latent_terms(
        self,
        x: tf.Tensor,
        noise: tf.Tensor | None = None,
        training: bool = False,
        layout: BatchLayout | None = None,
        labels: LabelsLike = None,
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
            noise = replica_normal(
                self.num_samples, batch_size_of(x), self.latent_dim, seed, layout
            )
        else:
            noise = tf.transpose(tf.cast(noise, z_mean.dtype), [1, 0, 2])

        def log_likelihood(z: tf.Tensor) -> tf.Tensor:
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
        self,
        x: tf.Tensor,
        encoded: tuple[tf.Tensor, tf.Tensor, tf.Tensor | None],
        noise: tf.Tensor,
        prior: MixtureParams,
        training: bool = False,
        labels: LabelsLike = None,
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

    def elbo_terms(self, x: tf.Tensor, *args: Any, **kwargs: Any) -> objectives.ElboTerms:
        """Per-example SGVB terms for a batch by the model's estimator (the Monte Carlo ELBO
        of the same samples for an iwae model); the arguments are `latent_terms`'."""
        terms = self.latent_terms(x, *args, **kwargs)
        return objectives.elbo_from_terms(terms, self.estimator)

    # the real arguments (mypy: a function has no such attribute)
    elbo_terms.__signature__ = inspect.signature(latent_terms).replace(  # type: ignore[attr-defined]
        return_annotation="objectives.ElboTerms"
    )

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

    # ----------------------------------------------------------------- training
    # Not converted by AutoGraph (Keras' tf.function would convert every function they call):
    # this code has no Python control flow on tensors, and converting it took 1.5 s of the
    # first epoch (benchmarks/profile_train.py).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimizer step on a batch, or one per batch of a `{"x_steps": xs}` block.

        A block xs of shape [steps, batch, *data_shape] runs its steps in order in one
        `tf.while_loop` (inside the compiled function: one XLA computation for all of them
        with `jit_compile`), each exactly the step the batch alone would make: same noise,
        same update, same metrics. `keras-vae train` feeds blocks (see
        `keras_vae.blocks.stack_steps`) so that no per-step work is left outside the
        compiled loop; one replica only (a mirrored strategy would split the block's axis 0).
        """
        return self._run_steps(data, self._train_on_batch)

    def _train_on_batch(
        self, x: tf.Tensor, labels: tf.Tensor | None, noise: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        layout = batch_layout(x)  # outside XLA: it may all-gather the replicas' batch sizes
        compute = execution.per_replica_xla(self, self._gradients)
        values, gradients = compute(x, self.checked_labels(labels), noise, layout)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update_metrics(values)

    def _gradients(
        self,
        x: tf.Tensor,
        labels: tf.Tensor | None,
        noise: tf.Tensor | None,
        layout: BatchLayout,
    ) -> tuple[dict[str, tf.Tensor], list[tf.Tensor | None]]:
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
    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The ELBO terms of a batch, or of each batch of a `{"x_steps": xs}` block in turn
        (the same numbers, in one compiled loop; see `train_step`)."""
        return self._run_steps(data, self._test_on_batch)

    def _run_steps(
        self,
        data: Any,
        on_batch: Callable[[tf.Tensor, tf.Tensor | None, tf.Tensor | None], dict[str, tf.Tensor]],
    ) -> dict[str, tf.Tensor]:
        """`on_batch(x, labels, noise)` on a batch, or on each batch of a block in one
        `tf.while_loop`; the logs Keras reduces."""
        block = device_data.block_batches(self, data)
        if block is None:
            return reducible_logs(on_batch(*unpack_inputs(data)))
        num_steps, batch_at = block

        def body(index: tf.Tensor) -> tuple[tf.Tensor]:
            x, labels = batch_at(index)
            on_batch(x, labels if self.conditional else None, None)
            return (index + 1,)

        tf.while_loop(lambda index: index < num_steps, body, (tf.constant(0),))
        return reducible_logs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _test_on_batch(
        self, x: tf.Tensor, labels: tf.Tensor | None, noise: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        labels = self.checked_labels(labels)
        terms = self.latent_terms(x, noise, False, batch_layout(x), labels)
        return self._update_metrics(self.objective_values(terms))
