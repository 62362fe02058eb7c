"""Tests of the simulated world: determinism, schema, time consistency and the fraud scenarios."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.ingestion.simulator import (
    CHANNELS,
    MCC_CODES,
    NEW_REGION,
    REGIONS,
    SCENARIOS,
    World,
    WorldSpec,
    describe_world,
    simulate_world,
)

SMALL = WorldSpec(n_transactions=40_000, seed=11)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def world() -> World:
    return simulate_world(SMALL)


@pytest.fixture(scope="module")
def labelled(world: World) -> pd.DataFrame:
    """Transactions with their truth and the account age (days) at transaction time."""
    tx = world.transactions.merge(world.truth, on="transaction_id", validate="one_to_one")
    created = world.users.set_index("user_id")["created_at"].reindex(tx["user_id"]).to_numpy()
    return tx.assign(account_age_days=(tx["event_time"].to_numpy() - created) / np.timedelta64(1, "D"))


def _is_str(series: pd.Series) -> bool:
    values = series.dropna()
    return pd.api.types.is_string_dtype(series.dtype) and bool(values.map(type).eq(str).all())


# --- determinism -------------------------------------------------------------------------------


def test_same_spec_gives_identical_frames() -> None:
    spec = WorldSpec(n_transactions=20_000, seed=3)
    first, second = simulate_world(spec), simulate_world(spec)
    for name in ("users", "transactions", "chargebacks", "truth"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), check_exact=True)


def test_different_seed_gives_different_world() -> None:
    first = simulate_world(WorldSpec(n_transactions=20_000, seed=3))
    second = simulate_world(WorldSpec(n_transactions=20_000, seed=4))
    assert not first.transactions["amount"].head(1000).equals(second.transactions["amount"].head(1000))
    assert not first.users["created_at"].equals(second.users["created_at"])


# --- schema and keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "columns"),
    [
        ("users", {"user_id": "int64", "created_at": "datetime64[us]", "region": "str"}),
        (
            "transactions",
            {
                "transaction_id": "int64",
                "user_id": "int64",
                "merchant_id": "int64",
                "event_time": "datetime64[us]",
                "amount": "float64",
                "channel": "str",
                "country": "str",
                "mcc": "str",
            },
        ),
        (
            "chargebacks",
            {"transaction_id": "int64", "reported_at": "datetime64[us]", "reason": "str"},
        ),
        ("truth", {"transaction_id": "int64", "is_fraud": "bool", "scenario": "str"}),
    ],
)
def test_schema(world: World, frame: str, columns: dict[str, str]) -> None:
    df = getattr(world, frame)
    assert list(df.columns) == list(columns)
    for column, dtype in columns.items():
        if dtype == "str":
            assert _is_str(df[column]), column
        else:
            assert str(df[column].dtype) == dtype, column


@pytest.mark.parametrize(
    ("frame", "column", "allowed"),
    [
        ("users", "region", set(REGIONS)),
        ("transactions", "channel", set(CHANNELS)),
        ("transactions", "country", set(REGIONS)),
        ("transactions", "mcc", set(MCC_CODES)),
        ("truth", "scenario", set(SCENARIOS)),
    ],
)
def test_categorical_values(world: World, frame: str, column: str, allowed: set[str]) -> None:
    assert set(getattr(world, frame)[column].dropna()) == allowed


def test_mcc_codes_are_ten_four_digit_codes() -> None:
    assert len(MCC_CODES) == 10
    assert all(len(code) == 4 and code.isdigit() for code in MCC_CODES)


def test_ids_are_unique_and_transactions_sorted(world: World) -> None:
    tx = world.transactions
    assert world.users["user_id"].is_unique
    assert tx["transaction_id"].tolist() == list(range(1, len(tx) + 1))
    assert tx["event_time"].is_monotonic_increasing
    assert world.truth["transaction_id"].equals(tx["transaction_id"])
    assert tx["user_id"].isin(world.users["user_id"]).all()
    assert (tx["amount"] > 0).all()


def test_size_is_near_target(world: World) -> None:
    assert abs(len(world.transactions) / SMALL.n_transactions - 1) < 0.10
    assert len(world.users) == SMALL.user_count
    assert world.transactions["merchant_id"].between(1, SMALL.merchant_count).all()


def test_timestamps_within_bounds(world: World) -> None:
    lo = SMALL.start - timedelta(days=3 * 365)
    hi = SMALL.start + timedelta(days=SMALL.days + 400)
    tx_times = world.transactions["event_time"]
    assert tx_times.min() >= SMALL.start
    assert tx_times.max() < SMALL.start + timedelta(days=SMALL.days)
    for times in (world.users["created_at"], world.chargebacks["reported_at"]):
        assert times.min() >= lo
        assert times.max() < hi


def test_transactions_happen_after_signup(labelled: pd.DataFrame) -> None:
    assert (labelled["account_age_days"] > 0).all()


def test_frames_load_into_duckdb_as_varchar(world: World) -> None:
    con = duckdb.connect()
    tx = world.transactions  # noqa: F841 - read by DuckDB's replacement scan
    con.execute("CREATE TABLE t AS SELECT * FROM tx")
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns").fetchall())
    assert types["channel"] == types["country"] == types["mcc"] == "VARCHAR"
    assert types["event_time"] == "TIMESTAMP"
    truth = world.truth  # noqa: F841
    n_null = con.execute("SELECT count(*) FROM truth WHERE scenario IS NULL").fetchone()[0]
    assert n_null == int((~world.truth["is_fraud"]).sum())


# --- users and traffic -------------------------------------------------------------------------


def test_most_users_exist_before_start_and_new_region_opens_late(world: World) -> None:
    users = world.users
    assert 0.60 <= (users["created_at"] < SMALL.start).mean() <= 0.70
    new_region = users.loc[users["region"] == NEW_REGION, "created_at"]
    assert len(new_region) > 0
    assert new_region.min() >= SMALL.start + timedelta(days=SMALL.new_region_day)


def test_signups_grow_during_period(world: World) -> None:
    created = world.users["created_at"]
    in_period = created[created >= SMALL.start]
    days = (in_period - SMALL.start) / DAY
    first_month, last_month = (days < 30).sum(), (days >= SMALL.days - 30).sum()
    assert last_month > 2 * first_month


def test_campaign_lifts_signups(world: World) -> None:
    days = (world.users["created_at"] - SMALL.start) / DAY
    before = days.between(SMALL.campaign_day - 20, SMALL.campaign_day, inclusive="left").sum()
    during = days.between(SMALL.campaign_day, SMALL.campaign_day + 20, inclusive="left").sum()
    assert during > 1.4 * before


def test_new_account_traffic_share_rises(world: World) -> None:
    shares = list(describe_world(world)["new_account_share_by_month"].values())
    assert len(shares) == 6
    assert shares[-1] > 2 * shares[0]


def test_diurnal_peaks_and_quiet_nights(world: World) -> None:
    hours = world.transactions["event_time"].dt.hour.value_counts()
    assert hours[19] > 5 * hours[3]
    assert hours[12] > 1.3 * hours[10]


def test_users_mostly_pay_familiar_merchants(labelled: pd.DataFrame) -> None:
    genuine = labelled[labelled["scenario"].isna()]
    repeat = genuine.duplicated(["user_id", "merchant_id"]).mean()
    assert repeat > 0.5


# --- fraud scenarios ---------------------------------------------------------------------------


def test_fraud_rate_in_range(world: World) -> None:
    # wider than the default world's ~0.75%: a 40k world holds only a few dozen fraudster accounts
    assert 0.004 <= world.truth["is_fraud"].mean() <= 0.013


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_present(world: World, scenario: str) -> None:
    truth = world.truth
    assert (truth["scenario"] == scenario).sum() >= 20
    assert truth.loc[truth["scenario"] == scenario, "is_fraud"].all()


def test_scenario_only_on_fraud(world: World) -> None:
    truth = world.truth
    assert truth["scenario"].notna().equals(truth["is_fraud"])


def test_account_takeover_is_large_unfamiliar_and_online(labelled: pd.DataFrame) -> None:
    ato = labelled[labelled["scenario"] == "account_takeover"]
    genuine = labelled[labelled["scenario"].isna()]
    typical = genuine.groupby("user_id")["amount"].median()
    ratio = ato["amount"] / typical.reindex(ato["user_id"]).to_numpy()
    assert ratio.median() > 2.5
    assert (ato["channel"] == "ecommerce").mean() > 0.6
    assert (ato["account_age_days"] >= 60).all()
    paid = pd.MultiIndex.from_frame(genuine[["user_id", "merchant_id"]])
    familiar = pd.MultiIndex.from_frame(ato[["user_id", "merchant_id"]]).isin(paid)
    # never a favourite, though the victim may have paid the merchant once in a while
    assert familiar.mean() < 0.25


def test_card_testing_is_tiny_then_large_ecommerce_bursts(labelled: pd.DataFrame) -> None:
    ct = labelled[labelled["scenario"] == "card_testing"]
    assert (ct["channel"] == "ecommerce").all()
    tiny = ct["amount"].between(0.5, 5.0)
    assert 0.75 <= tiny.mean() <= 0.97
    assert ct.loc[~tiny, "amount"].median() > 100
    per_user = ct.groupby("user_id")["event_time"].agg(["min", "max"])
    assert ((per_user["max"] - per_user["min"]) < pd.Timedelta(hours=6)).mean() > 0.9


def test_compromised_merchants_have_sizeable_fraud_share(labelled: pd.DataFrame) -> None:
    cm = labelled[labelled["scenario"] == "compromised_merchant"]
    windows = cm.groupby("merchant_id")["event_time"].agg(["min", "max"])
    assert 1 <= len(windows) <= 10
    for merchant_id, (lo, hi) in windows.iterrows():
        assert hi - lo <= pd.Timedelta(days=21)
        during = labelled[(labelled["merchant_id"] == merchant_id) & labelled["event_time"].between(lo, hi)]
        assert 0.15 <= during["is_fraud"].mean() <= 0.5


def test_new_account_fraud_concentrates_in_young_accounts(labelled: pd.DataFrame) -> None:
    naf = labelled[labelled["scenario"] == "new_account_fraud"]
    assert (naf["account_age_days"] < SMALL.days).all()
    young = labelled["account_age_days"] < 30
    assert labelled.loc[young, "is_fraud"].mean() > 2 * labelled.loc[~young, "is_fraud"].mean()


@pytest.fixture(scope="module")
def fraudster_world() -> tuple[WorldSpec, pd.DataFrame, set[int], set[int]]:
    """Many fraudsters so that per-user comparisons are stable: the spec, the labelled
    transactions, the fraudsters and the genuine in-period signups."""
    spec = WorldSpec(n_transactions=40_000, seed=5, fraudster_share=0.3, campaign_fraudster_share=0.3)
    w = simulate_world(spec)
    tx = w.transactions.merge(w.truth, on="transaction_id")
    fraudsters = set(tx.loc[tx["scenario"] == "new_account_fraud", "user_id"])
    created = w.users.set_index("user_id")["created_at"]
    genuine_new = set(created.index[created >= spec.start]) - fraudsters
    assert len(fraudsters) > 100
    return spec, tx, fraudsters, genuine_new


def test_new_account_fraudsters_genuine_looking_transactions_match_genuine_users(
    fraudster_world,
) -> None:
    # only their frauds carry a signature; the rest is drawn like any newcomer's traffic
    _, tx, fraudsters, genuine_new = fraudster_world
    by_fraudster = tx[tx["user_id"].isin(fraudsters)]
    their_genuine = by_fraudster[~by_fraudster["is_fraud"]]
    others = tx[tx["user_id"].isin(genuine_new)]
    per_user_fraudster = their_genuine.groupby("user_id")["amount"].median().median()
    per_user_genuine = others.groupby("user_id")["amount"].median().median()
    assert abs(per_user_fraudster / per_user_genuine - 1) < 0.25
    online = tx["channel"].eq("ecommerce").groupby(tx["user_id"]).mean()
    their_online = their_genuine["channel"].eq("ecommerce").groupby(their_genuine["user_id"]).mean()
    assert abs(their_online.mean() - online.reindex(list(genuine_new)).mean()) < 0.1
    assert 0.4 <= by_fraudster["is_fraud"].mean() <= 0.6


def test_new_account_fraud_cashes_out_online_in_resalable_categories(fraudster_world) -> None:
    _, tx, _, genuine_new = fraudster_world
    fraud = tx[tx["scenario"] == "new_account_fraud"]
    others = tx[tx["user_id"].isin(genuine_new)]
    resalable = ["5732", "5817", "5311"]
    # about a third of the frauds are cash-outs, all of them online and resalable
    assert fraud["channel"].eq("ecommerce").mean() > others["channel"].eq("ecommerce").mean() + 0.15
    assert fraud["mcc"].isin(resalable).mean() > others["mcc"].isin(resalable).mean() + 0.15
    typical = tx[~tx["is_fraud"]].groupby("user_id")["amount"].median()

    def ratio(frame: pd.DataFrame) -> pd.Series:
        return frame["amount"] / typical.reindex(frame["user_id"]).to_numpy()

    # a cash-out is 2-4 times the account's typical amount in any category, so over all of the
    # scenario's frauds (70% of them ordinary) the mean ratio moves by half (measured 2.20 vs 1.42)
    assert ratio(fraud).mean() > 1.4 * ratio(others).mean()
    assert ratio(fraud).median() > ratio(others).median()


def test_new_account_cashouts_are_small_at_population_level() -> None:
    spec = WorldSpec(n_transactions=100_000)
    with_cashouts = simulate_world(spec)
    without = simulate_world(WorldSpec(n_transactions=100_000, fraudster_cashout_share=0.0))
    # the same transactions and labels: only the cash-outs' merchant and amount differ
    assert with_cashouts.truth["is_fraud"].equals(without.truth["is_fraud"])
    a, b = with_cashouts.transactions, without.transactions
    changed = (a["merchant_id"] != b["merchant_id"]) | (a["amount"] != b["amount"])
    naf = with_cashouts.truth["scenario"].eq("new_account_fraud")
    assert changed[~naf].sum() == 0
    assert 0.0005 < changed.mean() < 0.002
    assert naf.mean() < 0.004
    channel_shift = a["channel"].eq("ecommerce").mean() - b["channel"].eq("ecommerce").mean()
    assert 0 < channel_shift < 0.002
    mcc_shift = a["mcc"].value_counts(normalize=True) - b["mcc"].value_counts(normalize=True)
    assert mcc_shift.abs().max() < 0.002
    assert abs(a["amount"].mean() / b["amount"].mean() - 1) < 0.005


# --- chargebacks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disputes(world: World, labelled: pd.DataFrame) -> pd.DataFrame:
    return world.chargebacks.merge(
        labelled[["transaction_id", "event_time", "is_fraud"]],
        on="transaction_id",
        validate="one_to_one",
    ).assign(delay_days=lambda d: (d["reported_at"] - d["event_time"]) / DAY)


def test_chargebacks_follow_their_transaction_once(world: World, disputes: pd.DataFrame) -> None:
    assert world.chargebacks["transaction_id"].is_unique
    assert len(disputes) == len(world.chargebacks)
    assert (disputes["delay_days"] >= 1).all()
    assert (disputes["delay_days"] <= SMALL.max_delay_days).all()
    assert (world.chargebacks["reason"] == "fraud").all()
    assert world.chargebacks["reported_at"].is_monotonic_increasing


def test_reporting_delay_is_heavy_tailed(disputes: pd.DataFrame) -> None:
    assert 8 <= disputes["delay_days"].median() <= 25
    assert (disputes["delay_days"] > 90).sum() > 0
    assert (disputes["delay_days"] > 90).mean() < 0.08


def test_most_but_not_all_frauds_are_reported(world: World, disputes: pd.DataFrame) -> None:
    coverage = disputes["is_fraud"].sum() / world.truth["is_fraud"].sum()
    assert 0.8 <= coverage <= 0.94


def test_friendly_fraud_chargebacks_exist(world: World, disputes: pd.DataFrame) -> None:
    friendly = (~disputes["is_fraud"]).sum()
    genuine = (~world.truth["is_fraud"]).sum()
    assert friendly > 0
    assert 0.0002 <= friendly / genuine <= 0.003


def test_some_chargebacks_arrive_after_the_period(world: World) -> None:
    assert (world.chargebacks["reported_at"] >= SMALL.start + timedelta(days=SMALL.days)).any()


# --- summary and validation --------------------------------------------------------------------


def test_describe_world_matches_frames(world: World) -> None:
    summary = describe_world(world)
    assert summary["n_transactions"] == len(world.transactions)
    assert summary["n_frauds"] == int(world.truth["is_fraud"].sum())
    assert sum(summary["frauds_by_scenario"].values()) == summary["n_frauds"]
    assert summary["n_chargebacks"] == len(world.chargebacks)
    assert summary["delay_days_median"] <= summary["delay_days_p95"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 20},
        {"n_transactions": 10},
        {"mature_user_share": 1.0},
        {"max_delay_days": 500},
        {"fraudster_cashout_share": 1.5},
    ],
)
def test_invalid_spec_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WorldSpec(**kwargs)
