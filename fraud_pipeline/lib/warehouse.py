"""Small helpers for building DuckDB tables atomically, stamping each night's tables, and reading files literally.

A night's tables are one unit: every table written by :func:`replace_tables` (and by the raw-table
build) gets a row in ``table_stamps`` (the run's as_of, its run id and a write sequence number)
inside the same transaction as the table itself. A reader that needs several tables to belong
together checks their stamps first (:func:`require_one_night`) and refuses a mixed set with a
message naming the tables, instead of reading features that do not belong to the transactions.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

#: The table that records which run wrote each table, for which as_of, in which order.
STAMP_TABLE = "table_stamps"


class WarehouseError(RuntimeError):
    """The warehouse cannot be used as it is; the message is one line naming the file and what to do."""


class WarehouseFull(WarehouseError):
    """A write ran out of disk space; the transaction was rolled back and the previous tables are whole."""


class MixedNight(WarehouseError):
    """Tables that must belong to one night were written by different runs, or out of order."""


@dataclass(frozen=True)
class RunStamp:
    """The run that writes tables: its as_of and its id (either unknown when None)."""

    as_of: datetime | None
    run_id: str | None


#: The stamp of the run this process is executing, set by the run's clock resource for the run's life.
_current_stamp: RunStamp | None = None


def set_run_stamp(stamp: RunStamp | None) -> None:
    """Sets (or clears, with None) the stamp every table written from now on in this process gets."""
    global _current_stamp
    _current_stamp = stamp


def current_run_stamp() -> RunStamp | None:
    """The stamp tables are written with now, or None outside a run."""
    return _current_stamp


def stamp_tables(con, tables: Sequence[str], stamp: RunStamp | None = None) -> None:
    """Records that ``tables`` were just written (call it inside the transaction that writes them).

    All tables of one call share one sequence number, greater than any before, so a reader can tell
    which tables were written together and which was written after which.
    """
    stamp = stamp or _current_stamp or RunStamp(None, None)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STAMP_TABLE} "
        "(table_name VARCHAR PRIMARY KEY, as_of TIMESTAMP, run_id VARCHAR, seq BIGINT)"
    )
    seq = con.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {STAMP_TABLE}").fetchone()[0]
    for table in tables:
        con.execute(
            f"INSERT OR REPLACE INTO {STAMP_TABLE} VALUES (?, ?, ?, ?)", [table, stamp.as_of, stamp.run_id, seq]
        )


@dataclass(frozen=True)
class TableStamp:
    """What ``table_stamps`` says about one table."""

    table: str
    as_of: datetime | None
    run_id: str | None
    seq: int

    def describe(self) -> str:
        as_of = f"as_of {self.as_of:%Y-%m-%d}" if self.as_of else "an unknown as_of"
        return f"{self.table} ({as_of}, run {self.run_id or 'unknown'}, write #{self.seq})"


def table_stamps(con, tables: Sequence[str]) -> dict[str, TableStamp]:
    """The stamps of the given tables that have one (a table written before stamps existed has none)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
        [STAMP_TABLE],
    ).fetchone()[0]
    if not exists:
        return {}
    rows = con.execute(
        f"SELECT table_name, as_of, run_id, seq FROM {STAMP_TABLE} WHERE table_name IN (SELECT unnest(?::VARCHAR[]))",
        [list(tables)],
    ).fetchall()
    return {row[0]: TableStamp(*row) for row in rows}


def require_one_night(con, derived: str, inputs: Sequence[str]) -> None:
    """Refuses to go on when ``derived`` does not belong to the night of its ``inputs``.

    It belongs when it was written for the same as_of as each input and after it (or together with
    it). Tables without a stamp (written by an older version) are not judged.

    Raises:
        MixedNight: Naming the tables, their as_of and runs, and what to do.
    """
    stamps = table_stamps(con, [derived, *inputs])
    mine = stamps.get(derived)
    if mine is None:
        return
    for name in inputs:
        other = stamps.get(name)
        if other is None:
            continue
        different_night = mine.as_of is not None and other.as_of is not None and mine.as_of != other.as_of
        if different_night or other.seq > mine.seq:
            raise MixedNight(
                f"{mine.describe()} does not belong to {other.describe()}: a run rewrote {name} and did not "
                f"finish rebuilding {derived} (killed, failed or out of disk); run the pipeline again for the night you want"
            )


def require_written_together(con, tables: Sequence[str]) -> None:
    """Refuses tables that are written in one transaction (e.g. the raw tables) but carry different stamps."""
    stamps = table_stamps(con, tables)
    if len({s.seq for s in stamps.values()}) > 1:
        described = "; ".join(stamps[t].describe() for t in tables if t in stamps)
        raise MixedNight(f"tables written together come from different writes: {described}; run the pipeline again")


