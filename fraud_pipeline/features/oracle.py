"""A naive, independent recomputation of the point-in-time features, one transaction at a time.

It shares no code with the engine in :mod:`fraud_pipeline.features.engine` or the SQL: for each transaction it scans
the raw records and keeps those known strictly before the transaction. It is slow on purpose (clear
over clever) and is the reference that the SQL output, and later a leakage check, are compared with.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraud_pipeline.features.catalog import (
    CHARGEBACK_WINDOWS,
    FAMILIARITY_WINDOW,
    FEATURE_NAMES,
    WINDOWS,
)

_US = 10**6


def _micros(series: pd.Series) -> np.ndarray:
    return series.astype("datetime64[us]").to_numpy().astype(np.int64)


def recompute_features(
    transactions: pd.DataFrame,
    chargebacks: pd.DataFrame,
    users: pd.DataFrame,
    transaction_ids: list[int] | None = None,
) -> pd.DataFrame:
    """Recomputes every feature for the given transactions from raw records known before each one.

    Args:
        transactions: All transactions (transaction_id, user_id, merchant_id, event_time, amount,
            channel, mcc, country).
        chargebacks: Chargebacks known at as_of (transaction_id, reported_at).
        users: Users (user_id, created_at).
        transaction_ids: The transactions to recompute; all when None.

    Returns:
        One row per requested transaction with transaction_id and every feature in FEATURE_NAMES.
    """
    tx = transactions.reset_index(drop=True)
    tx_us = _micros(tx["event_time"])
    amount = tx["amount"].to_numpy(dtype=float)
    user = tx["user_id"].to_numpy()
    merchant = tx["merchant_id"].to_numpy()
    row_of = {int(t): i for i, t in enumerate(tx["transaction_id"].to_numpy())}

    cb_rows = np.array([row_of[int(t)] for t in chargebacks["transaction_id"]], dtype=np.int64)
    cb_us = _micros(chargebacks["reported_at"]) if len(chargebacks) else np.array([], dtype=np.int64)
    cb_user = user[cb_rows] if len(cb_rows) else np.array([], dtype=user.dtype)
    cb_merchant = merchant[cb_rows] if len(cb_rows) else np.array([], dtype=merchant.dtype)
    created = dict(zip(users["user_id"].to_numpy(), _micros(users["created_at"])))

    wanted = tx["transaction_id"].to_numpy() if transaction_ids is None else transaction_ids
    rows = []
    for transaction_id in wanted:
        i = row_of[int(transaction_id)]
        t = tx_us[i]
        same_user = (user == user[i]) & (tx_us < t)
        row: dict[str, object] = {
            "transaction_id": int(transaction_id),
            "amount": amount[i],
            "channel": tx.at[i, "channel"],
            "mcc": tx.at[i, "mcc"],
            "country": tx.at[i, "country"],
            "hour_of_day": int(pd.Timestamp(tx.at[i, "event_time"]).hour),
            "account_age_days": (t - created[user[i]]) / _US / 86_400.0 if user[i] in created else None,
        }
        recent = same_user & (tx_us >= t - WINDOWS["30d"])
        row["seconds_since_prev_tx"] = (t - tx_us[recent].max()) / _US if recent.any() else None
        for name, width in WINDOWS.items():
            in_window = same_user & (tx_us >= t - width)
            n = int(in_window.sum())
            row[f"n_prior_tx_{name}"] = n
            row[f"sum_amount_{name}"] = float(amount[in_window].sum()) if n else None
            row[f"mean_amount_{name}"] = float(amount[in_window].mean()) if n else None
        mean_30d = row["mean_amount_30d"]
        row["amount_to_mean_30d"] = amount[i] / mean_30d if mean_30d is not None else None
        for name, width in CHARGEBACK_WINDOWS.items():
            row[f"n_prior_chargebacks_{name}"] = int(((cb_user == user[i]) & (cb_us < t) & (cb_us >= t - width)).sum())
        width = WINDOWS["30d"]
        n_merchant = int(((merchant == merchant[i]) & (tx_us < t) & (tx_us >= t - width)).sum())
        n_merchant_cb = int(((cb_merchant == merchant[i]) & (cb_us < t) & (cb_us >= t - width)).sum())
        row["n_merchant_tx_30d"] = n_merchant
        row["n_merchant_chargebacks_30d"] = n_merchant_cb
        row["merchant_chargeback_rate_30d"] = n_merchant_cb / n_merchant if n_merchant else None
        familiar = same_user & (merchant == merchant[i]) & (tx_us >= t - WINDOWS[FAMILIARITY_WINDOW])
        row[f"n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}"] = int(familiar.sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=["transaction_id", *FEATURE_NAMES])


def compare_features(expected: pd.DataFrame, actual: pd.DataFrame, rel_tol: float = 1e-9) -> pd.DataFrame:
    """Lists every (transaction, feature) where two feature frames disagree.

    Counts, categories and NULL-ness must match exactly; real-valued aggregates within ``rel_tol``
    (a windowed sum may add the same numbers in another order).

    Returns:
        One row per mismatch: transaction_id, feature, expected, actual. Empty when they agree.
    """
    merged = expected.merge(actual, on="transaction_id", how="outer", suffixes=("_expected", "_actual"), indicator=True)
    mismatches = []
    for _, row in merged.iterrows():
        if row["_merge"] != "both":
            mismatches.append((row["transaction_id"], "<row>", row["_merge"], None))
            continue
        for name in FEATURE_NAMES:
            a, b = row[f"{name}_expected"], row[f"{name}_actual"]
            if not _same(a, b, rel_tol):
                mismatches.append((row["transaction_id"], name, a, b))
    return pd.DataFrame(mismatches, columns=["transaction_id", "feature", "expected", "actual"])


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _same(a: object, b: object, rel_tol: float) -> bool:
    if _is_missing(a) or _is_missing(b):
        return _is_missing(a) and _is_missing(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=0.0)


#: Where a leak inside a day shows: transactions whose key has a record later the same day (within
#: every window, all of them at most a day long or longer).
STRATA = {
    "user_chargeback_later_that_day": "user_chargeback_later",
    "merchant_chargeback_later_that_day": "merchant_chargeback_later",
    "user_transaction_later_that_day": "user_transaction_later",
    "merchant_transaction_later_that_day": "merchant_transaction_later",
}

_STRATA_SQL = """
    WITH known AS (
        SELECT t.user_id, t.merchant_id, c.reported_at, date_trunc('day', c.reported_at) AS day
        FROM chargebacks AS c JOIN transactions AS t USING (transaction_id)
    ),
    last_user_chargeback AS (SELECT user_id, day, max(reported_at) AS last FROM known GROUP BY ALL),
    last_merchant_chargeback AS (SELECT merchant_id, day, max(reported_at) AS last FROM known GROUP BY ALL),
    tx AS (
        SELECT transaction_id, user_id, merchant_id, event_time, date_trunc('day', event_time) AS day,
               max(event_time) OVER (PARTITION BY user_id, date_trunc('day', event_time)) AS user_last,
               max(event_time) OVER (PARTITION BY merchant_id, date_trunc('day', event_time)) AS merchant_last
        FROM transactions
    )
    SELECT tx.transaction_id, tx.user_id, tx.merchant_id,
           coalesce(u.last > tx.event_time, false) AS user_chargeback_later,
           coalesce(m.last > tx.event_time, false) AS merchant_chargeback_later,
           tx.user_last > tx.event_time AS user_transaction_later,
           tx.merchant_last > tx.event_time AS merchant_transaction_later
    FROM tx
    LEFT JOIN last_user_chargeback AS u ON u.user_id = tx.user_id AND u.day = tx.day
    LEFT JOIN last_merchant_chargeback AS m ON m.merchant_id = tx.merchant_id AND m.day = tx.day
