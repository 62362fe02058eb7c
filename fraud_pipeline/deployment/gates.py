"""Deploy gates: the conditions a candidate model must meet, as pure functions.

The same functions run twice: as blocking Dagster asset checks (visible in the UI, and they stop the
run before the deploy step) and inside the deploy step itself, so a candidate materialised on its
own still cannot become champion without passing them.

Provenance is recomputed, not trusted: the rows each model learnt from, fitted, stopped on and was
thresholded on are recomputed from ``training_set`` and compared with the digests the candidate
records; the model file's own row count and missing-value types are read back; the threshold is
chosen again on validation from the model file; the evaluation's test scores are scored again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.deployment.serving import misreads_unavailable_history
from fraud_pipeline.lib.costs import CostModel, ThresholdChoice, choose_threshold, decision_costs
from fraud_pipeline.training.model import (
    ModelParams,
    RowDigest,
    TrainedModel,
    genuine_sample,
    matrix_problems,
    model_file_missing_types,
    model_file_rows,
    score,
    served_score_mismatches,
)

if TYPE_CHECKING:  # settings objects are passed in; this module needs no Dagster at run time
    from fraud_pipeline.resources import CostSettings, DeployGates
from fraud_pipeline.evaluation.result import CohortFloors, ModelEvaluation
from fraud_pipeline.features.spec import FeatureSpec
from fraud_pipeline.lib.policy import DecisionPolicy, policy_of
from fraud_pipeline.lib.warehouse import fetch_frame
from fraud_pipeline.training.candidate import Candidate, history_count, model_policy, model_rows
from fraud_pipeline.training.training_set import load_split
from fraud_pipeline.training.windows import TrainingWindows, window_problems

#: The splits of ``training_set`` in time order.
SPLITS = ("train", "validation", "test")
#: Test rows the evaluation's scores are recomputed on at most (a fixed hash sample above it).
MAX_RESCORED_ROWS = 20_000
#: The outage replay's bounds: the share of outage rows the serving path must recognise as
#: history-unavailable, and how far (either way) the affected frauds' mean score may move when it
#: does not (a quarter up or down moves a cost-optimal alert set materially).
MIN_OUTAGE_IDENTIFIED, MAX_SCORE_SHIFT = 0.99, 1.25


@dataclass(frozen=True)
class Measure:
    """One number a gate judges: what was observed, the bound it must respect, and the slack left.

    ``margin`` is positive when the bound holds with room to spare and negative by how much it is
    missed, whichever way the bound points, so one plot over nights reads the same for every gate.
    """

    name: str
    observed: float
    bound: float
    at_most: bool
    margin: float

    def holds(self) -> bool:
        """Whether the observed value respects the bound (a NaN never does)."""
        return self.margin >= 0

    def shown(self) -> str:
        """``cost_vs_approve_all 12,345 > bound 11,000``: the comparison as a person reads it."""
        if self.holds():
            relation = "<=" if self.at_most else ">="
        else:
            relation = ">" if self.at_most else "<"
        return f"{self.name} {_number(self.observed)} {relation} bound {_number(self.bound)}"


def measure(name: str, observed, bound, at_most: bool = True) -> Measure:
    """A :class:`Measure`, its margin computed (NaN when either number is missing)."""
    value = float("nan") if observed is None else observed
    limit = float("nan") if bound is None else bound
    margin = float(limit) - float(value) if at_most else float(value) - float(limit)
    return Measure(name, value, limit, at_most, margin if margin == margin else float("-inf"))


def _number(value: float) -> str:
    """A number rounded for people: thousands separated, small ones to 3 significant digits."""
    if value != value:
        return "n/a"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate with the numbers behind it.

    ``measures`` are the gate's numbers against their bounds (observed, bound, margin), what the
    check results plot night over night and what a blocked night's decision quotes.
    """

    name: str
    passed: bool
    reason: str
    details: dict = field(default_factory=dict)
    measures: tuple[Measure, ...] = ()

    def missed(self) -> list[Measure]:
        """The measures whose bound does not hold."""
        return [m for m in self.measures if not m.holds()]


def measured_label_cutoff(as_of: datetime, horizon_days: float) -> datetime:
    """as_of minus the measured maturity horizon, floored to midnight (windows are whole days)."""
    moment = as_of - timedelta(days=horizon_days)
    return datetime(moment.year, moment.month, moment.day)


