"""The raw tables' columns, named once: what every source delivers and the rest of the graph reads.

Each column has a logical type (``id``, ``timestamp``, ``amount``, ``text``); :data:`SQL_TYPES` maps
them to DuckDB's. The landing contract (which columns a file must have, which it may have) and the
scorer's input are derived from here, so adding a column is one edit.
"""

from __future__ import annotations

#: Logical type -> DuckDB type.
SQL_TYPES = {"id": "BIGINT", "timestamp": "TIMESTAMP", "amount": "DOUBLE", "text": "VARCHAR"}

#: Kind of table -> column -> logical type, in the order the tables hold them.
RAW_COLUMNS: dict[str, dict[str, str]] = {
    "users": {"user_id": "id", "created_at": "timestamp", "region": "text"},
    "transactions": {
        "transaction_id": "id",
        "user_id": "id",
        "merchant_id": "id",
        "event_time": "timestamp",
        "amount": "amount",
        "channel": "text",
        "country": "text",
        "mcc": "text",
    },
    "chargebacks": {"transaction_id": "id", "reported_at": "timestamp", "reason": "text"},
}
#: Columns a landed file must have (the rest of its kind's columns are optional).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "created_at"),
    "transactions": ("transaction_id", "user_id", "merchant_id", "event_time", "amount"),
    "chargebacks": ("transaction_id", "reported_at"),
}
#: Columns a landed transactions file may carry beyond the raw table's; kept at landing, not used downstream.
EXTRA_TRANSACTION_COLUMNS = ("device_id", "currency")


def columns(kind: str) -> tuple[str, ...]:
    """The raw table's columns, in order."""
    return tuple(RAW_COLUMNS[kind])


def column_list(kind: str, prefix: str = "") -> str:
    """The raw table's columns as a SQL select list (``prefix`` qualifies each, e.g. ``"t."``)."""
    return ", ".join(f"{prefix}{c}" for c in RAW_COLUMNS[kind])


def sql_casts(kind: str) -> dict[str, str]:
    """Column -> DuckDB type of the raw table."""
    return {c: SQL_TYPES[t] for c, t in RAW_COLUMNS[kind].items()}
