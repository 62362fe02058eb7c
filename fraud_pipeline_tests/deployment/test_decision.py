"""The deploy decision and the gates' numbers: one name per gate, observed / bound / margin, a headline people read."""

from __future__ import annotations

import math
from dataclasses import asdict

import dagster as dg
import pytest

from fraud_pipeline.deployment.decision import BLOCKED, KEEP_CHAMPION, PROMOTE, deploy_decision
from fraud_pipeline.deployment.gates import (
    GateResult,
    challenger_gate,
    cost_gate,
    fraud_count_gate,
    measure,
    outage_gate,
)
from fraud_pipeline.deployment.model_card import _measures
from fraud_pipeline.lib.checks import gate_check_result


@pytest.mark.parametrize(
    "observed, bound, at_most, margin, holds",
    [(5, 7, True, 2, True), (9, 7, True, -2, False), (0.5, 0.4, False, 0.1, True), (None, 1, True, -math.inf, False)],
)
def test_a_measure_says_how_much_room_is_left_whichever_way_the_bound_points(observed, bound, at_most, margin, holds):
    m = measure("x", observed, bound, at_most)
    assert m.margin == pytest.approx(margin) and m.holds() is holds


def test_a_missed_bound_reads_as_a_comparison():
    assert measure("cost_vs_rule", 12_345.0, 11_000.0).shown() == "cost_vs_rule 12,345 > bound 11,000"
    assert measure("share", 0.991, 0.99, at_most=False).shown() == "share 0.991 >= bound 0.99"


class _Evaluation:
    """The three numbers the cost gate reads."""

    def __init__(self, total_cost, approve_all_cost=13_000.0, rule_cost=12_000.0):
        self.total_cost, self.approve_all_cost, self.rule_cost = total_cost, approve_all_cost, rule_cost


def test_the_cost_gate_is_named_as_its_check_and_names_its_bounds_for_what_they_are():
    gate = cost_gate(_Evaluation(12_345.0), margin=0.05)
    assert gate.name == "cost_beats_baselines" and not gate.passed
    assert gate.details["max_cost_vs_approve_all"] == pytest.approx(12_350.0)
    assert gate.details["max_cost_vs_rule"] == pytest.approx(11_400.0)
    assert not {"approve_all", "rule"} & set(gate.details)
    assert [m.name for m in gate.missed()] == ["cost_vs_rule"]
    assert cost_gate(_Evaluation(9_000.0), margin=0.05).passed


def test_a_check_result_carries_each_number_as_numeric_metadata_dagster_plots():
    gate = fraud_count_gate({"train": {"n_frauds": 30}, "validation": {"n_frauds": 12}}, min_frauds=20)
    result = gate_check_result(gate)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    meta = result.metadata
    assert meta["fewest_frauds_in_a_window"] == dg.MetadataValue.int(12)
    assert meta["fewest_frauds_in_a_window_bound"] == dg.MetadataValue.int(20)
    assert meta["fewest_frauds_in_a_window_margin"] == dg.MetadataValue.float(-8.0)
    passing = gate_check_result(cost_gate(_Evaluation(9_000.0), margin=0.05)).metadata
    assert isinstance(passing["cost_vs_approve_all_margin"], dg.FloatMetadataValue)
    assert passing["cost_vs_approve_all_margin"].value == pytest.approx(12_350.0 - 9_000.0)


def _outage(identified, full, outage):
    return {
        "identified_share": identified,
        "n_affected": 100,
        "mean_score_affected_frauds_full_history": full,
        "mean_score_affected_frauds_outage": outage,
    }


def test_the_outage_gate_fails_only_when_unrecognised_and_moved_and_says_by_how_much():
    misread = outage_gate(_outage(0.0, 0.4, 0.1))
    assert misread.name == "unavailable_history_not_misread" and not misread.passed
    shift = {m.name: m for m in misread.measures}["score_shift_factor"]
    assert shift.observed == pytest.approx(4.0) and shift.bound == 1.25 and not shift.holds()
    assert outage_gate(_outage(1.0, 0.4, 0.1)).passed
    assert outage_gate(_outage(0.0, 0.4, 0.41)).passed


