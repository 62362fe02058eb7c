"""Rolling out-of-time backtests: several consecutive test windows, each with its own retrained model.

One test window gives a point; the spread over prequential folds (train, validate and test, then
shift everything back by the test length) says how much of a difference between two nights is noise.
The folds are of the run's own design (window lengths, review capacity, genuine-row cap) unless the
backtest's config sets a value, so fold 0 is the candidate's own windows retrained, and the spread is
of the design that is deployed. :func:`fold_design` resolves the design, :func:`design_statement`
says which it was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from fraud_pipeline.evaluation.metrics import (
    CohortSpec,
    cohort_table,
    evaluate_decisions,
)
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.policy import PolicyRequest
from fraud_pipeline.training.candidate import model_policy
from fraud_pipeline.training.model import ModelParams, score, train_model
from fraud_pipeline.training.windows import TrainingWindows, WindowDesign

#: Fold metrics that get a spread.
FOLD_METRICS = ("savings_vs_approve_all_pct", "average_precision", "recall", "precision", "cost_per_transaction")
#: The metrics the candidate is judged on against the other folds.
JUDGED_METRICS = ("savings_vs_approve_all_pct", "average_precision")


@dataclass(frozen=True)
class BacktestDesign:
    """What the folds are planned, trained and judged with.

    Attributes:
        windows: The window lengths (the shift between folds is ``windows.test_days``).
        daily_review_capacity: k of user precision@k.
        max_genuine_rows: Genuine rows a fold's model learns from at most (0 keeps all).
    """

    windows: WindowDesign
    daily_review_capacity: int
    max_genuine_rows: int

    def as_dict(self) -> dict[str, int]:
        """Every setting by name (:data:`DESIGN_SETTINGS`), the window lengths flat beside the others."""
        return {
            **{k: v for k, v in asdict(self.windows).items() if k not in SHORTEST_WINDOWS},
            "daily_review_capacity": self.daily_review_capacity,
            "max_genuine_rows": self.max_genuine_rows,
        }

    def label(self) -> str:
        """One line: ``49/14/21 days (train/validation/test), warm-up 30, min train 21, k 50, max_genuine_rows 300000``."""
        w = self.windows
        return (
            f"{w.label()} days (train/validation/test), warm-up {w.warmup_days}, min train {w.min_train_days}, "
            f"k {self.daily_review_capacity}, max_genuine_rows {self.max_genuine_rows}"
        )


#: Every setting of a backtest design, in the order they are stated.
#: The shortest windows the newest fold may be shortened to, and the window each one bounds: the run's
#: (a run from before windows could be shortened: the window itself), capped at the folds' window.
SHORTEST_WINDOWS = {"min_validation_days": "validation_days", "min_test_days": "test_days"}
DESIGN_SETTINGS = (
    *(f.name for f in fields(WindowDesign) if f.name not in SHORTEST_WINDOWS),
    "daily_review_capacity",
    "max_genuine_rows",
)


def _design(values: dict[str, int]) -> BacktestDesign:
    shortest = {
        name: min(int(values.get(name) or values[window]), int(values[window]))
        for name, window in SHORTEST_WINDOWS.items()
    }
    windows = WindowDesign(**{name: int(values[name]) for name in DESIGN_SETTINGS[:-2]}, **shortest)
    return BacktestDesign(windows, int(values["daily_review_capacity"]), int(values["max_genuine_rows"]))


def fold_design(run: dict[str, int | None], overrides: dict[str, int | None]) -> tuple[BacktestDesign, dict[str, str]]:
    """The folds' design: the run's own, setting by setting, unless the backtest's config sets a value.

    Args:
        run: The run's value of each of :data:`DESIGN_SETTINGS` (the training windows' design, the
            evaluation's review capacity, the candidate's genuine-row cap); None or absent when unknown.
        overrides: The backtest config's value of each setting; None means "the run's".

    Returns:
        The design and, per setting, where its value came from: ``run`` or ``backtest config``.

    Raises:
        ValueError: If a setting is neither set by the backtest nor known from the run.
    """
    values, sources = {}, {}
    for name in DESIGN_SETTINGS:
        if overrides.get(name) is not None:
            values[name], sources[name] = overrides[name], "backtest config"
        elif run.get(name) is not None:
            values[name], sources[name] = run[name], "run"
        else:
            raise ValueError(
                f"the run does not say its {name} (training_windows from before windows carried their design?): "
                f"rematerialise training_windows or set the backtest's {name}"
            )
    values.update({name: run.get(name) for name in SHORTEST_WINDOWS})
    return _design(values), sources


def design_statement(
    design: BacktestDesign,
    sources: dict[str, str],
    run: dict[str, int | None],
    *,
    n_folds_requested: int,
    n_folds: int,
    horizon_days: float,
    cost_model: CostModel,
    rule_amount_threshold: float,
) -> dict:
    """What the backtest says about the design its folds used, and whether it is the run's.

    Returns:
        ``label`` and ``run_label`` (one line each, ``run_label`` None when the run did not say every
        setting), ``windows_label`` (e.g. ``49/14/21 days``), ``same_as_run``, ``differs_from_run``
        (the settings whose value is not the run's), ``settings`` (each one's value, source and run
        value), the folds requested and fitted, the shift, the horizon, the cost model and the rule
        threshold, each of the last two with its source.
    """
    values = design.as_dict()
    differs = [name for name in DESIGN_SETTINGS if values[name] != run.get(name)]
    known = all(run.get(name) is not None for name in DESIGN_SETTINGS)
    return {
        "label": design.label(),
        "windows_label": f"{design.windows.label()} days",
        "run_label": _design(run).label() if known else None,
        "same_as_run": not differs,
        "differs_from_run": differs,
        "settings": {
            name: {"value": values[name], "source": sources[name], "run": run.get(name)} for name in DESIGN_SETTINGS
        },
        "n_folds_requested": n_folds_requested,
        "n_folds": n_folds,
        "shift_days": design.windows.test_days,
        "horizon_days": horizon_days,
        "cost_model": {**asdict(cost_model), "source": "run (the costs resource)"},
        "rule_amount_threshold": rule_amount_threshold,
        "rule_amount_threshold_source": "the candidate's evaluation (fitted on its validation window)",
    }


def naming_both_designs(findings: list[str], statement: dict) -> list[str]:
    """The findings, each naming the folds' and the candidate's design when they differ."""
    if statement["same_as_run"]:
        return findings
    return [
        f"{finding} [folds of {statement['label']}; the candidate's design: {statement['run_label'] or 'not recorded'}]"
        for finding in findings
    ]


def run_fold(
    splits: dict[str, pd.DataFrame],
    params: ModelParams,
    cost_model: CostModel,
    rule_amount_threshold: float,
    daily_review_capacity: int,
    cohort: CohortSpec | None,
    spec: FeatureSpec | None = None,
    policy: PolicyRequest | None = None,
) -> tuple[dict, list[dict]]:
    """Trains on one fold's train split, chooses its decision policy on its validation split, evaluates on its test split.

    Args:
        splits: ``train``, ``validation`` and ``test`` frames of the fold (features, is_fraud, amount,
            event_time, user_id).
        params: LightGBM settings (the candidate's).
        cost_model: The costs.
        rule_amount_threshold: A of the baseline rule (the candidate's).
        daily_review_capacity: k of user precision@k.
        cohort: The cohort split reported per fold; None when the data has no cohort column (no cohort rows).
        spec: The feature spec the candidate was trained on (its features and categoricals); the
            default spec when None.
        policy: The decision policy the candidate asked for, chosen afresh on the fold's validation
            split (:func:`~fraud_pipeline.training.candidate.model_policy`); None: one threshold.

    Returns:
        The fold's headline metrics (with its policy's global threshold, its number of cells and
        cost_per_transaction) and its cohort rows.
    """
    spec = spec or default_spec()
    model = train_model(splits["train"], splits["validation"], spec.names, spec.categorical, params)
    decision = model_policy(model, splits["validation"], policy, cost_model)
    test = splits["test"].copy()
    test["score"] = score(model, test)
    headline = evaluate_decisions(test, decision, cost_model, rule_amount_threshold, daily_review_capacity)
    headline["threshold"] = decision.global_threshold
    headline["policy_cells"] = len(decision.cells)
    headline["cost_per_transaction"] = (
        headline["total_cost"] / headline["n_transactions"] if headline["n_transactions"] else math.nan
    )
    if cohort is None:
        return headline, []
    cohorts = cohort_table(test, decision, cost_model, rule_amount_threshold, cohort).to_dict(orient="records")
    return headline, cohorts


def fold_row(
    index: int, windows: TrainingWindows, headline: dict, candidate_windows: TrainingWindows | None = None
) -> dict:
    """One row of the fold table; ``candidates_windows`` says the fold's windows are the candidate's own."""
    return {
        "fold": index,
        "test_start": f"{windows.test_start:%Y-%m-%d}",
        "test_end": f"{windows.test_end:%Y-%m-%d}",
        "candidates_windows": candidate_windows is not None and windows.splits() == candidate_windows.splits(),
        "n_transactions": int(headline["n_transactions"]),
        "n_frauds": int(headline["n_frauds"]),
        "threshold": float(headline["threshold"]),
        "policy_cells": int(headline.get("policy_cells", 0)),
        "total_cost": float(headline["total_cost"]),
        **{metric: float(headline[metric]) for metric in FOLD_METRICS},
    }


def spread(folds: list[dict], metrics: tuple[str, ...] = FOLD_METRICS) -> dict[str, dict]:
    """Mean, standard deviation (ddof 1, NaN for one fold), min and max of each metric over the folds."""
    result = {}
    for metric in metrics:
        values = np.array([f[metric] for f in folds], dtype=float)
        values = values[~np.isnan(values)]
        result[metric] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "min": float(values.min()) if len(values) else math.nan,
            "max": float(values.max()) if len(values) else math.nan,
        }
    return result


def spread_findings(
    folds: list[dict], summary: dict[str, dict], candidate: dict, n_std: float, n_requested: int | None = None
) -> list[str]:
    """What the spread says against the candidate: too few folds, folds losing money, or a candidate far below them.

    A single fold near break-even is noise on a small world; the mean over folds saving nothing is not.
    The candidate is judged against the folds on other windows than its own: a fold planned exactly
    like the candidate (``candidates_windows``, fold 0 when the design is the run's) retrains the
    candidate itself, and a value inside the sample it is judged by can never lie far below it.

    Args:
        folds: Fold rows.
        summary: :func:`spread` of the folds.
        candidate: The candidate's test metrics (savings_vs_approve_all_pct, average_precision).
        n_std: How many fold standard deviations below the fold mean count as out of line.
        n_requested: The folds asked for, named when fewer than two fit.
    """
    findings = []
    if len(folds) < 2:
        asked = f" of the {n_requested} requested" if n_requested else ""
        fit = "1 fold" + asked + " fits" if len(folds) == 1 else f"{len(folds)} folds{asked} fit"
        findings.append(f"only {fit} in the warmed-up, mature history: there is no spread to judge the candidate by")
    savings = summary["savings_vs_approve_all_pct"]
    if not savings["mean"] > 0:
        per_fold = ", ".join(f"{f['test_start']}..{f['test_end']} {f['savings_vs_approve_all_pct']:.1%}" for f in folds)
        findings.append(f"the folds save {savings['mean']:.1%} of approve-all on average ({per_fold})")
    others = [f for f in folds if not f.get("candidates_windows")]
    reference = spread(others, JUDGED_METRICS) if others else {}
    for metric in JUDGED_METRICS:
        stats, value = reference.get(metric), candidate.get(metric)
        if value is None or stats is None or stats["std"] != stats["std"]:
            continue
        floor = stats["mean"] - n_std * stats["std"]
        if value < floor:
            findings.append(
                f"candidate {metric} {value:.3f} < mean of the {len(others)} other folds {stats['mean']:.3f} "
                f"- {n_std:g} std ({floor:.3f})"
            )
    return findings


def folds_judging_the_candidate(folds: list[dict]) -> int:
    """How many folds the candidate is judged against: those not planned exactly like it."""
    return sum(not f.get("candidates_windows") for f in folds)
