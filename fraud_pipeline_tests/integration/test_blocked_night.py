"""A blocked night reads as blocked: the candidate still gets its report, drift and backtest, the decision (by which
gate, with its numbers) is the deploy_gate's metadata, a registry-history line, the `run` summary and `champion`'s
list; only the promotion and the batch scores are held back, and the champion stays."""

from __future__ import annotations

import io

import dagster as dg
import pytest

from fraud_pipeline.cli.main import main as cli
from fraud_pipeline.cli.summary import print_summary
from fraud_pipeline.deployment.registry import ModelRegistryStore


@pytest.fixture(scope="module")
def night(blocked_first_night):
    """A first night whose candidate misses an impossible cost margin (the champion-stays wording: test_decision).

    The session's ``blocked_first_night`` (fraud_pipeline_tests/conftest.py), read here and nowhere written.
    """
    return blocked_first_night.resources, blocked_first_night.result


def materialized(result) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def test_a_blocked_candidate_still_gets_its_report_drift_and_backtest(night):
    resources, blocked = night
    assert not blocked.success
    done = materialized(blocked)
    assert {
        "deploy_gate",
        "model_evaluation",
        "outage_replay",
        "backtest",
        "population_drift",
        "evaluation_report",
    } <= done
    assert not {"deployed_model", "batch_scores"} & done
    version = blocked.output_for_node("fraud_model").version
    report = blocked.asset_materializations_for_node("evaluation_report")[0].metadata["report_path"].value
    assert report.endswith(f"{version}/report.html")
    assert ModelRegistryStore(resources["registry"].root).champion() is None
    # only the gate's own check step failed; the promotion path was skipped, nothing else
    failed = {e.step_key for e in blocked.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE}
    assert failed == {"deploy_gate_cost_beats_baselines"}


def test_the_decision_names_the_gate_and_its_numbers_in_the_ui_metadata(night):
    _, blocked = night
    decision = blocked.output_for_node("deploy_gate")
    assert decision.outcome == "blocked" and [g.name for g in decision.blocked_by] == ["cost_beats_baselines"]
    meta = blocked.asset_materializations_for_node("deploy_gate")[0].metadata
    assert meta["decision"].value == "blocked"
    assert meta["blocked_by"].value == ["cost_beats_baselines"]
    headline = meta["headline"].value
    assert headline.startswith(f"candidate {decision.candidate} blocked by cost_beats_baselines (cost_vs_approve_all ")
    assert headline.endswith("no champion yet, nothing is served") and " > bound " in headline
    assert "| cost_beats_baselines | False | cost_vs_approve_all |" in meta["gates"].value


def test_every_gate_check_carries_observed_bound_and_margin_as_numbers(night):
    _, blocked = night
    checks = {e.check_name: e for e in blocked.get_asset_check_evaluations()}
    cost = checks["cost_beats_baselines"]
    assert cost.asset_key == dg.AssetKey("deploy_gate") and not cost.passed
    assert cost.severity == dg.AssetCheckSeverity.ERROR
    observed, bound, margin = (cost.metadata[f"cost_vs_approve_all{s}"] for s in ("", "_bound", "_margin"))
    assert all(isinstance(v, dg.FloatMetadataValue) for v in (observed, bound, margin))
    assert margin.value == pytest.approx(bound.value - observed.value, rel=1e-4) and margin.value < 0
    details = cost.metadata["details"].value
    assert {"max_cost_vs_approve_all", "max_cost_vs_rule", "approve_all_cost", "rule_cost"} <= set(details)
    assert not {"approve_all", "rule"} & set(details)
    for name in ("cohort_floors", "evaluation_scores_reproduce", "unavailable_history_not_misread"):
        numeric = [
            k for k, v in checks[name].metadata.items() if isinstance(v, (dg.FloatMetadataValue, dg.IntMetadataValue))
        ]
        assert any(k.endswith("_margin") for k in numeric), (name, numeric)
    assert checks["cohort_floors"].passed and checks["cohort_floors"].metadata["cohort_floors_missed_margin"].value == 0


def test_the_blocked_night_is_in_the_registry_history_and_champion_shows_it(night, monkeypatch, capsys):
    resources, blocked = night
    store = ModelRegistryStore(resources["registry"].root)
    (refused,) = store.decisions()
    assert refused["event"] == "blocked" and refused["as_of"].startswith("2025-07-01")
    assert refused["blocked_by"] == ["cost_beats_baselines"] and refused["champion"] is None
    (cost,) = [g for g in refused["gates"] if g["name"] == "cost_beats_baselines"]
    assert {m["name"] for m in cost["measures"]} == {"cost_vs_approve_all", "cost_vs_rule"}
    assert all(m["observed"] > m["bound"] for m in cost["measures"])
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(store.root.parent))
    assert cli(["champion"]) == 0
    out = capsys.readouterr().out
    assert "champion: none" in out and "decisions (1 of 1, newest last):" in out
    version = blocked.output_for_node("fraud_model").version
    assert f"2025-07-01  blocked        candidate {version} blocked by cost_beats_baselines (cost_vs_" in out


def test_run_prints_the_decision(night):
    _, blocked = night
    out = io.StringIO()
    print_summary(blocked, out)
    text = out.getvalue()
    version = blocked.output_for_node("fraud_model").version
    assert "BLOCKED (the deploy gate held back the promotion)" in text
    assert f"decision: candidate {version} blocked by cost_beats_baselines (cost_vs_approve_all" in text
    assert (
        f"report: {blocked.asset_materializations_for_node('evaluation_report')[0].metadata['report_path'].value}"
        in text
    )
