"""Cohort evaluation beyond point metrics: bootstrap intervals, calibration, and mix-vs-within decomposition.

A headline metric is a weighted sum over cohorts, so it moves for two different reasons: the cohorts'
weights changed (more new accounts) or the model got better or worse inside a cohort. The shift-share
decomposition separates them exactly for metrics that are sums over transactions (cost per
transaction): with weights w and per-cohort values m,

    sum w_new m_new - sum w_old m_old = sum (w_new - w_old) m_old  +  sum w_new (m_new - m_old)
                                        (cohort-mix change)          (within-cohort change)

Average precision is not a sum over transactions. It is decomposed with the cohorts' shares of frauds
as weights and per-cohort AP as values; what that leaves unexplained (how well the model ranks
frauds of one cohort above genuine transactions of another) is reported as ``cross_cohort``.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd

from fraud_pipeline.evaluation.metrics import CohortSpec, Decision, assign_cohort, ranking_metrics
from fraud_pipeline.lib.cohort_splits import DEFAULT_COHORT_NAMES, cohorts_named  # noqa: F401 (re-exported)
from fraud_pipeline.lib.costs import (
    CostModel,
    approve_all_cost,
    as_finite,
    as_labels,
    decision_costs,
)
from fraud_pipeline.lib.policy import as_policy

#: Metrics that get a bootstrap interval.
INTERVAL_METRICS = ("recall", "precision", "savings_vs_approve_all_pct", "average_precision")


def cohorts_of(columns, cohorts: tuple[CohortSpec, ...]) -> tuple[CohortSpec, ...]:
    """The cohort splits a frame can be cut by: those whose column it has.

    A data set without channel or country columns (and a feature spec without them) has no channel or
    region cohort; that is an absent split, not a failed one.

    Args:
        columns: The frame's columns.
        cohorts: The cohort definitions wanted (e.g. ``DEFAULT_COHORTS``).
    """
    present = set(columns)
    return tuple(c for c in cohorts if c.column in present)


#: Cohort columns the warehouse can give a row that does not carry them, as SQL over the row's
#: transaction ``t`` and its user ``u``. Account age is the same derivation as the feature of that
#: name, so a spec without it as a feature still has the new-vs-mature split.
WAREHOUSE_COHORT_SQL = {"account_age_days": "(epoch_us(t.event_time) - epoch_us(u.created_at)) / 1e6 / 86400.0"}


def evaluated_cohorts(rows: list[dict]) -> tuple[CohortSpec, ...]:
    """The cohort splits an evaluation's cohort rows were cut by, in their order (what downstream steps compare against)."""
    return cohorts_named(dict.fromkeys(r["cohort"] for r in rows))


def with_cohort_columns(
    con, frame: pd.DataFrame, cohorts: tuple[CohortSpec, ...], transactions: str = "transactions", users: str = "users"
) -> tuple[pd.DataFrame, tuple[CohortSpec, ...]]:
    """The frame with every cohort column it lacks read from the warehouse, and the cohort splits it can be cut by.

    A feature row carries only its spec's columns; the cohorts do not depend on the spec. A column the
    frame lacks is read by ``transaction_id``: account age from the user's ``created_at``
    (:data:`WAREHOUSE_COHORT_SQL`), any other from the transactions table when it has that column. A
    cohort whose column neither has, or whose column is NULL on every row (a file without ``channel``
    lands it as an all-NULL column), is left out: an absent split, not a failed one and not one
    ``unknown`` cohort holding every row.

    Args:
        con: A warehouse connection.
        frame: Rows with ``transaction_id``.
        cohorts: The cohort splits wanted.
        transactions, users: The tables to read from.

    Returns:
        The frame (a copy where columns were added, in the same row order) and the splits it has.
    """
    missing = list(dict.fromkeys(c.column for c in cohorts if c.column not in frame.columns))
    if not missing:
        return frame, _informative(frame, cohorts)
    available = _columns(con, transactions)
    user_columns = _columns(con, users) if "user_id" in available else set()
    readable = {}
    for column in missing:
        if column in WAREHOUSE_COHORT_SQL and {"created_at"} <= user_columns:
            readable[column] = WAREHOUSE_COHORT_SQL[column]
        elif column in available:
            readable[column] = f"t.{column}"
    if not readable:
        return frame, _informative(frame, cohorts)
    join = f"LEFT JOIN {users} AS u USING (user_id)" if any("u." in sql for sql in readable.values()) else ""
    keys = pd.DataFrame({"_row": np.arange(len(frame)), "transaction_id": frame["transaction_id"].to_numpy()})
    con.register("_cohort_keys", keys)
    try:
        read = con.execute(f"""
            SELECT k._row, {", ".join(f"{sql} AS {column}" for column, sql in readable.items())}
            FROM _cohort_keys AS k LEFT JOIN {transactions} AS t USING (transaction_id) {join}
            ORDER BY k._row
        """).df()
    finally:
        con.unregister("_cohort_keys")
    frame = frame.assign(**{column: read[column].to_numpy() for column in readable})
    return frame, _informative(frame, cohorts)


