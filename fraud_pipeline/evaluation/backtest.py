"""Rolling out-of-time backtests: several consecutive test windows, each with its own retrained model.

One test window gives a point; the spread over prequential folds (train, validate and test, then
shift everything back by the test length) says how much of a difference between two nights is noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraud_pipeline.evaluation.metrics import (
    CohortSpec,
    cohort_table,
    evaluate_decisions,
)
from fraud_pipeline.features.catalog import CATEGORICAL_FEATURES, FEATURE_NAMES
from fraud_pipeline.lib.costs import CostModel, choose_threshold
from fraud_pipeline.training.model import ModelParams, score, train_model
from fraud_pipeline.training.windows import TrainingWindows

#: Fold metrics that get a spread.
FOLD_METRICS = ("savings_vs_approve_all_pct", "average_precision", "recall", "precision", "cost_per_transaction")


def run_fold(
    splits: dict[str, pd.DataFrame],
    params: ModelParams,
    cost_model: CostModel,
    rule_amount_threshold: float,
    daily_review_capacity: int,
    cohort: CohortSpec,
) -> tuple[dict, list[dict]]:
    """Trains on one fold's train split, chooses the threshold on its validation split, evaluates on its test split.

    Args:
        splits: ``train``, ``validation`` and ``test`` frames of the fold (features, is_fraud, amount,
            event_time, user_id).
        params: LightGBM settings (the candidate's).
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule (the candidate's).
        daily_review_capacity: k of user precision@k.
        cohort: The cohort split reported per fold.

    Returns:
        The fold's headline metrics (with threshold and cost_per_transaction) and its cohort rows.
    """
    model = train_model(splits["train"], splits["validation"], FEATURE_NAMES, CATEGORICAL_FEATURES, params)
    validation = splits["validation"]
    threshold = float(
        choose_threshold(
            score(model, validation), validation["is_fraud"].to_numpy(), validation["amount"].to_numpy(), cost_model
        ).threshold
    )
    test = splits["test"].copy()
    test["score"] = score(model, test)
    headline = evaluate_decisions(test, threshold, cost_model, rule_amount_threshold, daily_review_capacity)
    headline["threshold"] = threshold
    headline["cost_per_transaction"] = (
        headline["total_cost"] / headline["n_transactions"] if headline["n_transactions"] else math.nan
    )
    cohorts = cohort_table(test, threshold, cost_model, rule_amount_threshold, cohort).to_dict(orient="records")
    return headline, cohorts


def fold_row(index: int, windows: TrainingWindows, headline: dict) -> dict:
    """One row of the fold table."""
    return {
        "fold": index,
        "test_start": f"{windows.test_start:%Y-%m-%d}",
        "test_end": f"{windows.test_end:%Y-%m-%d}",
        "n_transactions": int(headline["n_transactions"]),
        "n_frauds": int(headline["n_frauds"]),
        "threshold": float(headline["threshold"]),
        **{metric: float(headline[metric]) for metric in FOLD_METRICS},
    }


def spread(folds: list[dict], metrics: tuple[str, ...] = FOLD_METRICS) -> dict[str, dict]:
    """Mean, standard deviation (ddof 1, NaN for one fold), min and max of each metric over the folds."""
    result = {}
    for metric in metrics:
        values = np.array([f[metric] for f in folds], dtype=float)
        values = values[~np.isnan(values)]
        result[metric] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "min": float(values.min()) if len(values) else math.nan,
            "max": float(values.max()) if len(values) else math.nan,
        }
    return result


def spread_findings(folds: list[dict], summary: dict[str, dict], candidate: dict, n_std: float) -> list[str]:
    """What the spread says against the candidate: folds that lose money on average, or a candidate far below them.

    A single fold near break-even is noise on a small world; the mean over folds saving nothing is not.

    Args:
        folds: Fold rows.
        summary: :func:`spread` of the folds.
        candidate: The candidate's test metrics (savings_vs_approve_all_pct, average_precision).
        n_std: How many fold standard deviations below the fold mean count as out of line.
    """
    findings = []
    savings = summary["savings_vs_approve_all_pct"]
    if not savings["mean"] > 0:
        per_fold = ", ".join(f"{f['test_start']}..{f['test_end']} {f['savings_vs_approve_all_pct']:.1%}" for f in folds)
        findings.append(f"the folds save {savings['mean']:.1%} of approve-all on average ({per_fold})")
    for metric in ("savings_vs_approve_all_pct", "average_precision"):
        stats, value = summary[metric], candidate.get(metric)
        if value is None or stats["std"] != stats["std"]:
            continue
        floor = stats["mean"] - n_std * stats["std"]
        if value < floor:
            findings.append(
                f"candidate {metric} {value:.3f} < fold mean {stats['mean']:.3f} - {n_std:g} std ({floor:.3f})"
            )
    return findings
