"""Deployment: the champion registry, moved only for a candidate that passed every gate."""

from dataclasses import asdict

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.core.costs import decision_costs
from fraud_pipeline.core.gates import (
    CohortFloors,
    GateResult,
    challenger_gate,
    cohort_floor_gate,
    completeness_gate,
    cost_gate,
    fraud_count_gate,
    maturity_gate,
    split_summary,
    window_gate,
)
from fraud_pipeline.core.model import TrainedModel, score
from fraud_pipeline.core.model_card import render_model_card
from fraud_pipeline.core.registry import ModelRegistryStore
from fraud_pipeline.core.serving import FALLBACK_FEATURES, POLICY
from fraud_pipeline.core.training_set import load_split
from fraud_pipeline.core.windows import TrainingWindows
from fraud_pipeline.deployment.guards import check_record_problems
from fraud_pipeline.resources import DUCKDB_POOL, CostSettings, DeployGates, ModelRegistry


def evaluate_gates(con, windows: TrainingWindows, fraud_model: dict, evaluation: dict, gates: DeployGates) -> list[GateResult]:
    """Every deploy gate, recomputed from the data rather than trusted from earlier steps."""
    summary = split_summary(con, windows)
    same_candidate = evaluation["model_version"] == fraud_model["version"]
    return [
        window_gate(windows),
        maturity_gate(summary),
        completeness_gate(summary, gates.min_label_completeness),
        fraud_count_gate(summary, gates.min_frauds_per_window),
        cost_gate(evaluation, gates.cost_margin),
        cohort_floor_gate(evaluation["cohorts"], CohortFloors(**evaluation["cohort_floors"])),
        GateResult(
            "evaluation_matches_candidate",
            same_candidate,
            "the evaluation is of this candidate" if same_candidate
            else f"evaluation is of {evaluation['model_version']}, candidate is {fraud_model['version']}",
        ),
    ]


def champion_test_cost(con, store: ModelRegistryStore, version: str, costs: CostSettings) -> float | None:
    """The champion's cost on the current test window, scored with its own model and threshold.

    None when the champion needs a feature the current training set does not have.
    """
    bundle = store.scoring_bundle(version)
    test = load_split(con, "test")
    if not set(bundle["features"]) <= set(test.columns):
        return None
    model = TrainedModel.from_dict(bundle)
    alert = score(model, test) >= bundle["threshold"]
    return float(decision_costs(test["is_fraud"].to_numpy(), test["amount"].to_numpy(), alert, costs.cost_model()).sum())


@dg.asset(group_name="deployment", deps=["training_set", "champion_monitoring"], kinds={"file"}, pool=DUCKDB_POOL)
def deployed_model(
    context: dg.AssetExecutionContext,
    fraud_model: dict,
    model_evaluation: dict,
    outage_replay: dict,
    training_windows: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
    costs: CostSettings,
) -> dict:
    """Promotes the candidate to champion if every gate and guarding check passed and it is not worse than the champion."""
    windows = TrainingWindows.from_dict(training_windows)
    store = registry.store()
    version = fraud_model["version"]
    with duckdb.get_connection() as con:
        verdicts = evaluate_gates(con, windows, fraud_model, model_evaluation, gates)
        problems = [f"{g.name}: {g.reason}" for g in verdicts if not g.passed]
        problems += check_record_problems(context.instance)
        champion = store.champion()
        incumbent = champion["version"] if champion and champion["version"] != version else None
        incumbent_cost = champion_test_cost(con, store, incumbent, costs) if incumbent and not problems else None
    if problems:
        reasons = "; ".join(problems)
        store.record({"event": "refused", "version": version, "as_of": training_windows["as_of"], "reason": reasons})
        raise dg.Failure(
            description=f"candidate {version} refused, champion stays {champion['version'] if champion else 'none'}: {reasons}",
            metadata={"problems": dg.MetadataValue.json(problems)},
        )
    challenge = challenger_gate(model_evaluation["total_cost"], incumbent_cost, gates.champion_tolerance)
    bundle = {
        "version": version,
        "threshold": fraud_model["threshold"],
        "features": fraud_model["features"],
        "categories": fraud_model["categories"],
        "windows": training_windows,
        "params": fraud_model["params"],
        "cost_model": asdict(costs.cost_model()),
        "evaluation": model_evaluation,
        "outage_replay": outage_replay,
        "unavailable_history_policy": {**POLICY, "fallback_features": list(FALLBACK_FEATURES),
                                       "fallback_threshold": fraud_model["fallback"]["threshold"]},
        "fallback": {k: v for k, v in fraud_model["fallback"].items() if k != "model_text"},
        "gates": [asdict(g) for g in [*verdicts, challenge]],
    }
    card = render_model_card(bundle)
    folder = store.write_bundle(version, fraud_model["model_text"], bundle, card,
                                fallback_text=fraud_model["fallback"]["model_text"])
    metadata = {
        "candidate": version,
        "bundle": dg.MetadataValue.path(str(folder)),
        "champion_comparison": challenge.reason,
        "model_card": dg.MetadataValue.md(card),
    }
    if not challenge.passed:
        store.record({"event": "kept_champion", "version": version, "champion": incumbent,
                      "as_of": training_windows["as_of"], "reason": challenge.reason})
        context.log.warning(f"candidate {version} not promoted: {challenge.reason}")
        context.add_output_metadata({**metadata, "champion": incumbent, "promoted": False})
        return {"version": version, "path": str(folder), "promoted": False, "champion": incumbent}
    pointer = store.promote(version, as_of=training_windows["as_of"], reason=f"every gate passed; {challenge.reason}")
    context.add_output_metadata(
        {**metadata, "champion": version, "previous_champion": str(pointer["previous_version"]), "promoted": True}
    )
    return {"version": version, "path": str(folder), "promoted": True, "champion": version}
