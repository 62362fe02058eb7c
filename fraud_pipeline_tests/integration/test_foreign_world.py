"""A differently shaped data set end to end: string ids, no optional columns, 2018, fixed 7-day chargebacks.

The foreign data set (``fraud_pipeline_tests/foreign_world.py``) is written as day folders, landed
with ``ingest`` and run with ``run`` given only its spec file and the window options it needs: no
code edit, no setting beyond the command line.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from fraud_pipeline.cli.main import main
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.deployment.serving import ScoringModels, parse_new_transactions_sql, score_new_transactions
from fraud_pipeline.features.spec import FeatureSpec, load_spec
from fraud_pipeline.ingestion.known_tables import build_known_tables
from fraud_pipeline.ingestion.landing import land_day
from fraud_pipeline.lib.policy import policy_of
from fraud_pipeline.lib.schema import encode_id
from fraud_pipeline_tests.foreign_world import ForeignSpec, generate, write_day_folders

SPEC = Path(__file__).resolve().parents[1] / "foreign_spec.yaml"
#: The windows the 82 days allow: a 30-day feature warm-up, then 21 + 14 + 14 days before the 7-day horizon.
WINDOW_OPTIONS = ["--train-days", "21", "--validation-days", "14", "--test-days", "14", "--min-train-days", "14"]


@pytest.fixture(scope="module")
def world():
    return generate(ForeignSpec())


def test_the_generator_is_deterministic_and_shaped_unlike_the_built_in_world(world):
    again = generate(ForeignSpec())
    assert again.transactions.equals(world.transactions) and again.chargebacks.equals(world.chargebacks)
    other = generate(ForeignSpec(seed=19))
    assert not other.transactions["amount"].equals(world.transactions["amount"])
    tx = world.transactions
    assert tx["event_time"].min().year == 2018
    assert {"channel", "mcc", "country"}.isdisjoint(tx.columns) and "device_id" in tx.columns
    assert tx["user_id"].str.startswith("CU-").all() and tx["merchant_id"].str.startswith("TM-").all()
    delays = world.chargebacks.merge(tx, on="transaction_id")
    assert ((delays["reported_at"] - delays["event_time"]) == timedelta(days=7)).all()
    assert len(world.chargebacks) == int(tx["is_fraud"].sum())
    assert "created_at" not in world.customers.columns
    # most payments at a compromised terminal during its compromise are fraud
    terminal, first, last = world.compromises[0]
    at = tx[(tx["merchant_id"] == terminal) & tx["event_time"].dt.date.between(first, last)]
    assert at["is_fraud"].mean() > 0.6
    assert set(tx.loc[tx["is_fraud"] == 1, "scenario"]) == {"terminal_compromise", "device_takeover"}


def test_parquet_day_folders_land_the_same_rows_as_csv(world, tmp_path):
    tables = {}
    for file_format in ("csv", "parquet"):
        out = tmp_path / file_format
        write_day_folders(world, out, file_format)
        with duckdb.connect() as con:
            for folder in sorted(out.iterdir())[:10]:
                land_day(con, date.fromisoformat(folder.name), folder)
            build_known_tables(con, __import__("datetime").datetime(2018, 4, 11))
            tables[file_format] = {
                name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
                for name in ("transactions", "chargebacks", "users")
            }
    assert tables["csv"] == tables["parquet"]
    assert len(tables["csv"]["transactions"]) > 1000


def test_the_foreign_data_set_lands_and_deploys_with_only_its_spec_file(world, tmp_path, monkeypatch, capsys):
    data, folder = tmp_path / "data", tmp_path / "incoming"
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
    monkeypatch.delenv("FRAUD_PIPELINE_SOURCE", raising=False)
    written = write_day_folders(world, folder)
    newest = max(p.name for p in folder.iterdir())
    with dg.instance_for_test():
        assert main(["ingest", "--folder", str(folder)]) == 0
        out = capsys.readouterr().out
        rows = len(world.transactions) + len(world.chargebacks) + len(world.customers)
        assert f"rows in {rows}, loaded {rows}, quarantined 0" in out, out
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            landed = con.execute(
                "SELECT count(*), count(DISTINCT transaction_id_original), count(device_id) FROM landing_transactions"
            ).fetchone()
            assert con.execute("SELECT count(*) FROM landing_files").fetchone()[0] == sum(written.values())
        assert landed == (len(world.transactions), len(world.transactions), world.transactions["device_id"].count())

        code = main(["run", "--source", "files", "--folder", str(folder), "--spec", str(SPEC), *WINDOW_OPTIONS])
        out = capsys.readouterr().out
    as_of = (date.fromisoformat(newest) + timedelta(days=1)).isoformat()
    assert f"as_of {as_of}" in out, "files mode runs the day after the newest landed folder"
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        accounting = con.execute(
            "SELECT kind, rows_in, rows_loaded, quarantined_in_file + quarantined_across_files FROM ingestion_accounting"
        ).fetchall()
        first = world.transactions.iloc[0]
        kept = con.execute(
            "SELECT transaction_id, user_id, merchant_id, device_id FROM transactions WHERE transaction_id_original = ?",
            [first["transaction_id"]],
        ).fetchone()
    assert all(rows_in == loaded and quarantined == 0 for _, rows_in, loaded, quarantined in accounting), accounting
    assert kept == (
        encode_id(first["transaction_id"]),
        encode_id(first["user_id"]),
        encode_id(first["merchant_id"]),
        first["device_id"],
    )
    assert code == 0, out
    assert "champion is now" in out, out
    assert not re.search(r"FAIL(?! \(WARN\))", out), out
    _the_champion_serves_by_its_spec(data, world)


def _the_champion_serves_by_its_spec(data: Path, world) -> None:
    """The bundle records the foreign spec, its cohorts are the ones the data has, and it scores string-id rows."""
    store = ModelRegistryStore(data / "registry")
    bundle = store.scoring_bundle(store.champion()["version"])
    assert FeatureSpec.from_dict(bundle["feature_spec"]) == load_spec(SPEC)
    assert bundle["unavailable_history_policy"]["fallback_features"] == ["amount", "hour_of_day"]
    assert {r["cohort"] for r in bundle["evaluation"]["cohorts"]} == {"account_age"}
    # the spec reads no cohort column (no channel, country or account age), so the policy is one threshold
    assert policy_of(bundle).is_single and policy_of(bundle["fallback"]).is_single
    assert policy_of(bundle).global_threshold == bundle["threshold"]
    assert load_spec(SPEC).digest() in (store.root / "models" / bundle["version"] / "MODEL_CARD.md").read_text()
    models = ScoringModels.from_candidate(bundle)
    rows = world.transactions.tail(50).assign(
        event_time=lambda f: f["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), amount=lambda f: f["amount"].astype(str)
    )[["transaction_id", "user_id", "merchant_id", "event_time", "amount", "device_id"]]
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("incoming", rows.astype(object))
        types = dict.fromkeys(rows.columns, "VARCHAR")
        con.execute(f"CREATE TEMP TABLE new_rows AS {parse_new_transactions_sql('incoming', types, models.spec)}")
        decisions = score_new_transactions(con, "new_rows", models)
    assert len(decisions) == 50 and (decisions["route"] == "main").all(), decisions["reason"].value_counts()


def test_the_cohort_splits_of_a_data_set_without_channel_and_country():
    from fraud_pipeline.evaluation.cohorts import cohorts_of
    from fraud_pipeline.evaluation.metrics import DEFAULT_COHORTS

    assert cohorts_of(["account_age_days", "channel", "country", "amount"], DEFAULT_COHORTS) == DEFAULT_COHORTS
    assert [c.name for c in cohorts_of(["amount", "account_age_days"], DEFAULT_COHORTS)] == ["account_age"]
    assert cohorts_of(["amount", "hour_of_day", "n_device_tx_1h"], DEFAULT_COHORTS) == ()