def window_gate(windows: TrainingWindows, measured_horizon_days: float) -> GateResult:
    """Windows are non-empty, ordered, non-overlapping, and end at or before as_of minus the measured horizon.

    The horizon is the one ``label_delay_profile`` measured, not the one stored in the windows: windows
    planned with a shorter horizon (0, say) carry a cutoff that agrees with itself and nothing else.
    """
    problems = window_problems(windows)
    cutoff = measured_label_cutoff(windows.as_of, measured_horizon_days)
    planned = f"planned with a {round(windows.horizon_days, 1):g}-day horizon, measured {round(measured_horizon_days, 1):g} days"
    if windows.label_cutoff > cutoff:
        problems.append(
            f"label cutoff {windows.label_cutoff:%Y-%m-%d} is later than as_of minus the measured horizon "
            f"({cutoff:%Y-%m-%d}; {planned})"
        )
    late = [f"{name} ends {end:%Y-%m-%d}" for name, (_, end) in windows.splits().items() if end > cutoff]
    if late:
        problems.append(f"{', '.join(late)}: after {cutoff:%Y-%m-%d}, as_of minus the measured horizon ({planned})")
    reason = (
        "; ".join(problems)
        if problems
        else f"train, validation and test are consecutive and end by {cutoff:%Y-%m-%d}, as_of minus the measured "
        f"{round(measured_horizon_days, 1):g}-day horizon"
    )
    if not problems and (shortened := windows.shortened()):
        reason += f" ({shortened.split(':')[0]}, to fit the mature history)"
    latest = max([windows.label_cutoff, *(end for _, end in windows.splits().values())])
    return GateResult(
        "windows_valid",
        not problems,
        reason,
        {
            "problems": problems,
            "measured_horizon_days": measured_horizon_days,
            "measured_label_cutoff": cutoff.isoformat(),
            **windows.as_dict(),
        },
        (
            measure("window_problems", len(problems), 0),
            measure("days_before_measured_cutoff", (cutoff - latest).total_seconds() / 86_400, 0, at_most=False),
        ),
    )


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
    late = sum(int(s[k]) for s in summary.values() for k in ("n_immature", "n_known_after_as_of", "n_label_mismatch"))
    return GateResult(
        "mature_labels_only", not bad, reason, {"by_split": bad}, (measure("immature_or_late_labels", late, 0),)
    )


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
    known = [v for v in lowest.values() if v is not None]
    return GateResult(
        "labels_complete_enough",
        not short,
        reason,
        {"lowest_completeness": lowest, "min_completeness": min_completeness},
        (
            measure(
                "lowest_label_completeness",
                min(known) if len(known) == len(lowest) else None,
                min_completeness,
                at_most=False,
            ),
        ),
    )


def fraud_count_gate(summary: dict[str, dict], min_frauds: int) -> GateResult:
    """Each window holds at least ``min_frauds`` frauds, enough to learn from and to measure."""
    counts = {split: int(s["n_frauds"]) for split, s in summary.items()}
    short = {split: n for split, n in counts.items() if n < min_frauds}

    def listed(numbers: dict[str, int]) -> str:
        return ", ".join(f"{split} {n:,}" for split, n in numbers.items())

    reason = (
        f"too few frauds (< {min_frauds}) in {listed(short)}"
        if short
        else f"every window has >= {min_frauds} frauds: {listed(counts)}"
    )
    return GateResult(
        "min_frauds_per_window",
        not short,
        reason,
        {"frauds": counts, "min_frauds": min_frauds},
        (measure("fewest_frauds_in_a_window", min(counts.values(), default=0), min_frauds, at_most=False),),
    )


def cost_gate(evaluation: ModelEvaluation, margin: float) -> GateResult:
    """The model's test cost beats approve-all and the simple rule, each by at least ``margin`` (a share)."""
    cost = evaluation.total_cost
    bounds = {
        "approve_all": evaluation.approve_all_cost * (1.0 - margin),
        "rule": evaluation.rule_cost * (1.0 - margin),
    }
    failing = {name: bound for name, bound in bounds.items() if not cost <= bound}
    if failing:
        reason = f"test cost {cost:,.0f} does not beat " + ", ".join(
            f"{name.replace('_', '-')} by {margin:.0%} (must be <= {bound:,.0f})" for name, bound in failing.items()
        )
    else:
        reason = (
            f"test cost {cost:,.0f} beats approve-all ({evaluation.approve_all_cost:,.0f}) and the rule "
            f"({evaluation.rule_cost:,.0f}) by at least {margin:.0%}"
        )
    return GateResult(
        "cost_beats_baselines",
        not failing,
        reason,
        {
            "test_cost": cost,
            "required_margin": margin,
            "approve_all_cost": evaluation.approve_all_cost,
            "rule_cost": evaluation.rule_cost,
            "max_cost_vs_approve_all": bounds["approve_all"],
            "max_cost_vs_rule": bounds["rule"],
        },
        (
            measure("cost_vs_approve_all", cost, bounds["approve_all"]),
            measure("cost_vs_rule", cost, bounds["rule"]),
        ),
    )


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
        {"candidate_cost": candidate_cost, "champion_cost": champion_cost, "max_candidate_cost": limit},
        (measure("cost_vs_champion", candidate_cost, limit),),
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
    failures, judged, skipped, measures = [], [], [], []
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
            judged_on = f"{metric}_upper90" if shown.startswith("upper") else metric
            measures.append(measure(f"{row['cohort']}_{row['value']}_{judged_on}", value, floor, at_most=False))
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
        (*measures, measure("cohort_floors_missed", len(failures), 0)),
    )


