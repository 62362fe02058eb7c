"""The deploy gates on the evaluation (cost against baselines, cohort floors, the test scores, the outage replay),
on ``deploy_gate`` so they hold back only the promotion; and the backtest's spread."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.deployment.checks import DEPLOY_GATE
from fraud_pipeline.deployment.gates import (
    cohort_floor_gate,
    cost_gate,
    evaluation_scores_gate,
    outage_gate,
)
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.lib.checks import gate_check_result
from fraud_pipeline.resources import (
    DUCKDB_POOL,
    CostSettings,
    DeployGates,
)
from fraud_pipeline.training.candidate import Candidate

#: The checks on the evaluation: on the deploy decision, reading the evaluation.
_evaluation_check = dg.asset_check(
    asset=DEPLOY_GATE, blocking=True, additional_ins={"model_evaluation": dg.AssetIn("model_evaluation")}
)


@_evaluation_check
def cost_beats_baselines(model_evaluation: ModelEvaluation, gates: DeployGates) -> dg.AssetCheckResult:
    """Test cost beats approve-all and the simple amount rule by the configured margin."""
    return gate_check_result(cost_gate(model_evaluation, gates.cost_margin))


@_evaluation_check
def cohort_floors(model_evaluation: ModelEvaluation) -> dg.AssetCheckResult:
    """Every cohort with enough test frauds meets the savings, recall and calibration floors."""
    return gate_check_result(cohort_floor_gate(model_evaluation.cohorts, model_evaluation.cohort_floors))


@dg.asset_check(
    asset=DEPLOY_GATE,
    blocking=True,
    additional_ins={"model_evaluation": dg.AssetIn("model_evaluation"), "fraud_model": dg.AssetIn("fraud_model")},
    additional_deps=["training_set"],
    pool=DUCKDB_POOL,
)
def evaluation_scores_reproduce(
    model_evaluation: ModelEvaluation, fraud_model: Candidate, duckdb: DuckDBResource, costs: CostSettings
) -> dg.AssetCheckResult:
    """The evaluation's test scores are the candidate's model file scoring exactly the test split (recomputed)."""
    with duckdb.get_connection() as con:
        return gate_check_result(evaluation_scores_gate(con, fraud_model, model_evaluation, costs.cost_model()))


@dg.asset_check(asset=DEPLOY_GATE, blocking=True, additional_ins={"outage_replay": dg.AssetIn("outage_replay")})
def unavailable_history_not_misread(outage_replay: dict) -> dg.AssetCheckResult:
    """The serving path recognises unavailable history instead of scoring it as known-empty (new-user) history."""
    return gate_check_result(outage_gate(outage_replay))


@dg.asset_check(asset="backtest")
def backtest_spread(backtest: dict) -> dg.AssetCheckResult:
    """Warns when fewer than two folds fit, the folds lose money on average, the candidate's test metrics sit far
    below the folds on other windows than its own, or far above all of them ("better than its own history: look for
    a leak").

    WARN, not blocking: the backtest runs after the deploy decision, so no verdict on it can stop this run's
    deploy; the faults that make a candidate too good are blocked before the deploy by the provenance checks
    on deploy_gate.
    """
    findings, folds = backtest["findings"], backtest["folds"]
    design = backtest.get("design", {})
    judged = backtest.get("candidate_judged_against", len(folds))
    of_design = (
        f" of {design['windows_label']}" + ("" if design.get("same_as_run") else " (not the run's design)")
        if design
        else ""
    )
    if judged >= 2:
        against = f"the candidate is within the spread of the {judged} folds on other windows"
    else:
        besides = "1 fold" if judged == 1 else f"{judged} folds"
        against = f"the candidate is not judged against a spread: {besides} besides its own windows"
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(findings)
        or f"{len(folds)} folds{of_design} save money on average; {against}"
        + (f"; {backtest['history']['reason']}" if "history" in backtest else ""),
        metadata={
            "findings": dg.MetadataValue.json(findings),
            "n_folds": len(folds),
            "candidate_judged_against": judged,
            "design": dg.MetadataValue.json(design),
        },
    )
