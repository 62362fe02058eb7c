"""Deployment: the night's deploy decision, the champion registry moved only for a candidate that passed every gate,
and the champion's batch scores."""

from dataclasses import asdict

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.deployment.checks import GUARDING_CHECKS, UPSTREAM_GUARDING_CHECKS, check_record_problems
from fraud_pipeline.deployment.decision import BLOCKED, KEEP_CHAMPION, DeployDecision, deploy_decision, gate_records
from fraud_pipeline.deployment.gates import (
    GateResult,
    challenger_gate,
    champion_test_cost,
    evaluate_gates,
    outage_gate,
)
from fraud_pipeline.deployment.model_card import render_model_card
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.deployment.serving import POLICY, ScoringModels, decide
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.policy import policy_markdown
from fraud_pipeline.lib.warehouse import MixedNight, replace_tables, require_one_night
from fraud_pipeline.resources import (
    DUCKDB_POOL,
    CostSettings,
    DeployGates,
    ModelRegistry,
)
from fraud_pipeline.training.candidate import Candidate
from fraud_pipeline.training.windows import TrainingWindows


def _judge(
    context: dg.AssetExecutionContext,
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    outage_replay: dict,
    training_windows: TrainingWindows,
    label_delay_profile: dict,
    duckdb: DuckDBResource,
    store: ModelRegistryStore,
    gates: DeployGates,
    costs: CostSettings,
    guarding: tuple[dg.AssetCheckKey, ...],
) -> tuple[DeployDecision, list[GateResult]]:
    """Recomputes every gate, reads the guarding checks' records and compares with the champion: the decision."""
    as_of = training_windows.as_of.isoformat()
    version = fraud_model.version
    with duckdb.get_connection() as con:
        verdicts = evaluate_gates(
            con,
            training_windows,
            fraud_model,
            model_evaluation,
            gates,
            costs,
            float(label_delay_profile["horizon_days"]),
        )
        verdicts.append(outage_gate(outage_replay))
        problems = check_record_problems(context.instance, guarding)
        champion, champion_problem = store.valid_champion()
        if champion_problem:
            # an unreadable champion is no valid champion: loud, recorded, never a silent pass
            context.log.error(f"no valid champion, the candidate is judged without one: {champion_problem}")
            store.record(
                {"event": "champion_unreadable", "version": version, "as_of": as_of, "reason": champion_problem}
            )
        incumbent = champion["version"] if champion and champion["version"] != version else None
        passed = all(g.passed for g in verdicts) and not problems
        incumbent_cost = champion_test_cost(con, store, incumbent, costs) if incumbent and passed else None
    challenge = (
        challenger_gate(model_evaluation.total_cost, incumbent_cost, gates.champion_tolerance) if passed else None
    )
    current = champion["version"] if champion else None
    return deploy_decision(as_of, version, current, verdicts, challenge, problems, champion_problem), verdicts


def decision_metadata(decision: DeployDecision) -> dict:
    """The decision as the UI shows it: outcome and headline, the failed gates, and one row per gate's number."""
    rows = [
        {
            "gate": g.name,
            "passed": g.passed,
            "measure": m.name,
            "observed": m.observed,
            "bound": m.bound,
            "margin": m.margin,
        }
        for g in decision.gates
        for m in (g.measures or ())
    ]
    plain = decision.to_metadata()
    return {
        "decision": plain["decision"],
        "headline": dg.MetadataValue.text(plain["headline"]),
        "candidate": plain["candidate"],
        "champion": plain["champion"],
        "blocked_by": dg.MetadataValue.json(plain["blocked_by"]),
        "n_gates_failed": dg.MetadataValue.int(plain["n_gates_failed"]),
        "gates": dg.MetadataValue.md(
            markdown_table(
                rows,
                ["gate", "passed", "measure", "observed", "bound", "margin"],
            )
        ),
        **({"problems": dg.MetadataValue.json(list(decision.problems))} if decision.problems else {}),
        **({"champion_problem": decision.champion_problem} if decision.champion_problem else {}),
    }


@dg.asset(group_name="deployment", deps=["training_set", "champion_monitoring"], pool=DUCKDB_POOL)
def deploy_gate(
    context: dg.AssetExecutionContext,
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    outage_replay: dict,
    training_windows: TrainingWindows,
    label_delay_profile: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
    costs: CostSettings,
) -> DeployDecision:
    """The night's deploy decision (promote, keep the champion, or blocked by which gates and by how much),
    every gate recomputed; its blocking checks hold back only the promotion."""
    store = registry.store()
    decision, _ = _judge(
        context,
        fraud_model,
        model_evaluation,
        outage_replay,
        training_windows,
        label_delay_profile,
        duckdb,
        store,
        gates,
        costs,
        UPSTREAM_GUARDING_CHECKS,
    )
    if decision.outcome == BLOCKED:
        store.record(decision.record())
        context.log.warning(decision.headline())
    else:
        context.log.info(decision.headline())
    context.add_output_metadata({**decision_metadata(decision), **_policy_metadata(fraud_model)})
    return decision


def _policy_metadata(fraud_model: Candidate) -> dict:
    """The candidate's decision policies (main and fallback) as the UI shows them."""
    return {
        "policy": dg.MetadataValue.md(policy_markdown(fraud_model.policy)),
        "fallback_policy": dg.MetadataValue.md(policy_markdown(fraud_model.fallback.decision_policy())),
    }


