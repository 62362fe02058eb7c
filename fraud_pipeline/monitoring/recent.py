"""Reading what the estimate needs from the warehouse: the champion serving at as_of, its recent decisions, its validation rows.

The champion whose traffic is estimated is the one that served before as_of: the last promotion in
the registry's history recorded for an earlier night. Whether tonight's deploy ran before or after
the estimate, the answer is the same, and re-running a past night finds that night's champion.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from fraud_pipeline.deployment.registry import ModelRegistryStore, RegistryError
from fraud_pipeline.deployment.serving import PolicyColumnsMissing, ScoringModels, decide, with_policy_columns
from fraud_pipeline.evaluation.cohorts import cohorts_of, evaluated_cohorts, with_cohort_columns
from fraud_pipeline.evaluation.metrics import DEFAULT_COHORTS, CohortSpec
from fraud_pipeline.features.contracts import column_types
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.warehouse import fetch_frame
from fraud_pipeline.monitoring.champion import with_cost_per_transaction
from fraud_pipeline.monitoring.estimate import ChampionEstimate, OpenRows, estimate_performance
from fraud_pipeline.training.candidate import fallback_rows
from fraud_pipeline.training.model import score
from fraud_pipeline.training.windows import TrainingWindows


def serving_champion(store: ModelRegistryStore, as_of: datetime) -> tuple[dict | None, str | None]:
    """The promotion event of the champion that served before ``as_of``, or None and why not.

    Returns:
        ``(event, None)`` with the event's version, as_of and reason; ``(None, None)`` when nothing
        was promoted on an earlier night; ``(None, reason)`` when the registry or that version is
        unreadable.
    """
    try:
        promoted = [
            e
            for e in store.history()
            if e.get("event") == "promoted"
            and isinstance(e.get("as_of"), str)
            and datetime.fromisoformat(e["as_of"]) < as_of
        ]
        if not promoted:
            return None, None
        event = promoted[-1]
        store.check_version(event["version"])
    except (RegistryError, ValueError) as error:
        return None, str(error)
    return event, None


def open_window(bundle: dict, as_of: datetime, window_days: int) -> tuple[datetime, datetime] | None:
    """The newest ``window_days`` before as_of that lie after the champion's test window, or None if empty."""
    windows = TrainingWindows.from_dict(bundle["windows"])
    start = max(as_of - timedelta(days=window_days), windows.test_end)
    return (start, as_of) if start < as_of else None


OPEN_ROWS_SQL = """
    SELECT f.*, l.is_fraud AS reported, l.expected_completeness AS completeness
    FROM transaction_features AS f JOIN transaction_labels AS l USING (transaction_id)
    WHERE f.event_time >= CAST($start AS TIMESTAMP) AND f.event_time < CAST($end AS TIMESTAMP)
    ORDER BY transaction_id
"""

VALIDATION_SQL = """
    SELECT f.*, l.is_fraud
    FROM transaction_features AS f JOIN transaction_labels AS l USING (transaction_id)
    WHERE f.event_time >= CAST($start AS TIMESTAMP) AND f.event_time < CAST($end AS TIMESTAMP)
    ORDER BY transaction_id
"""


def champion_cohorts(bundle: dict) -> tuple[CohortSpec, ...]:
    """The cohort splits the champion's evaluation was cut by (the built-in ones for a bundle that records none)."""
    rows = bundle.get("evaluation", {}).get("cohorts") or []
    return evaluated_cohorts(rows) if rows else DEFAULT_COHORTS


def open_rows(
    con, bundle: dict, window: tuple[datetime, datetime], cohorts: tuple[CohortSpec, ...] | None = None
) -> OpenRows:
    """The champion's decisions on the window's transactions with their labels so far, and its validation rows.

    The decisions are :func:`fraud_pipeline.deployment.serving.decide`'s, the path every scorer
    takes: each route by its own decision policy. The validation rows are the champion's validation window with its labels as known
    tonight (mature at the deploy, so at least as complete now, whatever tonight's horizon says),
    scored by the main model (all of them) and by the fallback (the rows it is thresholded on).

    Args:
        con: A warehouse connection holding ``transaction_features`` and ``transaction_labels`` of as_of.
        bundle: The champion's scoring bundle (model texts filled in).
        window: ``(start, end)`` of the transactions to estimate.
        cohorts: The cohort splits whose columns the rows must carry (read from the warehouse where
            the feature rows lack them); the champion's evaluated splits when None.
    """
    models = ScoringModels.from_candidate(bundle)
    frame = fetch_frame(con, OPEN_ROWS_SQL, {"start": window[0], "end": window[1]})
    frame, _ = with_cohort_columns(con, frame, champion_cohorts(bundle) if cohorts is None else cohorts)
    if len(frame):
        # decided as the champion decides: each route by its policy, whose cells may need a column of their own
        frame = with_policy_columns(con, frame, models)
        decisions = decide(frame, models)
    else:
        decisions = pd.DataFrame(columns=["route", "score", "alert"])
    frame = frame.assign(
        route=decisions["route"].to_numpy(),
        score=decisions["score"].to_numpy(dtype=float),
        alert=decisions["alert"].to_numpy(dtype=bool),
        reported=frame["reported"].to_numpy(dtype=bool),
    )
    windows = TrainingWindows.from_dict(bundle["windows"])
    validation = fetch_frame(con, VALIDATION_SQL, {"start": windows.validation_start, "end": windows.validation_end})
    by_route = {
        "main": pd.DataFrame({"score": score(models.main, validation), "is_fraud": validation["is_fraud"].to_numpy()})
    }
    with_history = fallback_rows(validation, models.spec)
    if len(with_history):
        by_route["fallback"] = pd.DataFrame(
            {"score": score(models.fallback, with_history), "is_fraud": with_history["is_fraud"].to_numpy()}
        )
    return OpenRows(frame=frame, validation=by_route)


