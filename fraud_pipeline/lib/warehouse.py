"""Small helpers for building DuckDB tables atomically."""

from __future__ import annotations

import warnings
from collections.abc import Mapping


def replace_tables(
    con, queries: Mapping[str, str], sources: Mapping[str, object] | None = None, params: dict | None = None
) -> None:
    """Replaces each table with the result of its query, all in one transaction.

    A failure anywhere rolls everything back, so readers never see a half-built set of tables.

    Args:
        con: A DuckDB connection.
        queries: Table name -> SELECT statement.
        sources: In-memory frames or Arrow tables registered under the given names for the duration of the build.
        params: Named query parameters (``$name``); each query gets the ones it mentions.
    """
    sources = sources or {}
    params = params or {}
    for name, frame in sources.items():
        con.register(name, frame)
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for table, query in queries.items():
                used = {k: v for k, v in params.items() if f"${k}" in query}
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {query}", used)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        for name in sources:
            con.unregister(name)


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
