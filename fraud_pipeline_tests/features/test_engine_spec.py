"""The spec-driven engine: today's values on the default spec, and any key, dtype and agg against brute force.

The brute force below recomputes every feature of a spec row by row, straight from the definition
(rows of the same non-NULL key value with time in [t - w, t); chargebacks on such rows *reported* in
that window), so it shares no code with the engine.
"""

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.features.engine import history_features
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.features.table import history_arrays, transaction_features_table

MINUTE_US = 60 * 10**6
HOUR_US = 60 * MINUTE_US


def frozen_inputs(variant: int, n: int = 20_000):
    """The arrays today's engine was frozen on (the digests below): ties, chargebacks, huge ids, off-cent amounts."""
    rng = np.random.default_rng(100 + variant)
    ts = np.sort(rng.integers(0, 45 * 24 * 60, n)) * MINUTE_US + 1_735_689_600 * 10**6
    user = rng.integers(1, 400, n)
    merchant = rng.integers(1, 60, n)
    amount = np.round(rng.lognormal(3, 1, n), 2)
    if variant == 1:
        user = user * 10**15 - 5 * 10**15
        merchant = -merchant
        amount = amount + 1e-4
        amount[rng.choice(n, 5, replace=False)] = np.nan
    picked = rng.choice(n, n // 40, replace=False)
    cb_ts = ts[picked] + rng.integers(0, 20 * 24 * 60, picked.size) * MINUTE_US
    return user, merchant, ts, amount, user[picked], merchant[picked], cb_ts


#: sha256 (first 16 hex) of values (0 where NULL) and validity of every column, as the engine before the
#: feature spec (commit dd4cf2d) computed them on ``frozen_inputs``: the default spec must give them bit for bit.
FROZEN = {
    "0": {
        "n_prior_tx_1h": "df76b809a76478a6:int64",
        "sum_amount_1h": "fed433e339441678:float64",
        "mean_amount_1h": "61ac2e2f60dfe495:float64",
        "n_prior_tx_1d": "5782bbee4ea310d2:int64",
        "sum_amount_1d": "ba704bcf68471ef8:float64",
        "mean_amount_1d": "4fd14885d3e1bd82:float64",
        "n_prior_tx_7d": "013d32781b1a2a4a:int64",
        "sum_amount_7d": "7ece080f33339377:float64",
        "mean_amount_7d": "f6972076dbb70d18:float64",
        "n_prior_tx_30d": "a66cb527923fa6cf:int64",
        "sum_amount_30d": "964d8eada06af64f:float64",
        "mean_amount_30d": "04c51dd8456a43f3:float64",
        "seconds_since_prev_tx": "a7e66114bd7a9a6f:float64",
        "amount_to_mean_30d": "496043a5353a7bb5:float64",
        "n_prior_chargebacks_30d": "e8e20204915cb313:int64",
        "n_merchant_tx_30d": "92509e686361045f:int64",
        "n_merchant_chargebacks_30d": "eab08e97f165fc05:int64",
        "merchant_chargeback_rate_30d": "e75b202fd6132412:float64",
        "n_prior_user_merchant_tx_30d": "205a37d19334eb6b:int64",
    },
    "1": {
        "n_prior_tx_1h": "4ba81ae40b77a04d:int64",
        "sum_amount_1h": "4e3ea840533d00b5:float64",
        "mean_amount_1h": "a07a786f447c780a:float64",
        "n_prior_tx_1d": "8017ec835e7722ca:int64",
        "sum_amount_1d": "7e6382e9a6ad1741:float64",
        "mean_amount_1d": "7cb67c9f64670372:float64",
        "n_prior_tx_7d": "87f415e642d2d736:int64",
        "sum_amount_7d": "f812232fc8cdde0a:float64",
        "mean_amount_7d": "704b2040f69d595e:float64",
        "n_prior_tx_30d": "443f496b2c758065:int64",
        "sum_amount_30d": "e05ddeeef54cc0bf:float64",
        "mean_amount_30d": "8b1e31fdf7bad83b:float64",
        "seconds_since_prev_tx": "fa9740003325b391:float64",
        "amount_to_mean_30d": "3040b51bf540f5aa:float64",
        "n_prior_chargebacks_30d": "f559dc4636200954:int64",
        "n_merchant_tx_30d": "b566cdfa645f4fc2:int64",
        "n_merchant_chargebacks_30d": "b841b90be699a6ee:int64",
        "merchant_chargeback_rate_30d": "3215d3ec1f66cea9:float64",
        "n_prior_user_merchant_tx_30d": "9a294c105a2d8936:int64",
    },
}


def digest(array) -> str:
    valid = ~np.asarray(array.is_null())
    values = np.where(valid, array.fill_null(0).to_numpy(zero_copy_only=False), 0)
    return hashlib.sha256(values.tobytes() + valid.tobytes()).hexdigest()[:16] + ":" + str(values.dtype)


@pytest.mark.parametrize("variant", [0, 1])
def test_default_spec_gives_todays_values_bit_for_bit(variant):
    computed = history_arrays(*frozen_inputs(variant))
    frozen = FROZEN[str(variant)]
    assert {name: digest(computed[name]) for name in frozen} == frozen


def brute_force(spec: FeatureSpec, columns: dict, ts: np.ndarray, label_columns: dict, label_ts: np.ndarray) -> dict:
    """Every history feature of ``spec``, one row and one feature at a time, from the definitions."""
    n = len(ts)
    out = {f.name: np.full(n, np.nan) for f in spec.aggregates}

    def value_of(column, i):
        value = columns[column][i]
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else value

    for i in range(n):
        for f in spec.aggregates:
            key = spec.keys[f.key]
            mine = [value_of(c, i) for c in key]
            if any(v is None for v in mine):
                earlier = []
                events = 0
            else:
                earlier = [
                    j
                    for j in range(n)
                    if ts[i] - f.window_us <= ts[j] < ts[i] and all(value_of(c, j) == v for c, v in zip(key, mine))
                ]
                events = sum(
                    1
                    for e in range(len(label_ts))
                    if ts[i] - f.window_us <= label_ts[e] < ts[i]
                    and all(label_columns[c][e] is not None and label_columns[c][e] == v for c, v in zip(key, mine))
                )
            values = [value_of(f.of, j) for j in earlier] if f.of else []
            numbers = [float(v) for v in values if v is not None] if f.agg != "distinct" else []
            if f.agg == "count":
                out[f.name][i] = len(earlier)
            elif f.agg == "label_count":
                out[f.name][i] = events
            elif not earlier:
                continue
            elif f.agg == "label_rate":
                out[f.name][i] = events / len(earlier)
            elif f.agg == "sum":
                out[f.name][i] = sum(numbers)
            elif f.agg == "mean":
                out[f.name][i] = sum(numbers) / len(earlier)
            elif f.agg == "max":
                out[f.name][i] = max(numbers) if numbers else np.nan
            elif f.agg == "std":
                mean = sum(numbers) / len(earlier)
                out[f.name][i] = np.sqrt(sum((x - mean) ** 2 for x in numbers) / len(earlier))
            elif f.agg == "distinct":
                out[f.name][i] = len({v for v in values if v is not None})
            elif f.agg == "time_since_previous":
                out[f.name][i] = (ts[i] - max(ts[j] for j in earlier)) / 1e6
            elif f.agg == "ratio_to_mean":
                out[f.name][i] = float(columns[f.of][i]) / (sum(numbers) / len(earlier))
    return out


def assert_engine_equals_brute_force(spec, columns, ts, label_columns, label_ts):
    computed = history_features(spec, columns, ts, label_columns, label_ts)
    expected = brute_force(spec, columns, ts, label_columns, label_ts)
    for f in spec.aggregates:
        column = computed[f.name]
        got = column.values.astype(float)
        if column.valid is not None:
            got = np.where(column.valid, got, np.nan)
        want = expected[f.name]
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{f.name}: NULLs differ"
        both = ~np.isnan(want)
        assert np.allclose(got[both], want[both], rtol=1e-9, atol=1e-9), f"{f.name}: values differ"


DEVICE_SPEC = FeatureSpec.from_dict(
    {
        "version": 1,
        "keys": {"user": ["user_id"], "device": ["device_id"], "device_merchant": ["device_id", "merchant_id"]},
        "attributes": [{"name": "amount", "column": "amount"}],
        "features": [
            {"name": "n_device_tx_1h", "key": "device", "window": "1h", "agg": "count"},
            {"name": "n_device_tx_1d", "key": "device", "window": "1d", "agg": "count"},
            {"name": "n_device_merchants_1d", "key": "device", "window": "1d", "agg": "distinct", "of": "merchant_id"},
            {"name": "max_device_amount_1d", "key": "device", "window": "1d", "agg": "max", "of": "amount"},
            {"name": "std_device_amount_1d", "key": "device", "window": "1d", "agg": "std", "of": "amount"},
            {"name": "device_gap_1d", "key": "device", "window": "1d", "agg": "time_since_previous"},
            {"name": "device_amount_ratio_1d", "key": "device", "window": "1d", "agg": "ratio_to_mean", "of": "amount"},
            {"name": "n_device_chargebacks_1d", "key": "device", "window": "1d", "agg": "label_count"},
            {"name": "device_chargeback_rate_1d", "key": "device", "window": "1d", "agg": "label_rate"},
            {"name": "n_device_merchant_tx_90m", "key": "device_merchant", "window": "90m", "agg": "count"},
            {"name": "n_user_tx_2h", "key": "user", "window": "2h", "agg": "count"},
            {"name": "mean_user_amount_2h", "key": "user", "window": "2h", "agg": "mean", "of": "amount"},
            {"name": "n_user_devices_2h", "key": "user", "window": "2h", "agg": "distinct", "of": "device_id"},
        ],
    }
)


def device_history(seed: int, n: int = 300, strings: bool = False, null_share: float = 0.0):
    """Rows over three days at minute resolution (ties happen) with devices, some NULL, and chargebacks."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 3 * 24 * 60, n)) * MINUTE_US + 1_514_764_800 * 10**6  # 2018-01-01
    device = rng.integers(0, 25, n)
    merchant = rng.integers(0, 8, n)
    user = rng.integers(0, 40, n)
    amount = np.round(rng.lognormal(3, 1, n), 2)
    amount[rng.choice(n, 3, replace=False)] = 50.0  # a few equal values: a std of exactly 0 somewhere
    if strings:
        device = np.array([f"dev-{d:03d}" for d in device], dtype=object)
        merchant = np.array([f"T{m}" for m in merchant], dtype=object)
        user = np.array([f"C{u}" for u in user], dtype=object)
    else:
        device = device.astype(object)
    device[rng.random(n) < null_share] = None
    picked = rng.choice(n, n // 10, replace=False)
    label_ts = ts[picked] + rng.integers(0, 2 * 24 * 60, picked.size) * MINUTE_US
    columns = {"user_id": user, "device_id": device, "merchant_id": merchant, "amount": amount}
    labels = {c: columns[c][picked] for c in ("user_id", "device_id", "merchant_id")}
    return columns, ts, labels, label_ts


@pytest.mark.parametrize(("strings", "null_share"), [(False, 0.0), (True, 0.0), (True, 0.15), (False, 0.15)])
def test_a_new_key_added_by_spec_alone_equals_brute_force(strings, null_share):
    columns, ts, labels, label_ts = device_history(7, strings=strings, null_share=null_share)
    if not strings and not null_share:
        columns["device_id"] = columns["device_id"].astype(np.int64)
        labels["device_id"] = labels["device_id"].astype(np.int64)
    assert_engine_equals_brute_force(DEVICE_SPEC, columns, ts, labels, label_ts)


def test_a_null_key_has_no_history():
    columns, ts, labels, label_ts = device_history(3, null_share=0.3)
    computed = history_features(DEVICE_SPEC, columns, ts, labels, label_ts)
    null = np.array([v is None for v in columns["device_id"]])
    assert null.any()
    assert (computed["n_device_tx_1d"].values[null] == 0).all()
    assert (computed["n_device_chargebacks_1d"].values[null] == 0).all()
    assert not computed["device_chargeback_rate_1d"].valid[null].any()
    assert not computed["n_device_merchants_1d"].valid[null].any()


def test_the_default_spec_equals_brute_force_including_the_new_merchant_windows():
    user, merchant, ts, amount, cb_user, cb_merchant, cb_ts = frozen_inputs(0, n=300)
    columns = {"user_id": user % 20, "merchant_id": merchant % 6, "amount": amount}
    labels = {"user_id": cb_user % 20, "merchant_id": cb_merchant % 6}
    ts = (ts - ts[0]) // 30  # squeeze 45 days into 1.5: the windows overlap
    cb_ts = (cb_ts - cb_ts.min()) // 30
    assert_engine_equals_brute_force(default_spec(), columns, ts, labels, cb_ts)


FOREIGN_SPEC = """\
version: 1
keys:
  customer: [user_id]
  terminal: [merchant_id]
attributes:
  - {name: amount, column: amount}
  - {name: hour_of_day, derive: hour_of_day}
features:
  - {name: n_customer_tx_1d, key: customer, window: 1d, agg: count}
  - {name: mean_customer_amount_1d, key: customer, window: 1d, agg: mean, of: amount}
  - {name: n_terminal_tx_7d, key: terminal, window: 7d, agg: count}
  - {name: n_terminal_frauds_7d, key: terminal, window: 7d, agg: label_count}
  - {name: terminal_risk_7d, key: terminal, window: 7d, agg: label_rate}
"""


def test_a_foreign_shaped_table_goes_through_the_engine(tmp_path):
    """String ids, no channel/mcc/country, 2018 dates, fixed 7-day delays, and a spec without those columns."""
    from fraud_pipeline.features.spec import load_spec

    path = tmp_path / "foreign.yaml"
    path.write_text(FOREIGN_SPEC)
    spec = load_spec(path)
    rng = np.random.default_rng(11)
    n = 250
    event_time = pd.Timestamp("2018-04-01") + pd.to_timedelta(np.sort(rng.integers(0, 20 * 86_400, n)), unit="s")
    tx = pd.DataFrame(
        {
            "transaction_id": [f"tx{i:05d}" for i in range(n)],
            "user_id": [f"C{c}" for c in rng.integers(0, 30, n)],
            "merchant_id": [f"T{t}" for t in rng.integers(0, 10, n)],
            "event_time": event_time,
            "amount": np.round(rng.lognormal(3, 1, n), 2),
        }
    )
    fraud = rng.choice(n, 30, replace=False)
    cb = pd.DataFrame(
        {"transaction_id": tx["transaction_id"].iloc[fraud], "reported_at": event_time[fraud] + pd.Timedelta(days=7)}
    )
    con = duckdb.connect()
    con.register("tx", tx)
    con.register("cb", cb)
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb")
    con.execute("CREATE TABLE users (user_id VARCHAR, created_at TIMESTAMP)")
    frame = transaction_features_table(con, spec=spec).to_pandas()
    assert list(frame.columns) == ["transaction_id", "user_id", "merchant_id", "event_time", *spec.names]
    ordered = tx.sort_values(["event_time", "transaction_id"], ignore_index=True)
    ts = ordered["event_time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    disputed = cb.merge(tx, on="transaction_id")
    expected = brute_force(
        spec,
        {c: ordered[c].to_numpy(dtype=object) for c in ("user_id", "merchant_id")}
        | {"amount": ordered["amount"].to_numpy()},
        ts,
        {c: disputed[c].to_numpy(dtype=object) for c in ("user_id", "merchant_id")},
        disputed["reported_at"].to_numpy().astype("datetime64[us]").astype(np.int64),
    )
    for f in spec.aggregates:
        got = frame[f.name].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(got), np.isnan(expected[f.name])), f.name
        assert np.allclose(np.nan_to_num(got), np.nan_to_num(expected[f.name]), rtol=1e-9), f.name
    assert frame["n_terminal_frauds_7d"].max() > 0  # the 7-day delay makes fraud visible exactly a week later
