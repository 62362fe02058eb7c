"""Evaluation: cost, ranking and per-cohort metrics of the candidate on the out-of-time test window."""

from dataclasses import asdict

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.cohorts import cohort_details, decompose, window_headline
from fraud_pipeline.core.costs import rule_baseline
from fraud_pipeline.core.gates import CohortFloors
from fraud_pipeline.core.metrics import DEFAULT_COHORTS, cohort_table, evaluate_decisions
from fraud_pipeline.core.model import TrainedModel, score, uniform_sample
from fraud_pipeline.core.training_set import load_split
from fraud_pipeline.core.warehouse import replace_tables
from fraud_pipeline.resources import DUCKDB_POOL, CostSettings

HEADLINE = (
    "total_cost", "approve_all_cost", "rule_cost", "savings_vs_approve_all", "savings_vs_approve_all_pct",
    "savings_vs_rule", "average_precision", "roc_auc", "precision", "recall", "f1", "n_alerts",
    "user_precision_at_k", "n_transactions", "n_frauds",
)


class EvaluationConfig(dg.Config):
    """How the candidate is judged beyond the cost model."""

    daily_review_capacity: int = Field(
        default=50, description="Users the fraud team can review per day (k of user precision@k)."
    )
    bootstrap_resamples: int = Field(default=200, description="Bootstrap resamples of each small cohort's intervals.")
    bootstrap_max_frauds: int = Field(
        default=100, description="Cohorts with at most this many test frauds get 90% bootstrap intervals."
    )
    bootstrap_seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    max_train_rows: int = Field(
        default=500_000,
        description="The train window's in-sample summary (the train-to-test decomposition) is computed on a fixed "
                    "hash sample of about this many of its rows, one rate for all; 0 scores every row.",
    )
    cohort_min_frauds: int = Field(
        default=CohortFloors.min_frauds, description="Cohorts with fewer test frauds are reported but not held to the floors."
    )
    cohort_min_savings_pct: float = Field(
        default=CohortFloors.min_savings_pct,
        description="Floor of each judged cohort's savings against approve-all, as a share (upper 90% bound where small).",
    )
    cohort_min_recall: float = Field(
        default=CohortFloors.min_recall,
        description="Floor of each judged cohort's recall at the threshold (upper 90% bound where small).",
    )
    cohort_min_calibration_ratio: float = Field(
        default=CohortFloors.min_calibration_ratio,
        description="Floor of each judged cohort's mean score over its observed fraud rate.",
    )

    def floors(self) -> CohortFloors:
        """The cohort floors these settings describe."""
        return CohortFloors(
            min_frauds=self.cohort_min_frauds, min_savings_pct=self.cohort_min_savings_pct,
            min_recall=self.cohort_min_recall, min_calibration_ratio=self.cohort_min_calibration_ratio,
        )


COHORT_COLUMNS = [
    "cohort", "value", "n_transactions", "n_frauds", "total_cost", "savings_vs_approve_all_pct",
    "savings_vs_approve_all_pct_low", "savings_vs_approve_all_pct_high", "average_precision",
    "average_precision_low", "average_precision_high", "precision", "recall", "recall_low", "recall_high",
    "mean_score", "observed_fraud_rate", "calibration_ratio",
]
DECOMPOSITION_COLUMNS = ["cohort", "metric", "old", "new", "change", "mix", "within", "cross_cohort"]


