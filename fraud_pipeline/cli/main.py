"""Command line: ``python -m fraud_pipeline run [--as-of D]`` materialises the whole graph once.

The run goes to the project's Dagster instance (``DAGSTER_HOME``), so it shows in the UI afterwards.
A user's mistake, a busy pipeline or an unusable warehouse or registry is one line, never a traceback:
exit code 2 for what the user must fix, 3 while another process holds the pipeline.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from fraud_pipeline.cli.files import (
    FILE_COMMANDS,
    add_file_commands,
    add_source_arguments,
    file_command,
    source_config,
)
from fraud_pipeline.cli.registry import BUSY, USAGE, registry_command, score_file
from fraud_pipeline.cli.runner import RunsInProgress, execute_job, failed_steps, project_instance, run_config
from fraud_pipeline.deployment.registry import RegistryError
from fraud_pipeline.deployment.serving import FILE_COLUMNS
from fraud_pipeline.lib.runlock import LockHeld
from fraud_pipeline.lib.warehouse import WarehouseError
from fraud_pipeline.resources import DEFAULT_AS_OF


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
    scorer.add_argument("--out", required=True, help="where to write the decisions (.parquet writes Parquet, else CSV)")
    # creates the instance's storages under its lock; `tasks.py ui` runs it before `dagster dev`
    commands.add_parser("init-instance", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "run" and (problem := as_of_problem(args.as_of)):
        print(problem)
        return USAGE
    try:
        return _dispatch(args)
    except (LockHeld, RunsInProgress) as busy:
        print(busy)
        return BUSY
    except (WarehouseError, RegistryError) as error:
        print(error)
        return USAGE


def as_of_problem(value: str) -> str | None:
    """Why ``--as-of`` is not a calendar day, in one line, or None: a night's as_of is midnight UTC of a day."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError as error:
        return f"--as-of {value}: not a day of the form YYYY-MM-DD ({error})"
    if parsed.isoformat() != value:
        return f"--as-of {value}: write the day as YYYY-MM-DD ({parsed.isoformat()})"
    return None


def _dispatch(args) -> int:
    if args.command in ("rollback", "champion"):
        return registry_command(args)
    if args.command == "score":
        return score_file(args.file, args.out)
    if args.command in FILE_COMMANDS:
        return file_command(args)
    if args.command == "init-instance":
        project_instance().dispose()
        return 0

    from fraud_pipeline.cli.summary import print_summary

    result = execute_job(
        "fraud_pipeline_job",
        run_config(args.as_of, args.n_transactions, args.seed, source_config(args)),
        {"as_of": args.as_of},
    )
    print_summary(result, sys.stdout)
    for line in failed_steps(result):
        print(line)
    return 0 if result.success else 1
