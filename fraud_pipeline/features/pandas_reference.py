"""A vectorised pandas implementation of a spec's point-in-time features, the benchmark's reference.

Written the way a careful pandas user would: ``groupby().rolling(..., closed="left")`` for the key's
windows over its own earlier transactions (count, sum, mean, max, std, latest time) and
``merge_asof(..., allow_exact_matches=False)`` over cumulative counts for the label events, which
come from another table (chargebacks, at their ``reported_at``). A distinct count has no rolling
form in pandas and is counted per key group. It must give the same values as the pipeline's
engine; the benchmark checks that on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_pipeline.features.spec import FeatureSpec, default_spec


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


def _distinct_in_window(group: pd.DataFrame, of: str, width: np.int64) -> np.ndarray:
    """Distinct non-NULL ``of`` values among each row's group rows in ``[t - width, t)`` (rows in time order)."""
    times = group["_us"].to_numpy()
    values = group[of].to_numpy()
    start = np.searchsorted(times, times - width, side="left")
    end = np.searchsorted(times, times, side="left")
    return np.array([len({v for v in values[a:b] if not pd.isna(v)}) for a, b in zip(start, end)], dtype=np.int64)


def _rolled(tx: pd.DataFrame, columns: list[str], width: pd.Timedelta, features: list) -> dict[str, np.ndarray]:
    """Each transaction aggregate of one (key, window), in ``tx``'s row order; the count under ``"__n"``."""
    known = tx[columns].notna().all(axis=1).to_numpy()
    by_key = tx.loc[known].sort_values([*columns, "event_time", "transaction_id"], kind="stable")
    position = by_key.index.to_numpy()
    grouped = by_key.set_index("event_time").groupby(columns, sort=False)
    raw: dict[str, np.ndarray] = {"__n": grouped["_us"].rolling(width, closed="left").count().to_numpy()}
    for f in features:
        if f.agg in ("sum", "mean", "ratio_to_mean", "max", "std"):
            window = grouped[f.of].rolling(width, closed="left")
            if f.agg == "max":
                raw[f.name] = window.max().to_numpy()
            elif f.agg == "std":
                raw[f.name] = window.std(ddof=0).to_numpy()
            else:
                raw[f.name] = window.sum().to_numpy()
        elif f.agg == "time_since_previous":
            raw[f.name] = grouped["_us"].rolling(width, closed="left").max().to_numpy()
        elif f.agg == "distinct":
            width_us = np.int64(width / pd.Timedelta(microseconds=1))
            raw[f.name] = np.concatenate(
                [_distinct_in_window(g, f.of, width_us) for _, g in by_key.groupby(columns, sort=False)]
                or [np.zeros(0, dtype=np.int64)]
            )
    out = {}
    for name, values in raw.items():
        full = np.full(len(tx), np.nan)
        full[position] = values
        out[name] = full
    return out


def pandas_features(
    transactions: pd.DataFrame, chargebacks: pd.DataFrame, users: pd.DataFrame, spec: FeatureSpec | None = None
) -> pd.DataFrame:
    """Computes every history feature of ``spec`` (and the account age) with pandas; rows in transaction_id order.

    Args:
        transactions: The transactions, with every column the spec reads.
        chargebacks: Chargebacks known at as_of (transaction_id, reported_at).
        users: Users (user_id, created_at).
        spec: The feature spec (the default spec when None).
    """
    spec = spec or default_spec()
    tx = transactions.sort_values("transaction_id").reset_index(drop=True)
    tx["_us"] = tx["event_time"].astype("datetime64[us]").astype(np.int64)
    out = pd.DataFrame({"transaction_id": tx["transaction_id"].to_numpy()})
    key_columns = list(dict.fromkeys(c for columns in spec.keys.values() for c in columns))
    with_cb = chargebacks.merge(tx[["transaction_id", *key_columns]], on="transaction_id")

    groups: dict[tuple[str, int], list] = {}
    for f in spec.aggregates:
        groups.setdefault((f.key, f.window_us), []).append(f)
    for (key, width_us), features in groups.items():
        columns = list(spec.keys[key])
        width = pd.Timedelta(microseconds=width_us)
        raw = _rolled(tx, columns, width, features)
        n = np.nan_to_num(raw["__n"], nan=0.0).astype(np.int64)  # an empty window (or a NULL key) counts nothing
        has = n > 0
        known = tx[columns].notna().all(axis=1).to_numpy()
        labels = None
        if any(f.agg in ("label_count", "label_rate") for f in features):
            events = with_cb.loc[with_cb[columns].notna().all(axis=1), [*columns, "reported_at"]]
            labels = np.zeros(len(tx), dtype=np.int64)
            labels[known] = _count_in_window(
                tx.loc[known].reset_index(drop=True), events.rename(columns={"reported_at": "time"}), columns, width
            )
        for f in features:
            if f.agg == "count":
                out[f.name] = n
            elif f.agg == "label_count":
                out[f.name] = labels
            elif f.agg == "label_rate":
                out[f.name] = np.where(has, labels / np.where(has, n, 1), np.nan)
            elif f.agg in ("sum", "max", "std"):
                out[f.name] = np.where(has, raw[f.name], np.nan)
            elif f.agg == "mean":
                out[f.name] = np.where(has, raw[f.name] / np.where(has, n, 1), np.nan)
            elif f.agg == "ratio_to_mean":
                mean = np.where(has, raw[f.name] / np.where(has, n, 1), np.nan)
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[f.name] = tx[f.of].to_numpy(dtype=float) / mean
            elif f.agg == "time_since_previous":
                out[f.name] = np.where(has, (tx["_us"].to_numpy() - raw[f.name]) / 1e6, np.nan)
            elif f.agg == "distinct":
                out[f.name] = np.where(has, raw[f.name], np.nan)
    if any(f.derive == "account_age_days" for f in spec.attributes):
        created = tx[["user_id"]].merge(users[["user_id", "created_at"]], on="user_id", how="left")["created_at"]
        ages = (tx["event_time"] - created).dt.total_seconds().to_numpy() / 86_400.0
        for f in spec.attributes:
            if f.derive == "account_age_days":
                out[f.name] = ages
    return out
