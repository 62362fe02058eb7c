"""The point-in-time feature engine: one sort per key, then binary searches and prefix sums.

Every history feature is a question about the rows of one key (a user, a merchant, a user at a
merchant) in a half-open window ``[t - w, t)`` before a transaction at ``t``. With the key's rows in
time order, that window is a contiguous run that ends at the key's first row at ``t`` (so rows at the
same microsecond are excluded) and starts at the first row at or after ``t - w``; both ends are one
``searchsorted`` on a composite (key, time) integer, a count is the difference of the two
positions, and a sum is the difference of a prefix sum at them. So each key costs one sort of
packed integers (``np.sort``, which is vectorised) and a binary search per window, instead of a
frame search per window and row.

Chargebacks are events on the same keys at their ``reported_at`` and are counted by a binary search
of each transaction's window in the key's sorted chargeback times.

This module is pure numpy: :func:`history_features` takes arrays and returns arrays. The DuckDB side
(reading the tables, writing ``transaction_features``) is :mod:`fraud_pipeline.core.features`, which
also keeps the same features as portable SQL for a warehouse.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Largest composite key: group offset plus time must stay below 2**62 to leave room for arithmetic.
_KEY_LIMIT = 2**62


def _codes(rows: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integer codes of a key for the rows and for the events, in one code space.

    Non-negative ids are their own codes; otherwise the rows' distinct values are numbered in order
    and an event whose value no row has gets -1 (it can never fall in a row's window).
    """
    rows = np.asarray(rows, dtype=np.int64)
    events = np.asarray(events, dtype=np.int64)
    if not len(rows) or rows.min() >= 0:
        return rows, events
    values = np.unique(rows)
    position = np.minimum(np.searchsorted(values, events), len(values) - 1)
    return np.searchsorted(values, rows), np.where(values[position] == events, position, -1)


