"""Serving decisions, with a declared policy for what is missing.

Two kinds of absence reach a scorer, and neither may become a value:

* **History unavailable** (the history feature service timed out): the history *counts* arrive as
  NULL, which never happens for real rows, where a user without history has counts of 0. Such a
  row is not a new user; it is scored by the fallback model, trained on the same windows without
  history features, with its own decision policy (chosen on its own validation scores).
* **A required field missing** (e.g. no amount): the row is routed to review with the reason; it is
  never defaulted to a value (a "high-risk" default rejects everyone, a "safe" one waves fraud through).

What is required and what is history comes from the feature spec the model was trained on (the
bundle records it): its non-nullable attributes are the required fields, its history counts tell an
outage from a new user, its history features are what an outage hides.

Every decision says why: its ``reason`` names the route and its cause (``main: history available``,
``fallback: history unavailable (n_prior_tx_30d NULL)``, ``missing required field: amount``), and an
alert a model scored names in ``top_features`` the features that raised its score most, with their
values (LightGBM ``pred_contrib``, largest first, ties by name).

Each model decides by its **decision policy** (:class:`~fraud_pipeline.lib.policy.DecisionPolicy`, in
the bundle): the alert threshold of the row's cohort cell (``channel=ecommerce``,
``account_age=<7d|channel=online``), chosen on validation, or the policy's global threshold for a cell
it never saw; a bundle written before policies has one threshold for every row. Every scored
decision records the ``threshold`` it was judged at and its ``cell``, and under a per-cell policy its
reason says which threshold that was and why.

The same :func:`decide` serves the batch scoring asset, the command-line file scorer and the outage
replay, so what is evaluated is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import lightgbm as lgb
import numpy as np
import pandas as pd

from fraud_pipeline.evaluation.cohorts import with_cohort_columns
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.features.table import transaction_features_table
from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.costs import CostModel, decision_costs
from fraud_pipeline.lib.policy import DecisionPolicy, as_policy, cell_labels, policy_of
from fraud_pipeline.lib.schema import (
    DECIMAL_ID,
    INTEGER_ID,
    MAX_ID_LENGTH,
    NAIVE_TIMESTAMP,
    OFFSET_TIMESTAMP,
    RAW_COLUMNS,
    SQL_TYPES,
    amount_problem_sql,
    columns,
    encode_id_sql,
)
from fraud_pipeline.lib.warehouse import WarehouseError
from fraud_pipeline.training.candidate import history_count
from fraud_pipeline.training.model import TrainedModel, score, to_model_matrix


def required_fields(spec: FeatureSpec | None = None) -> tuple[str, ...]:
    """Fields without which no model may score a row: the spec's attributes not declared nullable."""
    return tuple(f.name for f in (spec or default_spec()).attributes if not f.nullable)


#: :func:`required_fields` of the default spec.
REQUIRED_FIELDS = required_fields()
#: The default spec's history counts. Counts are never NULL for real rows, so NULL counts mean the
#: history service did not answer.
HISTORY_COUNTS = default_spec().history_counts

POLICY = {
    "history_unavailable": "score with the fallback model (no history features) and its own decision policy",
    "missing_required_field": "route to review with the reason; never default the field",
}


class PolicyColumnsMissing(WarehouseError):
    """A column a decision policy cuts rows by that neither the rows to score nor the warehouse has."""


