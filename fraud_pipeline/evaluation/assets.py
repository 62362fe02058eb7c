"""Evaluation: cost, ranking and per-cohort metrics of the candidate on the out-of-time test window."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.costs import rule_baseline
from fraud_pipeline.core.metrics import DEFAULT_COHORTS, cohort_table, evaluate_decisions
from fraud_pipeline.core.model import TrainedModel, score
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


COHORT_COLUMNS = [
    "cohort", "value", "n_transactions", "n_frauds", "total_cost", "savings_vs_approve_all",
    "average_precision", "precision", "recall",
]


@dg.asset(group_name="evaluation", deps=["training_set"], pool=DUCKDB_POOL)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    fraud_model: dict,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Test-window cost, savings against approve-all and a simple rule, AP, AUC and per-cohort metrics."""
    model = TrainedModel.from_dict(fraud_model)
    booster = model.booster()
    with duckdb.get_connection() as con:
        validation = load_split(con, "validation")
        test = load_split(con, "test")
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
    cohorts = pd.concat(
        [cohort_table(test, fraud_model["threshold"], cost_model, rule["amount_threshold"], spec) for spec in DEFAULT_COHORTS],
        ignore_index=True,
    )
    context.add_output_metadata(
        {
            **{k: dg.MetadataValue.float(float(headline[k])) for k in HEADLINE if k in headline},
            "model_version": fraud_model["version"],
            "threshold": fraud_model["threshold"],
            "rule_amount_threshold": float(rule["amount_threshold"]),
            "cohorts": dg.MetadataValue.md(markdown_table(cohorts.to_dict(orient="records"), COHORT_COLUMNS)),
        }
    )
    return {
        **{k: _plain(v) for k, v in headline.items()},
        "model_version": fraud_model["version"],
        "threshold": fraud_model["threshold"],
        "rule_amount_threshold": float(rule["amount_threshold"]),
        "cohorts": [{k: _plain(v) for k, v in row.items()} for row in cohorts.to_dict(orient="records")],
    }


def _plain(value):
    """numpy scalars to Python, so the evaluation serialises to JSON as is."""
    if hasattr(value, "item"):
        return value.item()
    return value
