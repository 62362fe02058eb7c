"""Data contracts on the raw tables and the quarantine limit; all block everything downstream."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.ingestion.known_tables import judge_quarantine, read_accounting
from fraud_pipeline.ingestion.rules import (
    chargeback_rules,
    evaluate_rules,
    transaction_rules,
)
from fraud_pipeline.lib.checks import rules_check_result
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.resources import DUCKDB_POOL, DataSource, RunClock


@dg.asset_check(asset="transactions", blocking=True, pool=DUCKDB_POOL)
def transaction_contract(duckdb: DuckDBResource, clock: RunClock) -> dg.AssetCheckResult:
    """Unique ids, non-null keys, positive finite amounts and event times before as_of."""
    with duckdb.get_connection() as con:
        return rules_check_result(evaluate_rules(con, transaction_rules(), clock.as_of_datetime()))


@dg.asset_check(asset="chargebacks", blocking=True, additional_deps=["transactions"], pool=DUCKDB_POOL)
def chargeback_contract(duckdb: DuckDBResource, clock: RunClock) -> dg.AssetCheckResult:
    """Every chargeback refers to a known transaction and is reported at or after it, before as_of."""
    with duckdb.get_connection() as con:
        return rules_check_result(evaluate_rules(con, chargeback_rules(), clock.as_of_datetime()))


@dg.asset_check(asset="transactions", blocking=True, pool=DUCKDB_POOL)
def quarantine_within_limit(duckdb: DuckDBResource, source: DataSource) -> dg.AssetCheckResult:
    """Rows in = rows loaded + rows quarantined for every kind, and no kind's quarantined share exceeds the limit."""
    with duckdb.get_connection() as con:
        accounting = read_accounting(con)
    verdict = judge_quarantine(accounting, source.max_quarantine_share)
    rows = [
        {
            "kind": a.kind,
            "files": a.files,
            "rows_in": a.rows_in,
            "loaded": a.rows_loaded,
            "quarantined_in_file": a.quarantined_in_file,
            "quarantined_across_files": a.quarantined_across_files,
            "share": a.quarantine_share,
            "unaccounted": a.unaccounted,
        }
        for a in accounting
    ]
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.reason,
        metadata={
            "accounting": dg.MetadataValue.md(markdown_table(rows)),
            "max_quarantine_share": source.max_quarantine_share,
            "rows_quarantined": sum(a.rows_quarantined for a in accounting),
        },
    )
