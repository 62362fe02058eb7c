"""The raw tables known at as_of, assembled from every landed day, with the row accounting.

``build_known_tables`` assembles ``users``, ``transactions`` and ``chargebacks`` as known at an as_of
from every landed day, quarantining what only shows across files (duplicates, chargebacks before
their transaction or for unknown transactions). Rows in = rows loaded + rows quarantined, per kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fraud_pipeline.ingestion.landing import KINDS, create_landing_tables, landed_extra_columns
from fraud_pipeline.lib.schema import column_list, columns, encode_id_sql, id_columns, original_column
from fraud_pipeline.lib.warehouse import table_count, write_transaction


@dataclass(frozen=True)
class KindAccounting:
    """Rows of one kind of file known at as_of: rows in = loaded + quarantined (at landing or across files)."""

    kind: str
    files: int
    rows_in: int
    rows_loaded: int
    quarantined_in_file: int
    quarantined_across_files: int
    derived_rows: int = 0

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined_in_file + self.quarantined_across_files

    @property
    def quarantine_share(self) -> float | None:
        return self.rows_quarantined / self.rows_in if self.rows_in else None

    @property
    def unaccounted(self) -> int:
        return self.rows_in - self.rows_loaded - self.rows_quarantined


#: Landed rows of the files known at as_of: a day folder is known once its day has ended.
_KNOWN = "SELECT * FROM {table} WHERE day + INTERVAL 1 DAY <= $as_of AND {time} < $as_of"
_TX_ORIGINALS = tuple(original_column(c) for c in id_columns("transactions"))


def _tx_content(extras: tuple[str, ...]) -> str:
    """The columns that make two copies of a transaction the same (all but its id)."""
    return ", ".join([*columns("transactions")[1:], *_TX_ORIGINALS, *extras])


def _cross_file_sql(extras: tuple[str, ...]) -> dict[str, str]:
    """The temp tables of the cross-file rules, given the extra columns the landed transactions carry."""
    return {
        "tx_known": _KNOWN.format(table="landing_transactions", time="event_time"),
        "tx_versions": f"""
        SELECT transaction_id, count(DISTINCT hash({_tx_content(extras)})) AS n_versions, count(*) AS n_copies
        FROM tx_known GROUP BY transaction_id
    """,
        **_CROSS_FILE_SQL,
    }


_CROSS_FILE_SQL = {
    "tx_ranked": """
        SELECT k.*, v.n_versions, v.n_copies,
               row_number() OVER (PARTITION BY k.transaction_id ORDER BY k.day, k.file, k.row_number) AS copy,
               first_value(strftime(k.day, '%Y-%m-%d') || '/' || k.file || ' row ' || k.row_number)
                   OVER (PARTITION BY k.transaction_id ORDER BY k.day, k.file, k.row_number) AS first_copy
        FROM tx_known AS k JOIN tx_versions AS v USING (transaction_id)
    """,
    "tx_clean": "SELECT * EXCLUDE (day, file, row_number, n_versions, n_copies, copy, first_copy) FROM tx_ranked "
    "WHERE n_versions = 1 AND copy = 1",
    # a quarantined row's id is its text: encoded as landing encodes it
    "quarantined_tx_ids": f"""
        SELECT DISTINCT transaction_id FROM tx_ranked WHERE n_versions > 1
        UNION
        SELECT DISTINCT {encode_id_sql("NULLIF(trim(json_extract_string(raw, '$.transaction_id')), '')")}
        FROM quarantine WHERE stage = 'file' AND kind = 'transactions'
    """,
    "any_tx": "SELECT transaction_id, min(event_time) AS first_event_time FROM landing_transactions GROUP BY transaction_id",
    "cb_known": _KNOWN.format(table="landing_chargebacks", time="reported_at"),
    "cb_classified": """
        SELECT c.*,
            CASE
                WHEN t.transaction_id IS NOT NULL AND c.reported_at < t.event_time
                    THEN 'chargeback before its transaction (reported_at ' || c.reported_at || ' < event_time ' || t.event_time || ')'
                WHEN t.transaction_id IS NULL AND a.transaction_id IS NOT NULL AND a.first_event_time > c.reported_at
                    THEN 'chargeback before its transaction (reported_at ' || c.reported_at || ' < event_time ' || a.first_event_time || ')'
                WHEN t.transaction_id IS NULL AND q.transaction_id IS NOT NULL
                    THEN 'chargeback for a quarantined transaction (see its quarantine row)'
                WHEN t.transaction_id IS NULL THEN 'chargeback for an unknown transaction_id'
            END AS problem,
            CASE WHEN t.transaction_id IS NOT NULL AND c.reported_at < t.event_time THEN 'reported_at'
                 WHEN t.transaction_id IS NULL AND a.transaction_id IS NOT NULL AND a.first_event_time > c.reported_at THEN 'reported_at'
                 ELSE 'transaction_id' END AS problem_column
        FROM cb_known AS c
        LEFT JOIN tx_clean AS t USING (transaction_id)
        LEFT JOIN any_tx AS a USING (transaction_id)
        LEFT JOIN quarantined_tx_ids AS q USING (transaction_id)
    """,
    "cb_ranked": """
        SELECT *,
            row_number() OVER w AS copy,
            first_value(strftime(day, '%Y-%m-%d') || '/' || file || ' row ' || row_number || ', reported_at ' || reported_at) OVER w AS first_copy
        FROM cb_classified WHERE problem IS NULL
        WINDOW w AS (PARTITION BY transaction_id ORDER BY reported_at, day, file, row_number)
    """,
    # a users file without created_at: known once its day folder is
    "users_known": "SELECT * FROM landing_users WHERE day + INTERVAL 1 DAY <= $as_of "
    "AND (created_at IS NULL OR created_at < $as_of)",
    "users_ranked": """
        SELECT k.*,
            count(DISTINCT hash(created_at, region)) OVER (PARTITION BY user_id) AS n_versions,
            row_number() OVER (PARTITION BY user_id ORDER BY day, file, row_number) AS copy,
            first_value(strftime(day, '%Y-%m-%d') || '/' || file || ' row ' || row_number)
                OVER (PARTITION BY user_id ORDER BY day, file, row_number) AS first_copy
        FROM users_known AS k
    """,
    "user_first_tx": "SELECT user_id, min(event_time) AS first_event_time FROM tx_clean GROUP BY user_id",
    # a created_at after the user's first transaction would give a negative account age
    "users_checked": """
        SELECT r.*, f.first_event_time,
            coalesce(r.n_versions = 1 AND r.copy = 1 AND r.created_at > f.first_event_time, false) AS late
        FROM users_ranked AS r LEFT JOIN user_first_tx AS f USING (user_id)
    """,
}


def _shown_id(column: str) -> str:
    """An id as the user wrote it: its original text when it was a string."""
    return f"coalesce({original_column(column)}, CAST({column} AS VARCHAR))"


def _cross_file_quarantine(extras: tuple[str, ...]) -> str:
    """The cross-file quarantine rows, each with its row as JSON (the transactions' extras included)."""
    tx_raw = ", ".join([*columns("transactions"), *_TX_ORIGINALS, *extras])
    return f"""
    SELECT 'cross-file' AS stage, day, 'transactions' AS kind, file, row_number, 'transaction_id' AS "column",
        CASE WHEN n_versions > 1
             THEN 'conflicting duplicate transaction_id ' || {_shown_id("transaction_id")} || ': ' || n_copies || ' copies that differ (first: ' || first_copy || ')'
             ELSE 'duplicate transaction_id ' || {_shown_id("transaction_id")} || ' (identical copy of ' || first_copy || ')' END AS reason,
        CAST(to_json(struct_pack({tx_raw})) AS VARCHAR) AS raw
    FROM tx_ranked WHERE n_versions > 1 OR copy > 1
    UNION ALL
    SELECT 'cross-file', day, 'chargebacks', file, row_number, problem_column, problem,
        CAST(to_json(struct_pack(transaction_id, transaction_id_original, reported_at, reason)) AS VARCHAR)
    FROM cb_classified WHERE problem IS NOT NULL
    UNION ALL
    SELECT 'cross-file', day, 'chargebacks', file, row_number, 'transaction_id',
        'duplicate chargeback for transaction_id ' || {_shown_id("transaction_id")} || ' (first: ' || first_copy || ')',
        CAST(to_json(struct_pack(transaction_id, transaction_id_original, reported_at, reason)) AS VARCHAR)
    FROM cb_ranked WHERE copy > 1
    UNION ALL
    SELECT 'cross-file', day, 'users', file, row_number, 'user_id',
        CASE WHEN n_versions > 1 THEN 'conflicting duplicate user_id ' || {_shown_id("user_id")} || ' (first: ' || first_copy || ')'
             ELSE 'duplicate user_id ' || {_shown_id("user_id")} || ' (identical copy of ' || first_copy || ')' END,
        CAST(to_json(struct_pack(user_id, user_id_original, created_at, region)) AS VARCHAR)
    FROM users_checked WHERE n_versions > 1 OR copy > 1
    UNION ALL
    SELECT 'cross-file', day, 'users', file, row_number, 'created_at',
        'created_at ' || created_at || ' is after the user''s first transaction (' || first_event_time
            || '): the account age would be negative; the user''s account age starts at that transaction instead',
        CAST(to_json(struct_pack(user_id, user_id_original, created_at, region)) AS VARCHAR)
    FROM users_checked WHERE late
"""


def known_tables_sql(extras: tuple[str, ...], originals: tuple[str, ...]) -> dict[str, str]:
    """The raw tables the rest of the graph reads: the simulated mode's columns, then what the files add.

    Args:
        extras: The extra columns of the landed transactions files (kept so a feature spec can key on them).
        originals: The ``<id>_original`` columns that hold at least one string id (the original text).
    """
    added = "".join(f", {c}" for c in (*originals, *extras))
    return {
        "transactions": f"""
        SELECT {column_list("transactions")}{added}
        FROM tx_clean ORDER BY transaction_id
    """,
        "chargebacks": "SELECT transaction_id, reported_at, reason FROM cb_ranked WHERE copy = 1 ORDER BY transaction_id",
        # without a users row or its created_at, account age starts at the first transaction seen
        # (known at that transaction); a user with neither is not known yet
        "users": """
        WITH from_file AS (
            SELECT user_id, created_at, region FROM users_checked WHERE n_versions = 1 AND copy = 1 AND NOT late
        ), first_tx AS (SELECT user_id, min(event_time) AS first_event_time FROM tx_clean GROUP BY user_id)
        SELECT user_id, coalesce(f.created_at, t.first_event_time) AS created_at, f.region
        FROM from_file AS f LEFT JOIN first_tx AS t USING (user_id)
        WHERE f.created_at IS NOT NULL OR t.first_event_time IS NOT NULL
        UNION ALL
        SELECT user_id, first_event_time AS created_at, NULL::VARCHAR AS region FROM first_tx
        WHERE user_id NOT IN (SELECT user_id FROM from_file)
        ORDER BY user_id
    """,
    }


def build_known_tables(con, as_of: datetime) -> list[KindAccounting]:
    """Builds ``users``, ``transactions`` and ``chargebacks`` as known at as_of from the landed days.

    A day folder counts once its day has ended before as_of; its rows also need their own
    timestamp before as_of. Cross-file problems go to ``quarantine`` (stage ``cross-file``, rebuilt
    each time): duplicate and conflicting transaction ids (identical copies keep the first; all
    copies of a conflict are held back), chargebacks before their transaction, for an unknown or a
    quarantined transaction, duplicate chargebacks (the first reported is kept), duplicate users and
    users whose ``created_at`` is after their first transaction (they get the first-transaction age).
    The three tables, the quarantine rows and ``ingestion_accounting`` change in one transaction.

    Args:
        con: A DuckDB connection holding the landing tables.
        as_of: The run's as_of (naive UTC).

    Returns:
        Row accounting per kind of file.

    Raises:
        ValueError: No landed day folder is known at as_of.
    """
    create_landing_tables(con)
    n_files = con.execute("SELECT count(*) FROM landing_files WHERE day + INTERVAL 1 DAY <= ?", [as_of]).fetchone()[0]
    if not n_files:
        raise ValueError(f"no landed day folder ended before as_of {as_of:%Y-%m-%d %H:%M}; land the day folders first")
    extras = landed_extra_columns(con)
    cross_file = _cross_file_sql(extras)
    for name, sql in cross_file.items():
        used = {"as_of": as_of} if "$as_of" in sql else {}
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", used)
    originals = tuple(
        c for c in _TX_ORIGINALS if con.execute(f"SELECT 1 FROM tx_clean WHERE {c} IS NOT NULL LIMIT 1").fetchone()
    )
    tables = known_tables_sql(extras, originals)
    try:
        with write_transaction(con, [*tables, "ingestion_accounting"]):
            for table, sql in tables.items():
                con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
            con.execute("DELETE FROM quarantine WHERE stage = 'cross-file'")
            con.execute(f"INSERT INTO quarantine {_cross_file_quarantine(extras)} ORDER BY kind, day, file, row_number")
            accounting = _accounting(con, as_of)
            write_accounting(con, accounting)
    finally:
        for name in cross_file:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    return accounting


def _accounting(con, as_of: datetime) -> list[KindAccounting]:
    rows = {
        kind: (files, rows_in, in_file)
        for kind, files, rows_in, in_file in con.execute(
            "SELECT kind, count(*), sum(rows_in), sum(rows_quarantined) FROM landing_files "
            "WHERE day + INTERVAL 1 DAY <= ? GROUP BY kind",
            [as_of],
        ).fetchall()
    }
    across = dict(
        con.execute("SELECT kind, count(*) FROM quarantine WHERE stage = 'cross-file' GROUP BY kind").fetchall()
    )
    loaded = {
        "transactions": table_count(con, "transactions"),
        "chargebacks": table_count(con, "chargebacks"),
        "users": con.execute(
            "SELECT count(*) FROM users_checked WHERE n_versions = 1 AND copy = 1 AND NOT late"
        ).fetchone()[0],
    }
    result = []
    # users whose account age starts at their first transaction: no users row, or one without created_at
    n_derived = con.execute(
        "SELECT count(*) FROM users WHERE user_id NOT IN "
        "(SELECT user_id FROM users_checked WHERE n_versions = 1 AND copy = 1 AND NOT late AND created_at IS NOT NULL)"
    ).fetchone()[0]
    for kind in KINDS:
        files, rows_in, in_file = rows.get(kind, (0, 0, 0))
        derived = n_derived if kind == "users" else 0
        result.append(
            KindAccounting(
                kind,
                int(files),
                int(rows_in or 0),
                int(loaded[kind]),
                int(in_file or 0),
                int(across.get(kind, 0)),
                int(derived),
            )
        )
    return result


def write_accounting(con, accounting: list[KindAccounting]) -> None:
    """Replaces ``ingestion_accounting`` (one row per kind) for the quarantine check to read."""
    con.execute(
        "CREATE OR REPLACE TABLE ingestion_accounting (kind VARCHAR, files BIGINT, rows_in BIGINT, rows_loaded BIGINT, "
        "quarantined_in_file BIGINT, quarantined_across_files BIGINT, derived_rows BIGINT)"
    )
    for a in accounting:
        con.execute(
            "INSERT INTO ingestion_accounting VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                a.kind,
                a.files,
                a.rows_in,
                a.rows_loaded,
                a.quarantined_in_file,
                a.quarantined_across_files,
                a.derived_rows,
            ],
        )


