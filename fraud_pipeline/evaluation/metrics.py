"""Evaluation metrics that match the decision: cost, ranking quality, review-capacity precision, cohorts.

Accuracy is deliberately absent: with fraud rates well under 1%, approving everything is "99% accurate"
and catches nothing. A metric that is undefined on the rows given (AUC with one class, precision
with no alerts) is NaN, never an exception and never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_pipeline.lib.costs import (
    CostModel,
    approve_all_cost,
    as_finite,
    as_labels,
    decision_costs,
)

#: Cohort label for rows whose cohort column is NULL.
UNKNOWN = "unknown"
#: Cohort label for non-NULL values that fall outside every bin (e.g. a negative account age).
OUT_OF_RANGE = "out_of_range"
#: Metric columns of a cohort table row, after cohort and value.
COHORT_METRICS = (
    "n_transactions",
    "n_frauds",
    "fraud_rate",
    "total_cost",
    "approve_all_cost",
    "rule_cost",
    "savings_vs_approve_all",
    "savings_vs_approve_all_pct",
    "savings_vs_rule",
    "average_precision",
    "roc_auc",
    "precision",
    "recall",
    "f1",
    "n_alerts",
    "alert_rate",
)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else math.nan


def ranking_metrics(is_fraud, scores) -> dict:
    """Average precision and ROC AUC of the scores.

    Args:
        is_fraud: Labels (bool or 0/1).
        scores: Scores, higher meaning more suspicious.

    Returns:
        ``average_precision`` and ``roc_auc``, both NaN when only one class (or no row) is present.
    """
    labels = as_labels(is_fraud)
    values = as_finite(scores, "scores")
    if labels.all() or not labels.any():
        return {"average_precision": math.nan, "roc_auc": math.nan}
    # sklearn validates 0/1 integers faster than booleans.
    targets = labels.astype(np.int8)
    return {
        "average_precision": float(average_precision_score(targets, values)),
        "roc_auc": float(roc_auc_score(targets, values)),
    }


def threshold_metrics(is_fraud, alert) -> dict:
    """Confusion counts and precision, recall and F1 of a set of alerts.

    Args:
        is_fraud: Labels (bool or 0/1).
        alert: Whether each row is alerted.

    Returns:
        ``precision`` (NaN without alerts), ``recall`` (NaN without frauds), ``f1`` (2tp / (2tp + fp +
        fn), NaN without both alerts and frauds), ``n_alerts``, ``n_frauds``, ``tp``, ``fp``, ``fn``.
    """
    labels = as_labels(is_fraud)
    alerted = np.asarray(alert, dtype=bool).reshape(-1)
    if len(alerted) != len(labels):
        raise ValueError(f"is_fraud has {len(labels)} rows but alert has {len(alerted)}")
    tp = int(np.count_nonzero(labels & alerted))
    fp = int(np.count_nonzero(~labels & alerted))
    fn = int(np.count_nonzero(labels & ~alerted))
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "n_alerts": tp + fp,
        "n_frauds": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _user_days(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, user): the max score of the day and whether any transaction was fraud."""
    days = pd.DataFrame(
        {
            "day": pd.to_datetime(frame["event_time"]).dt.floor("D").to_numpy(),
            "user_id": frame["user_id"].to_numpy(),
            "score": as_finite(frame["score"], "score"),
            "is_fraud": as_labels(frame["is_fraud"]),
        }
    )
    grouped = days.groupby(["day", "user_id"], as_index=False, sort=False, dropna=False)
    return grouped.agg(score=("score", "max"), is_fraud=("is_fraud", "any"))


def _drop_known_compromised(user_days: pd.DataFrame) -> pd.DataFrame:
    """Removes each user from every day after its first fraudulent day in the frame."""
    fraud_day = user_days["day"].where(user_days["is_fraud"])
    first = fraud_day.groupby(user_days["user_id"], dropna=False).transform("min")
    return user_days.loc[first.isna() | (user_days["day"] <= first)]