@dg.asset(group_name="evaluation", deps=["training_set"], pool=DUCKDB_POOL)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    fraud_model: dict,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Test-window cost, savings, AP and AUC, per cohort with intervals and calibration, and the train-to-test decomposition."""
    model = TrainedModel.from_dict(fraud_model)
    booster = model.booster()
    with duckdb.get_connection() as con:
        train = uniform_sample(load_split(con, "train"), config.max_train_rows, seed=0)
        validation = load_split(con, "validation")
        test = load_split(con, "test")
        train["score"] = score(model, train, booster)
        validation["score"] = score(model, validation, booster)
        test["score"] = score(model, test, booster)
        test["alert"] = test["score"] >= fraud_model["threshold"]
        replace_tables(
            con,
            {"evaluation_scores": "SELECT transaction_id, 'test' AS split, score, alert FROM scored ORDER BY transaction_id"},
            sources={"scored": test[["transaction_id", "score", "alert"]]},
        )
    cost_model = costs.cost_model()
    rule = rule_baseline(
        validation["amount"].to_numpy(), validation["is_fraud"].to_numpy(),
        test["amount"].to_numpy(), test["is_fraud"].to_numpy(), cost_model,
    )
    headline = evaluate_decisions(
        test, fraud_model["threshold"], cost_model, rule["amount_threshold"], config.daily_review_capacity
    )
    threshold = fraud_model["threshold"]
    cohorts = _cohort_rows(test, threshold, cost_model, rule["amount_threshold"], config)
    train_headline = window_headline(train, threshold, cost_model)
    # The train window is in-sample (its "within" includes overfitting); validation is the out-of-sample reference.
    decomposition = decompose(_cohort_metrics(train, threshold, cost_model, rule["amount_threshold"]), cohorts,
                              train_headline, headline)
    decomposition_validation = decompose(_cohort_metrics(validation, threshold, cost_model, rule["amount_threshold"]),
                                         cohorts, window_headline(validation, threshold, cost_model), headline)
    context.add_output_metadata(
        {
            **{k: dg.MetadataValue.float(float(headline[k])) for k in HEADLINE if k in headline},
            "model_version": fraud_model["version"],
            "threshold": threshold,
            "rule_amount_threshold": float(rule["amount_threshold"]),
            "train_rows_summarised": len(train),
            "cohorts": dg.MetadataValue.md(markdown_table(cohorts, COHORT_COLUMNS)),
            "decomposition_train_to_test": dg.MetadataValue.md(markdown_table(decomposition, DECOMPOSITION_COLUMNS)),
            "decomposition_validation_to_test": dg.MetadataValue.md(
                markdown_table(decomposition_validation, DECOMPOSITION_COLUMNS)),
        }
    )
    return {
        **{k: _plain(v) for k, v in headline.items()},
        "model_version": fraud_model["version"],
        "threshold": threshold,
        "rule_amount_threshold": float(rule["amount_threshold"]),
        "cohorts": [{k: _plain(v) for k, v in row.items()} for row in cohorts],
        "cohort_floors": asdict(config.floors()),
        "train_headline": {k: _plain(v) for k, v in train_headline.items()},
        "decomposition_train_to_test": [{k: _plain(v) for k, v in row.items()} for row in decomposition],
        "decomposition_validation_to_test": [{k: _plain(v) for k, v in row.items()} for row in decomposition_validation],
    }


def _cohort_metrics(frame: pd.DataFrame, threshold: float, cost_model, rule_amount_threshold: float) -> list[dict]:
    """The plain cohort tables of a scored window, every cohort split in one list."""
    return pd.concat(
        [cohort_table(frame, threshold, cost_model, rule_amount_threshold, spec) for spec in DEFAULT_COHORTS],
        ignore_index=True,
    ).to_dict(orient="records")


def _cohort_rows(frame: pd.DataFrame, threshold: float, cost_model, rule_amount_threshold: float,
                 config: EvaluationConfig) -> list[dict]:
    """Every cohort's decision metrics joined with its calibration and, where small, bootstrap intervals."""
    tables = []
    for spec in DEFAULT_COHORTS:
        metrics = cohort_table(frame, threshold, cost_model, rule_amount_threshold, spec)
        details = cohort_details(frame, threshold, cost_model, spec, config.bootstrap_resamples,
                                 config.bootstrap_max_frauds, config.bootstrap_seed)
        tables.append(metrics.merge(details, on=["cohort", "value"], how="left"))
    return pd.concat(tables, ignore_index=True).to_dict(orient="records")


def _plain(value):
    """numpy scalars to Python, so the evaluation serialises to JSON as is."""
    if hasattr(value, "item"):
        return value.item()
    return value
