"""Detection metrics of anomaly scores, NumPy only: AUROC (ties at average ranks), AUPRC as
average precision (scikit-learn's definitions, checked against it), their standard errors
(Hanley & McNeil 1982; a stratified bootstrap), and the per-score rows of `benchmarks/anomaly.py`.

Example:

>>> positive = np.array([False, False, True, True])
>>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), positive)
0.75
>>> anomaly_oriented("log_likelihood", np.array([-1.0, np.nan])).tolist()  # low: anomalous
[1.0, inf]
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCORES = ("elbo", "log_likelihood", "reconstruction", "kl")  # keras_vae.scores.SCORE_NAMES


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the average of the ranks they span.

    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # average of ranks starts+1 .. ends
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(anomaly_score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `anomaly_score` (higher = more anomalous) for the boolean
    `positive`: P(a positive scores above a negative) + P(tie) / 2 (Mann-Whitney U).

    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUROC needs both classes. Received: {n_pos} positives, {n_neg} negatives"
        )
    u = average_ranks(anomaly_score)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(anomaly_score: np.ndarray, positive: np.ndarray) -> float:
    """AUPRC as average precision: sum over distinct thresholds of (recall step) x precision,
    tied scores entering together (scikit-learn's `average_precision_score`).

    >>> average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.8333333333333333
    """
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        raise ValueError("Average precision needs at least one positive example.")
    values = np.asarray(anomaly_score, np.float64)
    order = np.argsort(-values, kind="mergesort")
    ordered, hits = values[order], positive[order]
    last_of_group = np.r_[ordered[1:] != ordered[:-1], True]
    true_pos = np.cumsum(hits)[last_of_group]
    flagged = (np.flatnonzero(last_of_group) + 1).astype(np.float64)
    precision = true_pos / flagged
    recall_step = np.diff(np.r_[0, true_pos]) / n_pos
    return float(np.sum(recall_step * precision))


def hanley_mcneil_stderr(area: float, n_pos: int, n_neg: int) -> float:
    """The standard error of an AUROC (Hanley & McNeil, 1982, eq. 1).

    >>> round(hanley_mcneil_stderr(0.5, 100, 100), 4)
    0.0409
    """
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    variance = (area * (1 - area) + (n_pos - 1) * (q1 - area**2) + (n_neg - 1) * (q2 - area**2)) / (
        n_pos * n_neg
    )
    return float(np.sqrt(max(variance, 0.0)))


def bootstrap_stderr(
    anomaly_score: np.ndarray, positive: np.ndarray, resamples: int, seed: int
) -> dict[str, float]:
    """Bootstrap standard errors of AUROC and AUPRC: `resamples` draws of the positives and of
    the negatives, each with replacement and of its own size (the class sizes are fixed by
    the design), from `np.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    values = np.asarray(anomaly_score, np.float64)
    pos, neg = values[positive], values[~positive]
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    areas, precisions = [], []
    for _ in range(resamples):
        draw = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        areas.append(auroc(draw, labels))
        precisions.append(average_precision(draw, labels))
    return {"auroc": float(np.std(areas, ddof=1)), "auprc": float(np.std(precisions, ddof=1))}


def anomaly_oriented(name: str, values: np.ndarray) -> np.ndarray:
    """`values` of score `name` turned so that higher = more anomalous (`ANOMALY_IF`), NaN
    as +inf (the most anomalous, as `keras_vae.calibration.is_anomaly` flags it)."""
    from keras_vae.scores import ANOMALY_IF

    values = np.asarray(values, np.float64)
    oriented = -values if ANOMALY_IF[name] == "below" else values.copy()
    oriented[np.isnan(oriented)] = np.inf
    return oriented


def detection(
    scores: dict[str, np.ndarray], positive: np.ndarray, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per score: AUROC, AUPRC, their standard errors and the two classes' median scores."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    rows = {}
    for name in SCORES:
        oriented = anomaly_oriented(name, scores[name])
        area = auroc(oriented, positive)
        boot = bootstrap_stderr(oriented, positive, resamples, seed)
        rows[name] = {
            "auroc": area,
            "auroc_stderr": hanley_mcneil_stderr(area, n_pos, n_neg),
            "auroc_bootstrap_stderr": boot["auroc"],
            "auprc": average_precision(oriented, positive),
            "auprc_bootstrap_stderr": boot["auprc"],
            "median_positive": float(np.median(scores[name][positive])),
            "median_negative": float(np.median(scores[name][~positive])),
            "nan_scores": int(np.isnan(scores[name]).sum()),
        }
    return rows


def sklearn_differences(cases: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The largest |ours - scikit-learn| of AUROC and of AUPRC over `cases` (score, positive)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    worst = {"auroc": 0.0, "auprc": 0.0}
    for oriented, positive in cases:
        finite = np.where(np.isinf(oriented), np.finfo(np.float64).max, oriented)
        worst["auroc"] = max(
            worst["auroc"], abs(auroc(oriented, positive) - roc_auc_score(positive, finite))
        )
        worst["auprc"] = max(
            worst["auprc"],
            abs(average_precision(oriented, positive) - average_precision_score(positive, finite)),
        )
    return worst


def summarize(digits: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Mean AUROC and AUPRC of each score over the held-out digits."""
    return {
        name: {
            "mean_auroc": float(np.mean([d["scores"][name]["auroc"] for d in digits.values()])),
            "mean_auprc": float(np.mean([d["scores"][name]["auprc"] for d in digits.values()])),
        }
        for name in SCORES
    }
