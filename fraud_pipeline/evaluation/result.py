"""What ``model_evaluation`` hands on: the candidate's test-window metrics, cohorts, floors and decompositions.

The evaluation is stored in every model bundle as :meth:`ModelEvaluation.as_dict` and read back with
:meth:`ModelEvaluation.from_dict`, so the registry, the gates, the report and the summary read one shape.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class CohortFloors:
    """Floors every cohort with enough frauds to judge must meet.

    Attributes:
        min_frauds: Cohorts with fewer test frauds are reported but not judged.
        min_savings_pct: Savings against approving the cohort's transactions, as a share of that cost.
        min_recall: Share of the cohort's frauds alerted at the model's threshold.
        min_calibration_ratio: Mean score over the cohort's observed fraud rate; below it the model
            takes the cohort for much safer than it is.
    """

    min_frauds: int = 15
    min_savings_pct: float = -0.05
    min_recall: float = 0.05
    min_calibration_ratio: float = 0.05


#: The headline metrics of the test window, in the order people read them.
HEADLINE = (
    "total_cost",
    "approve_all_cost",
    "rule_cost",
    "savings_vs_approve_all",
    "savings_vs_approve_all_pct",
    "savings_vs_rule",
    "average_precision",
    "roc_auc",
    "precision",
    "recall",
    "f1",
    "n_alerts",
    "user_precision_at_k",
    "user_precision_at_k_until_first_fraud",
    "n_transactions",
    "n_frauds",
)


@dataclass(frozen=True)
class ModelEvaluation:
    """The candidate judged on the test window with its own decision policy.

    Attributes:
        model_version: The candidate evaluated.
        threshold: Its policy's global threshold (chosen on validation).
        rule_amount_threshold: A of the baseline rule "alert when amount >= A" (fitted on validation).
        n_transactions ... review_capacity_k: The test window's headline decision metrics
            (see :func:`fraud_pipeline.evaluation.metrics.evaluate_decisions`).
        user_precision_at_k_until_first_fraud: The second reading of user precision@k, every user
            removed after its first fraudulent day (NaN in a bundle from before it was recorded).
        cohorts: One record per cohort value: decision metrics, intervals where small, calibration.
        cohort_floors: The floors the cohorts are held to.
        train_headline: The same headline on the (sampled) train window, in sample.
        decomposition_train_to_test, decomposition_validation_to_test: Mix/within/cross-cohort shares
            of the change in each metric between the windows.
        test_rows: The rows it scored: ``n_rows`` and the ``sha256`` of their sorted transaction ids
            (None in a bundle from before it was recorded); the deploy recomputes it from the test split.
        policy: The decision policy every decision metric above is of
            (:meth:`~fraud_pipeline.lib.policy.DecisionPolicy.as_dict`; None before policies).
        policy_vs_single: The policy beside the single global threshold on the test window, overall
            and per cohort: cost, savings and recall of each and the differences (empty before policies).
    """

    model_version: str
    threshold: float
    rule_amount_threshold: float
    n_transactions: int
    n_frauds: int
    fraud_rate: float
    total_cost: float
    approve_all_cost: float
    rule_cost: float
    savings_vs_approve_all: float
    savings_vs_approve_all_pct: float
    savings_vs_rule: float
    average_precision: float
    roc_auc: float
    precision: float
    recall: float
    f1: float
    n_alerts: int
    alert_rate: float
    user_precision_at_k: float
    review_capacity_k: int
    user_precision_at_k_until_first_fraud: float = math.nan
    cohorts: list[dict] = field(default_factory=list)
    cohort_floors: CohortFloors = field(default_factory=CohortFloors)
    train_headline: dict = field(default_factory=dict)
    decomposition_train_to_test: list[dict] = field(default_factory=list)
    decomposition_validation_to_test: list[dict] = field(default_factory=list)
    test_rows: dict | None = None
    policy: dict | None = None
    policy_vs_single: list[dict] = field(default_factory=list)

    def headline(self) -> dict[str, float]:
        """The headline metrics by name, in :data:`HEADLINE` order."""
        return {name: getattr(self, name) for name in HEADLINE}

    def as_dict(self) -> dict:
        """Plain values, as stored in the model bundle (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelEvaluation:
        """Rebuilds an evaluation from :meth:`as_dict` output (a bundle's ``evaluation``)."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        kept["cohort_floors"] = CohortFloors(**values.get("cohort_floors", {}))
        return cls(**kept)

    def to_metadata(self) -> dict:
        """The headline numbers and identity for the Dagster UI (floats, so each plots over time)."""
        return {
            **{name: float(getattr(self, name)) for name in HEADLINE},
            "model_version": self.model_version,
            "threshold": float(self.threshold),
            "rule_amount_threshold": float(self.rule_amount_threshold),
            **{
                f"single_threshold_{key}": float(row[f"single_{key}"])
                for row in self.policy_vs_single[:1]
                for key in ("total_cost", "savings_vs_approve_all_pct", "recall")
            },
        }
