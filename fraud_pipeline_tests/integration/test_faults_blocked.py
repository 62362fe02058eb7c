"""Issue 19 on the default world: each fault, injected into the production code path, turns a blocking
ERROR check red, the deploy is skipped and the champion stays; the clean run passes every check and deploys.

One clean run of the whole job builds the default 500k world once for the session (conftest.py's
``default_world_night``, which test_population.py reads too); each fault then re-runs only the graph from the
asset it corrupts to the deploy, with the real function patched where the pipeline looks it up
(``fraud_pipeline_tests/faults.py``), and restores what it changed.
"""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import pytest

from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.evaluation.assets import BacktestConfig, backtest
from fraud_pipeline.evaluation.checks import backtest_spread
from fraud_pipeline.evaluation.metrics import evaluate_decisions
from fraud_pipeline.features.checks import FutureConfig, OracleConfig, features_ignore_the_future, features_match_oracle
from fraud_pipeline.training.model import score
from fraud_pipeline.training.training_set import load_split
from fraud_pipeline_tests import faults

#: The checks a clean run may fail: the simulated world's cohort mix really shifts (WARN).
EXPECTED_WARNINGS = {"cohort_mix_shift"}
DEPLOY = dg.AssetSelection.assets("deployed_model").upstream()


@pytest.fixture(scope="module")
def default_world(default_world_night):
    """The default 500k world, the whole job run once, clean: a champion in the registry (conftest.py)."""
    return default_world_night.instance, default_world_night.resources, default_world_night.result


def run_from(default_world, asset: str, **config) -> dg.ExecuteInProcessResult:
    """The graph from ``asset`` to the deploy, with every check on the way, as a night would run it."""
    instance, resources, _ = default_world
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.assets(asset).downstream() & DEPLOY,
        run_config=config or None,
        raise_on_error=False,
    )


def checks(result) -> dict:
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def champion(default_world) -> dict:
    return ModelRegistryStore(default_world[1]["registry"].root).champion()


def assert_blocked(default_world, result, check: str, before: dict) -> str:
    """``check`` failed with ERROR, the deploy did not run, and the champion is the one before.

    A gate on the candidate (a check on deploy_gate) holds back only the promotion: the candidate is
    still evaluated and deploy_gate records the decision, naming the check.
    """
    found = checks(result)
    assert check in found, sorted(found)
    assert not found[check].passed and found[check].severity == dg.AssetCheckSeverity.ERROR, found[check].description
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "deployed_model" not in materialized
    if found[check].asset_key == dg.AssetKey("deploy_gate"):
        assert {"model_evaluation", "outage_replay", "deploy_gate"} <= materialized
        decision = result.output_for_node("deploy_gate")
        assert decision.outcome == "blocked" and check in {g.name for g in decision.blocked_by}
    assert champion(default_world) == before
    return found[check].description


def test_the_clean_default_world_passes_every_check_and_deploys(default_world):
    _, _, clean = default_world
    assert clean.success
    found = checks(clean)
    new = {
        "model_learnt_from_its_train_split",
        "threshold_chosen_on_validation",
        "model_matrix_keeps_absence",
        "evaluation_scores_reproduce",
        "features_ignore_the_future",
        "features_match_oracle",
        "windows_valid",
    }
    assert new <= set(found)
    red = {name for name, e in found.items() if not e.passed}
    assert red == EXPECTED_WARNINGS, {name: found[name].description for name in red}
    assert "8 intra-day cutoffs" in found["features_ignore_the_future"].description
    assert "is not far above its history" in found["backtest_spread"].description
    deployed = clean.output_for_node("deployed_model")
    assert deployed["promoted"] and champion(default_world)["version"] == deployed["version"]


