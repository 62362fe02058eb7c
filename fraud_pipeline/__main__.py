"""Command line: ``python -m fraud_pipeline run [--as-of D]`` materialises the whole graph once.

The run goes to the project's Dagster instance (``DAGSTER_HOME``), so it shows in the UI afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import dagster as dg

from fraud_pipeline.core.serving import FILE_COLUMNS
from fraud_pipeline.ingestion.commands import FILE_COMMANDS, add_file_commands, add_source_arguments, file_command, source_config
from fraud_pipeline.resources import DEFAULT_AS_OF


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
            print(f"another run is in progress ({', '.join(busy)}); runs share one DuckDB file, so wait for it to finish")
            return None
        return defs.resolve_job_def(name).execute_in_process(
            run_config=config, instance=instance, raise_on_error=False,
            tags={**tags, "launched_by": "cli", **process_tags()},
        )


def registry_command(args) -> int:
    """Shows the registry, or moves the champion pointer back to an earlier version."""
    from fraud_pipeline.core.registry import ModelRegistryStore
    from fraud_pipeline.resources import data_dir

    store = ModelRegistryStore(data_dir() / "registry")
    if args.command == "rollback":
        if args.version not in store.versions():
            print(f"no model version {args.version!r} in {store.root}; versions: {', '.join(store.versions()) or 'none'}")
            return 2
        pointer = store.promote(args.version, as_of=store.read_bundle(args.version)["windows"]["as_of"],
                                reason="manual rollback")
        print(f"champion is now {pointer['version']} (was {pointer['previous_version']})")
        return 0
    champion = store.champion()
    print(f"champion: {champion['version'] if champion else 'none'}")
    for version in store.versions():
        bundle = store.read_bundle(version)
        evaluation = bundle["evaluation"]
        print(f"  {version}  as_of {bundle['windows']['as_of'][:10]}  test cost {evaluation['total_cost']:,.0f}  "
              f"AP {evaluation['average_precision']:.3f}")
    return 0


def score_file(path: str, out: str) -> int:
    """Scores a file of transactions with the champion against the warehouse's history."""
    import duckdb

    from fraud_pipeline.core.registry import ModelRegistryStore
    from fraud_pipeline.core.serving import ScoringModels, score_new_transactions
    from fraud_pipeline.resources import data_dir

    store = ModelRegistryStore(data_dir() / "registry")
    champion = store.champion()
    if champion is None:
        print("no champion in the registry: run the pipeline first (python3 tasks.py run)")
        return 2
    reader = "read_parquet" if path.endswith(".parquet") else "read_csv"
    with duckdb.connect(str(data_dir() / "warehouse.duckdb"), read_only=True) as con:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [path]).fetchall()}
        missing = [c for c in FILE_COLUMNS if c not in present]
        if missing:
            print(f"{path}: missing required column(s) {', '.join(missing)}; a file to score needs {', '.join(FILE_COLUMNS)}")
            return 2
        casts = {"transaction_id": "BIGINT", "user_id": "BIGINT", "merchant_id": "BIGINT", "event_time": "TIMESTAMP",
                 "amount": "DOUBLE", "channel": "VARCHAR", "country": "VARCHAR", "mcc": "VARCHAR"}
        # an unreadable value becomes NULL here and the row goes to review naming the field
        con.execute("CREATE TEMP TABLE new_transactions AS SELECT "
                    + ", ".join(f"TRY_CAST({c} AS {t}) AS {c}" for c, t in casts.items()) + f" FROM {reader}(?)", [path])
        n_rows = con.execute("SELECT count(*) FROM new_transactions").fetchone()[0]
        decisions = score_new_transactions(con, "new_transactions", ScoringModels.from_candidate(store.scoring_bundle(champion["version"])))
    decisions["model_version"] = champion["version"]
    decisions.to_csv(out, index=False)
    print(f"scored {len(decisions)} of {n_rows} rows with {champion['version']}: "
          + ", ".join(f"{route} {n}" for route, n in decisions["route"].value_counts().sort_index().items())
          + f"; {int(decisions['alert'].sum())} alerts -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialise the whole graph and print a summary")
    run.add_argument("--as-of", default=DEFAULT_AS_OF, help=f"logical date of the run (default {DEFAULT_AS_OF})")
    run.add_argument("--n-transactions", type=int, default=None, help="size of the simulated world")
    run.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    add_source_arguments(run)
    add_file_commands(commands)
    rollback = commands.add_parser("rollback", help="make an earlier model version the champion again")
    rollback.add_argument("version", help="a version listed by `champion`")
    commands.add_parser("champion", help="show the champion and every version in the registry")
    scorer = commands.add_parser("score", help="score a CSV or Parquet file of transactions with the champion")
    scorer.add_argument("file", help=f"columns: {', '.join(FILE_COLUMNS)}")
    scorer.add_argument("--out", required=True, help="where to write the decisions (CSV)")
    args = parser.parse_args(argv)

    if args.command in ("rollback", "champion"):
        return registry_command(args)
    if args.command == "score":
        return score_file(args.file, args.out)
    if args.command in FILE_COMMANDS:
        return file_command(args)

    from fraud_pipeline.summary import print_summary

    result = execute_job(
        "fraud_pipeline_job",
        run_config(args.as_of, args.n_transactions, args.seed, source_config(args)),
        {"as_of": args.as_of},
    )
    if result is None:
        return 3
    print_summary(result, sys.stdout)
    return 0 if result.success else 1

if __name__ == "__main__":
    sys.exit(main())
