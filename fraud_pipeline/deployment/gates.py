"""Deploy gates: the conditions a candidate model must meet, as pure functions.

The same functions run twice: as blocking Dagster asset checks (visible in the UI, and they stop the
run before the deploy step) and inside the deploy step itself, so a candidate materialised on its
own still cannot become champion without passing them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.lib.costs import decision_costs
from fraud_pipeline.training.model import TrainedModel, score

if TYPE_CHECKING:  # settings objects are passed in; this module needs no Dagster at run time
    from fraud_pipeline.resources import CostSettings, DeployGates
    from fraud_pipeline.training.candidate import Candidate
from fraud_pipeline.evaluation.result import CohortFloors, ModelEvaluation
from fraud_pipeline.training.training_set import load_split
from fraud_pipeline.training.windows import TrainingWindows, window_problems


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate with the numbers behind it."""

    name: str
    passed: bool
    reason: str
    details: dict = field(default_factory=dict)


def window_gate(windows: TrainingWindows) -> GateResult:
    """Windows are non-empty, ordered, non-overlapping, and end at or before as_of minus the horizon."""
    problems = window_problems(windows)
    reason = (
        "; ".join(problems)
        if problems
        else (f"train, validation and test are consecutive and end by the label cutoff {windows.label_cutoff:%Y-%m-%d}")
    )
    return GateResult("windows_valid", not problems, reason, {"problems": problems, **windows.as_dict()})


def split_summary_sql() -> str:
    """Per split of ``training_set``: rows, frauds, and labels that were not mature or known too late."""
    return """
        SELECT
            s.split,
            count(*) AS n_rows,
            count(*) FILTER (WHERE s.is_fraud) AS n_frauds,
            count(*) FILTER (WHERE NOT l.is_mature OR l.event_time > CAST($cutoff AS TIMESTAMP)) AS n_immature,
            count(*) FILTER (WHERE l.label_known_at >= CAST($as_of AS TIMESTAMP)) AS n_known_after_as_of,
            count(*) FILTER (WHERE s.is_fraud IS DISTINCT FROM l.is_fraud) AS n_label_mismatch,
            min(l.expected_completeness) AS min_completeness,
            avg(l.expected_completeness) AS mean_completeness,
            min(s.event_time) AS first_event,
            max(s.event_time) AS last_event
        FROM training_set AS s
        JOIN transaction_labels AS l USING (transaction_id)
        GROUP BY s.split
        ORDER BY s.split
    """


def split_summary(con, windows: TrainingWindows) -> dict[str, dict]:
    """Runs :func:`split_summary_sql` and returns split -> counts (every split present, empty ones as 0)."""
    cur = con.execute(split_summary_sql(), {"cutoff": windows.label_cutoff, "as_of": windows.as_of})
    names = [d[0] for d in cur.description]
    found = {row[0]: dict(zip(names, row)) for row in cur.fetchall()}
    empty = {
        "n_rows": 0,
        "n_frauds": 0,
        "n_immature": 0,
        "n_known_after_as_of": 0,
        "n_label_mismatch": 0,
        "min_completeness": None,
        "mean_completeness": None,
    }
    return {split: found.get(split, {"split": split, **empty}) for split in windows.splits()}


def maturity_gate(summary: dict[str, dict]) -> GateResult:
    """No training, validation or test row carries an immature label, or one known after as_of."""
    bad = {
        split: {k: s[k] for k in ("n_immature", "n_known_after_as_of", "n_label_mismatch")}
        for split, s in summary.items()
        if s["n_immature"] or s["n_known_after_as_of"] or s["n_label_mismatch"]
    }
    reason = f"immature or late labels in {sorted(bad)}: {bad}" if bad else "every label used is mature at as_of"
    return GateResult("mature_labels_only", not bad, reason, {"by_split": bad})


def completeness_gate(summary: dict[str, dict], min_completeness: float) -> GateResult:
    """Every row's estimated label completeness (share of its eventual chargebacks already reported) is high enough."""
    lowest = {split: s["min_completeness"] for split, s in summary.items()}
    short = {split: v for split, v in lowest.items() if v is None or v < min_completeness}
    reason = (
        f"labels too recent: estimated completeness below {min_completeness:.0%} in {short}"
        if short
        else f"every label is at least {min_completeness:.0%} complete (lowest per split: "
        + ", ".join(f"{k} {v:.1%}" for k, v in lowest.items())
        + ")"
    )
    return GateResult("labels_complete_enough", not short, reason, {"lowest_completeness": lowest})


def fraud_count_gate(summary: dict[str, dict], min_frauds: int) -> GateResult:
    """Each window holds at least ``min_frauds`` frauds, enough to learn from and to measure."""
    counts = {split: int(s["n_frauds"]) for split, s in summary.items()}
    short = {split: n for split, n in counts.items() if n < min_frauds}
    reason = (
        f"too few frauds (< {min_frauds}) in {short}" if short else f"every window has >= {min_frauds} frauds: {counts}"
    )
    return GateResult("min_frauds_per_window", not short, reason, {"frauds": counts, "min_frauds": min_frauds})


