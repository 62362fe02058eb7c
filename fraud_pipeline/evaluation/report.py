"""The evaluation report: one self-contained HTML page a risk lead reads, pure (data in, HTML out).

The page opens with the decision and why, then the money (cost and savings with intervals, the
comparison with the champion), the populations (cohorts with intervals, the decision policy's
per-cohort thresholds against the single one, drift beside the cohort mix), the serving champion's estimated
performance on recent traffic whose labels have not matured, how the scores behave (cost against threshold,
calibration, ranking, what the model relies on)
and how far to trust all of it (backtest folds, outage replay, label maturity). Every image is an
inline PNG, nothing is fetched, and every string that came from data goes through
:func:`fraud_pipeline.lib.markdown.html_text`. The same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraud_pipeline.deployment.decision import BLOCKED, KEEP_CHAMPION, PROMOTE
from fraud_pipeline.deployment.registry import ModelRegistryStore, RegistryError
from fraud_pipeline.evaluation.metrics import (
    DAY_BOOTSTRAP_METRICS,
    POLICY_VS_SINGLE_COLUMNS,
    evaluate_decisions,
    wilson_interval,
)
from fraud_pipeline.evaluation.result import HEADLINE, ModelEvaluation
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.markdown import html_text
from fraud_pipeline.lib.plots import (
    cohort_bars_png,
    cost_curve_png,
    drift_bars_png,
    folds_png,
    importance_png,
    maturation_curve_png,
    precision_recall_png,
    reliability_png,
)
from fraud_pipeline.lib.policy import DecisionPolicy, policy_of
from fraud_pipeline.monitoring.calibration import Calibration
from fraud_pipeline.monitoring.estimate import ESTIMATE_COLUMNS, ESTIMATED, STATUSES, ChampionEstimate, cost_overrun
from fraud_pipeline.monitoring.estimate import KINDS as ESTIMATE_KINDS
from fraud_pipeline.training.model import TrainedModel, score

#: Headline metrics shown first, in this order, when present.
HEADLINE_ORDER = (*HEADLINE, "threshold")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
.decision { border-left: 0.4em solid #888; padding: 0.6em 1em; background: #f7f7f7; }
.decision.promote { border-color: #1a7f37; } .decision.keep_champion { border-color: #bf8700; }
.decision.blocked { border-color: #cf222e; }
.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1em; }
nav ul { columns: 3; }
"""

#: How people read each metric; anything not named here is labelled by its name with spaces.
LABELS = {
    "total_cost": "total cost",
    "approve_all_cost": "cost of approving all",
    "rule_cost": "cost of the amount rule",
    "savings_vs_approve_all": "savings vs approve-all",
    "savings_vs_approve_all_pct": "savings vs approve-all (share)",
    "savings_vs_rule": "savings vs the amount rule",
    "average_precision": "average precision",
    "roc_auc": "ROC AUC",
    "n_alerts": "alerts",
    "user_precision_at_k": "user precision@k (caught users removed)",
    "user_precision_at_k_until_first_fraud": "user precision@k (removed after first fraud day)",
    "n_transactions": "transactions",
    "n_frauds": "frauds",
    "fraud_rate": "fraud rate",
    "alert_rate": "alert rate",
    "f1": "F1",
}


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


#: Columns whose numbers are not written as their name suggests.
KINDS = {
    "observed_rate": "score",
    "mix_change": "money",
    "margin": "share",
    "p": "score",
    "mean_predicted": "score",
    "expected_frauds": "score",
    "mean_completeness": "share",
    # the champion estimate's readings of precision (labels_only_precision, ...) are shares like precision
    **{f"{kind}_precision": "share" for kind in ESTIMATE_KINDS},
}


def _kind(name: str) -> str:
    """How a column's numbers are written, from its name: money, share, count, ratio or score."""
    base = name.removesuffix("_low").removesuffix("_high")
    if base in KINDS:
        return KINDS[base]
    if base.endswith("_ratio"):
        return "ratio"
    if (
        base.endswith(("_pct", "_share", "_rate"))
        or "recall" in base
        or base.startswith("share")
        or "_share_" in base
        or base == "precision"
    ):
        return "share"
    if "cost" in base or "savings" in base or base.endswith("fee"):
        return "money"
    if base.startswith("n_") or base in ("fold", "bin"):
        return "count"
    if "threshold" in base or "score" in base:
        return "score"
    return "ratio"


def format_value(value, kind: str | None = None) -> str:
    """A cell's text: rounded for reading (money to the unit, shares as %, ratios to 3 decimals), never raw.

    A missing value (None, NaN) is an empty cell, never 0; a value that rounds to zero has no sign.
    """
    text = _rounded(value, kind)
    if isinstance(value, str) or not text.startswith("-") or text.strip("-0.,%"):
        return text
    return text[1:]


def _rounded(value, kind: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and kind not in ("share", "score"):
        return f"{int(value):,}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if math.isnan(number):
            return ""
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        if kind == "share":
            return f"{number:.2%}" if 0 < abs(number) < 0.01 else f"{number:.1%}"
        if kind == "money":
            return f"{number:,.0f}" if abs(number) >= 100 else f"{number:,.2f}"
        if kind == "count":
            return f"{number:,.0f}"
        if kind == "score":
            return f"{number:.4g}"
        if kind == "ratio":
            return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3f}"
        return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.4g}"
    return str(value)


def format_change(value, kind: str) -> str:
    """A difference with its sign: percentage points for shares, the unit's rounding otherwise."""
    if value is None or value != value:
        return ""
    if kind == "share":
        return f"{value * 100:+.1f} pp"
    if kind in ("money", "count"):
        return f"{value:+,.0f}" if abs(value) >= 100 or kind == "count" else f"{value:+,.2f}"
    return f"{value:+.3f}"


