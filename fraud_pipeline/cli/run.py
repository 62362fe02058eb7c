"""``run``: materialise the whole graph once for an as_of and print what the night decided."""

from __future__ import annotations

import sys
from datetime import date

from fraud_pipeline.cli.files import add_source_arguments, source_config
from fraud_pipeline.cli.registry import USAGE
from fraud_pipeline.resources import DEFAULT_AS_OF


def add_run_command(commands) -> None:
    """The ``run`` command and its options."""
    run = commands.add_parser("run", help="materialise the whole graph and print a summary")
    run.add_argument("--as-of", default=DEFAULT_AS_OF, help=f"logical date of the run (default {DEFAULT_AS_OF})")
    run.add_argument("--n-transactions", type=int, default=None, help="size of the simulated world")
    run.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    add_source_arguments(run)


def as_of_problem(value: str) -> str | None:
    """Why ``--as-of`` is not a calendar day, in one line, or None: a night's as_of is midnight UTC of a day."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError as error:
        return f"--as-of {value}: not a day of the form YYYY-MM-DD ({error})"
    if parsed.isoformat() != value:
        return f"--as-of {value}: write the day as YYYY-MM-DD ({parsed.isoformat()})"
    return None


def run_command(args) -> int:
    """Validates the options in one line each, then runs the job in process and prints its summary."""
    if problem := as_of_problem(args.as_of):
        print(problem)
        return USAGE

    from fraud_pipeline.cli.runner import execute_job, failed_steps, run_config
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
