"""Deploy gates on the evaluation: the candidate must save money overall and not fail any cohort it is judged on."""

import dagster as dg

from fraud_pipeline.checks_common import gate_check_result
from fraud_pipeline.core.gates import CohortFloors, cohort_floor_gate, cost_gate
from fraud_pipeline.resources import DeployGates


@dg.asset_check(asset="model_evaluation", blocking=True)
def cost_beats_baselines(model_evaluation: dict, gates: DeployGates) -> dg.AssetCheckResult:
    """Test cost beats approve-all and the simple amount rule by the configured margin."""
    return gate_check_result(cost_gate(model_evaluation, gates.cost_margin))


@dg.asset_check(asset="model_evaluation", blocking=True)
def cohort_floors(model_evaluation: dict) -> dg.AssetCheckResult:
    """Every cohort with enough test frauds meets the savings, recall and calibration floors."""
    return gate_check_result(
        cohort_floor_gate(model_evaluation["cohorts"], CohortFloors(**model_evaluation["cohort_floors"]))
    )
