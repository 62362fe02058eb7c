"""Label maturation: the truncation-corrected delay estimate and the as-of labels."""

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.labels.maturity import (
    estimate_delay_profile,
    transaction_labels_sql,
)


def _truncated_sample(seed: int, n: int = 100_000, span: float = 180.0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(0, span, n)
    delay = np.maximum(1.0, rng.lognormal(np.log(14), 0.9, n))
    seen = delay < age
    return delay, age, seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_horizon_recovers_the_true_quantile_despite_truncation(seed):
    delay, age, seen = _truncated_sample(seed)
    profile = estimate_delay_profile(delay[seen], age[seen], coverage=0.95)
    true_q95 = np.quantile(delay[delay < 180], 0.95)
    naive_q95 = np.quantile(delay[seen], 0.95)
    assert abs(profile.horizon_days - true_q95) <= 3
    # the naive estimate is biased short by truncation; the corrected one must not be
    assert naive_q95 < true_q95 - 5


def test_curve_is_monotone_from_zero_to_one():
    delay, age, seen = _truncated_sample(3, n=20_000)
    curve = estimate_delay_profile(delay[seen], age[seen]).curve
    values = curve["completeness"].to_numpy()
    assert values[0] == 0.0
    assert values[-1] == pytest.approx(1.0)
    assert (np.diff(values) >= -1e-12).all()


def test_completeness_at_ages():
    profile = estimate_delay_profile(np.array([1.5, 2.5, 3.5]), np.array([10.0, 10.0, 10.0]), coverage=1.0)
    assert profile.completeness_at(np.array([0.2, 2.1, 4.0, 500.0])).tolist() == pytest.approx([0, 1 / 3, 1, 1])
    assert profile.horizon_days == 4


@pytest.mark.parametrize(
    "delays, truncation, message",
    [
        ([], [], "no chargebacks"),
        ([-1.0], [5.0], "before its transaction"),
        ([6.0], [5.0], "after as_of"),
        ([1.0, 2.0], [5.0], "same length"),
    ],
)
def test_bad_observations_are_refused(delays, truncation, message):
    with pytest.raises(ValueError, match=message):
        estimate_delay_profile(np.array(delays), np.array(truncation))


def test_as_of_labels_see_only_chargebacks_reported_before_as_of():
    con = duckdb.connect()
    # the frames are read by name in the SQL below (DuckDB's replacement scan)
    tx = pd.DataFrame(  # noqa: F841
        {
            "transaction_id": [1, 2, 3],
            "event_time": pd.to_datetime(["2025-01-01", "2025-03-01", "2025-03-20"]),
        }
    )
    cb = pd.DataFrame({"transaction_id": [1, 2], "reported_at": pd.to_datetime(["2025-01-20", "2025-04-15"])})  # noqa: F841
    completeness = pd.DataFrame({"age_days": np.arange(0, 40), "completeness": np.linspace(0, 1, 40)})
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb")
    con.execute("CREATE TABLE label_completeness AS SELECT * FROM completeness")
    sql, params = transaction_labels_sql(datetime(2025, 4, 1), horizon_days=30)
    labels = con.execute(sql, params).df().set_index("transaction_id")
    assert labels["is_fraud"].tolist() == [True, False, False]  # tx 2's chargeback comes after as_of
    assert labels["is_mature"].tolist() == [True, True, False]
    assert pd.isna(labels.loc[2, "label_known_at"])
    assert labels.loc[1, "expected_completeness"] == 1.0  # older than the curve: complete
    assert labels.loc[3, "expected_completeness"] == pytest.approx(completeness.loc[12, "completeness"])


def test_horizon_interval_is_wide_on_little_data_and_narrow_on_much():
    from fraud_pipeline.labels.maturity import horizon_interval

    delay, age, seen = _truncated_sample(5, n=100_000)
    profile = estimate_delay_profile(delay[seen], age[seen])
    low, high = horizon_interval(delay[seen], age[seen], 0.95, n_resamples=100)
    assert low <= profile.horizon_days <= high
    assert high - low <= 10
    small = np.flatnonzero(seen)[:300]
    low_small, high_small = horizon_interval(delay[small], age[small], 0.95, n_resamples=100)
    assert high_small - low_small > high - low
