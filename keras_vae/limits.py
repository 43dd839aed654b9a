"""The limits every size and seed is checked against, and the checks that say so (no TensorFlow);
also `user_path`, the check of every path a user gives.

Every module that validates an argument (the config, the CLI, evaluation, scoring, the
serving client) uses these, so a limit and its message are written once.

    >>> check_at_least("epochs", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `epochs`, expected an integer >= 1. Received: epochs=0
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MAX_FLOW_STEPS = 64
MAX_PRIOR_COMPONENTS = 100_000
MAX_NUM_CLASSES = 100_000
# Seeds are 0..2**32 - 1, the range of numpy's and `keras.utils.set_random_seed`'s seeds; the
# importance-sampling seed pairs are int32, and these 2**32 seeds are exactly their bit patterns.
MAX_SEED = 2**32 - 1
FLOAT32_MAX = 3.4028234663852886e38  # np.finfo(np.float32).max: larger floats become inf
# Documented maxima of `keras-vae evaluate` (keras_vae.evaluate), here so the CLI's --help can
# quote them without importing TensorFlow.
MAX_IMPORTANCE_SAMPLES = 1_000_000  # K; 200x the standard protocol's 5000
MAX_EVALUATION_BATCH_SIZE = 100_000  # examples per evaluation step
# Upper bounds of the model and training sizes: far above any real VAE, low enough that a
# typo (an extra zero, 1e30) is refused before a tensor of that size is asked for.
MAX_LAYER_WIDTH = 65_536  # latent_dim and each hidden layer's units or filters
MAX_NUM_SAMPLES = 10_000  # L, samples of z per datapoint
MAX_TEMPERATURE = 1_000.0  # a sampler's noise scale T (z ~ N(0, T^2 I) for the prior)
SAMPLERS = ("prior", "aggregate")  # what `VAE.sample` draws z from (keras_vae.latent_draws)
DEFAULT_SAMPLER_COMPONENTS = 10  # the aggregate sampler's mixture (keras_vae.aggregate_sampler)
MAX_SAMPLER_COMPONENTS = 1_000
MAX_COUNT = 2**31 - 1  # epochs, batch size, steps per execution (int32 in TensorFlow)
MAX_STEPS = 2**62  # optimizer steps (the int64 `iterations` counter)


def user_path(name: str, value: Any) -> Path:
    """`value` (a str or `os.PathLike`) as a `Path` with ``~`` expanded, refusing an empty or
    blank one: it would silently mean the working folder.

    >>> user_path("out", "")
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `out`, expected a non-empty path (an empty one \
would mean the working folder: pass . for that). Received: out=''
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a non-empty path (an empty one "
            f"would mean the working folder: pass . for that). Received: {name}={value!r}"
        )
    return Path(os.path.expanduser(text))


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise a `ValueError` naming the argument when `value` is not one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Unknown {name} {value!r}. Expected one of {list(allowed)}. Received: {name}={value!r}"
        )


def check_at_least(
    name: str,
    value: Any,
    minimum: float,
    integer: bool = True,
    maximum: float | None = None,
    exclusive: bool = False,
) -> None:
    """Raise a `ValueError` naming the argument when `value` is out of range.

    `value` must be a number (not a bool) >= `minimum` (> with `exclusive`) and, when given,
    <= `maximum`. Integers must be whole; other numbers must be finite in float32, the
    precision the model computes in: NaN, +-inf and magnitudes above `FLOAT32_MAX` are
    refused.

    Example:

    >>> check_at_least("beta", float("nan"), 0, integer=False)
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `beta`, expected a finite number >= 0. \
Received: beta=nan
    """
    kind = "an integer" if integer else "a finite number"
    bound = f" {'>' if exclusive else '>='} {minimum}"
    if maximum is not None:
        bound = f" in {'(' if exclusive else '['}{minimum}, {maximum}]"
    elif exclusive and minimum == 0:
        kind, bound = ("a positive integer" if integer else "a finite positive number"), ""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    overflow = False
    if ok and isinstance(value, float):
        ok = math.isfinite(value) and (not integer or value.is_integer())
        overflow = ok and not integer and abs(value) > FLOAT32_MAX
    if ok:
        ok = (value > minimum if exclusive else value >= minimum) and not overflow
        ok = ok and (maximum is None or value <= maximum)
    if not ok:
        note = f" (above the float32 maximum {FLOAT32_MAX})" if overflow else ""
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {kind}{bound}{note}. "
            f"Received: {name}={value!r}"
        )


def check_sampler(sampler: Any, temperature: Any) -> float:
    """`temperature` as a float after checking `sampler` is one of `SAMPLERS` and the
    temperature a finite number in (0, `MAX_TEMPERATURE`].

    Example:
        >>> check_sampler("prior", 0.7)
        0.7
    """
    check_choice("sampler", sampler, SAMPLERS)
    check_at_least(
        "temperature", temperature, 0, integer=False, maximum=MAX_TEMPERATURE, exclusive=True
    )
    return float(temperature)


def parse_likelihood_scale(value: Any) -> float | str:
    """`likelihood_scale` is a finite positive float (fixed Gaussian scale) or "learned"."""
    if value == "learned":
        return "learned"
    try:
        scale = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        scale = math.nan
    if not (math.isfinite(scale) and 0 < scale <= FLOAT32_MAX):
        raise ValueError(
            "Received an invalid value for `likelihood_scale`, expected a finite positive "
            f"number or 'learned'. Received: likelihood_scale={value!r}"
        )
    return scale


def parse_widths(units: Any, name: str = "hidden_units") -> tuple[int, ...]:
    """`hidden_units` (or another list of widths, `name`) as a tuple of positive ints (one
    int is one layer)."""
    if isinstance(units, numbers.Integral) and not isinstance(units, bool):
        units = (units,)

    def whole(u: Any) -> bool:  # an int (NumPy's too) or an integral float; never a bool
        if isinstance(u, bool):
            return False
        if isinstance(u, numbers.Integral):
            return True
        return isinstance(u, float) and math.isfinite(u) and u.is_integer()

    try:
        values = tuple(units)
        ok = bool(values) and all(whole(u) and u >= 1 for u in values)
    except TypeError:
        ok = False
    if not ok or isinstance(units, (str, bytes)):
        raise ValueError(
            f"Received an invalid value for `{name}`, expected one or more positive "
            f"integers. Received: {name}={units!r}"
        )
    return tuple(int(u) for u in values)


def find_non_finite(values: Any, path: str = "") -> tuple[str, float] | None:
    """The first (dotted path, value) in nested dicts/lists holding a NaN or an infinity."""
    if isinstance(values, float) and not math.isfinite(values):
        return path, values
    if isinstance(values, dict):
        items: Iterable[tuple[Any, Any]] = values.items()
    elif isinstance(values, (list, tuple)):
        items = enumerate(values)
    else:
        return None
    for key, value in items:
        found = find_non_finite(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
