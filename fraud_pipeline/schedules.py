"""The main job over the whole graph and the nightly schedule that sets its as_of."""

import dagster as dg

fraud_pipeline_job = dg.define_asset_job(
    "fraud_pipeline_job",
    # the day-partitioned landing runs in its own job (ingestion_job); this one reads what it landed
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("landed_files"),
    description="Simulated world or files -> labels -> features -> model -> evaluation -> gated deploy.",
    executor_def=dg.in_process_executor,
)


@dg.schedule(
    cron_schedule="0 2 * * *",
    job=fraud_pipeline_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def nightly_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Retrains every night at 02:00 UTC with as_of set to the tick's date."""
    as_of = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(
        run_key=f"nightly-{as_of}",
        run_config={"resources": {"clock": {"config": {"as_of": as_of}}}},
        tags={"as_of": as_of},
    )
