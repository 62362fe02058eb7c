"""Features: point-in-time transaction features, read from and stored in DuckDB."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.features.table import store_transaction_features
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.resources import DUCKDB_POOL, FeatureSpecSettings


@dg.asset(group_name="features", deps=["transactions", "chargebacks", "users"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def transaction_features(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.MaterializeResult:
    """Point-in-time features of the run's feature spec: each value uses only records known strictly before the transaction."""
    spec = feature_spec.spec()
    with duckdb.get_connection() as con:
        stored = store_transaction_features(con, spec=spec)
    rows, null_rates = stored["rows"], stored["null_share"]
    table = markdown_table(
        [
            {
                "feature": f.name,
                "kind": f.kind,
                "key": f.key,
                "window": f.window,
                "availability partner": f.partner,
                "NULL share": null_rates[f.name],
            }
            for f in spec.features
        ]
    )
    context.log.info(f"built {len(spec.features)} features for {rows} transactions (spec {spec.source})")
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "n_features": len(spec.features),
            "feature_spec": spec.source,
            "feature_spec_digest": spec.digest(),
            "features": dg.MetadataValue.md(table),
        }
    )
