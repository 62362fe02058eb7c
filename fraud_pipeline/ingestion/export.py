"""Writes a simulated world as day folders of files, the input format of the file mode."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from fraud_pipeline.ingestion.simulator import World
from fraud_pipeline.lib.schema import columns

#: Each kind goes to the folder of the day its rows became known (created, authorised, reported).
_KNOWN_DAY = {"users": "created_at", "transactions": "event_time", "chargebacks": "reported_at"}
_COLUMNS = {kind: columns(kind) for kind in ("users", "transactions", "chargebacks")}


def export_world(world: World, out: Path, file_format: str = "csv", first_day: date | None = None) -> dict[str, int]:
    """Writes the world's users, transactions and chargebacks as ``out/<YYYY-MM-DD>/<kind>.<format>``.

    Rows go to the folder of the UTC day they became known; users created before ``first_day``
    (accounts older than the data) go to its folder. Timestamps are written as UTC: ISO-8601 text
    ending in ``Z`` in CSV, ``TIMESTAMP WITH TIME ZONE`` in Parquet.

    Args:
        world: The simulated world.
        out: Folder to write the day folders into (created if needed).
        file_format: ``csv`` or ``parquet``.
        first_day: The first day folder; defaults to the day of the first transaction.

    Returns:
        Number of files written per kind.
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be csv or parquet, got {file_format!r}")
    first_day = first_day or world.transactions["event_time"].min().date()
    written = {}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for kind, time_column in _KNOWN_DAY.items():
            con.register("frame", getattr(world, kind))
            columns = ", ".join(
                (
                    f"strftime({c}, '%Y-%m-%dT%H:%M:%S.%fZ') AS {c}"
                    if file_format == "csv"
                    else f"timezone('UTC', {c}) AS {c}"
                )
                if c == time_column
                else c
                for c in _COLUMNS[kind]
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE export AS SELECT greatest(CAST({time_column} AS DATE), ?::DATE) AS day, "
                f"{columns} FROM frame ORDER BY {time_column}, {_COLUMNS[kind][0]}",
                [first_day],
            )
            con.unregister("frame")
            days = [row[0] for row in con.execute("SELECT DISTINCT day FROM export ORDER BY day").fetchall()]
            for day in days:
                folder = out / day.isoformat()
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{kind}.{file_format}"
                options = "(FORMAT csv, HEADER true)" if file_format == "csv" else "(FORMAT parquet)"
                con.execute(
                    f"COPY (SELECT * EXCLUDE (day) FROM export WHERE day = ?) TO '{_quoted(target)}' {options}", [day]
                )
            written[kind] = len(days)
    return written


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