class Splits:
    """The splits of ``training_set``, each read when first needed and then kept.

    ``ids(split)`` reads only what the row digests are recomputed from; ``frame(split)`` every column.
    """

    def __init__(self, con, spec: FeatureSpec | None = None) -> None:
        self.con = con
        #: The count that says a row has history under the candidate's spec (the fallback's rows).
        self.history_count = history_count(spec)
        self._ids: dict[str, pd.DataFrame] = {}
        self._frames: dict[str, pd.DataFrame] = {}

    def ids(self, split: str) -> pd.DataFrame:
        """transaction_id, is_fraud and the spec's history count of one split, in transaction_id order."""
        if split in self._frames:
            return self._frames[split]
        if split not in self._ids:
            self._ids[split] = fetch_frame(
                self.con,
                f"SELECT transaction_id, is_fraud, {self.history_count} FROM training_set WHERE split = $split "
                "ORDER BY transaction_id",
                {"split": split},
            )
        return self._ids[split]

    def sample(self, split: str, max_rows: int) -> pd.DataFrame:
        """Every column of at most ``max_rows`` rows of one split, chosen by a hash of transaction_id."""
        return fetch_frame(
            self.con,
            "SELECT * FROM training_set WHERE split = $split ORDER BY hash(transaction_id), transaction_id LIMIT $n",
            {"split": split, "n": int(max_rows)},
        )

    def frame(self, split: str) -> pd.DataFrame:
        """Every column of one split, in transaction_id order."""
        if split not in self._frames:
            self._frames[split] = load_split(self.con, split)
            self._ids.pop(split, None)
        return self._frames[split]


def _params(candidate: Candidate) -> ModelParams:
    """The LightGBM settings the candidate says it was trained with (its genuine-row cap and seed)."""
    known = {k: v for k, v in candidate.params.items() if k in ModelParams.__dataclass_fields__}
    return ModelParams(**known)


def _which_rows(recorded: RowDigest, splits: Splits, select: Callable) -> str:
    """Which split or union of splits has the recorded digest, or 'rows that are no union of splits'."""
    for size in (1, 2, 3):
        for names in combinations(SPLITS, size):
            ids = np.concatenate([select(splits.ids(name))["transaction_id"].to_numpy() for name in names])
            if len(ids) == recorded.n_rows and RowDigest.of(ids) == recorded:
                return "+".join(names)
    return "rows that are no split or union of splits of training_set"


