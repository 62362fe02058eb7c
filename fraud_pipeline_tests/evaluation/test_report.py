"""The evaluation report is one self-contained, escaped HTML page."""

import base64
import math

from fraud_pipeline.evaluation.report import format_value, html_table, render_report

PNG = b"\x89PNG\r\n\x1a\nnot-really-an-image"


def _report(**overrides):
    args = dict(
        title="Evaluation of model abc",
        headline={"total_cost": 1234.5, "average_precision": 0.31234, "zzz_extra": 3, "n_frauds": 12},
        plots={"Precision-recall": PNG},
        tables={"Per-cohort metrics": [{"cohort": "channel", "value": "web", "recall": float("nan")}]},
        gates=[{"name": "cost_beats_baselines", "passed": True, "reason": "cheaper"}],
        facts={"as_of": "2025-07-01"},
    )
    return render_report(**{**args, **overrides})


def test_plots_are_embedded_so_the_page_needs_no_other_file():
    html = _report()
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html
    assert 'src="http' not in html and "<script" not in html
    assert html.startswith("<!DOCTYPE html>")


def test_headline_comes_in_the_fixed_order_then_the_rest():
    html = _report()
    assert html.index("total_cost") < html.index("n_frauds") < html.index("zzz_extra")


def test_every_piece_of_text_from_data_is_escaped():
    html = _report(
        title="<script>alert(1)</script>",
        tables={"<b>t</b>": [{"<col>": "<img src=x onerror=alert(1)>"}]},
        gates=[{"name": "g<1>", "passed": False, "reason": "a & b"}],
        plots={'"><script>': PNG},
    )
    assert "<script" not in html and "<img src=x" not in html and "<col>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a &amp; b" in html


def test_gates_show_blocked_when_any_gate_fails_and_pass_otherwise():
    assert "all pass" in _report() and "blocked" not in _report()
    failing = _report(gates=[{"name": "cost_beats_baselines", "passed": False, "reason": "too expensive"}])
    assert "blocked" in failing and 'class="text fail">FAIL' in failing


def test_missing_values_stay_empty_never_zero():
    assert format_value(None) == "" and format_value(math.nan) == ""
    assert format_value(0.0) == "0" and format_value(12345.6) == "12,346" and format_value(True) == "yes"
    assert '<td class="num"></td>' in html_table([{"x": None}])
    assert "no rows" in html_table([])
