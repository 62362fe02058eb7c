"""Missingness contracts on a foreign-shaped data set (string ids, no channel/mcc/country, 2018, fixed 7-day
chargeback delays, compromised terminals) and the statistics the learned rules rest on."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.features.contracts import (
    ContractSettings,
    bonferroni_z,
    feature_contracts,
    newest_days_reference,
    rate_band,
    split_reference,
)
from fraud_pipeline.features.expectations import validate_contracts
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.features.table import transaction_features_table

DAY = pd.Timedelta(days=1)
FOREIGN_SPEC = {
    "version": 1,
    "keys": {"user": ["user_id"], "merchant": ["merchant_id"]},
    "attributes": [{"name": "amount", "column": "amount"}, {"name": "hour_of_day", "derive": "hour_of_day"}],
    "features": [
        *(
            entry
            for window in ("1d", "7d", "30d")
            for entry in (
                {"name": f"n_customer_tx_{window}", "key": "user", "window": window, "agg": "count"},
                {"name": f"customer_spend_{window}", "key": "user", "window": window, "agg": "sum", "of": "amount"},
                {"name": f"customer_mean_{window}", "key": "user", "window": window, "agg": "mean", "of": "amount"},
                {"name": f"n_terminal_tx_{window}", "key": "merchant", "window": window, "agg": "count"},
                {"name": f"n_terminal_frauds_{window}", "key": "merchant", "window": window, "agg": "label_count"},
                {"name": f"terminal_risk_{window}", "key": "merchant", "window": window, "agg": "label_rate"},
            )
        ),
        {"name": "seconds_since_customer_tx", "key": "user", "window": "30d", "agg": "time_since_previous"},
    ],
}


def foreign_spec() -> FeatureSpec:
    return FeatureSpec.from_dict(FOREIGN_SPEC)


def foreign_world(seed: int = 0, customers: int = 300, terminals: int = 60, days: int = 100):
    """Customers and terminals with string ids over 2018; a few terminals compromised for a week at a time,
    every fraud charged back exactly 7 days later; nothing but ids, times and amounts."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2018-04-01")
    per_day = rng.poisson(0.5, (customers, days))
    customer, day = np.nonzero(per_day)
    customer, day = np.repeat(customer, per_day[customer, day]), np.repeat(day, per_day[customer, day])
    n = len(customer)
    home = rng.integers(0, terminals, (customers, 4))
    terminal = home[customer, rng.integers(0, 4, n)]
    event_time = start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.integers(0, 86_400 * 10**6, n), unit="us")
    compromised = {(int(d // 10), int(t)) for d in range(0, days, 10) for t in rng.integers(0, terminals, 2)}
    hit = np.array([(int(d // 10), int(t)) in compromised for d, t in zip(day, terminal)]) & (rng.random(n) < 0.3)
    fraud = hit | (rng.random(n) < 0.002)
    tx = pd.DataFrame(
        {
            "transaction_id": [f"TX{i:07d}" for i in range(n)],
            "user_id": [f"C{c:05d}" for c in customer],
            "merchant_id": [f"T{t:04d}" for t in terminal],
            "event_time": event_time.astype("datetime64[us]"),
            "amount": np.round(rng.lognormal(3.5, 0.8, n) * np.where(fraud, 2.0, 1.0), 2),
        }
    )
    as_of = start + days * DAY
    frauds = tx[fraud]
    tx = tx.sort_values("event_time", ignore_index=True)
    cb = pd.DataFrame({"transaction_id": frauds["transaction_id"], "reported_at": frauds["event_time"] + 7 * DAY})
    cb = cb[cb["reported_at"] < as_of].reset_index(drop=True)
    users = pd.DataFrame({"user_id": pd.Series([], dtype=str), "created_at": pd.Series([], dtype="datetime64[us]")})
    return tx, cb, users


@pytest.fixture(scope="module")
def foreign_db(tmp_path_factory):
    """A warehouse of the foreign world with its features (the pipeline's engine, the foreign spec) and a
    training set split by date (train, then validation, then test)."""
    path = tmp_path_factory.mktemp("foreign") / "warehouse.duckdb"
    tx, cb, users = foreign_world()
    with duckdb.connect(str(path)) as con:
        for name, frame in (("transactions", tx), ("chargebacks", cb), ("users", users)):
            con.register(f"{name}_frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
        features = transaction_features_table(con, spec=foreign_spec())
        con.register("computed", features)
        con.execute("CREATE TABLE transaction_features AS SELECT * FROM computed")
        con.execute("""
            CREATE TABLE training_set AS
            SELECT CASE WHEN event_time < TIMESTAMP '2018-06-10' THEN 'train'
                        WHEN event_time < TIMESTAMP '2018-06-24' THEN 'validation' ELSE 'test' END AS split, *
            FROM transaction_features WHERE event_time >= TIMESTAMP '2018-05-01' AND event_time < TIMESTAMP '2018-07-01'
        """)
    return path


@pytest.fixture
def foreign(foreign_db, tmp_path):
    """A private copy of the foreign warehouse that a test may corrupt."""
    import shutil

    path = tmp_path / "warehouse.duckdb"
    shutil.copy(foreign_db, path)
    con = duckdb.connect(str(path))
    yield con
    con.close()


def outage(con, table: str, where: str) -> None:
    """History lost for the matching rows and read as none: counts 0, aggregates NULL."""
    sets = ", ".join(f"{f.name} = {'0' if f.kind == 'count' else 'NULL'}" for f in foreign_spec().aggregates)
    con.execute(f"UPDATE {table} SET {sets} WHERE {where}")


NEWEST_WEEK = "event_time >= TIMESTAMP '2018-07-03'"
ACTIVE_FIFTH = "n_customer_tx_30d > 0 AND hash(user_id) % 5 = 0"


def test_the_foreign_world_is_foreign_shaped(foreign):
    columns = {name for name, *_ in foreign.execute("DESCRIBE transaction_features").fetchall()}
    assert not {"channel", "mcc", "country", "account_age_days"} & columns
    assert foreign.execute("SELECT min(event_time) < TIMESTAMP '2019-01-01' FROM transactions").fetchone()[0]
    delays = foreign.execute(
        "SELECT DISTINCT c.reported_at - t.event_time FROM chargebacks c JOIN transactions t USING (transaction_id)"
    ).fetchall()
    assert delays == [(pd.Timedelta(days=7).to_pytimedelta(),)]


def test_clean_foreign_features_and_training_set_pass(foreign):
    spec = foreign_spec()
    outcome = validate_contracts(foreign, "transaction_features", spec=spec)
    assert outcome.success, outcome.failures
    assert outcome.reference["checked_rows"] > 500
    rates = {r["feature"]: r["observed"] for r in outcome.rows if r["rule"] == "missing_rate"}
    assert rates["customer_mean_1d"] > 0.3  # far from the built-in world's: learned, not assumed
    training = validate_contracts(
        foreign, "training_set", spec=spec, reference=split_reference(foreign, "training_set", spec)
    )
    assert training.success, training.failures


def test_a_foreign_outage_read_as_no_history_fails_the_missing_rates(foreign):
    outage(foreign, "transaction_features", f"{NEWEST_WEEK} AND {ACTIVE_FIFTH}")
    outcome = validate_contracts(foreign, "transaction_features", spec=foreign_spec())
    assert not outcome.success
    assert {r["rule"] for r in outcome.failures} == {"missing_rate"}
    assert "customer_mean_30d" in {r["feature"] for r in outcome.failures}


def test_a_foreign_outage_in_the_test_split_fails_the_training_set_contract(foreign):
    spec = foreign_spec()
    outage(foreign, "training_set", f"split = 'test' AND {ACTIVE_FIFTH}")
    outcome = validate_contracts(
        foreign, "training_set", spec=spec, reference=split_reference(foreign, "training_set", spec)
    )
    assert not outcome.success and {r["rule"] for r in outcome.failures} == {"missing_rate"}


@pytest.mark.parametrize(
    "corruption, rule",
    [
        ("UPDATE transaction_features SET customer_mean_7d = 0 WHERE n_customer_tx_7d = 0", "no_sentinel_for_absence"),
        ("UPDATE transaction_features SET n_terminal_tx_1d = NULL WHERE hour_of_day = 3", "not_null"),
        ("UPDATE transaction_features SET amount = NULL WHERE hour_of_day = 3", "not_null"),
        ("UPDATE transaction_features SET terminal_risk_7d = -0.5 WHERE n_terminal_tx_7d > 0", "structural_range"),
        ("UPDATE transaction_features SET amount = amount * 100 WHERE " + NEWEST_WEEK, "value_range"),
    ],
)
def test_foreign_features_fail_each_rule(foreign, corruption, rule):
    foreign.execute(corruption)
    outcome = validate_contracts(foreign, "transaction_features", spec=foreign_spec())
    assert not outcome.success
    assert rule in {r["rule"] for r in outcome.failures}


def test_a_table_too_short_for_a_reference_gets_a_verdict_not_a_traceback(foreign):
    foreign.execute("DELETE FROM transaction_features WHERE event_time < TIMESTAMP '2018-06-20'")
    outcome = validate_contracts(foreign, "transaction_features", spec=foreign_spec())
    assert not outcome.success
    assert outcome.problem.startswith("no reference rows: transaction_features spans 2018-06-20 to 2018-07-09")
    foreign.execute("DELETE FROM transaction_features")
    empty = validate_contracts(foreign, "transaction_features", spec=foreign_spec())
    assert not empty.success and empty.problem == "transaction_features is empty"


def test_a_spec_feature_the_table_lacks_is_a_named_failure(foreign):
    foreign.execute("ALTER TABLE transaction_features DROP COLUMN terminal_risk_1d")
    outcome = validate_contracts(foreign, "transaction_features", spec=foreign_spec())
    assert [(r["rule"], r["feature"]) for r in outcome.failures] == [("column_present", "terminal_risk_1d")]


def test_the_reference_is_read_off_the_table_not_the_clock(foreign):
    spec = foreign_spec()
    reference = newest_days_reference(foreign, "transaction_features", spec, checked_days=7)
    assert reference.params["checked_start"] == pd.Timestamp("2018-07-03").to_pydatetime()
    first = foreign.execute("SELECT min(event_time) FROM transaction_features").fetchone()[0]
    assert reference.params["reference_start"] == first + pd.Timedelta(days=spec.history_days).to_pytimedelta()


def test_the_band_narrows_with_the_sample_and_never_vanishes():
    z = bonferroni_z(40, 0.01)
    small = rate_band(10, 50, 10, 20, 0.0, z)
    large = rate_band(10_000, 50_000, 4_000, 20_000, 0.0, z)
    assert small[0] == large[0] == 0.2
    assert small[2] - small[1] > large[2] - large[1] > 0
    # a reference share of exactly 0 still leaves a band of its sample size
    zero = rate_band(0, 30, 0, 30, 0.0, z)
    assert zero[1] == 0.0 and zero[2] > 0.05
    assert rate_band(0, 10**7, 0, 10**7, 0.05, z)[2] == pytest.approx(0.05, abs=1e-3)


def test_bonferroni_keeps_the_family_wise_false_alarm():
    assert bonferroni_z(1, 0.05) == pytest.approx(1.959964, abs=1e-5)
    assert bonferroni_z(50, 0.01) > bonferroni_z(10, 0.01) > bonferroni_z(1, 0.01)
    # the tail beyond z on both sides, times the rules, is the false-alarm rate
    assert 50 * math.erfc(bonferroni_z(50, 0.01) / math.sqrt(2)) == pytest.approx(0.01)


def test_the_contracts_derive_from_the_spec():
    by_name = {c.feature: c for c in feature_contracts(default_spec())}
    assert not by_name["n_prior_tx_1h"].nullable and by_name["n_prior_tx_1h"].bound_sql
    assert by_name["mean_amount_7d"].partner == "n_prior_tx_7d" and by_name["mean_amount_7d"].numeric_range
    assert by_name["channel"].nullable and not by_name["channel"].numeric_range
    assert by_name["seconds_since_prev_tx"].bound_text == "in (0, 2.592e+06] seconds"
    assert not by_name["merchant_chargeback_rate_7d"].numeric_range  # fraud pressure moves it on purpose
    foreign = {c.feature for c in feature_contracts(foreign_spec())}
    assert "channel" not in foreign and "terminal_risk_1d" in foreign
    assert ContractSettings().checked_days == 7


def _spec_file(tmp_path) -> str:
    import yaml

    path = tmp_path / "foreign_spec.yaml"
    path.write_text(yaml.safe_dump(FOREIGN_SPEC, sort_keys=False))
    return str(path)


def test_the_contract_checks_take_the_runs_spec_and_pass_on_clean_foreign_tables(foreign, tmp_path):
    """The asset checks as the pipeline runs them, with the spec from the feature_spec resource."""
    from dagster_duckdb import DuckDBResource

    from fraud_pipeline.features.checks import (
        ContractConfig,
        feature_missingness_contract,
        training_set_missingness_contract,
    )
    from fraud_pipeline.resources import FeatureSpecSettings

    foreign.close()
    database = DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))
    spec = FeatureSpecSettings(path=_spec_file(tmp_path))
    for check in (feature_missingness_contract, training_set_missingness_contract):
        result = check(config=ContractConfig(), duckdb=database, feature_spec=spec)
        assert result.passed, result.description
    # with the built-in spec instead, the same table lacks the spec's features: a named failure
    wrong = feature_missingness_contract(config=ContractConfig(), duckdb=database, feature_spec=FeatureSpecSettings())
    assert not wrong.passed and "column_present" in wrong.metadata["failed_rules"].value


def test_the_contract_check_blocks_a_foreign_outage(foreign, tmp_path):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from fraud_pipeline.features.checks import ContractConfig, feature_missingness_contract
    from fraud_pipeline.resources import FeatureSpecSettings

    outage(foreign, "transaction_features", f"{NEWEST_WEEK} AND {ACTIVE_FIFTH}")
    foreign.close()
    result = feature_missingness_contract(
        config=ContractConfig(),
        duckdb=DuckDBResource(database=str(tmp_path / "warehouse.duckdb")),
        feature_spec=FeatureSpecSettings(path=_spec_file(tmp_path)),
    )
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["failed_rules"].value == ["missing_rate"]
    assert all(spec.blocking for spec in feature_missingness_contract.check_specs)


def test_a_bad_spec_file_fails_the_contract_check_in_one_line(foreign, tmp_path):
    from dagster_duckdb import DuckDBResource

    from fraud_pipeline.features.checks import ContractConfig, feature_missingness_contract
    from fraud_pipeline.resources import FeatureSpecSettings

    foreign.close()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nkeys: {user: [user_id]}\nattributes: []\nfeatures:\n  - {name: x, key: card, window: 1h, agg: count}\n"
    )
    result = feature_missingness_contract(
        config=ContractConfig(),
        duckdb=DuckDBResource(database=str(tmp_path / "warehouse.duckdb")),
        feature_spec=FeatureSpecSettings(path=str(bad)),
    )
    assert result.passed is False
    assert result.metadata["spec_error"].value.endswith(
        "bad.yaml:5: features[0].key: unknown key 'card' (declared: user)"
    )
