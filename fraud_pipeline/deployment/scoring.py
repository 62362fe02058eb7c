"""Batch scoring with the champion: the newest day, through the same features, contracts and policy."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.serving import ScoringModels, decide
from fraud_pipeline.core.warehouse import replace_tables
from fraud_pipeline.resources import DUCKDB_POOL, ModelRegistry


@dg.asset(group_name="deployment", deps=["deployed_model", "transaction_features"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def batch_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource, registry: ModelRegistry) -> dg.MaterializeResult:
    """The champion's decisions for the newest day of transactions, routed by its missing-data policy."""
    store = registry.store()
    champion = store.champion()
    if champion is None:
        raise dg.Failure(description="no champion in the registry yet: nothing can be scored")
    models = ScoringModels.from_candidate(store.scoring_bundle(champion["version"]))
    with duckdb.get_connection() as con:
        newest = con.execute(
            "SELECT * FROM transaction_features WHERE event_time >= "
            "(SELECT date_trunc('day', max(event_time)) FROM transaction_features) ORDER BY transaction_id"
        ).df()
        decisions = decide(newest, models)
        replace_tables(con, {"batch_scores": "SELECT *, $version AS model_version FROM decisions"},
                       sources={"decisions": decisions}, params={"version": champion["version"]})
    by_route = decisions.groupby("route").agg(rows=("alert", "size"), alerts=("alert", "sum")).reset_index()
    return dg.MaterializeResult(metadata={
        "champion": champion["version"],
        "day": str(newest["event_time"].min().date()) if len(newest) else "none",
        "rows": len(decisions),
        "alerts": int(decisions["alert"].sum()),
        "routes": dg.MetadataValue.md(markdown_table(by_route.to_dict(orient="records"))),
    })
