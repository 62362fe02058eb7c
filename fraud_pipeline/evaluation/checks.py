"""The cost gate: a candidate must save money against the alternatives it would replace."""

import dagster as dg

from fraud_pipeline.checks_common import gate_check_result
from fraud_pipeline.core.gates import cost_gate
from fraud_pipeline.resources import DeployGates


@dg.asset_check(asset="model_evaluation", blocking=True)
def cost_beats_baselines(model_evaluation: dict, gates: DeployGates) -> dg.AssetCheckResult:
    """Test cost beats approve-all and the simple amount rule by the configured margin."""
    return gate_check_result(cost_gate(model_evaluation, gates.cost_margin))
