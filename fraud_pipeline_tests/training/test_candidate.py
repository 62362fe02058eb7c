"""A candidate trains on the run's feature spec: its names, its categoricals, its attributes as the fallback."""

import numpy as np
import pandas as pd

from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.training.candidate import fallback_rows, history_count, train_candidate
from fraud_pipeline.training.model import ModelParams

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
