"""Deployment: the champion registry, moved only for a candidate that passed every gate."""


from dataclasses import asdict

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.core.gates import GateResult, cost_gate, fraud_count_gate, maturity_gate, split_summary, window_gate
from fraud_pipeline.core.model_card import render_model_card
from fraud_pipeline.core.windows import TrainingWindows
from fraud_pipeline.resources import CostSettings, DeployGates, ModelRegistry


def evaluate_gates(con, windows: TrainingWindows, fraud_model: dict, evaluation: dict, gates: DeployGates) -> list[GateResult]:
    """Every deploy gate, recomputed from the data rather than trusted from earlier steps."""
    summary = split_summary(con, windows)
    same_candidate = evaluation["model_version"] == fraud_model["version"]
    return [
        window_gate(windows),
        maturity_gate(summary),
        fraud_count_gate(summary, gates.min_frauds_per_window),
        cost_gate(evaluation, gates.cost_margin),
        GateResult(
            "evaluation_matches_candidate",
            same_candidate,
            "the evaluation is of this candidate" if same_candidate
            else f"evaluation is of {evaluation['model_version']}, candidate is {fraud_model['version']}",
        ),
    ]


@dg.asset(group_name="deployment", deps=["training_set"], kinds={"file"})
def deployed_model(
    context: dg.AssetExecutionContext,
    fraud_model: dict,
    model_evaluation: dict,
    training_windows: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
    costs: CostSettings,
) -> dict:
    """Writes the candidate's bundle and card to the registry and makes it champion if every gate passes."""
    windows = TrainingWindows.from_dict(training_windows)
    with duckdb.get_connection() as con:
        verdicts = evaluate_gates(con, windows, fraud_model, model_evaluation, gates)
    store = registry.store()
    version = fraud_model["version"]
    failed = [g for g in verdicts if not g.passed]
    if failed:
        reasons = "; ".join(f"{g.name}: {g.reason}" for g in failed)
        store.record({"event": "refused", "version": version, "as_of": training_windows["as_of"], "reason": reasons})
        champion = store.champion()
        raise dg.Failure(
            description=f"candidate {version} refused, champion stays {champion['version'] if champion else 'none'}: {reasons}",
            metadata={"failed_gates": dg.MetadataValue.json([asdict(g) for g in failed])},
        )
    bundle = {
        "version": version,
        "threshold": fraud_model["threshold"],
        "features": fraud_model["features"],
        "categories": fraud_model["categories"],
        "windows": training_windows,
        "params": fraud_model["params"],
        "cost_model": asdict(costs.cost_model()),
        "evaluation": model_evaluation,
        "gates": [asdict(g) for g in verdicts],
    }
    folder = store.write_bundle(version, fraud_model["model_text"], bundle, render_model_card(bundle))
    pointer = store.promote(version, as_of=training_windows["as_of"], reason="every deploy gate passed")
    context.add_output_metadata(
        {
            "champion": version,
            "previous_champion": str(pointer["previous_version"]),
            "bundle": dg.MetadataValue.path(str(folder)),
            "model_card": dg.MetadataValue.md(render_model_card(bundle)),
        }
    )
    return {"version": version, "path": str(folder), "promoted": True}
