"""The champion's performance on traffic whose labels have not matured, from calibrated scores and the labels so far.

At as_of a transaction of age a either has a chargeback already (it is fraud) or it has none. Without
one it is fraud only if its chargeback is still to come: with p its calibrated probability of an
eventual chargeback and F(a) the measured share of chargebacks reported within a (the label
completeness of :mod:`fraud_pipeline.labels.maturity`),

    P(fraud | no chargeback by age a) = p (1 - F(a)) / (1 - p F(a)).

A young row (F near 0) is read from its score; an old one (F near 1) from its label. Expected cost,
recall and precision at the champion's own decisions follow row by row. The interval is a seeded
bootstrap: each resample refits the calibration on a resample of the validation rows (how well the
map is known), then draws every open label from its probability (which frauds will still arrive).

Three simpler estimates stand beside it, as baselines: ``labels_only`` (a row without a chargeback is
genuine, what the labels say tonight), ``labels_reweighted`` (each chargeback so far stands for
1 / F(a) of them, inverse-probability weighting, the scores ignored) and ``scores_only`` (every row
read from its calibrated score, the labels so far ignored, as confidence-based estimation does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from fraud_pipeline.evaluation.metrics import CohortSpec, assign_cohort
from fraud_pipeline.lib.costs import CostModel, as_finite
from fraud_pipeline.monitoring.calibration import Calibration, fit_calibration, reliability_table

#: Metrics estimated with an interval, in the order tables show them.
ESTIMATED = ("cost_per_transaction", "recall", "precision")
#: The estimates computed for every group: the delay-weighted one and its two baselines.
KINDS = ("estimate", "labels_only", "labels_reweighted", "scores_only")
#: The group of all rows.
OVERALL = ("overall", "all")
#: Columns of the per-cohort estimate table, in the order the UI and the report show them: sizes and label
#: completeness, each metric with its interval, then the labels-only reading of each.
ESTIMATE_COLUMNS = [
    "cohort",
    "value",
    "n_transactions",
    "n_alerts",
    "known_frauds",
    "expected_frauds",
    "mean_completeness",
    *[f"{m}{suffix}" for m in ESTIMATED for suffix in ("", "_low", "_high")],
    *[f"labels_only_{m}" for m in ESTIMATED],
]


def posterior_fraud(probability, reported, completeness) -> np.ndarray:
    """Probability that each row's label is (or will be) fraud, given what has been reported by as_of.

    Args:
        probability: Calibrated probability p of an eventual chargeback.
        reported: Whether a chargeback was reported before as_of.
        completeness: F(a), the share of eventual chargebacks reported within the row's age.

    Returns:
        1 where reported; else p (1 - F) / (1 - p F), which is p at F = 0 and 0 at F = 1.
    """
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    f = np.clip(np.asarray(completeness, dtype=float), 0.0, 1.0)
    done = np.asarray(reported, dtype=bool)
    denominator = 1.0 - p * f
    open_label = np.divide(p * (1.0 - f), denominator, out=np.zeros_like(p), where=denominator > 0)
    return np.where(done, 1.0, open_label)


def label_shift(probability, completeness, arrived: float, prior_frauds: float) -> float:
    """The log-odds shift that makes the expected arrived chargebacks match those that arrived, shrunk toward none.

    Under the calibration, a row of age a has a chargeback by now with probability p F(a), so the
    rows should hold E = sum p F of them; ``arrived`` did. Each arrival is evidence in proportion to
    the completeness at its age. The target is E (arrived + k) / (E + k), a Poisson-Gamma
    shrinkage with ``prior_frauds`` = k pseudo-arrivals at the calibration's own rate, so a handful
    of arrivals barely moves it; the shift d solves sum sigmoid(logit p + d) F = target.

    Args:
        probability: Calibrated probabilities of the rows.
        completeness: F at each row's age.
        arrived: Chargebacks that arrived on these rows (or a resample of that count).
        prior_frauds: k; 0 follows the arrivals alone.

    Returns:
        d (0 when no arrival could have been expected: every F is 0).
    """
    p = np.clip(np.asarray(probability, dtype=float), 1e-12, 1.0 - 1e-12)
    f = np.asarray(completeness, dtype=float)
    expected = float(np.dot(p, f))
    if expected <= 0.0:
        return 0.0
    target = min(expected * (arrived + prior_frauds) / (expected + prior_frauds), 0.999 * float(f.sum()))
    logit = np.log(p / (1.0 - p))
    shift = 0.0
    for _ in range(50):
        q = _sigmoid(logit + shift)
        gap = float(np.dot(q, f)) - target
        slope = float(np.dot(q * (1.0 - q), f))
        if slope <= 0.0 or abs(gap) < 1e-9 * (1.0 + target):
            break
        shift = float(np.clip(shift - gap / slope, shift - 2.0, shift + 2.0))
    return shift


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def shifted_probability(
    probability: np.ndarray,
    completeness: np.ndarray,
    reported: np.ndarray,
    strata: np.ndarray | None,
    prior_frauds: float | None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The calibrated probabilities moved, within each stratum, by :func:`label_shift` (unchanged when ``prior_frauds`` is None).

    ``rng`` draws each stratum's arrivals from a Poisson around the count that arrived (a bootstrap resample).
    """
    if prior_frauds is None:
        return probability
    p = np.clip(np.asarray(probability, dtype=float), 1e-12, 1.0 - 1e-12)
    labels = np.zeros(len(p), dtype=int) if strata is None else strata
    out = p.copy()
    for value in np.unique(labels):
        rows = labels == value
        arrived = float(reported[rows].sum())
        if rng is not None:
            arrived = float(rng.poisson(arrived))
        shift = label_shift(p[rows], completeness[rows], arrived, prior_frauds)
        out[rows] = _sigmoid(np.log(p[rows] / (1.0 - p[rows])) + shift)
    return out


