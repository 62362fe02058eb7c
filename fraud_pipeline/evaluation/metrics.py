"""Evaluation metrics that match the decision: cost, ranking quality, review-capacity precision, cohorts.

Accuracy is deliberately absent: with fraud rates well under 1%, approving everything is "99% accurate"
and catches nothing. A metric that is undefined on the rows given (AUC with one class, precision
with no alerts) is NaN, never an exception and never 0.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_pipeline.lib.cohort_splits import (  # noqa: F401 (re-exported: the evaluation's cohort vocabulary)
    DEFAULT_COHORTS,
    OUT_OF_RANGE,
    UNKNOWN,
    CohortSpec,
    assign_cohort,
)
from fraud_pipeline.lib.costs import (
    CostModel,
    approve_all_cost,
    as_finite,
    as_labels,
    decision_costs,
)
from fraud_pipeline.lib.policy import DecisionPolicy, as_policy

#: What every metric function decides with: one threshold for every row, or a per-cohort policy.
Decision = float | DecisionPolicy

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


def _precision_per_day(top: pd.DataFrame, all_days: pd.Index) -> dict:
    """``mean`` and ``per_day`` of the day's reviewed users (``top``), every day of ``all_days`` present."""
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


def _ranked(user_days: pd.DataFrame) -> pd.DataFrame:
    """Most suspicious first, ties broken by user_id, so the same day always reviews the same users."""
    return user_days.sort_values(["score", "user_id"], ascending=[False, True], kind="stable")


def user_precision_at_k(frame: pd.DataFrame, k: int) -> dict:
    """Daily precision among the k most suspicious users, users the model already caught removed (the headline).

    The Fraud-Detection-Handbook's card precision top-k, with users in place of cards: per calendar day
    a user's score is its highest transaction score and it is fraudulent if any of its transactions
    is; the k highest-scoring users (ties by user_id) are the day's reviews. A user reviewed on a day
    it was fraudulent has been *detected*: the fraud team blocks it, so it is not ranked on any later
    day. A compromised user the model did not put in a day's top k stays in the ranking, as it would
    in production, where nobody knows yet.

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
    detected: set = set()
    reviewed = []
    for _, day in user_days.groupby("day", sort=True):
        top = _ranked(day.loc[~day["user_id"].isin(list(detected))]).head(k)
        reviewed.append(top)
        detected.update(top.loc[top["is_fraud"], "user_id"].tolist())
    top = pd.concat(reviewed, ignore_index=True) if reviewed else user_days.iloc[:0]
    return _precision_per_day(top, all_days)


def user_precision_at_k_until_first_fraud(frame: pd.DataFrame, k: int) -> dict:
    """Daily precision among the k most suspicious users, every user removed after its first fraudulent day.

    Unlike :func:`user_precision_at_k`, a user leaves the ranking after its first fraudulent day in the
    frame whether the model caught it or not, so the users ranked on each day do not depend on the
    model: two models are ranked over the same users every day, and each compromise counts on one
    day only. It reads lower than the headline, since a compromise the model misses on its first day
    cannot be caught later. Same arguments and result as :func:`user_precision_at_k`.

    Raises:
        ValueError: If k < 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    user_days = _user_days(frame)
    all_days = pd.Index(np.sort(user_days["day"].unique()), name="day")
    fraud_day = user_days["day"].where(user_days["is_fraud"])
    first = fraud_day.groupby(user_days["user_id"], dropna=False).transform("min")
    kept = user_days.loc[first.isna() | (user_days["day"] <= first)]
    ranked = kept.sort_values(["day", "score", "user_id"], ascending=[True, False, True], kind="stable")
    return _precision_per_day(ranked.loc[ranked.groupby("day").cumcount() < k], all_days)