def database_path(con) -> str:
    """The file behind the connection's main database (``:memory:`` for an in-memory one)."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return row[0] if row and row[0] else ":memory:"


def _is_disk_full(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if "No space left on device" in str(error) or getattr(error, "errno", None) == 28:
            return True
        error = error.__cause__ or error.__context__
    return False


def storage_error(con, error: BaseException, doing: str) -> BaseException:
    """A one-line :class:`WarehouseFull` naming the file when ``error`` is a full disk, else ``error`` itself."""
    if not _is_disk_full(error):
        return error
    try:
        path = database_path(con)
    except Exception:  # an invalidated connection cannot even say its path
        path = "the warehouse"
    return WarehouseFull(
        f"{path}: No space left on device while {doing}; the transaction was rolled back, so every table is as "
        "it was before: free disk space and run again"
    )


def rollback_quietly(con) -> None:
    """Rolls back, ignoring a failure of the rollback itself.

    After a failed COMMIT DuckDB may have ended the transaction already, and the rollback's own error
    ("cannot rollback - no transaction is active") must not hide the error that caused it.
    """
    try:
        con.execute("ROLLBACK")
    except Exception:
        pass


@contextmanager
def write_transaction(
    con, tables: Sequence[str], stamp: RunStamp | None = None, doing: str | None = None
) -> Iterator[None]:
    """One transaction around the statements of the block that write ``tables``, which it then stamps.

    Any failure rolls everything back (quietly, so that the real error is the one raised); a full
    disk becomes one line naming the file (:class:`WarehouseFull`).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        if tables:
            stamp_tables(con, tables, stamp)
        con.execute("COMMIT")
    except BaseException as error:
        rollback_quietly(con)
        clearer = storage_error(con, error, doing or f"replacing {', '.join(tables)}")
        if clearer is error:
            raise
        raise clearer from error


def replace_tables(
    con,
    queries: Mapping[str, str],
    sources: Mapping[str, object] | None = None,
    params: dict | None = None,
    stamp: RunStamp | None = None,
) -> None:
    """Replaces each table with the result of its query, all in one transaction, and stamps them.

    A failure anywhere rolls everything back, so readers never see a half-built set of tables. A
    full disk is reported as one line naming the file (:class:`WarehouseFull`).

    Args:
        con: A DuckDB connection.
        queries: Table name -> SELECT statement.
        sources: In-memory frames or Arrow tables registered under the given names for the duration of the build.
        params: Named query parameters (``$name``); each query gets the ones it mentions.
        stamp: The run writing the tables; by default the run this process executes (see :func:`set_run_stamp`).
    """
    sources = sources or {}
    params = params or {}
    for name, frame in sources.items():
        con.register(name, frame)
    try:
        with write_transaction(con, list(queries), stamp):
            for table, query in queries.items():
                used = {k: v for k, v in params.items() if f"${k}" in query}
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {query}", used)
    finally:
        for name in sources:
            try:
                con.unregister(name)
            except Exception:  # an invalidated connection: the original error is what matters
                pass


def literal_path(path: Path | str) -> str:
    """A path DuckDB's readers take as exactly this one file, never as a pattern.

    DuckDB expands ``*``, ``?`` and ``[...]`` in a path (and in each element of a list), so
    ``transactions_*.csv`` would also read its neighbours. Each such character is wrapped in a
    bracket class that matches only itself (:func:`glob.escape`), which DuckDB honours.

    Raises:
        ValueError: The path holds both a pattern character and a backslash, which DuckDB's
            matching cannot take literally; the message says to rename the file.
    """
    text = str(path)
    if not any(c in text for c in "*?["):
        return text
    if "\\" in text:
        raise ValueError("the path holds a backslash and one of * ? [, which cannot be read literally; rename the file")
    return glob.escape(text)


def open_problem(path: Path | str, error: BaseException) -> str:
    """One line saying that the warehouse file cannot be opened, and what to do, in both modes."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "lock" in first.lower() and "conflicting" in first.lower():
        return f"{path}: in use by another process ({first}); wait for the run that holds it to finish"
    return (
        f"{path}: not a readable DuckDB warehouse ({first}). Move it aside; in simulated mode the next run rebuilds "
        "it, in files mode the landed tables lived only there: rebuild them with "
        "`python -m fraud_pipeline ingest --rebuild --folder <day folders>`"
    )


#: Rows in a DuckDB row group.
ROW_GROUP_ROWS = 122_880


def in_row_groups(table, groups_per_batch: int = 8):
    """The Arrow table re-batched in whole DuckDB row groups, for storing with ``CREATE TABLE AS``.

    DuckDB scans the batches on every thread and writes each batch's rows as row groups; a batch
    that is not a whole number of groups leaves a partial one behind it. At 10M rows, batches of
    2^17 rows made the stored features 65% larger, and the checkpoint that rewrote them cost 6 s.
    """
    import pyarrow as pa

    combined = table.combine_chunks()
    return pa.Table.from_batches(
        combined.to_batches(max_chunksize=groups_per_batch * ROW_GROUP_ROWS), schema=combined.schema
    )


def table_count(con, table: str) -> int:
    """Number of rows in a table."""
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def fetch_records(con, sql: str, params=None) -> list[dict]:
    """Runs a query and returns its rows as dicts (for small results)."""
    cur = con.execute(sql, params or {})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def fetch_frame(con, sql: str, params: dict | None = None):
    """Runs a query and returns its rows as a pandas frame, through Arrow.

    About twice as fast as ``.df()`` on wide tables with text columns, with the same dtypes. It goes
    through ``execute`` (not ``con.sql``), which works whatever result the connection left unfinished;
    DuckDB warns that this copies the Arrow batches once more, which costs far less than ``.df()`` saves.
    DECIMAL columns become float64, as ``.df()`` makes them.
    """
    import pyarrow as pa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
        table = con.execute(sql, params or {}).to_arrow_table()
    decimals = [i for i, f in enumerate(table.schema) if pa.types.is_decimal(f.type)]
    for i in decimals:
        table = table.set_column(i, table.schema.field(i).name, table.column(i).cast(pa.float64()))
    return table.to_pandas()


def hash_sample(con, sql: str, params: dict, max_rows: int):
    """Rows of a query as pandas, at most ``max_rows`` of them, chosen by a hash of transaction_id (same rows every run)."""
    return fetch_frame(
        con, f"SELECT * FROM ({sql}) ORDER BY hash(transaction_id), transaction_id LIMIT {int(max_rows)}", params
    )