def cost_if(amount, alert, cost_model: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """Each row's decision cost if it turns out genuine, and if it turns out fraud (see :mod:`fraud_pipeline.lib.costs`)."""
    amounts = as_finite(amount, "amount")
    alerted = np.asarray(alert, dtype=bool)
    genuine = np.where(alerted, cost_model.review_cost + cost_model.friction_cost, 0.0)
    fraud = np.where(alerted, cost_model.review_cost, amounts + cost_model.chargeback_fee)
    return genuine, fraud


def expected_metrics(fraud_probability, alert, amount, cost_model: CostModel) -> dict:
    """Expected decision metrics of rows whose labels are fraud with the given probabilities.

    With 0/1 probabilities (every label known) these are the realised metrics exactly. Recall and
    precision are ratios of expectations.

    Returns:
        n_transactions, n_alerts, alert_rate, expected_frauds, expected_caught, total_cost,
        cost_per_transaction, recall (NaN without expected frauds) and precision (NaN without alerts).
    """
    q = np.asarray(fraud_probability, dtype=float)
    alerted = np.asarray(alert, dtype=bool)
    genuine, fraud = cost_if(amount, alerted, cost_model)
    n = len(q)
    frauds, caught, alerts = float(q.sum()), float(q[alerted].sum()), int(alerted.sum())
    total = float(genuine.sum() + np.dot(q, fraud - genuine))
    return {
        "n_transactions": n,
        "n_alerts": alerts,
        "alert_rate": alerts / n if n else math.nan,
        "expected_frauds": frauds,
        "expected_caught": caught,
        "total_cost": total,
        "cost_per_transaction": total / n if n else math.nan,
        "recall": caught / frauds if frauds > 0 else math.nan,
        "precision": caught / alerts if alerts else math.nan,
    }


@dataclass(frozen=True)
class OpenRows:
    """The rows to estimate: the champion's decisions and what is known of their labels at as_of.

    Attributes:
        frame: One row per transaction: ``score`` (raw, NaN for rows routed to review), ``route``,
            ``alert``, ``amount``, ``reported`` (a chargeback arrived before as_of), ``completeness``
            (F at the row's age) and every cohort column.
        validation: Per route, the champion's validation rows for that route's model: ``score`` and
            the mature ``is_fraud``. A route without rows here is read with the ``main`` calibration.
    """

    frame: pd.DataFrame
    validation: dict[str, pd.DataFrame]


def groups(frame: pd.DataFrame, cohorts: tuple[CohortSpec, ...]) -> list[tuple[str, str, np.ndarray]]:
    """The overall group and one per cohort value present: (cohort, value, row mask)."""
    found = [(*OVERALL, np.ones(len(frame), dtype=bool))]
    for spec in cohorts:
        labels = assign_cohort(frame, spec).to_numpy()
        in_bins = [v for v in spec.bin_labels() if v in set(labels)]
        for value in in_bins + sorted(set(labels) - set(in_bins)):
            found.append((spec.name, str(value), labels == value))
    return found


def cells(frame: pd.DataFrame, cohorts: tuple[CohortSpec, ...]) -> np.ndarray | None:
    """Each row's combination of cohort values (e.g. ``<7d|ecommerce|R_new``), None for no cohort."""
    if not cohorts:
        return None
    labels = [assign_cohort(frame, spec).to_numpy(dtype=object) for spec in cohorts]
    combined = labels[0].astype(str)
    for more in labels[1:]:
        combined = np.char.add(np.char.add(combined, "|"), more.astype(str))
    return combined


def _shift_strata(frame: pd.DataFrame, cohorts: tuple[CohortSpec, ...]) -> np.ndarray:
    """The cells the label shift is found in: the cohort cells, each split by the decision (alerted or approved).

    The cost of a fraud depends on the decision taken on it, so the arrivals are matched within each
    decision: chargebacks arriving on approved rows say how many frauds were missed.
    """
    decision = np.where(frame["alert"].to_numpy(dtype=bool), "alert", "approve")
    base = cells(frame, cohorts)
    return decision if base is None else np.char.add(np.char.add(base, "|"), decision)


def _calibrations(rows: OpenRows, method: str, weights: dict | None = None) -> dict[str, Calibration]:
    return {
        route: fit_calibration(
            part["score"].to_numpy(), part["is_fraud"].to_numpy(), method, None if weights is None else weights[route]
        )
        for route, part in rows.validation.items()
    }


def calibrated_probability(frame: pd.DataFrame, calibrations: dict[str, Calibration]) -> np.ndarray:
    """Each row's calibrated probability, by the calibration of its route (``main`` for the others)."""
    scores = frame["score"].to_numpy(dtype=float)
    routes = frame["route"].to_numpy()
    out = calibrations["main"].probability(scores)
    for route, calibration in calibrations.items():
        if route != "main":
            rows = routes == route
            out[rows] = calibration.probability(scores[rows])
    return out


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    defined = values[~np.isnan(values)]
    # an interval resting on a minority of resamples would be a guess
    if len(defined) < 0.5 * len(values) or len(defined) == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    return float(np.quantile(defined, tail)), float(np.quantile(defined, 1.0 - tail))


def _bootstrap(
    rows: OpenRows,
    method: str,
    cost_model: CostModel,
    masks: list[np.ndarray],
    n_resamples: int,
    seed: int,
    strata: np.ndarray | None = None,
    prior_frauds: float | None = None,
) -> dict[str, np.ndarray]:
    """Per resample and group: cost per transaction, recall and precision, shape (n_resamples, n_groups)."""
    frame = rows.frame
    rng = np.random.default_rng(seed)
    reported = frame["reported"].to_numpy(dtype=bool)
    completeness = frame["completeness"].to_numpy(dtype=float)
    alert = frame["alert"].to_numpy(dtype=bool)
    genuine, fraud = cost_if(frame["amount"].to_numpy(), alert, cost_model)
    member = np.stack(masks, axis=1).astype(np.float64)  # (n, groups)
    n_per_group = member.sum(axis=0)
    alerts_per_group = alert.astype(float) @ member
    base_cost = genuine @ member
    # one product gives every group's frauds, caught frauds and cost of the frauds at once
    weights = np.concatenate([member, member * alert[:, None], member * (fraud - genuine)[:, None]], axis=1)
    n_groups = member.shape[1]
    out = {m: np.empty((n_resamples, n_groups)) for m in ESTIMATED}
    for b in range(n_resamples):
        resample = {
            route: np.bincount(rng.integers(0, len(part), len(part)), minlength=len(part)).astype(float)
            for route, part in rows.validation.items()
        }
        p = calibrated_probability(frame, _calibrations(rows, method, resample))
        p = shifted_probability(p, completeness, reported, strata, prior_frauds, rng)
        q = posterior_fraud(p, reported, completeness)
        draw = (reported | (rng.random(len(q)) < q)).astype(np.float64)
        sums = draw @ weights
        frauds, caught, extra = sums[:n_groups], sums[n_groups : 2 * n_groups], sums[2 * n_groups :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["cost_per_transaction"][b] = (base_cost + extra) / n_per_group
            out["recall"][b] = np.where(frauds > 0, caught / frauds, np.nan)
            out["precision"][b] = np.where(alerts_per_group > 0, caught / alerts_per_group, np.nan)
    return out


@dataclass(frozen=True)
class PerformanceEstimate:
    """Estimated metrics per group with intervals, beside the baselines, and the calibration they rest on.

    Attributes:
        rows: One per group (overall first, then every cohort value): cohort, value, n_transactions,
            n_alerts, alert_rate, known_frauds, mean_completeness, expected_frauds, then for each of
            :data:`ESTIMATED` the estimate with ``_low`` / ``_high``, and ``labels_only_<metric>``,
            ``labels_reweighted_<metric>`` and ``scores_only_<metric>``.
        calibration: The main route's calibration (fitted on all its validation rows).
        level: Two-sided coverage of the intervals.
        reliability: The main calibration on its validation rows (:func:`reliability_table`).
    """

    rows: list[dict]
    calibration: Calibration
    level: float
    reliability: list[dict] = field(default_factory=list)

    def overall(self) -> dict:
        """The row of all transactions."""
        return self.rows[0]


def estimate_performance(
    rows: OpenRows,
    cost_model: CostModel,
    cohorts: tuple[CohortSpec, ...],
    method: str = "platt",
    n_resamples: int = 200,
    seed: int = 0,
    level: float = 0.9,
    prior_frauds: float | None = None,
    shift_within: tuple[CohortSpec, ...] = (),
) -> PerformanceEstimate:
    """The delay-weighted estimate per group, its bootstrap interval, and the two baselines.

    Args:
        rows: The open rows and the validation rows per route.
        cost_model: The costs.
        cohorts: Cohort definitions (the evaluation's).
        method: Calibration method (:data:`fraud_pipeline.monitoring.calibration.METHODS`).
        n_resamples: Bootstrap resamples of the interval (0: no interval).
        seed: Seed of the bootstrap.
        level: Two-sided coverage of the interval.
        prior_frauds: When set, the calibrated probabilities are first moved to agree with the
            chargebacks arrived so far (:func:`label_shift`, with this prior strength); None reads
            the calibration as it is.
        shift_within: The cohorts within each of whose cells (every combination of their values) the
            shift is found separately; empty: one shift for all rows.

    Raises:
        ValueError: If there is no ``main`` validation set or no row to estimate.
    """
    if "main" not in rows.validation:
        raise ValueError("no validation rows of the main model to calibrate on")
    if rows.frame.empty:
        raise ValueError("no transactions to estimate")
    # the products here are small: one BLAS thread is many times faster than several fighting for two cores
    with threadpool_limits(limits=1):
        return _estimate(rows, cost_model, cohorts, method, n_resamples, seed, level, prior_frauds, shift_within)


def _estimate(
    rows: OpenRows,
    cost_model: CostModel,
    cohorts: tuple[CohortSpec, ...],
    method: str,
    n_resamples: int,
    seed: int,
    level: float,
    prior_frauds: float | None,
    shift_within: tuple[CohortSpec, ...],
) -> PerformanceEstimate:
    """:func:`estimate_performance` once its inputs are checked."""
    frame = rows.frame
    calibrations = _calibrations(rows, method)
    reported = frame["reported"].to_numpy(dtype=bool)
    completeness = frame["completeness"].to_numpy(dtype=float)
    strata = _shift_strata(frame, shift_within)
    calibrated = calibrated_probability(frame, calibrations)
    p = shifted_probability(calibrated, completeness, reported, strata, prior_frauds)
    alert = frame["alert"].to_numpy(dtype=bool)
    amount = frame["amount"].to_numpy(dtype=float)
    q = {
        "estimate": posterior_fraud(p, reported, completeness),
        "labels_only": reported.astype(float),
        # each arrival stands for 1 / F(a) eventual chargebacks (inverse-probability weighting)
        "labels_reweighted": np.divide(
            reported.astype(float), completeness, out=reported.astype(float), where=completeness > 0
        ),
        "scores_only": calibrated,
    }
    found = groups(frame, cohorts)
    masks = [m for _, _, m in found]
    draws = (
        _bootstrap(rows, method, cost_model, masks, n_resamples, seed, strata, prior_frauds) if n_resamples else None
    )
    table = []
    for g, (cohort, value, mask) in enumerate(found):
        kinds = {k: expected_metrics(q[k][mask], alert[mask], amount[mask], cost_model) for k in KINDS}
        main = kinds["estimate"]
        row = {
            "cohort": cohort,
            "value": value,
            "n_transactions": main["n_transactions"],
            "n_alerts": main["n_alerts"],
            "alert_rate": main["alert_rate"],
            "known_frauds": int(reported[mask].sum()),
            "mean_completeness": float(completeness[mask].mean()),
            "expected_frauds": main["expected_frauds"],
        }
        for metric in ESTIMATED:
            low, high = _interval(draws[metric][:, g], level) if draws is not None else (math.nan, math.nan)
            row.update({metric: main[metric], f"{metric}_low": low, f"{metric}_high": high})
        for kind in ("labels_only", "labels_reweighted", "scores_only"):
            row.update({f"{kind}_{metric}": kinds[kind][metric] for metric in ESTIMATED})
        table.append(row)
    validation = rows.validation["main"]
    reliability = reliability_table(
        calibrations["main"].probability(validation["score"].to_numpy(dtype=float)), validation["is_fraud"].to_numpy()
    )
    return PerformanceEstimate(rows=table, calibration=calibrations["main"], level=level, reliability=reliability)


def realised_performance(frame: pd.DataFrame, is_fraud, cost_model: CostModel, cohorts: tuple[CohortSpec, ...]) -> list:
    """The same groups' metrics once every label is known (``is_fraud``: the matured labels)."""
    labels = np.asarray(is_fraud, dtype=float)
    alert = frame["alert"].to_numpy(dtype=bool)
    amount = frame["amount"].to_numpy(dtype=float)
    return [
        {
            "cohort": cohort,
            "value": value,
            **expected_metrics(labels[mask], alert[mask], amount[mask], cost_model),
        }
        for cohort, value, mask in groups(frame, cohorts)
    ]


#: What ``champion_estimate`` found, by status.
STATUSES = {
    "estimated": "estimated",
    "no_champion": "no champion served before as_of",
    "no_valid_champion": "the serving champion cannot be read",
    "no_open_traffic": "no transactions since the champion's test window",
    "cannot_score": "the champion cannot score tonight's feature rows",
    "cannot_calibrate": "the champion's validation window has nothing to calibrate on",
}


@dataclass(frozen=True)
class ChampionEstimate:
    """What ``champion_estimate`` hands on: the serving champion's estimated performance and its promise.

    Attributes:
        status: A key of :data:`STATUSES`.
        as_of: The night, ISO.
        max_cost_increase: The warning margin: the estimated cost per transaction may exceed the
            promise by this share.
        champion: The serving champion's version (None without one).
        reason: Why there is no estimate (an unreadable registry), when there is none.
        window: ``(start, end)`` ISO of the transactions estimated.
        promised_cost_per_transaction: The champion's test cost per transaction, from its bundle.
        estimate: The estimate (None unless ``status`` is ``estimated``).
    """

    status: str
    as_of: str
    max_cost_increase: float
    champion: str | None = None
    reason: str | None = None
    window: tuple[str, str] | None = None
    promised_cost_per_transaction: float = math.nan
    estimate: PerformanceEstimate | None = None

    def to_metadata(self) -> dict:
        """Plain values for the UI: every number a float (so each plots across nights), per cohort too."""
        base = {"status": STATUSES[self.status], "champion": str(self.champion)}
        if self.reason:
            base["reason"] = self.reason
        if self.estimate is None:
            return base
        overall = self.estimate.overall()
        numbers = {
            **{f"estimated_{m}": overall[m] for m in ESTIMATED},
            **{f"estimated_{m}_{side}": overall[f"{m}_{side}"] for m in ESTIMATED for side in ("low", "high")},
            **{f"labels_only_{m}": overall[f"labels_only_{m}"] for m in ESTIMATED},
            **{f"scores_only_{m}": overall[f"scores_only_{m}"] for m in ESTIMATED},
            "promised_cost_per_transaction": self.promised_cost_per_transaction,
            "n_transactions": overall["n_transactions"],
            "n_alerts": overall["n_alerts"],
            "alert_rate": overall["alert_rate"],
            "known_frauds": overall["known_frauds"],
            "expected_frauds": overall["expected_frauds"],
            "mean_completeness": overall["mean_completeness"],
        }
        for row in self.estimate.rows[1:]:
            for m in ("cost_per_transaction", "recall"):
                numbers[f"estimated_{m}_{row['cohort']}_{row['value']}"] = row[m]
        return {
            **base,
            "window": f"{self.window[0][:10]}..{self.window[1][:10]}",
            **{k: float(v) for k, v in numbers.items()},
            "calibration": self.estimate.calibration.method,
        }


def cost_overrun(estimate: ChampionEstimate) -> str | None:
    """A sentence when the estimated cost per transaction exceeds the promise by more than the margin, else None."""
    if estimate.estimate is None:
        return None
    overall = estimate.estimate.overall()
    promised, estimated = estimate.promised_cost_per_transaction, overall["cost_per_transaction"]
    limit = promised * (1.0 + estimate.max_cost_increase)
    if not estimated > limit:
        return None
    return (
        f"estimated cost per transaction {estimated:.4f} ({estimate.estimate.level:.0%} interval "
        f"{overall['cost_per_transaction_low']:.4f}..{overall['cost_per_transaction_high']:.4f}) exceeds the promise "
        f"{promised:.4f} by more than {estimate.max_cost_increase:.0%}"
    )