class KeyedStream:
    """The rows grouped by a key, each group in time order, with composite (group, time) search keys.

    Args:
        group: Non-negative integer key of every row, in the rows' (time) order.
        ts: Microsecond time of every row; rows must be in non-decreasing time order.
        reach: The longest window that will be searched, in microseconds.
        extra_ts: Times of events that will be counted against this stream (e.g. chargebacks); the
            composite keys are laid out to cover them.
    """

    def __init__(self, group: np.ndarray, ts: np.ndarray, reach: int, extra_ts: np.ndarray | None = None) -> None:
        n = len(group)
        bits = max(1, (n - 1).bit_length())
        group = np.asarray(group, dtype=np.int64)
        values = None
        if n and group.max() >= 2 ** (63 - bits):
            values, group = np.unique(group, return_inverse=True)
            group = group.astype(np.int64)
        # one vectorised value sort of (group, position) orders the rows by group, then time
        packed = (group << bits) | np.arange(n, dtype=np.int64)
        packed.sort()
        self.order = packed & ((1 << bits) - 1)
        sorted_group = packed >> bits
        del packed
        self.ts = ts[self.order]
        first_of_group = np.empty(n, dtype=bool)
        first_of_group[:1] = True
        np.not_equal(sorted_group[1:], sorted_group[:-1], out=first_of_group[1:])
        #: Each group's key value, ascending: the position of a value here is its group index.
        self.groups = sorted_group[first_of_group] if values is None else values
        self.group_index = np.cumsum(first_of_group) - 1
        del sorted_group, first_of_group

        lo, hi = (int(ts.min()), int(ts.max())) if n else (0, 0)
        if extra_ts is not None and len(extra_ts):
            lo, hi = min(lo, int(extra_ts.min())), max(hi, int(extra_ts.max()))
        self.base = lo - reach
        self.span = hi - self.base + 1
        if self.span >= _KEY_LIMIT:
            raise ValueError("the data spans more time than a composite key can hold")
        self.groups_per_chunk = max(1, _KEY_LIMIT // self.span)
        chunk = self.group_index // self.groups_per_chunk
        self.keys = (self.group_index % self.groups_per_chunk) * self.span + (self.ts - self.base)
        edges = np.searchsorted(chunk, np.arange(int(chunk[-1]) + 2 if n else 1))
        self.chunks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def search(self, queries: np.ndarray) -> np.ndarray:
        """For each row's query key (in sorted row order, same group): the first row at or after it."""
        found = np.empty(len(queries), dtype=np.int64)
        for lo, hi in self.chunks:
            found[lo:hi] = np.searchsorted(self.keys[lo:hi], queries[lo:hi], side="left") + lo
        return found

    def count_events(self, event_group: np.ndarray, event_ts: np.ndarray, width: int) -> np.ndarray:
        """Per sorted row: events of the row's group with time in ``[t - width, t)``."""
        counts = np.zeros(len(self.keys), dtype=np.int64)
        if not len(event_group) or not len(self.keys):
            return counts
        position = np.searchsorted(self.groups, event_group)
        position = np.minimum(position, len(self.groups) - 1)
        known = (self.groups[position] == event_group) & (event_ts >= self.base) & (event_ts < self.base + self.span)
        index = position[known]
        event_keys = (index % self.groups_per_chunk) * self.span + (event_ts[known] - self.base)
        event_chunk = index // self.groups_per_chunk
        for lo, hi in self.chunks:
            chunk = self.group_index[lo] // self.groups_per_chunk
            keys = np.sort(event_keys[event_chunk == chunk])
            row_keys = self.keys[lo:hi]
            counts[lo:hi] = np.searchsorted(keys, row_keys, "left") - np.searchsorted(keys, row_keys - width, "left")
        return counts

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """Values computed in sorted row order, put back in the rows' original order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


@dataclass(frozen=True)
class Column:
    """One computed feature column in the rows' order; ``valid`` is False where the value is NULL."""

    values: np.ndarray
    valid: np.ndarray | None = None


def _prefix_sums(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Prefix sums (with a leading 0) that difference exactly, and the scale to divide them by.

    Amounts in whole cents are summed as integer cents, which is exact at any size; anything finer
    falls back to extended precision.
    """
    cents = np.rint(values * 100.0)
    if np.all(np.abs(values * 100.0 - cents) < 1e-6) and np.abs(cents).sum() < 2**62:
        prefix = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(cents.astype(np.int64), out=prefix[1:])
        return prefix, 100.0
    prefix = np.zeros(len(values) + 1, dtype=np.longdouble)
    np.cumsum(values, dtype=np.longdouble, out=prefix[1:])
    return prefix, 1.0


def _user_features(
    user: np.ndarray, ts: np.ndarray, amount: np.ndarray, chargeback_user: np.ndarray, chargeback_ts: np.ndarray,
    windows: dict[str, int], chargeback_windows: dict[str, int], reach: int,
) -> dict[str, Column]:
    users = KeyedStream(user, ts, reach, chargeback_ts)
    first_at_t = users.search(users.keys)  # the user's first row at t: every row before it is earlier
    # a missing amount (possible only in rows being scored) adds nothing to a sum, as SQL's sum() skips NULL
    prefix, scale = _prefix_sums(np.nan_to_num(amount[users.order], nan=0.0))
    sorted_columns: list[np.ndarray] = []
    for width in windows.values():
        start = users.search(users.keys - width)
        sorted_columns += [first_at_t - start, (prefix[first_at_t] - prefix[start]).astype(np.float64) / scale]
    previous = users.ts[np.maximum(first_at_t - 1, 0)]
    sorted_columns.append((users.ts - previous) / 1e6)
    sorted_columns += [users.count_events(chargeback_user, chargeback_ts, width) for width in chargeback_windows.values()]
    del prefix, previous
    values = iter([users.scatter(column) for column in sorted_columns])
    del sorted_columns
    columns: dict[str, Column] = {}
    for name in windows:
        count, total = next(values), next(values)
        has = count > 0
        columns[f"n_prior_tx_{name}"] = Column(count)
        columns[f"sum_amount_{name}"] = Column(total, has)
        columns[f"mean_amount_{name}"] = Column(total / np.maximum(count, 1), has)
    longest = max(windows, key=windows.get)
    has_longest = columns[f"n_prior_tx_{longest}"].values > 0
    columns["seconds_since_prev_tx"] = Column(next(values), has_longest)
    mean_longest = np.where(has_longest, columns[f"mean_amount_{longest}"].values, 1.0)
    columns[f"amount_to_mean_{longest}"] = Column(amount / mean_longest, has_longest)
    for name in chargeback_windows:
        columns[f"n_prior_chargebacks_{name}"] = Column(next(values))
    return columns


def _merchant_features(
    user: np.ndarray, merchant: np.ndarray, ts: np.ndarray, chargeback_merchant: np.ndarray,
    chargeback_ts: np.ndarray, merchant_window: tuple[str, int], familiarity_window: tuple[str, int], reach: int,
) -> dict[str, Column]:
    name, width = merchant_window
    merchants = KeyedStream(merchant, ts, reach, chargeback_ts)
    n_tx = merchants.scatter(merchants.search(merchants.keys) - merchants.search(merchants.keys - width))
    n_cb = merchants.scatter(merchants.count_events(chargeback_merchant, chargeback_ts, width))
    n_merchants = int(merchant.max()) + 1
    del merchants
    columns = {
        f"n_merchant_tx_{name}": Column(n_tx),
        f"n_merchant_chargebacks_{name}": Column(n_cb),
        f"merchant_chargeback_rate_{name}": Column(n_cb / np.maximum(n_tx, 1), n_tx > 0),
    }
    name, width = familiarity_window
    # (user, merchant) as one integer; the stream re-numbers it when it does not fit beside the row position
    pair = user * n_merchants + merchant if int(user.max()) < 2**62 // n_merchants else None
    if pair is None:
        pair = np.unique(np.stack([user, merchant]), axis=1, return_inverse=True)[1].reshape(-1).astype(np.int64)
    pairs = KeyedStream(pair, ts, reach)
    columns[f"n_prior_user_merchant_tx_{name}"] = Column(
        pairs.scatter(pairs.search(pairs.keys) - pairs.search(pairs.keys - width))
    )
    return columns


def history_features(
    user: np.ndarray,
    merchant: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    chargeback_user: np.ndarray,
    chargeback_merchant: np.ndarray,
    chargeback_ts: np.ndarray,
    windows: dict[str, int],
    chargeback_windows: dict[str, int],
    merchant_window: tuple[str, int],
    familiarity_window: tuple[str, int],
) -> dict[str, Column]:
    """Every history feature of every row, from records known strictly before the row's time.

    The user's features and the merchant's (with the user-merchant pair's) are computed on two
    threads: numpy releases the GIL in sorts, searches and gathers.

    Args:
        user, merchant, ts, amount: One entry per transaction, in non-decreasing ``ts`` order
            (microseconds since the epoch).
        chargeback_user, chargeback_merchant, chargeback_ts: One entry per known chargeback: the
            disputed transaction's user and merchant and the chargeback's ``reported_at``.
        windows: Window name -> width (µs) of the user's transaction counts, sums and means.
        chargeback_windows: Window name -> width (µs) of the user's chargeback counts.
        merchant_window: (name, width) of the merchant's transaction and chargeback counts.
        familiarity_window: (name, width) of the user's transactions at the same merchant.

    Returns:
        Feature name -> column, in the rows' order. Counts are never NULL; every aggregate over an
        empty window is NULL.

    Raises:
        ValueError: If the rows are not in time order.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
        raise ValueError("rows must be in non-decreasing time order")
    if not len(ts):
        return _empty_columns(windows, chargeback_windows, merchant_window, familiarity_window)
    amount = np.asarray(amount, dtype=np.float64)
    chargeback_ts = np.asarray(chargeback_ts, dtype=np.int64)
    reach = max([*windows.values(), *chargeback_windows.values(), merchant_window[1], familiarity_window[1]])
    user, chargeback_user = _codes(user, chargeback_user)
    merchant, chargeback_merchant = _codes(merchant, chargeback_merchant)
    with ThreadPoolExecutor(max_workers=2) as pool:
        by_merchant = pool.submit(_merchant_features, user, merchant, ts, chargeback_merchant, chargeback_ts,
                                  merchant_window, familiarity_window, reach)
        columns = _user_features(user, ts, amount, chargeback_user, chargeback_ts, windows, chargeback_windows, reach)
        return {**columns, **by_merchant.result()}


def _empty_columns(
    windows: dict[str, int], chargeback_windows: dict[str, int], merchant_window: tuple[str, int],
    familiarity_window: tuple[str, int],
) -> dict[str, Column]:
    m, f = merchant_window[0], familiarity_window[0]
    counts = [f"n_prior_tx_{w}" for w in windows] + [f"n_prior_chargebacks_{w}" for w in chargeback_windows]
    counts += [f"n_merchant_tx_{m}", f"n_merchant_chargebacks_{m}", f"n_prior_user_merchant_tx_{f}"]
    real = [f"{kind}_amount_{w}" for w in windows for kind in ("sum", "mean")]
    real += ["seconds_since_prev_tx", f"amount_to_mean_{max(windows, key=windows.get)}", f"merchant_chargeback_rate_{m}"]
    columns = {name: Column(np.zeros(0, dtype=np.int64)) for name in counts}
    columns.update({name: Column(np.zeros(0), np.zeros(0, dtype=bool)) for name in real})
    return columns