def cost_gate(evaluation: ModelEvaluation, margin: float) -> GateResult:
    """The model's test cost beats approve-all and the simple rule, each by at least ``margin`` (a share)."""
    cost = evaluation.total_cost
    limits = {
        "approve_all": evaluation.approve_all_cost * (1.0 - margin),
        "rule": evaluation.rule_cost * (1.0 - margin),
    }
    failing = {name: limit for name, limit in limits.items() if not cost <= limit}
    if failing:
        reason = f"test cost {cost:,.0f} does not beat " + ", ".join(
            f"{name} by {margin:.0%} (must be <= {limit:,.0f})" for name, limit in failing.items()
        )
    else:
        reason = (
            f"test cost {cost:,.0f} beats approve-all ({evaluation.approve_all_cost:,.0f}) and the rule "
            f"({evaluation.rule_cost:,.0f}) by at least {margin:.0%}"
        )
    return GateResult("cost_gate", not failing, reason, {"total_cost": cost, "margin": margin, **limits})


def challenger_gate(candidate_cost: float, champion_cost: float | None, tolerance: float) -> GateResult:
    """The candidate may replace the champion unless it costs more on the same test window beyond the tolerance."""
    if champion_cost is None:
        return GateResult(
            "not_worse_than_champion", True, "no champion to compare with", {"candidate_cost": candidate_cost}
        )
    limit = champion_cost * (1.0 + tolerance)
    passed = candidate_cost <= limit
    verb = "within" if passed else "beyond"
    reason = (
        f"candidate test cost {candidate_cost:,.0f} vs champion {champion_cost:,.0f} on the same window: "
        f"{verb} the {tolerance:.0%} tolerance (limit {limit:,.0f})"
    )
    return GateResult(
        "not_worse_than_champion",
        passed,
        reason,
        {"candidate_cost": candidate_cost, "champion_cost": champion_cost, "limit": limit},
    )


def _judged_value(row: dict, metric: str) -> tuple[float, str]:
    """The interval's upper end where the cohort has one (fail only when confidently below), else the value."""
    high = row.get(f"{metric}_high")
    if high is not None and high == high:
        return float(high), f"upper 90% bound {high:.3f}"
    return float(row[metric]), f"{row[metric]:.3f}"


def cohort_floor_gate(cohorts: list[dict], floors: CohortFloors) -> GateResult:
    """Every cohort with at least ``floors.min_frauds`` test frauds meets the savings, recall and calibration floors.

    Savings and recall are judged on the upper end of their bootstrap interval where the cohort has
    one, so a small cohort fails only when it is below the floor beyond its sampling noise.
    """
    checks = (
        ("savings_vs_approve_all_pct", floors.min_savings_pct),
        ("recall", floors.min_recall),
        ("calibration_ratio", floors.min_calibration_ratio),
    )
    failures, judged, skipped = [], [], []
    for row in cohorts:
        label = f"{row['cohort']}={row['value']}"
        if row["n_frauds"] < floors.min_frauds:
            skipped.append(f"{label} ({row['n_frauds']} frauds)")
            continue
        judged.append(label)
        for metric, floor in checks:
            if metric == "calibration_ratio":
                value, shown = float(row[metric]), f"{row[metric]:.3f}"
            else:
                value, shown = _judged_value(row, metric)
            if not value >= floor:
                failures.append(f"{label} {metric} {shown} < {floor:g}")
    if failures:
        reason = "cohorts below their floors: " + "; ".join(failures)
    else:
        reason = f"{len(judged)} cohorts with >= {floors.min_frauds} frauds meet every floor"
        if skipped:
            reason += f"; too few frauds to judge: {', '.join(skipped)}"
    return GateResult(
        "cohort_floors",
        not failures,
        reason,
        {"failures": failures, "judged": judged, "skipped": skipped, **asdict(floors)},
    )


def evaluate_gates(
    con, windows: TrainingWindows, candidate: Candidate, evaluation: ModelEvaluation, gates: DeployGates
) -> list[GateResult]:
    """Every deploy gate, recomputed from the data rather than trusted from earlier steps."""
    summary = split_summary(con, windows)
    same_candidate = evaluation.model_version == candidate.version
    return [
        window_gate(windows),
        maturity_gate(summary),
        completeness_gate(summary, gates.min_label_completeness),
        fraud_count_gate(summary, gates.min_frauds_per_window),
        cost_gate(evaluation, gates.cost_margin),
        cohort_floor_gate(evaluation.cohorts, evaluation.cohort_floors),
        GateResult(
            "evaluation_matches_candidate",
            same_candidate,
            "the evaluation is of this candidate"
            if same_candidate
            else f"evaluation is of {evaluation.model_version}, candidate is {candidate.version}",
        ),
    ]


def champion_test_cost(con, store: ModelRegistryStore, version: str, costs: CostSettings) -> float | None:
    """The champion's cost on the current test window, scored with its own model and threshold.

    None when the champion needs a feature the current training set does not have.
    """
    bundle = store.scoring_bundle(version)
    test = load_split(con, "test")
    if not set(bundle["features"]) <= set(test.columns):
        return None
    model = TrainedModel.from_dict(bundle)
    alert = score(model, test) >= bundle["threshold"]
    return float(
        decision_costs(test["is_fraud"].to_numpy(), test["amount"].to_numpy(), alert, costs.cost_model()).sum()
    )
