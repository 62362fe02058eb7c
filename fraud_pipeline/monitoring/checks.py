"""Checks on the population and on the champion: cohort-mix shift, realised against promised."""

import dagster as dg

from fraud_pipeline.lib.markdown import markdown_table, md_text
from fraud_pipeline.monitoring.champion import (
    shortfalls,
)
from fraud_pipeline.monitoring.drift import (
    mix_shift_findings,
)
from fraud_pipeline.monitoring.estimate import STATUSES, ChampionEstimate, cost_overrun


@dg.asset_check(asset="population_drift")
def cohort_mix_shift(population_drift: dict) -> dg.AssetCheckResult:
    """Warns when a cohort's share of traffic moved beyond the threshold since the training window, whatever the feature drift says."""
    findings = mix_shift_findings(population_drift["cohort_mix"], **population_drift["thresholds"])
    quiet = [r["feature"] for r in population_drift["features"] if r["kind"] == "behaviour" and r["verdict"] == "quiet"]
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=("cohort mix shifted: " + md_text("; ".join(findings)))
        if findings
        else "no cohort's share moved beyond the thresholds",
        metadata={
            "findings": dg.MetadataValue.json(findings),
            "quiet_behaviour_features": len(quiet),
            "thresholds": dg.MetadataValue.json(population_drift["thresholds"]),
        },
    )


@dg.asset_check(asset="champion_monitoring")
def champion_realised_vs_promised(champion_monitoring: dict) -> dg.AssetCheckResult:
    """Warns when the champion's realised savings or AP on newly matured labels fall below its promise by more than the margin."""
    status = champion_monitoring["status"]
    if status != "scored":
        reason = "no champion yet" if status == "no_champion" else "no labels have matured since the champion's deploy"
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"nothing to judge: {reason}",
            metadata={"status": status},
        )
    thresholds = champion_monitoring["thresholds"]
    found = shortfalls(champion_monitoring["comparison"], champion_monitoring["n_frauds"], **thresholds)
    judged = champion_monitoring["n_frauds"] >= thresholds["min_frauds"]
    description = (
        "; ".join(found)
        if found
        else ("the champion keeps its promise on " if judged else "too few matured frauds to judge on ")
        + f"{champion_monitoring['n_frauds']} frauds in {champion_monitoring['window'][0][:10]}..{champion_monitoring['window'][1][:10]}"
    )
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "comparison": dg.MetadataValue.md(markdown_table(champion_monitoring["comparison"])),
            "findings": dg.MetadataValue.json(found),
        },
    )


@dg.asset_check(asset="champion_estimate")
def estimated_cost_within_promise(champion_estimate: ChampionEstimate) -> dg.AssetCheckResult:
    """Warns when the serving champion's estimated cost per transaction on recent traffic exceeds its promise by more than the margin."""
    if champion_estimate.estimate is None:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"nothing to judge: {md_text(STATUSES[champion_estimate.status])}",
            metadata={"status": champion_estimate.status},
        )
    overall = champion_estimate.estimate.overall()
    found = cost_overrun(champion_estimate)
    description = found or (
        f"estimated cost per transaction {overall['cost_per_transaction']:.4f} within "
        f"{champion_estimate.max_cost_increase:.0%} of the promise {champion_estimate.promised_cost_per_transaction:.4f}"
    )
    return dg.AssetCheckResult(
        passed=found is None,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "estimated_cost_per_transaction": dg.MetadataValue.float(float(overall["cost_per_transaction"])),
            "promised_cost_per_transaction": dg.MetadataValue.float(
                float(champion_estimate.promised_cost_per_transaction)
            ),
            "max_cost_increase": dg.MetadataValue.float(float(champion_estimate.max_cost_increase)),
        },
    )
