"""The short human-readable card written next to every model in the registry."""

from __future__ import annotations

from fraud_pipeline.deployment.gates import Measure
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.markdown import md_text


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
        f"- decision: alert (review/block) when score >= {bundle['threshold']:.6f}, chosen to minimise expected cost on validation",
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