def learnt_rows_gate(splits: Splits, candidate: Candidate) -> GateResult:
    """Each model learnt from its train split, fitted its genuine-row sample and stopped on its validation split.

    Every digest is recomputed from ``training_set`` (the fallback's rows are the users with history,
    the sample is :func:`genuine_sample` with the candidate's cap and seed) and must equal the
    candidate's; the model file's own row count must equal the sample's. A mismatch names the rows
    the model did learn from when they are a split or a union of splits (``train+test``).
    """
    params = _params(candidate)
    failures, details = [], {}
    for name, thresholded in candidate.models().items():
        model, select = thresholded.model, model_rows(candidate.feature_spec())[name]
        train, validation = select(splits.ids("train")), select(splits.ids("validation"))
        fitted = genuine_sample(train, params.max_genuine_rows, params.seed).frame
        expected = {
            "train_rows": RowDigest.of(train["transaction_id"]),
            "fit_rows": RowDigest.of(fitted["transaction_id"]),
            "early_stopping_rows": RowDigest.of(
                genuine_sample(validation, params.max_genuine_rows, params.seed).frame["transaction_id"]
            ),
        }
        recorded = {key: getattr(model, key) for key in expected}
        file_rows = model_file_rows(model.model_text)
        details[name] = {
            "expected": {k: str(v) for k, v in expected.items()},
            "recorded": {k: str(v) for k, v in recorded.items()},
            "model_file_rows": file_rows,
        }
        if any(v is None for v in recorded.values()):
            failures.append(f"the {name} model records no digest of the rows it learnt from: it cannot be checked")
            continue
        if recorded["train_rows"] != expected["train_rows"]:
            which = _which_rows(recorded["train_rows"], splits, select)
            failures.append(
                f"the {name} model learnt from {which} ({recorded['train_rows']}), not its train split "
                f"({expected['train_rows']}): trained on other rows than its train split"
            )
        elif recorded["fit_rows"] != expected["fit_rows"]:
            failures.append(
                f"the {name} model fitted {recorded['fit_rows']}, not the genuine-row sample of its train split "
                f"with max_genuine_rows {params.max_genuine_rows} and seed {params.seed} ({expected['fit_rows']})"
            )
        if recorded["early_stopping_rows"] != expected["early_stopping_rows"]:
            which = _which_rows(recorded["early_stopping_rows"], splits, select)
            failures.append(
                f"the {name} model stopped early on {which} ({recorded['early_stopping_rows']}), not on its "
                f"validation split ({expected['early_stopping_rows']})"
            )
        if file_rows is not None and file_rows != expected["fit_rows"].n_rows:
            failures.append(
                f"the {name} model file says LightGBM fitted {file_rows:,} rows; its train split's sample has "
                f"{expected['fit_rows'].n_rows:,}: trained on other rows than its train split"
            )
    reason = (
        "; ".join(failures)
        if failures
        else "main and fallback learnt from their train split, fitted its genuine-row sample and stopped on their "
        "validation split (digests recomputed from training_set; the model files' row counts agree)"
    )
    return GateResult(
        "model_learnt_from_its_train_split",
        not failures,
        reason,
        details,
        (measure("provenance_mismatches", len(failures), 0),),
    )


def _choice(model: TrainedModel, rows: pd.DataFrame, cost_model: CostModel) -> ThresholdChoice:
    return choose_threshold(score(model, rows), rows["is_fraud"].to_numpy(), rows["amount"].to_numpy(), cost_model)


def _cell_differences(name: str, stored: DecisionPolicy, recomputed: DecisionPolicy) -> list[str]:
    """What differs between a model's stored policy and the one recomputed on validation, naming each cell."""
    problems = []
    stored_splits, recomputed_splits = [s.name for s in stored.splits], [s.name for s in recomputed.splits]
    if stored_splits != recomputed_splits:
        shown = lambda names: ", ".join(names) or "none"  # noqa: E731
        problems.append(
            f"the {name} model's policy splits by {shown(stored_splits)}, the one recomputed on validation by "
            f"{shown(recomputed_splits)}"
        )
        return problems
    if not math.isclose(stored.global_threshold, recomputed.global_threshold, rel_tol=1e-12, abs_tol=0.0):
        problems.append(
            f"the {name} model's policy has global threshold {stored.global_threshold:.6g}, recomputed "
            f"{recomputed.global_threshold:.6g}"
        )
    mine, theirs = stored.thresholds(), recomputed.thresholds()
    for cell in sorted(set(mine) | set(theirs)):
        if cell not in theirs:
            problems.append(f"the {name} model's policy has cell {cell}, which validation does not have")
        elif cell not in mine:
            problems.append(f"the {name} model's policy lacks cell {cell} of validation")
        elif not math.isclose(mine[cell], theirs[cell], rel_tol=1e-12, abs_tol=0.0):
            problems.append(
                f"the {name} model's threshold for cell {cell} is {mine[cell]:.6g}, not the one recomputed on "
                f"validation ({theirs[cell]:.6g})"
            )
    return problems


