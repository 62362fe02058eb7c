"""Serving decisions: unavailable history goes to the fallback, missing fields to review, nothing is defaulted."""

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.serving import (
    HISTORY_COUNTS,
    ScoringModels,
    decide,
    decide_where_changed,
    misreads_unavailable_history,
    outage_report,
    outage_rows,
    peak_hours,
    replay_outage,
    without_history,
)
from fraud_pipeline.features.catalog import FALLBACK_FEATURES, FEATURES, HISTORY_FEATURES
from fraud_pipeline.training.model import ModelParams, train_model


def frame(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    data = {"transaction_id": np.arange(n), "is_fraud": rng.random(n) < 0.05}
    for f in FEATURES:
        if f.categorical:
            data[f.name] = rng.choice(["a", "b"], n)
        elif f.kind == "count":
            data[f.name] = rng.integers(0, 5, n)
        else:
            data[f.name] = rng.random(n) * 10
    data["hour_of_day"] = rng.integers(0, 24, n)
    data["amount"] = rng.random(n) * 100 + 1 + data["is_fraud"] * 50
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def models():
    train, validation = frame(seed=1), frame(seed=2)
    params = ModelParams(max_rounds=20)
    main = train_model(train, validation, tuple(f.name for f in FEATURES), ("channel", "mcc", "country"), params)
    fallback = train_model(train, validation, FALLBACK_FEATURES, ("channel", "mcc", "country"), params)
    return ScoringModels(main=main, main_threshold=0.5, fallback=fallback, fallback_threshold=0.5)


def test_complete_rows_with_history_use_the_main_model(models):
    out = decide(frame(50), models)
    assert (out["route"] == "main").all()
    assert out["score"].between(0, 1).all()


def test_unknown_history_counts_route_to_the_fallback_not_to_a_new_user_reading(models):
    rows = frame(50)
    rows.loc[:9, list(HISTORY_FEATURES)] = np.nan
    out = decide(rows, models)
    assert (out.loc[:9, "route"] == "fallback").all()
    assert (out.loc[:9, "reason"] == "history unavailable: fallback model").all()
    assert (out.loc[10:, "route"] == "main").all()


def test_a_known_empty_history_is_not_an_outage(models):
    rows = frame(20)
    rows[list(HISTORY_COUNTS)] = 0
    assert (decide(rows, models)["route"] == "main").all()


@pytest.mark.parametrize("field", ["amount", "channel", "mcc", "country", "hour_of_day"])
def test_a_missing_required_field_goes_to_review_with_its_name_and_no_score(models, field):
    rows = frame(10)
    rows[field] = rows[field].astype(object)
    rows.loc[3, field] = None
    out = decide(rows, models).set_index("transaction_id")
    assert out.loc[3, "route"] == "review"
    assert out.loc[3, "reason"] == f"missing required field: {field}"
    assert np.isnan(out.loc[3, "score"]) and out.loc[3, "alert"]
    assert (out.drop(index=3)["route"] == "main").all()


def test_outage_masks_only_active_users_in_the_given_hours():
    rows = frame(2000)
    affected = outage_rows(rows, share=1.0, hours=[12, 13], seed=0)
    masked = without_history(rows, affected)
    expected = (rows["n_prior_tx_30d"] > 0) & rows["hour_of_day"].isin([12, 13])
    assert (affected == expected.to_numpy()).all()
    assert masked.loc[affected, list(HISTORY_FEATURES)].isna().all().all()
    assert masked.loc[~affected, list(HISTORY_FEATURES)].notna().all().all()
    assert masked["amount"].equals(rows["amount"])


def test_peak_hours_are_the_busiest():
    rows = pd.DataFrame({"hour_of_day": [5] * 10 + [6] * 3 + [7] * 7})
    assert peak_hours(rows, 2) == [5, 7]


def _report(identified, full, outage):
    return {
        "identified_share": identified,
        "n_affected": 100,
        "mean_score_affected_frauds_full_history": full,
        "mean_score_affected_frauds_outage": outage,
    }


@pytest.mark.parametrize(
    "identified, full, outage, misread",
    [
        (1.0, 0.10, 0.005, False),  # recognised: the policy handles it, whatever the scores
        (0.0, 0.10, 0.005, True),  # taken for a new user and read as safe (the seed failure)
        (0.0, 0.01, 0.05, True),  # taken for a new user and read as risky (its mirror)
        (0.0, 0.10, 0.09, False),  # not recognised, but the decision barely moves
        (0.0, 0.10, 0.14, True),  # not recognised, and 40% up: active customers start to look risky
    ],
)
def test_misreading_verdicts(identified, full, outage, misread):
    verdict, reason = misreads_unavailable_history(_report(identified, full, outage), 0.99, 1.25)
    assert verdict is misread
    assert "recognised" in reason


def test_deciding_only_the_changed_rows_equals_deciding_every_row(models):
    rows = frame(400, seed=5)
    full = decide(rows, models)
    affected = outage_rows(rows, 0.5, list(range(24)), seed=1)
    masked = without_history(rows, affected)
    assert 0 < affected.sum() < len(rows)
    pd.testing.assert_frame_equal(decide_where_changed(full, masked, affected, models), decide(masked, models))
    nothing = np.zeros(len(rows), bool)
    pd.testing.assert_frame_equal(decide_where_changed(full, masked, nothing, models), full)


def test_replaying_an_outage_on_the_rows_its_report_reads_equals_deciding_every_row(models):
    from fraud_pipeline.lib.costs import CostModel

    rows = frame(3000, seed=7)
    rows.loc[rows.index % 7 == 0, "n_prior_tx_30d"] = 0  # new users: the report's reference rows
    hours = peak_hours(rows, 6)
    affected = outage_rows(rows, 0.5, hours, seed=3)
    masked = without_history(rows, affected)
    everything = outage_report(rows, affected, decide(rows, models), decide(masked, models), CostModel())
    assert everything["n_affected_frauds"] > 0 and not np.isnan(everything["mean_score_new_users"])
    assert replay_outage(rows, 0.5, hours, 3, models, CostModel()) == pytest.approx(everything, rel=1e-12)
