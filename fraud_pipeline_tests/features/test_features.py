"""Point-in-time features: the engine and the portable SQL equal a naive per-row recomputation, absence stays NULL."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.features import catalog as features_module
from fraud_pipeline.features import engine as feature_engine
from fraud_pipeline.features.catalog import FEATURE_NAMES, FEATURES
from fraud_pipeline.features.oracle import compare_features, recompute_features
from fraud_pipeline.features.spec import default_spec
from fraud_pipeline.features.sql import transaction_features_sql
from fraud_pipeline.features.table import transaction_features_table

MINUTE_US = 60 * 10**6


def make_history(seed: int, n: int = 2_000, users: int = 30, merchants: int = 15, days: int = 40):
    """A small random history at minute resolution, so ties and same-time chargebacks happen."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-01-01T00:00:00", "us")
    offsets = rng.integers(0, days * 24 * 60, n) * MINUTE_US
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(1, n + 1),
            "user_id": rng.integers(1, users + 1, n),
            "merchant_id": rng.integers(1, merchants + 1, n),
            "event_time": start + offsets.astype("timedelta64[us]"),
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "channel": rng.choice(["card_present", "ecommerce"], n),
            "mcc": rng.choice(["5411", "5812"], n),
            "country": "R1",
        }
    )
    picked = rng.choice(n, n // 40, replace=False)
    delays = rng.integers(0, 20 * 24 * 60, picked.size) * MINUTE_US
    cb = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"].to_numpy()[picked],
            "reported_at": tx["event_time"].to_numpy()[picked] + delays.astype("timedelta64[us]"),
        }
    )
    # one user is unknown to the users table: account age must be NULL, not 0
    users_frame = pd.DataFrame(
        {
            "user_id": np.arange(1, users),
            "created_at": start - rng.integers(1, 400, users - 1).astype("timedelta64[D]"),
        }
    )
    return tx, cb, users_frame


def build(tx, cb, users, sql=None):
    """The pipeline's engine on these records, or the given SQL statement (e.g. the portable SQL)."""
    con = duckdb.connect()
    con.register("tx", tx)
    con.register("cb", cb)
    con.register("u", users)
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb")
    con.execute("CREATE TABLE users AS SELECT * FROM u")
    if sql is None:
        return transaction_features_table(con).to_pandas()
    return con.execute(sql).df()


def assert_equals_oracle(tx, cb, users, frame):
    mismatches = compare_features(recompute_features(tx, cb, users), frame[["transaction_id", *FEATURE_NAMES]])
    assert mismatches.empty, mismatches.head(20).to_string()


