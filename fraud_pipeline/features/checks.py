"""Checks on the features: point in time (oracle, future independence) and absence (missingness contracts, default signals)."""

import json
from dataclasses import asdict
from datetime import datetime, timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.features.contracts import ContractSettings, split_reference
from fraud_pipeline.features.default_signal import (
    DetectorSettings,
    detect_default_signals,
)
from fraud_pipeline.features.expectations import ContractOutcome, validate_contracts
from fraud_pipeline.features.leakage import future_independence, intraday_cutoffs
from fraud_pipeline.features.oracle import sample_and_compare
from fraud_pipeline.features.spec import SpecError
from fraud_pipeline.lib.checks import contract_check_result
from fraud_pipeline.lib.markdown import markdown_table, md_text
from fraud_pipeline.resources import DUCKDB_POOL, FeatureSpecSettings


def _spec_failure(error: SpecError) -> dg.AssetCheckResult:
    """A failed check for a spec that cannot be read or does not fit the tables: its one line, no traceback."""
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=md_text(str(error)),
        metadata={"spec_error": str(error)},
    )


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
def features_match_oracle(
    config: OracleConfig, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.AssetCheckResult:
    """Every sampled feature value (uniform, and where a leak inside a day shows) equals a naive recomputation."""
    try:
        spec = feature_spec.spec()
        with duckdb.get_connection() as con:
            compared, mismatches, drawn = sample_and_compare(
                con, config.sample_size, config.seed, config.targeted_size, spec=spec
            )
    except SpecError as error:
        return _spec_failure(error)
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
def features_ignore_the_future(
    config: FutureConfig, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.AssetCheckResult:
    """Removing every record after a cutoff (at midnight, and at seeded times inside days) changes no earlier feature."""
    try:
        spec = feature_spec.spec()
        with duckdb.get_connection() as con:
            newest = con.execute("SELECT max(event_time) FROM transactions").fetchone()[0]
            midnight = datetime(newest.year, newest.month, newest.day) - timedelta(days=config.holdout_days)
            outcomes = [{"kind": "midnight", "key": None, **future_independence(con, midnight, spec=spec)}]
            for cut in intraday_cutoffs(con, config.intraday_cutoffs, config.seed, spec=spec):
                outcome = future_independence(con, cut["cutoff"], compare_days=1, spec=spec)
                outcomes.append({"kind": cut["kind"], "key": cut["key"], **outcome})
    except SpecError as error:
        return _spec_failure(error)
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


class ContractConfig(dg.Config):
    """How the learned missingness rules (missing rates, value ranges) are judged against their reference."""

    checked_days: int = Field(
        default=ContractSettings.checked_days,
        description="transaction_features: the newest calendar days checked against the earlier full-history rows.",
    )
    missing_rate_margin: float = Field(
        default=ContractSettings.missing_rate_margin,
        description="Smallest change of a missing rate (absolute) that fails; the binomial error is added on top.",
    )
    out_of_range_margin: float = Field(
        default=ContractSettings.out_of_range_margin,
        description="Smallest rise of the share of values outside the reference's far-out fences that fails.",
    )
    fence_iqr: float = Field(
        default=ContractSettings.fence_iqr, description="k of the reference's fences Q1 - k IQR and Q3 + k IQR."
    )
    false_alarm: float = Field(
        default=ContractSettings.false_alarm,
        description="Chance that checked rows behaving like the reference fail a learned rule (Bonferroni-shared).",
    )

    def settings(self) -> ContractSettings:
        """The pure settings these fields describe (the same names, field for field)."""
        return ContractSettings(**self.model_dump())


def _failure_text(row: dict) -> str:
    """One failed rule in words: the feature, the rule, what was observed and what was allowed."""
    text = f"{md_text(row['feature'])} {md_text(row['rule'])}"
    if row["observed"] is None or row["observed"] != row["observed"]:
        return text
    text += f": observed {row['observed']:.4g}"
    if row.get("reference") is not None:
        text += f" against {row['reference']:.4g} in the reference (allowed {row['low']:.4g} to {row['high']:.4g})"
    return text


def _contract_result(outcome: ContractOutcome, settings: ContractSettings) -> dg.AssetCheckResult:
    """The shared contract check result, with the reference, the learned bounds and any problem added."""
    result = contract_check_result(outcome)
    learned = [r for r in outcome.rows if r["rule"] in ("missing_rate", "value_range")]
    metadata = {
        **result.metadata,
        "reference": dg.MetadataValue.json(json.loads(json.dumps(outcome.reference, default=str))),
        "settings": dg.MetadataValue.json(asdict(settings)),
        "failed_rules": dg.MetadataValue.json(sorted({r["rule"] for r in outcome.failures})),
        "learned_rules": dg.MetadataValue.md(
            markdown_table(learned, ["rule", "feature", "reference", "observed", "low", "high", "detail", "success"])
        ),
    }
    description = "; ".join(_failure_text(r) for r in outcome.failures[:5]) or result.description
    if outcome.problem:
        description = f"the contract cannot be judged: {md_text(outcome.problem)}"
    return dg.AssetCheckResult(
        passed=outcome.success, severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata
    )


@dg.asset_check(asset="transaction_features", blocking=True, pool=DUCKDB_POOL)
def feature_missingness_contract(
    config: ContractConfig, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.AssetCheckResult:
    """Every feature meets its spec's exact rules and its missing rate and range learned from earlier full-history rows."""
    return _missingness(config, duckdb, feature_spec, "transaction_features", reference_of=None)


@dg.asset_check(asset="training_set", blocking=True, additional_deps=["transaction_features"], pool=DUCKDB_POOL)
def training_set_missingness_contract(
    config: ContractConfig, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.AssetCheckResult:
    """The validation and test rows meet the spec's exact rules and the missing rates and ranges of the train rows."""
    return _missingness(config, duckdb, feature_spec, "training_set", reference_of=split_reference)


def _missingness(config: ContractConfig, duckdb, feature_spec, table: str, reference_of) -> dg.AssetCheckResult:
    """A missingness contract of ``table``; ``reference_of(con, table, spec)`` gives its reference (None: the table's own earlier rows)."""
    settings = config.settings()
    try:
        spec = feature_spec.spec()
    except SpecError as error:
        return _spec_failure(error)
    with duckdb.get_connection() as con:
        reference = None if reference_of is None else reference_of(con, table, spec)
        outcome = validate_contracts(con, table, spec=spec, reference=reference, settings=settings)
    return _contract_result(outcome, settings)


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
def no_default_signal(
    config: DefaultSignalConfig, duckdb: DuckDBResource, feature_spec: FeatureSpecSettings
) -> dg.AssetCheckResult:
    """No feature carries a value standing in for absence (a zero- or mean-filled history feature)."""
    settings = DetectorSettings(
        max_fill_share=config.max_fill_share, min_share=config.min_share, label_ratio=config.label_ratio
    )
    with duckdb.get_connection() as con:
        verdicts = detect_default_signals(con, "training_set", settings=settings, spec=feature_spec.spec())
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