def _decision_metrics(
    frame: pd.DataFrame, threshold: Decision, cost_model: CostModel, rule_amount_threshold: float
) -> dict:
    """Cost, ranking and threshold metrics of the decisions (``score >=`` the row's threshold) on the frame's rows."""
    fraud = as_labels(frame["is_fraud"])
    amount = as_finite(frame["amount"], "amount")
    scores = as_finite(frame["score"], "score")
    alert = as_policy(threshold).alerts(scores, frame)
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
    threshold: Decision,
    cost_model: CostModel,
    rule_amount_threshold: float,
    daily_review_capacity: int,
) -> dict:
    """Headline metrics of the decisions (``score >=`` the row's threshold) on a scored window.

    Args:
        frame: Columns is_fraud, score, amount, event_time, user_id (and a policy's split columns).
        threshold: The model's alert threshold, or its decision policy.
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule "alert when amount >= A".
        daily_review_capacity: k of user precision@k.

    Returns:
        A flat dict: n_transactions, n_frauds, fraud_rate, total_cost, approve_all_cost, rule_cost,
        savings_vs_approve_all (approve_all_cost - total_cost), savings_vs_approve_all_pct,
        savings_vs_rule (rule_cost - total_cost), average_precision, roc_auc, precision, recall, f1,
        n_alerts, alert_rate, user_precision_at_k (mean over days; users the model caught removed),
        user_precision_at_k_until_first_fraud (every user removed after its first fraudulent day) and
        review_capacity_k.
    """
    return {
        **_decision_metrics(frame, threshold, cost_model, rule_amount_threshold),
        "user_precision_at_k": user_precision_at_k(frame, daily_review_capacity)["mean"],
        "user_precision_at_k_until_first_fraud": user_precision_at_k_until_first_fraud(frame, daily_review_capacity)[
            "mean"
        ],
        "review_capacity_k": int(daily_review_capacity),
    }


def _cohort_order(values: pd.Index, spec: CohortSpec) -> list[str]:
    """Bins in bin order, then anything else (out_of_range, unknown, categories) alphabetically."""
    in_bins = [label for label in spec.bin_labels() if label in values]
    return in_bins + sorted(set(values) - set(in_bins))


