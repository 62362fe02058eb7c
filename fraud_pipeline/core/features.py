"""Point-in-time transaction features: the catalogue, the engine's DuckDB side, and the portable SQL.

The feature row of a transaction at time t uses only records whose knowledge time is strictly before
t: earlier transactions (known at their ``event_time``) and chargebacks (known at their
``reported_at``, never at the time of the transaction they dispute). Every window is the half-open
interval [t - w, t), expressed as a RANGE frame ending ``1 PRECEDING`` on the microsecond epoch, so
that other transactions at the very same microsecond are excluded too.

Every window is bounded and none is longer than :data:`HISTORY_DAYS`: a feature over "all history"
depends on where the data happens to begin (a warehouse loaded six months ago and one loaded two
years ago give different values, and the values grow with the age of the data, not of the user),
so it drifts for no reason in the population. Training starts :data:`HISTORY_DAYS` after the first
transaction, where every window is full.

:func:`transaction_features_table` is what the pipeline runs: DuckDB reads and sorts the rows, the
numpy engine (:mod:`fraud_pipeline.core.feature_engine`) computes the history features with one
sort per key, and the result goes back to DuckDB as an Arrow table. :func:`transaction_features_sql`
computes the same values as one portable SQL statement, for a warehouse without a Python engine
beside it; tests hold the two equal.

Absence is explicit. A count over no history is a true 0 and is the *availability partner* of the
aggregates over the same window; every other aggregate over no history (sum, mean, ratio, rate, time
since) is NULL, never 0 and never an average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fraud_pipeline.core.feature_engine import history_features
from fraud_pipeline.core.warehouse import in_row_groups, replace_tables

#: Window name -> length in microseconds.
WINDOWS: dict[str, int] = {
    "1h": 3_600 * 10**6,
    "1d": 86_400 * 10**6,
    "7d": 7 * 86_400 * 10**6,
    "30d": 30 * 86_400 * 10**6,
}
CHARGEBACK_WINDOWS: dict[str, int] = {"30d": 30 * 86_400 * 10**6}
MERCHANT_WINDOW = "30d"
#: Window of the user's earlier transactions at the same merchant.
FAMILIARITY_WINDOW = "30d"
#: No feature looks further back than this many days (the training warm-up).
HISTORY_DAYS = max([*WINDOWS.values(), *CHARGEBACK_WINDOWS.values()]) // (86_400 * 10**6)


@dataclass(frozen=True)
class Feature:
    """One model feature and how its absence is expressed.

    Attributes:
        name: Column name in ``transaction_features``.
        kind: ``count`` (never NULL, 0 means no history), ``aggregate`` (NULL exactly when its
            partner count is 0), or ``attribute`` (a property of the transaction itself).
        description: One line for the UI and the model card.
        partner: For aggregates, the count that explains each NULL.
        categorical: Whether the model treats it as categorical.
        history: Whether it comes from a history service (unavailable during a feature outage).
    """

    name: str
    kind: str
    description: str
    partner: str | None = None
    categorical: bool = False
    history: bool = True


def _feature_catalog() -> tuple[Feature, ...]:
    features: list[Feature] = [
        Feature("amount", "attribute", "Transaction amount.", history=False),
        Feature("channel", "attribute", "card_present or ecommerce.", categorical=True, history=False),
        Feature("mcc", "attribute", "Merchant category code.", categorical=True, history=False),
        Feature("country", "attribute", "Merchant country / region.", categorical=True, history=False),
        Feature("hour_of_day", "attribute", "UTC hour of the transaction.", history=False),
        Feature("account_age_days", "aggregate", "Days since the account was created (NULL if the user is unknown).",
                partner=None, history=False),
    ]
    for window in WINDOWS:
        partner = f"n_prior_tx_{window}"
        features += [
            Feature(partner, "count", f"User's transactions in the {window} before t."),
            Feature(f"sum_amount_{window}", "aggregate", f"User's spend in the {window} before t.", partner=partner),
            Feature(f"mean_amount_{window}", "aggregate", f"User's mean amount in the {window} before t.",
                    partner=partner),
        ]
    features += [
        Feature("seconds_since_prev_tx", "aggregate",
                "Seconds since the user's previous transaction in the 30d before t.", partner="n_prior_tx_30d"),
        Feature("amount_to_mean_30d", "aggregate", "Amount divided by the user's 30d mean amount.",
                partner="n_prior_tx_30d"),
    ]
    for window in CHARGEBACK_WINDOWS:
        features.append(Feature(f"n_prior_chargebacks_{window}", "count",
                                f"Chargebacks on the user's transactions reported in the {window} before t."))
    features += [
        Feature("n_merchant_tx_30d", "count", "Merchant's transactions in the 30d before t (rate denominator)."),
        Feature("n_merchant_chargebacks_30d", "count", "Chargebacks on the merchant reported in the 30d before t."),
        Feature("merchant_chargeback_rate_30d", "aggregate",
                "Merchant chargebacks reported / merchant transactions, both over the 30d before t.",
                partner="n_merchant_tx_30d"),
        Feature(f"n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}", "count",
                f"User's transactions at this merchant in the {FAMILIARITY_WINDOW} before t."),
    ]
    return tuple(features)


FEATURES: tuple[Feature, ...] = _feature_catalog()
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.categorical)
HISTORY_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.history)


def _frame(micros: int) -> str:
    return f"RANGE BETWEEN {micros} PRECEDING AND 1 PRECEDING"


def transaction_features_sql(
    transactions: str = "transactions", chargebacks: str = "chargebacks", users: str = "users"
) -> str:
    """Returns the SELECT that computes every feature for every row of ``transactions``.

    Reads the given tables (or views). Chargebacks enter as events at their ``reported_at``; the
    caller is responsible for ``chargebacks`` holding only what was known at as_of (the windows
    already exclude anything reported at or after each transaction). Rows come in no particular
    order; sort on ``transaction_id`` when order matters.
    """
    user_frames = ",\n            ".join(f"w_{w} AS (w_user {_frame(us)})" for w, us in WINDOWS.items())
    user_aggregates = ",\n                ".join(
        f"count(*) OVER w_{w} AS n_prior_tx_{w}, sum(amount) OVER w_{w} AS sum_amount_{w}" for w in WINDOWS
    )
    chargeback_counts = ",\n                ".join(
        f"count(*) FILTER (WHERE c.ts >= h.ts - {us}) AS n_prior_chargebacks_{w}"
        for w, us in CHARGEBACK_WINDOWS.items()
    )
    means = ", ".join(
        f"h.n_prior_tx_{w}, h.sum_amount_{w}, h.sum_amount_{w} / h.n_prior_tx_{w} AS mean_amount_{w}" for w in WINDOWS
    )
    return f"""
        WITH
        known_chargebacks AS (
            SELECT t.user_id, t.merchant_id, epoch_us(c.reported_at) AS ts
            FROM {chargebacks} AS c
            JOIN {transactions} AS t USING (transaction_id)
        ),
        events AS (
            SELECT transaction_id, user_id, merchant_id, epoch_us(event_time) AS ts, amount, channel, mcc, country,
                   event_time, 1 AS tx, NULL::INTEGER AS cb
            FROM {transactions}
            UNION ALL
            SELECT NULL, user_id, merchant_id, ts, NULL, NULL, NULL, NULL, NULL, NULL, 1 FROM known_chargebacks
        ),
        history AS (
            -- partitions on (key, cb) keep chargeback events out of the transaction windows without a filter
            SELECT *,
                {user_aggregates},
                lag(ts) OVER w_user AS lag_ts,
                count(tx) OVER w_merchant AS n_merchant_tx_30d,
                count(cb) OVER w_merchant AS n_merchant_chargebacks_30d,
                count(*) OVER (PARTITION BY user_id, merchant_id, cb ORDER BY ts {_frame(WINDOWS[FAMILIARITY_WINDOW])})
                    AS n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}
            FROM events
            WINDOW
            w_user AS (PARTITION BY user_id, cb ORDER BY ts),
            {user_frames},
            w_merchant AS (PARTITION BY merchant_id ORDER BY ts {_frame(WINDOWS[MERCHANT_WINDOW])})
            QUALIFY transaction_id IS NOT NULL
        ),
        user_chargebacks AS (
            SELECT h.transaction_id,
                {chargeback_counts}
            FROM history AS h
            JOIN known_chargebacks AS c USING (user_id)
            WHERE c.ts < h.ts AND c.ts >= h.ts - {max(CHARGEBACK_WINDOWS.values())}
            GROUP BY h.transaction_id
        ),
        tied_previous AS (
            -- lag() of a row tied at the same microsecond is its peer; the group's first row holds the earlier time
            SELECT user_id, ts, max(lag_ts) FILTER (WHERE lag_ts < ts) AS previous_ts
            FROM history
            WHERE (user_id, ts) IN (SELECT user_id, ts FROM history WHERE lag_ts = ts)
            GROUP BY user_id, ts
        )
        SELECT
            h.transaction_id,
            h.user_id,
            h.merchant_id,
            h.event_time,
            h.amount,
            h.channel,
            h.mcc,
            h.country,
            CAST(hour(h.event_time) AS INTEGER) AS hour_of_day,
            (h.ts - epoch_us(u.created_at)) / 1e6 / 86400.0 AS account_age_days,
            {means},
            CASE WHEN h.n_prior_tx_30d > 0
                 THEN (h.ts - CASE WHEN h.lag_ts < h.ts THEN h.lag_ts ELSE p.previous_ts END) / 1e6
            END AS seconds_since_prev_tx,
            h.amount / (h.sum_amount_30d / h.n_prior_tx_30d) AS amount_to_mean_30d,
            -- a transaction absent from user_chargebacks has no chargeback in the window: a true count of 0
            {", ".join(f"coalesce(uc.n_prior_chargebacks_{w}, 0) AS n_prior_chargebacks_{w}" for w in CHARGEBACK_WINDOWS)},
            h.n_merchant_tx_30d,
            h.n_merchant_chargebacks_30d,
            CASE WHEN h.n_merchant_tx_30d > 0
                 THEN h.n_merchant_chargebacks_30d / h.n_merchant_tx_30d END AS merchant_chargeback_rate_30d,
            h.n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}
        FROM history AS h
        LEFT JOIN user_chargebacks AS uc USING (transaction_id)
        LEFT JOIN tied_previous AS p ON p.user_id = h.user_id AND p.ts = h.ts
        LEFT JOIN {users} AS u ON u.user_id = h.user_id
    """


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

    computed = history_arrays(column("user_id"), column("merchant_id"), column("ts"), column("amount"),
                              known["user_id"], known["merchant_id"], known["ts"])
    output = {name: rows[name] for name in ("transaction_id", "user_id", "merchant_id", "event_time")}
    for name in FEATURE_NAMES:
        output[name] = computed[name] if name in computed else rows[name]
    return in_row_groups(pa.table(output))


def history_arrays(
    user: np.ndarray, merchant: np.ndarray, ts: np.ndarray, amount: np.ndarray,
    chargeback_user: np.ndarray, chargeback_merchant: np.ndarray, chargeback_ts: np.ndarray,
) -> dict[str, pa.Array]:
    """This project's history features (its windows) as Arrow arrays, NULL where a value is absent.

    Arguments as :func:`fraud_pipeline.core.feature_engine.history_features` takes them: one entry
    per transaction in time order, times in epoch microseconds, and the chargebacks known at as_of.
    """
    computed = history_features(
        user, merchant, ts, amount, chargeback_user, chargeback_merchant, chargeback_ts,
        windows=WINDOWS, chargeback_windows=CHARGEBACK_WINDOWS,
        merchant_window=(MERCHANT_WINDOW, WINDOWS[MERCHANT_WINDOW]),
        familiarity_window=(FAMILIARITY_WINDOW, WINDOWS[FAMILIARITY_WINDOW]),
    )
    return {name: pa.array(column.values, mask=None if column.valid is None else ~column.valid)
            for name, column in computed.items()}


def store_transaction_features(
    con, table: str = "transaction_features", transactions: str = "transactions", chargebacks: str = "chargebacks",
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
    return {"rows": rows,
            "null_share": {f.name: (computed.column(f.name).null_count / rows if rows else 0.0) for f in FEATURES}}
