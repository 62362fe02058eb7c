"""Label maturation: the truncation-corrected delay estimate and the as-of labels."""

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.ingestion.simulator import WorldSpec, _reporting_delays
from fraud_pipeline.labels.maturity import (
    US_PER_DAY,
    delay_observations_sql,
    estimate_delay_profile,
    horizon_interval,
    horizon_unit,
    naive_delay_quantile,
    transaction_labels_sql,
)
from fraud_pipeline.training.windows import plan_windows


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
    # a transaction exactly as old as a delay has not had that chargeback yet: it arrives at as_of, not before
    assert profile.completeness_at(np.array([1.5, 3.5])).tolist() == pytest.approx([0, 2 / 3])
    # the largest delay, exactly: half days are not whole days, so the unit is hours (it was 4, a day late)
    assert profile.horizon_days == 3.5 and profile.horizon_unit == "hours"


def _fixed_delays(delay_days: float, n: int = 1_000, seed: int = 0):
    """Every chargeback exactly ``delay_days`` after its transaction, seen at ages up to 60 days later."""
    truncation = delay_days + np.random.default_rng(seed).uniform(0.001, 60, n)
    return np.full(n, float(delay_days)), truncation


@pytest.mark.parametrize("days", [0, 1, 7, 30])
def test_a_fixed_delay_of_whole_days_is_the_horizon_exactly(days):
    delays, truncation = _fixed_delays(days)
    profile = estimate_delay_profile(delays, truncation, coverage=0.95)
    assert profile.horizon_days == days and profile.horizon_unit == "days"
    # mature means strictly older than the horizon, and then every chargeback is in
    assert profile.completeness_at(np.array([days, days + 1e-6])).tolist() == [0.0, 1.0]
    assert horizon_interval(delays, truncation, 0.95, n_resamples=20) == (days, days)
    assert profile.delay_quantile(0.5) == days and naive_delay_quantile(delays, 0.95, "days") == days


def test_a_fixed_delay_in_hours_gives_a_horizon_in_hours_rounded_up():
    delays, truncation = _fixed_delays(30 / 24)
    profile = estimate_delay_profile(delays, truncation)
    assert profile.horizon_unit == "hours" and profile.horizon_days * 24 == pytest.approx(30, abs=1e-9)
    # a delay between whole hours is covered by the next hour, never by less
    delays, truncation = _fixed_delays(30.5 / 24)
    assert estimate_delay_profile(delays, truncation).horizon_days * 24 == pytest.approx(31, abs=1e-9)


def test_the_unit_is_days_only_when_every_delay_is_whole_days():
    assert horizon_unit(np.array([0.0, 7.0, 30.0])) == "days"
    assert horizon_unit(np.array([7.0, 7.0 + 1 / 86_400])) == "hours"  # one second off a whole day


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_horizon_of_the_simulators_heavy_tail_is_within_a_day_of_its_true_quantile(seed):
    """The built-in world's delay law (a day plus a lognormal, median 14 days, up to 180), seen truncated."""
    rng = np.random.default_rng(seed)
    n = 200_000
    delays = _reporting_delays(WorldSpec(), n, rng) / US_PER_DAY
    age = rng.uniform(0, 181, n)  # older than the longest delay: the truncated quantile is the law's
    seen = delays < age
    profile = estimate_delay_profile(delays[seen], age[seen], coverage=0.95)
    true_q95 = np.quantile(delays, 0.95, method="inverted_cdf")
    assert profile.horizon_unit == "hours"
    assert abs(profile.horizon_days - true_q95) <= 1
    assert naive_delay_quantile(delays[seen], 0.95, "hours") < true_q95 - 5  # what the truncation correction fixes