@dataclass(frozen=True)
class ScoringModels:
    """The champion's main model and its fallback, each with its decision policy, and the spec they read.

    Attributes:
        main: The model of rows with their history.
        main_policy: Its decision policy (a single threshold is accepted and read as the policy of one threshold).
        fallback: The model of rows whose history is unavailable.
        fallback_policy: Its decision policy, chosen on its own validation scores.
        spec: The feature spec both models were trained on (what is required, what is history).
    """

    main: TrainedModel
    main_policy: DecisionPolicy | float
    fallback: TrainedModel
    fallback_policy: DecisionPolicy | float
    spec: FeatureSpec = field(default_factory=default_spec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "main_policy", as_policy(self.main_policy))
        object.__setattr__(self, "fallback_policy", as_policy(self.fallback_policy))

    @property
    def main_threshold(self) -> float:
        """The main policy's global threshold (the only one of a bundle written before policies)."""
        return self.main_policy.global_threshold

    @property
    def fallback_threshold(self) -> float:
        """The fallback policy's global threshold."""
        return self.fallback_policy.global_threshold

    def policy_splits(self) -> tuple[CohortSpec, ...]:
        """The cohort splits either policy cuts rows by (once each, by name)."""
        splits = {s.name: s for policy in (self.main_policy, self.fallback_policy) for s in policy.splits}
        return tuple(splits.values())

    def policy_columns(self) -> tuple[str, ...]:
        """The frame columns the policies read besides the scores (``channel``, ``account_age_days``)."""
        return tuple(dict.fromkeys(s.column for s in self.policy_splits()))

    @classmethod
    def from_candidate(cls, candidate: dict) -> ScoringModels:
        """From a ``fraud_model`` output (or a registry bundle with its model texts filled in).

        Each model's policy is :func:`~fraud_pipeline.lib.policy.policy_of` its values: its ``policy``,
        or for a bundle written before policies its single ``threshold``. A candidate or bundle that
        records no ``feature_spec`` was trained on the default spec.
        """
        recorded = candidate.get("feature_spec")
        return cls(
            main=TrainedModel.from_dict(candidate),
            main_policy=policy_of(candidate),
            fallback=TrainedModel.from_dict(candidate["fallback"]),
            fallback_policy=policy_of(candidate["fallback"]),
            spec=FeatureSpec.from_dict(recorded, "<bundle>") if recorded else default_spec(),
        )


def with_policy_columns(
    con, frame: pd.DataFrame, models: ScoringModels, transactions: str = "transactions", users: str = "users"
) -> pd.DataFrame:
    """The frame with every column the models' policies read and it lacks, read from the warehouse.

    A feature row carries its spec's columns; a policy may cut by a column the spec does not read
    (account age under a spec without it): it is read as evaluation reads it
    (:func:`~fraud_pipeline.evaluation.cohorts.with_cohort_columns`), by ``transaction_id`` from
    ``transactions`` (account age from the user's ``created_at`` in ``users``).

    Raises:
        PolicyColumnsMissing: A column neither the frame nor the warehouse has (one line naming it).
    """
    if not models.policy_columns() or set(models.policy_columns()) <= set(frame.columns):
        return frame
    read, _ = with_cohort_columns(con, frame, models.policy_splits(), transactions, users)
    lacking = [c for c in models.policy_columns() if c not in read.columns]
    if lacking:
        raise PolicyColumnsMissing(
            f"the champion's decision policy cuts rows by {', '.join(lacking)}, which neither the rows to score "
            "nor the warehouse has"
        )
    return read


def history_available(frame: pd.DataFrame, spec: FeatureSpec | None = None) -> np.ndarray:
    """True where every history count of the spec is present (a 0 is known-empty history, NULL is unknown)."""
    return frame[list((spec or default_spec()).history_counts)].notna().all(axis=1).to_numpy()


