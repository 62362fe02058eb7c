"""The job as the command line and the schedule run it: a past as_of, through to a printed summary."""

import io
import re

import dagster as dg
import pytest

from fraud_pipeline.cli.summary import print_summary
from fraud_pipeline_tests.conftest import SMALL_WORLD


def test_job_for_a_given_as_of_runs_to_a_champion_and_prints_a_summary(clean_night):
    # the session's clean_night (conftest.py), shared with other modules: the job with the command line's run config
    result = clean_night.result
    out = io.StringIO()
    print_summary(result, out)
    assert result.success, out.getvalue()
    windows = result.output_for_node("training_windows")
    assert f"{windows.as_of:%Y-%m-%d}" == "2025-07-01"
    assert windows.test_end <= windows.label_cutoff
    text = out.getvalue()
    for expected in (
        "as_of 2025-07-01",
        "savings vs approve-all",
        "account_age",
        "cost_beats_baselines",
        "PASS",
        "champion is now",
    ):
        assert expected in text, text
    # a WARN check may flag (the simulated world's cohort mix shifts by design); no ERROR check may fail
    assert not re.search(r"FAIL(?! \(WARN\))", text), text


def test_the_command_line_refuses_to_start_while_another_run_is_in_progress(monkeypatch, capsys):
    from dagster._core.test_utils import create_run_for_test

    from fraud_pipeline.cli.main import main
    from fraud_pipeline.cli.runner import runs_in_progress

    with dg.instance_for_test() as instance:
        assert runs_in_progress(instance) == []
        run = create_run_for_test(instance, job_name="fraud_pipeline_job", status=dg.DagsterRunStatus.STARTED)
        assert runs_in_progress(instance) == [run.run_id]
        monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(lambda: instance))
        assert main(["run"]) == 3
        assert "another run is in progress" in capsys.readouterr().out


