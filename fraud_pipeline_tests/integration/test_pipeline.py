"""End to end: the whole graph on a small simulated world in a temporary DuckDB and registry."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import duckdb
import pandas as pd
import pytest

from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, fraud_pipeline_job
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.resources import DeployGates

TABLES = ("users", "transactions", "chargebacks", "transaction_labels", "transaction_features", "training_set")


def materialize_all(resources, instance=None):
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        selection=fraud_pipeline_job.selection,
        raise_on_error=False,
    )


def check_results(result):
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def table(resources, name):
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").df()


@pytest.fixture(scope="module")
def clean_run(clean_night, tmp_path_factory):
    """The session's clean_night (conftest.py) over a copy of its folder that this module may write to."""
    return clean_night.copy_to(tmp_path_factory.mktemp("clean")), clean_night.result


def test_clean_world_deploys_a_champion(clean_run):
    resources, result = clean_run
    assert result.success
    checks = check_results(result)
    # The simulated world's user base does change (campaign, new region): that warning is the point.
    assert not checks["cohort_mix_shift"].passed and checks["cohort_mix_shift"].severity == dg.AssetCheckSeverity.WARN
    others = {k: e for k, e in checks.items() if k != "cohort_mix_shift"}
    assert others and all(e.passed for e in others.values()), {
        k: e.description for k, e in others.items() if not e.passed
    }
    expected = {
        "transaction_contract",
        "chargeback_contract",
        "windows_valid",
        "mature_labels_only",
        "min_frauds_per_window",
        "cost_beats_baselines",
        "cohort_floors",
        "backtest_spread",
        "champion_realised_vs_promised",
    }
    assert expected <= set(checks)
    champion = ModelRegistryStore(resources["registry"].root).champion()
    deployed = result.output_for_node("deployed_model")
    assert champion["version"] == deployed["version"]
    bundle = ModelRegistryStore(resources["registry"].root).read_bundle(champion["version"])
    assert bundle["evaluation"]["total_cost"] < bundle["evaluation"]["approve_all_cost"]
    assert {"<7d", "7-30d", ">30d"} <= {row["value"] for row in bundle["evaluation"]["cohorts"]}


def test_every_run_reports_cohorts_decomposition_drift_and_folds(clean_run):
    _, result = clean_run
    evaluation = result.output_for_node("model_evaluation")
    assert {"calibration_ratio", "recall_low", "recall_high"} <= set(evaluation.cohorts[0])
    assert {r["metric"] for r in evaluation.decomposition_validation_to_test} == {
        "cost_per_transaction",
        "average_precision",
    }
    drift = result.output_for_node("population_drift")
    assert {r["feature"] for r in drift["features"]} >= {"amount", "account_age_days"}
    assert {r["cohort"] for r in drift["cohort_mix"]} == {"account_age", "channel", "region"}
    backtest = result.output_for_node("backtest")
    folds = backtest["folds"]
    assert len(folds) >= 2 and all(f["n_frauds"] > 0 for f in folds)
    assert [f["test_end"] for f in folds[1:]] == [f["test_start"] for f in folds[:-1]]
    # the backtest inherits the run's design, so fold 0 retrains the candidate on its own windows: same cost
    assert backtest["design"]["same_as_run"] and backtest["design"]["windows_label"] == "49/14/21 days"
    assert folds[0]["candidates_windows"] and not any(f["candidates_windows"] for f in folds[1:])
    assert folds[0]["total_cost"] == evaluation.total_cost
    assert folds[0]["n_frauds"] == evaluation.n_frauds
    assert result.output_for_node("champion_monitoring")["status"] == "no_champion"


def test_every_feature_row_matches_its_transaction(clean_run):
    from fraud_pipeline.features.spec import ID_COLUMNS, FeatureSpec, default_spec

    resources, result = clean_run
    transactions = table(resources, "transactions")
    features = table(resources, "transaction_features")
    assert len(features) == len(transactions)
    # the run's spec (the default one here) decides the columns, and the candidate records it for serving
    assert list(features.columns) == [*ID_COLUMNS, *default_spec().names]
    candidate = result.output_for_node("fraud_model")
    assert FeatureSpec.from_dict(candidate.as_dict()["feature_spec"]) == default_spec()
    assert candidate.main.model.features == default_spec().names
    assert candidate.fallback.model.features == default_spec().fallback
    labels = table(resources, "transaction_labels")
    training = table(resources, "training_set")
    mature = labels.set_index("transaction_id")["is_mature"]
    assert mature.loc[training["transaction_id"]].all()


def test_same_seed_and_as_of_give_identical_tables_and_model(clean_run, tmp_path):
    resources, result = clean_run
    from fraud_pipeline.definitions import default_resources

    again = {**default_resources(tmp_path), "world": resources["world"]}
    second = materialize_all(again)
    assert second.success
    for name in TABLES:
        pd.testing.assert_frame_equal(table(resources, name), table(again, name), check_exact=True)
    first_model = result.output_for_node("fraud_model")
    second_model = second.output_for_node("fraud_model")
    assert first_model.main.model.model_text == second_model.main.model.model_text
    assert first_model.version == second_model.version


