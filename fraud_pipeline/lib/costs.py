"""The business cost of alert decisions and the threshold that minimises it.

The decision for each transaction is "alert" (review / block) or "approve". A missed fraud costs its
amount plus a chargeback fee; every alert costs a review; a false alert also costs customer friction;
an approved genuine transaction costs nothing. The threshold is the one that minimises the total of
these costs on validation data, found exactly from one sort and cumulative sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Rows kept in :attr:`ThresholdChoice.curve`; enough for a plot, small enough for metadata.
CURVE_POINTS = 200


@dataclass(frozen=True)
class CostModel:
    """Per-transaction costs of the alert decision.

    Attributes:
        chargeback_fee: Added to a missed fraud's amount.
        review_cost: Cost of reviewing one alert; every alert is reviewed.
        friction_cost: Extra cost of a false alert (customer friction), on top of the review.
    """

    chargeback_fee: float = 20.0
    review_cost: float = 3.0
    friction_cost: float = 10.0


# eq=False: a DataFrame field makes the generated __eq__ and __hash__ raise instead of compare.
@dataclass(frozen=True, eq=False)
class ThresholdChoice:
    """The cost-minimising threshold and the cost curve it was chosen from.

    Attributes:
        threshold: Alert when ``score >= threshold``. Above the maximum score when alerting nothing
            is cheapest.
        expected_cost: Total cost of that decision on the data it was chosen on.
        n_alerts: Number of alerts at that threshold on the same data.
        curve: Columns threshold, cost, n_alerts, recall, precision, in increasing n_alerts, sampled
            down to about :data:`CURVE_POINTS` rows and always holding the chosen threshold.
    """

    threshold: float
    expected_cost: float
    n_alerts: int
    curve: pd.DataFrame


def as_labels(is_fraud) -> np.ndarray:
    """Labels as a bool array; a missing label is an error, never a silent 'genuine'.

    Raises:
        ValueError: If a label is missing.
    """
    labels = is_fraud if isinstance(is_fraud, pd.Series) else pd.Series(np.asarray(is_fraud).reshape(-1))
    if labels.isna().any():
        raise ValueError("is_fraud contains missing labels")
    return labels.to_numpy(dtype=bool)


def as_finite(values, name: str) -> np.ndarray:
    """Values as a 1-D float array.

    Raises:
        ValueError: If a value is NaN or infinite.
    """
    array = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_lengths(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")


def decision_costs(is_fraud, amount, alert, cost_model: CostModel) -> np.ndarray:
    """Cost of each transaction's decision.

    Args:
        is_fraud: Whether each transaction is fraud (bool or 0/1).
        amount: Transaction amounts.
        alert: Whether each transaction is alerted (reviewed / blocked).
        cost_model: The costs.

    Returns:
        Per-transaction cost: review (+ friction if genuine) when alerted, amount + chargeback fee for
        an approved fraud, 0 for an approved genuine transaction.
    """
    fraud = as_labels(is_fraud)
    amounts = as_finite(amount, "amount")
    alerted = np.asarray(alert, dtype=bool).reshape(-1)
    _check_lengths(is_fraud=fraud, amount=amounts, alert=alerted)
    alert_cost = cost_model.review_cost + cost_model.friction_cost * ~fraud
    missed_cost = np.where(fraud, amounts + cost_model.chargeback_fee, 0.0)
    return np.where(alerted, alert_cost, missed_cost)


def approve_all_cost(is_fraud, amount, cost_model: CostModel) -> float:
    """Total cost of alerting nothing: every fraud's amount plus its chargeback fee."""
    fraud = as_labels(is_fraud)
    amounts = as_finite(amount, "amount")
    _check_lengths(is_fraud=fraud, amount=amounts)
    return float(np.sum(amounts[fraud] + cost_model.chargeback_fee))


