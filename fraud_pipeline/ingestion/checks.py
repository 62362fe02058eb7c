"""Data contracts on the raw tables; both block everything downstream."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.checks_common import rules_check_result
from fraud_pipeline.core.contracts import chargeback_rules, evaluate_rules, transaction_rules
from fraud_pipeline.resources import DUCKDB_POOL, RunClock


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
