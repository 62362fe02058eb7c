"""A spec that is not the default one (a device key with string values and NULLs, max, std, distinct, label
rates on a new key): the portable SQL and the numpy engine equal the naive oracle on every row."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.features.oracle import compare_features, recompute_features
from fraud_pipeline.features.spec import FeatureSpec
from fraud_pipeline.features.sql import transaction_features_sql

MINUTE_US = 60 * 10**6

DEVICE_SPEC = {
    "version": 1,
    "keys": {
        "user": ["user_id"],
        "merchant": ["merchant_id"],
        "device": ["device_id"],
        "user_device": ["user_id", "device_id"],
    },
    "attributes": [
        {"name": "amount", "column": "amount"},
        {"name": "device_id", "column": "device_id", "categorical": True, "nullable": True},
        {"name": "hour_of_day", "derive": "hour_of_day"},
        {"name": "account_age_days", "derive": "account_age_days"},
    ],
    "features": [
        {"name": "n_device_tx_1h", "key": "device", "window": "1h", "agg": "count"},
        {"name": "n_device_tx_1d", "key": "device", "window": "1d", "agg": "count"},
        {"name": "sum_device_amount_1d", "key": "device", "window": "1d", "agg": "sum", "of": "amount"},
        {"name": "max_device_amount_1d", "key": "device", "window": "1d", "agg": "max", "of": "amount"},
        {"name": "std_device_amount_1d", "key": "device", "window": "1d", "agg": "std", "of": "amount"},
        {"name": "n_device_users_1d", "key": "device", "window": "1d", "agg": "distinct", "of": "user_id"},
        {"name": "seconds_since_device_tx", "key": "device", "window": "1d", "agg": "time_since_previous"},
        {"name": "amount_to_device_mean_1d", "key": "device", "window": "1d", "agg": "ratio_to_mean", "of": "amount"},
        {"name": "n_device_tx_7d", "key": "device", "window": "7d", "agg": "count"},
        {"name": "n_device_chargebacks_7d", "key": "device", "window": "7d", "agg": "label_count"},
        {"name": "device_chargeback_rate_7d", "key": "device", "window": "7d", "agg": "label_rate"},
        {"name": "n_prior_tx_7d", "key": "user", "window": "7d", "agg": "count"},
        {"name": "max_amount_7d", "key": "user", "window": "7d", "agg": "max", "of": "amount"},
        {"name": "std_amount_7d", "key": "user", "window": "7d", "agg": "std", "of": "amount"},
        {"name": "mean_amount_7d", "key": "user", "window": "7d", "agg": "mean", "of": "amount"},
        {"name": "n_merchants_7d", "key": "user", "window": "7d", "agg": "distinct", "of": "merchant_id"},
        {"name": "n_devices_7d", "key": "user", "window": "7d", "agg": "distinct", "of": "device_id"},
        {"name": "n_user_device_tx_30m", "key": "user_device", "window": "30m", "agg": "count"},
        {"name": "n_merchant_tx_90s", "key": "merchant", "window": "90s", "agg": "count"},
        {"name": "n_merchant_chargebacks_90s", "key": "merchant", "window": "90s", "agg": "label_count"},
    ],
}


def device_spec() -> FeatureSpec:
    return FeatureSpec.from_dict(DEVICE_SPEC)


def make_device_history(seed: int, n: int = 1_500, users: int = 25, devices: int = 12, days: int = 12):
    """Minute-resolution transactions (ties happen) with a string device id, NULL on about a sixth of them."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-03-01T00:00:00", "us")
    offsets = np.sort(rng.integers(0, days * 24 * 60, n)) * MINUTE_US
    device = np.array([f"dev-{i:02d}" for i in rng.integers(0, devices, n)], dtype=object)
    device[rng.random(n) < 0.15] = None
    tx = pd.DataFrame(
        {
            "transaction_id": rng.permutation(np.arange(1, n + 1)) * 7 + 3,
            "user_id": rng.integers(1, users + 1, n),
            "merchant_id": rng.integers(1, 8, n),
            "device_id": device,
            "event_time": start + offsets.astype("timedelta64[us]"),
            # whole cents, repeated values (a std of 0) and wide ones
            "amount": np.where(rng.random(n) < 0.2, 25.0, np.round(rng.lognormal(3, 1.2, n), 2)),
        }
    )
    picked = rng.choice(n, n // 15, replace=False)
    delays = rng.integers(0, 3 * 24 * 60, picked.size) * MINUTE_US
    cb = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].to_numpy()[picked],
            "reported_at": tx["event_time"].to_numpy()[picked] + delays.astype("timedelta64[us]"),
        }
    )
    users_frame = pd.DataFrame(
        {"user_id": np.arange(1, users), "created_at": start - rng.integers(1, 400, users - 1).astype("timedelta64[D]")}
    )
    return tx, cb, users_frame


