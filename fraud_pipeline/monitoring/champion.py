"""Monitoring the champion as labels mature: realised performance next to what its evaluation promised.

Per-feature drift compares inputs; it cannot see a model whose inputs look the same while the
relation between inputs and fraud changed (a new cohort whose fraudsters look like genuine users).
Realised cost and AP on labels that matured after the deploy measure exactly that relation, weeks
late but without assumptions, and per cohort.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd

from fraud_pipeline.evaluation.metrics import CohortSpec, cohort_table, evaluate_decisions
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.policy import policy_of

#: Headline metrics compared between the promise and the realisation.
COMPARED = ("cost_per_transaction", "savings_vs_approve_all_pct", "average_precision", "recall", "precision")


def matured_window(
    deployed_cutoff: datetime, current_cutoff: datetime, window_days: int
) -> tuple[datetime, datetime] | None:
    """The newest window of labels that were immature when the champion was deployed and are mature now.

    Args:
        deployed_cutoff: The champion's label cutoff (as_of minus horizon at its deploy); its training,
            validation and test windows all end by it.
        current_cutoff: Tonight's label cutoff.
        window_days: Longest window to score (the newest part of the matured span).

    Returns:
        ``(start, end)`` with ``start >= deployed_cutoff``, or None when nothing has matured since.
    """
    if current_cutoff <= deployed_cutoff:
        return None
    return max(deployed_cutoff, current_cutoff - timedelta(days=window_days)), current_cutoff


def with_cost_per_transaction(metrics: dict) -> dict:
    """The metrics with ``cost_per_transaction`` added (windows of different lengths compare per transaction)."""
    n = metrics.get("n_transactions") or 0
    return {**metrics, "cost_per_transaction": metrics["total_cost"] / n if n else math.nan}


def compare(promised: dict, realised: dict) -> list[dict]:
    """Promised against realised value of each compared metric, with the gap (realised - promised)."""
    promised, realised = with_cost_per_transaction(promised), with_cost_per_transaction(realised)
    return [
        {
            "metric": m,
            "promised": float(promised[m]),
            "realised": float(realised[m]),
            "gap": float(realised[m]) - float(promised[m]),
        }
        for m in COMPARED
    ]


def shortfalls(
    comparison: list[dict], n_frauds: int, min_frauds: int, max_savings_drop: float, max_ap_drop: float
) -> list[str]:
    """Where the realised performance falls below the promise by more than the margins.

    Args:
        comparison: Rows of :func:`compare`.
        n_frauds: Frauds in the realised window.
        min_frauds: Below this the window is too small to call a shortfall (reported, not judged).
        max_savings_drop: Largest tolerated fall of savings against approve-all, in share points.
        max_ap_drop: Largest tolerated relative fall of average precision.

    Returns:
        One sentence per shortfall (empty when the promise holds or the window is too small).
    """
    if n_frauds < min_frauds:
        return []
    rows = {r["metric"]: r for r in comparison}
    found = []
    savings = rows["savings_vs_approve_all_pct"]
    if not savings["realised"] >= savings["promised"] - max_savings_drop:
        found.append(
            f"savings vs approve-all {savings['realised']:.1%} realised vs {savings['promised']:.1%} promised "
            f"(more than {max_savings_drop:.0%} points below)"
        )
    ap = rows["average_precision"]
    if not ap["realised"] >= ap["promised"] * (1.0 - max_ap_drop):
        found.append(
            f"average precision {ap['realised']:.3f} realised vs {ap['promised']:.3f} promised "
            f"(more than {max_ap_drop:.0%} below)"
        )
    return found


def realised_decisions(frame: pd.DataFrame, bundle: dict, cohorts: tuple[CohortSpec, ...]) -> tuple[dict, list[dict]]:
    """The champion's realised metrics on matured rows it scored, decided as it decides: by its policy.

    The promise was made of the policy's decisions on the test window (a bundle written before
    policies: of its single threshold), so the realisation is measured on the same rule.

    Args:
        frame: Matured rows with ``score`` (the main model's), is_fraud, amount, event_time, user_id,
            each cohort's column and the policy's split columns.
        bundle: The champion's bundle (its policy or threshold, cost model and evaluation).
        cohorts: The splits the promise was cut by.

    Returns:
        The headline metrics (:func:`~fraud_pipeline.evaluation.metrics.evaluate_decisions`) and one row
        per cohort value (:func:`~fraud_pipeline.evaluation.metrics.cohort_table`).
    """
    policy = policy_of(bundle)
    promised = bundle["evaluation"]
    cost_model = CostModel(**bundle["cost_model"])
    rule = promised["rule_amount_threshold"]
    realised = evaluate_decisions(frame, policy, cost_model, rule, int(promised.get("review_capacity_k", 50)))
    by_cohort = [
        row
        for split in cohorts
        for row in cohort_table(frame, policy, cost_model, rule, split).to_dict(orient="records")
    ]
    return realised, by_cohort