def user_precision_at_k(frame: pd.DataFrame, k: int) -> dict:
    """Daily precision among the k most suspicious users, with already-compromised users removed.

    The Fraud-Detection-Handbook's card precision top-k, with users in place of cards: per calendar day
    a user's score is its highest transaction score and it is fraudulent if any of its transactions
    is; users with a fraud on an earlier day of the frame are no longer ranked; the k highest-scoring
    remaining users (ties by user_id) are the day's reviews.

    Args:
        frame: Columns event_time (datetime64), user_id, score, is_fraud.
        k: Users the fraud team can review per day.

    Returns:
        ``mean``: average daily precision over the days with a ranked user (NaN if none);
        ``per_day``: one row per day of the frame with day, n_ranked (min(k, users left)),
        n_fraud_in_top_k and precision (n_fraud_in_top_k / n_ranked, NaN when nobody is left).

    Raises:
        ValueError: If k < 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    user_days = _user_days(frame)
    all_days = pd.Index(np.sort(user_days["day"].unique()), name="day")
    ranked = _drop_known_compromised(user_days).sort_values(
        ["day", "score", "user_id"], ascending=[True, False, True], kind="stable"
    )
    top = ranked.loc[ranked.groupby("day").cumcount() < k]
    per_day = (
        top.groupby("day")
        .agg(n_ranked=("is_fraud", "size"), n_fraud_in_top_k=("is_fraud", "sum"))
        .reindex(all_days, fill_value=0)
        .astype(np.int64)
        .reset_index()
    )
    per_day["precision"] = per_day["n_fraud_in_top_k"] / per_day["n_ranked"].where(per_day["n_ranked"] > 0)
    mean = float(per_day["precision"].mean()) if per_day["precision"].notna().any() else math.nan
    return {"mean": mean, "per_day": per_day}


@dataclass(frozen=True)
class CohortSpec:
    """How rows are split into cohorts.

    Attributes:
        name: Cohort name in tables (e.g. ``account_age``).
        column: Frame column the cohort is derived from.
        bins: Right-open bin edges for a numeric column; None to use the column's values as they are.
        labels: One label per bin; defaults to ``[a, b)``.
    """

    name: str
    column: str
    bins: tuple | None = None
    labels: tuple | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.bins is None:
            raise ValueError(f"cohort {self.name!r} has labels but no bins")
        if self.bins is not None and self.labels is not None and len(self.labels) != len(self.bins) - 1:
            raise ValueError(f"cohort {self.name!r} needs {len(self.bins) - 1} labels, got {len(self.labels)}")

    def bin_labels(self) -> tuple[str, ...]:
        """The bin labels in bin order (empty for a categorical cohort)."""
        if self.bins is None:
            return ()
        if self.labels is not None:
            return tuple(str(label) for label in self.labels)
        return tuple(f"[{lo:g}, {hi:g})" for lo, hi in zip(self.bins[:-1], self.bins[1:]))


DEFAULT_COHORTS = (
    CohortSpec("account_age", "account_age_days", bins=(0, 7, 30, math.inf), labels=("<7d", "7-30d", ">30d")),
    CohortSpec("channel", "channel"),
    CohortSpec("region", "country"),
)


def assign_cohort(frame: pd.DataFrame, spec: CohortSpec) -> pd.Series:
    """The cohort label of each row.

    Args:
        frame: Rows holding ``spec.column``.
        spec: The cohort definition.

    Returns:
        String labels aligned with ``frame``'s index and named ``spec.name``: the bin label (right-open
        bins) or the value itself; ``unknown`` for NULL, ``out_of_range`` for a value outside every bin.
    """
    values = frame[spec.column]
    if spec.bins is None:
        labels = values.astype(object).where(values.notna(), UNKNOWN).astype(str)
    else:
        binned = pd.cut(values.astype(float), bins=list(spec.bins), right=False, labels=list(spec.bin_labels()))
        labels = binned.astype(object).where(binned.notna(), OUT_OF_RANGE).where(values.notna(), UNKNOWN).astype(str)
    return labels.rename(spec.name)


def _decision_metrics(
    frame: pd.DataFrame, threshold: float, cost_model: CostModel, rule_amount_threshold: float
) -> dict:
    """Cost, ranking and threshold metrics of the alert rule ``score >= threshold`` on the frame's rows."""
    fraud = as_labels(frame["is_fraud"])
    amount = as_finite(frame["amount"], "amount")
    scores = as_finite(frame["score"], "score")
    alert = scores >= threshold
    n = len(fraud)
    total = float(decision_costs(fraud, amount, alert, cost_model).sum())
    approve_all = approve_all_cost(fraud, amount, cost_model)
    rule = float(decision_costs(fraud, amount, amount >= rule_amount_threshold, cost_model).sum())
    decisions = threshold_metrics(fraud, alert)
    return {
        "n_transactions": n,
        "n_frauds": decisions["n_frauds"],
        "fraud_rate": _ratio(decisions["n_frauds"], n),
        "total_cost": total,
        "approve_all_cost": approve_all,
        "rule_cost": rule,
        "savings_vs_approve_all": approve_all - total,
        "savings_vs_approve_all_pct": _ratio(approve_all - total, approve_all),
        "savings_vs_rule": rule - total,
        **ranking_metrics(fraud, scores),
        "precision": decisions["precision"],
        "recall": decisions["recall"],
        "f1": decisions["f1"],
        "n_alerts": decisions["n_alerts"],
        "alert_rate": _ratio(decisions["n_alerts"], n),
    }


