"""The point-in-time checks on a foreign-shaped data set, with its own spec from the feature_spec resource:
the oracle and the future-independence check pass on its clean features and fail on a leak."""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from fraud_pipeline.features.checks import FutureConfig, OracleConfig, features_ignore_the_future, features_match_oracle
from fraud_pipeline.features.leakage import cutoff_kinds, intraday_cutoffs
from fraud_pipeline.features.oracle import strata
from fraud_pipeline.resources import FeatureSpecSettings
from fraud_pipeline_tests.features.test_contracts import FOREIGN_SPEC, foreign_spec, foreign_world


@pytest.fixture(scope="module")
def foreign_raw(tmp_path_factory):
    """The foreign world's raw tables and features (the pipeline's engine), and its spec file."""
    import yaml

    from fraud_pipeline.features.table import store_transaction_features

    folder = tmp_path_factory.mktemp("foreign_leakage")
    (folder / "spec.yaml").write_text(yaml.safe_dump(FOREIGN_SPEC, sort_keys=False))
    tx, cb, users = foreign_world(seed=1, days=70)
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        for name, frame in (("transactions", tx), ("chargebacks", cb), ("users", users)):
            con.register(f"{name}_frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
        store_transaction_features(con, spec=foreign_spec())
    return folder


@pytest.fixture
def warehouse(foreign_raw, tmp_path):
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(foreign_raw / "warehouse.duckdb", path)
    return path, FeatureSpecSettings(path=str(foreign_raw / "spec.yaml"))


def test_the_oracle_passes_on_clean_foreign_features_and_draws_every_key(warehouse):
    path, spec = warehouse
    result = features_match_oracle(config=OracleConfig(), duckdb=DuckDBResource(database=str(path)), feature_spec=spec)
    assert result.passed, result.description
    drawn = result.metadata["drawn_per_part"].value
    assert set(drawn) == {"uniform", *strata(foreign_spec())}
    assert all(n > 0 for n in drawn.values())


def test_the_oracle_fails_on_a_tampered_foreign_feature(warehouse):
    path, spec = warehouse
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE transaction_features SET n_terminal_frauds_7d = n_terminal_frauds_7d + 1")
    result = features_match_oracle(config=OracleConfig(), duckdb=DuckDBResource(database=str(path)), feature_spec=spec)
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.ERROR
    assert set(result.metadata["mismatching_features"].value) == {"n_terminal_frauds_7d"}


def test_the_future_check_passes_on_clean_foreign_features(warehouse):
    path, spec = warehouse
    result = features_ignore_the_future(
        config=FutureConfig(intraday_cutoffs=4), duckdb=DuckDBResource(database=str(path)), feature_spec=spec
    )
    assert result.passed, result.description
    assert result.metadata["compared"].value > 1000


def test_the_future_check_fails_on_foreign_chargebacks_counted_at_transaction_time(warehouse, monkeypatch):
    import fraud_pipeline.features.leakage as leakage
    from fraud_pipeline.features.sql import transaction_features_sql

    path, spec = warehouse

    def leaky(con, transactions="transactions", chargebacks="chargebacks", users="users", spec=None):
        sql = transaction_features_sql(transactions, chargebacks, users, spec=spec)
        return con.sql(sql.replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts")).to_arrow_table()

    with duckdb.connect(str(path)) as con:
        sql = transaction_features_sql(spec=foreign_spec())
        leaked = sql.replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts")
        con.execute(f"CREATE OR REPLACE TABLE transaction_features AS {leaked}")
    monkeypatch.setattr(leakage, "transaction_features_table", leaky)
    result = features_ignore_the_future(
        config=FutureConfig(intraday_cutoffs=0), duckdb=DuckDBResource(database=str(path)), feature_spec=spec
    )
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.ERROR
    assert "n_terminal_frauds_30d" in result.metadata["changed_by_feature"].value


def test_intraday_cutoffs_cover_every_key_of_the_spec(warehouse):
    path, _ = warehouse
    with duckdb.connect(str(path)) as con:
        cuts = intraday_cutoffs(con, 4, seed=0, spec=foreign_spec())
    assert [c["kind"] for c in cuts] == list(cutoff_kinds(foreign_spec()))
    assert all(isinstance(c["key"], str) and c["key"][0] in "CT" for c in cuts)


def test_a_spec_reading_a_column_the_data_lacks_fails_both_checks_in_one_line(warehouse, tmp_path):
    import yaml

    path, _ = warehouse
    wrong = {**FOREIGN_SPEC, "keys": {**FOREIGN_SPEC["keys"], "device": ["device_id"]}}
    wrong["features"] = [
        *FOREIGN_SPEC["features"],
        {"name": "n_device_tx_1h", "key": "device", "window": "1h", "agg": "count"},
    ]
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong, sort_keys=False))
    spec = FeatureSpecSettings(path=str(tmp_path / "wrong.yaml"))
    database = DuckDBResource(database=str(path))
    for result in (
        features_match_oracle(config=OracleConfig(), duckdb=database, feature_spec=spec),
        features_ignore_the_future(config=FutureConfig(), duckdb=database, feature_spec=spec),
    ):
        assert result.passed is False and result.severity == dg.AssetCheckSeverity.ERROR
        error = result.metadata["spec_error"].value
        assert "wrong.yaml:8: keys.device[0]: column 'device_id' is not in the transactions" in error
        assert "\n" not in error and "column 'device_id' is not in the transactions" in result.description
