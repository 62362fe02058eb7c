"""The definitions load, and the job, schedule, assets and checks exist as the UI will show them."""

from datetime import datetime, timezone

import dagster as dg

from fraud_pipeline.definitions import defs, nightly_retrain

ASSETS = {
    "users",
    "transactions",
    "chargebacks",
    "label_delay_profile",
    "transaction_labels",
    "transaction_features",
    "training_windows",
    "training_set",
    "fraud_model",
    "model_evaluation",
    "deploy_gate",
    "deployed_model",
}
BLOCKING_CHECKS = {
    "unavailable_history_not_misread",
    "transaction_contract",
    "chargeback_contract",
    "features_match_oracle",
    "features_ignore_the_future",
    "windows_valid",
    "mature_labels_only",
    "min_frauds_per_window",
    "labels_complete_enough",
    "cost_beats_baselines",
    "quarantine_within_limit",
    "cohort_floors",
    "model_learnt_from_its_train_split",
    "threshold_chosen_on_validation",
    "model_matrix_keeps_absence",
    "evaluation_scores_reproduce",
}


def test_definitions_load_with_every_asset_grouped_and_described():
    graph = defs.resolve_asset_graph()
    keys = {key.path[-1] for key in graph.get_all_asset_keys()}
    assert ASSETS <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in {
            "ingestion",
            "labels",
            "features",
            "training",
            "evaluation",
            "monitoring",
            "deployment",
        }
        assert node.description, f"{key} has no description for the UI"


def test_deploy_gates_are_blocking_checks():
    graph = defs.resolve_asset_graph()
    specs = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert BLOCKING_CHECKS <= set(specs)
    for name in BLOCKING_CHECKS:
        assert specs[name].blocking, name
        assert specs[name].description


def test_the_job_covers_the_whole_graph():
    job = defs.resolve_job_def("fraud_pipeline_job")
    assert {k.path[-1] for k in job.asset_layer.executable_asset_keys} >= ASSETS


def test_schedule_runs_nightly_with_as_of_of_the_tick():
    schedule = defs.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 6, 3, 2, 0, tzinfo=timezone.utc))
    request = nightly_retrain(context)
    assert request.run_config == {"resources": {"clock": {"config": {"as_of": "2025-06-03"}}}}
    assert request.run_key == "nightly-2025-06-03"
    assert request.tags["as_of"] == "2025-06-03"


def test_schedule_run_config_is_valid_for_the_job():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 6, 3, 2, 0, tzinfo=timezone.utc))
    request = nightly_retrain(context)
    job = defs.resolve_job_def("fraud_pipeline_job")
    assert dg.validate_run_config(job, request.run_config)


def test_the_deploy_guards_every_blocking_check_upstream_of_it():
    from fraud_pipeline.deployment.checks import GUARDING_CHECKS

    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets("deployed_model").upstream(include_self=False).resolve(graph)
    blocking_upstream = {
        key for key in graph.asset_check_keys if graph.get_check_spec(key).blocking and key.asset_key in upstream
    }
    assert blocking_upstream == set(GUARDING_CHECKS)


#: The gates that judge the candidate itself: they sit on deploy_gate and hold back only the promotion.
DEPLOY_GATE_CHECKS = {
    "model_learnt_from_its_train_split",
    "threshold_chosen_on_validation",
    "model_matrix_keeps_absence",
    "cost_beats_baselines",
    "cohort_floors",
    "evaluation_scores_reproduce",
    "unavailable_history_not_misread",
}


def test_a_failed_deploy_gate_holds_back_only_the_promotion_not_the_report_drift_or_backtest():
    graph = defs.resolve_asset_graph()
    on_gate = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("deploy_gate")}
    assert on_gate == DEPLOY_GATE_CHECKS
    assert all(graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("deploy_gate"), n)).blocking for n in on_gate)
    held_back = dg.AssetSelection.assets("deploy_gate").downstream(include_self=False).resolve(graph)
    assert {k.path[-1] for k in held_back} == {"deployed_model", "batch_scores"}
    # nothing the report, the drift or the backtest reads carries a blocking check on the candidate
    informing = dg.AssetSelection.assets("evaluation_report", "population_drift", "backtest").upstream().resolve(graph)
    blocking_on_informing = {
        k.name for k in graph.asset_check_keys if graph.get_check_spec(k).blocking and k.asset_key in informing
    }
    assert not blocking_on_informing & DEPLOY_GATE_CHECKS
    for asset in ("fraud_model", "model_evaluation", "outage_replay"):
        assert not [k for k in graph.asset_check_keys if k.asset_key == dg.AssetKey(asset)], asset


