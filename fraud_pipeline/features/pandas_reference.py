"""A vectorised pandas implementation of the point-in-time features, the benchmark's reference.

Written the way a careful pandas user would: ``groupby().rolling(..., closed="left")`` for the user's
amount windows and ``merge_asof(..., allow_exact_matches=False)`` over cumulative counts for events
that come from another table (chargebacks) or another grouping (merchant, user-merchant). It must give
the same values as the pipeline's engine; the benchmark checks that on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_pipeline.features.catalog import (
    CHARGEBACK_WINDOWS,
    FAMILIARITY_WINDOW,
    WINDOWS,
)

_PANDAS_WINDOWS = {name: pd.Timedelta(microseconds=us) for name, us in {**WINDOWS, **CHARGEBACK_WINDOWS}.items()}


def _count_before(left_times: pd.Series, left_keys: pd.DataFrame, events: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each left row, the number of events of the same key with time strictly before the left time."""
    ordered = events.sort_values([*keys, "time"], kind="stable").copy()
    ordered["cum"] = ordered.groupby(keys, sort=False).cumcount() + 1
    ordered = ordered.sort_values("time", kind="stable")
    left = left_keys.assign(time=left_times.to_numpy(), row=np.arange(len(left_times))).sort_values(
        "time", kind="stable"
    )
    merged = pd.merge_asof(
        left, ordered[[*keys, "time", "cum"]], on="time", by=keys, direction="backward", allow_exact_matches=False
    )
    # With ties in time, merge_asof returns the last tied row, whose cum is the highest: the count.
    counts = merged["cum"].fillna(0).to_numpy(dtype=np.int64)  # no event before t: a count of nothing is 0
    out = np.empty(len(left_times), dtype=np.int64)
    out[merged["row"].to_numpy()] = counts
    return out


def _count_in_window(tx: pd.DataFrame, events: pd.DataFrame, keys: list[str], width: pd.Timedelta) -> np.ndarray:
    left_keys = tx[keys].reset_index(drop=True)
    now = _count_before(tx["event_time"].reset_index(drop=True), left_keys, events, keys)
    before = _count_before((tx["event_time"] - width).reset_index(drop=True), left_keys, events, keys)
    return now - before


def pandas_features(transactions: pd.DataFrame, chargebacks: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Computes every history feature with pandas; rows in transaction_id order."""
    tx = transactions.sort_values("transaction_id").reset_index(drop=True)
    out = pd.DataFrame({"transaction_id": tx["transaction_id"].to_numpy()})

    by_user = tx[["transaction_id", "user_id", "event_time", "amount"]].sort_values(
        ["user_id", "event_time", "transaction_id"], kind="stable"
    )
    position = by_user["transaction_id"].to_numpy()
    rolled = {}
    grouped = by_user.set_index("event_time").groupby("user_id", sort=False)["amount"]
    for name in WINDOWS:
        window = grouped.rolling(_PANDAS_WINDOWS[name], closed="left")
        rolled[f"n_prior_tx_{name}"] = window.count().to_numpy()
        rolled[f"sum_amount_{name}"] = window.sum().to_numpy()
    user_frame = pd.DataFrame(rolled)
    user_frame["transaction_id"] = position
    user_frame = user_frame.set_index("transaction_id").loc[out["transaction_id"]].reset_index(drop=True)
    for name in WINDOWS:
        n = user_frame[f"n_prior_tx_{name}"].fillna(0).astype(np.int64)  # an empty window counts nothing
        out[f"n_prior_tx_{name}"] = n.to_numpy()
        total = user_frame[f"sum_amount_{name}"].where(n > 0)
        out[f"sum_amount_{name}"] = total.to_numpy()
        out[f"mean_amount_{name}"] = (total / n.where(n > 0)).to_numpy()
    out["amount_to_mean_30d"] = tx["amount"].to_numpy() / out["mean_amount_30d"].to_numpy()

    previous = by_user.groupby("user_id", sort=False)["event_time"].shift(1)
    # the previous *strictly earlier* time: carry the last distinct earlier time across ties
    same_time = previous.eq(by_user["event_time"])
    earlier = previous.mask(same_time).groupby(by_user["user_id"]).ffill()
    earlier = earlier.where(earlier.notna() & (earlier < by_user["event_time"]))
    earlier.index = position
    gap = tx["event_time"].to_numpy() - earlier.loc[out["transaction_id"]].to_numpy()
    # bounded like every window: NULL when the user has no transaction in the 30d before t
    out["seconds_since_prev_tx"] = pd.Series(pd.to_timedelta(gap).total_seconds()).where(out["n_prior_tx_30d"] > 0)

    with_cb = chargebacks.merge(tx[["transaction_id", "user_id", "merchant_id"]], on="transaction_id")
    cb_user = with_cb[["user_id", "reported_at"]].rename(columns={"reported_at": "time"})
    for name in CHARGEBACK_WINDOWS:
        out[f"n_prior_chargebacks_{name}"] = _count_in_window(tx, cb_user, ["user_id"], _PANDAS_WINDOWS[name])

    merchant_tx = tx[["merchant_id", "event_time"]].rename(columns={"event_time": "time"})
    merchant_cb = with_cb[["merchant_id", "reported_at"]].rename(columns={"reported_at": "time"})
    out["n_merchant_tx_30d"] = _count_in_window(tx, merchant_tx, ["merchant_id"], _PANDAS_WINDOWS["30d"])
    out["n_merchant_chargebacks_30d"] = _count_in_window(tx, merchant_cb, ["merchant_id"], _PANDAS_WINDOWS["30d"])
    denominator = out["n_merchant_tx_30d"].where(out["n_merchant_tx_30d"] > 0)
    out["merchant_chargeback_rate_30d"] = out["n_merchant_chargebacks_30d"] / denominator
    pair_events = tx[["user_id", "merchant_id", "event_time"]].rename(columns={"event_time": "time"})
    out[f"n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}"] = _count_in_window(
        tx, pair_events, ["user_id", "merchant_id"], _PANDAS_WINDOWS[FAMILIARITY_WINDOW]
    )
    created = tx[["user_id"]].merge(users[["user_id", "created_at"]], on="user_id", how="left")["created_at"]
    out["account_age_days"] = (tx["event_time"] - created).dt.total_seconds().to_numpy() / 86_400.0
    return out