def between(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A value in (lower, upper] for each pair, the midpoint unless rounding puts it on ``lower``."""
    # Halving first avoids overflow; the fallback keeps ``score >= t`` from alerting ``lower``.
    middle = np.minimum(lower / 2 + upper / 2, upper)
    return np.where(middle > lower, middle, upper)


def _candidate_thresholds(ranked: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each candidate alert count i, a threshold t with ``ranked >= t`` true for exactly the top i."""
    threshold = np.empty(len(candidates))
    threshold[0] = np.nextafter(ranked[0], np.inf)
    inner = candidates[1:-1]
    threshold[1:-1] = between(ranked[inner], ranked[inner - 1])
    threshold[-1] = ranked[-1]
    return threshold


def _cost_curve(scores: np.ndarray, fraud: np.ndarray, amounts: np.ndarray, cost_model: CostModel) -> pd.DataFrame:
    """Cost of alerting the top-i scores for every i that does not split a group of tied scores."""
    order = np.argsort(-scores, kind="stable")
    ranked, ranked_fraud = scores[order], fraud[order]
    missed = np.where(ranked_fraud, amounts[order] + cost_model.chargeback_fee, 0.0)
    caught_loss = np.concatenate([[0.0], np.cumsum(missed)])
    false_alerts = np.concatenate([[0], np.cumsum(~ranked_fraud)])
    true_alerts = np.concatenate([[0], np.cumsum(ranked_fraud)])
    n_alerts = np.arange(len(ranked) + 1)
    cost = cost_model.review_cost * n_alerts + cost_model.friction_cost * false_alerts + (caught_loss[-1] - caught_loss)

    # Alerting the top i is possible only where the i-th and (i+1)-th highest scores differ.
    candidates = np.flatnonzero(np.concatenate([[True], ranked[:-1] > ranked[1:], [True]]))
    n_frauds = true_alerts[-1]
    tp = true_alerts[candidates]
    return pd.DataFrame(
        {
            "threshold": _candidate_thresholds(ranked, candidates),
            "cost": cost[candidates],
            "n_alerts": candidates.astype(np.int64),
            "recall": tp / n_frauds if n_frauds else np.full(len(candidates), np.nan),
            "precision": np.where(candidates > 0, tp / np.maximum(candidates, 1), np.nan),
        }
    )


def cheapest(cost: np.ndarray) -> int:
    """Position (= fewest alerts) of the first cost within rounding of the minimum."""
    # Cumulative sums are off by ~1e-16 per term, so exact ties may differ in the last digits.
    tolerance = 1e-9 * (1.0 + np.abs(cost).max())
    return int(np.flatnonzero(cost <= cost.min() + tolerance)[0])


def _sample_curve(curve: pd.DataFrame, keep: int, max_points: int = CURVE_POINTS) -> pd.DataFrame:
    """Evenly spaced rows of the curve plus row ``keep``, in the original order."""
    if len(curve) <= max_points:
        return curve.reset_index(drop=True)
    evenly = np.linspace(0, len(curve) - 1, max_points - 1).round().astype(np.int64)
    rows = np.unique(np.append(evenly, keep))
    return curve.iloc[rows].reset_index(drop=True)


def choose_threshold(scores, is_fraud, amount, cost_model: CostModel) -> ThresholdChoice:
    """The threshold that minimises the total decision cost, found exactly in O(n log n).

    Candidates lie between consecutive distinct scores (tied scores are alerted together), plus
    "alert everything" (the lowest score) and "alert nothing" (just above the highest score). Among
    equally cheap candidates the one with the fewest alerts wins.

    Args:
        scores: Model scores, higher meaning more suspicious; the rule is ``score >= threshold``.
        is_fraud: Labels of the same rows.
        amount: Amounts of the same rows.
        cost_model: The costs.

    Returns:
        The chosen threshold, its cost and alert count, and the (sampled) cost curve.

    Raises:
        ValueError: On no rows, missing labels, non-finite scores or amounts, or unequal lengths.
    """
    values = as_finite(scores, "scores")
    fraud = as_labels(is_fraud)
    amounts = as_finite(amount, "amount")
    _check_lengths(scores=values, is_fraud=fraud, amount=amounts)
    if len(values) == 0:
        raise ValueError("cannot choose a threshold on no rows")
    curve = _cost_curve(values, fraud, amounts, cost_model)
    best = cheapest(curve["cost"].to_numpy())
    return ThresholdChoice(
        threshold=float(curve["threshold"].iat[best]),
        expected_cost=float(curve["cost"].iat[best]),
        n_alerts=int(curve["n_alerts"].iat[best]),
        curve=_sample_curve(curve, best),
    )


def rule_baseline(amount_val, is_fraud_val, amount_test, is_fraud_test, cost_model: CostModel) -> dict:
    """The simple rule "alert when amount >= A", with A chosen on validation and costed on test.

    Args:
        amount_val: Validation amounts (the rule's score and the cost of its misses).
        is_fraud_val: Validation labels.
        amount_test: Test amounts.
        is_fraud_test: Test labels.
        cost_model: The costs.

    Returns:
        ``amount_threshold`` (A), and the rule's test ``cost`` and ``n_alerts``.
    """
    threshold = choose_threshold(amount_val, is_fraud_val, amount_val, cost_model).threshold
    alert = as_finite(amount_test, "amount") >= threshold
    return {
        "amount_threshold": threshold,
        "cost": float(decision_costs(is_fraud_test, amount_test, alert, cost_model).sum()),
        "n_alerts": int(alert.sum()),
    }
