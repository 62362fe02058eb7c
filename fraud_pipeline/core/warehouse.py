"""Small helpers for building DuckDB tables atomically."""

from __future__ import annotations

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


def table_count(con, table: str) -> int:
    """Number of rows in a table."""
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def fetch_records(con, sql: str, params=None) -> list[dict]:
    """Runs a query and returns its rows as dicts (for small results)."""
    cur = con.execute(sql, params or {})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]
