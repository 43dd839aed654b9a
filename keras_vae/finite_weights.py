"""`check_finite_weights`: a model read back from a file (a run's model.keras, a preset's
model.weights.h5) must hold no NaN or infinite weight.

Such a file loads without complaint and then reports numbers that look plausible: a NaN in a
ReLU layer's kernel comes out of the ReLU as 0, so a preset with one NaN-filled kernel gave a
finite test log-likelihood of -546 nats. A diverged training or a damaged file is refused
instead, naming how many weights are not finite and the first variable that holds one.

    >>> import numpy as np
    >>> from keras_vae.model import VAE
    >>> model = VAE(data_shape=(4,), latent_dim=1, hidden_units=(3,))
    >>> check_finite_weights(model)  # a fresh model: nothing to say
    >>> _ = model.decoder.weights[0].assign(np.full((1, 3), np.nan, "float32"))
    >>> check_finite_weights(model)
    Traceback (most recent call last):
    ...
    ValueError: 3 of its 45 weights are NaN or infinite, the first in decoder/hidden_0/kernel: ...
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_finite_weights(model: Any) -> None:
    """Raise `ValueError` (the count, the first variable's path, the likely cause) unless
    every floating-point weight of the Keras `model` is finite."""
    owner = {id(w): layer.name for layer in model.layers for w in layer.weights}
    bad = total = 0
    first = ""
    for weight in model.weights:
        values = np.asarray(weight.numpy())
        total += values.size
        if not np.issubdtype(values.dtype, np.floating):
            continue
        count = values.size - int(np.count_nonzero(np.isfinite(values)))
        if count and not first:
            first = "/".join(filter(None, (owner.get(id(weight)), weight.path)))
        bad += count
    if bad:
        raise ValueError(
            f"{bad:,} of its {total:,} weights are NaN or infinite, the first in {first}: the "
            "training diverged or the file was changed"
        )
