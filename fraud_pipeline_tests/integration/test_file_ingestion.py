"""The file mode through Dagster: the landing partitions, the source switch, the quarantine check and the sensor."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from fraud_pipeline.ingestion.assets import landed_files, raw_tables
from fraud_pipeline.ingestion.checks import (
    chargeback_contract,
    quarantine_within_limit,
    transaction_contract,
)
from fraud_pipeline.ingestion.sensors import new_day_folders
from fraud_pipeline.resources import DataSource, RunClock

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
DAYS = ("2025-03-01", "2025-03-02")


@pytest.fixture
def example_folder(tmp_path) -> Path:
    folder = tmp_path / "incoming"
    shutil.copytree(EXAMPLES, folder)
    return folder


def land(resources, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([landed_files], partition_key=day, resources=resources, raise_on_error=False)


def checks_by_name(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_landing_a_day_shows_the_row_accounting_and_again_is_a_visible_no_op(make_resources, tmp_path, example_folder):
    resources = make_resources(tmp_path / "warehouse", source=DataSource(folder=str(example_folder)))
    first = land(resources, DAYS[0])
    assert first.success
    metadata = first.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["rows_in"].value, metadata["rows_loaded"].value, metadata["rows_quarantined"].value) == (11, 6, 5)
    assert "mixed timezones" in metadata["quarantine_sample"].value
    assert metadata["unchanged_days"].value == []
    again = land(resources, DAYS[0])
    assert again.get_asset_materialization_events()[0].materialization.metadata["unchanged_days"].value == [DAYS[0]]


def test_a_refused_file_fails_the_partition_and_leaves_the_landed_tables_intact(
    make_resources, tmp_path, example_folder
):
    resources = make_resources(tmp_path / "warehouse", source=DataSource(folder=str(example_folder)))
    assert land(resources, DAYS[0]).success
    with resources["duckdb"].get_connection() as con:
        before = con.execute("SELECT * FROM landing_transactions ORDER BY ALL").fetchall()
    (example_folder / DAYS[0] / "users.csv").write_text("user_id,signup\n10,2024-11-02T10:00:00Z\n")
    (example_folder / DAYS[0] / "transactions.csv").write_text("transaction_id,user_id\n")
    failed = land(resources, DAYS[0])
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert "transactions.csv: missing required column(s) merchant_id, event_time, amount" in str(
        failure.event_specific_data.error
    )
    with resources["duckdb"].get_connection() as con:
        assert con.execute("SELECT * FROM landing_transactions ORDER BY ALL").fetchall() == before


def raw_run(resources, *checks) -> dg.ExecuteInProcessResult:
    return dg.materialize([raw_tables, *checks], resources=resources, raise_on_error=False)


def test_files_mode_builds_contract_clean_tables_and_the_quarantine_check_fails_above_its_limit(
    make_resources, tmp_path, example_folder
):
    def resources(limit):
        return make_resources(
            tmp_path / "warehouse",
            clock=RunClock(as_of="2025-03-03"),
            source=DataSource(mode="files", folder=str(example_folder), max_quarantine_share=limit),
        )

    for day in DAYS:
        assert land(resources(0.01), day).success
    strict = raw_run(resources(0.01), quarantine_within_limit, transaction_contract, chargeback_contract)
    checks = checks_by_name(strict)
    assert not checks["quarantine_within_limit"].passed
    assert checks["quarantine_within_limit"].severity == dg.AssetCheckSeverity.ERROR
    assert "transactions: 9 of 13 rows quarantined" in checks["quarantine_within_limit"].description
    assert "chargeback_contract" not in checks, "the blocking check stops what reads the transactions"
    tx = next(e for e in strict.get_asset_materialization_events() if e.asset_key.path == ["transactions"])
    metadata = tx.materialization.metadata
    assert (metadata["rows_in"].value, metadata["rows_loaded"].value, metadata["rows_quarantined"].value) == (13, 4, 9)
    lenient = checks_by_name(
        raw_run(resources(0.9), quarantine_within_limit, transaction_contract, chargeback_contract)
    )
    assert all(
        lenient[name].passed for name in ("quarantine_within_limit", "transaction_contract", "chargeback_contract")
    )


def test_simulated_mode_accounts_every_row_and_passes_the_quarantine_check(make_resources, tmp_path):
    result = raw_run(make_resources(tmp_path / "warehouse"), quarantine_within_limit)
    check = checks_by_name(result)["quarantine_within_limit"]
    assert check.passed, check.description
    assert check.metadata["rows_quarantined"].value == 0
    assert "| transactions | 0 |" in check.metadata["accounting"].value


def test_files_mode_without_landed_days_fails_with_a_clear_message(make_resources, tmp_path):
    result = raw_run(make_resources(tmp_path / "warehouse", source=DataSource(mode="files", folder=str(tmp_path))))
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no landed day folder ended before as_of" in str(failure.event_specific_data.error)


def test_the_sensor_requests_new_and_changed_day_folders_once(example_folder):
    source = DataSource(folder=str(example_folder))
    (example_folder / "not-a-day").mkdir()
    first = new_day_folders(dg.build_sensor_context(resources={"source": source}))
    assert [r.partition_key for r in first.run_requests] == list(DAYS)
    quiet = new_day_folders(dg.build_sensor_context(cursor=first.cursor, resources={"source": source}))
    assert quiet.run_requests == []
    with open(example_folder / DAYS[1] / "chargebacks.csv", "a") as handle:
        handle.write("1,2025-03-02T18:00:00Z,fraud\n")
    changed = new_day_folders(dg.build_sensor_context(cursor=quiet.cursor, resources={"source": source}))
    assert [r.partition_key for r in changed.run_requests] == [DAYS[1]]
    assert changed.run_requests[0].run_key != first.run_requests[1].run_key
