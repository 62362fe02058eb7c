"""Ingestion: your day folders landed with a reason for every bad row, and the raw tables known at as_of."""

import os
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb as duckdb_lib
from dagster_duckdb import DuckDBResource

from fraud_pipeline.ingestion.known_tables import (
    KindAccounting,
    build_known_tables,
    write_accounting,
)
from fraud_pipeline.ingestion.landing import (
    PARTITION_START_VARIABLE,
    FileRejected,
    SkippedEntry,
    land_day,
    partition_start,
    scan_input_folder,
)
from fraud_pipeline.ingestion.simulator import simulate_world
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.schema import column_list
from fraud_pipeline.lib.warehouse import WarehouseError, fetch_records, open_problem, replace_tables, table_count
from fraud_pipeline.resources import DUCKDB_POOL, DataSource, ModelRegistry, RunClock, SimulatedWorld

RAW_TABLES = ("users", "transactions", "chargebacks")
#: A day partition exists once its day has ended (UTC), which is also when its folder counts as known.
#: The first one is FRAUD_PIPELINE_PARTITION_START (default: the earliest plausible day, so any data lands).
DAY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partition_start(os.environ.get(PARTITION_START_VARIABLE)).isoformat(), timezone="UTC"
)
QUARANTINE_SAMPLE = 20
#: A backfill lands hundreds of files; the metadata table shows the first ones, `landing_files` has all.
MAX_FILE_ROWS = 100

KNOWN_AT_AS_OF = {
    "users": f"SELECT {column_list('users')} FROM sim_users WHERE created_at < $as_of ORDER BY user_id",
    "transactions": f"""
        SELECT {column_list("transactions")}
        FROM sim_transactions WHERE event_time < $as_of ORDER BY transaction_id
    """,
    "chargebacks": f"""
        SELECT {column_list("chargebacks")}
        FROM sim_chargebacks WHERE reported_at < $as_of ORDER BY transaction_id
    """,
}


@contextmanager
def _warehouse(duckdb: DuckDBResource):
    """A connection to the warehouse: a file that cannot be opened, or a full disk, fails the step in one line."""
    opened = False
    try:
        with duckdb.get_connection() as con:
            opened = True
            yield con
    except WarehouseError as error:
        raise dg.Failure(description=str(error)) from None
    except duckdb_lib.Error as error:
        if opened:
            raise
        raise dg.Failure(description=open_problem(duckdb.database, error)) from None


def ended_days() -> tuple[date, date]:
    """The first day partition and the last day that has ended: the day folders that can be landed now."""
    last = DAY_PARTITIONS.get_last_partition_key()
    return DAY_PARTITIONS.start.date(), date.fromisoformat(last) if last else date.min


def skipped_summary(folder: Path, skipped: list[SkippedEntry]) -> str:
    """One line listing every entry of the input folder that is not landed, with its reason."""
    return f"skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of {folder}: " + "; ".join(
        f"{s.name}: {s.reason}" for s in skipped
    )


