"""Command line: ``python -m fraud_pipeline run [--as-of D]`` materialises the whole graph once.

The run goes to the project's Dagster instance (``DAGSTER_HOME``), so it shows in the UI afterwards.
A user's mistake, a busy pipeline or an unusable warehouse or registry is one line, never a traceback:
exit code 2 for what the user must fix, 3 while another process holds the pipeline.
"""

from __future__ import annotations

import argparse

from fraud_pipeline.cli.estimates import add_arguments as add_estimate_arguments
from fraud_pipeline.cli.estimates import run as run_estimates
from fraud_pipeline.cli.files import FILE_COMMANDS, add_file_commands, file_command
from fraud_pipeline.cli.registry import BUSY, USAGE, add_registry_commands, registry_command, score_file
from fraud_pipeline.cli.run import add_run_command, run_command
from fraud_pipeline.cli.runner import RunsInProgress, project_instance
from fraud_pipeline.deployment.registry import RegistryError
from fraud_pipeline.lib.runlock import LockHeld
from fraud_pipeline.lib.warehouse import WarehouseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_file_commands(commands)
    add_registry_commands(commands)
    estimates = commands.add_parser(
        "estimates", help="validate the pre-maturity estimates on past nights of a simulated world (docs/estimation.md)"
    )
    add_estimate_arguments(estimates)
    # creates the instance's storages under its lock; `tasks.py ui` runs it before `dagster dev`
    commands.add_parser("init-instance")
    # argparse has no public way to keep a subcommand out of the help listing
    commands._choices_actions = [a for a in commands._choices_actions if a.dest != "init-instance"]
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (LockHeld, RunsInProgress) as busy:
        print(busy)
        return BUSY
    except (WarehouseError, RegistryError) as error:
        print(error)
        return USAGE


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
    if args.command == "estimates":
        return run_estimates(args)
    return run_command(args)
