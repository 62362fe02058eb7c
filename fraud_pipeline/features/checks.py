"""The feature oracle: a naive recomputation on a sample must agree with the SQL features."""


import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.oracle import sample_and_compare


class OracleConfig(dg.Config):
    """How many feature rows the oracle recomputes."""

    sample_size: int = Field(default=200, description="Transactions recomputed from the raw tables.")
    seed: int = Field(default=0, description="Seed of the sample.")


@dg.asset_check(asset="transaction_features", blocking=True, additional_deps=["transactions", "chargebacks", "users"])
def features_match_oracle(config: OracleConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every sampled feature value equals a naive recomputation from records known strictly before it."""
    with duckdb.get_connection() as con:
        compared, mismatches = sample_and_compare(con, config.sample_size, config.seed)
    by_feature = mismatches.groupby("feature").size().sort_values(ascending=False) if len(mismatches) else None
    return dg.AssetCheckResult(
        passed=mismatches.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(mismatches)} mismatching values over {compared} transactions" if len(mismatches)
            else f"{compared} transactions recomputed naively, all values equal"
        ),
        metadata={
            "compared": compared,
            "mismatches": len(mismatches),
            "mismatching_features": dg.MetadataValue.json({} if by_feature is None else by_feature.to_dict()),
            "examples": dg.MetadataValue.md(markdown_table(mismatches.head(10).to_dict(orient="records"))),
        },
    )
