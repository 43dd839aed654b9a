"""`Config`: a whole run's configuration, its four sections and its JSON round trip.

>>> from keras_vae.config import Config
>>> Config.from_dict({"training": {"epochs": 3}}).training.epochs
3
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from keras_vae.config.data import DataConfig
from keras_vae.config.model import ModelConfig
from keras_vae.config.runtime import RuntimeConfig
from keras_vae.config.training import TrainingConfig
from keras_vae.limits import find_non_finite

# The sections of a `Config` (and of config.json), in order: name -> dataclass.
SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "runtime": RuntimeConfig,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: `Config(model=ModelConfig(...), data=..., training=..., runtime=...)`.

    >>> from keras_vae.config import DataConfig, ModelConfig
    >>> config = Config(model=ModelConfig(latent_dim=2), data=DataConfig(dataset="digits"))
    >>> Config.from_json(config.to_json()) == config  # what RUN_DIR/config.json holds
    True
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.data.binarization != "none" and self.model.likelihood != "bernoulli":
            raise ValueError(
                "Binarization only makes sense with the Bernoulli likelihood. Received: "
                f"binarization={self.data.binarization!r}, likelihood={self.model.likelihood!r}"
            )

        training = self.training
        if training.kl_warmup_epochs and self.model.kl_warmup_steps:
            raise ValueError(
                "Give the KL warm-up in steps or in epochs, not both. Received: "
                f"kl_warmup_steps={self.model.kl_warmup_steps!r}, "
                f"kl_warmup_epochs={training.kl_warmup_epochs!r}"
            )
        if training.early_stopping_patience and not self.data.has_validation:
            raise ValueError(
                "Early stopping watches a validation split, never the test split; add "
                "--validation-examples N (or 'source'). Received: early_stopping_patience="
                f"{training.early_stopping_patience!r}, validation_examples=0"
            )
        if training.init_output_bias != "zeros" and self.model.architecture != "mlp":
            raise ValueError(
                "--init-output-bias data-mean sets the mlp decoder's per-pixel output bias; "
                "the conv decoder has one bias per channel. Received: "
                f"init_output_bias={training.init_output_bias!r}, "
                f"architecture={self.model.architecture!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as nested plain dicts (`dataclasses.asdict`).

        >>> values = Config().to_dict()
        >>> list(values), values["model"]["latent_dim"]
        (['model', 'data', 'training', 'runtime'], 20)
        """
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON with sorted keys (NaN and infinity never written).

        >>> Config().to_json().splitlines()[:3]
        ['{', '  "data": {', '    "binarization": "none",']
        """
        # allow_nan=False: never write NaN/Infinity, which are not JSON (the checks refuse them)
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """The checked `Config` of ``{"model": {...}, "data": ..., ...}`` (missing: defaults).

        >>> Config.from_dict({"model": {"latent_dim": 2}}).model.latent_dim
        2
        >>> Config.from_dict({"model": {"latent_dims": 2}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: Unknown keys ['latent_dims'] in config section 'model'. Expected some of [...].

        Raises:
            ValueError: an unknown section or key, a value out of range, or a NaN or infinity
                anywhere (Python's `json` reads NaN and Infinity, which are not JSON).
        """
        if not isinstance(values, dict):
            raise ValueError(
                f"Expected a config object (a dict of sections), received a "
                f"{type(values).__name__}."
            )
        sections = SECTIONS
        unknown = set(values) - set(sections)
        if unknown:
            raise ValueError(
                f"Unknown config sections {sorted(unknown)}. Expected some of {list(sections)}."
            )
        kwargs = {}
        for name, section in sections.items():
            given = dict(values.get(name, {}))
            fields = {f.name for f in dataclasses.fields(section)}
            extra = set(given) - fields
            if extra:
                raise ValueError(
                    f"Unknown keys {sorted(extra)} in config section {name!r}. "
                    f"Expected some of {sorted(fields)}."
                )
            kwargs[name] = section(**given)
        config = cls(**kwargs)
        found = find_non_finite(values)  # in a field that no range check covers
        if found is not None:
            path, value = found
            raise ValueError(
                f"Received an invalid value for `{path}`, expected a finite number or a "
                f"string. Received: {path}={value!r}"
            )
        return config

    @classmethod
    def from_json(cls, text: str) -> Config:
        """`from_dict` of a JSON text; NaN and Infinity are refused like every bad value.

        >>> Config.from_json('{"training": {"epochs": 5}}').training.epochs
        5
        >>> Config.from_json('{"model": {"beta": NaN}}')  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: Received an invalid value for `beta`, ... beta=nan
        """
        return cls.from_dict(json.loads(text))