"""


def choose_sample(con, sample_size: int, seed: int, targeted_size: int = 0) -> dict[str, int]:
    """Creates the temporary table ``oracle_sample`` (transaction_id, user_id, merchant_id): a seeded uniform
    sample plus ``targeted_size`` rows split evenly over :data:`STRATA`.

    A leak that stays inside a day (a count computed at the end of the day and joined to every
    transaction of it) touches only the transactions whose key has a record later that day: a few
    hundred rows in half a million, which a uniform sample rarely draws. A stratum smaller than its
    share is taken whole.

    Returns:
        Rows drawn per part (``uniform`` and each stratum; a row drawn twice counts in each).
    """
    parts = [("uniform", "true", int(sample_size))]
    per_stratum = int(targeted_size) // len(STRATA) if targeted_size > 0 else 0
    if per_stratum:
        con.execute(f"CREATE OR REPLACE TEMP TABLE oracle_strata AS {_STRATA_SQL}")
        parts += [(name, column, per_stratum) for name, column in STRATA.items()]
    source = "oracle_strata" if per_stratum else "transactions"
    selects = [
        f"(SELECT transaction_id, user_id, merchant_id, '{name}' AS part FROM {source} WHERE {where} "
        f"ORDER BY hash(transaction_id, $seed, '{name}'), transaction_id LIMIT {n})"
        for name, where, n in parts
    ]
    con.execute("CREATE OR REPLACE TEMP TABLE oracle_draws AS " + " UNION ALL ".join(selects), {"seed": int(seed)})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE oracle_sample AS SELECT DISTINCT transaction_id, user_id, merchant_id "
        "FROM oracle_draws"
    )
    drawn = dict(con.execute("SELECT part, count(*) FROM oracle_draws GROUP BY part").fetchall())
    return {name: int(drawn.get(name, 0)) for name, _, _ in parts}


def sample_and_compare(con, sample_size: int, seed: int, targeted_size: int = 0) -> tuple[int, pd.DataFrame, dict]:
    """Recomputes a seeded sample of ``transaction_features`` rows naively and lists the mismatches.

    The sample is :func:`choose_sample`'s: uniform, plus ``targeted_size`` rows where a leak inside
    a day would show. Only the raw rows the sample needs are read: the sampled users' and
    merchants' transactions and the chargebacks on them.

    Returns:
        (number of transactions compared, mismatches as in :func:`compare_features`, rows drawn per part).
    """
    drawn = choose_sample(con, sample_size, seed, targeted_size)
    related = """
        SELECT * FROM transactions
        WHERE user_id IN (SELECT user_id FROM oracle_sample) OR merchant_id IN (SELECT merchant_id FROM oracle_sample)
    """
    transactions = con.execute(f"{related} ORDER BY transaction_id").df()
    chargebacks = con.execute(
        f"SELECT c.transaction_id, c.reported_at FROM chargebacks AS c JOIN ({related}) AS t USING (transaction_id) "
        "ORDER BY c.transaction_id"
    ).df()
    users = con.execute(
        "SELECT user_id, created_at FROM users WHERE user_id IN (SELECT user_id FROM oracle_sample)"
    ).df()
    ids = con.execute("SELECT transaction_id FROM oracle_sample ORDER BY transaction_id").fetchnumpy()["transaction_id"]
    actual = con.execute(
        "SELECT * FROM transaction_features WHERE transaction_id IN (SELECT transaction_id FROM oracle_sample)"
    ).df()
    expected = recompute_features(transactions, chargebacks, users, ids.tolist())
    return len(ids), compare_features(expected, actual[["transaction_id", *FEATURE_NAMES]]), drawn
