"""The features' DuckDB side: read the rows in time order, run the numpy engine, store the result.

:func:`transaction_features_table` is what the pipeline runs: DuckDB reads and sorts the rows, the
numpy engine (:mod:`fraud_pipeline.features.engine`) computes the history features with one sort
per key, and the result goes back to DuckDB as an Arrow table. The values equal
:func:`fraud_pipeline.features.sql.transaction_features_sql`'s.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fraud_pipeline.features.catalog import (
    CHARGEBACK_WINDOWS,
    FAMILIARITY_WINDOW,
    FEATURE_NAMES,
    FEATURES,
    MERCHANT_WINDOW,
    WINDOWS,
)
from fraud_pipeline.features.engine import history_features
from fraud_pipeline.lib.warehouse import in_row_groups, replace_tables


def transaction_features_table(
    con, transactions: str = "transactions", chargebacks: str = "chargebacks", users: str = "users"
) -> pa.Table:
    """Every feature of every row of ``transactions``, as an Arrow table in time order.

    DuckDB reads the given tables (or views) and sorts the rows by time; the numpy engine computes
    the history features; the attributes come straight from the read. The values equal
    :func:`transaction_features_sql`'s. Register the result on the connection to store it, e.g.
    ``replace_tables(con, {"transaction_features": "SELECT * FROM f"}, sources={"f": table})``.
    """
    rows = con.sql(f"""
        SELECT t.transaction_id, t.user_id, t.merchant_id, t.event_time, t.amount, t.channel, t.mcc, t.country,
               CAST(hour(t.event_time) AS INTEGER) AS hour_of_day,
               (epoch_us(t.event_time) - epoch_us(u.created_at)) / 1e6 / 86400.0 AS account_age_days,
               epoch_us(t.event_time) AS ts
        FROM {transactions} AS t LEFT JOIN {users} AS u USING (user_id)
        ORDER BY ts, t.transaction_id
    """).to_arrow_table()
    known = con.sql(f"""
        SELECT t.user_id, t.merchant_id, epoch_us(c.reported_at) AS ts
        FROM {chargebacks} AS c JOIN {transactions} AS t USING (transaction_id)
    """).fetchnumpy()

    def column(name: str) -> np.ndarray:
        return rows[name].to_numpy()

    computed = history_arrays(
        column("user_id"),
        column("merchant_id"),
        column("ts"),
        column("amount"),
        known["user_id"],
        known["merchant_id"],
        known["ts"],
    )
    output = {name: rows[name] for name in ("transaction_id", "user_id", "merchant_id", "event_time")}
    for name in FEATURE_NAMES:
        output[name] = computed[name] if name in computed else rows[name]
    return in_row_groups(pa.table(output))


def history_arrays(
    user: np.ndarray,
    merchant: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    chargeback_user: np.ndarray,
    chargeback_merchant: np.ndarray,
    chargeback_ts: np.ndarray,
) -> dict[str, pa.Array]:
    """This project's history features (its windows) as Arrow arrays, NULL where a value is absent.

    Arguments as :func:`fraud_pipeline.features.engine.history_features` takes them: one entry
    per transaction in time order, times in epoch microseconds, and the chargebacks known at as_of.
    """
    computed = history_features(
        user,
        merchant,
        ts,
        amount,
        chargeback_user,
        chargeback_merchant,
        chargeback_ts,
        windows=WINDOWS,
        chargeback_windows=CHARGEBACK_WINDOWS,
        merchant_window=(MERCHANT_WINDOW, WINDOWS[MERCHANT_WINDOW]),
        familiarity_window=(FAMILIARITY_WINDOW, WINDOWS[FAMILIARITY_WINDOW]),
    )
    return {
        name: pa.array(column.values, mask=None if column.valid is None else ~column.valid)
        for name, column in computed.items()
    }


def store_transaction_features(
    con,
    table: str = "transaction_features",
    transactions: str = "transactions",
    chargebacks: str = "chargebacks",
    users: str = "users",
) -> dict:
    """Computes :func:`transaction_features_table` and replaces ``table`` with it in one transaction.

    Returns:
        {'rows': the stored row count, 'null_share': {feature: share of NULLs}}, read off the Arrow
        columns (which count their NULLs) instead of scanning the stored table again.
    """
    computed = transaction_features_table(con, transactions, chargebacks, users)
    replace_tables(con, {table: "SELECT * FROM computed_features"}, sources={"computed_features": computed})
    rows = computed.num_rows
    return {
        "rows": rows,
        "null_share": {f.name: (computed.column(f.name).null_count / rows if rows else 0.0) for f in FEATURES},
    }