@dg.asset(
    group_name="deployment",
    deps=["deploy_gate", "training_set", "champion_monitoring"],
    kinds={"file"},
    pool=DUCKDB_POOL,
)
def deployed_model(
    context: dg.AssetExecutionContext,
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    outage_replay: dict,
    training_windows: TrainingWindows,
    label_delay_profile: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
    costs: CostSettings,
) -> dict:
    """Promotes the candidate to champion if every gate and guarding check passed and it is not worse than the champion."""
    windows = training_windows
    as_of = windows.as_of.isoformat()
    store = registry.store()
    version = fraud_model.version
    decision, verdicts = _judge(
        context,
        fraud_model,
        model_evaluation,
        outage_replay,
        windows,
        label_delay_profile,
        duckdb,
        store,
        gates,
        costs,
        GUARDING_CHECKS,
    )
    if decision.outcome == BLOCKED:
        problems = [f"{g.name}: {g.reason}" for g in decision.blocked_by] + list(decision.problems)
        reasons = "; ".join(problems)
        store.record({"event": "refused", "version": version, "as_of": as_of, "reason": reasons})
        raise dg.Failure(
            description=f"candidate {version} refused, champion stays {decision.champion or 'none'}: {reasons}",
            metadata={"problems": dg.MetadataValue.json(problems)},
        )
    challenge = decision.gates[-1]
    bundle = {
        "version": version,
        "threshold": fraud_model.threshold,
        "policy": fraud_model.policy.as_dict(),
        "policy_request": fraud_model.as_dict()["policy_request"],
        "features": list(fraud_model.main.model.features),
        "categories": fraud_model.main.model.categories,
        "windows": windows.as_dict(),
        "measured_horizon_days": float(label_delay_profile["horizon_days"]),
        "provenance": {**fraud_model.provenance(), "test_rows": model_evaluation.test_rows},
        "params": fraud_model.params,
        "feature_spec": fraud_model.feature_spec().to_dict(),
        "feature_spec_digest": fraud_model.feature_spec().digest(),
        "cost_model": asdict(costs.cost_model()),
        "evaluation": model_evaluation.as_dict(),
        "outage_replay": outage_replay,
        "unavailable_history_policy": {
            **POLICY,
            "fallback_features": list(fraud_model.feature_spec().fallback),
            "fallback_threshold": fraud_model.fallback.threshold,
        },
        "fallback": {k: v for k, v in fraud_model.fallback.as_dict().items() if k != "model_text"},
        "gates": [asdict(g) for g in [*verdicts, challenge]],
    }
    card = render_model_card(bundle)
    folder = store.write_bundle(
        version, fraud_model.main.model.model_text, bundle, card, fallback_text=fraud_model.fallback.model.model_text
    )
    metadata = {
        "candidate": version,
        "bundle": dg.MetadataValue.path(str(folder)),
        "champion_comparison": challenge.reason,
        "decision": decision.outcome,
        "headline": dg.MetadataValue.text(decision.headline()),
        "model_card": dg.MetadataValue.md(card),
        **_policy_metadata(fraud_model),
    }
    if decision.champion_problem:
        metadata["champion_problem"] = decision.champion_problem
    gate_lines = gate_records(decision.gates)
    if decision.outcome == KEEP_CHAMPION:
        store.record(
            {
                "event": "kept_champion",
                "version": version,
                "champion": decision.champion,
                "as_of": as_of,
                "reason": decision.headline(),
                "gates": gate_lines,
            }
        )
        context.log.warning(decision.headline())
        context.add_output_metadata({**metadata, "champion": str(decision.champion), "promoted": False})
        return {"version": version, "path": str(folder), "promoted": False, "champion": decision.champion}
    pointer = store.promote(version, as_of=as_of, reason=decision.headline(), details={"gates": gate_lines})
    context.log.info(decision.headline())
    context.add_output_metadata(
        {**metadata, "champion": version, "previous_champion": str(pointer["previous_version"]), "promoted": True}
    )
    return {"version": version, "path": str(folder), "promoted": True, "champion": version}


@dg.asset(group_name="deployment", deps=["deployed_model", "transaction_features"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def batch_scores(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, registry: ModelRegistry
) -> dg.MaterializeResult:
    """The champion's decisions for the newest day of transactions, routed by its missing-data policy."""
    store = registry.store()
    champion, problem = store.valid_champion()
    if problem:
        raise dg.Failure(description=f"no valid champion, nothing scored: {problem}")
    if champion is None:
        raise dg.Failure(description="no champion in the registry yet: nothing can be scored")
    models = ScoringModels.from_candidate(store.scoring_bundle(champion["version"]))
    with duckdb.get_connection() as con:
        try:
            require_one_night(con, "transaction_features", ["transactions", "chargebacks", "users"])
        except MixedNight as mixed:
            raise dg.Failure(description=str(mixed)) from None
        newest = con.execute(
            "SELECT * FROM transaction_features WHERE event_time >= "
            "(SELECT date_trunc('day', max(event_time)) FROM transaction_features) ORDER BY transaction_id"
        ).df()
        lacking = [f for f in (*models.main.features, *models.fallback.features) if f not in newest.columns]
        if lacking:
            raise dg.Failure(
                description=f"champion {champion['version']} reads {', '.join(dict.fromkeys(lacking))}, which tonight's "
                "transaction_features (another feature spec) does not have: nothing scored"
            )
        decisions = decide(newest, models)
        replace_tables(
            con,
            {"batch_scores": "SELECT *, $version AS model_version FROM decisions"},
            sources={"decisions": decisions},
            params={"version": champion["version"]},
        )
    by_route = decisions.groupby("route").agg(rows=("alert", "size"), alerts=("alert", "sum")).reset_index()
    return dg.MaterializeResult(
        metadata={
            "champion": champion["version"],
            "day": str(newest["event_time"].min().date()) if len(newest) else "none",
            "rows": len(decisions),
            "alerts": int(decisions["alert"].sum()),
            "routes": dg.MetadataValue.md(markdown_table(by_route.to_dict(orient="records"))),
        }
    )
