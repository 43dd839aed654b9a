"""How much memory training a config needs, estimated before anything is built, and the
refusal of what cannot fit (`RuntimeConfig.memory_limit_mb`).

The estimate counts float32 numbers: the parameters four times (weights, gradients, Adam's
two moments) and one training step's activations three times (the forward values kept for
the backward pass, their gradients, and a temporary), where the activations are each layer's
outputs for the batch (the decoder's, IAF's and prior's for every one of the
`num_samples` draws, the VampPrior's encoder for its K pseudo-inputs, the mixture prior's
[draws, batch, K, latent] log-densities). It is meant to refuse what is out of reach (a
layer of 65,536 x 65,536 units, K = 100,000 components of 65,536 dimensions), not to
predict the allocator to the byte.

    >>> from keras_vae.config import Config
    >>> estimate = training_memory(Config(), (28, 28))
    >>> estimate.parameters
    652824
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any, cast

from keras_vae.config import Config, ModelConfig
from keras_vae.limits import parse_widths
from keras_vae.registration import VAE_REGISTERED_NAME

FLOAT_BYTES = 4
PARAMETER_COPIES = 4  # weights, gradients, Adam's first and second moments
ACTIVATION_COPIES = 3  # forward values kept for backward, their gradients, a temporary
AUTO_FRACTION = 0.5  # memory_limit_mb="auto": half of the machine's memory


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """The estimate for one config: parameters and floats of one step's activations."""

    parameters: int
    activations: int

    @property
    def total_bytes(self) -> int:
        """The bytes of all copies of the parameters and the activations."""
        floats = PARAMETER_COPIES * self.parameters + ACTIVATION_COPIES * self.activations
        return FLOAT_BYTES * floats