def test_an_end_of_day_chargeback_batch_is_blocked_in_every_seed(default_world, monkeypatch):
    """The seed's leak: a 9:10 transaction sees the chargeback reported at 17:00 the same day."""
    _, resources, _ = default_world
    before = champion(default_world)
    faults.end_of_day_chargeback_counts(monkeypatch)
    try:
        result = run_from(default_world, "transaction_features")
        future = assert_blocked(default_world, result, "features_ignore_the_future", before)
        assert "n_prior_chargebacks_30d" in future and "user_chargeback" in future
        assert_blocked(default_world, result, "features_match_oracle", before)
        for seed in range(1, 6):
            ignored = features_ignore_the_future(
                config=FutureConfig(seed=seed), duckdb=resources["duckdb"], feature_spec=resources["feature_spec"]
            )
            assert not ignored.passed, seed
            matched = features_match_oracle(
                config=OracleConfig(seed=seed), duckdb=resources["duckdb"], feature_spec=resources["feature_spec"]
            )
            assert not matched.passed and matched.metadata["mismatches"].value > 0, seed
    finally:
        monkeypatch.undo()
        restored = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            resources=resources,
            instance=default_world[0],
            selection=dg.AssetSelection.assets("transaction_features"),
        )
        assert all(e.passed for e in restored.get_asset_check_evaluations())


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_null_filled_in_the_model_matrix_is_blocked(default_world, monkeypatch, fill):
    before = champion(default_world)
    faults.filled_model_matrix(monkeypatch, fill)
    result = run_from(default_world, "fraud_model")
    reason = assert_blocked(default_world, result, "model_matrix_keeps_absence", before)
    assert "training matrix is not the table" in reason and "filled" in reason
    assert "model file shows no NaN" in reason


def test_a_model_fitted_on_train_and_test_rows_is_blocked_and_looks_too_good(default_world, monkeypatch):
    _, resources, clean = default_world
    before = champion(default_world)
    faults.trained_on_train_and_test(monkeypatch)
    result = run_from(default_world, "fraud_model")
    reason = assert_blocked(default_world, result, "model_learnt_from_its_train_split", before)
    assert "learnt from train+test" in reason and "trained on other rows than its train split" in reason
    # had it been evaluated, it would have looked far better than its own backtest: the backtest's WARN says so
    leaky = result.output_for_node("fraud_model")
    with resources["duckdb"].get_connection() as con:
        test = load_split(con, "test")
    test["score"] = score(leaky.main.model, test)
    evaluation = clean.output_for_node("model_evaluation")
    headline = evaluate_decisions(
        test, leaky.threshold, resources["costs"].cost_model(), evaluation.rule_amount_threshold, 50
    )
    assert headline["average_precision"] > evaluation.average_precision + 0.2
    too_good = replace(
        evaluation,
        model_version=leaky.version,
        average_precision=headline["average_precision"],
        total_cost=headline["total_cost"],
    )
    folds = backtest(
        context=dg.build_asset_context(),
        config=BacktestConfig(),
        training_windows=clean.output_for_node("training_windows"),
        fraud_model=leaky,
        model_evaluation=too_good,
        duckdb=resources["duckdb"],
        costs=resources["costs"],
    )
    warned = backtest_spread(backtest=folds)
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert "better than its own history: look for a leak" in warned.description
    assert "the backtest retrained the candidate's own windows" in warned.description


def test_a_threshold_chosen_on_the_test_window_is_blocked(default_world, monkeypatch):
    _, resources, _ = default_world
    before = champion(default_world)
    faults.threshold_on_test(monkeypatch, resources["duckdb"].get_connection)
    result = run_from(default_world, "fraud_model")
    reason = assert_blocked(default_world, result, "threshold_chosen_on_validation", before)
    assert "thresholded on other rows than validation" in reason and "of the test split" in reason


def test_windows_planned_with_horizon_zero_are_blocked(default_world, monkeypatch):
    _, resources, clean = default_world
    before = champion(default_world)
    faults.windows_with_horizon_zero(monkeypatch)
    try:
        result = run_from(default_world, "training_windows")
        assert result.output_for_node("training_windows").horizon_days == 0
        reason = assert_blocked(default_world, result, "windows_valid", before)
        measured = clean.output_for_node("label_delay_profile")["horizon_days"]
        assert f"measured {measured:g} days" in reason
    finally:
        monkeypatch.undo()
        dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            resources=resources,
            instance=default_world[0],
            selection=dg.AssetSelection.assets("training_windows"),
        )
