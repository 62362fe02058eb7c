"""One in-process job runner for the command line: run config, process tags, the in-progress refusal."""

from __future__ import annotations

import os
import socket

import dagster as dg


def run_config(as_of: str, n_transactions: int | None, seed: int | None, source: dict | None = None) -> dict:
    """Run config that sets the run's as_of and, optionally, the simulated world's size and seed and the source."""
    world = {k: v for k, v in {"n_transactions": n_transactions, "seed": seed}.items() if v is not None}
    config: dict = {
        "resources": {"clock": {"config": {"as_of": as_of}}},
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    if world:
        config["resources"]["world"] = {"config": world}
    if source:
        config["resources"]["source"] = {"config": source}
    return config


#: Tags of a command-line run: the process that executes it, so a run whose process died can be told apart.
PID_TAG, HOST_TAG = "fraud_pipeline/pid", "fraud_pipeline/host"


def process_tags() -> dict[str, str]:
    """Tags naming this process, set on every command-line run."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runs_in_progress(instance: dg.DagsterInstance) -> list[str]:
    """Ids of runs of this instance that are queued or running.

    A command-line run whose process on this host is gone (killed with kill -9, machine crash) can never
    finish: it is marked failed here instead of blocking every later run.
    """
    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    busy = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses)):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid and host == socket.gethostname() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            instance.report_run_failed(run, f"process {pid} that ran it is gone (killed); marked failed")
            # a killed process never returns its duckdb pool slot: without this the next run waits forever
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            continue
        busy.append(run.run_id)
    return busy


def execute_job(name: str, config: dict | None, tags: dict[str, str]) -> dg.ExecuteInProcessResult | None:
    """Runs a job in process on the project's instance, or returns None while another run is in progress.

    The project's own instance is used unless the caller chose another, so the run shows in the UI.
    """
    from fraud_pipeline.definitions import defs
    from fraud_pipeline.resources import PROJECT_ROOT

    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
    with dg.DagsterInstance.get() as instance:
        busy = runs_in_progress(instance)
        if busy:
            print(
                f"another run is in progress ({', '.join(busy)}); runs share one DuckDB file, so wait for it to finish"
            )
            return None
        return defs.resolve_job_def(name).execute_in_process(
            run_config=config,
            instance=instance,
            raise_on_error=False,
            tags={**tags, "launched_by": "cli", **process_tags()},
        )
