"""The command line refuses a wrong --as-of in one line, before anything starts."""

import pytest

from fraud_pipeline.cli import main as cli


class Started(Exception):
    """Raised by the stand-in runner: the command got as far as starting a run."""


@pytest.fixture
def runner(monkeypatch):
    def start(*args, **kwargs):
        raise Started(args)

    from fraud_pipeline.cli import runner as job_runner

    monkeypatch.setattr(job_runner, "execute_job", start)


@pytest.mark.parametrize("value", ["2025-13-01", "2025-06-01T12:00", "2025-6-1", "20250601", "2024-02-30", "yesterday"])
def test_a_wrong_as_of_is_one_line_and_starts_nothing(runner, capsys, value):
    assert cli.main(["run", "--as-of", value]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and out.startswith(f"--as-of {value}:"), out


def test_a_day_goes_on_to_start_the_run(runner):
    with pytest.raises(Started):
        cli.main(["run", "--as-of", "2025-06-01"])


# --- the run options: each checked before anything starts, each mistake one line ---


@pytest.fixture
def started(monkeypatch):
    """Records the run the command would start, instead of starting it."""
    runs = []

    def start(name, config, tags):
        runs.append((name, config, tags))
        raise Started(name)

    from fraud_pipeline.cli import runner as job_runner

    monkeypatch.setattr(job_runner, "execute_job", start)
    return runs


def one_line(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1, out
    return out


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["--train-days", "0"], "--train-days 0: must be at least 1"),
        (["--validation-days", "two"], "--validation-days two: not a whole number"),
        (["--test-days", "-3"], "--test-days -3: must be at least 1"),
        (["--min-train-days", "1.5"], "--min-train-days 1.5: not a whole number"),
        (["--review-capacity", "0"], "--review-capacity 0: must be at least 1"),
        (["--train-days", "7", "--min-train-days", "14"], "--min-train-days 14 is more than the 7 training days"),
        (["--min-train-days", "50"], "--min-train-days 50 is more than the 49 training days"),
        (["--spec", "no-such-spec.yaml"], "--spec no-such-spec.yaml: no such file"),
        (["--config", "no-such-config.yaml"], "--config no-such-config.yaml: no such file"),
    ],
)
def test_a_wrong_run_option_is_one_line_and_starts_nothing(started, capsys, argv, starts):
    assert cli.main(["run", *argv]) == 2
    assert one_line(capsys).startswith(starts)
    assert started == []


def test_the_options_set_the_windows_the_review_capacity_and_the_spec(started, tmp_path):
    from fraud_pipeline.features.spec import default_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text(__import__("yaml").safe_dump(default_spec().to_dict()))
    argv = ["run", "--as-of", "2025-06-01", "--train-days", "28", "--validation-days", "7", "--test-days", "7"]
    with pytest.raises(Started):
        cli.main([*argv, "--min-train-days", "14", "--review-capacity", "12", "--spec", str(spec)])
    ((name, config, tags),) = started
    assert name == "fraud_pipeline_job" and tags == {"as_of": "2025-06-01"}
    assert config["ops"]["training_windows"]["config"] == {
        "train_days": 28,
        "validation_days": 7,
        "test_days": 7,
        "min_train_days": 14,
    }
    assert config["ops"]["model_evaluation"]["config"] == {"daily_review_capacity": 12}
    assert config["resources"]["feature_spec"]["config"] == {"path": str(spec.resolve())}
    assert config["resources"]["clock"]["config"] == {"as_of": "2025-06-01"}


def test_a_config_file_is_merged_under_the_options(started, tmp_path):
    file = tmp_path / "night.yaml"
    file.write_text(
        "ops:\n  training_windows:\n    config: {train_days: 35, test_days: 10}\n"
        "  model_evaluation:\n    config: {daily_review_capacity: 5}\n"
        "resources:\n  costs:\n    config: {review_cost: 3.0}\n"
    )
    with pytest.raises(Started):
        cli.main(["run", "--config", str(file), "--train-days", "42"])
    ((_, config, _),) = started
    assert config["ops"]["training_windows"]["config"] == {"train_days": 42, "test_days": 10}
    assert config["ops"]["model_evaluation"]["config"] == {"daily_review_capacity": 5}
    assert config["resources"]["costs"]["config"] == {"review_cost": 3.0}
    assert config["resources"]["clock"]["config"]["as_of"] == "2025-07-01"