@pytest.mark.parametrize(
    "delays, truncation, message",
    [
        ([], [], "no chargebacks"),
        ([-1.0], [5.0], "before its transaction"),
        ([6.0], [5.0], "after as_of"),
        ([5.0], [5.0], "at or after as_of"),
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
            "transaction_id": [1, 2, 3, 4],
            "event_time": pd.to_datetime(
                ["2025-01-01 00:00", "2025-03-01 00:00", "2025-03-20 00:00", "2025-03-31 12:00"]
            ),
        }
    )
    cb = pd.DataFrame({"transaction_id": [1, 2], "reported_at": pd.to_datetime(["2025-01-20", "2025-04-15"])})  # noqa: F841
    # the profile's steps: P(delay <= delay_days)
    steps = pd.DataFrame({"delay_days": [5.0, 12.0, 20.0, 60.0], "completeness": [0.2, 0.5, 0.8, 1.0]})  # noqa: F841
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb")
    con.execute("CREATE TABLE label_completeness AS SELECT * FROM steps")
    sql, params = transaction_labels_sql(datetime(2025, 4, 1), horizon_days=31)
    labels = con.execute(sql, params).df().set_index("transaction_id")
    assert labels["is_fraud"].tolist() == [True, False, False, False]  # tx 2's chargeback comes after as_of
    # tx 2 is exactly 31 days old: mature only when strictly older than the horizon
    assert labels["is_mature"].tolist() == [True, False, False, False]
    assert pd.isna(labels.loc[2, "label_known_at"])
    # P(delay < age): 90 days -> past the last step; 31 -> the 20-day step; 12 exactly -> the 5-day step; 0.5 -> 0
    assert labels["expected_completeness"].tolist() == pytest.approx([1.0, 0.8, 0.2, 0.0])
    sql, params = transaction_labels_sql(datetime(2025, 4, 1), horizon_days=30.5)
    assert con.execute(sql, params).df().set_index("transaction_id")["is_mature"].tolist() == [True, True, False, False]


def test_chargebacks_exactly_seven_days_late_mature_a_week_seven_days_after_it_ends():
    """The foreign data set's case: a 7-day test window is covered at as_of = the week's end + 7 days."""
    week_start, week_end = datetime(2025, 3, 3), datetime(2025, 3, 10)
    as_of = week_end + timedelta(days=7)
    event_time = pd.date_range("2025-01-01", as_of, freq="6h", inclusive="left")
    tx = pd.DataFrame({"transaction_id": np.arange(len(event_time)), "event_time": event_time})
    frauds = tx[tx["transaction_id"] % 4 == 0]
    # every chargeback of a fraud exactly 7 days later, including those reported after as_of
    cb = pd.DataFrame(
        {"transaction_id": frauds["transaction_id"], "reported_at": frauds["event_time"] + pd.Timedelta(days=7)}
    )
    con = duckdb.connect()
    con.register("tx_frame", tx)
    con.register("cb_frame", cb)
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx_frame")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb_frame")
    sql, params = delay_observations_sql(as_of)
    observations = con.execute(sql, params).fetchnumpy()
    profile = estimate_delay_profile(observations["delay_days"], observations["truncation_days"], coverage=0.95)
    assert profile.horizon_days == 7 and profile.horizon_unit == "days"  # it was 8
    con.register("steps", profile.steps)  # what label_delay_profile stores
    con.execute("CREATE TABLE label_completeness AS SELECT * FROM steps")
    sql, params = transaction_labels_sql(as_of, profile.horizon_days)
    labels = con.execute(sql, params).df()

    windows = plan_windows(
        as_of, profile.horizon_days, event_time[0], event_time[-1], 7, 7, 7, warmup_days=30, min_train_days=7
    )
    assert (windows.test_start, windows.test_end) == (week_start, week_end)
    week = labels[(labels["event_time"] >= week_start) & (labels["event_time"] < week_end)]
    assert len(week) == 28 and week["is_mature"].all()
    assert (week["expected_completeness"] == 1.0).all()
    assert week["is_fraud"].tolist() == (week["transaction_id"] % 4 == 0).tolist()  # every fraud's label is known
    # the first transaction after the week is exactly 7 days old: its chargeback arrives at as_of, so not mature
    first_after = labels[labels["event_time"] == week_end].iloc[0]
    assert not first_after["is_mature"] and not first_after["is_fraud"] and first_after["expected_completeness"] == 0


def test_horizon_interval_is_wide_on_little_data_and_narrow_on_much():
    delay, age, seen = _truncated_sample(5, n=100_000)
    profile = estimate_delay_profile(delay[seen], age[seen])
    low, high = horizon_interval(delay[seen], age[seen], 0.95, n_resamples=100)
    assert low <= profile.horizon_days <= high
    assert high - low <= 10
    small = np.flatnonzero(seen)[:300]
    low_small, high_small = horizon_interval(delay[small], age[small], 0.95, n_resamples=100)
    assert high_small - low_small > high - low
