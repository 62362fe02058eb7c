"""Two model versions side by side on the same matured window: the warehouse's test split, one cost model.

Each version decides the same rows through the serving path (main model, fallback, review) with its
own models and decision policies (:func:`~fraud_pipeline.lib.policy.policy_of`: the per-cohort
thresholds it was promoted with, or the single threshold of a version from before policies), and is measured by the evaluation's own metrics, so the two columns differ
only by the models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.deployment.serving import ScoringModels, decide
from fraud_pipeline.evaluation.metrics import evaluate_decisions
from fraud_pipeline.lib.costs import CostModel, decision_costs
from fraud_pipeline.lib.policy import DecisionPolicy, policy_of
from fraud_pipeline.training.training_set import load_split

#: The rows of the comparison, in the order a risk lead reads them: (metric, lower is better; None: neither).
COMPARED = (
    ("total_cost", True),
    ("savings_vs_approve_all", False),
    ("savings_vs_approve_all_pct", False),
    ("savings_vs_rule", False),
    ("average_precision", False),
    ("roc_auc", False),
    ("precision", False),
    ("recall", False),
    ("n_alerts", None),
    ("user_precision_at_k", False),
)


class CompareError(ValueError):
    """A version cannot be compared on this warehouse; the message is one line naming why."""


@dataclass(frozen=True)
class VersionOnWindow:
    """One version's decisions measured on the window."""

    version: str
    trained_as_of: str
    threshold: float
    metrics: dict
    routes: dict
    policy: DecisionPolicy | None = None

    def n_cells(self) -> int:
        """The cohort cells its policy gives their own threshold (0: one threshold for every row)."""
        return 0 if self.policy is None else len(self.policy.cells)


@dataclass(frozen=True)
class Comparison:
    """Both versions on the same rows, with what the rows are."""

    window_start: str
    window_end: str
    n_transactions: int
    n_frauds: int
    columns: tuple[VersionOnWindow, VersionOnWindow]

    def rows(self) -> list[dict]:
        """One row per metric: each version's value, B minus A, and which is better."""
        a, b = self.columns
        out = [
            {"metric": "threshold", a.version: a.threshold, b.version: b.threshold, "b_minus_a": None},
            {"metric": "n_policy_cells", a.version: a.n_cells(), b.version: b.n_cells(), "b_minus_a": None},
        ]
        for metric, lower_is_better in COMPARED:
            first, second = a.metrics.get(metric), b.metrics.get(metric)
            diff = None if first is None or second is None else float(second) - float(first)
            if not diff or lower_is_better is None:
                better = ""
            else:
                better = b.version if (diff < 0) == lower_is_better else a.version
            out.append({"metric": metric, a.version: first, b.version: second, "b_minus_a": diff, "better": better})
        return out


def _on_window(store: ModelRegistryStore, version: str, test: pd.DataFrame, cost_model: CostModel) -> VersionOnWindow:
    bundle = store.scoring_bundle(version)
    missing = sorted(set(bundle["features"]) - set(test.columns))
    if missing:
        raise CompareError(f"version {version} needs {', '.join(missing)}, which the warehouse's training_set lacks")
    evaluation = bundle.get("evaluation", {})
    decided = decide(test, ScoringModels.from_candidate(bundle))
    scored = test.assign(score=decided["score"].fillna(1.0).to_numpy())
    policy = policy_of(bundle)
    metrics = evaluate_decisions(
        scored,
        policy,
        cost_model,
        float(evaluation.get("rule_amount_threshold", np.inf)),
        int(evaluation.get("review_capacity_k", 50)),
    )
    # what the serving path decides (fallback and review included), costed with the same model
    served = decision_costs(
        test["is_fraud"].to_numpy(), test["amount"].to_numpy(), decided["alert"].to_numpy(), cost_model
    )
    metrics = {**metrics, "total_cost": float(served.sum()), "n_alerts": int(decided["alert"].sum())}
    metrics["savings_vs_approve_all"] = metrics["approve_all_cost"] - metrics["total_cost"]
    metrics["savings_vs_rule"] = metrics["rule_cost"] - metrics["total_cost"]
    metrics["savings_vs_approve_all_pct"] = (
        metrics["savings_vs_approve_all"] / metrics["approve_all_cost"] if metrics["approve_all_cost"] else np.nan
    )
    return VersionOnWindow(
        version,
        str(bundle.get("windows", {}).get("as_of", ""))[:10],
        float(bundle["threshold"]),
        metrics,
        decided["route"].value_counts().sort_index().to_dict(),
        policy,
    )


def compare_versions(con, store: ModelRegistryStore, first: str, second: str, cost_model: CostModel) -> Comparison:
    """Both versions on the warehouse's matured test split (``training_set``, split ``test``).

    Raises:
        CompareError: A version is not in the registry, needs features the warehouse lacks, or there is
            no test split to compare on.
        RegistryError: A version's files are unreadable.
    """
    known = store.versions()
    for version in (first, second):
        if version not in known:
            raise CompareError(f"no model version {version!r} in {store.root}; versions: {', '.join(known) or 'none'}")
    test = load_split(con, "test")
    if test.empty:
        raise CompareError("the warehouse's training_set has no test split: run the pipeline first")
    columns = (_on_window(store, first, test, cost_model), _on_window(store, second, test, cost_model))
    return Comparison(
        f"{test['event_time'].min():%Y-%m-%d}",
        f"{test['event_time'].max():%Y-%m-%d}",
        len(test),
        int(test["is_fraud"].sum()),
        columns,
    )
