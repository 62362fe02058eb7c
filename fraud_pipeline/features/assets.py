"""Features: point-in-time transaction features, read from and stored in DuckDB."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.features import FEATURES, store_transaction_features
from fraud_pipeline.core.warehouse import fetch_records
from fraud_pipeline.resources import DUCKDB_POOL


def null_rate_sql() -> str:
    """One row: the share of NULLs of every feature in ``transaction_features``."""
    return "SELECT " + ", ".join(
        f"avg(CASE WHEN {f.name} IS NULL THEN 1.0 ELSE 0.0 END) AS {f.name}" for f in FEATURES
    ) + " FROM transaction_features"


@dg.asset(
    group_name="features", deps=["transactions", "chargebacks", "users"], kinds={"duckdb"}, pool=DUCKDB_POOL
)
def transaction_features(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Point-in-time features: each value uses only records known strictly before the transaction."""
    with duckdb.get_connection() as con:
        store_transaction_features(con)
        rows = int(con.execute("SELECT count(*) FROM transaction_features").fetchone()[0])
        null_rates = fetch_records(con, null_rate_sql())[0]
    table = markdown_table([
        {"feature": f.name, "kind": f.kind, "availability partner": f.partner, "NULL share": null_rates[f.name]}
        for f in FEATURES
    ])
    context.log.info(f"built {len(FEATURES)} features for {rows} transactions")
    return dg.MaterializeResult(
        metadata={"rows": rows, "n_features": len(FEATURES), "features": dg.MetadataValue.md(table)}
    )
