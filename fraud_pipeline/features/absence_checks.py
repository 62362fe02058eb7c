"""Absence is not a value: missingness contracts (Great Expectations) and the default-signal detector."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import contract_check_result, markdown_table
from fraud_pipeline.core.default_signal import DetectorSettings, detect_default_signals
from fraud_pipeline.core.ge_validation import validate_contracts
from fraud_pipeline.resources import DUCKDB_POOL


@dg.asset_check(asset="transaction_features", blocking=True, pool=DUCKDB_POOL)
def feature_missingness_contract(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every feature meets its declared contract: NULLs explained by its partner, rates and ranges, no sentinel."""
    with duckdb.get_connection() as con:
        return contract_check_result(validate_contracts(con, "transaction_features"))


@dg.asset_check(asset="training_set", blocking=True, pool=DUCKDB_POOL)
def training_set_missingness_contract(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """The rows the model learns from meet the same missingness contracts as the feature table."""
    with duckdb.get_connection() as con:
        return contract_check_result(validate_contracts(con, "training_set"))


class DefaultSignalConfig(dg.Config):
    """When a frequent value counts as standing in for absence."""

    max_fill_share: float = Field(default=DetectorSettings.max_fill_share,
                                  description="Highest share of no-history rows that may hold one value.")
    min_share: float = Field(default=DetectorSettings.min_share,
                             description="For features without a partner: share of rows a filler must hold to be examined.")
    label_ratio: float = Field(default=DetectorSettings.label_ratio,
                               description="For those: label-rate ratio (either way) that flags a filler-looking value.")


@dg.asset_check(asset="training_set", blocking=True, pool=DUCKDB_POOL)
def no_default_signal(config: DefaultSignalConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No feature carries a value standing in for absence (a zero- or mean-filled history feature)."""
    settings = DetectorSettings(max_fill_share=config.max_fill_share, min_share=config.min_share,
                                label_ratio=config.label_ratio)
    with duckdb.get_connection() as con:
        verdicts = detect_default_signals(con, "training_set", settings=settings)
    flagged = [v for v in verdicts if v["flagged"]]
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{v['feature']}: {v['why']}" for v in flagged) or "no value stands in for absence",
        metadata={
            "flagged": [v["feature"] for v in flagged],
            "verdicts": dg.MetadataValue.md(markdown_table(
                verdicts, ["feature", "flagged", "value", "share", "no_history_rows", "fill_share_of_no_history",
                           "label_rate_ratio", "why"])),
        },
    )
