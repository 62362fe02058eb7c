"""A run killed with kill -9 mid-way leaves no half-written table, does not block the next run, and a re-run
gives the same tables as a run that was never interrupted."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from fraud_pipeline_tests.conftest import SMALL_WORLD

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _folder(root: Path, name: str) -> dict:
    home, data = root / name / "dagster_home", root / name / "data"
    home.mkdir(parents=True)
    data.mkdir()
    shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FRAUD_PIPELINE_DATA_DIR": str(data),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "GX_ANALYTICS_ENABLED": "False",
    }


def _run_cli(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fraud_pipeline", "run", "--n-transactions", str(SMALL_WORLD)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(process: subprocess.Popen, log: Path, timeout: float = 400) -> int:
    """The exit code of a CLI run; a run that hangs (e.g. waiting for a pool slot) is killed and fails the test."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"the run did not finish in {timeout} s:\n{log.read_text()[-3000:]}") from None


def _wait_for_step(env: dict, step: str, process: subprocess.Popen, timeout: float = 300) -> str:
    """Waits until the CLI's run has started ``step`` and returns the run id."""
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            for run in instance.get_runs():
                if any(
                    e.step_key == step for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
                ):
                    return run.run_id
            time.sleep(0.05)
    raise AssertionError(f"step {step} did not start in {timeout} s")


def _tables(data_dir: Path) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of its sorted rows (of ``table_stamps``: which table has which as_of).

    ``table_stamps`` also names the run that wrote each table and the order of the writes, which differ
    between two runs by design; the tables themselves must not.
    """
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1"
            ).fetchall()
        ]
        digest = "SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), '|' ORDER BY CAST(t AS VARCHAR)), ''))"
        return {
            name: con.execute(
                f"{digest} FROM (SELECT table_name, as_of FROM {name}) t"
                if name == "table_stamps"
                else f"{digest} FROM {name} t"
            ).fetchone()
            for name in names
        }


def test_a_run_killed_mid_way_leaves_whole_tables_and_a_rerun_matches_an_uninterrupted_run(tmp_path):
    clean_env, killed_env = _folder(tmp_path, "clean"), _folder(tmp_path, "killed")
    victim = _run_cli(killed_env, tmp_path / "killed.log")
    try:
        run_id = _wait_for_step(killed_env, "transaction_features", victim)
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()

    # whatever the kill interrupted, every table is absent or whole: the raw tables and the tables
    # built from them agree row for row (each is replaced in one transaction)
    killed_data = Path(killed_env["FRAUD_PIPELINE_DATA_DIR"])
    after_kill = _tables(killed_data)
    assert {"transactions", "users", "chargebacks"} <= set(after_kill), after_kill
    n_transactions = after_kill["transactions"][0]
    for derived in ("transaction_features", "transaction_labels"):
        if derived in after_kill:
            assert after_kill[derived][0] == n_transactions, (derived, after_kill)

    # the killed run no longer blocks the command line, and the re-run is the uninterrupted run; the two
    # share nothing (own DAGSTER_HOME and data folder), so they run side by side, one core each
    rerun = _run_cli(killed_env, tmp_path / "rerun.log")
    clean = _run_cli(clean_env, tmp_path / "clean.log")
    assert _finish(clean, tmp_path / "clean.log") == 0, (tmp_path / "clean.log").read_text()[-3000:]
    assert _finish(rerun, tmp_path / "rerun.log") == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    clean_tables = _tables(Path(clean_env["FRAUD_PIPELINE_DATA_DIR"]))
    for raw in ("transactions", "users", "chargebacks"):
        assert after_kill[raw] == clean_tables[raw]
    with dg.DagsterInstance.from_config(killed_env["DAGSTER_HOME"]) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert _tables(killed_data) == clean_tables

    def champion_model(env):
        registry = Path(env["FRAUD_PIPELINE_DATA_DIR"]) / "registry"
        version = json.loads((registry / "champion.json").read_text())["version"]
        return version, (registry / "models" / version / "model.txt").read_bytes()

    assert champion_model(killed_env) == champion_model(clean_env)