def scoring_problem(con, bundle: dict) -> str | None:
    """Why the champion cannot score tonight's feature rows: the features its models read that they lack, else None.

    A feature spec changed since the deploy leaves ``transaction_features`` without some of the
    champion's features; the estimate then says so instead of failing the night (and its report).
    """
    columns = column_types(con, "transaction_features")
    models = ScoringModels.from_candidate(bundle)
    missing = [c for c in dict.fromkeys([*models.main.features, *models.fallback.features]) if c not in columns]
    if not missing:
        return None
    return f"its models read features tonight's feature rows do not have: {', '.join(missing)}"


def estimate_champion(
    con,
    store: ModelRegistryStore,
    as_of: datetime,
    cohorts: tuple[CohortSpec, ...] | None,
    window_days: int,
    max_cost_increase: float,
    method: str = "platt",
    n_resamples: int = 200,
    seed: int = 0,
    level: float = 0.9,
    prior_frauds: float | None = None,
    shift_within: tuple[CohortSpec, ...] | None = (),
) -> ChampionEstimate:
    """The serving champion's estimated performance on its open traffic at as_of, beside its promise.

    Args:
        con: A warehouse connection holding ``transaction_features`` and ``transaction_labels`` of as_of.
        store: The model registry.
        as_of: The night.
        cohorts: Cohort definitions; None for the champion's evaluated splits. A split whose column
            the data does not have (no ``channel``) is left out.
        window_days: The newest this many days of transactions are estimated (never the champion's own windows).
        max_cost_increase: The warning margin carried to the check.
        method, n_resamples, seed, level, prior_frauds, shift_within: See
            :func:`fraud_pipeline.monitoring.estimate.estimate_performance`; ``shift_within`` None
            is the first of the cohorts.
    """
    common = {"as_of": as_of.isoformat(), "max_cost_increase": max_cost_increase}
    event, problem = serving_champion(store, as_of)
    if problem:
        return ChampionEstimate(status="no_valid_champion", reason=problem, **common)
    if event is None:
        return ChampionEstimate(status="no_champion", **common)
    bundle = store.scoring_bundle(event["version"])
    promised = with_cost_per_transaction(bundle["evaluation"])["cost_per_transaction"]
    window = open_window(bundle, as_of, window_days)
    wanted = champion_cohorts(bundle) if cohorts is None else cohorts
    known = {"champion": event["version"], "promised_cost_per_transaction": float(promised), **common}
    if window and (problem := scoring_problem(con, bundle)):
        return ChampionEstimate(status="cannot_score", reason=problem, **known)
    try:
        rows = open_rows(con, bundle, window, wanted) if window else None
    except PolicyColumnsMissing as error:
        return ChampionEstimate(status="cannot_score", reason=str(error), **known)
    if rows is None or rows.frame.empty:
        return ChampionEstimate(status="no_open_traffic", **known)
    if rows.validation["main"].empty:
        windows = TrainingWindows.from_dict(bundle["windows"])
        reason = (
            f"its validation window {windows.validation_start:%Y-%m-%d} .. {windows.validation_end:%Y-%m-%d} has no "
            "feature rows in tonight's warehouse, so its scores cannot be calibrated"
        )
        return ChampionEstimate(status="cannot_calibrate", reason=reason, **known)
    present = cohorts_of(rows.frame.columns, wanted)
    within = present[:1] if shift_within is None else cohorts_of(rows.frame.columns, shift_within)
    estimate = estimate_performance(
        rows, CostModel(**bundle["cost_model"]), present, method, n_resamples, seed, level, prior_frauds, within
    )
    return ChampionEstimate(
        status="estimated",
        champion=event["version"],
        window=(window[0].isoformat(), window[1].isoformat()),
        promised_cost_per_transaction=float(promised),
        estimate=estimate,
        **common,
    )