def _dense(widths: Sequence[int]) -> int:
    """Parameters of a chain of Dense layers through `widths` (kernels and biases)."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def _hidden(widths: Sequence[int], activation: str) -> int:
    """Parameters of hidden Dense layers (doubled for `GatedDense`: a linear part and a gate)."""
    return _dense(widths) * (2 if activation == "gated" else 1)


def _channels(data_shape: Sequence[int]) -> int:
    """The channels of an example: its third axis, or 1 for a [height, width] image."""
    return int(data_shape[2]) if len(data_shape) == 3 else 1


def _conv_parts(data_shape: Sequence[int], filters: Sequence[int]) -> tuple[int, int, int]:
    """(parameters, activations per example, flattened features) of the conv encoder or
    decoder: 3x3 kernels, a stride of 2 per block."""
    height, width, channels = int(data_shape[0]), int(data_shape[1]), _channels(data_shape)
    parameters = activations = 0
    for count in filters:
        parameters += 9 * channels * count + count
        height, width, channels = math.ceil(height / 2), math.ceil(width / 2), count
        activations += height * width * count
    return parameters, activations, height * width * channels


def training_memory(config: Config, data_shape: Sequence[int]) -> MemoryEstimate:
    """The memory estimate of training `config` on examples of `data_shape`."""
    model, batch = config.model, config.training.batch_size
    size, latent = math.prod(int(d) for d in data_shape), model.latent_dim
    classes = (model.num_classes or 0) if model.conditional else 0
    draws = model.num_samples
    heads = 2 if model.likelihood == "gaussian" and model.likelihood_scale == "learned" else 1
    hidden = tuple(cast("tuple[int, ...]", model.hidden_units))  # set by ModelConfig
    flow_hidden = tuple(model.flow_hidden_units or ())
    context = flow_hidden[0] if model.posterior == "iaf" and flow_hidden else 0
    if model.architecture == "conv":
        conv, per_example, features = _conv_parts(data_shape, hidden)
        channels = _channels(data_shape)
        encoder = conv + 2 * _dense([features + classes, latent])
        decoder = _dense([latent + classes, features])
        for before, after in zip((hidden[-1], *reversed(hidden)), reversed(hidden)):
            decoder += 9 * before * after + after  # the transposed convolutions
        decoder += heads * (9 * hidden[0] * channels + channels)
        encoder_rows, decoder_rows = per_example, per_example + size * heads
        last = features
    else:
        encoder = _hidden([size + classes, *hidden], model.activation)
        encoder += 2 * _dense([hidden[-1], latent])
        decoder = _hidden([latent + classes, *reversed(hidden)], model.activation)
        decoder += heads * _dense([hidden[0], size])
        encoder_rows, decoder_rows = sum(hidden), sum(hidden) + size * heads
        last = hidden[-1]
    encoder += _hidden([last, context], model.activation) if context else 0
    steps, flow = model.flow_steps or 0, 0
    if steps:  # each step's MADE: hidden layers, context kernel, shift and log-scale heads
        made = _dense([latent, *flow_hidden]) + context * flow_hidden[0]
        flow = steps * (made + 2 * _dense([flow_hidden[-1], latent]))
    components = model.prior_components or 0
    prior = {"mixture": components * (2 * latent + 1), "vamp": components * size}.get(
        model.prior, 0
    )
    activations = batch * (size + encoder_rows + 2 * latent)
    activations += batch * draws * (decoder_rows + latent * (1 + steps) + steps * sum(flow_hidden))
    if model.prior == "vamp":
        activations += components * (size + encoder_rows + 2 * latent)
        activations += batch * draws * components
    elif model.prior == "mixture":
        activations += batch * draws * components * latent
    return MemoryEstimate(encoder + decoder + flow + prior, activations)


def memory_limit_bytes(setting: int | str) -> int | None:
    """The byte limit of `RuntimeConfig.memory_limit_mb`: N MB, "auto" (half of the
    machine's memory; None where it cannot be read), or None for 0 (no check).

    Example:
        >>> memory_limit_bytes(0) is None, memory_limit_bytes(2)
        (True, 2097152)
    """
    if setting != "auto":
        return int(setting) * 2**20 or None
    memory = machine_memory_bytes()
    return None if memory is None else int(AUTO_FRACTION * memory)


def machine_memory_bytes() -> int | None:
    """The machine's physical memory in bytes (None where the OS does not say: no sysconf).

    Example:
        >>> (machine_memory_bytes() or 1) > 0
        True
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_training_memory(config: Config, data_shape: Sequence[int]) -> MemoryEstimate:
    """The estimate, after refusing (`ValueError`, one line) a config over its memory limit.

    Example:
        >>> big = Config.from_dict(
        ...     {"model": {"hidden_units": [65536, 65536]}, "runtime": {"memory_limit_mb": 16000}}
        ... )
        >>> check_training_memory(big, (28, 28))
        Traceback (most recent call last):
        ...
        ValueError: Training this model needs about 139.6 GB ...
    """
    estimate = training_memory(config, data_shape)
    limit = memory_limit_bytes(config.runtime.memory_limit_mb)
    if limit is not None and estimate.total_bytes > limit:
        parameter_bytes = PARAMETER_COPIES * FLOAT_BYTES * estimate.parameters
        activation_bytes = ACTIVATION_COPIES * FLOAT_BYTES * estimate.activations
        raise ValueError(
            f"Training this model needs about {_size(estimate.total_bytes)} "
            f"({estimate.parameters:,} parameters: {_size(parameter_bytes)} with their "
            f"gradients and Adam's moments; one step's activations: {_size(activation_bytes)}), "
            f"over the limit of {_size(limit)} (--memory-limit-mb, by default half of this "
            "machine's memory); use fewer or narrower layers, components, samples or a "
            "smaller batch, or raise the limit."
        )
    return estimate


def check_saved_weights_fit(values: Any, weights_bytes: int) -> int:
    """The parameters of the VAE a saved Keras config describes (``{"config":
    VAE.get_config(), ...}``: a preset's config.json, a .keras file's), counted without
    building it, after refusing (`ValueError`, the reason) a config that is not a VAE's or
    whose float32 parameters a weights file of `weights_bytes` cannot hold: a few edited bytes
    of config would otherwise have the model built, gigabytes of it, before any check.

    Example:
        >>> arguments = {"data_shape": [28, 28], "hidden_units": [65536, 65536]}
        >>> saved = {"registered_name": "keras_vae>VAE", "config": arguments}
        >>> check_saved_weights_fit(saved, 2_653_016)
        Traceback (most recent call last):
        ...
        ValueError: it describes a VAE of 8,696,890,168 parameters (34.8 GB of float32), more \
than its 2,653,016-byte weights file holds
    """
    if not isinstance(values, dict) or values.get("registered_name") != VAE_REGISTERED_NAME:
        found = values.get("class_name") if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"it holds a {found}, not a keras_vae VAE")
    try:
        arguments = values["config"]
        data_shape = parse_widths(arguments["data_shape"], "data_shape")
        parameters = training_memory(
            Config(model=ModelConfig.from_arguments(arguments)), data_shape
        ).parameters
    except (TypeError, KeyError, IndexError, OverflowError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise ValueError(f"it is not a saved VAE config ({reason})") from None
    if FLOAT_BYTES * parameters > weights_bytes:
        raise ValueError(
            f"it describes a VAE of {parameters:,} parameters ({_size(FLOAT_BYTES * parameters)} "
            f"of float32), more than its {weights_bytes:,}-byte weights file holds"
        )
    return parameters


def _size(num_bytes: float) -> str:
    """Bytes as people read them: '1.5 GB', '12 MB'.

    Example:
        >>> _size(1.5e9), _size(2**20), _size(9176)
        ('1.5 GB', '1 MB', '9,176 bytes')
    """
    if num_bytes >= 1e9:
        return f"{num_bytes / 1e9:,.1f} GB"
    if num_bytes >= 2**20:
        return f"{num_bytes / 2**20:,.0f} MB"
    return f"{int(num_bytes):,} bytes"
