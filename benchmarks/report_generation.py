"""The generation section of the benchmark report (generation.json): each model and sampler's
Fréchet distance, precision, recall and label accuracy in an MNIST classifier's features, the
conditional model's per-class accuracy beside the classifier's own, and issue 26's targets.

Example:

>>> metric_cells({"frechet_distance": 12.345, "precision": 0.5, "recall": 0.25})
['12.35', '0.500', '0.250', '-']
"""

from __future__ import annotations

from report_format import heading, met, table

DIGITS = [str(d) for d in range(10)]


def epochs_text(count: int) -> str:
    """`count` epochs in words.

    >>> epochs_text(1), epochs_text(10)
    ('1 epoch', '10 epochs')
    """
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def metric_cells(row: dict) -> list[str]:
    """Fréchet distance, precision, recall and (conditional models) mean label accuracy."""
    accuracy = row.get("mean_label_accuracy")
    return [
        f"{row['frechet_distance']:.2f}",
        f"{row['precision']:.3f}",
        f"{row['recall']:.3f}",
        "-" if accuracy is None else f"{accuracy:.3f}",
    ]


def models_table(result: dict) -> str:
    """One row per (model, sampler), then the real-vs-real floor."""
    rows = []
    for name, model in result["models"].items():
        what = f"{model['what']}, latent {model['latent_dim']}"
        for sampler, row in model["samplers"].items():
            rows.append([f"`{name}`", what, sampler, *metric_cells(row)])
    floor = result["floor"]
    classifier = result["classifier"]
    rows.append(
        ["**floor**", floor["what"], "-", *metric_cells(floor)[:3]]
        + [f"{classifier['test_accuracy']:.3f} (classifier, real digits)"]
    )
    header = ["model", "what", "sampler", "Fréchet distance", "precision", "recall"]
    return table(header + ["label accuracy"], rows)


def per_class_table(result: dict, name: str) -> str:
    """The conditional model `name`'s per-class label accuracy for each sampler, below the
    classifier's own per-class accuracy on real test digits."""
    classifier = result["classifier"]["per_class_test_accuracy"]
    rows = [
        ["classifier on real test digits"]
        + [f"{a:.3f}" for a in classifier]
        + [f"{sum(classifier) / len(classifier):.3f}"]
    ]
    for sampler, row in result["models"][name]["samplers"].items():
        rows.append(
            [f"`{name}` samples, {sampler}"]
            + [f"{a:.3f}" for a in row["label_accuracy"]]
            + [f"{row['mean_label_accuracy']:.3f}"]
        )
    return table(["", *DIGITS, "mean"], rows)


def label_target(result: dict, sampler: str) -> list[str]:
    """The label-accuracy target's row for `sampler`: the classes below the classifier's
    accuracy."""
    target = result["targets"]["label_accuracy"]
    name = target["model"]
    what = f"`{name}`, {sampler}, {epochs_text(target['epochs'])}: {target['rule']}"
    if name not in result["models"]:
        return [what, "not measured", "not judged"]
    if result["epochs"] != target["epochs"]:
        return [what, f"measured at {epochs_text(result['epochs'])}", "not judged"]
    samples = result["models"][name]["samplers"][sampler]["label_accuracy"]
    real = result["classifier"]["per_class_test_accuracy"]
    below = [str(d) for d, (s, r) in enumerate(zip(samples, real)) if s < r]
    measured = (
        f"below the classifier for digits {', '.join(below)}"
        if below
        else f"at or above the classifier for all {len(real)} digits"
    )
    return [what, measured, met(not below)]


def frechet_target(result: dict) -> list[str]:
    """The Fréchet-distance target's row: aggregate's reduction from the baseline sampler."""
    target = result["targets"]["frechet_distance"]
    name, sampler, baseline = target["model"], target["sampler"], target["baseline"]
    what = f"`{name}`: {target['rule']}"
    if name not in result["models"]:
        return [what, "not measured", "not judged"]
    samplers = result["models"][name]["samplers"]
    ours, theirs = samplers[sampler]["frechet_distance"], samplers[baseline]["frechet_distance"]
    reduction = 1.0 - ours / theirs
    measured = f"{ours:.2f} vs {theirs:.2f}: {100 * reduction:.0f}% lower"
    return [what, measured, met(reduction >= target["reduction"])]


def targets_table(result: dict) -> str:
    """Issue 26's two targets, judged from the numbers."""
    samplers = result["targets"]["label_accuracy"]["samplers"]
    rows = [*(label_target(result, sampler) for sampler in samplers), frechet_target(result)]
    return table(["target", "measured", "verdict"], rows)


def generation(result: dict) -> str:
    """Generation quality of every model and sampler (`benchmarks/generation.py`)."""
    classifier = result["classifier"]
    out = heading(
        "Generation quality: samples in a classifier's features (`benchmarks/generation.py`)",
        result,
        f"Each model trained by `keras-vae train` for {epochs_text(result['epochs'])}, its "
        f"`aggregate` sampler fitted by `keras-vae fit-sampler --components "
        f"{result['components']}`; {result['samples']:,} samples per sampler (seed "
        f"{result['sample_seed']}; a conditional model {result['samples'] // 10:,} per class) "
        f"against {result['real']}, in {result['features']}. The judge: "
        f"{classifier['architecture']}, "
        f"trained {epochs_text(classifier['epochs'])} on the MNIST training images, "
        f"{classifier['test_accuracy']:.4f} right on the real test digits. Fréchet distance "
        f"(lower is better); precision and recall with k = {result['neighbours']} nearest-"
        "neighbour balls (Kynkäänniemi et al. 2019); label accuracy: the share of a "
        "conditional model's samples the classifier calls the class they were asked for. "
        f"`{result['command']}`.",
    )
    out.append(models_table(result))
    conditional = result["targets"]["label_accuracy"]["model"]
    if conditional in result["models"]:
        out += ["", f"Per class, `{conditional}`:", "", per_class_table(result, conditional)]
    out += ["", "Issue 26's targets:", "", targets_table(result)]
    return "\n".join(out)


def glance(result: dict) -> str:
    """The front page's sentence: what the aggregate sampler changes on the two targets'
    models."""
    target = result["targets"]["frechet_distance"]
    samplers = result["models"][target["model"]]["samplers"]
    prior, ours = samplers[target["baseline"]], samplers[target["sampler"]]
    labels = result["targets"]["label_accuracy"]
    conditional = result["models"][labels["model"]]["samplers"]
    accuracy = ", ".join(
        f"{name} {conditional[name]['mean_label_accuracy']:.3f}"
        for name in (target["baseline"], *labels["samplers"])
    )
    return (
        f"Samples (`benchmarks/generation.py`, {epochs_text(result['epochs'])}): the latent-20 "
        f"VAE's Fréchet distance to real digits falls from {prior['frechet_distance']:.1f} "
        f"(prior) to {ours['frechet_distance']:.1f} with the `aggregate` sampler; the "
        f"conditional VAE's samples are the class asked for {accuracy} of the time (a "
        f"classifier gets {result['classifier']['test_accuracy']:.3f} on real digits)."
    )
