"""The one Definitions object: assets, checks, the main job, the nightly schedule and the resources."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.deployment import assets as deployment_assets
from fraud_pipeline.deployment import scoring as scoring_assets
from fraud_pipeline.evaluation import assets as evaluation_assets
from fraud_pipeline.evaluation import checks as evaluation_checks
from fraud_pipeline.evaluation import outage as outage_replay_module
from fraud_pipeline.evaluation import population as population_module
from fraud_pipeline.evaluation import report as report_module
from fraud_pipeline.features import assets as feature_assets
from fraud_pipeline.features import absence_checks
from fraud_pipeline.features import checks as feature_checks
from fraud_pipeline.ingestion import assets as ingestion_assets
from fraud_pipeline.ingestion import checks as ingestion_checks
from fraud_pipeline.ingestion.sensors import ingestion_job, new_day_folders
from fraud_pipeline.labels import assets as label_assets
from fraud_pipeline.training import assets as training_assets
from fraud_pipeline.training import checks as training_checks
from fraud_pipeline.resources import (
    CostSettings,
    DataSource,
    DeployGates,
    ModelRegistry,
    RunClock,
    SimulatedWorld,
    data_dir,
)
from fraud_pipeline.schedules import fraud_pipeline_job, nightly_retrain

ASSET_MODULES = (
    ingestion_assets, label_assets, feature_assets, training_assets, evaluation_assets, outage_replay_module,
    population_module, report_module, deployment_assets, scoring_assets,
)
CHECK_MODULES = (
    ingestion_checks, feature_checks, absence_checks, training_checks, evaluation_checks, outage_replay_module,
    population_module, report_module,
)


def default_resources(root=None) -> dict:
    """Resources for a data folder (the project's ``data/`` unless given)."""
    root = data_dir() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    return {
        "duckdb": DuckDBResource(database=str(root / "warehouse.duckdb")),
        "registry": ModelRegistry(root=str(root / "registry")),
        "clock": RunClock(),
        "world": SimulatedWorld(),
        "source": DataSource.from_environment(),
        "costs": CostSettings(),
        "gates": DeployGates(),
    }


#: Who answers for each group of assets; shown in the UI beside every asset.
GROUP_OWNERS = {
    "ingestion": "team:data-platform",
    "features": "team:data-platform",
    "labels": "team:fraud-ml",
    "training": "team:fraud-ml",
    "evaluation": "team:fraud-ml",
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
