"""Point-in-time transaction features, built as one DuckDB SQL statement.

The feature row of a transaction at time t uses only records whose knowledge time is strictly before
t: earlier transactions (known at their ``event_time``) and chargebacks (known at their
``reported_at``, never at the time of the transaction they dispute). Every window is the half-open
interval [t - w, t), expressed as a RANGE frame ending ``1 PRECEDING`` on the microsecond epoch, so
that other transactions at the very same microsecond are excluded too.

Absence is explicit. A count over no history is a true 0 and is the *availability partner* of the
aggregates over the same window; every other aggregate over no history (sum, mean, ratio, rate, time
since) is NULL, never 0 and never an average.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Window name -> length in microseconds.
WINDOWS: dict[str, int] = {
    "1h": 3_600 * 10**6,
    "1d": 86_400 * 10**6,
    "7d": 7 * 86_400 * 10**6,
    "30d": 30 * 86_400 * 10**6,
}
CHARGEBACK_WINDOWS: dict[str, int] = {"30d": 30 * 86_400 * 10**6, "90d": 90 * 86_400 * 10**6}
MERCHANT_WINDOW = "30d"


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
        Feature("n_prior_tx_all", "count", "User's transactions ever before t."),
        Feature("seconds_since_prev_tx", "aggregate", "Seconds since the user's previous transaction.",
                partner="n_prior_tx_all"),
    ]
    for window in WINDOWS:
        partner = f"n_prior_tx_{window}"
        features += [
            Feature(partner, "count", f"User's transactions in the {window} before t."),
            Feature(f"sum_amount_{window}", "aggregate", f"User's spend in the {window} before t.", partner=partner),
            Feature(f"mean_amount_{window}", "aggregate", f"User's mean amount in the {window} before t.",
                    partner=partner),
        ]
    features.append(Feature("amount_to_mean_30d", "aggregate", "Amount divided by the user's 30d mean amount.",
                            partner="n_prior_tx_30d"))
    for window in CHARGEBACK_WINDOWS:
        features.append(Feature(f"n_prior_chargebacks_{window}", "count",
                                f"Chargebacks on the user's transactions reported in the {window} before t."))
    features += [
        Feature("n_merchant_tx_30d", "count", "Merchant's transactions in the 30d before t (rate denominator)."),
        Feature("n_merchant_chargebacks_30d", "count", "Chargebacks on the merchant reported in the 30d before t."),
        Feature("merchant_chargeback_rate_30d", "aggregate",
                "Merchant chargebacks reported / merchant transactions, both over the 30d before t.",
                partner="n_merchant_tx_30d"),
        Feature("n_prior_user_merchant_tx", "count", "User's transactions at this merchant ever before t."),
    ]
    return tuple(features)


FEATURES: tuple[Feature, ...] = _feature_catalog()
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.categorical)
HISTORY_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.history)


def _frame(name: str, micros: int) -> str:
    return f"{name} AS (PARTITION BY key ORDER BY ts RANGE BETWEEN {micros} PRECEDING AND 1 PRECEDING)"


def transaction_features_sql(
    transactions: str = "transactions", chargebacks: str = "chargebacks", users: str = "users"
) -> str:
    """Returns the SELECT that computes every feature for every row of ``transactions``.

    Reads the given tables (or views). Chargebacks enter as events at their ``reported_at``; the
    caller is responsible for ``chargebacks`` holding only what was known at as_of (the windows
    already exclude anything reported at or after each transaction).
    """
    user_windows = ",\n            ".join(
        [_frame(f"w_{w}", us) for w, us in WINDOWS.items()]
        + [_frame(f"wcb_{w}", us) for w, us in CHARGEBACK_WINDOWS.items()]
        + ["w_all AS (PARTITION BY key ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"]
    )
    user_aggregates = ",\n                ".join(
        [
            f"count(tx_amount) OVER w_{w} AS n_prior_tx_{w}, "
            f"sum(tx_amount) OVER w_{w} AS sum_amount_{w}, "
            f"avg(tx_amount) OVER w_{w} AS mean_amount_{w}"
            for w in WINDOWS
        ]
        + [f"count(cb_marker) OVER wcb_{w} AS n_prior_chargebacks_{w}" for w in CHARGEBACK_WINDOWS]
        + ["count(tx_amount) OVER w_all AS n_prior_tx_all", "max(tx_ts) OVER w_all AS prev_tx_ts"]
    )
    merchant_us = WINDOWS[MERCHANT_WINDOW]
    return f"""
        WITH
        known_chargebacks AS (
            SELECT t.user_id, t.merchant_id, epoch_us(c.reported_at) AS ts
            FROM {chargebacks} AS c
            JOIN {transactions} AS t USING (transaction_id)
        ),
        user_events AS (
            SELECT user_id AS key, epoch_us(event_time) AS ts, transaction_id,
                   amount AS tx_amount, epoch_us(event_time) AS tx_ts, NULL::INTEGER AS cb_marker
            FROM {transactions}
            UNION ALL
            SELECT user_id, ts, NULL, NULL, NULL, 1 FROM known_chargebacks
        ),
        user_history AS (
            SELECT transaction_id, ts,
                {user_aggregates}
            FROM user_events
            WINDOW
            {user_windows}
            QUALIFY transaction_id IS NOT NULL
        ),
        merchant_events AS (
            SELECT merchant_id AS key, epoch_us(event_time) AS ts, transaction_id,
                   1 AS tx_marker, NULL::INTEGER AS cb_marker
            FROM {transactions}
            UNION ALL
            SELECT merchant_id, ts, NULL, NULL, 1 FROM known_chargebacks
        ),
        merchant_history AS (
            SELECT transaction_id,
                count(tx_marker) OVER w_m AS n_merchant_tx_30d,
                count(cb_marker) OVER w_m AS n_merchant_chargebacks_30d
            FROM merchant_events
            WINDOW {_frame("w_m", merchant_us)}
            QUALIFY transaction_id IS NOT NULL
        ),
        user_merchant_history AS (
            SELECT transaction_id,
                count(*) OVER (
                    PARTITION BY user_id, merchant_id ORDER BY epoch_us(event_time)
                    RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                ) AS n_prior_user_merchant_tx
            FROM {transactions}
        )
        SELECT
            t.transaction_id,
            t.user_id,
            t.merchant_id,
            t.event_time,
            t.amount,
            t.channel,
            t.mcc,
            t.country,
            CAST(hour(t.event_time) AS INTEGER) AS hour_of_day,
            (epoch_us(t.event_time) - epoch_us(u.created_at)) / 1e6 / 86400.0 AS account_age_days,
            uh.n_prior_tx_all,
            (uh.ts - uh.prev_tx_ts) / 1e6 AS seconds_since_prev_tx,
            {", ".join(f"uh.n_prior_tx_{w}, uh.sum_amount_{w}, uh.mean_amount_{w}" for w in WINDOWS)},
            t.amount / uh.mean_amount_30d AS amount_to_mean_30d,
            {", ".join(f"uh.n_prior_chargebacks_{w}" for w in CHARGEBACK_WINDOWS)},
            mh.n_merchant_tx_30d,
            mh.n_merchant_chargebacks_30d,
            CASE WHEN mh.n_merchant_tx_30d > 0
                 THEN mh.n_merchant_chargebacks_30d / mh.n_merchant_tx_30d END AS merchant_chargeback_rate_30d,
            umh.n_prior_user_merchant_tx
        FROM {transactions} AS t
        JOIN user_history AS uh USING (transaction_id)
        JOIN merchant_history AS mh USING (transaction_id)
        JOIN user_merchant_history AS umh USING (transaction_id)
        LEFT JOIN {users} AS u ON u.user_id = t.user_id
        ORDER BY t.transaction_id
    """
