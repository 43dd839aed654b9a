"""The README's benchmark section is exactly what benchmarks/report.py renders from the JSON."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_report()


def test_readme_tables_match_the_results_json():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(report.BEGIN) == 1, "README lost its benchmark markers"
    expected = report.splice(readme, report.render())
    assert readme == expected, "run: python benchmarks/report.py --readme README.md"


def test_readme_quotes_every_results_file():
    readme = (ROOT / "README.md").read_text()
    for name in report.SECTIONS:
        assert (ROOT / "benchmarks" / "results" / f"{name}.json").exists(), name
        assert f"(no benchmarks/results/{name}.json yet)" not in readme


def test_readme_headline_is_the_train_job_number():
    """The number at the top of the README is `keras-vae train`'s, from train_job.json."""
    import json

    readme = (ROOT / "README.md").read_text()
    headline = readme[: readme.index("## Using it from Python")]
    results = json.loads((ROOT / "benchmarks" / "results" / "train_job.json").read_text())
    summary = results["cases"]["classic_b128"]["summary"]
    assert f"{summary['keras_vae_train']:,}" in headline
    assert f"{summary['vs_pytorch']:.2f}x the PyTorch example" in headline
    assert f"{summary['vs_jax']:.2f}x a hand-jitted JAX loop" in headline


def test_gpu_section_says_whether_a_gpu_ran_it():
    section = report.gpu_check(None)
    assert "Not run on a GPU yet" in section
    smoke = {"mode": "smoke", "device": {"gpus": [], "details": []}}
    assert "Not run on a GPU yet" in report.gpu_check(smoke)


def _throughput(rate, torch_rate, fraction):
    case = {
        "name": report.DEFAULTS_CASE,
        "examples_per_second_median": rate,
        "round_seconds": [3.0, 2.0, 2.0, 2.0],
        "fraction_of_step_matmul_limit": fraction,
        "step_matmul_limit_gflops": 200.0,
        "fraction_of_peak": fraction / 2,
    }
    torch = {
        "loops": {
            "example": {"examples_per_second_median": torch_rate},
            "dataloader": {"examples_per_second_median": 3 * torch_rate},  # not the reference
        }
    }
    return {"cases": [case], "pytorch_baseline": torch}


@pytest.mark.parametrize(
    "rate, torch_rate, fraction, verdicts",
    [
        (30_000, 10_000, 0.55, ["met", "met", "met"]),
        (19_999, 9_000, 0.55, ["**not met**", "met", "met"]),
        (30_000, 15_001, 0.49, ["met", "**not met**", "**not met**"]),
    ],
)
def test_targets_are_judged_from_the_numbers(rate, torch_rate, fraction, verdicts):
    rows = report.targets(_throughput(rate, torch_rate, fraction)).splitlines()[4:7]
    assert [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows] == verdicts
    assert f"{rate:,}" in rows[0] and f"{rate / torch_rate:.2f}" in rows[1]
    assert "example loop" in rows[1]


def test_splice_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="benchmarks:begin"):
        report.splice("# no markers\n", "tables")


def test_budget_line_sums_training_and_final_evaluation_over_settings():
    result = {
        "arguments": {"budget_minutes": "25.0"},
        "settings": {
            "a": {"train_seconds_total": 600.0, "final": {"seconds": 120.0}},
            "b": {"train_seconds_total": 1200.0, "final": None},
        },
    }
    line = report.budget_line(result)
    assert "30 training minutes" in line
    assert "2 minutes of final k=5000 evaluation" in line
    assert "--budget-minutes 25`" in line
    del result["settings"]["a"]["final"]
    assert "evaluation" not in report.budget_line(result)


def _reproduction_row(title, state, **values):
    row = {
        "title": title,
        "recipe": "burda2015",
        "flags": [],
        "state": state,
        "epochs": 3280,
        "published": 86.76,
        "source": "Burda et al. 2015, Table 1",
        "target": 87.26,
        "command": f"keras-vae train --recipe burda2015 --output benchmarks/reproductions/{title}",
        "evaluate_command": f"keras-vae evaluate benchmarks/reproductions/{title} -k 5000",
    }
    return {**row, **values}


def test_reproductions_show_an_nll_only_for_evaluated_rows_and_judge_the_target():
    result = {
        "machine": {"cpu": "cpu", "cores": 2, "tensorflow": "2", "keras": "3"},
        "load_average_before": [1.0],
        "load_average_after": [1.5],
        "started": "now",
        "importance_samples": 5000,
        "status_page": "benchmarks/reproductions/README.md",
        "figure": "benchmarks/results/reproduce_nll.png",
        "rows": {
            "vae": _reproduction_row("vae", "training", epoch=111, eta="9.6 h"),
            "iwae_k5": _reproduction_row(
                "iwae_k5", "evaluated", flags=["--objective", "iwae", "--num-samples", "5"],
                epoch=3280, eta="0 min", test_nll=86.0, test_nll_stderr=0.25,
                test_examples=10_000, target_met=True,
            ),
            "vampprior": _reproduction_row(
                "vampprior", "evaluated", epoch=900, stopped_early=True, test_nll=87.5,
                test_nll_stderr=0.26, test_examples=10_000, target_met=False,
            ),
            "iaf": _reproduction_row("iaf", "not started", published=None, target=None),
        },
    }  # fmt: skip
    lines = report.nll(result).splitlines()
    assert lines[0] == "### Reproducing the papers (`benchmarks/reproduce_nll.py`)"
    rows = {line.split("`")[1]: line for line in lines if line.startswith("| ") and "(`" in line}
    assert rows["vae"].endswith(
        "| training | 111 of 3,280 | 9.6 h | - | 86.76 (Burda et al. 2015, Table 1) | <= 87.26 |"
    )
    assert "burda2015 + `--objective iwae --num-samples 5`" in rows["iwae_k5"]
    assert "| 86.00 ± 0.25 (10,000 images) (met) |" in rows["iwae_k5"]
    assert "| 900 of 3,280 (early stop) |" in rows["vampprior"]
    assert "| 87.50 ± 0.26 (10,000 images) (**not met**) |" in rows["vampprior"]
    assert rows["iaf"].endswith("| - | Burda et al. 2015, Table 1 | - |")  # no paper number
    text = "\n".join(lines)
    assert "[`benchmarks/reproductions/README.md`](benchmarks/reproductions/README.md)" in text
    assert "keras-vae evaluate benchmarks/reproductions/vae -k 5000   # once it has finished" in (
        text
    )


