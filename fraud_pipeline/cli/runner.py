"""One in-process job runner for the command line: run config, process tags, the pipeline lock, the instance.

A command-line ``run`` or ``ingest`` takes the pipeline lock (:mod:`fraud_pipeline.lib.runlock`)
before anything touches the Dagster instance and holds it until the run ends, so of two commands
started at the same moment exactly one proceeds and the other is refused in one line. The instance
is created (on a fresh ``DAGSTER_HOME``: its SQLite storages and their schema versions) under a
second lock in ``DAGSTER_HOME`` itself, so two first commands, or a command beside ``tasks.py ui``,
never migrate the same storage at once.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from fraud_pipeline.lib.runlock import LOCK_NAME, hold

#: The lock file in ``DAGSTER_HOME`` under which the instance's storages are created.
INSTANCE_LOCK = ".fraud_pipeline_instance.lock"


class RunsInProgress(RuntimeError):
    """The instance has a run queued or running; the message is one line naming the runs."""


def run_config(
    as_of: str,
    n_transactions: int | None,
    seed: int | None,
    source: dict | None = None,
    base: dict | None = None,
    spec_path: str | None = None,
) -> dict:
    """Run config that sets the run's as_of and, optionally, the world, the source and the feature spec.

    Args:
        as_of: The run's logical date.
        n_transactions: Size of the simulated world (None: its default).
        seed: Seed of the simulated world (None: its default).
        source: The ``source`` resource's config (mode, folder, naive_timestamps).
        base: Run config these settings are merged over (e.g. a ``--config`` file with the options'
            step config already merged in); what the arguments set wins.
        spec_path: The feature spec file (``resources.feature_spec.config.path``).
    """
    world = {k: v for k, v in {"n_transactions": n_transactions, "seed": seed}.items() if v is not None}
    config: dict = {
        "resources": {"clock": {"config": {"as_of": as_of}}},
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    if world:
        config["resources"]["world"] = {"config": world}
    if source:
        config["resources"]["source"] = {"config": source}
    if spec_path:
        config["resources"]["feature_spec"] = {"config": {"path": spec_path}}
    return merge_config(base or {}, config)


def merge_config(base: dict, override: dict) -> dict:
    """``override`` deep-merged over ``base`` (a new dict; mappings merge, anything else is replaced)."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge_config(merged[key], value) if both else value
    return merged


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


def pipeline_lock_path() -> Path:
    """The pipeline lock of the data folder, beside ``warehouse.duckdb``."""
    from fraud_pipeline.resources import data_dir

    return data_dir() / LOCK_NAME


@contextmanager
def pipeline_lock() -> Iterator[Path]:
    """Holds the data folder's pipeline lock, or raises :class:`~fraud_pipeline.lib.runlock.LockHeld` at once."""
    with hold(pipeline_lock_path(), wait=False) as path:
        yield path


def dagster_home() -> Path:
    """The instance's folder: ``DAGSTER_HOME``, else the project's ``.dagster_home`` (set for what follows)."""
    from fraud_pipeline.resources import PROJECT_ROOT

    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home


def project_instance() -> dg.DagsterInstance:
    """The project's instance, its storages created and migrated by one process at a time."""
    with hold(dagster_home() / INSTANCE_LOCK, wait=True):
        instance = dg.DagsterInstance.get()
        try:
            # every storage a run uses, created now under the lock instead of lazily by racing processes
            instance.get_runs(limit=1)
            instance.event_log_storage.get_concurrency_keys()
            if instance.schedule_storage is not None:
                instance.schedule_storage.all_instigator_state()
        except BaseException:
            instance.dispose()
            raise
    return instance


def check_warehouse(path: Path) -> None:
    """Raises a one-line :class:`~fraud_pipeline.lib.warehouse.WarehouseError` when the file cannot be opened."""
    import duckdb

    from fraud_pipeline.lib.runlock import LockHeld
    from fraud_pipeline.lib.warehouse import WarehouseError, open_problem

    if not path.exists():
        return
    try:
        with duckdb.connect(str(path)) as con:
            con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    except duckdb.Error as error:
        problem = open_problem(path, error)
        raise (LockHeld if "in use by another process" in problem else WarehouseError)(problem) from None


def execute_job(name: str, config: dict | None, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """Runs a job in process on the project's instance, holding the pipeline lock for the whole run.

    The project's own instance is used unless the caller chose another, so the run shows in the UI.

    Raises:
        LockHeld: Another process holds the pipeline lock (a run or an ingest, from here or the UI).
        RunsInProgress: The instance has a run queued or running (e.g. queued in the UI).
        WarehouseError: The warehouse file cannot be opened.
    """
    from fraud_pipeline.definitions import defs
    from fraud_pipeline.resources import data_dir

    folder = data_dir()
    # the run writes where this process checked and locked, whatever the definitions were loaded with
    config = dict(config or {})
    config["resources"] = {
        "duckdb": {"config": {"database": str(folder / "warehouse.duckdb")}},
        "registry": {"config": {"root": str(folder / "registry")}},
        **config.get("resources", {}),
    }
    with pipeline_lock():
        check_warehouse(folder / "warehouse.duckdb")
        with project_instance() as instance:
            busy = runs_in_progress(instance)
            if busy:
                raise RunsInProgress(
                    f"another run is in progress ({', '.join(busy)}); runs share one DuckDB file, so wait for it to finish"
                )
            return defs.resolve_job_def(name).execute_in_process(
                run_config=config,
                instance=instance,
                raise_on_error=False,
                tags={**tags, "launched_by": "cli", **process_tags()},
            )


def failed_steps(result) -> list[str]:
    """One line per failed step: its key and the first line of its error (e.g. a full disk, naming the file)."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause  # the code's own error, not Dagster's wrapper around it
            message = (error.message or "").strip().splitlines()
            # the message starts with the error's qualified class name, which says nothing to a user
            first = re.sub(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: ", "", message[0]) if message else error.cls_name
            if error.cls_name == "DagsterAssetCheckFailedError" or first.startswith("1 blocking asset check failed"):
                # a gate that held the night back: the decision line above says which and by how much
                lines.append(f"step {event.step_key}: blocked (see the decision above)")
                continue
            lines.append(f"step {event.step_key} failed: {first}")
    return lines
