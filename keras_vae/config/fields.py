"""How a config field is declared: its default, meaning and `keras-vae train` flag in one place.

Each section of the config (keras_vae.config.model, .data, .training, .runtime) declares its
fields with `config_field` and decorates its dataclass with `document_fields`.

    >>> import dataclasses
    >>> @document_fields
    ... @dataclasses.dataclass(frozen=True)
    ... class Example:
    ...     'An example.'
    ...     size: int = config_field(1, "how many", flag="--size")
    >>> print(Example.__doc__)
    An example.
    <BLANKLINE>
        Attributes:
            size: how many.
    <BLANKLINE>
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def config_field(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    no_flag: str | None = None,
    choices: Sequence[str] | None = None,
    default_text: str | None = None,
) -> Any:
    """A config field with its meaning and its `keras-vae train` flag, declared in one place.

    `keras-vae train --help`, docs/flags.md's table and the class docstring are all made
    from this metadata, and tests/test_cli_flags.py checks that they agree.

    Args:
        default: the field's default value.
        help: what the field means (one phrase, no trailing period).
        flag: its `keras-vae train` flag, e.g. "--latent-dim"; give either `flag` or `no_flag`.
        no_flag: why the field has no flag (it is then set from Python only).
        choices: the allowed strings, where there is a fixed set. Default None.
        default_text: how to show the default where it is None (e.g. "TFDS's default").
    """
    if (flag is None) == (no_flag is None):
        raise TypeError(f"Give exactly one of `flag` and `no_flag`. Received: flag={flag!r}")
    if default is None and default_text is None:
        raise TypeError("A field whose default is None needs `default_text` saying what it means.")
    metadata = {
        "help": help,
        "flag": flag,
        "no_flag": no_flag,
        "choices": tuple(choices) if choices is not None else None,
        "default_text": default_text,
    }
    return dataclasses.field(default=default, metadata=metadata)


def document_fields(cls: type) -> type:
    """Append an `Attributes:` section made from the fields' `help` to the class docstring."""
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"Declare `{cls.__name__}.{f.name}` with `config_field(...)`.")
    lines = [f"        {f.name}: {f.metadata['help']}." for f in dataclasses.fields(cls)]
    cls.__doc__ = f"{(cls.__doc__ or '').rstrip()}\n\n    Attributes:\n" + "\n".join(lines) + "\n"
    return cls