def load_anomaly_benchmark():
    """benchmarks/anomaly.py as a module (its metrics need only NumPy; `common` from beside it)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        path = ROOT / "benchmarks" / "anomaly.py"
        spec = importlib.util.spec_from_file_location("anomaly_benchmark", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _detection_row(auroc):
    return {
        "auroc": auroc,
        "auroc_stderr": 0.004,
        "auprc": 0.61,
        "median_positive": -181.25,
        "median_negative": -120.5,
    }


def _anomaly_result():
    names = ("elbo", "log_likelihood", "reconstruction", "kl")
    digits = {
        str(d): {"scores": {name: _detection_row(0.9 - d / 100) for name in names}} for d in (0, 1)
    }
    summary = {name: {"mean_auroc": 0.895, "mean_auprc": 0.61} for name in names}
    reference = {
        "source": "a thesis",
        "setup": "its setup",
        "not_verified": "An & Cho's table could not be read",
        "auroc": {"latent 2": [0.96, 0.70] + [0.5] * 8, "latent 32": [0.81, 0.09] + [0.5] * 8},
    }
    ood = {
        "normal": "MNIST test images (10,000)",
        "sets": {
            "fashion_mnist": {
                "available": False,
                "why": "not available on this machine: TFDS cannot load 'fashion_mnist' (no net)",
            },
            "blank": {
                "available": True,
                "what": "all-zero images",
                "examples": 2000,
                "scores": {name: _detection_row(0.0) for name in names},
            },
        },
    }
    return {
        "machine": {"cpu": "cpu", "cores": 2, "tensorflow": "2", "keras": "3"},
        "load_average_before": [1.0],
        "load_average_after": [1.5],
        "started": "now",
        "command": "python benchmarks/anomaly.py --epochs 4",
        "training": "train_and_evaluate, 4 epochs",
        "scoring": "K = 100",
        "held_out_digits": digits,
        "summary": summary,
        "ood": ood,
        "reference": reference,
    }


def test_anomaly_section_puts_each_digit_beside_the_published_auroc():
    lines = report.anomaly(_anomaly_result()).splitlines()
    digit_one = next(line for line in lines if line.startswith("| 1 |"))
    assert digit_one.count("0.890 ± 0.004") == 4  # the four scores
    assert "| 0.610 | -181.2 / -120.5 | 0.70 / 0.09 |" in digit_one
    mean = next(line for line in lines if line.startswith("| **mean** |"))
    assert "**0.895**" in mean and mean.endswith("| 0.83 / 0.45 |")  # over digits 0 and 1
    text = "\n".join(lines)
    assert "above the latent 2 model's on 1 of 2 and the latent 32 model's on 2 of 2" in text
    assert "An & Cho's table could not be read" in text


def test_anomaly_section_says_what_was_not_available_and_where_scores_fail():
    section = report.anomaly(_anomaly_result())
    fashion = next(line for line in section.splitlines() if line.startswith("| fashion_mnist"))
    assert "not available on this machine: TFDS cannot load 'fashion_mnist' |" in fashion
    blank = next(line for line in section.splitlines() if line.startswith("| blank"))
    assert blank.count("0.000 ± 0.004") == 4
    assert "AUROC < 0.5 means the model rates that data" in section


def test_anomaly_metrics_equal_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    bench = load_anomaly_benchmark()
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 80))
        scores = rng.integers(0, 6, n).astype(float)  # many ties
        positive = rng.random(n) < 0.3
        positive[:2] = [True, False]
        assert bench.auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
        assert bench.average_precision(scores, positive) == pytest.approx(
            average_precision_score(positive, scores)
        )
    oriented = bench.anomaly_oriented("log_likelihood", np.array([-1.0, np.nan, -3.0]))
    assert oriented.tolist() == [1.0, np.inf, 3.0]  # low log p(x) and NaN: anomalous
    assert bench.anomaly_oriented("kl", np.array([2.0])).tolist() == [2.0]


def test_anomaly_results_were_checked_against_scikit_learn():
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "anomaly.json").read_text())
    assert max(results["sklearn_max_abs_difference"].values()) <= 1e-9
    assert sorted(results["held_out_digits"], key=int) == [str(d) for d in range(10)]
