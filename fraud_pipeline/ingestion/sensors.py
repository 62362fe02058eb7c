"""The day-partitioned ingestion job and the sensor that lands new or changed day folders."""

import json

import dagster as dg

from fraud_pipeline.ingestion.assets import ended_days, skipped_summary
from fraud_pipeline.ingestion.landing import folder_fingerprint, scan_input_folder
from fraud_pipeline.resources import DataSource

ingestion_job = dg.define_asset_job(
    "ingestion_job",
    selection=dg.AssetSelection.assets("landed_files"),
    description="Lands the day folders of your own files (one run per day, or one run for a backfill range).",
    executor_def=dg.in_process_executor,
)


@dg.sensor(
    job=ingestion_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Lands new or changed day folders of the source folder, one run per day (off until switched on).",
)
def new_day_folders(context: dg.SensorEvaluationContext, source: DataSource) -> dg.SensorResult:
    """Requests a landing run for each day folder that is new or whose files changed since the last look."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    folder = source.input_folder()
    # a folder whose day has not ended is skipped now and looked at again next time
    landable, skipped = scan_input_folder(folder, *ended_days())
    requests = []
    for day, path in landable.items():
        fingerprint = folder_fingerprint(path)
        if seen.get(day) == fingerprint:
            continue
        seen[day] = fingerprint
        requests.append(dg.RunRequest(run_key=f"{day}:{fingerprint}", partition_key=day))
    if skipped:
        context.log.info(skipped_summary(folder, skipped))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
