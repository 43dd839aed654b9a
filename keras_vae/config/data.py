"""The data section of the config: `DataConfig`, where the data comes from and how it is prepared.

>>> from keras_vae.config import DataConfig
>>> DataConfig(validation_examples="source").has_validation
True
"""

from __future__ import annotations

import dataclasses

from keras_vae.config.fields import config_field, document_fields
from keras_vae.limits import check_at_least, check_choice, user_path

BINARIZATIONS = ("none", "static", "dynamic")
SOURCE_VALIDATION = "source"  # validation_examples: the source's own validation split


@document_fields
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared.

    >>> DataConfig(dataset="mnist", binarization="dynamic").binarization
    'dynamic'
    >>> DataConfig(binarization="sometimes")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...binarization...
    """

    dataset: str = config_field(
        "digits",
        "'digits' (scikit-learn's, offline), a TFDS name (mnist, fashion_mnist, "
        "binarized_mnist, ...), a folder of MNIST-layout IDX files, or an .npz file",
        flag="--dataset",
    )
    data_dir: str | None = config_field(
        None, "TFDS's data_dir", flag="--data-dir", default_text="TFDS's default"
    )
    binarization: str = config_field(
        "none",
        "'none', 'static' (one fixed draw per image) or 'dynamic' (a new draw every epoch); "
        "only for the Bernoulli likelihood",
        flag="--binarization",
        choices=BINARIZATIONS,
    )
    validation_examples: int | str = config_field(
        0,
        "examples held out of the training set to validate on (the last N of the training "
        "split; early stopping reads them), or 'source' for the source's own validation split "
        "(binarized MNIST's 10,000 'valid' images, a TFDS 'validation' split); 0: none, the "
        "test split is shown as val_* during training as before. The test split is never used "
        "to choose anything",
        flag="--validation-examples",
    )
    test_fraction: float = config_field(
        0.2,
        "held-out fraction, in (0, 1), of sources without a test split (digits, an .npz with "
        "one images array)",
        no_flag="the command line keeps the documented 80/20 split, so that the test numbers "
        "of runs on those sources compare with each other and with the README's",
    )
    shuffle_buffer: int | None = config_field(
        None,
        "shuffle buffer, >= 1; one smaller than the training set shuffles only locally",
        no_flag="every source is held in memory, where the default, a uniform permutation of "
        "the whole training set each epoch, costs next to nothing (it shuffles indices); a "
        "smaller buffer only shuffles less",
        default_text="the whole training set",
    )

    def __post_init__(self) -> None:
        check_choice("binarization", self.binarization, BINARIZATIONS)
        if self.data_dir is not None:  # "" would be the working folder, where TFDS downloads
            user_path("data_dir", self.data_dir)
        fraction = self.test_fraction
        number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
        if not (number and 0 < fraction < 1):  # also refuses NaN, inf and strings
            raise ValueError(
                "Received an invalid value for `test_fraction`, expected a number in (0, 1). "
                f"Received: test_fraction={fraction!r}"
            )
        if self.shuffle_buffer is not None:
            check_at_least("shuffle_buffer", self.shuffle_buffer, 1)
        if self.validation_examples != SOURCE_VALIDATION:
            try:
                check_at_least("validation_examples", self.validation_examples, 0)
            except ValueError:
                raise ValueError(
                    "Received an invalid value for `validation_examples`, expected an integer "
                    f">= 0 or {SOURCE_VALIDATION!r}. Received: validation_examples="
                    f"{self.validation_examples!r}"
                ) from None

    @property
    def has_validation(self) -> bool:
        """Whether a validation split is held out of the training data.

        >>> DataConfig().has_validation, DataConfig(validation_examples=400).has_validation
        (False, True)
        """
        return self.validation_examples != 0
