"""The README's benchmark section is exactly what benchmarks/report.py renders from the JSON."""

import importlib.util
from pathlib import Path

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
