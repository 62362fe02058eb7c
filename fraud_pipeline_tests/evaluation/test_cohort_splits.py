"""Which cohort splits an evaluation is cut by: configured by name, only those the data has, none without a crash."""

import numpy as np
import pandas as pd

from fraud_pipeline.evaluation.assets import EvaluationConfig, _cohort_metrics, _cohort_rows
from fraud_pipeline.evaluation.cohorts import (
    DEFAULT_COHORT_NAMES,
    cohorts_named,
    decompose,
    evaluated_cohorts,
    window_headline,
)
from fraud_pipeline.evaluation.metrics import DEFAULT_COHORTS, CohortSpec, day_bootstrap
from fraud_pipeline.lib.costs import CostModel

COSTS = CostModel()


def scored(n=3000, seed=0, **extra) -> pd.DataFrame:
    """A scored window without channel or country (a foreign data set's), plus any extra columns."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "user_id": rng.integers(0, 300, n),
            "event_time": pd.Timestamp("2018-05-01") + pd.to_timedelta(rng.integers(0, 14 * 86_400, n), unit="s"),
            "amount": rng.exponential(40, n) + 1,
            "is_fraud": fraud,
            "score": np.clip(rng.normal(0.2 + 0.5 * fraud, 0.15), 0, 1),
            "account_age_days": rng.exponential(60, n),
            **{name: values(rng, n) for name, values in extra.items()},
        }
    )


def test_cohort_names_resolve_to_the_built_in_splits_or_a_columns_values():
    assert cohorts_named(DEFAULT_COHORT_NAMES) == DEFAULT_COHORTS
    assert EvaluationConfig().cohorts == list(DEFAULT_COHORT_NAMES)
    assert cohorts_named(["card_type", "account_age", "card_type"]) == (
        CohortSpec("card_type", "card_type"),
        DEFAULT_COHORTS[0],
    )
    rows = [{"cohort": "account_age"}, {"cohort": "account_age"}, {"cohort": "card_type"}]
    assert evaluated_cohorts(rows) == cohorts_named(["account_age", "card_type"])


def test_a_window_without_channel_and_country_is_cut_by_account_age_only():
    frame = scored()
    rows = _cohort_rows(frame, 0.5, COSTS, 100.0, EvaluationConfig())
    assert {r["cohort"] for r in rows} == {"account_age"}
    assert sum(r["n_transactions"] for r in rows) == len(frame)


def test_a_configured_split_on_a_transaction_column_is_reported():
    frame = scored(card_type=lambda rng, n: rng.choice(["credit", "debit"], n))
    rows = _cohort_rows(frame, 0.5, COSTS, 100.0, EvaluationConfig(cohorts=["card_type"]))
    assert [(r["cohort"], r["value"]) for r in rows] == [("card_type", "credit"), ("card_type", "debit")]
    assert all(r["recall_low"] <= r["recall"] <= r["recall_high"] for r in rows)


def test_no_cohort_split_at_all_gives_empty_tables_not_a_crash():
    frame = scored()
    config = EvaluationConfig(cohorts=[])
    assert _cohort_rows(frame, 0.5, COSTS, 100.0, config) == []
    assert _cohort_rows(frame, 0.5, COSTS, 100.0, config, ()) == []
    assert _cohort_metrics(frame, 0.5, COSTS, 100.0, ()) == []
    headline = window_headline(frame, 0.5, COSTS)
    assert decompose([], [], headline, headline) == []
    assert day_bootstrap(frame, 0.5, COSTS, 100.0, 20, 0, cohorts=())["cohorts"] == []
