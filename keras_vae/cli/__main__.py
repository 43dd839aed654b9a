"""`python -m keras_vae.cli ...`: the `keras-vae` command, for an environment without its script."""

from __future__ import annotations

import sys

from keras_vae.cli import main

if __name__ == "__main__":
    sys.exit(main())
