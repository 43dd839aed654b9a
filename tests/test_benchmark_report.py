"""The README's results at a glance and benchmarks/README.md's tables are exactly what
benchmarks/report.py renders from the JSON."""

import json
import math
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark_modules, run_command

ROOT = Path(__file__).resolve().parents[1]
TABLES_PAGE = ROOT / "benchmarks" / "README.md"


report, training, inference, papers, anomaly_report, metrics, presets = load_benchmark_modules(
    "report", "report_training", "report_inference", "report_papers", "report_anomaly",
    "detection_metrics", "report_presets",
)  # fmt: skip


def test_readme_tables_match_the_results_json():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(report.BEGIN) == 1, "README lost its benchmark markers"
    expected = report.splice(readme, report.render_glance())
    assert readme == expected, "run: python benchmarks/report.py --readme README.md"


def test_benchmarks_page_tables_match_the_results_json():
    page = TABLES_PAGE.read_text()
    assert page.count(report.TABLES_BEGIN) == 1, "benchmarks/README.md lost its table markers"
    expected = report.splice(page, report.render(), report.TABLES_BEGIN, report.TABLES_END)
    assert page == expected, "run: python benchmarks/report.py --readme README.md"


def test_presets_page_table_is_the_shipped_presets_metadata(tmp_path):
    """docs/presets.md's numbers are the presets' own claims (which tests/test_presets.py
    re-measures from the shipped files); a preset added or changed shows here."""
    page = presets.PAGE.read_text()
    assert page.count(presets.BEGIN) == 1, "docs/presets.md lost its table markers"
    expected = report.splice(page, presets.presets_table(), presets.BEGIN, presets.END)
    assert page == expected, "run: python benchmarks/report.py --readme README.md"
    names = [line.split("`")[1] for line in presets.presets_table().splitlines()[2:]]
    assert names == sorted(path.name for path in presets.SHIPPED.iterdir())
    # A folder of presets other than the package's is read as it is.
    (tmp_path / "copy").mkdir()
    for path in (presets.SHIPPED / names[0]).iterdir():
        (tmp_path / "copy" / path.name).write_bytes(path.read_bytes())
    assert presets.presets_table(tmp_path).splitlines()[2] == (
        presets.presets_table().splitlines()[2].replace(names[0], "copy")
    )


def test_readme_quotes_every_results_file():
    readme = (ROOT / "README.md").read_text()
    page = TABLES_PAGE.read_text()
    for name in report.SECTIONS:
        assert (ROOT / "benchmarks" / "results" / f"{name}.json").exists(), name
        assert f"(no benchmarks/results/{name}.json yet)" not in page
    for name in report.GLANCE:
        assert name in report.SECTIONS, name
        assert f"(no benchmarks/results/{name}.json yet)" not in readme
    assert "[benchmarks/README.md](benchmarks/README.md)" in readme


def readme_commands() -> list[str]:
    """The README's ```bash blocks, in order (the first two: the main job and the tests)."""
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_starts_with_its_two_commands_and_ci_runs_the_test_one():
    """The first two commands install and run the main job, then install and run the tests;
    .ci/run installs the same extra and ends with exactly the README's test command."""
    readme = (ROOT / "README.md").read_text()
    first, second = readme_commands()[:2]
    assert readme.index(second) < readme.index("## Using it from Python")
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e . ")
    assert "keras-vae train" in first and "keras-vae export" in first
    assert second == (
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest -q'
    )
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pip install --quiet -e ".[test]"' in ci
    assert ci.rstrip().splitlines()[-1] == second.rsplit(" && ", 1)[1]


def test_the_readme_main_job_runs_as_written(tmp_path):
    """The README's first command after its install: each `keras-vae` step exactly as written
    (the venv's console script, in an empty folder) trains, evaluates and exports."""
    first = readme_commands()[0]
    steps = [shlex.split(step) for step in first.split(" && ") if step.startswith("keras-vae ")]
    assert [step[1] for step in steps] == ["train", "evaluate", "export"]
    outputs = []
    for step in steps:
        result = run_command([Path(sys.executable).parent / step[0], *step[1:]], cwd=tmp_path)
        assert result.returncode == 0, (step, result.stderr[-2000:])
        outputs.append(result.stdout)
    evaluation = json.loads(outputs[1][outputs[1].index("{") :])
    nll, elbo = -evaluation["test_log_likelihood"], -evaluation["test_elbo"]
    assert evaluation["num_examples"] == 360 and evaluation["test_log_likelihood_k"] == 1000
    # log p(x) >= ELBO, and far below the 64 log 2 = 44.4 nats of independent fair coins
    assert math.isfinite(nll) and 0 < nll <= elbo < 35, evaluation
    metrics = json.loads((tmp_path / "runs" / "digits" / "metrics.json").read_text())
    assert metrics["epochs"] == 20 and metrics["evaluation"]["importance_samples"] == 1000
    export = json.loads((tmp_path / "export" / "export.json").read_text())
    assert export["version"] == 1
    for model in ("encoder", "decoder", "scorer"):
        assert (tmp_path / "export" / model / "1" / "saved_model.pb").is_file(), model