def _gates(failing: bool) -> list[GateResult]:
    cost = cost_gate(_Evaluation(12_345.0 if failing else 9_000.0), margin=0.05)
    return [GateResult("windows_valid", True, "fine", measures=(measure("window_problems", 0, 0),)), cost]


def test_a_failed_gate_blocks_and_the_headline_names_it_with_its_numbers_and_who_stays():
    decision = deploy_decision("2025-07-01", "cand", "champ", _gates(failing=True), None)
    assert decision.outcome == BLOCKED and [g.name for g in decision.blocked_by] == ["cost_beats_baselines"]
    assert decision.headline() == (
        "candidate cand blocked by cost_beats_baselines (cost_vs_rule 12,345 > bound 11,400); champion champ stays"
    )
    record = decision.record()
    assert record["event"] == "blocked" and record["blocked_by"] == ["cost_beats_baselines"]
    (cost,) = [g for g in record["gates"] if g["name"] == "cost_beats_baselines"]
    assert {m["name"]: m["margin"] for m in cost["measures"]}["cost_vs_rule"] == pytest.approx(11_400.0 - 12_345.0)
    first = deploy_decision("2025-07-01", "cand", None, _gates(failing=True), None)
    assert first.headline().endswith("no champion yet, nothing is served")


def test_a_guarding_checks_record_blocks_too():
    decision = deploy_decision("2025-07-01", "cand", "champ", _gates(failing=False), None, ["x:y failed: z"])
    assert decision.outcome == BLOCKED and "x:y failed: z" in decision.headline()


def test_passing_every_gate_promotes_unless_the_champion_is_cheaper():
    promote = deploy_decision("d", "cand", "champ", _gates(False), challenger_gate(9_000.0, 9_500.0, 0.02))
    assert promote.outcome == PROMOTE and promote.headline().startswith("promoted cand (champion was champ)")
    keep = deploy_decision("d", "cand", "champ", _gates(False), challenger_gate(9_000.0, 5_000.0, 0.02))
    assert keep.outcome == KEEP_CHAMPION and not keep.blocked_by
    assert keep.headline().startswith("kept the champion champ; candidate cand passed every gate")
    assert "limit 5,100" in keep.headline()


def test_the_model_card_shows_each_gates_numbers():
    gate = cost_gate(_Evaluation(12_345.0), margin=0.05)
    shown = _measures(asdict(gate)["measures"])
    assert shown == "cost_vs_approve_all 12,345 <= bound 12,350; cost_vs_rule 12,345 > bound 11,400"


def test_the_cohort_floors_name_each_judged_cohort_and_the_one_below_its_floor():
    from fraud_pipeline.deployment.gates import cohort_floor_gate
    from fraud_pipeline.evaluation.result import CohortFloors

    floors = CohortFloors()
    healthy = {"savings_vs_approve_all_pct": 0.3, "recall": 0.4, "calibration_ratio": 1.0, "n_frauds": 99}
    cohorts = [
        {"cohort": "channel", "value": "ecommerce", **healthy},
        {"cohort": "channel", "value": "card_present", **healthy, "recall": 0.01},
        {"cohort": "region", "value": "R9", **healthy, "n_frauds": 0},
    ]
    gate = cohort_floor_gate(cohorts, floors)
    names = {m.name for m in gate.measures}
    assert {"channel_ecommerce_recall", "channel_card_present_recall", "cohort_floors_missed"} <= names
    assert not any(n.startswith("region_R9") for n in names)
    decision = deploy_decision("d", "cand", "champ", [gate], None)
    assert f"channel_card_present_recall 0.01 < bound {floors.min_recall:g}" in decision.headline()


def test_a_history_line_is_strict_json_even_when_a_number_is_missing():
    import json

    missing = GateResult(
        "labels_complete_enough", False, "empty split", measures=(measure("lowest", None, 0.95, False),)
    )
    record = deploy_decision("d", "cand", None, [missing], None).record()
    line = json.dumps(record, allow_nan=False)
    assert json.loads(line)["gates"][0]["measures"][0]["observed"] is None
