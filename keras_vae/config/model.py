"""The model section of the config: `ModelConfig`, the VAE's architecture, parts and objective.

Checking a `ModelConfig` also resolves what "auto" and the parts' unset sizes mean, so that
config.json records the model that was built.

    >>> from keras_vae.config import ModelConfig
    >>> config = ModelConfig(posterior="iaf")
    >>> config.estimator, config.flow_steps, config.flow_hidden_units
    ('monte_carlo', 2, (128, 128))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

from keras_vae.config.fields import config_field, document_fields
from keras_vae.limits import (
    MAX_FLOW_STEPS,
    MAX_LAYER_WIDTH,
    MAX_NUM_CLASSES,
    MAX_NUM_SAMPLES,
    MAX_PRIOR_COMPONENTS,
    MAX_STEPS,
    check_at_least,
    check_choice,
    parse_likelihood_scale,
    parse_widths,
)

LIKELIHOODS = ("bernoulli", "gaussian")
ESTIMATORS = ("auto", "analytic_kl", "monte_carlo", "analytic_entropy")
POSTERIORS = ("gaussian", "iaf")
PRIORS = ("normal", "vamp", "mixture")
OBJECTIVES = ("elbo", "iwae")
GRADIENT_ESTIMATORS = ("standard", "dreg")
# Defaults of the parts' sizes where the part has them (else the size is 0).
DEFAULT_FLOW_STEPS = 2
DEFAULT_FLOW_HIDDEN_UNITS = (128, 128)
DEFAULT_PRIOR_COMPONENTS = {"vamp": 500, "mixture": 10}
ARCHITECTURES = ("mlp", "conv")
DEFAULT_HIDDEN_UNITS = {"mlp": (400,), "conv": (32, 64)}


@document_fields
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The VAE: its networks, latent parts, likelihood and objective.

    >>> ModelConfig(latent_dim=2, hidden_units=(256, 128)).hidden_units
    (256, 128)
    >>> ModelConfig(latent_dim=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...latent_dim...
    """

    latent_dim: int = config_field(20, f"size of z, 1 to {MAX_LAYER_WIDTH:,}", flag="--latent-dim")
    architecture: str = config_field(
        "mlp",
        "'mlp' (the paper's) or 'conv' (images HxW or HxWxC)",
        flag="--architecture",
        choices=ARCHITECTURES,
    )
    hidden_units: tuple[int, ...] | None = config_field(
        None,
        "widths of the MLP hidden layers, or the conv filters per stride-2 block, each 1 to "
        f"{MAX_LAYER_WIDTH:,}; on the command line one number or several separated by commas, "
        "e.g. 500 or 400,200",
        flag="--hidden-units",
        default_text="400 for mlp, 32,64 for conv",
    )
    activation: str = config_field(
        "relu",
        "hidden activation, a Keras activation name ('tanh' in the paper), or 'gated' (mlp "
        "only): each hidden layer is (x W + b) * sigmoid(x V + c), as the VampPrior's "
        "GatedDense",
        flag="--activation",
    )
    likelihood: str = config_field(
        "bernoulli", "'bernoulli' (logits) or 'gaussian'", flag="--likelihood", choices=LIKELIHOODS
    )
    likelihood_scale: float | str = config_field(
        1.0,
        "the Gaussian's standard deviation sigma: a fixed positive number, or 'learned' (a "
        "decoder output)",
        flag="--likelihood-scale",
    )
    estimator: str = config_field(
        "auto",
        "how the ELBO is estimated: 'analytic_kl' (the paper's estimator B: closed-form KL, "
        "only for gaussian posterior + normal prior), 'monte_carlo' (estimator A), "
        "'analytic_entropy' (closed-form entropy of q, gaussian posterior only) or 'auto' "
        "(analytic_kl where it applies, else analytic_entropy, else monte_carlo; iwae: "
        "monte_carlo); config.json records the resolved one",
        flag="--estimator",
        choices=ESTIMATORS,
    )
    num_samples: int = config_field(
        1, f"L, samples of z per datapoint, 1 to {MAX_NUM_SAMPLES:,}", flag="--num-samples"
    )
    beta: float = config_field(1.0, "weight of the KL term, >= 0 (1 is the ELBO)", flag="--beta")
    kl_warmup_steps: int = config_field(
        0,
        "optimizer steps over which the KL weight rises linearly from 0 to beta (0: none)",
        flag="--kl-warmup-steps",
    )
    posterior: str = config_field(
        "gaussian",
        "q(z|x): 'gaussian' (diagonal, the paper's) or 'iaf' (an inverse autoregressive flow "
        "on the Gaussian, Kingma et al. 2016)",
        flag="--posterior",
        choices=POSTERIORS,
    )
    flow_steps: int | None = config_field(
        None,
        f"IAF steps, 1 to {MAX_FLOW_STEPS} (iaf only)",
        flag="--flow-steps",
        default_text=f"{DEFAULT_FLOW_STEPS} with iaf, else 0",
    )
    flow_hidden_units: tuple[int, ...] | None = config_field(
        None,
        "hidden widths of each IAF step's MADE network, one number or several separated by "
        "commas (iaf only)",
        flag="--flow-hidden-units",
        default_text=f"{','.join(map(str, DEFAULT_FLOW_HIDDEN_UNITS))} with iaf, else none",
    )
    prior: str = config_field(
        "normal",
        "p(z): 'normal' (N(0, I)), 'vamp' (VampPrior: the mixture of the posteriors of K "
        "learned pseudo-inputs, Tomczak & Welling 2018) or 'mixture' (a learned K-component "
        "diagonal Gaussian mixture)",
        flag="--prior",
        choices=PRIORS,
    )
    prior_components: int | None = config_field(
        None,
        f"K, components of the vamp or mixture prior, 1 to {MAX_PRIOR_COMPONENTS:,}",
        flag="--prior-components",
        default_text=", ".join(f"{n} for {p}" for p, n in DEFAULT_PRIOR_COMPONENTS.items())
        + ", else 0",
    )
    conditional: bool = config_field(
        False,
        "condition on the class label: q(z|x, y) and p(x|z, y), trained on (image, label) "
        "pairs, sampled per class (the data must have labels)",
        flag="--conditional",
    )
    num_classes: int | None = config_field(
        None,
        f"K, the number of classes of a conditional model, 1 to {MAX_NUM_CLASSES:,}; labels "
        "must lie in [0, K)",
        flag="--num-classes",
        default_text="1 + the largest label in the data",
    )
    objective: str = config_field(
        "elbo",
        "'elbo' (the SGVB bound) or 'iwae' (the importance-weighted bound of Burda et al. "
        "2015 with k = num_samples importance samples per datapoint)",
        flag="--objective",
        choices=OBJECTIVES,
    )

    gradient_estimator: str = config_field(
        "standard",
        "the encoder's gradient: 'standard' (of the objective as written) or 'dreg' (iwae with "
        "the gaussian posterior: the doubly reparameterized estimator of Tucker et al. 2018, "
        "unbiased and of lower variance as k grows; the decoder's gradient is unchanged)",
        flag="--gradient-estimator",
        choices=GRADIENT_ESTIMATORS,
    )

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        units: tuple[int, ...] | int | None = self.hidden_units  # one width in the loop below
        if units is None:
            units = DEFAULT_HIDDEN_UNITS[self.architecture]
        object.__setattr__(self, "hidden_units", parse_widths(units))
        object.__setattr__(self, "likelihood_scale", parse_likelihood_scale(self.likelihood_scale))
        check_at_least("latent_dim", self.latent_dim, 1, maximum=MAX_LAYER_WIDTH)
        for units in cast("tuple[int, ...]", self.hidden_units):  # parsed just above
            check_at_least("hidden_units", units, 1, maximum=MAX_LAYER_WIDTH)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.activation == "gated" and self.architecture != "mlp":
            raise ValueError(
                "The 'gated' activation makes gated dense layers, which only the mlp "
                "architecture has; use --architecture mlp or another activation. Received: "
                f"activation='gated', architecture={self.architecture!r}"
            )
        check_at_least("num_samples", self.num_samples, 1, maximum=MAX_NUM_SAMPLES)
        check_at_least("beta", self.beta, 0, integer=False)
        check_at_least("kl_warmup_steps", self.kl_warmup_steps, 0, maximum=MAX_STEPS)
        self._resolve_parts()
        if not isinstance(self.conditional, bool):
            raise ValueError(
                "Received an invalid value for `conditional`, expected True or False. "
                f"Received: conditional={self.conditional!r}"
            )
        if self.num_classes is not None:
            if not self.conditional:
                raise ValueError(
                    "--num-classes sizes a conditional model; add --conditional or drop it. "
                    f"Received: num_classes={self.num_classes!r}"
                )
            check_at_least("num_classes", self.num_classes, 1, maximum=MAX_NUM_CLASSES)

    def _resolve_parts(self) -> None:
        """Check the parts fit together; resolve "auto" and the part sizes' defaults."""
        check_choice("posterior", self.posterior, POSTERIORS)
        check_choice("prior", self.prior, PRIORS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("estimator", self.estimator, ESTIMATORS)
        iaf = self.posterior == "iaf"
        steps, units = self.flow_steps, self.flow_hidden_units
        if iaf:
            steps = DEFAULT_FLOW_STEPS if steps is None else steps
            check_at_least("flow_steps", steps, 1, maximum=MAX_FLOW_STEPS)
            units = parse_widths(
                DEFAULT_FLOW_HIDDEN_UNITS if units is None else units, "flow_hidden_units"
            )
            for width in units:
                check_at_least("flow_hidden_units", width, 1, maximum=MAX_LAYER_WIDTH)
        else:
            if steps not in (None, 0) or units not in (None, (), []):
                raise ValueError(
                    "--flow-steps and --flow-hidden-units size the IAF posterior; add "
                    "--posterior iaf or drop them. Received: posterior="
                    f"{self.posterior!r}, flow_steps={steps!r}, flow_hidden_units={units!r}"
                )
            steps, units = 0, ()
        object.__setattr__(self, "flow_steps", steps)
        object.__setattr__(self, "flow_hidden_units", tuple(units))
        components = self.prior_components
        if self.prior in DEFAULT_PRIOR_COMPONENTS:
            components = DEFAULT_PRIOR_COMPONENTS[self.prior] if components is None else components
            check_at_least("prior_components", components, 1, maximum=MAX_PRIOR_COMPONENTS)
        elif components not in (None, 0):
            raise ValueError(
                "--prior-components sizes the vamp and mixture priors; add --prior vamp or "
                f"--prior mixture, or drop it. Received: prior={self.prior!r}, "
                f"prior_components={components!r}"
            )
        else:
            components = 0
        object.__setattr__(self, "prior_components", components)
        object.__setattr__(self, "estimator", self._resolved_estimator())
        check_choice("gradient_estimator", self.gradient_estimator, GRADIENT_ESTIMATORS)
        if self.gradient_estimator == "dreg" and (
            self.objective != "iwae" or self.posterior != "gaussian" or self.prior == "vamp"
        ):
            raise ValueError(
                "--gradient-estimator dreg reparameterizes the IWAE's encoder gradient through "
                "a gaussian posterior that alone depends on the encoder; use --objective iwae "
                "with --posterior gaussian and --prior normal or mixture. Received: "
                f"objective={self.objective!r}, posterior={self.posterior!r}, "
                f"prior={self.prior!r}"
            )

    def _resolved_estimator(self) -> str:
        """`estimator` with "auto" resolved; a `ValueError` where it does not apply."""
        closed_kl = self.posterior == "gaussian" and self.prior == "normal"
        closed_entropy = self.posterior == "gaussian"
        if self.objective == "iwae":
            if self.estimator not in ("auto", "monte_carlo"):
                raise ValueError(
                    f"The iwae objective averages importance weights of sampled z, so it has "
                    f"no {self.estimator!r} form; use --estimator monte_carlo (or auto). "
                    f"Received: objective='iwae', estimator={self.estimator!r}"
                )
            return "monte_carlo"
        applicable = [
            name
            for name, ok in (
                ("analytic_kl", closed_kl),
                ("analytic_entropy", closed_entropy),
                ("monte_carlo", True),
            )
            if ok
        ]
        if self.estimator == "auto":
            return applicable[0]
        if self.estimator not in applicable:
            needs = (
                "a closed-form KL(q || p), which only the gaussian posterior with the normal "
                "prior has"
                if self.estimator == "analytic_kl"
                else "a closed-form entropy of q, which the iaf posterior has not"
            )
            raise ValueError(
                f"The {self.estimator} estimator needs {needs}; with posterior="
                f"{self.posterior!r}, prior={self.prior!r} use --estimator "
                f"{' or '.join(applicable)}. Received: estimator={self.estimator!r}"
            )
        return self.estimator

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> ModelConfig:
        """The config of `VAE`'s constructor arguments, or of a saved `VAE.get_config()`
        (other keys ignored; a missing one takes its default, as in an older save): a
        `num_classes` makes the model conditional, as `VAE` does.

        >>> ModelConfig.from_arguments({"num_classes": 10, "name": "vae"}).conditional
        True
        """
        names = [field.name for field in dataclasses.fields(cls)]
        options = {name: arguments[name] for name in names if name in arguments}
        options["conditional"] = bool(options.get("conditional") or options.get("num_classes"))
        options["num_classes"] = options.get("num_classes") or None
        return cls(**options)

    @property
    def default_parts(self) -> bool:
        """Whether this is the paper's model: gaussian posterior, normal prior, the ELBO.

        >>> ModelConfig().default_parts, ModelConfig(objective="iwae").default_parts
        (True, False)
        """
        return self.posterior == "gaussian" and self.prior == "normal" and self.objective == "elbo"
