"""Outage replay: the test window served again as a peak-hour history-service outage would serve it."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.serving import (
    POLICY,
    ScoringModels,
    misreads_unavailable_history,
    peak_hours,
    replay_outage,
)
from fraud_pipeline.core.training_set import load_split
from fraud_pipeline.resources import DUCKDB_POOL, CostSettings


class OutageConfig(dg.Config):
    """The outage to replay."""

    share: float = Field(default=0.5, description="Share of active users' peak-hour transactions whose history is unavailable.")
    n_peak_hours: int = Field(default=6, description="The busiest UTC hours of the test window are the outage hours.")
    seed: int = Field(default=0, description="Seed choosing the affected transactions.")


@dg.asset(group_name="evaluation", deps=["training_set"], pool=DUCKDB_POOL)
def outage_replay(
    context: dg.AssetExecutionContext, config: OutageConfig, fraud_model: dict, duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Test-window decisions under a simulated peak-hour feature outage, beside the same rows with full history."""
    with duckdb.get_connection() as con:
        test = load_split(con, "test")
    models = ScoringModels.from_candidate(fraud_model)
    hours = peak_hours(test, config.n_peak_hours)
    report = replay_outage(test, config.share, hours, config.seed, models, costs.cost_model())
    report.update({"peak_hours": hours, "share": config.share, "model_version": fraud_model["version"],
                   "policy": POLICY})
    context.add_output_metadata({
        "outage": dg.MetadataValue.md(markdown_table(
            [{"measure": k, "value": v} for k, v in report.items() if isinstance(v, (int, float))])),
        "policy": dg.MetadataValue.json(POLICY),
        "peak_hours_utc": str(hours),
    })
    return report


#: How far (either way) the affected frauds' mean score may move before a misread outage counts: a
#: quarter up or down moves a cost-optimal alert set materially.
MAX_SCORE_SHIFT = 1.25


@dg.asset_check(asset="outage_replay", blocking=True)
def unavailable_history_not_misread(outage_replay: dict) -> dg.AssetCheckResult:
    """The serving path recognises unavailable history instead of scoring it as known-empty (new-user) history."""
    misread, reason = misreads_unavailable_history(outage_replay, min_identified=0.99, max_score_shift=MAX_SCORE_SHIFT)
    return dg.AssetCheckResult(
        passed=not misread,
        severity=dg.AssetCheckSeverity.ERROR,
        description=reason,
        metadata={k: v for k, v in outage_replay.items() if isinstance(v, (int, float))},
    )
