"""Turning pure verdicts into Dagster check results, the same way for every check."""

from __future__ import annotations

import json
import math

import dagster as dg

from fraud_pipeline.deployment.gates import GateResult
from fraud_pipeline.ingestion.rules import RuleResult
from fraud_pipeline.lib.markdown import markdown_table, md_text


def rules_check_result(results: list[RuleResult]) -> dg.AssetCheckResult:
    """One ERROR check result for a contract: fails when any rule has a violating row."""
    failing = [r for r in results if not r.passed]
    rows = [{"rule": r.rule.name, "violations": r.n_violations, "requirement": r.rule.description} for r in results]
    metadata: dict = {
        "rules": dg.MetadataValue.md(markdown_table(rows)),
        "violations": sum(r.n_violations for r in results),
        **{f"{r.rule.name}_violations": dg.MetadataValue.int(int(r.n_violations)) for r in results},
    }
    for r in failing:
        metadata[f"sample_{r.rule.name}"] = dg.MetadataValue.json(r.sample)
    return dg.AssetCheckResult(
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{md_text(r.rule.name)}: {r.n_violations} rows" for r in failing) or "all rules hold",
        metadata=metadata,
    )


def _number(value) -> dg.MetadataValue | None:
    """An int or a float as Dagster's numeric metadata (which the UI plots over runs); None when not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    # six significant digits: what a person compares and a plot shows, without float noise (6894.8099999999995)
    return dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(float(f"{value:.6g}"))


def measure_metadata(measures) -> dict:
    """``<name>``, ``<name>_bound`` and ``<name>_margin`` for every measure, as numbers the UI plots night over night."""
    metadata = {}
    for m in measures:
        for key, value in ((m.name, m.observed), (f"{m.name}_bound", m.bound), (f"{m.name}_margin", m.margin)):
            number = _number(value)
            if number is not None:
                metadata[key] = number
    return metadata


def gate_check_result(gate: GateResult) -> dg.AssetCheckResult:
    """One ERROR check result for a deploy gate, with its numbers (observed, bound, margin) as numeric metadata."""
    return dg.AssetCheckResult(
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=md_text(gate.reason),
        metadata={
            **measure_metadata(gate.measures),
            "reason": gate.reason,
            "details": dg.MetadataValue.json(json.loads(json.dumps(gate.details, default=str))),
        },
    )


def contract_check_result(outcome) -> dg.AssetCheckResult:
    """One ERROR check result for a Great Expectations missingness-contract validation."""
    failures = outcome.failures
    metadata: dict = {
        "expectations": len(outcome.rows),
        "failed_expectations": len(failures),
        "failures": dg.MetadataValue.md(markdown_table(failures, ["rule", "feature", "observed", "low", "high"])),
        "missing_rates": dg.MetadataValue.md(
            markdown_table(
                [r for r in outcome.rows if r["rule"] == "missing_rate"],
                ["feature", "observed", "low", "high", "success"],
            )
        ),
    }
    for column, rows in outcome.samples.items():
        metadata[f"sample_{column}"] = dg.MetadataValue.json(rows)
    description = "; ".join(
        f"{md_text(r['feature'])} {md_text(r['rule'])}: observed {r['observed']:g}"
        for r in failures[:5]
        if r["observed"] is not None
    ) or ("every feature meets its missingness contract" if outcome.success else "the table is empty")
    return dg.AssetCheckResult(
        passed=outcome.success, severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata
    )
