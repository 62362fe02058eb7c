"""Monitoring recomputes the champion's decisions by its decision policy: the realised promise and the estimate's alerts."""

from dataclasses import replace
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.serving import ScoringModels, decide
from fraud_pipeline.evaluation.metrics import CohortSpec, evaluate_decisions
from fraud_pipeline.features.catalog import FALLBACK_FEATURES, FEATURES
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.monitoring.champion import realised_decisions
from fraud_pipeline.monitoring.recent import open_rows
from fraud_pipeline.training.model import ModelParams, train_model
from fraud_pipeline.training.windows import TrainingWindows
from fraud_pipeline_tests.deployment.policies import hand_policy
from fraud_pipeline_tests.deployment.test_serving import frame as made_up_rows

SEGMENT = CohortSpec("segment", "segment")
CHANNEL = CohortSpec("channel", "channel")
START = datetime(2025, 3, 1)


def _scored(n=3000, seed=4):
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "user_id": rng.integers(0, 300, n),
            "event_time": START + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
            "is_fraud": fraud,
            "score": np.clip(rng.normal(0.3 + 0.4 * fraud, 0.2), 0, 1),
            "amount": rng.lognormal(4, 0.7, n),
            "segment": rng.choice(["risky", "calm"], n),
            "channel": rng.choice(["card_present", "ecommerce"], n),
        }
    )


def _bundle(**extra) -> dict:
    return {
        "threshold": 0.6,
        "cost_model": {},
        "evaluation": {"rule_amount_threshold": 200.0, "review_capacity_k": 20},
        **extra,
    }


def test_the_realised_promise_is_measured_on_the_champions_policy():
    frame = _scored()
    policy = hand_policy(0.6, SEGMENT, {"risky": 0.3})
    realised, by_cohort = realised_decisions(frame, _bundle(policy=policy.as_dict()), (CHANNEL,))
    alert = frame["score"].to_numpy() >= np.where(frame["segment"] == "risky", 0.3, 0.6)
    assert realised["n_alerts"] == int(alert.sum())
    assert realised == evaluate_decisions(frame, policy, CostModel(), 200.0, 20)
    single, single_by_cohort = realised_decisions(frame, _bundle(), (CHANNEL,))
    assert single == evaluate_decisions(frame, 0.6, CostModel(), 200.0, 20)  # a bundle from before policies
    assert realised["n_alerts"] > single["n_alerts"] and realised["recall"] > single["recall"]
    ecommerce = frame["channel"] == "ecommerce"
    row = next(r for r in by_cohort if r["value"] == "ecommerce")
    assert row["n_alerts"] == int(alert[ecommerce].sum())
    assert [r["value"] for r in by_cohort] == [r["value"] for r in single_by_cohort] == ["card_present", "ecommerce"]


@pytest.fixture(scope="module")
def models():
    train, validation = made_up_rows(seed=1), made_up_rows(seed=2)
    params = ModelParams(max_rounds=15)
    main = train_model(train, validation, tuple(f.name for f in FEATURES), ("channel", "mcc", "country"), params)
    fallback = train_model(train, validation, FALLBACK_FEATURES, ("channel", "mcc", "country"), params)
    return main, fallback


def _warehouse(n_open=600, n_validation=800):
    """transaction_features and transaction_labels over a validation window and an open window after it; the
    transactions table carries ``segment``, which the feature rows do not."""
    rows = made_up_rows(n_open + n_validation, seed=9)
    rng = np.random.default_rng(3)
    validation_days, open_days = (
        (START, START + timedelta(days=10)),
        (START + timedelta(days=20), START + timedelta(days=30)),
    )
    offsets = pd.to_timedelta(rng.integers(0, 10 * 86400, len(rows)), unit="s")
    starts = np.where(np.arange(len(rows)) < n_validation, validation_days[0], open_days[0]).astype("datetime64[us]")
    rows["event_time"] = starts + offsets.to_numpy()
    rows["user_id"] = rng.integers(0, 100, len(rows))
    con = duckdb.connect()
    features = rows.drop(columns=["is_fraud"])
    con.register("features_frame", features)
    con.execute("CREATE TABLE transaction_features AS SELECT * FROM features_frame")
    labels = pd.DataFrame(
        {
            "transaction_id": rows["transaction_id"],
            "is_fraud": rows["is_fraud"],
            "expected_completeness": 0.5,
        }
    )
    con.register("labels_frame", labels)
    con.execute("CREATE TABLE transaction_labels AS SELECT * FROM labels_frame")
    segments = pd.DataFrame(
        {"transaction_id": rows["transaction_id"], "segment": np.where(rows.index % 2, "risky", "calm")}
    )
    con.register("segments_frame", segments)
    con.execute("CREATE TABLE transactions AS SELECT * FROM segments_frame")
    windows = TrainingWindows(
        train_start=START - timedelta(days=30),
        train_end=validation_days[0],
        validation_start=validation_days[0],
        validation_end=validation_days[1],
        test_start=validation_days[1],
        test_end=open_days[0],
        label_cutoff=open_days[0],
        as_of=open_days[1],
        horizon_days=10.0,
    )
    return con, windows, open_days, segments.set_index("transaction_id")["segment"]


def test_the_estimates_open_decisions_are_the_champions_policy_with_its_cells_read_from_the_warehouse(models):
    main, fallback = models
    con, windows, window, segment = _warehouse()
    plain = ScoringModels(main=main, main_policy=0.5, fallback=fallback, fallback_policy=0.5)
    bundle = {
        **main.as_dict(),
        "threshold": 0.5,
        "fallback": {**fallback.as_dict(), "threshold": 0.5},
        "windows": windows.as_dict(),
        "evaluation": {},
    }
    single = open_rows(con, bundle, window).frame
    low = float(single["score"].quantile(0.4))
    policy = hand_policy(0.5, SEGMENT, {"risky": low})
    policed = open_rows(con, {**bundle, "policy": policy.as_dict()}, window).frame
    np.testing.assert_array_equal(policed["score"], single["score"])
    assert (policed["segment"].to_numpy() == segment.loc[policed["transaction_id"]].to_numpy()).all()
    risky = (policed["segment"] == "risky").to_numpy()
    expected = policed["score"].to_numpy() >= np.where(risky, low, 0.5)
    np.testing.assert_array_equal(policed["alert"].to_numpy(), expected)
    assert policed["alert"].sum() > single["alert"].sum()
    served = decide(policed, replace(plain, main_policy=policy))
    np.testing.assert_array_equal(policed["alert"].to_numpy(), served["alert"].to_numpy())