def test_a_json_config_file_works_too(started, tmp_path):
    file = tmp_path / "night.json"
    file.write_text('{"ops": {"training_windows": {"config": {"validation_days": 9}}}}')
    with pytest.raises(Started):
        cli.main(["run", "--config", str(file)])
    assert started[0][1]["ops"]["training_windows"]["config"] == {"validation_days": 9}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ops: [1, 2\n", "line 2: not valid YAML or JSON"),
        ("- 1\n- 2\n", "must be a mapping of run config"),
        ("opz: {}\n", "unknown top-level key(s) opz"),
        ("ops:\n  training_windows:\n    config: {train_dayz: 3}\n", 'unexpected config entry "train_dayz"'),
        ("ops:\n  training_windows:\n    config: {train_days: many}\n", "train_days"),
        ("!!python/object:os.system {}\n", "not valid YAML or JSON"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(started, capsys, tmp_path, text, expected):
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    assert cli.main(["run", "--config", str(file)]) == 2
    out = one_line(capsys)
    assert out.startswith(f"--config {file}: ") and expected in out, out
    assert started == []


def test_a_config_file_window_minimum_above_the_window_is_refused(started, capsys, tmp_path):
    file = tmp_path / "night.yaml"
    file.write_text("ops:\n  training_windows:\n    config: {train_days: 10, min_train_days: 20}\n")
    assert cli.main(["run", "--config", str(file)]) == 2
    assert "--min-train-days 20 is more than the 10 training days" in one_line(capsys)


def test_a_bad_spec_is_the_loaders_one_line(started, capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nkeys: {user: [user_id]}\nattributes: []\nfeatures:\n  - {name: x, key: nobody}\n")
    assert cli.main(["run", "--spec", str(spec)]) == 2
    out = one_line(capsys)
    assert out.startswith(f"--spec {spec}:"), out
    assert started == []


def test_files_mode_runs_the_day_after_the_newest_landed_folder(started, monkeypatch, tmp_path):
    from datetime import date

    import duckdb

    from fraud_pipeline.ingestion.landing import land_day

    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(tmp_path))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        for day in ("2018-04-02", "2018-04-05"):
            folder = tmp_path / "incoming" / day
            folder.mkdir(parents=True)
            (folder / "transactions.csv").write_text(
                f"transaction_id,user_id,merchant_id,event_time,amount\nT{day},C1,M1,{day}T10:00:00Z,5\n"
            )
            land_day(con, date.fromisoformat(day), folder)
    with pytest.raises(Started):
        cli.main(["run", "--source", "files", "--folder", str(tmp_path / "incoming")])
    ((_, config, tags),) = started
    assert tags == {"as_of": "2018-04-06"}
    assert config["resources"]["clock"]["config"] == {"as_of": "2018-04-06"}
    started.clear()
    with pytest.raises(Started):
        cli.main(["run", "--source", "files", "--as-of", "2018-04-04"])
    assert started[0][2] == {"as_of": "2018-04-04"}, "a given --as-of wins"


def test_files_mode_without_landed_folders_says_to_ingest_first(started, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(tmp_path))
    assert cli.main(["run", "--source", "files"]) == 2
    assert "files mode: no warehouse at" in one_line(capsys)
    monkeypatch.setenv("FRAUD_PIPELINE_SOURCE", "files")
    import duckdb

    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    assert cli.main(["run"]) == 2
    assert "files mode: no landed day folder in" in one_line(capsys)
    assert started == []


# --- ingest: the partition start setting and why nothing can be landed ---


def test_ingest_refuses_a_bad_partition_start_setting_in_one_line(started, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUD_PIPELINE_PARTITION_START", "April 2018")
    assert cli.main(["ingest", "--folder", str(tmp_path)]) == 2
    assert one_line(capsys).startswith("FRAUD_PIPELINE_PARTITION_START=April 2018: not a day of the form YYYY-MM-DD")
    assert started == []


def test_ingest_of_a_folder_without_day_folders_says_so(started, capsys, tmp_path):
    assert cli.main(["ingest", "--folder", str(tmp_path)]) == 2
    assert (
        one_line(capsys)
        == f"nothing to land under {tmp_path.resolve()}: it holds no day folder (YYYY-MM-DD/transactions.csv ...)"
    )


def test_ingest_names_why_each_folder_cannot_be_landed_in_one_line(started, capsys, tmp_path):
    for name in ("1999-12-31", "2999-01-01", "notes"):
        (tmp_path / name).mkdir()
    assert cli.main(["ingest", "--folder", str(tmp_path)]) == 2
    out = one_line(capsys)
    assert out.startswith(f"nothing to land under {tmp_path.resolve()}: no landable day folder among its 3 entries")
    for reason in (
        "1999-12-31: before the first day partition (2000-01-01; set FRAUD_PIPELINE_PARTITION_START",
        "2999-01-01: its day has not ended yet",
        "notes: not a day folder name",
    ):
        assert reason in out, out


def test_a_2018_folder_goes_on_to_be_landed_with_no_setting(started, tmp_path):
    (tmp_path / "2018-04-02").mkdir()
    with pytest.raises(Started):
        cli.main(["ingest", "--folder", str(tmp_path)])
    assert started[0][2] == {
        "dagster/asset_partition_range_start": "2018-04-02",
        "dagster/asset_partition_range_end": "2018-04-02",
    }


def test_loading_the_ingestion_definitions_prints_no_beta_or_deprecation_warning():
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import fraud_pipeline.ingestion.sensors"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "BetaWarning" not in loaded.stderr and "DeprecationWarning" not in loaded.stderr, loaded.stderr
