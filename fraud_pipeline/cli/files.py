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
    ingest.add_argument(
        "--rebuild",
        action="store_true",
        help="re-land every day folder from scratch (e.g. after the warehouse file was lost or corrupted)",
    )


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
    """Lands every day folder that is a partition already (its day has ended) in one single-run backfill.

    Every other entry of the folder is listed with why it is skipped; with nothing left to land the
    command fails. ``--rebuild`` first empties the landing tables (a warehouse that cannot be
    opened is moved aside to ``warehouse.duckdb.corrupt``), so every day folder is landed again.
    """
    import os

    from fraud_pipeline.ingestion.landing import PARTITION_START_VARIABLE, partition_start

    try:
        # the partitions are defined when the definitions load: a bad setting is one line here, not a traceback there
        partition_start(os.environ.get(PARTITION_START_VARIABLE))
    except ValueError as error:
        print(error)
        return 2

    from fraud_pipeline.cli.runner import execute_job, failed_steps, pipeline_lock
    from fraud_pipeline.ingestion.assets import ended_days, skipped_summary
    from fraud_pipeline.ingestion.landing import scan_input_folder
    from fraud_pipeline.resources import DataSource, data_dir

    config = source_config(args)
    folder = DataSource(**config).input_folder()
    if not folder.is_dir():
        print(f"{folder}: no such folder")
        return 2
    landable, skipped = scan_input_folder(folder, *ended_days())
    days = sorted(landable)
    if not days:
        print(nothing_to_land(folder, skipped))
        return 2
    if skipped:
        print(skipped_summary(folder, skipped))
    with pipeline_lock():
        if getattr(args, "rebuild", False):
            print(rebuild_landing(data_dir() / "warehouse.duckdb"))
        result = execute_job(
            "ingestion_job",
            {"resources": {"source": {"config": config}}} if config else None,
            {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        )
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        print(
            f"landed {days[0]}..{days[-1]} from {folder}: rows in {metadata['rows_in'].value}, loaded "
            f"{metadata['rows_loaded'].value}, quarantined {metadata['rows_quarantined'].value}; "
            f"unchanged days {len(metadata['unchanged_days'].value)}"
        )
        break
    for line in failed_steps(result):
        print(line)
    return 0 if result.success else 1


def nothing_to_land(folder: Path, skipped: list) -> str:
    """The one line saying why no entry of the folder can be landed, each entry with its reason."""
    if not skipped:
        return f"nothing to land under {folder}: it holds no day folder (YYYY-MM-DD/transactions.csv ...)"
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped)
    return f"nothing to land under {folder}: no landable day folder among its {len(skipped)} entries ({reasons})"


def rebuild_landing(warehouse: Path) -> str:
    """Empties the landing tables so that every day folder lands again; returns what it did, in one line.

    A warehouse that cannot be opened is moved aside (with its WAL) to ``<name>.corrupt``, ``.corrupt-2``, ...
    and a new one is started: in files mode the landed days are rebuilt from the day folders, and the
    next run rebuilds everything downstream.
    """
    import duckdb

    from fraud_pipeline.ingestion.landing import ID_NAMESPACES, KINDS, id_dictionary, landing_table

    if warehouse.exists():
        try:
            with duckdb.connect(str(warehouse)) as con:
                con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
                con.execute("BEGIN TRANSACTION")
                dictionaries = [id_dictionary(name) for name in ID_NAMESPACES]
                for name in [*(landing_table(kind) for kind in KINDS), "landing_files", *dictionaries]:
                    con.execute(f"DROP TABLE IF EXISTS {name}")
                con.execute("DROP TABLE IF EXISTS quarantine")
                con.execute("COMMIT")
            return f"rebuilding: emptied the landing tables of {warehouse}; every day folder is landed again"
        except duckdb.Error as error:
            first = str(error).strip().splitlines()[0]
            aside = warehouse.with_name(warehouse.name + ".corrupt")
            n = 1
            while aside.exists():
                n += 1
                aside = warehouse.with_name(f"{warehouse.name}.corrupt-{n}")
            warehouse.rename(aside)
            wal = warehouse.with_name(warehouse.name + ".wal")
            if wal.exists():
                wal.rename(aside.with_name(aside.name + ".wal"))
            return f"rebuilding: {warehouse} could not be opened ({first}); moved it to {aside} and started a new one"
    return f"rebuilding: no warehouse at {warehouse} yet; every day folder is landed into a new one"