def missing_fields(frame: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.Series:
    """For each row, the spec's required fields it lacks, comma-separated ('' when complete)."""
    names = np.full(len(frame), "", dtype=object)
    for name in required_fields(spec):
        lacking = frame[name].isna().to_numpy() if name in frame else np.ones(len(frame), bool)
        names = np.where(lacking, names + np.where(names == "", "", ",") + name, names)
    return pd.Series(names, index=frame.index, dtype=object)


#: Features named as an alert's reasons at most.
TOP_FEATURES = 3


def _shown_value(value) -> str:
    """A feature value as a reason shows it: NULL for absence, whole numbers without decimals."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "NULL"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return f"{number:,.0f}" if number.is_integer() else f"{number:,.2f}" if abs(number) >= 1 else f"{number:.3g}"
    return str(value)


def top_contributions(
    model: TrainedModel, frame: pd.DataFrame, booster: lgb.Booster | None = None, n: int = TOP_FEATURES
) -> list[str]:
    """Each row's features that pushed its score up most, with their values, from LightGBM's ``pred_contrib``.

    A contribution is the feature's additive share of the row's raw score (log-odds; the row's
    contributions plus the model's bias are its raw score). Only features that raised the score are
    reasons; they come largest first, ties broken by feature name, so the same row always reads the same.

    Returns:
        One text per row, ``name=value (+contribution)`` joined by ``; `` (``''`` when nothing raised it).
    """
    if frame.empty:
        return []
    booster = booster or model.booster()
    contributions = booster.predict(to_model_matrix(frame, model.features, model.categories), pred_contrib=True)
    contributions = np.asarray(contributions)[:, : len(model.features)]
    names = np.array(model.features, dtype=object)
    by_name = np.broadcast_to(np.argsort(np.argsort(names)), contributions.shape)
    order = np.lexsort((by_name, -contributions), axis=1)[:, :n]
    values = frame[list(model.features)].to_numpy(dtype=object)
    texts = []
    for row, chosen in enumerate(order):
        parts = [
            f"{names[c]}={_shown_value(values[row, c])} (+{contributions[row, c]:.2f})"
            for c in chosen
            if contributions[row, c] > 0
        ]
        texts.append("; ".join(parts))
    return texts


def fallback_reason(frame: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.Series:
    """Why each row goes to the fallback: the spec's history counts that arrived NULL."""
    counts = list((spec or default_spec()).history_counts)
    lacking = frame[counts].isna().to_numpy()
    return pd.Series(
        [
            "fallback: history unavailable (" + ", ".join(c for c, gone in zip(counts, row) if gone) + " NULL)"
            for row in lacking
        ],
        index=frame.index,
        dtype=object,
    )


#: Why a complete row with its history goes to the main model.
MAIN_REASON = "main: history available"


def threshold_notes(policy: DecisionPolicy, cells: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """What a reason adds under a per-cell policy: which threshold judged the row, and why that one.

    ``threshold 0.031 of cell channel=ecommerce`` for a cell the policy knows, ``global threshold 0.054
    (cell region=XX not seen on validation)`` for one it does not; ``''`` for every row of a policy of
    one threshold (its rows all read the same threshold, recorded beside them).
    """
    if policy.is_single:
        return np.full(len(cells), "", dtype=object)
    known = policy.thresholds()
    return np.array(
        [
            f"threshold {t:.4g} of cell {c}"
            if c in known
            else f"global threshold {t:.4g} (cell {c} not seen on validation)"
            for c, t in zip(cells, thresholds)
        ],
        dtype=object,
    )


def decide(frame: pd.DataFrame, models: ScoringModels) -> pd.DataFrame:
    """Routes and scores every row: main model, fallback model, or review; every alert says why.

    A scored row is alerted when its score is at or above the threshold its route's policy gives its
    cell (:meth:`~fraud_pipeline.lib.policy.DecisionPolicy.row_thresholds`): the main policy for main
    rows, the fallback's for history-unavailable rows.

    Returns:
        transaction_id, route ('main' | 'fallback' | 'review'), score (NaN for review), threshold (the
        one the row was judged at; NaN for review), cell (its policy cell, ``''`` under a policy of one
        threshold and for review), alert, reason (the route and why: ``main: history available``,
        ``fallback: history unavailable (n_prior_tx_30d NULL)``, ``missing required field: amount``;
        under a per-cell policy followed by ``; threshold 0.031 of cell channel=ecommerce``, see
        :func:`threshold_notes`) and top_features (for an alert a model scored, its
        :data:`TOP_FEATURES` largest contributions, :func:`top_contributions`; ``''`` otherwise).

    Raises:
        ValueError: The rows lack a column the policies cut by (:func:`with_policy_columns` reads it).
    """
    lacking_columns = [c for c in models.policy_columns() if c not in frame.columns]
    if lacking_columns and len(frame):
        raise ValueError(
            f"the decision policy cuts rows by {', '.join(lacking_columns)}, which the rows to decide do not carry"
        )
    lacking = missing_fields(frame, models.spec).to_numpy()
    complete = lacking == ""
    available = history_available(frame, models.spec)
    route = np.where(~complete, "review", np.where(available, "main", "fallback"))
    scores = np.full(len(frame), np.nan)
    thresholds = np.full(len(frame), np.nan)
    cells = np.full(len(frame), "", dtype=object)
    notes = np.full(len(frame), "", dtype=object)
    main_rows, fallback_rows = route == "main", route == "fallback"
    reason = np.where(route == "review", np.char.add("missing required field: ", lacking.astype(str)), MAIN_REASON)
    reason = reason.astype(object)
    if fallback_rows.any():
        reason[fallback_rows] = fallback_reason(frame.loc[fallback_rows], models.spec).to_numpy()
    top_features = np.full(len(frame), "", dtype=object)
    alert = route == "review"
    for rows, model, policy in (
        (main_rows, models.main, models.main_policy),
        (fallback_rows, models.fallback, models.fallback_policy),
    ):
        if not rows.any():
            continue
        part = frame.loc[rows]
        booster = model.booster()
        scores[rows] = score(model, part, booster)
        thresholds[rows] = policy.row_thresholds(part)
        if not policy.is_single:
            cells[rows] = cell_labels(part, policy.splits).to_numpy(dtype=object)
        notes[rows] = threshold_notes(policy, cells[rows], thresholds[rows])
        alerted = rows.copy()
        alerted[rows] = scores[rows] >= thresholds[rows]
        alert = alert | alerted
        if alerted.any():
            top_features[alerted] = top_contributions(model, frame.loc[alerted], booster)
    noted = notes != ""
    reason[noted] = reason[noted] + "; " + notes[noted]
    return pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"].to_numpy(),
            "route": route,
            "score": scores,
            "threshold": thresholds,
            "cell": cells,
            "alert": alert.astype(bool),
            "reason": reason,
            "top_features": top_features,
        }
    )


def decide_where_changed(
    full: pd.DataFrame, changed_frame: pd.DataFrame, changed: np.ndarray, models: ScoringModels
) -> pd.DataFrame:
    """``decide(changed_frame)``, scoring only the rows marked ``changed``; the others keep ``full``'s decisions.

    :func:`decide` takes each row on its own, so where ``changed_frame`` equals the frame behind
    ``full`` its decision is ``full``'s; an outage replay need not score the unaffected rows twice.
    """
    if not changed.any():
        return full.copy()
    part = decide(changed_frame.loc[changed], models)
    columns = {}
    for name in full.columns:
        values = full[name].to_numpy(copy=True)
        values[changed] = part[name].to_numpy()
        columns[name] = values
    return pd.DataFrame(columns, index=full.index)


def _hours(frame: pd.DataFrame) -> pd.Series:
    """The UTC hour of each row: its ``hour_of_day`` where the spec has it, else its event_time's hour."""
    return frame["hour_of_day"] if "hour_of_day" in frame else pd.to_datetime(frame["event_time"]).dt.hour


def peak_hours(frame: pd.DataFrame, n_hours: int) -> list[int]:
    """The ``n_hours`` UTC hours with the most traffic (ties broken by hour)."""
    counts = _hours(frame).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return sorted(int(h) for h, _ in ranked[:n_hours])


def outage_rows(
    frame: pd.DataFrame, share: float, hours: list[int], seed: int, spec: FeatureSpec | None = None
) -> np.ndarray:
    """Which rows a history-service outage hits: a share of active users' transactions in the given hours.

    Active means history to lose: the spec's history count (:func:`~fraud_pipeline.training.candidate.history_count`,
    ``n_prior_tx_30d`` on the default spec) is above 0.
    """
    rng = np.random.default_rng(seed)
    active = (frame[history_count(spec)] > 0).to_numpy()
    in_peak = _hours(frame).isin(hours).to_numpy()
    return active & in_peak & (rng.random(len(frame)) < share)


def without_history(frame: pd.DataFrame, affected: np.ndarray, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """The frame with every history feature of the spec NULL on the affected rows, as the outage serves them."""
    masked = frame.copy()
    for name in (spec or default_spec()).history:
        masked[name] = masked[name].astype("float64")
        masked.loc[affected, name] = np.nan
    return masked


def replay_outage(
    frame: pd.DataFrame, share: float, hours: list[int], seed: int, models: ScoringModels, cost_model: CostModel
) -> dict:
    """:func:`outage_report` of an outage over ``frame``, deciding only the rows the report reads.

    The report reads the affected rows and the new users' rows (its reference for "no history"),
    and :func:`decide` takes each row on its own, so the rest of the window need not be scored: the
    numbers equal deciding every row with and without the outage (tested).
    """
    spec = models.spec
    affected = outage_rows(frame, share, hours, seed, spec)
    read = affected | (frame[history_count(spec)] == 0).to_numpy()
    rows, hit = frame.loc[read], affected[read]
    full = decide(rows, models)
    return outage_report(
        rows, hit, full, decide_where_changed(full, without_history(rows, hit, spec), hit, models), cost_model, spec
    )


def outage_report(
    frame: pd.DataFrame,
    affected: np.ndarray,
    full: pd.DataFrame,
    outage: pd.DataFrame,
    cost_model: CostModel,
    spec: FeatureSpec | None = None,
) -> dict:
    """What the serving path did with the affected rows, against the same rows with full history.

    ``full`` and ``outage`` are :func:`decide` outputs for the frame without and with the outage;
    ``spec`` is the models' feature spec (whose history count tells the new users).
    """
    is_fraud = frame["is_fraud"].to_numpy().astype(bool)
    amount = frame["amount"].to_numpy()
    frauds = affected & is_fraud
    new_users = (frame[history_count(spec)] == 0).to_numpy()  # no history a service could have lost

    def recall(decisions):
        return float(decisions["alert"].to_numpy()[frauds].mean()) if frauds.any() else float("nan")

    def mean_score(decisions, mask):
        values = decisions["score"].to_numpy()[mask]
        return float(np.nanmean(values)) if mask.any() and not np.isnan(values).all() else float("nan")

    def cost(decisions):
        return float(
            decision_costs(
                is_fraud[affected], amount[affected], decisions["alert"].to_numpy()[affected], cost_model
            ).sum()
        )

    identified = (outage["route"].to_numpy()[affected] != "main").mean() if affected.any() else float("nan")
    return {
        "n_affected": int(affected.sum()),
        "n_affected_frauds": int(frauds.sum()),
        "identified_share": float(identified),
        "recall_affected_full_history": recall(full),
        "recall_affected_outage": recall(outage),
        "cost_affected_full_history": cost(full),
        "cost_affected_outage": cost(outage),
        "cost_affected_approve_all": float(
            decision_costs(is_fraud[affected], amount[affected], np.zeros(int(affected.sum()), bool), cost_model).sum()
        ),
        "mean_score_affected_frauds_full_history": mean_score(full, frauds),
        "mean_score_affected_frauds_outage": mean_score(outage, frauds),
        "mean_score_new_users": mean_score(full, new_users & ~affected),
    }


def misreads_unavailable_history(report: dict, min_identified: float, max_score_shift: float) -> tuple[bool, str]:
    """Whether the serving path took unavailable history for known-empty history, and it mattered.

    It did when it failed to tell the affected rows from rows with real history (identified share
    below ``min_identified``) and their frauds' mean score moved by more than ``max_score_shift``
    times, either way, from the same rows with full history: down is the seed failure (an outage
    read as "new user = safe"), up is its mirror (an outage read as "new user = risky", rejecting
    active customers).
    """
    full, outage = report["mean_score_affected_frauds_full_history"], report["mean_score_affected_frauds_outage"]
    shift = outage / full if full and not np.isnan(full) and not np.isnan(outage) else float("nan")
    unidentified = not report["identified_share"] >= min_identified
    moved = not (1.0 / max_score_shift <= shift <= max_score_shift)
    verdict = unidentified and moved
    reading = "safe" if shift < 1 else "risky"
    reason = (
        f"{report['identified_share']:.0%} of {report['n_affected']} outage rows recognised as history-unavailable; "
        f"their frauds' mean score is {shift:.2f}x the full-history score"
        + (f": unavailable history read as known-empty history, i.e. {reading}" if verdict else "")
    )
    return verdict, reason


#: Columns a file of transactions to score must have (on any spec; the default spec reads the rest of
#: the raw transaction columns too, see :func:`file_columns`).
KEY_FIELDS = ("transaction_id", "user_id", "merchant_id", "event_time")
#: Every raw transaction column (what a file for the default spec carries).
FILE_COLUMNS = columns("transactions")


def file_columns(spec: FeatureSpec | None = None) -> tuple[str, ...]:
    """The columns a file to score with a model of ``spec`` must carry: the keys and every column the spec reads.

    On the default spec that is :data:`FILE_COLUMNS`; a spec keyed on ``device_id`` needs it too, one
    without ``channel`` does not.
    """
    return tuple(dict.fromkeys([*KEY_FIELDS, *(spec or default_spec()).transaction_columns]))


def parse_new_transactions_sql(source: str, source_types: dict[str, str], spec: FeatureSpec | None = None) -> str:
    """A SELECT over ``source`` giving the transaction columns typed, plus ``invalid``.

    Ids are read the way landing encodes them (:func:`~fraud_pipeline.lib.schema.encode_id_sql`): an
    integer is itself, any other text (``CU-0042``) its fixed hash, so a string id finds its history.
    ``invalid`` names every value that is present but unreadable (``amount: not a number (abc)``, an
    id written as a decimal number, an unparseable timestamp, an amount outside the one valid range);
    NULL when every value is readable. Such a value becomes NULL, so its row goes to review with the
    reason instead of being scored. Timestamps with an offset (``10:00+02:00``) are instants, stored
    as naive UTC (``08:00``), as landing stores them; a timestamp without one is read as UTC, and a
    Parquet timestamp with a time zone is converted to UTC. A raw column the source lacks is NULL;
    a column the spec reads beyond the raw ones (``device_id``) is kept as text, as landing keeps it.

    Args:
        source: What to select from (a table, a view or a reader call).
        source_types: Column -> its DuckDB type in ``source`` (``VARCHAR`` for a CSV read as text).
        spec: The feature spec of the models that will score the rows (the default spec when None).
    """
    selected, problems = [], []
    for column, logical in RAW_COLUMNS["transactions"].items():
        quoted = f'"{column}"'
        if column not in source_types:
            selected.append(f"CAST(NULL AS {SQL_TYPES[logical]}) AS {column}")
            continue
        kind = source_types[column].upper()
        text = f"NULLIF(trim(CAST({quoted} AS VARCHAR)), '')"
        if logical == "id":
            # a zero fraction is an integer: a CSV column with an empty cell is written as 238.0 by pandas
            integral = f"regexp_replace({text}, '\\.0+$', '')"
            whole = f"regexp_full_match({text}, '{INTEGER_ID}(\\.0+)?')"
            decimal = f"regexp_full_match({text}, '(?:{DECIMAL_ID})')"
            value = (
                f"CASE WHEN {whole} THEN CAST({integral} AS BIGINT) "
                f"WHEN NOT {decimal} AND length({text}) <= {MAX_ID_LENGTH} THEN {encode_id_sql(text)} END"
            )
            problem = (
                f"CASE WHEN {decimal} THEN '{column}: looks like a decimal number (' || {text} || ')' "
                f"ELSE '{column}: longer than {MAX_ID_LENGTH} characters' END"
            )
        elif logical == "timestamp":
            if "TIME ZONE" in kind:
                value = f"timezone('UTC', {quoted})"
            elif kind.startswith(("TIMESTAMP", "DATE")):
                value = f"CAST({quoted} AS TIMESTAMP)"
            else:
                value = (
                    f"CASE WHEN regexp_full_match({text}, '{OFFSET_TIMESTAMP}') "
                    f"THEN timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) "
                    f"WHEN regexp_full_match({text}, '{NAIVE_TIMESTAMP}') THEN TRY_CAST({text} AS TIMESTAMP) END"
                )
            problem = f"'{column}: unparseable timestamp (' || {text} || ')'"
        elif logical == "amount":
            number = f"TRY_CAST({text} AS DOUBLE)"
            rule = amount_problem_sql(number, text, column)
            selected.append(f"CASE WHEN ({rule}) IS NULL THEN {number} END AS {column}")
            problems.append(f"CASE WHEN {text} IS NOT NULL THEN {rule} END")
            continue
        else:
            selected.append(f"CAST({quoted} AS VARCHAR) AS {column}")
            continue
        selected.append(f"{value} AS {column}")
        problems.append(f"CASE WHEN {text} IS NOT NULL AND ({value}) IS NULL THEN {problem} END")
    for column in _extra_columns(spec):
        quoted = f'"{column}"'
        selected.append(
            f"NULLIF(trim(CAST({quoted} AS VARCHAR)), '') AS {column}"
            if column in source_types
            else f"CAST(NULL AS VARCHAR) AS {column}"
        )
    invalid = f"NULLIF(array_to_string(list_filter([{', '.join(problems)}], lambda p: p IS NOT NULL), '; '), '')"
    return f"SELECT {', '.join(selected)}, {invalid} AS invalid FROM {source}"


def _extra_columns(spec: FeatureSpec | None) -> tuple[str, ...]:
    """The transaction columns the spec reads beyond the raw table's (kept as text at landing, e.g. ``device_id``)."""
    return tuple(c for c in (spec or default_spec()).transaction_columns if c not in RAW_COLUMNS["transactions"])


def features_for_new_transactions(con, new_table: str, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Point-in-time features of the rows of ``new_table`` against the warehouse's history, under ``spec``.

    Uses the same engine as ``transaction_features``: the new rows join the history of every key of
    the spec they share (user, merchant, device, ...: the only records their features can depend on),
    replacing any stored row of the same id, so a stored transaction scored again gets exactly its
    stored features. Every window ends strictly before the row's own event_time, for transactions
    and chargebacks (by ``reported_at``) alike, so what the warehouse holds after a row never reaches it.
    """
    spec = spec or default_spec()
    wanted = file_columns(spec)
    columns = ", ".join(wanted)
    shared = " OR ".join(f"{c} IN (SELECT {c} FROM {new_table})" for c in spec.key_columns or ("user_id",))
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW serving_transactions AS
        SELECT {columns} FROM transactions
        WHERE transaction_id NOT IN (SELECT transaction_id FROM {new_table}) AND ({shared})
        UNION ALL
        SELECT {columns} FROM {new_table}
    """)
    computed = transaction_features_table(con, "serving_transactions", "chargebacks", "users", spec)
    con.register("serving_features", computed)
    try:
        return con.execute(
            f"SELECT * FROM serving_features WHERE transaction_id IN (SELECT transaction_id FROM {new_table}) "
            "ORDER BY transaction_id"
        ).df()
    finally:
        con.unregister("serving_features")


def history_gap_reason(known_until: datetime) -> str:
    """Why a row after what the warehouse knows is scored without history, and what it would need."""
    return (
        f"history unavailable: event_time after the warehouse's as_of {known_until:%Y-%m-%d %H:%M}, which knows "
        "nothing later; fallback model (a warehouse built for an as_of after the row gives it its history)"
    )


def score_new_transactions(
    con, new_table: str, models: ScoringModels, known_until: datetime | None = None
) -> pd.DataFrame:
    """Decisions for every row of ``new_table``; rows without their keys or with an unreadable value go to review.

    The history a row sees is everything known strictly before its own event_time. The warehouse
    knows what happened before ``known_until`` (its as_of) and nothing after, so a row later than
    that has an unknown history: it is scored as the policy scores unavailable history (the
    fallback model), with the reason, never with a history cut short at the warehouse's night.

    Args:
        con: A connection to the warehouse (read-only is enough).
        new_table: The rows to score: :func:`file_columns` of the models' spec, and optionally
            ``invalid`` as :func:`parse_new_transactions_sql` gives it.
        models: The champion's models.
        known_until: The warehouse's as_of; None scores every row against what the warehouse holds.
    """
    described = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {new_table}").fetchall()}
    invalid = "" if "invalid" in described else ", NULL::VARCHAR AS invalid"
    con.execute(f"CREATE OR REPLACE TEMP VIEW scoring_input AS SELECT *{invalid} FROM {new_table}")
    keys_missing = " OR ".join(f"{k} IS NULL" for k in KEY_FIELDS)
    unkeyed = con.execute(f"SELECT * FROM scoring_input WHERE {keys_missing}").df()
    con.execute(f"CREATE OR REPLACE TEMP VIEW keyed_new AS SELECT * FROM scoring_input WHERE NOT ({keys_missing})")
    frame = features_for_new_transactions(con, "keyed_new", models.spec)
    # the policy's cells may be cut by a column the spec does not read (account age): the new rows' own
    frame = with_policy_columns(con, frame, models, transactions="keyed_new")
    beyond = np.zeros(len(frame), dtype=bool)
    if known_until is not None and len(frame):
        beyond = (pd.to_datetime(frame["event_time"]) > pd.Timestamp(known_until)).to_numpy()
        frame = without_history(frame, beyond, models.spec)
    decided = decide(frame, models)
    if beyond.any():
        gap = beyond & (decided["route"] == "fallback").to_numpy()
        notes = threshold_notes(
            models.fallback_policy, decided.loc[gap, "cell"].to_numpy(), decided.loc[gap, "threshold"].to_numpy()
        )
        decided.loc[gap, "reason"] = [history_gap_reason(known_until) + (f"; {n}" if n else "") for n in notes]
    problems = con.execute("SELECT transaction_id, invalid FROM keyed_new WHERE invalid IS NOT NULL").fetchall()
    if problems:
        bad = dict(problems)
        rows = decided["transaction_id"].isin(list(bad)).to_numpy()
        decided.loc[rows, ["route", "score", "threshold", "cell", "alert", "top_features"]] = [
            "review",
            np.nan,
            np.nan,
            "",
            True,
            "",
        ]
        decided.loc[rows, "reason"] = ["invalid value: " + bad[i] for i in decided.loc[rows, "transaction_id"]]

    def unkeyed_reason(row) -> str:
        if isinstance(row["invalid"], str):
            return "invalid value: " + row["invalid"]
        return "missing required field: " + ",".join(k for k in KEY_FIELDS if pd.isna(row[k]))

    reasons = unkeyed.apply(unkeyed_reason, axis=1) if len(unkeyed) else pd.Series(dtype=str)
    review = pd.DataFrame(
        {
            "transaction_id": unkeyed["transaction_id"].to_numpy(),
            "route": "review",
            "score": np.nan,
            "threshold": np.nan,
            "cell": "",
            "alert": True,
            "reason": reasons.to_numpy(),
            "top_features": "",
        }
    )
    return pd.concat([decided, review], ignore_index=True) if len(review) else decided
