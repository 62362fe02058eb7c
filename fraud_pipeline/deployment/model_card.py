"""The short human-readable card written next to every model in the registry."""

from __future__ import annotations

import math

from fraud_pipeline.deployment.gates import Measure
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.markdown import md_text
from fraud_pipeline.lib.policy import DecisionPolicy, policy_of


def _measures(measures: list[dict]) -> str:
    """A gate's numbers as a person reads them: ``cost_vs_approve_all 9,876 <= bound 11,000``."""
    return "; ".join(Measure(**m).shown() for m in measures)


def _spec_lines(bundle: dict) -> list[str]:
    """The feature spec the model was trained on: its digest, keys and every feature with key, window and aggregate."""
    recorded = bundle.get("feature_spec")
    spec = FeatureSpec.from_dict(recorded, "<bundle>") if recorded else default_spec()
    keys = "; ".join(f"{md_text(name)} = {md_text(' x '.join(columns))}" for name, columns in spec.keys.items())
    lines = [
        "",
        "## Feature spec",
        "",
        f"- digest: {spec.digest()}" + ("" if recorded else " (the built-in default spec: the bundle records none)"),
        f"- keys: {keys}",
        f"- fallback model (history unavailable) reads: {', '.join(md_text(n) for n in spec.fallback)}",
        "",
        "| feature | kind | key | window | agg | of | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in spec.features:
        kind = "attribute" + (", categorical" if f.categorical else "") + (", nullable" if f.nullable else "")
        lines.append(
            f"| {md_text(f.name)} | {kind if f.kind == 'attribute' else 'history ' + f.kind} | {md_text(f.key or '')} "
            f"| {f.window or ''} | {md_text(f.agg or f.derive or 'column ' + str(f.column))} | {md_text(f.of or '')} "
            f"| {md_text(f.description)} |"
        )
    return lines


def _has_policy(bundle: dict) -> bool:
    """Whether the bundle records a decision policy (a bundle written before policies has only thresholds)."""
    return bool(bundle.get("policy") or (bundle.get("fallback") or {}).get("policy"))


def _decision_line(bundle: dict) -> str:
    """The card's one-line decision rule: the single threshold, or the policy's global one and where the cells are."""
    if not _has_policy(bundle):
        return (
            f"- decision: alert (review/block) when score >= {bundle['threshold']:.6f}, "
            "chosen to minimise expected cost on validation"
        )
    return (
        "- decision: alert (review/block) when score >= the threshold of the row's cohort cell, each chosen to "
        f"minimise expected cost on validation (Decision policy below); global threshold "
        f"{policy_of(bundle).global_threshold:.6f}"
    )


def _structure(names) -> str:
    return " x ".join(md_text(n) for n in names) if names else "one threshold (no split)"


def _holdout_cost(cost) -> str:
    """A structure's held-out cost, or why it has none (the earlier half had no fraud to fit on)."""
    if cost is None or not isinstance(cost, (int, float)) or math.isinf(cost):
        return "none (no fraud to fit on)"
    return f"{cost:,.0f}"


def _policy_lines(title: str, policy: DecisionPolicy) -> list[str]:
    """One model's policy: its global threshold, the structure chosen and why, and one row per cell."""
    lines = [
        "",
        f"### {title}",
        "",
        f"- global threshold: {policy.global_threshold:.6f} (every row of a cell not listed)",
    ]
    chosen = [s.name for s in policy.splits]
    lines.append(f"- cells cut by: {_structure(chosen)}")
    if policy.selection:
        lines += [
            "- selected: the structure with the lowest cost on the later half of validation, fitted on the "
            "earlier half (the simpler one on a tie)",
            "",
            "| structure | held-out cost | chosen |",
            "|---|---|---|",
        ]
        lines += [
            f"| {_structure(row.get('splits', []))} | {_holdout_cost(row.get('holdout_cost'))} "
            f"| {'yes' if list(row.get('splits', [])) == chosen else ''} |"
            for row in policy.selection
        ]
    if policy.is_single:
        return lines
    lines.append("")
    lines.append(
        "- shrinkage toward the global threshold: each cell minimises its own validation cost plus the whole "
        f"population's scaled to {policy.prior_frauds:g} frauds (own weight = frauds / (frauds + {policy.prior_frauds:g}))"
    )
    if policy.max_alerts_per_day is not None:
        lines.append(
            f"- review capacity: {policy.max_alerts_per_day:g} alerts per day shared by the cells "
            f"(price per alert {policy.alert_price:,.2f})"
        )
    lines += ["", "| cell | validation frauds | own weight | threshold |", "|---|---|---|---|"]
    lines += [f"| {md_text(c.cell)} | {c.n_frauds} | {c.own_weight:.2f} | {c.threshold:.6f} |" for c in policy.cells]
    return lines


def _decision_policy_lines(bundle: dict) -> list[str]:
    """The decision section: the main model's and the fallback's policies (nothing for a bundle without one)."""
    if not _has_policy(bundle):
        return []
    lines = ["", "## Decision policy"]
    lines += _policy_lines("main model", policy_of(bundle))
    if isinstance(bundle.get("fallback"), dict) and (
        "policy" in bundle["fallback"] or "threshold" in bundle["fallback"]
    ):
        lines += _policy_lines("fallback model (history unavailable)", policy_of(bundle["fallback"]))
    return lines


def render_model_card(bundle: dict) -> str:
    """Markdown card: what the model is, what it was trained and tested on, how it did, what gated it.

    Every value from data or config (names, cohort values, reasons) goes through
    :func:`~fraud_pipeline.lib.markdown.md_text`, so it reads as itself and fetches nothing.
    """
    windows = {k: md_text(v) if isinstance(v, str) else v for k, v in bundle["windows"].items()}
    evaluation = bundle["evaluation"]
    lines = [
        f"# Fraud model {md_text(bundle['version'])}",
        "",
        f"- as_of: {windows['as_of']} (labels mature until {windows['label_cutoff']}, horizon {windows['horizon_days']:g} days)",
        f"- train: {windows['train_start']} .. {windows['train_end']}",
        f"- validation: {windows['validation_start']} .. {windows['validation_end']}",
        f"- test: {windows['test_start']} .. {windows['test_end']}",
        _decision_line(bundle),
        f"- cost model: {md_text(bundle['cost_model'])}",
        f"- features ({len(bundle['features'])}): {', '.join(md_text(f) for f in bundle['features'])}",
        "- missing history stays missing (NaN); the model never sees a zero standing in for absence",
        f"- history unavailable at serving: {md_text(bundle.get('unavailable_history_policy', {}).get('history_unavailable', 'n/a'))}",
        f"- a required field missing at serving: {md_text(bundle.get('unavailable_history_policy', {}).get('missing_required_field', 'n/a'))}",
        "",
        "## Test window",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in (
        "total_cost",
        "approve_all_cost",
        "rule_cost",
        "savings_vs_approve_all",
        "savings_vs_rule",
        "average_precision",
        "roc_auc",
        "precision",
        "recall",
        "f1",
        "user_precision_at_k",
    ):
        value = evaluation.get(key)
        lines.append(f"| {key} | {value:,.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += _decision_policy_lines(bundle)
    lines += _spec_lines(bundle)
    lines += ["", "## Gates", "", "| gate | passed | observed vs bound | reason |", "|---|---|---|---|"]
    lines += [
        f"| {md_text(g['name'])} | {g['passed']} | {md_text(_measures(g.get('measures', [])))} | {md_text(g['reason'])} |"
        for g in bundle["gates"]
    ]
    lines += [
        "",
        "## Per cohort (test window)",
        "",
        "| cohort | value | transactions | frauds | cost | recall | recall 90% interval | mean score / fraud rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in evaluation.get("cohorts", []):
        low, high = row.get("recall_low"), row.get("recall_high")
        interval = f"{low:.3f} .. {high:.3f}" if low is not None and low == low else ""
        ratio = row.get("calibration_ratio")
        lines.append(
            f"| {md_text(row.get('cohort'))} | {md_text(row.get('value'))} | {row.get('n_transactions')} | {row.get('n_frauds')} "
            f"| {row.get('total_cost', float('nan')):,.0f} | {row.get('recall', float('nan')):.3f} | {interval} "
            f"| {'' if ratio is None or ratio != ratio else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines) + "\n"