def _interval_text(value, low, high, kind: str) -> str:
    text = format_value(value, kind)
    if low is None or high is None or low != low or high != high:
        return text
    return f"{text} ({format_value(low, kind)} to {format_value(high, kind)})"


def html_table(
    rows: Sequence[Mapping],
    columns: Sequence[str] | None = None,
    intervals: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
) -> str:
    """Records as an HTML table, numbers rounded by their column's kind; every header and cell is escaped.

    Args:
        rows: The records.
        columns: The columns shown, in order (default: every key, in first-seen order).
        intervals: Columns shown with their ``<column>_low`` to ``<column>_high`` interval in brackets.
        headers: Column -> header text (default: :data:`LABELS` or the name with spaces).
    """
    if not rows:
        return '<p class="note">none</p>'
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))

    def header(column: str) -> str:
        text = (headers or {}).get(column, _label(column))
        return f'<th class="text">{html_text(text)}</th>'

    def cell(row: Mapping, column: str) -> str:
        value = row.get(column)
        kind = _kind(column)
        if column in intervals:
            text = _interval_text(value, row.get(f"{column}_low"), row.get(f"{column}_high"), kind)
        else:
            text = format_value(value, kind)
        css = "text" if isinstance(value, str) else "num"
        return f'<td class="{css}">{html_text(text)}</td>'

    head = "".join(header(c) for c in columns)
    body = "".join("<tr>" + "".join(cell(row, c) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html_text(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


#: How each outcome of the deploy decision is written at the top of the page.
OUTCOMES = {PROMOTE: "promoted", KEEP_CHAMPION: "champion kept", BLOCKED: "blocked"}


def decision_view(decision) -> dict:
    """A :class:`fraud_pipeline.deployment.decision.DeployDecision` as the plain values the page shows.

    Returns:
        ``outcome``, ``headline``, ``champion``, ``problems`` and ``gates`` (each gate's name, passed,
        reason, details and measures, as the deploy gates give them).
    """
    return {
        "outcome": decision.outcome,
        "headline": decision.headline(),
        "champion": decision.champion,
        "problems": list(decision.problems),
        "gates": [asdict(g) for g in decision.gates],
    }


def report_facts(fraud_model, evaluation: ModelEvaluation, cost_model) -> dict:
    """What was evaluated: the night, the windows, the horizon, the model, thresholds and costs."""
    windows = fraud_model.windows.as_dict()
    return {
        "as_of": windows["as_of"],
        "train": f"{windows['train_start']} to {windows['train_end']}",
        "validation": f"{windows['validation_start']} to {windows['validation_end']}",
        "test": f"{windows['test_start']} to {windows['test_end']}",
        "maturity horizon (days)": f"{float(windows['horizon_days']):.1f}",
        "best iteration": fraud_model.main.model.best_iteration,
        "alert threshold (global)": evaluation.threshold,
        "policy cells": len(fraud_model.policy.cells),
        "fallback threshold (global)": fraud_model.fallback.threshold,
        "fallback policy cells": len(fraud_model.fallback.decision_policy().cells),
        "daily review capacity k": evaluation.review_capacity_k,
        "chargeback fee": cost_model.chargeback_fee,
        "review cost": cost_model.review_cost,
        "friction cost": cost_model.friction_cost,
    }


@dataclass(frozen=True)
class ChampionComparison:
    """The candidate beside the champion it would replace, on the same test window.

    Attributes:
        champion: The champion's version, or None.
        note: What the comparison is ("no champion yet", or why it could not be made).
        rows: One row per metric: metric, candidate, champion, change (candidate minus champion).
    """

    champion: str | None
    note: str
    rows: list[dict] = field(default_factory=list)


#: Metrics compared with the champion, in order.
COMPARED = (
    "total_cost",
    "savings_vs_approve_all_pct",
    "recall",
    "precision",
    "average_precision",
    "n_alerts",
    "user_precision_at_k",
)


def compare_with_champion(
    candidate: Mapping, champion: Mapping | None, version: str | None, note: str = ""
) -> ChampionComparison:
    """The rows of :class:`ChampionComparison` from both models' headline metrics on the same window."""
    if champion is None:
        return ChampionComparison(version, note or "no champion yet")
    rows = [
        {
            "metric": _label(m),
            "kind": _kind(m),
            "candidate": candidate.get(m),
            "champion": champion.get(m),
            "change": candidate.get(m, math.nan) - champion.get(m, math.nan),
        }
        for m in COMPARED
    ]
    return ChampionComparison(version, note or f"champion {version} scored on the candidate's test window", rows)


def champion_to_compare(store: ModelRegistryStore, candidate: str) -> tuple[str | None, str | None]:
    """The champion the candidate would replace, and why there is none to compare with (None when there is).

    When the deploy already promoted the candidate, the champion it replaced is the one before it, so
    the report reads the same whichever of the two steps ran first.
    """
    pointer, problem = store.valid_champion()
    if problem:
        return None, f"no valid champion to compare with: {problem}"
    if pointer is None:
        return None, "no champion yet"
    version = pointer["version"]
    if version == candidate:
        version = pointer.get("previous_version")
        if version is None:
            return None, "no champion before this candidate"
    return version, None


def champion_headline(
    store: ModelRegistryStore, version: str, test: pd.DataFrame, cost_model: CostModel, rule: float, k: int
) -> dict | str:
    """The champion's headline metrics (decided by its own policy) on the candidate's test rows, or why it cannot be scored on them."""
    try:
        bundle = store.scoring_bundle(version)
    except (RegistryError, FileNotFoundError, KeyError) as error:
        return f"champion {version} cannot be read: {error}"
    missing = sorted(set(bundle["features"]) - set(test.columns))
    if missing:
        return f"champion {version} needs features this window does not have: {', '.join(missing)}"
    model = TrainedModel.from_dict(bundle)
    scored = test.assign(score=score(model, test))
    return evaluate_decisions(scored, policy_of(bundle), cost_model, rule, k)


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """Everything the report shows, computed by the ``evaluation_report`` asset.

    Attributes:
        version: The candidate's version.
        facts: Short key -> value lines (as_of, windows, horizon, ...).
        decision: The night's decision and the gates behind it (:func:`decision_view`).
        evaluation: The candidate's test-window evaluation.
        bootstrap: :func:`fraud_pipeline.evaluation.metrics.day_bootstrap` of the test window.
        validation_curve: The cost curve the threshold was chosen on (``ThresholdChoice.curve``).
        test_curve: The same curve on the test window.
        is_fraud: Test labels (for the precision-recall plot).
        scores: Test scores, same rows.
        reliability: :func:`fraud_pipeline.evaluation.metrics.reliability_bins` of the test window.
        importance: :func:`fraud_pipeline.evaluation.metrics.feature_importance` rows.
        importance_rows: How many test rows the contributions were computed on.
        champion: The comparison with the champion.
        maturity_curve: ``DelayProfile.curve`` of the run's as_of.
        label_profile: The ``label_delay_profile`` output (horizon, coverage, interval).
        champion_estimate: The ``champion_estimate`` output: the serving champion on recent traffic.
        backtest: The ``backtest`` output, or None.
        outage: The ``outage_replay`` output, or None.
        drift: The ``population_drift`` output, or None.
    """

    version: str
    facts: dict
    decision: dict
    evaluation: ModelEvaluation
    bootstrap: dict
    validation_curve: pd.DataFrame
    test_curve: pd.DataFrame
    is_fraud: np.ndarray
    scores: np.ndarray
    reliability: list[dict]
    importance: list[dict]
    importance_rows: int
    champion: ChampionComparison
    maturity_curve: pd.DataFrame
    label_profile: dict
    champion_estimate: ChampionEstimate
    backtest: dict | None = None
    outage: dict | None = None
    drift: dict | None = None


class _Page:
    """The page being written: sections in order, with a table of contents."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, list[str]]] = []
        self.plots: dict[str, bytes] = {}

    def section(self, anchor: str, title: str) -> list[str]:
        parts: list[str] = []
        self.sections.append((anchor, title, parts))
        return parts

    def plot(self, parts: list[str], caption: str, png: bytes) -> None:
        self.plots[caption] = png
        parts.append(_image(png, caption))


def _measure_text(m: Mapping) -> str:
    """``cost_vs_approve_all 12,345 <= bound 13,000 (margin 655)``: one number of a gate against its bound."""
    holds = m["margin"] >= 0
    relation = ("<=" if holds else ">") if m.get("at_most", True) else (">=" if holds else "<")
    kind = _kind(str(m["name"]))
    return (
        f"{m['name']} {format_value(m['observed'], kind)} {relation} bound {format_value(m['bound'], kind)} "
        f"(margin {format_value(m['margin'], kind)})"
    )


def _gate_numbers(gate: Mapping) -> str:
    """A gate's measures against their bounds; without measures, its scalar details."""
    if gate.get("measures"):
        return "; ".join(_measure_text(m) for m in gate["measures"])
    shown = [
        f"{_label(str(k))} {format_value(v, _kind(str(k)))}"
        for k, v in (gate.get("details") or {}).items()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    ]
    return "; ".join(shown[:8])


def _gates_table(gates: Sequence[Mapping]) -> str:
    rows = "".join(
        f'<tr><td class="text">{html_text(g["name"])}</td>'
        f'<td class="text {"pass" if g["passed"] else "fail"}">{"PASS" if g["passed"] else "FAIL"}</td>'
        f'<td class="text">{html_text(g.get("reason", ""))}</td>'
        f'<td class="text">{html_text(_gate_numbers(g))}</td></tr>'
        for g in gates
    )
    return (
        '<table><thead><tr><th class="text">gate</th><th class="text">verdict</th><th class="text">why</th>'
        f'<th class="text">numbers</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _decision(page: _Page, inputs: ReportInputs) -> None:
    decision = inputs.decision
    outcome = str(decision["outcome"])
    parts = page.section("decision", "Decision")
    parts.append(
        f'<div class="decision {html_text(outcome)}"><b>{html_text(OUTCOMES.get(outcome, outcome).upper())}</b>: '
        f"{html_text(decision['headline'])}</div>"
    )
    if decision.get("problems"):
        parts.append("<ul>" + "".join(f"<li>{html_text(p)}</li>" for p in decision["problems"]) + "</ul>")
    failing = [g for g in decision["gates"] if not g["passed"]]
    verdict = "all pass" if not failing else OUTCOMES.get(outcome, outcome)
    parts.append(
        f'<h3>Deploy gates: <span class="{"pass" if not failing else "fail"}">{html_text(verdict)}</span></h3>'
    )
    parts.append(_gates_table(decision["gates"]))
    parts.append(
        '<p class="note">Every gate is recomputed from the data for this page, as the deploy recomputes it; the '
        "last one compares the candidate with the champion on the same test window.</p>"
    )


def _money(page: _Page, inputs: ReportInputs) -> None:
    e, boot = inputs.evaluation, inputs.bootstrap
    parts = page.section("cost", "Cost and savings on the test window")
    intervals = boot.get("intervals", {})
    rows = []
    for name in (
        "total_cost",
        "approve_all_cost",
        "rule_cost",
        "savings_vs_approve_all",
        "savings_vs_approve_all_pct",
        "savings_vs_rule",
        "recall",
        "precision",
        "n_alerts",
        "n_transactions",
        "n_frauds",
    ):
        low, high = intervals.get(name, (None, None)) if name in DAY_BOOTSTRAP_METRICS else (None, None)
        rows.append({"metric": _label(name), "value": _interval_text(getattr(e, name), low, high, _kind(name))})
    parts.append(html_table(rows, ["metric", "value"], headers={"value": "value (90% interval)"}))
    parts.append(
        f'<p class="note">Intervals: {boot.get("level", 0.9):.0%} percentile bootstrap over the '
        f"{html_text(boot.get('n_days', 0))} test days ({html_text(boot.get('n_resamples', 0))} resamples of whole "
        f"days, seed {html_text(boot.get('seed', 0))}). Alert threshold {html_text(format_value(e.threshold, 'score'))}; "
        f"the amount rule alerts at amount &gt;= {html_text(format_value(e.rule_amount_threshold, 'money'))}.</p>"
    )


def _champion(page: _Page, inputs: ReportInputs) -> None:
    comparison = inputs.champion
    parts = page.section("champion", "Against the champion it would replace")
    parts.append(f'<p class="note">{html_text(comparison.note)}</p>')
    if comparison.rows:
        shown = [
            {
                "metric": r["metric"],
                "candidate": format_value(r["candidate"], r["kind"]),
                "champion": format_value(r["champion"], r["kind"]),
                "change": format_change(r["change"], r["kind"]),
            }
            for r in comparison.rows
        ]
        parts.append(html_table(shown, ["metric", "candidate", "champion", "change"]))


#: What each status of the champion estimate means, in one sentence for the page (keys of ``STATUSES``).
ESTIMATE_MEANINGS = {
    "estimated": "Its cost, recall and precision on this traffic are estimated from its calibrated scores together "
    "with the chargebacks already reported, each transaction's silence weighted by how complete its labels are at "
    "its age; the realised numbers are known only once the labels mature.",
    "no_champion": "No model served before this night (the first night, say), so there is no champion's traffic to "
    "estimate; the section fills in once a champion has served.",
    "no_valid_champion": "The registry names a serving champion that cannot be read, so nothing was estimated; "
    "repair or roll back the registry before trusting any monitoring of the champion.",
    "no_open_traffic": "The champion has decided no transactions after its own test window yet, so there is "
    "nothing beyond what its promise already measured.",
    "cannot_score": "The champion reads features tonight's feature rows do not have (the feature spec changed since "
    "its deploy), so its recent decisions cannot be replayed; retrain, or restore the spec it was trained on.",
    "cannot_calibrate": "The champion's validation window is no longer in the warehouse, so its scores have nothing "
    "to be calibrated on and no estimate is made; the realised monitoring still judges it once labels mature.",
}
#: The per-cohort estimate columns: sizes and label completeness, each metric estimated (its interval in the
#: cell), then the labels-only reading of each (as the ``champion_estimate`` asset's ``cohorts`` table shows).
ESTIMATE_COHORT_COLUMNS = tuple(c for c in ESTIMATE_COLUMNS if not c.endswith(("_low", "_high")))
#: The readings beside the delay-weighted estimate (``labels_only``, ``labels_reweighted``, ``scores_only``).
ESTIMATE_BASELINES = tuple(k for k in ESTIMATE_KINDS if k != "estimate")


def _moment(iso: str) -> str:
    """An ISO timestamp for people: the date alone at midnight."""
    return iso.removesuffix("T00:00:00").replace("T", " ")


def _calibration_fit_text(calibration: Calibration) -> str:
    """The calibration map in one sentence: its method, parameters and the validation rows it was fitted on."""
    if calibration.method == "platt":
        a, b = calibration.platt
        shape = (
            f"Platt scaling, p = sigmoid(a logit(score) + b) with a = {format_value(a, 'score')} and "
            f"b = {format_value(b, 'score')}"
        )
    else:
        shape = f"isotonic regression with {format_value(len(calibration.knots[0]), 'count')} knots"
    return (
        f"{shape}, fitted on {format_value(calibration.n_rows, 'count')} rows of the champion's validation window "
        f"with {format_value(calibration.n_frauds, 'count')} frauds (fraud rate "
        f"{format_value(calibration.base_rate, 'share')})"
    )


def _promise_verdict(found: ChampionEstimate) -> str:
    """Whether the estimated cost per transaction exceeds the promise by more than the WARN margin (as the check says)."""
    overall = found.estimate.overall()
    low, high = overall["cost_per_transaction_low"], overall["cost_per_transaction_high"]
    estimated = format_value(overall["cost_per_transaction"], "money")
    if math.isfinite(low) and math.isfinite(high):
        estimated += (
            f" ({found.estimate.level:.0%} interval {format_value(low, 'money')} to {format_value(high, 'money')})"
        )
    promised = found.promised_cost_per_transaction
    margin = format_value(found.max_cost_increase, "share")
    if not math.isfinite(promised):
        return (
            f'<p class="note">Estimated cost per transaction {html_text(estimated)}; the champion records no promised '
            "cost per transaction to hold it to.</p>"
        )
    exceeds = cost_overrun(found) is not None
    verdict = "Exceeds the promise" if exceeds else "Within the promise"
    relation = "more" if exceeds else "not more"
    return (
        f'<p><span class="{"fail" if exceeds else "pass"}">{verdict}</span>: the estimated cost per transaction, '
        f"{html_text(estimated)}, is {relation} than {html_text(margin)} above the champion's promise of "
        f"{html_text(format_value(promised, 'money'))} (its cost per transaction on its own test window); "
        f"{html_text(margin)} is the WARN margin (max_cost_increase). The estimated_cost_within_promise check "
        + ("warns." if exceeds else "passes.")
        + "</p>"
    )


def _estimate_overall(found: ChampionEstimate) -> list[str]:
    """The overall estimate beside its baselines, the alert volume and how complete the labels are."""
    overall = found.estimate.overall()
    level = f"{found.estimate.level:.0%}"
    baselines = [k for k in ESTIMATE_BASELINES if all(f"{k}_{m}" in overall for m in ESTIMATED)]
    rows = [
        {
            "metric": _label(m),
            "estimate": _interval_text(overall[m], overall[f"{m}_low"], overall[f"{m}_high"], _kind(m)),
            **{k: format_value(overall[f"{k}_{m}"], _kind(m)) for k in baselines},
        }
        for m in ESTIMATED
    ]
    table = html_table(
        rows,
        ["metric", "estimate", *baselines],
        headers={
            "estimate": f"estimate ({level} interval)",
            "labels_only": "labels only",
            "labels_reweighted": "labels reweighted by 1 / completeness",
            "scores_only": "scores only",
        },
    )
    volume = (
        f"{format_value(overall['n_transactions'], 'count')} transactions, "
        f"{format_value(overall['n_alerts'], 'count')} alerts (alert rate "
        f"{format_value(overall['alert_rate'], 'share')}; the champion's own decisions, known exactly), "
        f"chargebacks reported so far: {format_value(overall['known_frauds'], 'count')}, frauds expected in the end: "
        f"{format_value(overall['expected_frauds'], _kind('expected_frauds'))}"
    )
    completeness = format_value(overall["mean_completeness"], "share")
    return [
        table,
        f"<p>{html_text(volume)}. Mean label completeness {html_text(completeness)}: of the chargebacks these "
        "transactions will eventually receive, about that share has been reported by as_of (the measured delay "
        "curve at each transaction's age).</p>",
        '<p class="note">Labels only: a transaction without a chargeback is read as genuine, what the labels say '
        "tonight (it understates fraud while the labels are young). Labels reweighted: each chargeback so far "
        "stands for 1 / completeness of them, the scores ignored. Scores only: every transaction read from its "
        "calibrated score, the chargebacks so far ignored.</p>",
    ]


#: Title (and alt text) of the estimate's reliability plot.
ESTIMATE_CALIBRATION_TITLE = "Calibration of the champion's scores on its validation window"


def _estimate_reliability_png(found: ChampionEstimate) -> bytes:
    """The estimate's reliability table drawn like the test window's: calibrated p against the observed rate."""
    level = found.estimate.level
    bins = []
    for row in found.estimate.reliability:
        low, high = wilson_interval(row["observed_frauds"], row["n_rows"], level)
        bins.append(
            {
                "n_transactions": row["n_rows"],
                "mean_score": row["mean_predicted"],
                "observed_rate": row["observed_rate"],
                "observed_rate_low": low,
                "observed_rate_high": high,
            }
        )
    return reliability_png(bins, ESTIMATE_CALIBRATION_TITLE, "mean calibrated probability in the bin", level)


def _champion_estimate(page: _Page, inputs: ReportInputs) -> None:
    found = inputs.champion_estimate
    parts = page.section("estimate", "The serving champion before its labels mature")
    as_of = _moment(found.as_of)
    status = STATUSES.get(found.status, found.status)
    meaning = ESTIMATE_MEANINGS.get(found.status, "")
    who = (
        f"Champion {found.champion}, the champion serving at the time of the estimate: the last one promoted on a "
        f"night before {as_of}."
        if found.champion
        else f"No champion estimated as of {as_of}."
    )
    parts.append(f"<p>{html_text(who)} Status: <b>{html_text(status)}</b>. {html_text(meaning)}</p>")
    if found.reason:
        parts.append(f"<p>Why: {html_text(found.reason)}</p>")
    if inputs.decision.get("outcome") == PROMOTE:
        replaced = "the model estimated here is the champion it replaces; " if found.champion else ""
        parts.append(
            f'<p class="note">Tonight\'s candidate {html_text(inputs.version)} was promoted: {replaced}it is first '
            "estimated on the next night.</p>"
        )
    if found.estimate is None:
        promised = found.promised_cost_per_transaction
        promise = (
            f" Its promised cost per transaction is {format_value(promised, 'money')}."
            if found.champion and math.isfinite(promised)
            else ""
        )
        parts.append(f'<p class="note">No estimate tonight: {html_text(status)}.{html_text(promise)}</p>')
        return
    if found.window:
        parts.append(
            f"<p>Transactions from {html_text(_moment(found.window[0]))} up to (not including) "
            f"{html_text(_moment(found.window[1]))}, each decided as the champion decides (its own models and "
            "decision policy).</p>"
        )
    parts.append(_promise_verdict(found))
    parts.extend(_estimate_overall(found))
    level = f"{found.estimate.level:.0%}"
    parts.append("<h3>Per cohort</h3>")
    parts.append(
        "<p>Each estimate is an expected value and its interval one of the value that will be realised: on a "
        "cohort of a handful of alerts or frauds the realised value is discrete (a single alert is a fraud or "
        "not), so the interval can sit entirely on one side of the estimate.</p>"
    )
    parts.append(
        html_table(
            found.estimate.rows[1:],
            ESTIMATE_COHORT_COLUMNS,
            intervals=ESTIMATED,
            headers={
                "known_frauds": "chargebacks so far",
                "expected_frauds": "frauds expected",
                "mean_completeness": "mean label completeness",
                **{m: f"estimated {_label(m)} ({level} interval)" for m in ESTIMATED},
                **{f"labels_only_{m}": f"labels-only {_label(m)}" for m in ESTIMATED},
            },
        )
    )
    parts.append("<h3>The calibration it rests on</h3>")
    parts.append(f"<p>{html_text(_calibration_fit_text(found.estimate.calibration))}.</p>")
    page.plot(parts, ESTIMATE_CALIBRATION_TITLE, _estimate_reliability_png(found))
    parts.append(
        html_table(
            found.estimate.reliability,
            headers={
                "p_low": "calibrated p from",
                "p_high": "calibrated p to",
                "n_rows": "validation rows",
                "expected_frauds": "expected frauds (sum of p)",
                "observed_frauds": "observed frauds",
                "mean_predicted": "mean calibrated p",
                "observed_rate": "observed fraud rate",
            },
        )
    )
    parts.append(
        '<p class="note">Reliability on validation: bins holding about the same expected number of frauds, the '
        "calibrated probability against the observed rate on the same rows the map was fitted on, so it shows the "
        "fit, not how well the estimate forecasts; docs/estimation.md measures that against what was realised.</p>"
    )


def _cohorts(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("cohorts", "Cohorts")
    intervals = {(r["cohort"], r["value"]): r for r in inputs.bootstrap.get("cohorts", [])}
    rows = [
        {
            **{k: row.get(k) for k in ("cohort", "value", "n_transactions", "n_frauds", "total_cost")},
            **{
                k: row.get(k)
                for k in ("savings_vs_approve_all_pct", "recall", "precision", "average_precision", "calibration_ratio")
            },
            **{
                f"{m}_{side}": intervals.get((row["cohort"], row["value"]), {}).get(f"{m}_{side}")
                for m in ("savings_vs_approve_all_pct", "recall", "precision")
                for side in ("low", "high")
            },
            "average_precision_low": row.get("average_precision_low"),
            "average_precision_high": row.get("average_precision_high"),
        }
        for row in inputs.evaluation.cohorts
    ]
    parts.append(
        html_table(
            rows,
            [
                "cohort",
                "value",
                "n_transactions",
                "n_frauds",
                "total_cost",
                "savings_vs_approve_all_pct",
                "recall",
                "precision",
                "average_precision",
                "calibration_ratio",
            ],
            intervals=("savings_vs_approve_all_pct", "recall", "precision", "average_precision"),
            headers={"calibration_ratio": "mean score / fraud rate"},
        )
    )
    parts.append(
        '<p class="note">Savings, recall and precision intervals: the same day bootstrap as the headline. '
        "AP intervals (small cohorts only) are the evaluation's transaction bootstrap, the one the cohort floors "
        "judge.</p>"
    )
    page.plot(parts, "Per-cohort metrics", cohort_bars_png(inputs.evaluation.cohorts))


#: Columns of the policy's cell table.
POLICY_CELL_COLUMNS = ("cell", "n_rows", "n_frauds", "own_weight", "own_threshold", "threshold", "validation_alerts")
#: Columns of the policy-vs-single table.
POLICY_VS_SINGLE_SHOWN = tuple(c for c in POLICY_VS_SINGLE_COLUMNS if not c.endswith("_n_alerts"))


def _policy(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("policy", "Decision policy")
    e = inputs.evaluation
    if e.policy is None:
        parts.append('<p class="note">This evaluation has no decision policy: one threshold for every row.</p>')
        return
    policy = DecisionPolicy.from_dict(e.policy)
    if policy.is_single:
        parts.append(
            f"<p>One threshold for every row: {html_text(format_value(policy.global_threshold, 'score'))}.</p>"
        )
    else:
        parts.append(
            f"<p>Alert when the score is at or above the threshold of the row's cell (splits: "
            f"{html_text(', '.join(s.name for s in policy.splits))}); a cell validation did not have gets the "
            f"global threshold {html_text(format_value(policy.global_threshold, 'score'))}.</p>"
        )
        parts.append(
            html_table(
                policy.table(),
                POLICY_CELL_COLUMNS,
                headers={
                    "n_rows": "validation rows",
                    "n_frauds": "validation frauds",
                    "own_weight": "own weight",
                    "own_threshold": "own threshold (unshrunk)",
                    "threshold": "threshold",
                },
            )
        )
    parts.append(
        f'<p class="note">Each cell minimises its validation cost plus the population\'s cost curve weighted like '
        f"{html_text(format_value(policy.prior_frauds, 'count'))} frauds; own weight = frauds / (frauds + "
        f"{html_text(format_value(policy.prior_frauds, 'count'))}).</p>"
    )
    if policy.max_alerts_per_day is not None:
        parts.append(
            f'<p class="note">Review capacity {html_text(format_value(policy.max_alerts_per_day, "count"))} alerts per '
            f"day, shared by the cells at a price of {html_text(format_value(policy.alert_price, 'money'))} per alert.</p>"
        )
    if policy.selection:
        parts.append("<h3>Selection</h3>")
        tried = [
            {
                "splits": ", ".join(row["splits"]) or "none (one threshold)",
                "holdout_cost": row["holdout_cost"],
                "chosen": [s.name for s in policy.splits] == list(row["splits"]),
            }
            for row in policy.selection
        ]
        parts.append(html_table(tried, ["splits", "holdout_cost", "chosen"], headers={"holdout_cost": "held-out cost"}))
        parts.append(
            '<p class="note">Each structure was fitted on the earlier half of validation and costed on the later half; '
            "the cheapest (the simpler one on a tie) was then fitted on all of validation.</p>"
        )
    if e.policy_vs_single:
        parts.append("<h3>Policy against the single threshold on the test window</h3>")
        parts.append(
            html_table(
                e.policy_vs_single,
                POLICY_VS_SINGLE_SHOWN,
                headers={
                    "policy_total_cost": "policy cost",
                    "single_total_cost": "single-threshold cost",
                    "cost_difference": "policy minus single",
                    "policy_savings_vs_approve_all_pct": "policy savings (share)",
                    "single_savings_vs_approve_all_pct": "single savings (share)",
                    "policy_recall": "policy recall",
                    "single_recall": "single recall",
                },
            )
        )


def _threshold(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("threshold", "Cost vs threshold")
    page.plot(
        parts,
        "Cost vs threshold",
        cost_curve_png(inputs.validation_curve, inputs.evaluation.threshold, None, inputs.test_curve),
    )
    best = inputs.test_curve.loc[inputs.test_curve["cost"].idxmin()] if len(inputs.test_curve) else None
    if best is not None:
        parts.append(
            f'<p class="note">Chosen on validation: {html_text(format_value(inputs.evaluation.threshold, "score"))} '
            f"(test cost {html_text(format_value(inputs.evaluation.total_cost, 'money'))}). The cheapest threshold in "
            f"hindsight on test would have been {html_text(format_value(float(best['threshold']), 'score'))} "
            f"(cost {html_text(format_value(float(best['cost']), 'money'))}).</p>"
        )


def _calibration(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("calibration", "Calibration")
    if inputs.reliability:
        page.plot(parts, "Calibration on the test window", reliability_png(inputs.reliability))
    parts.append(
        html_table(
            inputs.reliability,
            ["bin", "n_transactions", "n_frauds", "score_low", "score_high", "mean_score", "observed_rate"],
            intervals=("observed_rate",),
            headers={"observed_rate": "observed fraud rate (90% interval)"},
        )
    )
    parts.append(
        '<p class="note">Bins hold about the same expected number of frauds (sum of scores), so they cover the '
        "scores where alerts are decided. On the diagonal the score is the fraud probability.</p>"
    )


def _ranking(page: _Page, inputs: ReportInputs) -> None:
    e = inputs.evaluation
    parts = page.section("ranking", "Ranking and review capacity")
    page.plot(
        parts,
        "Precision-recall on the test window",
        precision_recall_png(inputs.is_fraud, inputs.scores, e.threshold),
    )
    rows = [
        {"metric": _label(m), "value": format_value(getattr(e, m), _kind(m))}
        for m in ("average_precision", "roc_auc", "user_precision_at_k", "user_precision_at_k_until_first_fraud")
    ]
    parts.append(html_table(rows, ["metric", "value"]))
    parts.append(
        f'<p class="note">k = {html_text(e.review_capacity_k)} users reviewed per day. The headline removes a user '
        "once the model has caught it (in a day's top k on a day it was fraudulent), as the Fraud-Detection-"
        "Handbook does; the second reading removes every user after its first fraudulent day, caught or not.</p>"
    )


def _importance(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("importance", "What the model relies on")
    if inputs.importance:
        page.plot(parts, "Feature importance", importance_png(inputs.importance))
    parts.append(
        html_table(
            inputs.importance,
            ["feature", "gain_share", "mean_abs_contribution", "contribution_share", "mean_contribution"],
            headers={
                "gain_share": "share of gain",
                "mean_abs_contribution": "mean |contribution|",
                "contribution_share": "share of |contribution|",
                "mean_contribution": "mean contribution",
            },
        )
    )
    parts.append(
        f'<p class="note">Contributions: LightGBM pred_contrib (log-odds) on {html_text(f"{inputs.importance_rows:,}")} '
        "test rows (a fixed hash sample where the window is larger).</p>"
    )


def _backtest(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("backtest", "Backtest folds")
    backtest = inputs.backtest
    if not backtest:
        parts.append('<p class="note">no backtest in this run</p>')
        return
    design = backtest.get("design", {})
    parts.append(
        f'<p class="note">{html_text(design.get("label", ""))}; '
        + ("the run's design" if design.get("same_as_run") else "not the run's design")
        + "</p>"
    )
    folds = backtest.get("folds", [])
    parts.append(
        html_table(
            folds,
            [
                "fold",
                "test_start",
                "test_end",
                "candidates_windows",
                "n_transactions",
                "n_frauds",
                "total_cost",
                "savings_vs_approve_all_pct",
                "average_precision",
                "recall",
                "precision",
            ],
            headers={"candidates_windows": "candidate's windows"},
        )
    )
    if folds:
        page.plot(parts, "Backtest folds", folds_png(folds, inputs.evaluation.headline()))
    spread = backtest.get("spread", {})
    rows = [
        {"metric": _label(m), **{k: format_value(v, _kind(m)) for k, v in stats.items()}} for m, stats in spread.items()
    ]
    parts.append(html_table(rows, ["metric", "mean", "std", "min", "max"]))
    findings = backtest.get("findings", [])
    parts.append(
        "<ul>" + "".join(f"<li>{html_text(f)}</li>" for f in findings) + "</ul>"
        if findings
        else '<p class="note">nothing out of line</p>'
    )


#: Outage replay measures in reading order.
OUTAGE_ROWS = (
    ("n_affected", "transactions hit by the outage"),
    ("n_affected_frauds", "frauds among them"),
    ("identified_share", "recognised as history unavailable"),
    ("recall_affected_full_history", "recall with full history"),
    ("recall_affected_outage", "recall during the outage"),
    ("cost_affected_full_history", "cost with full history"),
    ("cost_affected_outage", "cost during the outage"),
    ("cost_affected_approve_all", "cost of approving them all"),
    ("mean_score_affected_frauds_full_history", "mean fraud score, full history"),
    ("mean_score_affected_frauds_outage", "mean fraud score, outage"),
    ("mean_score_new_users", "mean score of new users (no history at all)"),
)


def _outage(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("outage", "Outage replay")
    outage = inputs.outage
    if not outage:
        parts.append('<p class="note">no outage replay in this run</p>')
        return
    hours = ", ".join(f"{int(h):02d}" for h in outage.get("peak_hours", []))
    parts.append(
        f'<p class="note">{html_text(format_value(outage.get("share"), "share"))} of active users\' transactions in '
        f"the busiest UTC hours ({html_text(hours)}) lose their history, as in a history-service outage.</p>"
    )
    rows = [
        {"measure": label, "value": format_value(outage[key], _kind(key))}
        for key, label in OUTAGE_ROWS
        if key in outage
    ]
    parts.append(html_table(rows, ["measure", "value"]))
    policy = outage.get("policy", {})
    parts.append("<ul>" + "".join(f"<li>{html_text(k)}: {html_text(v)}</li>" for k, v in policy.items()) + "</ul>")


def _most_drifted_first(row: Mapping) -> tuple[float, str]:
    psi = row.get("psi")
    return (-(float(psi) if psi is not None and psi == psi else -1.0), str(row["feature"]))


def _drift(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("drift", "Population drift beside the cohort mix")
    drift = inputs.drift
    if not drift:
        parts.append('<p class="note">no population drift in this run</p>')
        return
    parts.append(
        f'<p class="note">Reference: {html_text(drift.get("reference", ""))}; current: '
        f"{html_text(drift.get('current', ''))}.</p>"
    )
    features = sorted(drift.get("features") or [], key=_most_drifted_first)
    if any("psi" in r for r in features):
        page.plot(parts, "Feature drift (PSI)", drift_bars_png(features))
    parts.append("<h3>Cohort mix</h3>")
    parts.append(
        html_table(
            drift.get("cohort_mix") or [],
            [
                "cohort",
                "value",
                "share_reference",
                "share_current",
                "share_ratio",
                "mix_psi",
                "test_recall",
                "test_savings_vs_approve_all_pct",
            ],
            headers={
                "share_ratio": "current / reference",
                "mix_psi": "mix PSI",
                "test_savings_vs_approve_all_pct": "test savings vs approve-all (share)",
            },
        )
    )
    parts.append("<h3>What the current mix alone does to cost per transaction</h3>")
    parts.append(
        html_table(
            drift.get("projected_mix_effect") or [],
            ["cohort", "test_cost_per_transaction", "projected_cost_per_transaction", "mix_change", "unpriced_share"],
        )
    )
    parts.append("<h3>Features, most drifted first</h3>")
    parts.append(
        html_table(
            features,
            ["feature", "kind", "psi", "ks", "null_share_reference", "null_share_current", "verdict"],
            headers={"psi": "PSI", "ks": "KS"},
        )
    )


def _maturity(page: _Page, inputs: ReportInputs) -> None:
    parts = page.section("maturity", "Label maturity")
    profile = inputs.label_profile
    horizon, coverage = float(profile["horizon_days"]), float(profile["coverage"])
    if len(inputs.maturity_curve):
        page.plot(parts, "Label maturation", maturation_curve_png(inputs.maturity_curve, horizon, coverage))
    low, high = (profile.get("horizon_interval") or [None, None])[:2]
    interval = f" (90% interval {low:.1f} to {high:.1f} days)" if low is not None and high is not None else ""
    count = int(profile.get("n_chargebacks", 0))
    parts.append(
        f'<p class="note">{html_text(format_value(coverage, "share"))} of chargebacks arrive within '
        f"{html_text(f'{horizon:.1f}')} days{html_text(interval)}, measured from {html_text(f'{count:,}')} chargebacks. "
        "Training and test use only transactions older than that.</p>"
    )


def build_report(inputs: ReportInputs) -> tuple[str, dict[str, bytes]]:
    """The report's HTML and its plots (caption -> PNG) for one candidate.

    Returns:
        The page, self-contained (images inline, no script, nothing fetched), and its plots in page order.
    """
    page = _Page()
    for write in (
        _decision,
        _money,
        _champion,
        _champion_estimate,
        _cohorts,
        _policy,
        _threshold,
        _calibration,
        _ranking,
        _backtest,
        _outage,
        _drift,
        _importance,
        _maturity,
    ):
        write(page, inputs)
    facts = page.section("facts", "What was evaluated")
    facts.append(
        "<ul>"
        + "".join(
            f"<li><b>{html_text(k)}</b>: {html_text(format_value(v, _kind(str(k))))}</li>"
            for k, v in inputs.facts.items()
        )
        + "</ul>"
    )
    title = f"Evaluation of model {inputs.version}"
    html = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html_text(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html_text(title)}</h1>",
        "<nav><ul>"
        + "".join(f'<li><a href="#{a}">{html_text(t)}</a></li>' for a, t, _ in page.sections)
        + "</ul></nav>",
    ]
    for anchor, section_title, parts in page.sections:
        html.append(f'<h2 id="{anchor}">{html_text(section_title)}</h2>')
        html.extend(parts)
    html.append("</body></html>")
    return "\n".join(html) + "\n", page.plots
