"""The backtest of a 7/7/7 run: folds of the run's own design, and an explicit override reported as one."""

import io
from datetime import datetime

import dagster as dg
import pytest

from fraud_pipeline.cli.summary import print_summary
from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS
from fraud_pipeline_tests.conftest import SMALL_WORLD

#: The backtest and everything it reads, without the slower data-contract and leakage checks.
UP_TO_THE_BACKTEST = dg.AssetSelection.assets("backtest").upstream().without_checks() - dg.AssetSelection.assets(
    "landed_files"
)
WEEKLY = {"train_days": 7, "validation_days": 7, "test_days": 7, "min_train_days": 7}


@pytest.fixture(scope="module")
def weekly_run(tmp_path_factory):
    from fraud_pipeline.definitions import default_resources
    from fraud_pipeline.resources import SimulatedWorld

    resources = {
        **default_resources(tmp_path_factory.mktemp("weekly")),
        "world": SimulatedWorld(n_transactions=SMALL_WORLD),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources,
        instance=instance,
        selection=UP_TO_THE_BACKTEST,
        run_config={"ops": {"training_windows": {"config": WEEKLY}}},
    )
    return resources, instance, result


def _days(fold, start="test_start", end="test_end"):
    return (datetime.fromisoformat(fold[end]) - datetime.fromisoformat(fold[start])).days


def test_the_backtest_inherits_a_seven_day_run_design(weekly_run):
    _, _, result = weekly_run
    windows = result.output_for_node("training_windows")
    assert windows.design.label() == "7/7/7"
    backtest = result.output_for_node("backtest")
    folds, design = backtest["folds"], backtest["design"]
    assert len(folds) == 3 and all(_days(f) == 7 for f in folds)
    assert [f["test_end"] for f in folds[1:]] == [f["test_start"] for f in folds[:-1]]
    assert (folds[0]["test_start"], folds[0]["test_end"]) == (
        f"{windows.test_start:%Y-%m-%d}",
        f"{windows.test_end:%Y-%m-%d}",
    )
    assert design["same_as_run"] and design["windows_label"] == "7/7/7 days" and design["shift_days"] == 7
    assert {s["source"] for s in design["settings"].values()} == {"run"}
    assert design["n_folds_requested"] == design["n_folds"] == 3
    evaluation = result.output_for_node("model_evaluation")
    assert design["settings"]["daily_review_capacity"]["value"] == evaluation.review_capacity_k
    assert design["rule_amount_threshold"] == evaluation.rule_amount_threshold
    assert folds[0]["candidates_windows"] and folds[0]["total_cost"] == evaluation.total_cost
    (materialization,) = [
        e.materialization for e in result.get_asset_materialization_events() if e.asset_key.path == ["backtest"]
    ]
    assert materialization.metadata["same_as_run"].value is True
    label = materialization.metadata["design_label"].value
    assert label.startswith("3 of 3 folds of 7/7/7 days") and label.endswith("the run's design")


def test_the_summary_states_the_horizon_and_the_backtests_design(weekly_run):
    _, _, result = weekly_run
    out = io.StringIO()
    print_summary(result, out)
    horizon = result.output_for_node("label_delay_profile")["horizon_days"]
    assert f"maturity horizon {round(horizon, 1):g} days" in out.getvalue()
    assert "backtest: 3 folds of 7/7/7 days (the run's design), savings" in out.getvalue()


def test_an_explicit_backtest_override_is_reported_as_not_the_runs_design(weekly_run):
    resources, instance, _ = weekly_run
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources,
        instance=instance,  # the upstream outputs of the run above
        selection=dg.AssetSelection.assets("backtest"),
        run_config={"ops": {"backtest": {"config": {"test_days": 14, "n_folds": 2}}}},
    )
    backtest = result.output_for_node("backtest")
    folds, design = backtest["folds"], backtest["design"]
    assert [_days(f) for f in folds] == [14, 14]
    assert not design["same_as_run"] and design["differs_from_run"] == ["test_days"]
    assert design["settings"]["test_days"] == {"value": 14, "source": "backtest config", "run": 7}
    assert design["settings"]["train_days"]["source"] == "run"
    assert not any(f["candidates_windows"] for f in folds)
    # on the small world the weekly candidate is far below the two-week folds; each finding names both designs
    (check,) = result.get_asset_check_evaluations()
    findings = backtest["findings"]
    assert not check.passed and check.description == "; ".join(findings)
    assert findings and all("folds of 7/7/14 days" in f and "the candidate's design: 7/7/7 days" in f for f in findings)
