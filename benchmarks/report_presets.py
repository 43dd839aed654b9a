"""docs/presets.md's table of the shipped presets, from each preset's own metadata.json.

Every number in it is the preset's claim, measured when it was made and re-measured from the
shipped file by tests/test_presets.py (`keras_vae.preset_claims`); the size is the folder's.
`report.py --readme README.md` splices it into docs/presets.md between its markers.

Example:

>>> "| `mnist_vae_quick` |" in presets_table()
True
"""

from __future__ import annotations

import json
from pathlib import Path

from report_format import table

from keras_vae.presets import METADATA_FILE, SHIPPED

BEGIN = "<!-- presets:begin (python benchmarks/report.py --readme README.md) -->"
END = "<!-- presets:end -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "presets.md"


def presets_table(folder: Path = SHIPPED) -> str:
    """One row per preset in `folder` (the package's shipped presets by default): each
    subfolder with a metadata.json, as `keras_vae.list_presets` finds them."""
    names = sorted(p.name for p in folder.iterdir() if (p / METADATA_FILE).is_file())
    rows = []
    for name in names:
        metadata = json.loads((folder / name / METADATA_FILE).read_text())
        measured = metadata["measured"]
        size = sum(path.stat().st_size for path in (folder / name).iterdir())
        rows.append(
            [
                f"`{name}`",
                metadata.get("description", "-"),
                f"{metadata['epochs']:,}",
                f"{metadata['parameter_count']:,}",
                f"the first {measured['examples']:,} test images, "
                f"k = {measured['importance_samples']:,}, seed {measured['seed']}",
                f"{measured['test_elbo']:.2f} ± {measured['test_elbo_stderr']:.2f}",
                f"{measured['test_log_likelihood']:.2f} ± "
                f"{measured['test_log_likelihood_stderr']:.2f} (Monte Carlo s.e. "
                f"{measured['test_log_likelihood_mc_stderr']:.2f})",
                f"{size // 1024:,} KiB",
            ]
        )
    header = [
        "preset",
        "what it is",
        "epochs",
        "parameters",
        "measured on",
        "test ELBO (nats)",
        "test log p(x) (nats)",
        "size",
    ]
    return table(header, rows) + "\n"