def read_accounting(con) -> list[KindAccounting]:
    """The accounting written by the last build of the raw tables."""
    return [
        KindAccounting(*row)
        for row in con.execute(
            "SELECT kind, files, rows_in, rows_loaded, quarantined_in_file, quarantined_across_files, derived_rows "
            "FROM ingestion_accounting ORDER BY kind"
        ).fetchall()
    ]


@dataclass(frozen=True)
class QuarantineVerdict:
    """Whether each kind's quarantine share is within the limit and every row is accounted for."""

    passed: bool
    reason: str


def judge_quarantine(accounting: list[KindAccounting], max_share: float) -> QuarantineVerdict:
    """Fails when a kind's quarantined share of rows exceeds ``max_share`` or rows go unaccounted."""
    problems = []
    for a in accounting:
        if a.unaccounted:
            problems.append(f"{a.kind}: {a.unaccounted} rows neither loaded nor quarantined")
        share = a.quarantine_share
        if share is not None and share > max_share:
            problems.append(
                f"{a.kind}: {a.rows_quarantined} of {a.rows_in} rows quarantined ({share:.2%} > {max_share:.2%})"
            )
    if not accounting:
        problems.append("no ingestion accounting")
    return QuarantineVerdict(not problems, "; ".join(problems) or f"every quarantine share is within {max_share:.2%}")