def _informative(frame: pd.DataFrame, cohorts: tuple[CohortSpec, ...]) -> tuple[CohortSpec, ...]:
    """The splits whose column the frame has with at least one value (every split of an empty frame that has its column)."""
    present = cohorts_of(frame.columns, cohorts)
    return present if frame.empty else tuple(c for c in present if frame[c.column].notna().any())


def _columns(con, table: str) -> set[str]:
    """The columns of a table or view, empty when there is none of that name."""
    try:
        return set(con.sql(f"SELECT * FROM {table} LIMIT 0").columns)
    except duckdb.CatalogException:
        return set()


def _weighted_ap(order_fraud: np.ndarray, group_end: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of B resamples at once, from row weights (resample counts) in score order.

    Args:
        order_fraud: 1 for fraud, 0 otherwise, rows sorted by descending score.
        group_end: Index of the last row of each group of tied scores (in that order).
        weights: (B, n) resample counts in the same row order.

    Returns:
        AP per resample, with ties handled as one threshold like scikit-learn; NaN without frauds.
    """
    tp = np.cumsum(weights * order_fraud, axis=1)[:, group_end]
    seen = np.cumsum(weights, axis=1)[:, group_end]
    positives = tp[:, -1]
    gained = np.diff(tp, axis=1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / seen, 0.0)
        return np.where(positives > 0, (gained * precision).sum(axis=1) / positives, np.nan)


def bootstrap_intervals(
    frame: pd.DataFrame, threshold: Decision, cost_model: CostModel, n_resamples: int, seed: int, level: float = 0.9
) -> dict:
    """Percentile bootstrap intervals of recall, precision, savings share and AP on the frame's rows.

    Rows are resampled with replacement ``n_resamples`` times with a seeded generator, so the same
    frame and seed always give the same interval.

    Args:
        frame: Columns is_fraud, score, amount (and the policy's split columns).
        threshold: The alert threshold, or the decision policy.
        cost_model: The costs.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling.
        level: Two-sided coverage of the interval.

    Returns:
        ``<metric>_low`` and ``<metric>_high`` for each of ``INTERVAL_METRICS`` (NaN where the metric
        is undefined in too many resamples to say, e.g. no fraud at all).
    """
    fraud = as_labels(frame["is_fraud"]).astype(float)
    scores = as_finite(frame["score"], "score")
    amount = as_finite(frame["amount"], "amount")
    n = len(fraud)
    empty = {f"{m}_{side}": math.nan for m in INTERVAL_METRICS for side in ("low", "high")}
    if n == 0 or n_resamples < 1:
        return empty
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    group_end = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    alert = as_policy(threshold).alerts(scores, frame).astype(float)
    approve_cost = decision_costs(fraud.astype(bool), amount, np.zeros(n, bool), cost_model)
    saved = approve_cost - decision_costs(fraud.astype(bool), amount, alert.astype(bool), cost_model)
    rng = np.random.default_rng(seed)
    values = {m: [] for m in INTERVAL_METRICS}
    # Resample in chunks so that memory stays at chunk * n counts.
    chunk = max(1, min(n_resamples, 4_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)]).astype(float)
        frauds = weights @ fraud
        alerts = weights @ alert
        with np.errstate(invalid="ignore", divide="ignore"):
            values["recall"].append(np.where(frauds > 0, weights @ (fraud * alert) / frauds, np.nan))
            values["precision"].append(np.where(alerts > 0, weights @ (fraud * alert) / alerts, np.nan))
            approve = weights @ approve_cost
            values["savings_vs_approve_all_pct"].append(np.where(approve > 0, weights @ saved / approve, np.nan))
        values["average_precision"].append(_weighted_ap(fraud[order], group_end, weights[:, order]))
    tail = (1.0 - level) / 2.0
    result = {}
    for metric, chunks in values.items():
        sample = np.concatenate(chunks)
        defined = sample[~np.isnan(sample)]
        # An interval resting on a minority of resamples would be a guess.
        if len(defined) < 0.5 * n_resamples:
            result[f"{metric}_low"] = result[f"{metric}_high"] = math.nan
            continue
        result[f"{metric}_low"] = float(np.quantile(defined, tail))
        result[f"{metric}_high"] = float(np.quantile(defined, 1.0 - tail))
    return result


def calibration(frame: pd.DataFrame) -> dict:
    """Predicted against observed fraud rate on the frame's rows.

    Returns:
        ``mean_score`` (the predicted fraud rate), ``observed_fraud_rate`` and ``calibration_ratio`` =
        mean_score / observed_fraud_rate (1 is calibrated, below 1 the model under-predicts the
        cohort's risk; NaN without rows or without frauds).
    """
    if len(frame) == 0:
        return {"mean_score": math.nan, "observed_fraud_rate": math.nan, "calibration_ratio": math.nan}
    predicted = float(np.mean(as_finite(frame["score"], "score")))
    observed = float(np.mean(as_labels(frame["is_fraud"])))
    return {
        "mean_score": predicted,
        "observed_fraud_rate": observed,
        "calibration_ratio": predicted / observed if observed > 0 else math.nan,
    }


def cohort_details(
    frame: pd.DataFrame,
    threshold: Decision,
    cost_model: CostModel,
    spec: CohortSpec,
    n_resamples: int,
    max_frauds_for_interval: int,
    seed: int,
) -> pd.DataFrame:
    """Calibration of every cohort value, and bootstrap intervals where its fraud count is small.

    Args:
        frame: Columns is_fraud, score, amount and ``spec.column`` (and the policy's split columns).
        threshold: The alert threshold, or the decision policy.
        cost_model: The costs.
        spec: The cohort definition.
        n_resamples: Bootstrap resamples per cohort value.
        max_frauds_for_interval: Cohorts with more frauds than this get no interval (their sampling
            spread is small next to the floors, and resampling them is the slow part).
        seed: Seed of the resampling; each cohort value gets its own stream derived from it.

    Returns:
        One row per cohort value: cohort, value, mean_score, observed_fraud_rate, calibration_ratio and
        the ``<metric>_low`` / ``<metric>_high`` columns of :func:`bootstrap_intervals` (NaN where no
        interval was computed).
    """
    labels = assign_cohort(frame, spec)
    rows = []
    for i, (value, rows_of) in enumerate(sorted(frame.groupby(labels, sort=False), key=lambda kv: str(kv[0]))):
        n_frauds = int(as_labels(rows_of["is_fraud"]).sum())
        intervals = (
            bootstrap_intervals(rows_of, threshold, cost_model, n_resamples, seed + i)
            if n_frauds <= max_frauds_for_interval
            else bootstrap_intervals(rows_of.iloc[:0], threshold, cost_model, 0, seed)
        )
        rows.append({"cohort": spec.name, "value": value, **calibration(rows_of), **intervals})
    return pd.DataFrame(rows)


def shift_share(old: list[dict], new: list[dict], value_key: str, weight_key: str) -> dict:
    """Splits the change of sum(weight * value) over cohorts into mix and within-cohort parts.

    Args:
        old: Rows of one cohort split (cohort, value, ``weight_key``, ``value_key``) before.
        new: The same after. Weights are normalised to shares within each side.
        value_key: The per-cohort metric (e.g. cost per transaction).
        weight_key: The per-cohort weight (e.g. n_transactions).

    Returns:
        ``old`` and ``new`` (the weighted sums), ``change``, ``mix`` = sum (w_new - w_old) m_old,
        ``within`` = sum w_new (m_new - m_old), and ``rows`` with each cohort's part. A cohort present
        on one side only contributes all of its weight change to ``mix``. Cohorts whose value is
        undefined (NaN) on a side are left out of that side.
    """

    def shares(rows: list[dict]) -> dict:
        usable = {r["value"]: r for r in rows if r.get(value_key) == r.get(value_key) and r.get(value_key) is not None}
        total = sum(float(r[weight_key]) for r in usable.values())
        return {k: (float(r[weight_key]) / total if total else 0.0, float(r[value_key])) for k, r in usable.items()}

    before, after = shares(old), shares(new)
    parts = []
    for key in list(dict.fromkeys([*before, *after])):
        w_old, m_old = before.get(key, (0.0, math.nan))
        w_new, m_new = after.get(key, (0.0, math.nan))
        if key not in before:
            mix, within = w_new * m_new, 0.0
        elif key not in after:
            mix, within = -w_old * m_old, 0.0
        else:
            mix, within = (w_new - w_old) * m_old, w_new * (m_new - m_old)
        parts.append(
            {
                "value": key,
                "weight_old": w_old,
                "weight_new": w_new,
                "metric_old": m_old,
                "metric_new": m_new,
                "mix": mix,
                "within": within,
            }
        )
    old_total = sum(w * m for w, m in before.values())
    new_total = sum(w * m for w, m in after.values())
    return {
        "old": old_total,
        "new": new_total,
        "change": new_total - old_total,
        "mix": sum(p["mix"] for p in parts),
        "within": sum(p["within"] for p in parts),
        "rows": parts,
    }


def decompose(old_cohorts: list[dict], new_cohorts: list[dict], old_headline: dict, new_headline: dict) -> list[dict]:
    """Mix-vs-within decomposition of cost per transaction and AP, for every cohort split.

    Args:
        old_cohorts: Cohort table rows (cohort, value, n_transactions, n_frauds, total_cost,
            average_precision) of the earlier evaluation.
        new_cohorts: The same of the later one.
        old_headline: Headline metrics (total_cost, n_transactions, average_precision) of the earlier one.
        new_headline: The same of the later one.

    Returns:
        One row per (cohort split, metric): cohort, metric (``cost_per_transaction`` or
        ``average_precision``), old, new (headline values), change, mix, within and cross_cohort
        (the part the cohort sum does not explain: 0 for cost, the between-cohort ranking for AP).
    """
    rows = []
    for name in dict.fromkeys(r["cohort"] for r in [*old_cohorts, *new_cohorts]):
        old = [_per_tx(r) for r in old_cohorts if r["cohort"] == name]
        new = [_per_tx(r) for r in new_cohorts if r["cohort"] == name]
        for metric, value_key, weight_key in (
            ("cost_per_transaction", "cost_per_transaction", "n_transactions"),
            ("average_precision", "average_precision", "n_frauds"),
        ):
            split = shift_share(old, new, value_key, weight_key)
            headline_old = _headline(old_headline, metric)
            headline_new = _headline(new_headline, metric)
            change = headline_new - headline_old
            rows.append(
                {
                    "cohort": name,
                    "metric": metric,
                    "old": headline_old,
                    "new": headline_new,
                    "change": change,
                    "mix": split["mix"],
                    "within": split["within"],
                    "cross_cohort": change - split["mix"] - split["within"],
                }
            )
    return rows


def _per_tx(row: dict) -> dict:
    n = row["n_transactions"]
    return {**row, "cost_per_transaction": row["total_cost"] / n if n else math.nan}


def _headline(headline: dict, metric: str) -> float:
    if metric == "cost_per_transaction":
        n = headline["n_transactions"]
        return float(headline["total_cost"]) / n if n else math.nan
    return float(headline["average_precision"])


def window_headline(frame: pd.DataFrame, threshold: Decision, cost_model: CostModel) -> dict:
    """total_cost, approve_all_cost, n_transactions, n_frauds and AP of a scored frame (for decompositions)."""
    fraud = as_labels(frame["is_fraud"])
    amount = as_finite(frame["amount"], "amount")
    scores = as_finite(frame["score"], "score")
    return {
        "total_cost": float(
            decision_costs(fraud, amount, as_policy(threshold).alerts(scores, frame), cost_model).sum()
        ),
        "approve_all_cost": approve_all_cost(fraud, amount, cost_model),
        "n_transactions": len(fraud),
        "n_frauds": int(fraud.sum()),
        **ranking_metrics(fraud, scores),
    }


def projected_mix_effect(test_cohorts: list[dict], current_mix: list[dict]) -> list[dict]:
    """What the current traffic mix alone does to cost per transaction, at the test window's per-cohort costs.

    Labels of the newest traffic are not mature, so its within-cohort performance is unknown; its mix
    is known today. Pricing each cohort at its test-window cost per transaction isolates the mix part
    of the change that the labels will show weeks later.

    Args:
        test_cohorts: Cohort table rows of the test window (cohort, value, n_transactions, total_cost).
        current_mix: Rows of :func:`fraud_pipeline.monitoring.drift.cohort_mix` (cohort, value, n_current).

    Returns:
        One row per cohort split: cohort, test_cost_per_transaction, projected_cost_per_transaction (the
        current mix at test-window costs), mix_change, and unpriced_share (the current share of
        cohorts absent from the test window, e.g. a region that opened since; left out of the projection).
    """
    rows = []
    for name in dict.fromkeys(r["cohort"] for r in test_cohorts):
        test = [_per_tx(r) for r in test_cohorts if r["cohort"] == name]
        cost = {r["value"]: r["cost_per_transaction"] for r in test}
        current = [r for r in current_mix if r["cohort"] == name]
        total = sum(r["n_current"] for r in current)
        unpriced = sum(r["n_current"] for r in current if r["value"] not in cost)
        priced = [
            {"value": r["value"], "n_transactions": r["n_current"], "cost_per_transaction": cost[r["value"]]}
            for r in current
            if r["value"] in cost
        ]
        split = shift_share(test, priced, "cost_per_transaction", "n_transactions")
        rows.append(
            {
                "cohort": name,
                "test_cost_per_transaction": split["old"],
                "projected_cost_per_transaction": split["new"],
                "mix_change": split["change"],
                "unpriced_share": unpriced / total if total else math.nan,
            }
        )
    return rows
