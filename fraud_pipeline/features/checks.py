"""Checks on the features: point in time (oracle, future independence) and absence (missingness contracts, default signals)."""

from datetime import datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.features.default_signal import (
    DetectorSettings,
    detect_default_signals,
)
from fraud_pipeline.features.expectations import validate_contracts
from fraud_pipeline.features.leakage import future_independence, intraday_cutoffs
from fraud_pipeline.features.oracle import sample_and_compare
from fraud_pipeline.lib.checks import contract_check_result
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.resources import DUCKDB_POOL


class OracleConfig(dg.Config):
    """How many feature rows the oracle recomputes."""

    sample_size: int = Field(
        default=200, description="Transactions drawn uniformly and recomputed from the raw tables."
    )
    targeted_size: int = Field(
        default=200,
        description="More transactions, split evenly over those whose user or merchant has a chargeback report or a "
        "transaction later the same day: where a leak inside a day (an end-of-day batch) shows.",
    )
    seed: int = Field(default=0, description="Seed of the sample.")


@dg.asset_check(
    asset="transaction_features",
    blocking=True,
    additional_deps=["transactions", "chargebacks", "users"],
    pool=DUCKDB_POOL,
)
def features_match_oracle(config: OracleConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Every sampled feature value (uniform, and where a leak inside a day shows) equals a naive recomputation."""
    with duckdb.get_connection() as con:
        compared, mismatches, drawn = sample_and_compare(con, config.sample_size, config.seed, config.targeted_size)
    by_feature = mismatches.groupby("feature").size().sort_values(ascending=False) if len(mismatches) else None
    return dg.AssetCheckResult(
        passed=mismatches.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(mismatches)} mismatching values over {compared} transactions"
            if len(mismatches)
            else f"{compared} transactions recomputed naively, all values equal"
        ),
        metadata={
            "compared": compared,
            "drawn_per_part": dg.MetadataValue.json(drawn),
            "mismatches": len(mismatches),
            "mismatching_features": dg.MetadataValue.json({} if by_feature is None else by_feature.to_dict()),
            "examples": dg.MetadataValue.md(markdown_table(mismatches.head(10).to_dict(orient="records"))),
        },
    )


class FutureConfig(dg.Config):
    """Where the future is cut off for the future-independence check."""

    holdout_days: int = Field(
        default=30,
        description="The midnight cutoff lies this many days before the newest transaction; later records are removed.",
    )
    intraday_cutoffs: int = Field(
        default=8,
        description="Cutoffs inside days, each at a chargeback report or a transaction whose user or merchant had "
        "transactions earlier that day (an end-of-day batch shows there); 0 keeps only the midnight cutoff.",
    )
    seed: int = Field(default=0, description="Seed choosing the intra-day cutoffs.")


@dg.asset_check(
    asset="transaction_features",
    blocking=True,
    additional_deps=["transactions", "chargebacks", "users"],
    pool=DUCKDB_POOL,
)
def features_ignore_the_future(config: FutureConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Removing every record after a cutoff (at midnight, and at seeded times inside days) changes no earlier feature."""
    with duckdb.get_connection() as con:
        newest = con.execute("SELECT max(event_time) FROM transactions").fetchone()[0]
        midnight = datetime(newest.year, newest.month, newest.day) - timedelta(days=config.holdout_days)
        outcomes = [{"kind": "midnight", "key": None, **future_independence(con, midnight)}]
        for cut in intraday_cutoffs(con, config.intraday_cutoffs, config.seed):
            outcome = future_independence(con, cut["cutoff"], compare_days=1)
            outcomes.append({"kind": cut["kind"], "key": cut["key"], **outcome})
    failed = [o for o in outcomes if o["changed_rows"] or o["missing_rows"]]
    compared = sum(o["compared"] for o in outcomes)
    cutoffs = [
        {k: o[k] for k in ("kind", "key", "cutoff", "compared", "changed_rows", "missing_rows")}
        | {"changed_by_feature": ", ".join(f"{f} {n}" for f, n in o["changed_by_feature"].items())}
        for o in outcomes
    ]
    if failed:
        description = "; ".join(
            f"{o['changed_rows'] + o['missing_rows']} of {o['compared']} rows before {o['cutoff']} ({o['kind']}) change "
            f"when later records are removed: {o['changed_by_feature']}"
            for o in failed
        )
    else:
        description = (
            f"all {outcomes[0]['compared']} rows before {midnight:%Y-%m-%d} and all {compared - outcomes[0]['compared']} "
            f"rows of the day before {len(outcomes) - 1} intra-day cutoffs are unchanged without the later records"
        )
    by_feature: dict[str, int] = {}
    for o in failed:
        for feature, n in o["changed_by_feature"].items():
            by_feature[feature] = by_feature.get(feature, 0) + n
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "cutoff": outcomes[0]["cutoff"],
            "compared": compared,
            "changed_rows": sum(o["changed_rows"] for o in outcomes),
            "missing_rows": sum(o["missing_rows"] for o in outcomes),
            "changed_by_feature": dg.MetadataValue.json(by_feature),
            "cutoffs": dg.MetadataValue.md(
                markdown_table(
                    cutoffs,
                    ["kind", "key", "cutoff", "compared", "changed_rows", "missing_rows", "changed_by_feature"],
                )
            ),
            "examples": dg.MetadataValue.md(markdown_table([e for o in failed for e in o["examples"]][:10])),
        },
    )


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

    max_fill_share: float = Field(
        default=DetectorSettings.max_fill_share, description="Highest share of no-history rows that may hold one value."
    )
    min_share: float = Field(
        default=DetectorSettings.min_share,
        description="For features without a partner: share of rows a filler must hold to be examined.",
    )
    label_ratio: float = Field(
        default=DetectorSettings.label_ratio,
        description="For those: label-rate ratio (either way) that flags a filler-looking value.",
    )


@dg.asset_check(asset="training_set", blocking=True, pool=DUCKDB_POOL)
def no_default_signal(config: DefaultSignalConfig, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No feature carries a value standing in for absence (a zero- or mean-filled history feature)."""
    settings = DetectorSettings(
        max_fill_share=config.max_fill_share, min_share=config.min_share, label_ratio=config.label_ratio
    )
    with duckdb.get_connection() as con:
        verdicts = detect_default_signals(con, "training_set", settings=settings)
    flagged = [v for v in verdicts if v["flagged"]]
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{v['feature']}: {v['why']}" for v in flagged) or "no value stands in for absence",
        metadata={
            "flagged": [v["feature"] for v in flagged],
            "verdicts": dg.MetadataValue.md(
                markdown_table(
                    verdicts,
                    [
                        "feature",
                        "flagged",
                        "value",
                        "share",
                        "no_history_rows",
                        "fill_share_of_no_history",
                        "label_rate_ratio",
                        "why",
                    ],
                )
            ),
        },
    )
