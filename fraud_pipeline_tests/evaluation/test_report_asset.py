"""The evaluation_report asset on a small world: a blocked candidate gets its report, the same run the same bytes."""

import dagster as dg
import pytest

from fraud_pipeline.deployment.gates import cost_gate
from fraud_pipeline.evaluation.assets import ReportConfig, evaluation_report
from fraud_pipeline.evaluation.report import ESTIMATE_MEANINGS
from fraud_pipeline.lib.markdown import html_text
from fraud_pipeline.monitoring.estimate import STATUSES

#: A margin no model meets: the candidate must beat approve-all and the rule by 99%.
IMPOSSIBLE_MARGIN = 0.99
INPUTS = (
    "fraud_model",
    "model_evaluation",
    "outage_replay",
    "backtest",
    "population_drift",
    "label_delay_profile",
    "champion_estimate",
)


@pytest.fixture(scope="module")
def blocked_night(blocked_first_night):
    night = blocked_first_night
    return night.result, night.resources, night.instance, night.folder


def test_a_blocked_candidate_gets_a_report_that_says_what_blocked_it(blocked_night):
    result, _, _, folder = blocked_night
    evaluation = result.output_for_node("model_evaluation")
    blocking = cost_gate(evaluation, IMPOSSIBLE_MARGIN)
    assert not blocking.passed
    metadata = result.asset_materializations_for_node("evaluation_report")[0].metadata
    version = result.output_for_node("fraud_model").version
    report = folder / "registry" / "models" / version / "report.html"
    assert metadata["report_path"].value == str(report) and metadata["decision"].value == "blocked"
    html = report.read_text(encoding="utf-8")
    assert "BLOCKED" in html and f"blocked by {blocking.name}" in html and "no champion yet" in html
    for section in (
        "cost",
        "estimate",
        "cohorts",
        "calibration",
        "backtest",
        "outage",
        "drift",
        "importance",
        "maturity",
    ):
        assert f'<h2 id="{section}">' in html
    assert 'src="http' not in html and "<script" not in html


def test_the_first_nights_report_says_there_is_no_champion_to_estimate(blocked_night):
    result, _, _, folder = blocked_night
    estimate = result.output_for_node("champion_estimate")
    assert estimate.status == "no_champion" and estimate.estimate is None
    version = result.output_for_node("fraud_model").version
    html = (folder / "registry" / "models" / version / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<h2 id="estimate">') : html.index('<h2 id="cohorts">')]
    assert html_text(f"No estimate tonight: {STATUSES['no_champion']}.") in section
    assert (
        html_text(ESTIMATE_MEANINGS["no_champion"]) in section and "No champion estimated as of 2025-07-01" in section
    )
    assert "<table" not in section and "nan" not in section.lower()


def test_the_report_asset_writes_the_same_bytes_for_the_same_run(blocked_night):
    result, resources, instance, folder = blocked_night
    version = result.output_for_node("fraud_model").version
    report = folder / "registry" / "models" / version / "report.html"
    first = report.read_bytes()
    evaluation_report(
        context=dg.build_asset_context(instance=instance),
        config=ReportConfig(),
        **{name: result.output_for_node(name) for name in INPUTS},
        **{name: resources[name] for name in ("duckdb", "registry", "gates", "costs")},
    )
    assert report.read_bytes() == first