def threshold_gate(splits: Splits, candidate: Candidate, cost_model: CostModel) -> GateResult:
    """Each model's decision policy is the one chosen on its validation rows, recomputed from the model file.

    The global threshold and every cell's threshold must equal the recomputed ones exactly (a cell
    that differs is named). A global threshold that does not names the split it is the
    cost-minimising threshold of, when it is one (``the test split``).
    """
    failures, details = [], {}
    request = candidate.request()
    for name, thresholded in candidate.models().items():
        select = model_rows(candidate.feature_spec())[name]
        validation = select(splits.frame("validation"))
        recomputed = model_policy(thresholded.model, validation, request, cost_model)
        stored = thresholded.decision_policy()
        expected_rows = RowDigest.of(validation["transaction_id"])
        cell_problems = _cell_differences(name, stored, recomputed)
        details[name] = {
            "stored": thresholded.threshold,
            "recomputed_on_validation": recomputed.global_threshold,
            "stored_cells": stored.thresholds(),
            "recomputed_cells": recomputed.thresholds(),
            "cells_differing": len(cell_problems),
            "threshold_rows": str(thresholded.threshold_rows),
        }
        if not math.isclose(recomputed.global_threshold, thresholded.threshold, rel_tol=1e-12, abs_tol=0.0):
            chosen_on = [
                split
                for split in ("test", "train")
                if math.isclose(
                    _choice(thresholded.model, select(splits.frame(split)), cost_model).threshold,
                    thresholded.threshold,
                    rel_tol=1e-12,
                    abs_tol=0.0,
                )
            ]
            on = f"it is the cost-minimising threshold of the {chosen_on[0]} split" if chosen_on else "chosen elsewhere"
            failures.append(
                f"the {name} model's threshold {thresholded.threshold:.6g} is not the cost-minimising threshold on "
                f"validation ({recomputed.global_threshold:.6g}, recomputed from the model file): thresholded on "
                f"other rows than validation; {on}"
            )
        elif cell_problems:
            failures.extend(cell_problems)
        elif thresholded.threshold_rows is not None and thresholded.threshold_rows != expected_rows:
            failures.append(
                f"the {name} model says its threshold was chosen on {thresholded.threshold_rows}, not on its "
                f"validation rows ({expected_rows})"
            )
    cells = lambda policy: f"{len(policy.cells)} cells" if policy.cells else "one threshold"  # noqa: E731
    reason = (
        "; ".join(failures)
        if failures
        else "main and fallback policies are the ones chosen on validation, recomputed from the model files "
        f"(main {candidate.main.threshold:.6g}, {cells(candidate.main.decision_policy())}; fallback "
        f"{candidate.fallback.threshold:.6g}, {cells(candidate.fallback.decision_policy())})"
    )
    return GateResult(
        "threshold_chosen_on_validation",
        not failures,
        reason,
        details,
        (
            measure("thresholds_not_recomputed", len(failures), 0),
            *(
                measure(
                    f"{name}_threshold_difference",
                    abs(d["stored"] - d["recomputed_on_validation"]),
                    1e-12 * max(abs(d["stored"]), abs(d["recomputed_on_validation"])),
                )
                for name, d in details.items()
            ),
            measure("policy_cells_differing", sum(d["cells_differing"] for d in details.values()), 0),
        ),
    )


def model_matrix_gate(splits: Splits, candidate: Candidate, max_served_rows: int = MAX_RESCORED_ROWS) -> GateResult:
    """What LightGBM receives is NaN exactly where ``training_set`` is NULL, and the table's value elsewhere.

    Training: the matrix :func:`fraud_pipeline.training.model.to_model_matrix` builds from each model's
    fitted rows (the genuine-row sample of its train split), and the model file's missing-value
    types (``nan`` for every split on a feature the fitted rows hold NULL in). Serving: the scores
    the serving path gives a hash sample of the test split equal the model's scores of the
    reference matrix.
    """
    params = _params(candidate)
    failures, details = [], {}
    test = splits.sample("test", max_served_rows)
    for name, thresholded in candidate.models().items():
        model, select = thresholded.model, model_rows(candidate.feature_spec())[name]
        fitted = genuine_sample(select(splits.frame("train")), params.max_genuine_rows, params.seed).frame
        cells = matrix_problems(fitted, model)
        numeric = [f for f in model.features if f not in model.categories]
        has_null = {f for f in numeric if fitted[f].isna().any()}
        types = model_file_missing_types(model.model_text)
        filled_in_file = sorted(f for f, kinds in types.items() if f in has_null and kinds != {"nan"})
        served = served_score_mismatches(select(test), model)
        details[name] = {
            "matrix_cells": cells,
            "features_without_nan_in_the_model_file": filled_in_file,
            "served_rows_checked": int(len(select(test))),
            "served_score_mismatches": served,
        }
        if cells:
            shown = ", ".join(f"{f} ({', '.join(f'{k} {v:,}' for k, v in c.items() if v)})" for f, c in cells.items())
            failures.append(f"the {name} model's training matrix is not the table: {shown}")
        if filled_in_file:
            failures.append(
                f"the {name} model file shows no NaN for {', '.join(filled_in_file)}, which its fitted rows hold NULL "
                "in: LightGBM was given a value standing in for absence"
            )
        if served:
            failures.append(
                f"serving: {served:,} of {len(select(test)):,} sampled test rows are scored differently from the "
                f"{name} model on the table's values with NULL as NaN"
            )
    reason = (
        "; ".join(failures)
        if failures
        else "the matrix LightGBM receives is NaN exactly where training_set is NULL and equal elsewhere "
        "(training matrix, model file, served scores; main and fallback)"
    )
    total = lambda key: sum(  # noqa: E731
        sum(v for c in d[key].values() for v in c.values()) if key == "matrix_cells" else len(d[key])
        for d in details.values()
    )
    return GateResult(
        "model_matrix_keeps_absence",
        not failures,
        reason,
        details,
        (
            measure("matrix_cells_differing", total("matrix_cells"), 0),
            measure("features_without_nan_in_the_model_file", total("features_without_nan_in_the_model_file"), 0),
            measure("served_score_mismatches", sum(d["served_score_mismatches"] for d in details.values()), 0),
        ),
    )