# a multi_asset of one spec: its backfill_policy is stable API, where @asset's is beta and warns on every load
@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "landed_files",
            description="Each day folder's files landed as typed rows, every bad row quarantined with file, row, "
            "column and reason.",
            kinds={"duckdb"},
        )
    ],
    partitions_def=DAY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    pool=DUCKDB_POOL,
)
def landed_files(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    source: DataSource,
    registry: ModelRegistry,  # its setup holds the data folder's pipeline lock for the run
) -> dg.MaterializeResult:
    """Each day folder's files landed as typed rows, every bad row quarantined with file, row, column and reason."""
    folder = source.input_folder()
    days = [date.fromisoformat(key) for key in context.partition_keys]
    _, skipped = scan_input_folder(folder, *ended_days())
    if skipped:
        context.log.warning(skipped_summary(folder, skipped))
    reports, absent = [], []
    with _warehouse(duckdb) as con:
        for day in days:
            day_folder = folder / day.isoformat()
            if not day_folder.is_dir():
                absent.append(day.isoformat())
                continue
            try:
                reports.append(land_day(con, day, day_folder, source.naive_timestamps))
            except FileRejected as error:
                landed = ", ".join(r.day.isoformat() for r in reports) or "none"
                raise dg.Failure(
                    description=f"file refused, nothing of {day} written: {error}",
                    metadata={"file": error.path, "reason": error.reason, "days_landed_before": landed},
                ) from None
        quarantine = (
            fetch_records(
                con,
                "SELECT day, file, row_number, \"column\", reason FROM quarantine WHERE stage = 'file' AND day IN "
                f"(SELECT unnest(?::DATE[])) ORDER BY day, file, row_number LIMIT {QUARANTINE_SAMPLE}",
                [[r.day for r in reports]],
            )
            if reports
            else []
        )
    if not reports:
        raise dg.Failure(
            description=f"no day folder under {folder} for {', '.join(absent)}"
            + (f"; {skipped_summary(folder, skipped)}" if skipped else ""),
            metadata={"skipped_folders": dg.MetadataValue.json([s.as_dict() for s in skipped])},
        )
    files = [
        {
            "day": r.day.isoformat(),
            "kind": f.kind,
            "file": f.file,
            "rows_in": f.rows_in,
            "loaded": f.rows_loaded,
            "quarantined": f.rows_quarantined,
            "unchanged": r.unchanged,
            "ignored_columns": ", ".join(f.ignored_columns),
        }
        for r in reports
        for f in r.files
    ]
    unchanged = [r.day.isoformat() for r in reports if r.unchanged]
    context.log.info(f"landed {len(reports)} day(s) from {folder}; unchanged (same files again): {unchanged or 'none'}")
    return dg.MaterializeResult(
        metadata={
            "folder": str(folder),
            "rows_in": sum(r.rows_in for r in reports),
            "rows_loaded": sum(r.rows_loaded for r in reports),
            "rows_quarantined": sum(r.rows_quarantined for r in reports),
            "files": dg.MetadataValue.md(markdown_table(files[:MAX_FILE_ROWS])),
            "n_files": len(files),
            "unchanged_days": dg.MetadataValue.json(unchanged),
            "days_without_folder": dg.MetadataValue.json(absent),
            "ignored_files": dg.MetadataValue.json(
                sorted({f"{r.day}/{name}" for r in reports for name in r.ignored_files})
            ),
            "skipped_folders": dg.MetadataValue.json([s.as_dict() for s in skipped]),
            "quarantine_sample": dg.MetadataValue.md(markdown_table(quarantine)),
            "naive_timestamps": source.naive_timestamps,
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "users",
            description="Accounts with their created_at, as known at as_of.",
            kinds={"duckdb"},
            deps=["landed_files"],
        ),
        dg.AssetSpec(
            "transactions",
            description="Card transactions authorised before as_of.",
            kinds={"duckdb"},
            deps=["landed_files"],
        ),
        dg.AssetSpec(
            "chargebacks",
            description="Chargebacks (label events) with the time they were reported, as known at as_of.",
            kinds={"duckdb"},
            deps=["landed_files"],
        ),
    ],
    group_name="ingestion",
    pool=DUCKDB_POOL,
)
def raw_tables(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    world: SimulatedWorld,
    clock: RunClock,
    source: DataSource,
    registry: ModelRegistry,  # its setup holds the data folder's pipeline lock for the run
):
    """Builds the raw tables from the simulated world or the landed files, keeping only what was known before as_of."""
    as_of = clock.as_of_datetime()
    if source.mode == "files":
        yield from _tables_from_files(context, duckdb, as_of)
        return
    simulated = simulate_world(world.spec())
    sources = {
        "sim_users": simulated.users,
        "sim_transactions": simulated.transactions,
        "sim_chargebacks": simulated.chargebacks,
    }
    with _warehouse(duckdb) as con:
        replace_tables(con, KNOWN_AT_AS_OF, sources=sources, params={"as_of": as_of})
        counts = {name: table_count(con, name) for name in RAW_TABLES}
        write_accounting(con, [KindAccounting(name, 0, counts[name], counts[name], 0, 0) for name in RAW_TABLES])
    context.log.info(f"world at as_of {as_of:%Y-%m-%d}: {counts}")
    for name in RAW_TABLES:
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "rows": dg.MetadataValue.int(counts[name]),
                "source": "simulated",
                "simulated_rows": dg.MetadataValue.int(len(sources[f"sim_{name}"])),
                "as_of": as_of.isoformat(),
                "seed": world.seed,
            },
        )


def _tables_from_files(context: dg.AssetExecutionContext, duckdb: DuckDBResource, as_of):
    with _warehouse(duckdb) as con:
        try:
            accounting = build_known_tables(con, as_of)
        except ValueError as error:
            raise dg.Failure(description=str(error)) from None
        counts = {name: table_count(con, name) for name in RAW_TABLES}
        samples = {
            kind: fetch_records(
                con,
                'SELECT stage, day, file, row_number, "column", reason FROM quarantine '
                f"WHERE kind = ? ORDER BY stage DESC, day, file, row_number LIMIT {QUARANTINE_SAMPLE}",
                [kind],
            )
            for kind in ("transactions", "chargebacks", "users")
        }
    context.log.info(f"files known at as_of {as_of:%Y-%m-%d}: {counts}")
    by_kind = {a.kind: a for a in accounting}
    for name in RAW_TABLES:
        a = by_kind[name]
        metadata = {
            "rows": dg.MetadataValue.int(counts[name]),
            "source": "files",
            "as_of": as_of.isoformat(),
            "files": a.files,
            "rows_in": a.rows_in,
            "rows_loaded": a.rows_loaded,
            "rows_quarantined": a.rows_quarantined,
            "quarantined_in_file": a.quarantined_in_file,
            "quarantined_across_files": a.quarantined_across_files,
            "quarantine_sample": dg.MetadataValue.md(markdown_table(samples[name])),
        }
        if name == "users":
            metadata["users_from_first_transaction"] = a.derived_rows
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)