def test_a_failing_gate_blocks_the_deploy_and_keeps_the_champion(clean_run, tmp_path):
    resources, result = clean_run
    store = ModelRegistryStore(resources["registry"].root)
    before = store.champion()
    strict = {**resources, "gates": DeployGates(cost_margin=0.99)}
    blocked = materialize_all(strict)
    checks = check_results(blocked)
    assert not checks["cost_beats_baselines"].passed
    assert checks["cost_beats_baselines"].severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key.path[-1] for e in blocked.get_asset_materialization_events()}
    assert "deployed_model" not in materialized
    assert store.champion() == before


def deploy_directly(resources, result, evaluation, fraud_model=None, label_delay_profile=None):
    """Calls the deploy asset outside any run, as a user materialising it alone would."""
    from fraud_pipeline.deployment.assets import deployed_model

    return deployed_model(
        context=dg.build_asset_context(),
        fraud_model=fraud_model or result.output_for_node("fraud_model"),
        model_evaluation=evaluation,
        outage_replay=result.output_for_node("outage_replay"),
        training_windows=result.output_for_node("training_windows"),
        label_delay_profile=label_delay_profile or result.output_for_node("label_delay_profile"),
        duckdb=resources["duckdb"],
        registry=resources["registry"],
        gates=resources["gates"],
        costs=resources["costs"],
    )


def test_deploy_alone_refuses_a_candidate_that_fails_a_gate(clean_run):
    resources, result = clean_run
    store = ModelRegistryStore(resources["registry"].root)
    before = store.champion()
    evaluation = result.output_for_node("model_evaluation")
    evaluation = replace(evaluation, total_cost=evaluation.approve_all_cost * 2)
    with pytest.raises(dg.Failure, match="cost_beats_baselines"):
        deploy_directly(resources, result, evaluation)
    assert store.champion() == before
    assert store.history()[-1]["event"] == "refused"


def test_deploy_alone_refuses_an_evaluation_of_another_candidate(clean_run):
    resources, result = clean_run
    evaluation = replace(result.output_for_node("model_evaluation"), model_version="someone-else")
    with pytest.raises(dg.Failure, match="evaluation_matches_candidate"):
        deploy_directly(resources, result, evaluation)


def test_deploy_alone_refuses_a_candidate_below_a_cohort_floor(clean_run):
    resources, result = clean_run
    store = ModelRegistryStore(resources["registry"].root)
    before = store.champion()
    evaluation = result.output_for_node("model_evaluation")
    cohorts = [
        {**row, "recall": 0.0, "recall_low": 0.0, "recall_high": 0.0} if row["value"] == ">30d" else row
        for row in evaluation.cohorts
    ]
    with pytest.raises(dg.Failure, match="cohort_floors"):
        deploy_directly(resources, result, replace(evaluation, cohorts=cohorts))
    assert store.champion() == before


def test_deploy_alone_recomputes_what_the_candidate_learnt_from_and_was_thresholded_on(clean_run):
    """The provenance gates run again in the deploy: a candidate materialised on its own cannot skip them."""
    from fraud_pipeline.lib.costs import CostModel
    from fraud_pipeline.training.candidate import train_candidate
    from fraud_pipeline.training.model import ModelParams
    from fraud_pipeline.training.training_set import load_split

    resources, result = clean_run
    store = ModelRegistryStore(resources["registry"].root)
    before = store.champion()
    candidate, evaluation = result.output_for_node("fraud_model"), result.output_for_node("model_evaluation")
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        train, validation, test = (load_split(con, split) for split in ("train", "validation", "test"))
    leaky = train_candidate(pd.concat([train, test]), validation, ModelParams(), CostModel())[0]
    leaky = leaky.with_run(candidate.params, candidate.windows)
    with pytest.raises(dg.Failure, match="model_learnt_from_its_train_split: the main model learnt from train\\+test"):
        deploy_directly(resources, result, replace(evaluation, model_version=leaky.version), fraud_model=leaky)
    nudged = replace(candidate, main=replace(candidate.main, threshold=candidate.threshold * 1.5))
    with pytest.raises(dg.Failure, match="threshold_chosen_on_validation"):
        deploy_directly(resources, result, evaluation, fraud_model=nudged)
    later_horizon = {**result.output_for_node("label_delay_profile")}
    later_horizon["horizon_days"] += 30
    with pytest.raises(dg.Failure, match="windows_valid: .*after .*as_of minus the measured horizon"):
        deploy_directly(resources, result, evaluation, label_delay_profile=later_horizon)
    assert store.champion() == before


def test_the_deploy_decision_does_not_wait_for_the_steps_that_only_inform(clean_run):
    """backtest, population_drift and the report are ready beside deployed_model; they run after it."""
    _, result = clean_run
    order = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert {"deployed_model", "backtest", "population_drift", "evaluation_report"} <= set(order)
    for informing in ("backtest", "population_drift", "evaluation_report"):
        assert order.index(informing) > order.index("deployed_model"), order
