"""Command-line verbs of the file mode: export a simulated world as day folders, land day folders."""

from __future__ import annotations

import argparse
from pathlib import Path

FILE_COMMANDS = ("export-files", "ingest")


def add_file_commands(commands) -> None:
    """Adds ``export-files`` and ``ingest`` to the command line's subparsers."""
    export = commands.add_parser("export-files", help="write a simulated world as day folders of CSV or Parquet files")
    export.add_argument("--out", required=True, help="folder to write <YYYY-MM-DD>/<kind>.<format> into")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("--n-transactions", type=int, default=None, help="size of the simulated world")
    export.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    ingest = commands.add_parser("ingest", help="land every day folder of a folder in one run of ingestion_job")
    add_source_arguments(ingest, with_mode=False)


def add_source_arguments(parser: argparse.ArgumentParser, with_mode: bool = True) -> None:
    """Options that set the ``source`` resource."""
    if with_mode:
        parser.add_argument(
            "--source", choices=("simulated", "files"), default=None, help="where the raw tables come from"
        )
    parser.add_argument("--folder", default=None, help="folder of day folders (default data/incoming)")
    parser.add_argument(
        "--naive-timestamps",
        choices=("reject", "utc"),
        default=None,
        help="timestamps without an offset: refuse the file (reject, default) or read them as UTC",
    )


def source_config(args) -> dict:
    """The ``source`` resource's config from the command-line options that were given."""
    values = {"mode": getattr(args, "source", None), "folder": args.folder, "naive_timestamps": args.naive_timestamps}
    return {k: (str(Path(v).resolve()) if k == "folder" else v) for k, v in values.items() if v is not None}


def file_command(args) -> int:
    """Runs ``export-files`` or ``ingest``."""
    if args.command == "export-files":
        return export_files(Path(args.out), args.format, args.n_transactions, args.seed)
    return ingest(args)


def export_files(out: Path, file_format: str, n_transactions: int | None, seed: int | None) -> int:
    """Simulates the world (as the `world` resource would) and writes it as day folders."""
    from fraud_pipeline.ingestion.export import export_world
    from fraud_pipeline.ingestion.simulator import simulate_world
    from fraud_pipeline.resources import SimulatedWorld

    settings = {k: v for k, v in {"n_transactions": n_transactions, "seed": seed}.items() if v is not None}
    world = simulate_world(SimulatedWorld(**settings).spec())
    written = export_world(world, out, file_format)
    print(f"wrote {', '.join(f'{n} {kind} files' for kind, n in written.items())} as day folders under {out}")
    return 0


def ingest(args) -> int:
    """Lands every day folder that is a partition already (its day has ended) in one single-run backfill."""
    import sys

    from fraud_pipeline.cli.runner import execute_job
    from fraud_pipeline.ingestion.assets import DAY_PARTITIONS
    from fraud_pipeline.ingestion.landing import day_folders
    from fraud_pipeline.resources import DataSource

    config = source_config(args)
    folder = DataSource(**config).input_folder()
    days = [day for day in day_folders(folder) if DAY_PARTITIONS.has_partition_key(day)]
    if not days:
        print(f"no day folder (YYYY-MM-DD) of an ended day under {folder}")
        return 2
    result = execute_job(
        "ingestion_job",
        {"resources": {"source": {"config": config}}} if config else None,
        {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    if result is None:
        return 3
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        print(
            f"landed {days[0]}..{days[-1]} from {folder}: rows in {metadata['rows_in'].value}, loaded "
            f"{metadata['rows_loaded'].value}, quarantined {metadata['rows_quarantined'].value}; "
            f"unchanged days {len(metadata['unchanged_days'].value)}"
        )
        break
    for event in result.all_events:
        if event.is_step_failure:
            print(event.event_specific_data.error.message.strip(), file=sys.stdout)
    return 0 if result.success else 1