@pytest.mark.parametrize("engine", ["engine", "sql"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_equal_naive_recomputation(seed, engine):
    tx, cb, users = make_history(seed)
    assert_equals_oracle(
        tx, cb, users, build(tx, cb, users, None if engine == "engine" else transaction_features_sql())
    )


def test_engine_handles_ids_that_are_not_small_and_amounts_finer_than_cents():
    tx, cb, users = make_history(3)
    tx["user_id"] = tx["user_id"] * 10**15 - 5 * 10**15  # negative and huge: re-numbered internally
    users["user_id"] = users["user_id"] * 10**15 - 5 * 10**15
    tx["merchant_id"] = -tx["merchant_id"]
    tx["amount"] = tx["amount"] + 1e-4  # not whole cents: summed in extended precision
    assert_equals_oracle(tx, cb, users, build(tx, cb, users))


def test_engine_refuses_rows_out_of_time_order():
    with pytest.raises(ValueError, match="time order"):
        feature_engine.history_features(
            default_spec(),
            {"user_id": np.array([1, 1]), "merchant_id": np.array([1, 1]), "amount": np.array([1.0, 2.0])},
            np.array([5, 4]),
            {"user_id": np.array([], dtype=np.int64), "merchant_id": np.array([], dtype=np.int64)},
            np.array([], dtype=np.int64),
        )


def test_engine_on_no_rows_gives_every_column_empty():
    tx, cb, users = make_history(0)
    frame = build(tx.iloc[0:0], cb.iloc[0:0], users)
    assert list(frame.columns) == ["transaction_id", "user_id", "merchant_id", "event_time", *FEATURE_NAMES]
    assert frame.empty


def test_oracle_catches_an_engine_window_that_includes_the_present(monkeypatch):
    tx, cb, users = make_history(4)

    def inclusive(self, width):  # rows at the same microsecond, the row itself included, count as earlier
        found = np.empty(len(self.keys), dtype=np.int64)
        for lo, hi in self.chunks:
            found[lo:hi] = np.searchsorted(self.keys[lo:hi], self.keys[lo:hi] - width, side="right") + lo
        return found

    monkeypatch.setattr(feature_engine.KeyedStream, "window_start", inclusive)
    mismatches = compare_features(
        recompute_features(tx, cb, users), build(tx, cb, users)[["transaction_id", *FEATURE_NAMES]]
    )
    assert {"n_prior_tx_1h", "sum_amount_30d", "n_merchant_tx_30d", "n_prior_user_merchant_tx_30d"} <= set(
        mismatches["feature"]
    )


def test_oracle_catches_a_sql_window_that_includes_the_present():
    tx, cb, users = make_history(4)
    expected = recompute_features(tx, cb, users)
    leaky_frames = transaction_features_sql().replace("AND 1 PRECEDING", "AND CURRENT ROW")
    mismatches = compare_features(expected, build(tx, cb, users, leaky_frames)[["transaction_id", *FEATURE_NAMES]])
    assert {"n_prior_tx_1h", "sum_amount_30d", "n_merchant_tx_30d", "n_prior_user_merchant_tx_30d"} <= set(
        mismatches["feature"]
    )


def test_oracle_catches_chargebacks_counted_at_transaction_time():
    tx, cb, users = make_history(5)
    leaky = transaction_features_sql().replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts")
    mismatches = compare_features(
        recompute_features(tx, cb, users), build(tx, cb, users, leaky)[["transaction_id", *FEATURE_NAMES]]
    )
    assert "n_prior_chargebacks_30d" in set(mismatches["feature"])
    # the engine's version of the same leak: each chargeback dated at its transaction
    dated_at_transaction = cb.assign(reported_at=cb.merge(tx, on="transaction_id")["event_time"].to_numpy())
    mismatches = compare_features(
        recompute_features(tx, cb, users), build(tx, dated_at_transaction, users)[["transaction_id", *FEATURE_NAMES]]
    )
    assert {"n_prior_chargebacks_30d", "n_merchant_chargebacks_30d"} <= set(mismatches["feature"])


def test_absence_is_null_and_counts_are_true_zeros():
    tx, cb, users = make_history(6)
    frame = build(tx, cb, users)
    by_name = {f.name: f for f in FEATURES}
    for feature in FEATURES:
        if feature.kind == "count":
            assert frame[feature.name].notna().all(), feature.name
            assert (frame[feature.name] >= 0).all()
        if feature.partner:
            no_history = frame[feature.partner] == 0
            assert frame.loc[no_history, feature.name].isna().all(), feature.name
            assert frame.loc[~no_history, feature.name].notna().all(), feature.name
    assert by_name["account_age_days"].kind == "aggregate"
    unknown_user = frame["user_id"] == 30
    assert frame.loc[unknown_user, "account_age_days"].isna().all()
    assert frame.loc[~unknown_user, "account_age_days"].notna().all()
    first_tx = frame.sort_values("event_time").groupby("user_id").head(1)
    assert (first_tx["n_prior_tx_30d"] == 0).all()
    assert first_tx["seconds_since_prev_tx"].isna().all()


def test_same_microsecond_transactions_do_not_see_each_other():
    tx, cb, users = make_history(7, n=10)
    tx["user_id"] = 1
    tx["event_time"] = tx["event_time"].iloc[0]
    frame = build(tx, cb.iloc[0:0], users)
    assert (frame["n_prior_tx_30d"] == 0).all() and (frame["n_prior_user_merchant_tx_30d"] == 0).all()
    assert frame["mean_amount_30d"].isna().all()


def test_time_since_previous_skips_transactions_at_the_same_microsecond():
    tx, cb, users = make_history(8, n=6)
    tx["user_id"] = 1
    start = pd.Timestamp("2025-01-05")
    tx["event_time"] = [
        start,
        start + pd.Timedelta(minutes=5),
        start + pd.Timedelta(minutes=5),
        start + pd.Timedelta(minutes=5),
        start + pd.Timedelta(minutes=7),
        start + pd.Timedelta(minutes=7),
    ]
    frame = build(tx, cb.iloc[0:0], users).sort_values("transaction_id")
    assert frame["seconds_since_prev_tx"].tolist()[1:] == [300.0, 300.0, 300.0, 120.0, 120.0]
    assert frame["n_prior_tx_30d"].tolist() == [0, 1, 1, 1, 4, 4]
    mismatches = compare_features(
        recompute_features(tx, cb.iloc[0:0], users), frame[["transaction_id", *FEATURE_NAMES]]
    )
    assert mismatches.empty, mismatches.to_string()


def test_catalog_is_consistent():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.kind in {"count", "aggregate", "attribute"}
        if f.partner:
            assert f.partner in names and next(p for p in FEATURES if p.name == f.partner).kind == "count"
    assert set(features_module.CATEGORICAL_FEATURES) == {"channel", "mcc", "country"}


def test_no_window_looks_further_back_than_the_warm_up():
    from fraud_pipeline.training.assets import WindowConfig

    widest = max(f.window_us for f in default_spec().aggregates)
    assert features_module.HISTORY_DAYS * 86_400 * 10**6 == widest
    design = WindowConfig().design(default_spec().history_days)
    assert design.warmup_days == features_module.HISTORY_DAYS  # unset: the spec's longest window


def test_features_equal_naive_recomputation_on_a_simulated_world():
    from fraud_pipeline.ingestion.simulator import WorldSpec, simulate_world

    world = simulate_world(WorldSpec(n_transactions=3_000, seed=11))
    chargebacks = world.chargebacks[world.chargebacks["reported_at"] < world.transactions["event_time"].max()]
    tx = world.transactions
    assert len(tx) > 2_000
    assert_equals_oracle(tx, chargebacks, world.users, build(tx, chargebacks, world.users))
    assert_equals_oracle(tx, chargebacks, world.users, build(tx, chargebacks, world.users, transaction_features_sql()))


def test_engine_long_bursts_inside_a_short_window():
    """Two hundred rows of one user inside an hour: every count and sum still equals the naive one."""
    tx, cb, users = make_history(9, n=300, days=1)
    tx.loc[:199, "user_id"] = 1
    tx.loc[:199, "event_time"] = pd.Timestamp("2025-01-01 10:00") + pd.to_timedelta(np.arange(200) * 15, unit="s")
    frame = build(tx, cb, users)
    assert frame["n_prior_tx_1h"].max() >= 199
    assert_equals_oracle(tx, cb, users, frame)


def test_engine_in_chunks_of_keys_gives_the_same_values(monkeypatch):
    """Keys whose composite (key, time) integers would overflow are searched a few keys at a time."""
    tx, cb, users = make_history(10)
    monkeypatch.setattr(feature_engine, "_KEY_LIMIT", 2**44)  # two keys per chunk for this 40-day history
    stream = feature_engine.KeyedStream(
        tx["user_id"].to_numpy(), np.sort(tx["event_time"].to_numpy().astype(np.int64)), 30 * 86_400 * 10**6
    )
    assert len(stream.chunks) > 10
    assert_equals_oracle(tx, cb, users, build(tx, cb, users))


def test_storing_reports_the_rows_and_null_shares_the_stored_table_has():
    from fraud_pipeline.features.table import store_transaction_features

    tx, cb, users = make_history(4, n=1_200)
    with duckdb.connect() as con:
        for name, frame in {"transactions": tx, "chargebacks": cb, "users": users}.items():
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")
        stored = store_transaction_features(con)
        shares = con.execute(
            "SELECT "
            + ", ".join(f"avg(CASE WHEN {f.name} IS NULL THEN 1.0 ELSE 0.0 END)" for f in FEATURES)
            + " FROM transaction_features"
        ).fetchall()[0]
        rows = con.execute("SELECT count(*) FROM transaction_features").fetchall()[0][0]
    assert stored["rows"] == rows == len(tx)
    assert stored["null_share"] == pytest.approx(dict(zip([f.name for f in FEATURES], shares)), abs=1e-12)
    assert 0 < stored["null_share"]["mean_amount_1h"] < 1  # the history holds both kinds of row


AMOUNT_FEATURES = [f.name for f in FEATURES if "amount" in f.name and f.name != "amount"]


@pytest.mark.parametrize("extreme", [1e300, 1e18, 123.456789])
@pytest.mark.parametrize("cents", [True, False])
def test_one_extreme_amount_leaves_every_other_users_features_unchanged(extreme, cents):
    """A single huge (or finer than cents) amount changes its own user's later sums and nothing else."""
    tx, cb, users = make_history(12, n=3_000)
    if not cents:
        tx["amount"] = tx["amount"] + 1e-4  # every user summed in extended precision, each on its own
    victim = int(tx["event_time"].argsort().to_numpy()[len(tx) // 3])
    changed = tx.copy()
    changed.loc[victim, "amount"] = extreme
    base = build(tx, cb, users).set_index("transaction_id").sort_index()
    got = build(changed, cb, users).set_index("transaction_id").sort_index()
    user, at = changed.loc[victim, "user_id"], changed.loc[victim, "event_time"]
    row = changed.loc[victim, "transaction_id"]
    others = (got["user_id"] != user) | (got["event_time"] <= at)
    others &= got.index != row
    assert others.sum() > 2_500
    pd.testing.assert_frame_equal(got.loc[others], base.loc[others], check_exact=True)
    later = (got["user_id"] == user) & (got["event_time"] > at) & (got["n_prior_tx_30d"] > 0)
    assert (got.loc[later, "sum_amount_30d"] != base.loc[later, "sum_amount_30d"]).any()
    if extreme == 1e300:
        within = later & (got["event_time"] - at < pd.Timedelta(days=30))
        assert (got.loc[within, "sum_amount_30d"] >= 1e300).all()