def test_readme_is_read_in_five_minutes():
    """Issue 25: the front page is at most 15 KB; the rest lives in docs/ and
    benchmarks/README.md, every page it links to exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15 * 1024
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert "docs/flags.md" in targets and "ARCHITECTURE.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing


def test_docs_pages_links_resolve():
    """Every relative link of docs/ and benchmarks/README.md names a file that exists."""
    pages = [*sorted((ROOT / "docs").rglob("*.md")), TABLES_PAGE]
    assert {"flags.md", "maths.md", "families.md", "distributed.md"} <= {p.name for p in pages}
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.exists(), (page, target)


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
    section = inference.gpu_check(None)
    assert "Not run on a GPU yet" in section
    smoke = {"mode": "smoke", "device": {"gpus": [], "details": []}}
    assert "Not run on a GPU yet" in inference.gpu_check(smoke)


def _throughput(rate, torch_rate, fraction):
    case = {
        "name": training.DEFAULTS_CASE,
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
    rows = training.targets(_throughput(rate, torch_rate, fraction)).splitlines()[4:7]
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
    line = papers.budget_line(result)
    assert "30 training minutes" in line
    assert "2 minutes of final k=5000 evaluation" in line
    assert "--budget-minutes 25`" in line
    del result["settings"]["a"]["final"]
    assert "evaluation" not in papers.budget_line(result)


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
    lines = papers.nll(result).splitlines()
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
    lines = anomaly_report.anomaly(_anomaly_result()).splitlines()
    digit_one = next(line for line in lines if line.startswith("| 1 |"))
    assert digit_one.count("0.890 ± 0.004") == 4  # the four scores
    assert "| 0.610 | -181.2 / -120.5 | 0.70 / 0.09 |" in digit_one
    mean = next(line for line in lines if line.startswith("| **mean** |"))
    assert "**0.895**" in mean and mean.endswith("| 0.83 / 0.45 |")  # over digits 0 and 1
    text = "\n".join(lines)
    assert "above the latent 2 model's on 1 of 2 and the latent 32 model's on 2 of 2" in text
    assert "An & Cho's table could not be read" in text


def test_anomaly_section_says_what_was_not_available_and_where_scores_fail():
    section = anomaly_report.anomaly(_anomaly_result())
    fashion = next(line for line in section.splitlines() if line.startswith("| fashion_mnist"))
    assert "not available on this machine: TFDS cannot load 'fashion_mnist' |" in fashion
    blank = next(line for line in section.splitlines() if line.startswith("| blank"))
    assert blank.count("0.000 ± 0.004") == 4
    assert "AUROC < 0.5 means the model rates that data" in section


def test_anomaly_metrics_equal_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 80))
        scores = rng.integers(0, 6, n).astype(float)  # many ties
        positive = rng.random(n) < 0.3
        positive[:2] = [True, False]
        assert metrics.auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
        assert metrics.average_precision(scores, positive) == pytest.approx(
            average_precision_score(positive, scores)
        )
    oriented = metrics.anomaly_oriented("log_likelihood", np.array([-1.0, np.nan, -3.0]))
    assert oriented.tolist() == [1.0, np.inf, 3.0]  # low log p(x) and NaN: anomalous
    assert metrics.anomaly_oriented("kl", np.array([2.0])).tolist() == [2.0]


def test_anomaly_results_were_checked_against_scikit_learn():
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "anomaly.json").read_text())
    assert max(results["sklearn_max_abs_difference"].values()) <= 1e-9
    assert sorted(results["held_out_digits"], key=int) == [str(d) for d in range(10)]


def test_anomaly_benchmark_scores_with_the_shared_metrics():
    (bench,) = load_benchmark_modules("anomaly")
    assert bench.detection is metrics.detection and bench.summarize is metrics.summarize
    assert bench.SCORES == ("elbo", "log_likelihood", "reconstruction", "kl")


def test_a_benchmark_invocation_quick_run_and_a_partial_rerun(tmp_path, monkeypatch, capsys):
    """`--quick` sets its values and names the results apart; `finish(merge=...)` keeps the
    earlier file's entries this run did not measure and replaces those it did."""
    common, invocation = load_benchmark_modules("common", "invocation")
    monkeypatch.setattr(common, "machine_info", lambda: {"cpu": "test"})
    parser = invocation.argument_parser("A benchmark.\n\nMore.", quick="tiny")
    parser.add_argument("--repeats", type=int, default=300)
    args, run = invocation.start("timing", parser, ["--quick"], quick={"repeats": 3})
    assert (args.repeats, run.name) == (3, "timing_quick")
    assert run.arguments == {"quick": "True", "repeats": "3"}
    with pytest.raises(ValueError, match=r"Received: \['steps'\]"):
        invocation.parse(parser, ["--quick"], quick={"steps": 3})
    path = tmp_path / "timing.json"
    assert invocation.finish(run, {"cases": {"a": 1, "b": 2}}, path) == 0
    assert invocation.finish(run, {"cases": {"b": 3}}, path, merge="cases") == 0
    import json

    written = json.loads(path.read_text())
    assert written["cases"] == {"a": 1, "b": 3}
    assert written["benchmark"] == "timing_quick" and written["machine"] == {"cpu": "test"}
    assert f"wrote {path}" in capsys.readouterr().out
