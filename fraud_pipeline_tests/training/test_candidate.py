"""A candidate trains on the run's feature spec (its names, its categoricals, its attributes as the fallback) and
chooses each model's decision policy on its validation rows, cut only by the splits its models read."""

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.costs import CostModel, decision_costs
from fraud_pipeline.lib.policy import PolicyRequest, policy_of
from fraud_pipeline.training.candidate import fallback_rows, history_count, model_policy, train_candidate
from fraud_pipeline.training.model import ModelParams, score

#: A foreign-shaped spec: customers and terminals, no channel/mcc/country.
FOREIGN = FeatureSpec.from_dict(
    {
        "version": 1,
        "keys": {"customer": ["user_id"], "terminal": ["merchant_id"]},
        "attributes": [
            {"name": "amount", "column": "amount"},
            {"name": "hour_of_day", "derive": "hour_of_day"},
            {"name": "entry_mode", "column": "entry_mode", "categorical": True, "nullable": True},
        ],
        "features": [
            {"name": "n_customer_tx_1d", "key": "customer", "window": "1d", "agg": "count"},
            {"name": "n_customer_tx_7d", "key": "customer", "window": "7d", "agg": "count"},
            {"name": "n_terminal_tx_7d", "key": "terminal", "window": "7d", "agg": "count"},
            {"name": "terminal_risk_7d", "key": "terminal", "window": "7d", "agg": "label_rate"},
        ],
    }
)


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    data = pd.DataFrame(
        {
            "transaction_id": np.arange(n) + seed * n,
            "amount": rng.lognormal(3, 1, n),
            "hour_of_day": rng.integers(0, 24, n),
            "entry_mode": rng.choice(["chip", "online", "swipe"], n),
            "n_customer_tx_1d": rng.integers(0, 4, n),
            "n_customer_tx_7d": rng.integers(0, 10, n),
            "n_terminal_tx_7d": rng.integers(1, 50, n),
            "terminal_risk_7d": risk,
        }
    )
    data["is_fraud"] = rng.random(n) < 0.02 + 0.3 * (risk > 0.9)
    return data


def test_the_candidate_trains_on_the_specs_features_and_records_the_spec():
    params = ModelParams(max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20)
    candidate, _ = train_candidate(frame(4_000, 1), frame(2_000, 2), params, CostModel(), spec=FOREIGN)
    assert candidate.main.model.features == FOREIGN.names
    assert candidate.fallback.model.features == ("amount", "hour_of_day", "entry_mode")
    assert set(candidate.main.model.categories) == {"entry_mode"}
    assert candidate.spec == FOREIGN.to_dict() and candidate.feature_spec() == FOREIGN
    assert candidate.as_dict()["feature_spec"] == FOREIGN.to_dict()


def test_rows_with_history_are_told_by_the_first_keys_longest_count():
    assert history_count() == "n_prior_tx_30d" and history_count(default_spec()) == "n_prior_tx_30d"
    assert history_count(FOREIGN) == "n_customer_tx_7d"
    rows = frame(100, 3)
    assert (fallback_rows(rows, FOREIGN)["n_customer_tx_7d"] > 0).all()
    assert len(fallback_rows(rows, FOREIGN)) == int((rows["n_customer_tx_7d"] > 0).sum())


def timed(n: int, seed: int) -> pd.DataFrame:
    """:func:`frame` with event times over 14 days, and entry modes of different risk at the same score."""
    data = frame(n, seed)
    rng = np.random.default_rng(seed + 100)
    start = np.datetime64("2018-05-01T00:00:00")
    data["event_time"] = start + np.sort(rng.integers(0, 14 * 86_400, n)).astype("timedelta64[s]")
    return data


def test_each_model_carries_the_policy_chosen_on_its_validation_rows():
    params = ModelParams(max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20)
    request = PolicyRequest(cohorts=("entry_mode", "channel"), select_on_holdout=False)
    validation = timed(3_000, 5)
    candidate, choice = train_candidate(timed(4_000, 4), validation, params, CostModel(), spec=FOREIGN, policy=request)
    # the foreign spec has no channel: the policy cuts by the one requested split its models read
    assert [s.name for s in candidate.policy.splits] == ["entry_mode"]
    assert {c.cell for c in candidate.policy.cells} == {"entry_mode=chip", "entry_mode=online", "entry_mode=swipe"}
    assert candidate.request() == request and candidate.threshold == candidate.policy.global_threshold
    assert candidate.threshold == choice.threshold
    recomputed = model_policy(candidate.main.model, validation, request, CostModel())
    assert recomputed == candidate.policy
    fallback_validation = fallback_rows(validation, FOREIGN)
    assert model_policy(candidate.fallback.model, fallback_validation, request, CostModel()) == (
        candidate.fallback.decision_policy()
    )
    # the bundle's shape: the main policy at the top level, the fallback's nested, both read by policy_of
    values = candidate.as_dict()
    assert policy_of(values) == candidate.policy
    assert policy_of(values["fallback"]) == candidate.fallback.decision_policy()
    scores = score(candidate.main.model, validation)
    alerts = candidate.policy.alerts(scores, validation)
    assert candidate.main.validation_alerts == int(alerts.sum())
    costs = decision_costs(validation["is_fraud"], validation["amount"], alerts, CostModel())
    assert candidate.main.validation_cost == pytest.approx(float(costs.sum()))


def test_a_spec_without_the_cohort_columns_gets_one_threshold():
    params = ModelParams(max_rounds=15, early_stopping_rounds=5, min_data_in_leaf=20)
    candidate, choice = train_candidate(timed(4_000, 6), timed(2_000, 7), params, CostModel(), spec=FOREIGN)
    assert candidate.request() == PolicyRequest()
    for model in candidate.models().values():
        policy = model.decision_policy()
        assert policy.is_single and policy.splits == () and policy.selection == ()
    assert candidate.threshold == choice.threshold
