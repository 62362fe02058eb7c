"""The raw tables' columns, named once: what every source delivers and the rest of the graph reads.

Each column has a logical type (``id``, ``timestamp``, ``amount``, ``text``); :data:`SQL_TYPES` maps
them to DuckDB's. The landing contract (which columns a file must have, which it may have) and the
scorer's input are derived from here, so adding a column is one edit.

Ids are integers inside the pipeline. A file may carry string ids: :func:`encode_id` (and its SQL
twin :func:`encode_id_sql`) maps an id written as an integer to that integer and any other text to a
fixed 63-bit hash of its UTF-8 bytes, so the same text gets the same key in every file, every run
and every process, with no state to keep; landing refuses a day in which two different ids meet on
one key and keeps the original text beside the key (``<column>_original``).
"""

from __future__ import annotations

import hashlib
import re

#: Text forms of values, as every reader of text files parses them (regular expressions for DuckDB's
#: ``regexp_full_match``): an ISO-8601 timestamp with an offset or Z, one without, an integer id.
OFFSET_TIMESTAMP = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)"
NAIVE_TIMESTAMP = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?"
INTEGER_ID = r"[+-]?\d{1,18}"

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
#: Columns a landed file must have (the rest of its kind's columns are optional). A users file
#: without ``created_at`` declares the account creation dates unknown: those users' account age
#: starts at their first transaction, as for a user without a users row.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "transactions": ("transaction_id", "user_id", "merchant_id", "event_time", "amount"),
    "chargebacks": ("transaction_id", "reported_at"),
}
#: The column that keeps the original text of a string id beside its integer key (NULL for an integer id).
ORIGINAL_SUFFIX = "_original"
#: An extra column of a transactions file (beyond the raw table's) is kept, as text, when its name
#: (lower-cased) is a plain identifier; a feature spec can then key on it (device, card, email, BIN).
EXTRA_COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Most extra columns a transactions file may carry.
MAX_EXTRA_COLUMNS = 64
#: Longest id text accepted (a longer cell is a parsing error, not an id).
MAX_ID_LENGTH = 256
#: An id written as a decimal number (``12.0``, ``1e5``): most often an integer id that went through
#: a float column, whose text would hash apart from the integer's. Landing quarantines it.
DECIMAL_ID = r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+"
_INTEGER_ID = re.compile(rf"^(?:{INTEGER_ID})$")


def id_columns(kind: str) -> tuple[str, ...]:
    """The id columns of a kind of table (those that may hold string ids in a file)."""
    return tuple(c for c, t in RAW_COLUMNS[kind].items() if t == "id")


def original_column(column: str) -> str:
    """The column holding the original text of a string id (``user_id`` -> ``user_id_original``)."""
    return f"{column}{ORIGINAL_SUFFIX}"


def encode_id(text: str) -> int:
    """The integer key of an id as written in a file: the integer itself, or a 63-bit hash of the text.

    Args:
        text: The id's text, trimmed.

    Returns:
        ``int(text)`` when the text is an integer of at most 18 digits; otherwise the first 64 bits
        of the MD5 digest of its UTF-8 bytes shifted right by one (a non-negative BIGINT).
    """
    if _INTEGER_ID.match(text):
        return int(text)
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:16], 16) >> 1


def encode_id_sql(text: str) -> str:
    """The SQL twin of :func:`encode_id` over a trimmed VARCHAR expression (NULL stays NULL)."""
    return (
        f"CASE WHEN regexp_full_match({text}, '{INTEGER_ID}') THEN CAST({text} AS BIGINT) "
        f"ELSE CAST(CAST(('0x' || left(md5({text}), 16)) AS UBIGINT) >> 1 AS BIGINT) END"
    )


def original_id_sql(text: str) -> str:
    """The original text of a string id, NULL for an id written as an integer."""
    return f"CASE WHEN NOT regexp_full_match({text}, '{INTEGER_ID}') THEN {text} END"


def columns(kind: str) -> tuple[str, ...]:
    """The raw table's columns, in order."""
    return tuple(RAW_COLUMNS[kind])


def column_list(kind: str, prefix: str = "") -> str:
    """The raw table's columns as a SQL select list (``prefix`` qualifies each, e.g. ``"t."``)."""
    return ", ".join(f"{prefix}{c}" for c in RAW_COLUMNS[kind])


def sql_casts(kind: str) -> dict[str, str]:
    """Column -> DuckDB type of the raw table."""
    return {c: SQL_TYPES[t] for c, t in RAW_COLUMNS[kind].items()}


#: The one rule for a valid amount: a finite number in ``[MIN_AMOUNT, MAX_AMOUNT]``. Landing
#: quarantines what is outside it (naming file, row and column), the transaction contract fails on
#: it, and the file scorer sends such a row to review. The minimum is the smallest unit of a
#: two-decimal currency: anything below (``1e-320``, ``0.001``) is a unit or parsing error, not a
#: payment. The maximum bounds any single card payment in one currency with room to spare, and keeps
#: every window's sum of amounts in integer cents exact (10M rows of it still fit in 63 bits).
MIN_AMOUNT = 0.01
MAX_AMOUNT = 1e9


def amount_problem_sql(column: str, text: str | None = None, name: str = "amount") -> str:
    """A SQL CASE that is NULL for a valid amount and names the problem otherwise (``amount: ...``).

    Args:
        column: The DOUBLE column (or expression) holding the parsed amount; NULL when unparseable.
        text: The original text of the cell, quoted in the reason when given.
        name: The column's name, which starts the reason.
    """
    shown = f" || ' (' || {text} || ')'" if text else ""
    return (
        f"CASE WHEN {column} IS NULL THEN '{name}: not a number'{shown} "
        f"WHEN isnan({column}) THEN '{name}: NaN' WHEN isinf({column}) THEN '{name}: infinite' "
        f"WHEN {column} < 0 THEN '{name}: negative'{shown} "
        f"WHEN {column} = 0 THEN '{name}: zero (must be > 0)' "
        f"WHEN {column} < {MIN_AMOUNT!r} THEN '{name}: out of range (below {MIN_AMOUNT:g})'{shown} "
        f"WHEN {column} > {MAX_AMOUNT!r} THEN '{name}: out of range (above {MAX_AMOUNT:,.0f})'{shown} END"
    )


def amount_violation_sql(column: str) -> str:
    """A SQL predicate that is true where ``column`` is not a valid amount (NULL included)."""
    return f"({column} IS NULL OR isnan({column}) OR NOT ({column} BETWEEN {MIN_AMOUNT!r} AND {MAX_AMOUNT!r}))"
