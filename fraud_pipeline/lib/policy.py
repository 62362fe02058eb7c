"""The decision policy: an alert threshold per cohort cell, chosen on validation, shrunk toward the global one.

One cost-minimising threshold serves every population alike, although a score of 0.05 does not mean
the same risk, nor the same money, for a card-present payment and for a new account's online one.
The policy cuts rows into cells (the cohort splits it is given, crossed: ``channel=online``, or
``account_age=<7d|channel=online``) and gives each cell the threshold that minimises the cost of its
own validation rows.

**Shrinkage.** A cell with few frauds has a noisy cost curve: its cheapest threshold on validation is
partly luck. Each cell therefore minimises its own cost plus the population's cost scaled to the
weight of ``prior_frauds`` frauds::

    J_c(t) = C_c(t) + (prior_frauds / F) * C(t)

where ``C_c`` is the cell's validation cost, ``C`` the whole validation set's and ``F`` its number of
frauds. This is the cost under a prior that the cell behaves like the population, worth
``prior_frauds`` frauds of evidence: a cell with many more frauds than that gets its own threshold, a
cell with none gets (nearly) the global one, and in between the compromise is found on the actual cost
curves, not by averaging two thresholds. A cell's weight of its own evidence is reported as
``F_c / (F_c + prior_frauds)``.

**Review capacity.** With ``max_alerts_per_day`` the cells share the fraud team's daily capacity: a
price ``λ`` per alert is added to every cell's review cost (and the global threshold's), the smallest
price at which the whole validation set's alerts per day fit the capacity (found by bisection), so
each alert goes where it saves most.

A row whose cell was not seen on validation (a new country) gets the global threshold. The rule is
``score >= threshold of the row's cell``; a policy without splits is the single global threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from fraud_pipeline.lib.cohort_splits import DEFAULT_COHORT_NAMES, UNKNOWN, CohortSpec, assign_cohort, cohorts_named
from fraud_pipeline.lib.costs import (
    CostModel,
    as_finite,
    as_labels,
    between,
    cheapest,
    choose_threshold,
    decision_costs,
)
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.policy_selection import HeldOutDays, adopt_structure, row_days

#: Separator between the splits of a crossed cell label.
CELL_SEPARATOR = "|"
#: Bisection steps of the alert price; 2^-40 of its range is far below a cent.
_PRICE_STEPS = 40


@dataclass(frozen=True)
class PolicySettings:
    """How a policy is chosen.

    Attributes:
        splits: The cohort splits whose crossed values are the cells; empty: one global threshold.
        prior_frauds: Weight of the population's cost curve in each cell's, in frauds (see the module).
        max_alerts_per_day: Alerts per day the cells share on validation; None: no capacity.
        select_on_holdout: Choose which of the splits to use (none, each alone, all crossed) by the
            daily cost on the later half of the rows' days of a policy fitted on the earlier half
            (:func:`choose_policy`); False: always all of them crossed.
        selection_confidence: The one-sided confidence a structure's daily saving over the single
            threshold must be positive at to be adopted (:mod:`fraud_pipeline.lib.policy_selection`).
    """

    splits: tuple[CohortSpec, ...] = ()
    prior_frauds: float = 15.0
    max_alerts_per_day: float | None = None
    select_on_holdout: bool = True
    selection_confidence: float = 0.95

    def __post_init__(self) -> None:
        if not self.prior_frauds > 0:
            raise ValueError(f"prior_frauds must be above 0, got {self.prior_frauds}")
        if not 0 < self.selection_confidence < 1:
            raise ValueError(f"selection_confidence must be in (0, 1), got {self.selection_confidence}")
        if self.max_alerts_per_day is not None and not self.max_alerts_per_day > 0:
            raise ValueError(f"max_alerts_per_day must be above 0, got {self.max_alerts_per_day}")
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names):
            raise ValueError(f"the policy's cohort splits repeat a name: {names}")


@dataclass(frozen=True)
class PolicyRequest:
    """The policy a candidate asks for, its splits by cohort name (what the run configures and records).

    Each model resolves the names against its own feature columns (:meth:`settings`), so the policy
    cuts only by what serving sees: a feature spec without ``channel`` simply has no channel split.

    Attributes:
        cohorts: Cohort names (:func:`~fraud_pipeline.lib.cohort_splits.cohorts_named`).
        prior_frauds, max_alerts_per_day, select_on_holdout, selection_confidence: As in
            :class:`PolicySettings`.
    """

    cohorts: tuple[str, ...] = DEFAULT_COHORT_NAMES
    prior_frauds: float = PolicySettings.prior_frauds
    max_alerts_per_day: float | None = None
    select_on_holdout: bool = True
    selection_confidence: float = PolicySettings.selection_confidence

    def settings(self, columns) -> PolicySettings:
        """The settings over the requested splits whose column is among ``columns`` (a model's features)."""
        present = set(columns)
        return PolicySettings(
            splits=tuple(c for c in cohorts_named(self.cohorts) if c.column in present),
            prior_frauds=self.prior_frauds,
            max_alerts_per_day=self.max_alerts_per_day,
            select_on_holdout=self.select_on_holdout,
            selection_confidence=self.selection_confidence,
        )

    def as_dict(self) -> dict:
        """Plain values (inverse of :meth:`from_dict`)."""
        return {**vars(self), "cohorts": list(self.cohorts)}

    @classmethod
    def from_dict(cls, values: dict) -> PolicyRequest:
        """The request :meth:`as_dict` wrote."""
        return cls(
            cohorts=tuple(values["cohorts"]),
            prior_frauds=float(values["prior_frauds"]),
            max_alerts_per_day=values.get("max_alerts_per_day"),
            select_on_holdout=bool(values["select_on_holdout"]),
            selection_confidence=float(values.get("selection_confidence", PolicySettings.selection_confidence)),
        )


def days_spanned(times) -> int:
    """The calendar days (UTC) the rows' event times fall on: what a capacity per day is multiplied by."""
    return int(np.unique(row_days(times)).size)


@dataclass(frozen=True)
class CellChoice:
    """One cell's threshold and the evidence it was chosen on.

    Attributes:
        cell: The cell label (``channel=online``).
        n_rows: Validation rows in the cell.
        n_frauds: Validation frauds in the cell.
        own_weight: ``n_frauds / (n_frauds + prior_frauds)``, the share of the cell's own evidence.
        own_threshold: The cell's cost-minimising threshold on its rows alone (unshrunk).
        threshold: The threshold the policy gives the cell.
        validation_cost: The cell's validation cost at ``threshold``.
        validation_alerts: The cell's validation alerts at ``threshold``.
    """

    cell: str
    n_rows: int
    n_frauds: int
    own_weight: float
    own_threshold: float
    threshold: float
    validation_cost: float
    validation_alerts: int


@dataclass(frozen=True)
class DecisionPolicy:
    """Alert when ``score >=`` the threshold of the row's cell; the global threshold elsewhere.

    Attributes:
        global_threshold: The single cost-minimising threshold on all validation rows, for rows of a
            cell the policy does not know (and the whole policy when it has no splits).
        splits: The cohort splits whose crossed values are the cells.
        cells: Each known cell's choice, in cell order.
        prior_frauds: The shrinkage weight the cells were chosen with.
        max_alerts_per_day: The capacity the cells shared, None without one.
        alert_price: The price per alert that met the capacity (0 without one).
        selection: How the splits were chosen: per structure tried, its ``splits`` (names) and its
            ``holdout_cost`` (None when the earlier half has no fraud to fit on; empty when nothing
            was selected).
    """

    global_threshold: float
    splits: tuple[CohortSpec, ...] = ()
    cells: tuple[CellChoice, ...] = field(default=())
    prior_frauds: float = PolicySettings.prior_frauds
    max_alerts_per_day: float | None = None
    alert_price: float = 0.0
    selection: tuple[dict, ...] = ()

    @classmethod
    def single(cls, threshold: float) -> DecisionPolicy:
        """The policy of one threshold for every row."""
        return cls(global_threshold=float(threshold))

    @property
    def is_single(self) -> bool:
        """Whether every row gets the global threshold."""
        return not self.cells

    def thresholds(self) -> dict[str, float]:
        """Each known cell's threshold by cell label."""
        return {c.cell: c.threshold for c in self.cells}

    def columns(self) -> tuple[str, ...]:
        """The frame columns the policy reads besides the score."""
        return tuple(dict.fromkeys(s.column for s in self.splits))

    def row_thresholds(self, frame: pd.DataFrame) -> np.ndarray:
        """The threshold of each row of ``frame`` (the global one for a cell the policy does not know)."""
        if self.is_single:
            return np.full(len(frame), self.global_threshold)
        index, names = _cell_index(_split_codes(frame, self.splits), len(frame))
        known = self.thresholds()
        by_cell = np.array([known.get(name, self.global_threshold) for name in names], dtype=float)
        return by_cell[index]

    def alerts(self, scores, frame: pd.DataFrame) -> np.ndarray:
        """Whether each row is alerted: its score at or above its cell's threshold."""
        values = as_finite(scores, "scores")
        if len(values) != len(frame):
            raise ValueError(f"{len(values)} scores for {len(frame)} rows")
        return values >= self.row_thresholds(frame)

    def as_dict(self) -> dict:
        """Plain values (JSON-ready: an infinite bin edge is written as the string ``inf``)."""
        return {
            "global_threshold": self.global_threshold,
            "splits": [_split_dict(s) for s in self.splits],
            "cells": [vars(c).copy() for c in self.cells],
            "prior_frauds": self.prior_frauds,
            "max_alerts_per_day": self.max_alerts_per_day,
            "alert_price": self.alert_price,
            "selection": [dict(row) for row in self.selection],
        }

    @classmethod
    def from_dict(cls, values: dict) -> DecisionPolicy:
        """The policy :meth:`as_dict` wrote."""
        return cls(
            global_threshold=float(values["global_threshold"]),
            splits=tuple(_split_of(s) for s in values.get("splits", ())),
            cells=tuple(CellChoice(**c) for c in values.get("cells", ())),
            prior_frauds=float(values.get("prior_frauds", PolicySettings.prior_frauds)),
            max_alerts_per_day=values.get("max_alerts_per_day"),
            alert_price=float(values.get("alert_price", 0.0)),
            selection=tuple(dict(row) for row in values.get("selection", ())),
        )

    def table(self) -> list[dict]:
        """One row per cell (its evidence and threshold), for a model card or the UI."""
        return [vars(c).copy() for c in self.cells]


def _split_dict(split: CohortSpec) -> dict:
    # JSON has no infinity: an infinite edge is written as "inf" / "-inf", which float() reads back.
    bins = None if split.bins is None else [str(float(b)) if math.isinf(b) else b for b in split.bins]
    return {"name": split.name, "column": split.column, "bins": bins, "labels": split.labels and list(split.labels)}


def _split_of(values: dict) -> CohortSpec:
    bins = values.get("bins")
    labels = values.get("labels")
    return CohortSpec(
        values["name"],
        values["column"],
        bins=None if bins is None else tuple(float(b) for b in bins),
        labels=None if labels is None else tuple(labels),
    )


def cell_labels(frame: pd.DataFrame, splits: tuple[CohortSpec, ...]) -> pd.Series:
    """Each row's cell: ``name=value`` of every split, joined by ``|``; a missing column reads as unknown."""
    index, names = _cell_index(_split_codes(frame, splits), len(frame))
    return pd.Series(np.asarray(names, dtype=object)[index] if len(frame) else [], index=frame.index, dtype=object)


def _split_codes(frame: pd.DataFrame, splits: tuple[CohortSpec, ...]) -> list[tuple[np.ndarray, list[str]]]:
    """Per split, each row's value as a code into the split's sorted ``name=value`` labels."""
    parts = []
    for split in splits:
        if split.column in frame.columns:
            values = assign_cohort(frame, split)
        else:
            values = pd.Series(UNKNOWN, index=frame.index)
        codes, uniques = pd.factorize(values.to_numpy(dtype=object), sort=True)
        parts.append((codes.astype(np.int64), [f"{split.name}={u}" for u in uniques]))
    return parts


def _cell_index(parts: list[tuple[np.ndarray, list[str]]], n_rows: int) -> tuple[np.ndarray, list[str]]:
    """Each row's crossed cell as an index into the sorted labels of the cells present (one ``""`` without splits).

    The splits' codes are combined into one integer per row, so only the cells present are ever
    spelled out: cheap on millions of rows.
    """
    if not parts:
        return np.zeros(n_rows, dtype=np.int64), [""]
    key = np.zeros(n_rows, dtype=np.int64)
    for codes, names in parts:
        key = key * len(names) + codes
    present, inverse = np.unique(key, return_inverse=True)
    labels = []
    for combined in present.tolist():
        pieces = []
        for _, names in reversed(parts):
            combined, code = divmod(combined, len(names))
            pieces.append(names[code])
        labels.append(CELL_SEPARATOR.join(reversed(pieces)))
    order = sorted(range(len(labels)), key=labels.__getitem__)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return position[inverse.reshape(-1)], [labels[i] for i in order]


@dataclass(frozen=True)
class _Curve:
    """One set of rows' cost at every candidate threshold, from one descending sort."""

    descending: np.ndarray  # scores, highest first
    missed_after: np.ndarray  # missed-fraud cost when the top i are alerted, i = 0..n
    false_alerts: np.ndarray  # genuine rows among the top i
    n_frauds: int

    @classmethod
    def of(cls, scores: np.ndarray, fraud: np.ndarray, amounts: np.ndarray, cost_model: CostModel) -> _Curve:
        order = np.argsort(-scores, kind="stable")
        missed = np.where(fraud[order], amounts[order] + cost_model.chargeback_fee, 0.0)
        caught = np.concatenate([[0.0], np.cumsum(missed)])
        false_alerts = np.concatenate([[0], np.cumsum(~fraud[order])])
        return cls(scores[order], caught[-1] - caught, false_alerts, int(fraud.sum()))

    def alerts_at(self, thresholds: np.ndarray) -> np.ndarray:
        """Rows with ``score >= t`` for each t."""
        ascending = self.descending[::-1]
        return len(ascending) - np.searchsorted(ascending, thresholds, side="left")

    def cost_at(self, thresholds: np.ndarray, cost_model: CostModel, alert_price: float) -> np.ndarray:
        alerts = self.alerts_at(thresholds)
        return (
            (cost_model.review_cost + alert_price) * alerts
            + cost_model.friction_cost * self.false_alerts[alerts]
            + self.missed_after[alerts]
        )


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Every threshold that alerts a different set, fewest alerts first (as :func:`choose_threshold` places them).

    Just above the top score (alert nothing), then midway between consecutive distinct scores, then
    the lowest score (alert everything): a test score between two validation scores is decided by
    the nearer one, not always alerted.
    """
    distinct = np.unique(scores)[::-1]
    midway = between(distinct[1:], distinct[:-1])
    return np.concatenate([[np.nextafter(distinct[0], np.inf)], midway, distinct[-1:]])


def fit_policy(
    scores,
    is_fraud,
    amount,
    frame: pd.DataFrame,
    settings: PolicySettings,
    cost_model: CostModel,
    n_days: float | None = None,
) -> DecisionPolicy:
    """The decision policy over exactly ``settings.splits`` (crossed), fitted on one set of rows.

    Args:
        scores: Model scores of the rows.
        is_fraud: Their labels.
        amount: Their amounts.
        frame: The rows, holding the columns of ``settings.splits`` (a split whose column is absent
            reads as one ``unknown`` value).
        settings: The splits, the shrinkage weight and the optional capacity.
        cost_model: The costs.
        n_days: Days the rows span; required with a capacity (alerts per day = alerts / n_days).

    Returns:
        The policy. Its global threshold is :func:`~fraud_pipeline.lib.costs.choose_threshold`'s on all
        rows (with a capacity that needs a price, the cheapest at that price); without splits it has
        no cells.

    Raises:
        ValueError: On no rows, unequal lengths, missing labels, non-finite values, or a capacity
            without ``n_days``.
    """
    values, fraud, amounts = _checked(scores, is_fraud, amount, frame)
    if settings.max_alerts_per_day is not None and not (n_days and n_days > 0):
        raise ValueError("a review capacity needs the number of days the rows span")
    index, names = _cell_index(_split_codes(frame, settings.splits), len(values))
    return _fit(_Rows.of(values, fraud, amounts, cost_model), index, names, settings, cost_model, n_days)


def _checked(scores, is_fraud, amount, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = as_finite(scores, "scores")
    fraud = as_labels(is_fraud)
    amounts = as_finite(amount, "amount")
    if not len(values) == len(fraud) == len(amounts) == len(frame):
        raise ValueError(
            f"lengths differ: scores {len(values)}, labels {len(fraud)}, amounts {len(amounts)}, rows {len(frame)}"
        )
    if len(values) == 0:
        raise ValueError("cannot choose a policy on no rows")
    return values, fraud, amounts


@dataclass(frozen=True)
class _Rows:
    """One set of rows with what every structure fitted on them shares: the population's curve and threshold."""

    values: np.ndarray
    fraud: np.ndarray
    amounts: np.ndarray
    population: _Curve
    candidates: np.ndarray
    global_threshold: float

    @classmethod
    def of(cls, values: np.ndarray, fraud: np.ndarray, amounts: np.ndarray, cost_model: CostModel) -> _Rows:
        return cls(
            values,
            fraud,
            amounts,
            _Curve.of(values, fraud, amounts, cost_model),
            _candidates(values),
            float(choose_threshold(values, fraud, amounts, cost_model).threshold),
        )


def _fit(
    rows: _Rows,
    index: np.ndarray,
    names: list[str],
    settings: PolicySettings,
    cost_model: CostModel,
    n_days: float | None,
) -> DecisionPolicy:
    """:func:`fit_policy` on rows whose cells are given (``names[index]``; cells without rows are left out)."""
    values, fraud, amounts = rows.values, rows.fraud, rows.amounts
    population, candidates = rows.population, rows.candidates
    splits = settings.splits
    cells = [names[i] for i in np.unique(index)] if splits else []
    members = {names[i]: index == i for i in np.unique(index)} if splits else {}
    curves = {cell: _Curve.of(values[mask], fraud[mask], amounts[mask], cost_model) for cell, mask in members.items()}
    scale = settings.prior_frauds / max(population.n_frauds, 1)

    def choose(alert_price: float) -> tuple[float, list[CellChoice]]:
        population_cost = population.cost_at(candidates, cost_model, alert_price)
        if alert_price == 0.0:
            global_threshold = rows.global_threshold
        else:
            global_threshold = float(candidates[cheapest(population_cost)])
        chosen = []
        for cell in cells:
            curve = curves[cell]
            own = curve.cost_at(candidates, cost_model, alert_price)
            threshold = float(candidates[cheapest(own + scale * population_cost)])
            chosen.append(
                CellChoice(
                    cell=cell,
                    n_rows=int(members[cell].sum()),
                    n_frauds=curve.n_frauds,
                    own_weight=curve.n_frauds / (curve.n_frauds + settings.prior_frauds),
                    own_threshold=float(candidates[cheapest(own)]),
                    threshold=threshold,
                    validation_cost=float(curve.cost_at(np.array([threshold]), cost_model, 0.0)[0]),
                    validation_alerts=int(curve.alerts_at(np.array([threshold]))[0]),
                )
            )
        return float(global_threshold), chosen

    def n_alerts(choice: tuple[float, list[CellChoice]]) -> int:
        global_threshold, chosen = choice
        if chosen:
            return sum(c.validation_alerts for c in chosen)
        return int(population.alerts_at(np.array([global_threshold]))[0])

    choice, price = choose(0.0), 0.0
    if settings.max_alerts_per_day is not None:
        choice, price = _within_capacity(
            choose, n_alerts, choice, settings.max_alerts_per_day * n_days, amounts, cost_model
        )
    global_threshold, chosen = choice
    return DecisionPolicy(
        global_threshold=global_threshold,
        splits=splits,
        cells=tuple(chosen),
        prior_frauds=settings.prior_frauds,
        max_alerts_per_day=settings.max_alerts_per_day,
        alert_price=price,
    )


def _within_capacity(choose, n_alerts, choice, max_alerts: float, amounts: np.ndarray, cost_model: CostModel):
    """The choice at the lowest alert price (to 2^-40 of its range) whose validation alerts fit ``max_alerts``.

    The global threshold is priced like the cells, so rows of an unseen cell, and a policy without
    splits, stay within the capacity too.
    """
    if n_alerts(choice) <= max_alerts:
        return choice, 0.0
    # At this price no alert can pay for itself, so nothing is alerted.
    low, high = 0.0, float(amounts.max(initial=0.0)) + cost_model.chargeback_fee + 1.0
    best = choose(high)
    for _ in range(_PRICE_STEPS):
        middle = (low + high) / 2
        trial = choose(middle)
        if n_alerts(trial) <= max_alerts:
            high, best = middle, trial
        else:
            low = middle
    return best, high


def policy_of(model: dict) -> DecisionPolicy:
    """The decision policy a bundle's (or a candidate dict's) model carries.

    A model written before policies existed has only its ``threshold``: its policy is that single
    threshold, so an older champion is still served exactly as it was promoted.

    Args:
        model: A model's plain values: ``policy`` (as :meth:`DecisionPolicy.as_dict` wrote it) and/or
            ``threshold``; the bundle's top level for the main model, its ``fallback`` for the fallback.

    Raises:
        KeyError: If it has neither.
    """
    if model.get("policy"):
        return DecisionPolicy.from_dict(model["policy"])
    return DecisionPolicy.single(float(model["threshold"]))


def choose_policy(
    scores,
    is_fraud,
    amount,
    frame: pd.DataFrame,
    settings: PolicySettings,
    cost_model: CostModel,
    n_days: float | None = None,
    times=None,
) -> DecisionPolicy:
    """The decision policy chosen on one set of (validation) rows, its structure selected out of sample.

    Whether a split earns its own thresholds is itself a question for the data: a split whose cells'
    cheapest thresholds are noise, or last month's campaign, makes the decisions worse, not better.
    With ``times`` and ``settings.select_on_holdout``, each structure (no split, each split alone, all
    of them crossed) is fitted on the earlier half of the rows' calendar days and costed day by day
    on the later half; a structure is adopted only when its daily saving over the single threshold is
    positive at ``settings.selection_confidence`` (:mod:`fraud_pipeline.lib.policy_selection`), and
    the adopted one that saves most (else no split) is then fitted on all the rows. The structures
    tried, their held-out costs and savings are recorded in :attr:`DecisionPolicy.selection`.

    Args:
        scores, is_fraud, amount, frame, settings, cost_model, n_days: As for :func:`fit_policy`.
        times: The rows' event times (datetimes, naive meaning UTC, or integer microseconds); None: no
            selection. Under four calendar days there is no holdout and the policy is the single threshold.
    """
    if not settings.splits or times is None or not settings.select_on_holdout:
        return fit_policy(scores, is_fraud, amount, frame, settings, cost_model, n_days)
    values, fraud, amounts = _checked(scores, is_fraud, amount, frame)
    if settings.max_alerts_per_day is not None and not (n_days and n_days > 0):
        raise ValueError("a review capacity needs the number of days the rows span")
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times for {len(values)} rows")
    held_out = HeldOutDays.of(times)
    later = held_out.later if held_out is not None else np.zeros(len(values), dtype=bool)
    early = ~later
    codes = dict(zip((s.name for s in settings.splits), _split_codes(frame, settings.splits)))
    structures = [()] + [(split,) for split in settings.splits]
    if len(settings.splits) > 1:
        structures.append(tuple(settings.splits))
    half_days = None if n_days is None else n_days / 2
    can_hold_out = held_out is not None and fraud[early].any()
    early_rows = _Rows.of(values[early], fraud[early], amounts[early], cost_model) if can_hold_out else None
    daily, cells = [], []
    for structure in structures:
        index, names = _cell_index([codes[s.name] for s in structure], len(values))
        cells.append((index, names))
        if early_rows is not None:
            fitted = _fit(early_rows, index[early], names, replace(settings, splits=structure), cost_model, half_days)
            known = fitted.thresholds()
            by_cell = np.array([known.get(name, fitted.global_threshold) for name in names], dtype=float)
            alert = values[later] >= by_cell[index[later]]
            daily.append(held_out.daily(decision_costs(fraud[later], amounts[later], alert, cost_model)))
    best, tried = adopt_structure(
        [[s.name for s in structure] for structure in structures],
        daily if early_rows is not None else None,
        settings.selection_confidence,
    )
    index, names = cells[best]
    all_rows = _Rows.of(values, fraud, amounts, cost_model)
    chosen = _fit(all_rows, index, names, replace(settings, splits=structures[best]), cost_model, n_days)
    return replace(chosen, selection=tuple(tried))


def as_policy(decision: float | DecisionPolicy) -> DecisionPolicy:
    """A policy from either a policy or a single threshold (what the metric functions accept)."""
    return decision if isinstance(decision, DecisionPolicy) else DecisionPolicy.single(float(decision))


#: Columns of the policy table shown in the UI.
POLICY_COLUMNS = ["cell", "n_rows", "n_frauds", "own_weight", "own_threshold", "threshold", "validation_alerts"]


def policy_markdown(policy: DecisionPolicy) -> str:
    """The policy's cells as a Markdown table, or the one threshold it is."""
    if policy.is_single:
        return f"one threshold for every row: {policy.global_threshold:.6g}"
    return markdown_table(policy.table(), POLICY_COLUMNS) + f"\n\nany other cell: {policy.global_threshold:.6g}"


def selection_markdown(policy: DecisionPolicy) -> str:
    """The structures the policy was selected among, with their held-out costs."""
    if not policy.selection:
        return "no selection (the configured splits, or none)"
    rows = [
        {"splits": ", ".join(row["splits"]) or "none (one threshold)", "holdout_cost": row["holdout_cost"]}
        for row in policy.selection
    ]
    return markdown_table(rows, ["splits", "holdout_cost"])