def test_a_command_line_run_whose_process_is_gone_is_marked_failed_and_no_longer_blocks():
    import socket
    import subprocess
    import sys

    from dagster._core.test_utils import create_run_for_test

    from fraud_pipeline.cli.runner import HOST_TAG, PID_TAG, runs_in_progress

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with dg.instance_for_test() as instance:
            here = socket.gethostname()

            def started(pid, host=here):
                return create_run_for_test(
                    instance,
                    job_name="fraud_pipeline_job",
                    status=dg.DagsterRunStatus.STARTED,
                    tags={PID_TAG: str(pid), HOST_TAG: host},
                )

            dead_run, live_run, elsewhere = started(gone.pid), started(alive.pid), started(gone.pid, "another-host")
            slots = instance.event_log_storage
            slots.set_concurrency_slots("duckdb", 1)
            assert slots.claim_concurrency_slot("duckdb", dead_run.run_id, "transaction_features").is_claimed
            assert sorted(runs_in_progress(instance)) == sorted([live_run.run_id, elsewhere.run_id])
            assert instance.get_run_by_id(dead_run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert slots.get_concurrency_info("duckdb").claimed_slots == []
            assert instance.get_run_by_id(live_run.run_id).status == dg.DagsterRunStatus.STARTED
    finally:
        alive.kill()
        alive.wait()


def test_ingest_lands_the_example_day_folders_and_accounts_for_every_row(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from fraud_pipeline.cli.main import main

    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    with dg.instance_for_test():
        assert main(["ingest", "--folder", str(examples)]) == 0
        first = capsys.readouterr().out
        assert main(["ingest", "--folder", str(examples)]) == 0
        again = capsys.readouterr().out
    assert "rows in 20, loaded 14, quarantined 6; unchanged days 0" in first, first
    assert "unchanged days 2" in again, again


# --- one writer at a time: truly simultaneous starts, a fresh instance, a run that is not the CLI's ---

BARRIER = """
import sys, time
from pathlib import Path
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
from fraud_pipeline.cli.main import main  # the slow imports happen before the barrier
ready.write_text("ready")
while not go.exists():
    time.sleep(0.0005)
sys.exit(main(sys.argv[3:]))
"""


def _fresh(root):
    import os
    import shutil
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    home, data = root / "dagster_home", root / "data"
    home.mkdir(parents=True)
    data.mkdir()
    shutil.copy(project / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FRAUD_PIPELINE_DATA_DIR": str(data),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }
    return project, home, data, env


def _start_together(root, commands: list[list[str]], timeout: float = 300) -> list[tuple[int, str]]:
    """Starts the commands as processes released by one barrier, on a fresh instance; their exit codes and output."""
    import subprocess
    import sys
    import time

    project, _, _, env = _fresh(root)
    go = root / "go"
    processes = []
    for i, command in enumerate(commands):
        log = open(root / f"out{i}.log", "w")
        processes.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", BARRIER, str(root / f"ready{i}"), str(go), *command],
                    cwd=project,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    deadline = time.monotonic() + 120
    while not all((root / f"ready{i}").exists() for i in range(len(commands))):
        assert time.monotonic() < deadline and all(p.poll() is None for p, _ in processes), [
            (root / f"out{i}.log").read_text()[-2000:] for i in range(len(commands))
        ]
        time.sleep(0.01)
    go.write_text("go")
    results = []
    for i, (process, log) in enumerate(processes):
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -9
        log.close()
        results.append((code, (root / f"out{i}.log").read_text()))
    return results


def _instance_is_sound(root) -> None:
    """The instance's storages open and migrate cleanly (one alembic head), and its runs can be listed."""
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        instance.get_runs()
        instance.upgrade()


def test_two_commands_started_at_the_same_moment_one_proceeds_and_the_other_is_refused(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    ingest = ["ingest", "--folder", str(examples)]
    run = ["run", "--n-transactions", "3000", "--as-of", "2025-03-01"]
    for attempt, pair in enumerate([[ingest, ingest], [ingest, ingest], [ingest, ingest], [run, ingest]]):
        root = tmp_path / f"attempt{attempt}"
        results = _start_together(root, pair)
        codes = sorted(code for code, _ in results)
        refused = [out for code, out in results if code == 3]
        assert len(refused) == 1 and codes[0] in (0, 1), results
        assert refused[0].strip().splitlines()[-1].startswith("another run is in progress (pid "), refused
        assert "Traceback" not in refused[0] and "alembic" not in "".join(out for _, out in results), results
        winner = next(out for code, out in results if code != 3)
        assert ("landed 2025-03-01..2025-03-02" in winner) or ("run " in winner and "deployed:" in winner), winner
        _instance_is_sound(root)


UI_RUNS = {
    # the nightly landing job: the registry resource and the warehouse take the lock
    "ingestion_job": (
        "import dagster as dg, sys\n"
        "from fraud_pipeline.definitions import defs\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    result = defs.resolve_job_def('ingestion_job').execute_in_process(instance=instance,\n"
        "        run_config={'resources': {'source': {'config': {'folder': sys.argv[1]}}}},\n"
        "        partition_key='2025-03-01')\n"
        "sys.exit(0 if result.success else 1)\n"
    ),
    # one asset materialised alone from the UI: of its resources only the warehouse takes the lock
    "one_asset": (
        "import dagster as dg, sys\n"
        "from fraud_pipeline.definitions import default_resources\n"
        "from fraud_pipeline.features.assets import transaction_features\n"
        "resources = default_resources()\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    dg.materialize([transaction_features], instance=instance, raise_on_error=False,\n"
        "                   resources={k: resources[k] for k in ('duckdb', 'feature_spec')})\n"
    ),
}


@pytest.mark.parametrize("run", sorted(UI_RUNS))
def test_a_run_that_is_not_the_command_lines_waits_for_the_lock_before_its_first_step(tmp_path, run):
    """A run as the UI's run worker executes it (in process, no command line around it) waits for the lock."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    project, home, data, env = _fresh(tmp_path)
    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
            " sys.stdin.read()",
            str(data / "pipeline.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = None
    try:
        assert holder.stdout.readline().strip() == "held"
        script = UI_RUNS[run]
        log = open(tmp_path / "worker.log", "w")
        worker = subprocess.Popen(
            [sys.executable, "-c", script, str(examples)], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while "waiting for the pipeline lock" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1)
        assert worker.poll() is None and not (data / "warehouse.duckdb").exists(), "it ran while the lock was held"
        holder.stdin.close()
        holder.wait(timeout=30)
        # the lone asset fails afterwards (nothing was landed): what matters is that it waited
        status = worker.wait(timeout=120)
        assert status == 0 or run == "one_asset", (tmp_path / "worker.log").read_text()[-3000:]
        assert (data / "warehouse.duckdb").exists()
    finally:
        holder.kill()
        holder.wait()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()


def test_a_corrupt_warehouse_is_one_line_and_ingest_rebuild_lands_every_day_again(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from fraud_pipeline.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    (data / "warehouse.duckdb").write_bytes(b"not a database" * 1000)
    with dg.instance_for_test():
        assert main(["run", "--source", "files", "--folder", str(examples), "--as-of", "2025-03-03"]) == 2
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1 and str(data / "warehouse.duckdb") in lines[0] and "ingest --rebuild" in lines[0]
        assert main(["ingest", "--folder", str(examples)]) == 2
        assert "ingest --rebuild" in capsys.readouterr().out
        assert main(["ingest", "--rebuild", "--folder", str(examples)]) == 0
        out = capsys.readouterr().out
        assert f"moved it to {data / 'warehouse.duckdb.corrupt'}" in out
        assert "rows in 20, loaded 14, quarantined 6; unchanged days 0" in out, out
        assert main(["ingest", "--rebuild", "--folder", str(examples)]) == 0
        assert "unchanged days 0" in capsys.readouterr().out, "a rebuild lands every day again"


def test_ingest_lists_every_skipped_folder_and_fails_when_nothing_valid_remains(tmp_path, monkeypatch, capsys):
    import shutil
    from pathlib import Path

    from fraud_pipeline.cli.main import main

    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    folder = tmp_path / "incoming"
    for name in ("2025-13-01", "latest", "2025-3-4", "1999-12-31", "2999-01-01"):
        (folder / name).mkdir(parents=True)
    with dg.instance_for_test():
        assert main(["ingest", "--folder", str(folder)]) == 2
        out = capsys.readouterr().out
        for expected in (
            "2025-13-01: not a valid date",
            "latest: not a day folder name",
            "2025-3-4: not a day folder name",
            "1999-12-31: before the first day partition (2000-01-01; set FRAUD_PIPELINE_PARTITION_START",
            "2999-01-01: its day has not ended yet",
            "nothing to land",
        ):
            assert expected in out, out
        shutil.copytree(examples / "2025-03-01", folder / "2025-03-01")
        assert main(["ingest", "--folder", str(folder)]) == 0
        out = capsys.readouterr().out
        assert "skipped 5 entries" in out and "landed 2025-03-01..2025-03-01" in out, out


DIGESTS = """
import json, sys, duckdb
from fraud_pipeline.lib.warehouse import MixedNight, require_one_night
with duckdb.connect(sys.argv[1], read_only=True) as con:
    names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    digests = {
        n: list(con.execute(
            f"SELECT count(*), md5(string_agg(CAST(t AS VARCHAR), '|' ORDER BY CAST(t AS VARCHAR))) FROM {n} t"
        ).fetchone())
        for n in names
    }
    try:
        require_one_night(con, "transaction_features", ["transactions", "chargebacks", "users"])
        one_night = True
    except MixedNight:
        one_night = False
print(json.dumps({"tables": digests, "one_night": one_night}))
"""


def _digests(path) -> dict:
    """Every table's row count and digest, read by a fresh process (as the next command would open the file)."""
    import gc
    import json
    import subprocess
    import sys
    from pathlib import Path

    gc.collect()  # a run in this process may leave a DuckDB connection in a reference cycle
    done = subprocess.run(
        [sys.executable, "-c", DIGESTS, str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_full_disk_during_a_run_is_one_line_and_leaves_whole_tables_and_the_champion(tmp_path, monkeypatch, capsys):
    import os

    from fraud_pipeline.cli.main import main
    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline_tests.small_disk import fill, small_filesystem

    with small_filesystem(tmp_path / "disk", "48m") as data, dg.instance_for_test():
        monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
        assert main(["run", "--n-transactions", str(SMALL_WORLD)]) == 0
        capsys.readouterr()
        warehouse, store = data / "warehouse.duckdb", ModelRegistryStore(data / "registry")
        champion, versions = store.champion(), store.versions()
        assert champion is not None
        for leave in (0, 3 << 20):  # full before the run starts; room for the first tables only
            before = _digests(warehouse)
            filler = fill(data, leave)
            code = main(["run", "--n-transactions", "150000", "--as-of", "2025-06-15"])
            out = capsys.readouterr().out
            os.remove(filler)
            assert code == 1, out[-3000:]
            failures = [line for line in out.splitlines() if "No space left on device" in line]
            assert failures and str(warehouse) in failures[0], out[-3000:]
            assert "cannot rollback" not in out and "Traceback" not in out
            after = _digests(warehouse)  # the file opens, and every table reads to its end
            assert set(after["tables"]) >= set(before["tables"]) - {"batch_scores"}
            if leave == 0:
                assert after == before
            tables, old = after["tables"], before["tables"]
            if (
                tables["transactions"] != old["transactions"]
                and tables["transaction_features"] == old["transaction_features"]
            ):
                # the new night's raw tables beside the old night's features: a reader refuses the set
                assert not after["one_night"]
            assert store.champion() == champion and store.versions() == versions