def sql_features(tx, cb, users, sql: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        for name, frame in (("transactions", tx), ("chargebacks", cb), ("users", users)):
            con.register(f"{name}_frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
        return con.execute(sql).df()


@pytest.mark.parametrize("seed", [0, 1])
def test_sql_equals_the_oracle_on_a_device_spec(seed):
    spec = device_spec()
    tx, cb, users = make_device_history(seed)
    frame = sql_features(tx, cb, users, transaction_features_sql(spec=spec))
    assert len(frame) == len(tx)
    mismatches = compare_features(
        recompute_features(tx, cb, users, spec=spec), frame[["transaction_id", *spec.names]], spec=spec
    )
    assert mismatches.empty, mismatches.head(20).to_string()


def test_device_features_follow_the_absence_rules():
    """A NULL device has no device history; aggregates are NULL exactly when their partner is 0."""
    spec = device_spec()
    tx, cb, users = make_device_history(2)
    frame = sql_features(tx, cb, users, transaction_features_sql(spec=spec))
    no_device = frame["device_id"].isna()
    assert no_device.any() and (~no_device).any()
    for f in spec.aggregates:
        if f.key in ("device", "user_device"):
            expected = 0 if f.kind == "count" else None
            values = frame.loc[no_device, f.name]
            assert (values == 0).all() if expected == 0 else values.isna().all(), f.name
        if f.partner:
            no_history = frame[f.partner] == 0
            assert frame.loc[no_history, f.name].isna().all(), f.name
            assert frame.loc[~no_history, f.name].notna().all(), f.name
    assert (frame["std_device_amount_1d"].dropna() >= 0).all()
    assert (frame.loc[frame["n_device_tx_1d"] == 1, "std_device_amount_1d"] == 0).all()
    assert frame["n_device_chargebacks_7d"].sum() > 0 and frame["n_device_users_1d"].max() > 1


def test_the_oracle_catches_a_device_window_that_includes_the_present():
    spec = device_spec()
    tx, cb, users = make_device_history(3)
    leaky = transaction_features_sql(spec=spec).replace("AND 1 PRECEDING", "AND CURRENT ROW")
    frame = sql_features(tx, cb, users, leaky)
    mismatches = compare_features(
        recompute_features(tx, cb, users, spec=spec), frame[["transaction_id", *spec.names]], spec=spec
    )
    assert {"n_device_tx_1h", "max_device_amount_1d", "n_devices_7d"} <= set(mismatches["feature"])


def test_the_oracle_catches_device_chargebacks_counted_at_transaction_time():
    spec = device_spec()
    tx, cb, users = make_device_history(4)
    leaky = transaction_features_sql(spec=spec).replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts")
    frame = sql_features(tx, cb, users, leaky)
    mismatches = compare_features(
        recompute_features(tx, cb, users, spec=spec), frame[["transaction_id", *spec.names]], spec=spec
    )
    assert "n_device_chargebacks_7d" in set(mismatches["feature"])


def test_the_oracle_reads_string_keys_and_ids():
    """String transaction ids and user ids (a foreign data set's) go through the oracle and the SQL alike."""
    spec = device_spec()
    tx, cb, users = make_device_history(5, n=400)
    tx["transaction_id"] = "t-" + tx["transaction_id"].astype(str)
    cb["transaction_id"] = "t-" + cb["transaction_id"].astype(str)
    tx["user_id"] = "C" + tx["user_id"].astype(str)
    users["user_id"] = "C" + users["user_id"].astype(str)
    frame = sql_features(tx, cb, users, transaction_features_sql(spec=spec))
    expected = recompute_features(tx, cb, users, spec=spec)
    mismatches = compare_features(expected, frame[["transaction_id", *spec.names]], spec=spec)
    assert mismatches.empty, mismatches.head(20).to_string()
    assert expected["account_age_days"].notna().any()


@pytest.mark.parametrize("seed", [0, 6])
def test_engine_equals_the_oracle_on_a_device_spec(seed):
    from fraud_pipeline.features.table import transaction_features_table

    spec = device_spec()
    tx, cb, users = make_device_history(seed)
    with duckdb.connect() as con:
        for name, frame in (("transactions", tx), ("chargebacks", cb), ("users", users)):
            con.register(f"{name}_frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
        frame = transaction_features_table(con, spec=spec).to_pandas()
    mismatches = compare_features(
        recompute_features(tx, cb, users, spec=spec), frame[["transaction_id", *spec.names]], spec=spec
    )
    assert mismatches.empty, mismatches.head(20).to_string()


def test_pandas_reference_equals_the_oracle_on_a_device_spec():
    from fraud_pipeline.features.pandas_reference import pandas_features

    spec = device_spec()
    tx, cb, users = make_device_history(7)
    compared = [f.name for f in spec.features if f.history or f.derive == "account_age_days"]
    expected = recompute_features(tx, cb, users, spec=spec)[["transaction_id", *compared]]
    actual = pandas_features(tx, cb, users, spec=spec)[["transaction_id", *compared]]
    only = FeatureSpec.from_dict(
        {**DEVICE_SPEC, "attributes": [a for a in DEVICE_SPEC["attributes"] if a["name"] == "account_age_days"]}
    )
    mismatches = compare_features(expected, actual, rel_tol=1e-7, spec=only)
    assert mismatches.empty, mismatches.head(20).to_string()


def test_pandas_reference_equals_the_oracle_on_the_default_spec():
    from fraud_pipeline.features.pandas_reference import pandas_features
    from fraud_pipeline.features.spec import default_spec

    tx, cb, users = make_device_history(8, n=800)
    tx["channel"], tx["mcc"], tx["country"] = "ecommerce", "5411", "R1"
    spec = default_spec()
    expected = recompute_features(tx, cb, users, spec=spec)
    actual = pandas_features(tx, cb, users, spec=spec)
    history = [f.name for f in spec.features if f.history or f.derive == "account_age_days"]
    merged = expected[["transaction_id", *history]].merge(actual, on="transaction_id", suffixes=("", "_pandas"))
    for name in history:
        a, b = merged[name].astype(float), merged[f"{name}_pandas"].astype(float)
        assert (a.isna() == b.isna()).all(), name
        assert np.allclose(a[a.notna()], b[b.notna()], rtol=1e-7, atol=0), name
