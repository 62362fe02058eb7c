"""The point-in-time features as one portable SQL statement, for a warehouse without a Python engine.

Every window is expressed as a RANGE frame ending ``1 PRECEDING`` on the microsecond epoch, so that
other transactions at the very same microsecond are excluded too. The tests hold this statement
equal to the numpy engine (:mod:`fraud_pipeline.features.table`).
"""

from __future__ import annotations

from fraud_pipeline.features.catalog import (
    CHARGEBACK_WINDOWS,
    FAMILIARITY_WINDOW,
    MERCHANT_WINDOW,
    WINDOWS,
)


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
