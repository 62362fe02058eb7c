"""Leakage checks on the features: a naive oracle on a sample, and independence from the future on every row."""

from datetime import datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.leakage import future_independence
from fraud_pipeline.core.oracle import sample_and_compare
from fraud_pipeline.resources import DUCKDB_POOL


class OracleConfig(dg.Config):
    """How many feature rows the oracle recomputes."""

    sample_size: int = Field(default=200, description="Transactions recomputed from the raw tables.")
    seed: int = Field(default=0, description="Seed of the sample.")


@dg.asset_check(
    asset="transaction_features",
    blocking=True,
    additional_deps=["transactions", "chargebacks", "users"],
    pool=DUCKDB_POOL,
)
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


class FutureConfig(dg.Config):
    """Where the future is cut off for the future-independence check."""

    holdout_days: int = Field(
        default=30, description="The cutoff lies this many days before the newest transaction; later records are removed."
    )


@dg.asset_check(
    asset="transaction_features",
    blocking=True,
    additional_deps=["transactions", "chargebacks", "users"],
    pool=DUCKDB_POOL,
)
def features_ignore_the_future(config: FutureConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Removing every record after a cutoff changes no feature of any transaction before it."""
    with duckdb.get_connection() as con:
        newest = con.execute("SELECT max(event_time) FROM transactions").fetchone()[0]
        cutoff = datetime(newest.year, newest.month, newest.day) - timedelta(days=config.holdout_days)
        outcome = future_independence(con, cutoff)
    failed = outcome["changed_rows"] or outcome["missing_rows"]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{outcome['changed_rows']} of {outcome['compared']} rows before {cutoff:%Y-%m-%d} change when later "
            f"records are removed: {outcome['changed_by_feature']}" if failed
            else f"all {outcome['compared']} rows before {cutoff:%Y-%m-%d} are unchanged without the later records"
        ),
        metadata={
            "cutoff": outcome["cutoff"],
            "compared": outcome["compared"],
            "changed_rows": outcome["changed_rows"],
            "missing_rows": outcome["missing_rows"],
            "changed_by_feature": dg.MetadataValue.json(outcome["changed_by_feature"]),
            "examples": dg.MetadataValue.md(markdown_table(outcome["examples"])),
        },
    )
