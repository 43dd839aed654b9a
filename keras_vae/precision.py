"""Mixed precision: the Keras dtype policy a run's model is built under.

`--mixed-precision bfloat16` builds the VAE under "mixed_bfloat16", `float16` under
"mixed_float16": hidden layers compute in 16 bits with float32 variables, while the encoder's
and decoder's output layers are float32 (`keras_vae.networks`), so the distribution
parameters, log-likelihoods, KL and loss are float32. Under "mixed_float16" Keras' `compile`
wraps the optimizer in a `LossScaleOptimizer`, and `VAE.train_step` scales the loss with
`optimizer.scale_loss` before differentiating; `apply_gradients` unscales the gradients,
skips steps whose gradients are not finite and adapts the scale.

>>> with dtype_policy("bfloat16") as policy:
...     policy.name
'mixed_bfloat16'
>>> keras.config.dtype_policy().name
'float32'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from keras_vae.config import MIXED_PRECISION
from keras_vae.limits import check_choice

POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def dtype_policy(mixed_precision: str = "none") -> Iterator[keras.DTypePolicy]:
    """Set the global Keras dtype policy for `mixed_precision` while the block runs.

    Layers take the global policy when they are created, so build (and compile) the model
    inside the block; training and saving need nothing more. The previous policy is restored
    on exit, so library callers are not left with a changed global state.

    Args:
        mixed_precision: "none" (float32), "float16" or "bfloat16". Default "none".

    Example:
        >>> with dtype_policy("float16"):
        ...     layer = keras.layers.Dense(2)
        >>> layer.compute_dtype, layer.variable_dtype
        ('float16', 'float32')
    """
    check_choice("mixed_precision", mixed_precision, MIXED_PRECISION)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[mixed_precision])
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)