def cohort_table(
    frame: pd.DataFrame, threshold: Decision, cost_model: CostModel, rule_amount_threshold: float, spec: CohortSpec
) -> pd.DataFrame:
    """The decision metrics of :func:`evaluate_decisions` (without precision@k) per cohort value.

    Args:
        frame: Columns is_fraud, score, amount and ``spec.column`` (and a policy's split columns).
        threshold: The model's alert threshold, or its decision policy.
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


#: Metrics of :func:`day_bootstrap` (sums over days, or ratios of such sums).
DAY_BOOTSTRAP_METRICS = (
    "total_cost",
    "savings_vs_approve_all",
    "savings_vs_approve_all_pct",
    "savings_vs_rule",
    "recall",
    "precision",
)
_DAY_SUMS = ("total_cost", "approve_all_cost", "rule_cost", "n_frauds", "n_caught", "n_alerts")


def _day_sums(
    frame: pd.DataFrame, threshold: Decision, cost_model: CostModel, rule_amount_threshold: float
) -> pd.DataFrame:
    """Per row, the quantities whose sums over days every :data:`DAY_BOOTSTRAP_METRICS` metric is made of."""
    fraud = as_labels(frame["is_fraud"])
    amount = as_finite(frame["amount"], "amount")
    alert = as_policy(threshold).alerts(frame["score"], frame)
    return pd.DataFrame(
        {
            "day": pd.to_datetime(frame["event_time"]).dt.floor("D").to_numpy(),
            "total_cost": decision_costs(fraud, amount, alert, cost_model),
            "approve_all_cost": decision_costs(fraud, amount, np.zeros(len(fraud), bool), cost_model),
            "rule_cost": decision_costs(fraud, amount, amount >= rule_amount_threshold, cost_model),
            "n_frauds": fraud.astype(float),
            "n_caught": (fraud & alert).astype(float),
            "n_alerts": alert.astype(float),
        },
        index=frame.index,
    )


def _day_metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
    """:data:`DAY_BOOTSTRAP_METRICS` from summed columns in :data:`_DAY_SUMS` order (last axis)."""
    total, approve, rule, frauds, caught, alerts = (sums[..., i] for i in range(len(_DAY_SUMS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "total_cost": total,
            "savings_vs_approve_all": approve - total,
            "savings_vs_approve_all_pct": np.where(approve > 0, (approve - total) / approve, np.nan),
            "savings_vs_rule": rule - total,
            "recall": np.where(frauds > 0, caught / frauds, np.nan),
            "precision": np.where(alerts > 0, caught / alerts, np.nan),
        }


def _percentiles(sample: np.ndarray, level: float) -> tuple[float, float]:
    """The two-sided percentile interval of the defined resamples; NaN when most are undefined."""
    defined = sample[~np.isnan(sample)]
    if len(defined) < 0.5 * len(sample) or not len(defined):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    return float(np.quantile(defined, tail)), float(np.quantile(defined, 1.0 - tail))


def day_bootstrap(
    frame: pd.DataFrame,
    threshold: Decision,
    cost_model: CostModel,
    rule_amount_threshold: float,
    n_resamples: int,
    seed: int,
    level: float = 0.9,
    cohorts: tuple[CohortSpec, ...] = (),
) -> dict:
    """Percentile intervals of cost, savings, recall and precision from resampling whole days.

    Frauds come in bursts (one compromised merchant, one card-testing night), so the days of a
    window, not its transactions, are the independent draws: each resample draws as many days as
    the window has, with replacement, from a seeded generator, and sums their costs and counts.
    Every cohort is priced on the same resampled days as the whole window.

    Args:
        frame: Columns event_time, is_fraud, amount, score, and each cohort's (and the policy's) column.
        threshold: The alert threshold, or the decision policy.
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule "alert when amount >= A".
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling: the same frame and seed give the same intervals.
        level: Two-sided coverage.
        cohorts: Cohort splits to give intervals too.

    Returns:
        ``n_days``, ``n_resamples``, ``level``, ``seed``; ``intervals``: metric -> (low, high) for each
        of :data:`DAY_BOOTSTRAP_METRICS` (NaN where undefined in most resamples or without rows);
        ``cohorts``: one row per cohort value with cohort, value and ``<metric>_low`` / ``<metric>_high``.
    """
    sums = _day_sums(frame, threshold, cost_model, rule_amount_threshold)
    days = np.sort(sums["day"].unique())
    result = {"n_days": len(days), "n_resamples": int(n_resamples), "level": level, "seed": seed}
    if not len(days) or n_resamples < 1:
        result["intervals"] = {m: (math.nan, math.nan) for m in DAY_BOOTSTRAP_METRICS}
        result["cohorts"] = []
        return result
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(days), size=(n_resamples, len(days)))
    weights = np.stack([np.bincount(row, minlength=len(days)) for row in draws]).astype(float)

    def intervals(rows: pd.DataFrame) -> dict[str, tuple[float, float]]:
        by_day = rows.groupby("day")[list(_DAY_SUMS)].sum().reindex(days, fill_value=0.0).to_numpy()
        return {m: _percentiles(v, level) for m, v in _day_metrics(weights @ by_day).items()}

    result["intervals"] = intervals(sums)
    rows = []
    for spec in cohorts:
        labels = assign_cohort(frame, spec)
        groups = dict(list(sums.groupby(labels.to_numpy(), sort=False)))
        for value in _cohort_order(pd.Index(groups), spec):
            found = intervals(groups[value])
            rows.append(
                {
                    "cohort": spec.name,
                    "value": value,
                    **{
                        f"{m}_{side}": found[m][i]
                        for m in DAY_BOOTSTRAP_METRICS
                        for i, side in enumerate(("low", "high"))
                    },
                }
            )
    result["cohorts"] = rows
    return result


#: Columns of a :func:`policy_vs_single` row.
POLICY_VS_SINGLE_COLUMNS = (
    "cohort",
    "value",
    "n_transactions",
    "n_frauds",
    "policy_total_cost",
    "single_total_cost",
    "cost_difference",
    "policy_savings_vs_approve_all_pct",
    "single_savings_vs_approve_all_pct",
    "policy_recall",
    "single_recall",
    "policy_n_alerts",
    "single_n_alerts",
)


def policy_vs_single(
    frame: pd.DataFrame,
    policy: DecisionPolicy,
    cost_model: CostModel,
    rule_amount_threshold: float,
    cohorts: tuple[CohortSpec, ...] = (),
) -> list[dict]:
    """The policy beside its own single global threshold on the same rows, overall and per cohort.

    Args:
        frame: Scored rows (is_fraud, score, amount, the policy's and the cohorts' columns).
        policy: The decision policy.
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule (kept for the metric functions' shape).
        cohorts: The cohort splits to compare per value.

    Returns:
        The row of every row first (cohort ``all``), then one per cohort value: n_transactions,
        n_frauds, each decision's total_cost, savings_vs_approve_all_pct, recall and n_alerts, and
        cost_difference = policy - single (negative: the policy is cheaper).
    """
    single = DecisionPolicy.single(policy.global_threshold)

    def row(cohort: str, value: str, rows: pd.DataFrame) -> dict:
        mine = _decision_metrics(rows, policy, cost_model, rule_amount_threshold)
        one = _decision_metrics(rows, single, cost_model, rule_amount_threshold)
        out = {"cohort": cohort, "value": value, "n_transactions": mine["n_transactions"], "n_frauds": mine["n_frauds"]}
        for key in ("total_cost", "savings_vs_approve_all_pct", "recall", "n_alerts"):
            out[f"policy_{key}"], out[f"single_{key}"] = mine[key], one[key]
        out["cost_difference"] = mine["total_cost"] - one["total_cost"]
        return {column: out[column] for column in POLICY_VS_SINGLE_COLUMNS}

    rows = [row("all", "all", frame)]
    for spec in cohorts:
        groups = dict(list(frame.groupby(assign_cohort(frame, spec), sort=False)))
        rows += [row(spec.name, value, groups[value]) for value in _cohort_order(pd.Index(groups), spec)]
    return rows


def wilson_interval(successes: float, n: float, level: float) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (NaN without trials)."""
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def reliability_bins(is_fraud, scores, n_bins: int = 10, level: float = 0.9) -> list[dict]:
    """Mean score against observed fraud rate in score bins that each hold about the same expected frauds.

    Fraud is rare, so bins of equal row counts would put almost every bin among the lowest scores;
    bins of equal *score mass* (the sum of scores, the expected number of frauds) spread them over
    the range where alerts are decided. Rows are ordered by score (ties by position), so the bins
    are deterministic.

    Args:
        is_fraud: Labels.
        scores: Scores in [0, 1].
        n_bins: Bins at most (fewer when the rows are fewer).
        level: Coverage of the observed rate's Wilson interval.

    Returns:
        One row per non-empty bin, lowest scores first: bin, n_transactions, n_frauds, score_low,
        score_high, mean_score, observed_rate, observed_rate_low, observed_rate_high.
    """
    labels = as_labels(is_fraud)
    values = as_finite(scores, "scores")
    if not len(values):
        return []
    order = np.argsort(values, kind="stable")
    ranked, ranked_fraud = values[order], labels[order]
    mass = np.cumsum(ranked) - ranked
    total = float(ranked.sum())
    index = np.minimum((mass / total * n_bins).astype(int), n_bins - 1) if total > 0 else np.zeros(len(ranked), int)
    rows = []
    for b in np.unique(index):
        members = index == b
        n, frauds = int(members.sum()), int(ranked_fraud[members].sum())
        low, high = wilson_interval(frauds, n, level)
        rows.append(
            {
                "bin": int(b) + 1,
                "n_transactions": n,
                "n_frauds": frauds,
                "score_low": float(ranked[members].min()),
                "score_high": float(ranked[members].max()),
                "mean_score": float(ranked[members].mean()),
                "observed_rate": frauds / n,
                "observed_rate_low": low,
                "observed_rate_high": high,
            }
        )
    return rows


def feature_importance(booster, matrix: pd.DataFrame) -> list[dict]:
    """Each feature's LightGBM gain beside its mean contribution to the scores of ``matrix``'s rows.

    Gain says what the trees split on while learning; ``pred_contrib`` (exact per-row additive
    contributions to the raw score, in log-odds, which with the bias sum to the raw score) says what
    moves the scores of the rows given. The two disagree where a feature was split on often but
    rarely matters for the traffic scored.

    Args:
        booster: The LightGBM booster.
        matrix: The model matrix of the rows (``to_model_matrix``), columns in the booster's order.

    Returns:
        One row per feature, by mean |contribution| then name: feature, gain, gain_share,
        mean_abs_contribution, contribution_share (of the summed mean |contribution|) and
        mean_contribution (signed: positive raises scores on average).
    """
    names = list(booster.feature_name())
    gain = np.asarray(booster.feature_importance("gain"), dtype=float)
    contributions = (
        np.asarray(booster.predict(matrix, pred_contrib=True))[:, : len(names)]
        if len(matrix)
        else np.zeros((0, len(names)))
    )
    mean_abs = np.abs(contributions).mean(axis=0) if len(matrix) else np.full(len(names), math.nan)
    mean = contributions.mean(axis=0) if len(matrix) else np.full(len(names), math.nan)
    total_gain, total_abs = float(gain.sum()), float(np.nansum(mean_abs))
    rows = [
        {
            "feature": name,
            "gain": float(gain[i]),
            "gain_share": float(gain[i]) / total_gain if total_gain else math.nan,
            "mean_abs_contribution": float(mean_abs[i]),
            "contribution_share": float(mean_abs[i]) / total_abs if total_abs else math.nan,
            "mean_contribution": float(mean[i]),
        }
        for i, name in enumerate(names)
    ]
    # without rows to explain, gain alone orders them
    return sorted(rows, key=lambda r: (-np.nan_to_num(r["mean_abs_contribution"], nan=0.0), -r["gain"], r["feature"]))
