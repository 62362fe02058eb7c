"""The evaluation report: one self-contained HTML page with the headline metrics, gates, plots and tables."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

from fraud_pipeline.evaluation.result import HEADLINE
from fraud_pipeline.lib.plots import (
    cohort_bars_png,
    drift_bars_png,
    precision_recall_png,
)

if TYPE_CHECKING:
    from fraud_pipeline.evaluation.result import ModelEvaluation
    from fraud_pipeline.training.candidate import Candidate

#: Headline metrics shown first, in this order, when present.
HEADLINE_ORDER = (*HEADLINE, "threshold")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""


def format_value(value) -> str:
    """A cell's text: numbers rounded for reading, missing values as an empty cell, never 0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def html_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Records as an HTML table; every header and cell is escaped."""
    if not rows:
        return "<p><em>no rows</em></p>"
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))

    def cell(tag: str, value) -> str:
        kind = "text" if isinstance(value, str) else "num"
        return f'<{tag} class="{kind}">{escape(format_value(value))}</{tag}>'

    head = "".join(cell("th", c) for c in columns)
    body = "".join("<tr>" + "".join(cell("td", row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gates_table(gates: Sequence[Mapping]) -> str:
    rows = "".join(
        f'<tr><td class="text">{escape(str(g["name"]))}</td>'
        f'<td class="text {"pass" if g["passed"] else "fail"}">{"PASS" if g["passed"] else "FAIL"}</td>'
        f'<td class="text">{escape(str(g.get("reason", "")))}</td></tr>'
        for g in gates
    )
    return f'<table><thead><tr><th class="text">gate</th><th class="text">verdict</th><th class="text">reason</th></tr></thead><tbody>{rows}</tbody></table>'


def render_report(
    title: str,
    headline: Mapping,
    plots: Mapping[str, bytes],
    tables: Mapping[str, Sequence[Mapping]] | None = None,
    gates: Sequence[Mapping] | None = None,
    facts: Mapping[str, object] | None = None,
) -> str:
    """Renders the report as one HTML page with every image embedded, so the file can be mailed alone.

    Args:
        title: The page title (e.g. the model version).
        headline: Metric name -> value; :data:`HEADLINE_ORDER` first, then the rest alphabetically.
        plots: Caption -> PNG bytes, in display order.
        tables: Caption -> rows, in display order.
        gates: Rows with ``name``, ``passed`` and ``reason``.
        facts: Short key -> value lines shown under the title (as_of, windows, ...).

    Returns:
        The HTML text. Every piece of text that came from data is escaped.
    """
    keys = [k for k in HEADLINE_ORDER if k in headline] + sorted(k for k in headline if k not in HEADLINE_ORDER)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if facts:
        parts.append(
            "<ul>"
            + "".join(f"<li><b>{escape(str(k))}</b>: {escape(format_value(v))}</li>" for k, v in facts.items())
            + "</ul>"
        )
    if gates is not None:
        verdict = all(g["passed"] for g in gates)
        parts.append(
            f'<h2>Deploy gates: <span class="{"pass" if verdict else "fail"}">'
            f"{'all pass' if verdict else 'blocked'}</span></h2>"
        )
        parts.append(_gates_table(gates))
    parts.append("<h2>Headline metrics (test window)</h2>")
    parts.append(html_table([{"metric": k, "value": headline[k]} for k in keys], ["metric", "value"]))
    for caption, png in plots.items():
        parts.append(f"<h2>{escape(caption)}</h2>")
        parts.append(
            f'<img alt="{escape(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        )
    for caption, rows in (tables or {}).items():
        parts.append(f"<h2>{escape(caption)}</h2>")
        parts.append(html_table(rows))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


#: Columns of the per-cohort table in the report.
COHORT_COLUMNS = (
    "cohort",
    "value",
    "n_transactions",
    "n_frauds",
    "total_cost",
    "savings_vs_approve_all",
    "average_precision",
    "precision",
    "recall",
)


def drift_sections(population_drift: dict | None) -> tuple[dict[str, bytes], dict[str, list[dict]]]:
    """Plots and tables of a ``population_drift`` result (feature rows and cohort mix); empty without one."""
    if not population_drift:
        return {}, {}
    features = list(population_drift.get("features") or [])
    plots = {"Feature drift (PSI)": drift_bars_png(features)} if any("psi" in r for r in features) else {}
    tables = {"Feature drift": features, "Cohort mix": list(population_drift.get("cohort_mix") or [])}
    return plots, {k: v for k, v in tables.items() if v}


def build_report(
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    is_fraud,
    scores,
    gates: list[dict],
    population_drift: dict | None = None,
) -> tuple[str, dict[str, bytes]]:
    """The report's HTML and its plots (caption -> PNG) for one candidate."""
    plots = {
        "Precision-recall on the test window": precision_recall_png(is_fraud, scores, fraud_model.threshold),
        "Per-cohort metrics": cohort_bars_png(model_evaluation.cohorts),
    }
    drift_plots, drift_tables = drift_sections(population_drift)
    plots.update(drift_plots)
    windows = fraud_model.windows.as_dict()
    facts = {
        "as_of": windows["as_of"],
        "train": f"{windows['train_start']} .. {windows['train_end']}",
        "validation": f"{windows['validation_start']} .. {windows['validation_end']}",
        "test": f"{windows['test_start']} .. {windows['test_end']}",
        "maturity horizon (days)": windows["horizon_days"],
        "best iteration": fraud_model.main.model.best_iteration,
    }
    headline = {k: v for k, v in model_evaluation.as_dict().items() if k not in ("cohorts", "model_version")}
    cohorts = [{c: row.get(c) for c in COHORT_COLUMNS} for row in model_evaluation.cohorts]
    html = render_report(
        f"Evaluation of model {fraud_model.version}",
        headline,
        plots,
        tables={"Per-cohort metrics": cohorts, **drift_tables},
        gates=gates,
        facts=facts,
    )
    return html, plots