def test_the_too_good_warning_is_on_the_backtest_which_is_not_upstream_of_the_deploy():
    """The backtest runs after the deploy decision: a verdict on it cannot gate this run's deploy, so it only warns."""
    graph = defs.resolve_asset_graph()
    (key,) = [k for k in graph.asset_check_keys if k.name == "backtest_spread"]
    assert key.asset_key.path == ["backtest"] and not graph.get_check_spec(key).blocking
    assert key.asset_key not in dg.AssetSelection.assets("deployed_model").upstream().resolve(graph)


def test_the_landing_runs_in_its_own_day_partitioned_job_with_a_sensor_that_is_off_by_default():
    ingestion = defs.resolve_job_def("ingestion_job")
    assert {k.path[-1] for k in ingestion.asset_layer.executable_asset_keys} == {"landed_files"}
    assert ingestion.partitions_def.get_first_partition_key() == "2000-01-01"
    main = defs.resolve_job_def("fraud_pipeline_job")
    assert "landed_files" not in {k.path[-1] for k in main.asset_layer.executable_asset_keys}
    sensor = defs.resolve_sensor_def("new_day_folders")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.job_name == "ingestion_job"
    assert sensor.description


def test_the_source_switch_is_a_resource_the_launchpad_shows_with_simulated_as_default():
    from fraud_pipeline.resources import DataSource

    source = defs.resources["source"]
    assert isinstance(source, DataSource) and source.mode == "simulated" and source.naive_timestamps == "reject"
    fields = DataSource.model_fields
    assert all(fields[name].description for name in ("mode", "folder", "naive_timestamps", "max_quarantine_share"))
    job = defs.resolve_job_def("fraud_pipeline_job")
    assert dg.validate_run_config(job, {"resources": {"source": {"config": {"mode": "files", "folder": "/data/in"}}}})


def test_the_source_can_default_to_files_for_the_ui_schedule_and_sensor(monkeypatch):
    from fraud_pipeline.resources import DataSource

    monkeypatch.setenv("FRAUD_PIPELINE_SOURCE", "files")
    monkeypatch.setenv("FRAUD_PIPELINE_INPUT_FOLDER", "/data/in")
    source = DataSource.from_environment()
    assert (source.mode, str(source.input_folder())) == ("files", "/data/in")


def test_every_asset_has_a_group_an_owner_and_a_description():
    from fraud_pipeline.definitions import defs

    for spec in defs.resolve_all_asset_specs():
        label = spec.key.to_user_string()
        assert spec.group_name in {
            "ingestion",
            "labels",
            "features",
            "training",
            "evaluation",
            "monitoring",
            "deployment",
        }, label
        assert spec.owners and spec.owners[0].startswith("team:"), label
        assert spec.description, label


def test_dg_and_dagster_dev_load_the_same_definitions_under_the_same_code_location():
    """`[tool.dg]` (read by `dg dev` / `dg check defs`), `[tool.dagster]` and workspace.yaml agree."""
    from pathlib import Path

    import pytest
    import yaml

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]
    (entry,) = yaml.safe_load((root / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    assert tool["dg"]["directory_type"] == "project"
    project = tool["dg"]["project"]
    assert project["root_module"] == "fraud_pipeline"
    assert project["code_location_target_module"] == tool["dagster"]["module_name"] == module["module_name"]
    assert project["code_location_name"] == tool["dagster"]["code_location_name"] == module["location_name"]


def test_dg_check_defs_passes_where_dg_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[2]
    dg_bin = Path(sys.executable).parent / "dg"
    dg_path = str(dg_bin) if dg_bin.exists() else shutil.which("dg")
    if dg_path is None:
        pytest.skip("dg is not installed (pip install -e .[dev] installs dagster-dg-cli)")
    checked = subprocess.run([dg_path, "check", "defs"], cwd=root, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
