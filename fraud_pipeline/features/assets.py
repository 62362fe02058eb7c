"""Features: point-in-time transaction features, read from and stored in DuckDB."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.features.catalog import FEATURES
from fraud_pipeline.features.table import store_transaction_features
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.resources import DUCKDB_POOL


@dg.asset(group_name="features", deps=["transactions", "chargebacks", "users"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def transaction_features(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Point-in-time features: each value uses only records known strictly before the transaction."""
    with duckdb.get_connection() as con:
        stored = store_transaction_features(con)
    rows, null_rates = stored["rows"], stored["null_share"]
    table = markdown_table(
        [
            {"feature": f.name, "kind": f.kind, "availability partner": f.partner, "NULL share": null_rates[f.name]}
            for f in FEATURES
        ]
    )
    context.log.info(f"built {len(FEATURES)} features for {rows} transactions")
    return dg.MaterializeResult(
        metadata={"rows": rows, "n_features": len(FEATURES), "features": dg.MetadataValue.md(table)}
    )