def evaluate_decisions(
    frame: pd.DataFrame,
    threshold: float,
    cost_model: CostModel,
    rule_amount_threshold: float,
    daily_review_capacity: int,
) -> dict:
    """Headline metrics of the alert rule ``score >= threshold`` on a scored window.

    Args:
        frame: Columns is_fraud, score, amount, event_time, user_id.
        threshold: The model's alert threshold.
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule "alert when amount >= A".
        daily_review_capacity: k of user precision@k.

    Returns:
        A flat dict: n_transactions, n_frauds, fraud_rate, total_cost, approve_all_cost, rule_cost,
        savings_vs_approve_all (approve_all_cost - total_cost), savings_vs_approve_all_pct,
        savings_vs_rule (rule_cost - total_cost), average_precision, roc_auc, precision, recall, f1,
        n_alerts, alert_rate, user_precision_at_k (mean over days) and review_capacity_k.
    """
    return {
        **_decision_metrics(frame, threshold, cost_model, rule_amount_threshold),
        "user_precision_at_k": user_precision_at_k(frame, daily_review_capacity)["mean"],
        "review_capacity_k": int(daily_review_capacity),
    }


def _cohort_order(values: pd.Index, spec: CohortSpec) -> list[str]:
    """Bins in bin order, then anything else (out_of_range, unknown, categories) alphabetically."""
    in_bins = [label for label in spec.bin_labels() if label in values]
    return in_bins + sorted(set(values) - set(in_bins))


def cohort_table(
    frame: pd.DataFrame, threshold: float, cost_model: CostModel, rule_amount_threshold: float, spec: CohortSpec
) -> pd.DataFrame:
    """The decision metrics of :func:`evaluate_decisions` (without precision@k) per cohort value.

    Args:
        frame: Columns is_fraud, score, amount and ``spec.column``.
        threshold: The model's alert threshold.
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule "alert when amount >= A".
        spec: The cohort definition.

    Returns:
        One row per cohort value present: cohort, value, then n_transactions, n_frauds and the cost,
        ranking and threshold metrics of those rows (NaN where undefined). Bins come in bin order,
        other values alphabetically.
    """
    rows = dict(list(frame.groupby(assign_cohort(frame, spec), sort=False)))
    return pd.DataFrame(
        [
            {
                "cohort": spec.name,
                "value": value,
                **_decision_metrics(rows[value], threshold, cost_model, rule_amount_threshold),
            }
            for value in _cohort_order(pd.Index(rows), spec)
        ],
        columns=["cohort", "value", *COHORT_METRICS],
    )