def evaluation_scores_gate(
    con, candidate: Candidate, evaluation: ModelEvaluation, cost_model: CostModel, max_rows: int = MAX_RESCORED_ROWS
) -> GateResult:
    """The evaluation scored this candidate on its test split, and its scores are the model file's.

    ``evaluation_scores`` must hold exactly the test split's rows; a hash sample of them (every row
    up to ``max_rows``) is scored again from the model file and must match; every alert must be the
    candidate's policy's (``score >=`` the threshold of the row's cell); and the evaluation's cost,
    rows and frauds must be those of the stored decisions.
    """
    failures, details = [], {}
    if evaluation.model_version != candidate.version:
        failures.append(f"the evaluation is of {evaluation.model_version}, the candidate is {candidate.version}")
    if not math.isclose(evaluation.threshold, candidate.threshold, rel_tol=1e-12, abs_tol=0.0):
        failures.append(
            f"the evaluation used threshold {evaluation.threshold:.6g}, the candidate's is {candidate.threshold:.6g}"
        )
    policy = candidate.policy
    if evaluation.policy is not None and DecisionPolicy.from_dict(evaluation.policy) != policy:
        failures.append("the evaluation decided with another policy than the candidate's")
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "evaluation_scores" not in tables:
        failures.append("no evaluation_scores table: the test scores cannot be recomputed")
        return GateResult(
            "evaluation_scores_reproduce",
            False,
            "; ".join(failures),
            details,
            (measure("evaluation_problems", len(failures), 0),),
        )
    counts = con.execute(
        """
        SELECT count(*) FILTER (WHERE t.transaction_id IS NULL) AS not_in_test,
               count(*) FILTER (WHERE e.transaction_id IS NULL) AS not_scored
        FROM (SELECT transaction_id FROM training_set WHERE split = 'test') AS t
        FULL JOIN evaluation_scores AS e ON e.transaction_id = t.transaction_id
        """
    ).fetchone()
    columns = "".join(f", t.{column}" for column in policy.columns())
    stored = fetch_frame(
        con,
        f"SELECT e.score, e.alert{columns} FROM training_set AS t JOIN evaluation_scores AS e USING (transaction_id) "
        "WHERE t.split = 'test'",
    )
    stored_alert = stored["alert"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    scored = stored["score"].notna().to_numpy()
    expected_alert = np.zeros(len(stored), dtype=bool)
    expected_alert[scored] = policy.alerts(stored["score"].to_numpy(dtype=float)[scored], stored[scored])
    # a NULL alert or score is no decision of the policy's either
    not_the_policys = int(((stored_alert != expected_alert) | stored["alert"].isna().to_numpy() | ~scored).sum())
    coverage = (*map(int, counts), not_the_policys)
    details["coverage"] = dict(zip(("not_in_test", "not_scored", "alert_not_at_threshold"), map(int, coverage)))
    if coverage[0] or coverage[1]:
        failures.append(
            f"evaluation_scores does not hold exactly the test split: {coverage[0]:,} scored rows are not test rows, "
            f"{coverage[1]:,} test rows are not scored"
        )
    if coverage[2]:
        failures.append(
            f"{coverage[2]:,} stored alerts are not score >= the threshold of the row's cell (the candidate's policy)"
        )
    test_ids = con.execute("SELECT transaction_id FROM training_set WHERE split = 'test'").fetchnumpy()[
        "transaction_id"
    ]
    if evaluation.test_rows is not None and RowDigest.from_dict(evaluation.test_rows) != RowDigest.of(test_ids):
        failures.append(
            f"the evaluation says it scored {RowDigest.from_dict(evaluation.test_rows)}, the test split is "
            f"{RowDigest.of(test_ids)}"
        )
    sample = fetch_frame(
        con,
        "SELECT t.*, e.score AS stored_score FROM training_set AS t JOIN evaluation_scores AS e USING (transaction_id) "
        "WHERE t.split = 'test' ORDER BY hash(transaction_id), transaction_id LIMIT $n",
        {"n": int(max_rows)},
    )
    rescored = score(candidate.main.model, sample)
    differ = int((~np.isclose(rescored, sample["stored_score"].to_numpy(), rtol=1e-9, atol=1e-12)).sum())
    details["rescored_rows"], details["rescored_mismatches"] = len(sample), differ
    if differ:
        failures.append(
            f"{differ:,} of {len(sample):,} sampled test scores differ from the candidate's model file scoring the "
            "same rows: the evaluation is not of this model on this split"
        )
    decided = con.execute(
        "SELECT t.is_fraud, t.amount, e.alert FROM training_set AS t JOIN evaluation_scores AS e USING (transaction_id) "
        "WHERE t.split = 'test'"
    ).fetchnumpy()
    cost = float(decision_costs(decided["is_fraud"], decided["amount"], decided["alert"], cost_model).sum())
    details["stored_decisions_cost"] = cost
    if not math.isclose(cost, evaluation.total_cost, rel_tol=1e-9, abs_tol=1e-6):
        failures.append(
            f"the evaluation's test cost {evaluation.total_cost:,.2f} is not its stored decisions' ({cost:,.2f})"
        )
    if len(decided["alert"]) != evaluation.n_transactions or int(np.sum(decided["is_fraud"])) != evaluation.n_frauds:
        failures.append(
            f"the evaluation counts {evaluation.n_transactions:,} rows and {evaluation.n_frauds:,} frauds, its stored "
            f"decisions {len(decided['alert']):,} and {int(np.sum(decided['is_fraud'])):,}"
        )
    reason = (
        "; ".join(failures)
        if failures
        else f"the evaluation's test scores are the model file's ({len(sample):,} rows rescored), on exactly the test "
        "split, and its cost is its stored decisions'"
    )
    return GateResult(
        "evaluation_scores_reproduce",
        not failures,
        reason,
        details,
        (
            measure("evaluation_problems", len(failures), 0),
            measure("rescored_mismatches", differ, 0),
            measure("test_rows_not_scored", int(coverage[1]), 0),
            measure(
                "cost_difference_to_stored_decisions",
                abs(cost - evaluation.total_cost),
                max(1e-9 * max(abs(cost), abs(evaluation.total_cost)), 1e-6),
            ),
        ),
    )


def history_gate(backtest: dict, evaluation: ModelEvaluation, max_n_std: float) -> GateResult:
    """The candidate is not far better than its own backtest folds: far better is what a leak looks like.

    The candidate's test AP must not exceed the folds' mean by more than ``max_n_std`` fold standard
    deviations. The folds include the backtest's retrain of the candidate's own windows, so a clean
    candidate, which that fold reproduces, is one of the values the spread is taken over and can
    never be more than (n - 1) / sqrt(n) std above it (under 3 for up to 10 folds). When the
    backtest's design is the run's, that fold must also reproduce the candidate's AP and cost.
    """
    folds = backtest["folds"]
    values = np.array([f["average_precision"] for f in folds], dtype=float)
    candidate_ap = float(evaluation.average_precision)
    findings, details = [], {"candidate_average_precision": candidate_ap, "max_n_std": max_n_std}
    if len(values) >= 2:
        mean, std = float(values.mean()), float(values.std(ddof=1))
        limit = mean + max_n_std * std
        details.update({"fold_mean": mean, "fold_std": std, "limit": limit})
        if candidate_ap > limit:
            findings.append(
                f"better than its own history: look for a leak. Test AP {candidate_ap:.3f} > fold mean {mean:.3f} + "
                f"{max_n_std:g} std ({limit:.3f}) over {len(values)} folds"
            )
    own = [f for f in folds if f.get("candidates_windows")]
    if own and backtest.get("design", {}).get("same_as_run"):
        fold = own[0]
        details["own_windows_fold"] = {"average_precision": fold["average_precision"], "total_cost": fold["total_cost"]}
        if not (
            math.isclose(fold["average_precision"], candidate_ap, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(fold["total_cost"], evaluation.total_cost, rel_tol=1e-9, abs_tol=1e-6)
        ):
            findings.append(
                f"the backtest retrained the candidate's own windows and reached AP {fold['average_precision']:.3f} at "
                f"cost {fold['total_cost']:,.0f}; the candidate has AP {candidate_ap:.3f} at cost "
                f"{evaluation.total_cost:,.0f}: it was not trained as its windows and settings say"
            )
    if findings:
        reason = "; ".join(findings)
    elif len(values) < 2:
        reason = f"{len(values)} fold: no spread to judge the candidate by"
    else:
        reason = (
            f"its test AP {candidate_ap:.3f} is not far above its history (fold mean {details['fold_mean']:.3f} + "
            f"{max_n_std:g} std = {details['limit']:.3f}, its own windows' retrain included)"
        )
    judged = (measure("average_precision_vs_history", candidate_ap, details["limit"]),) if "limit" in details else ()
    return GateResult("within_its_own_history", not findings, reason, details, judged)


def outage_gate(
    outage_replay: dict, min_identified: float = MIN_OUTAGE_IDENTIFIED, max_score_shift: float = MAX_SCORE_SHIFT
) -> GateResult:
    """The serving path recognises unavailable history instead of scoring it as known-empty (new-user) history.

    It fails only when both bounds are missed: too few outage rows recognised, and the affected
    frauds' mean score moved more than ``max_score_shift`` times either way.
    """
    misread, reason = misreads_unavailable_history(outage_replay, min_identified, max_score_shift)
    full = outage_replay["mean_score_affected_frauds_full_history"]
    outage = outage_replay["mean_score_affected_frauds_outage"]
    shift = outage / full if full and full == full and outage == outage else float("nan")
    factor = None if shift != shift else (math.inf if shift == 0 else max(shift, 1.0 / shift))
    return GateResult(
        "unavailable_history_not_misread",
        not misread,
        reason,
        {
            "min_identified_share": min_identified,
            "max_score_shift": max_score_shift,
            **{k: v for k, v in outage_replay.items() if isinstance(v, (int, float))},
        },
        (
            measure("identified_share", outage_replay["identified_share"], min_identified, at_most=False),
            measure("score_shift_factor", factor, max_score_shift),
        ),
    )


def evaluate_gates(
    con,
    windows: TrainingWindows,
    candidate: Candidate,
    evaluation: ModelEvaluation,
    gates: DeployGates,
    costs: CostSettings,
    measured_horizon_days: float,
) -> list[GateResult]:
    """Every deploy gate, recomputed from the data rather than trusted from earlier steps.

    The windows are judged against the horizon ``label_delay_profile`` measured; the candidate's
    provenance, threshold, model matrix and test scores are recomputed from ``training_set``, the
    model files and ``evaluation_scores``.
    """
    summary = split_summary(con, windows)
    same_candidate = evaluation.model_version == candidate.version
    splits = Splits(con, candidate.feature_spec())
    cost_model = costs.cost_model()
    return [
        window_gate(windows, measured_horizon_days),
        maturity_gate(summary),
        completeness_gate(summary, gates.min_label_completeness),
        fraud_count_gate(summary, gates.min_frauds_per_window),
        learnt_rows_gate(splits, candidate),
        threshold_gate(splits, candidate, cost_model),
        model_matrix_gate(splits, candidate),
        cost_gate(evaluation, gates.cost_margin),
        cohort_floor_gate(evaluation.cohorts, evaluation.cohort_floors),
        GateResult(
            "evaluation_matches_candidate",
            same_candidate,
            "the evaluation is of this candidate"
            if same_candidate
            else f"evaluation is of {evaluation.model_version}, candidate is {candidate.version}",
            measures=(measure("evaluation_of_another_candidate", int(not same_candidate), 0),),
        ),
        evaluation_scores_gate(con, candidate, evaluation, cost_model),
    ]


def champion_test_cost(con, store: ModelRegistryStore, version: str, costs: CostSettings) -> float | None:
    """The champion's cost on the current test window, scored with its own model and decision policy.

    None when the champion needs a feature the current training set does not have.
    """
    bundle = store.scoring_bundle(version)
    test = load_split(con, "test")
    if not set(bundle["features"]) <= set(test.columns):
        return None
    model = TrainedModel.from_dict(bundle)
    alert = policy_of(bundle).alerts(score(model, test), test)
    return float(
        decision_costs(test["is_fraud"].to_numpy(), test["amount"].to_numpy(), alert, costs.cost_model()).sum()
    )
