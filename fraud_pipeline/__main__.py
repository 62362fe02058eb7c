"""Command line: ``python -m fraud_pipeline run [--as-of D]`` materialises the whole graph once.

The run goes to the project's Dagster instance (``DAGSTER_HOME``), so it shows in the UI afterwards.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from fraud_pipeline.resources import DEFAULT_AS_OF


def run_config(as_of: str, n_transactions: int | None, seed: int | None) -> dict:
    """Run config that sets the run's as_of and, optionally, the simulated world's size and seed."""
    world = {k: v for k, v in {"n_transactions": n_transactions, "seed": seed}.items() if v is not None}
    config: dict = {
        "resources": {"clock": {"config": {"as_of": as_of}}},
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    if world:
        config["resources"]["world"] = {"config": world}
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialise the whole graph and print a summary")
    run.add_argument("--as-of", default=DEFAULT_AS_OF, help=f"logical date of the run (default {DEFAULT_AS_OF})")
    run.add_argument("--n-transactions", type=int, default=None, help="size of the simulated world")
    run.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    args = parser.parse_args(argv)

    from fraud_pipeline.definitions import defs
    from fraud_pipeline.summary import print_summary

    job = defs.resolve_job_def("fraud_pipeline_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=run_config(args.as_of, args.n_transactions, args.seed),
            instance=instance,
            raise_on_error=False,
            tags={"as_of": args.as_of, "launched_by": "cli"},
        )
        print_summary(result, sys.stdout)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
