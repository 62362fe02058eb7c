"""The one Definitions object: assets, checks, the main job, the nightly schedule and the resources."""

import dagster as dg

from fraud_pipeline.deployment import assets as deployment_assets
from fraud_pipeline.evaluation import assets as evaluation_assets
from fraud_pipeline.evaluation import checks as evaluation_checks
from fraud_pipeline.features import assets as feature_assets
from fraud_pipeline.features import checks as feature_checks
from fraud_pipeline.ingestion import assets as ingestion_assets
from fraud_pipeline.ingestion import checks as ingestion_checks
from fraud_pipeline.ingestion.sensors import ingestion_job, new_day_folders
from fraud_pipeline.labels import assets as label_assets
from fraud_pipeline.monitoring import assets as monitoring_assets
from fraud_pipeline.monitoring import checks as monitoring_checks
from fraud_pipeline.resources import (
    CostSettings,
    DataSource,
    DeployGates,
    FeatureSpecSettings,
    ModelRegistry,
    RunClock,
    SimulatedWorld,
    Warehouse,
    data_dir,
)
from fraud_pipeline.training import assets as training_assets
from fraud_pipeline.training import checks as training_checks

ASSET_MODULES = (
    ingestion_assets,
    label_assets,
    feature_assets,
    training_assets,
    evaluation_assets,
    monitoring_assets,
    deployment_assets,
)
CHECK_MODULES = (ingestion_checks, feature_checks, training_checks, evaluation_checks, monitoring_checks)

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


def default_resources(root=None) -> dict:
    """Resources for a data folder (the project's ``data/`` unless given)."""
    root = data_dir() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    return {
        "duckdb": Warehouse(database=str(root / "warehouse.duckdb")),
        "registry": ModelRegistry(root=str(root / "registry")),
        "clock": RunClock(),
        "world": SimulatedWorld(),
        "source": DataSource.from_environment(),
        "costs": CostSettings(),
        "gates": DeployGates(),
        "feature_spec": FeatureSpecSettings.from_environment(),
    }


#: Who answers for each group of assets; shown in the UI beside every asset.
GROUP_OWNERS = {
    "ingestion": "team:data-platform",
    "features": "team:data-platform",
    "labels": "team:fraud-ml",
    "training": "team:fraud-ml",
    "evaluation": "team:fraud-ml",
    "monitoring": "team:fraud-ml",
    "deployment": "team:fraud-ml",
}


def _with_owner(spec: dg.AssetSpec) -> dg.AssetSpec:
    return spec.merge_attributes(owners=[GROUP_OWNERS.get(spec.group_name, "team:fraud-ml")])


ALL_ASSETS = dg.map_asset_specs(_with_owner, dg.load_assets_from_modules(ASSET_MODULES))
ALL_CHECKS = dg.load_asset_checks_from_modules(CHECK_MODULES)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[fraud_pipeline_job, ingestion_job],
    schedules=[nightly_retrain],
    sensors=[new_day_folders],
    resources=default_resources(),
)
