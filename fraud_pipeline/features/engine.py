"""The point-in-time feature engine: one sort per key, then binary searches and prefix sums.

Every history feature is a question about the rows of one key (a user, a merchant, a user at a
merchant) in a half-open window ``[t - w, t)`` before a transaction at ``t``. With the key's rows in
time order, that window is a contiguous run that ends at the key's first row at ``t`` (so rows at the
same microsecond are excluded) and starts at the first row at or after ``t - w``; both ends are one
``searchsorted`` on a composite (key, time) integer, a count is the difference of the two
positions, and a sum is the difference of a prefix sum at them (in integer cents, so exact; an amount
that is not whole cents is summed apart, per user, so one huge value cannot round away any other
row's sums). So each key costs one sort of packed integers (``np.sort``, which is vectorised) and a
binary search per window, instead of a frame search per window and row.

Chargebacks are events on the same keys at their ``reported_at`` and are counted by a binary search
of each transaction's window in the key's sorted chargeback times.

This module is pure numpy: :func:`history_features` takes arrays and returns arrays. The DuckDB side
(reading the tables, writing ``transaction_features``) is :mod:`fraud_pipeline.features.catalog`, which
also keeps the same features as portable SQL for a warehouse.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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

    Attributes:
        order: For each sorted position, the row it holds.
        keys: Per sorted row, ``(group index within its chunk) * span + (time - base)``: ascending
            within each chunk.
        chunks: ``(lo, hi)`` sorted-row ranges of consecutive groups whose keys fit in 62 bits;
            chunk ``k`` holds the groups numbered ``k * groups_per_chunk`` onwards.
        groups: Each group's key value, ascending: the position of a value here is its group number.
    """

    def __init__(self, group: np.ndarray, ts: np.ndarray, reach: int, extra_ts: np.ndarray | None = None) -> None:
        n = len(group)
        bits = max(1, (n - 1).bit_length())
        group = np.asarray(group, dtype=np.int64)
        values = None
        if n and group.max() >= 2 ** (63 - bits):
            values, group = np.unique(group, return_inverse=True)
            group = group.astype(np.int64).reshape(-1)
        # one vectorised value sort of (group, position) orders the rows by group, then time; the
        # arithmetic below runs in place, since at 10M rows every fresh array costs page faults
        packed = np.left_shift(group, bits)
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        self.order = packed & ((1 << bits) - 1)
        packed >>= bits  # now the sorted group of every row
        first_of_group = np.empty(n, dtype=bool)
        first_of_group[:1] = True
        np.not_equal(packed[1:], packed[:-1], out=first_of_group[1:])
        self.groups = packed[first_of_group] if values is None else values
        group_number = np.cumsum(first_of_group, out=packed)
        group_number -= 1
        del first_of_group

        lo, hi = (int(ts.min()), int(ts.max())) if n else (0, 0)
        if extra_ts is not None and len(extra_ts):
            lo, hi = min(lo, int(extra_ts.min())), max(hi, int(extra_ts.max()))
        self.base = lo - reach
        self.span = hi - self.base + 1
        if self.span >= _KEY_LIMIT:
            raise ValueError("the data spans more time than a composite key can hold")
        self.groups_per_chunk = max(1, _KEY_LIMIT // self.span)
        n_chunks = int(group_number[-1]) // self.groups_per_chunk + 1 if n else 0
        # group numbers are consecutive, so every chunk holds rows and its edges are binary searches
        edges = np.searchsorted(group_number, np.arange(n_chunks + 1) * self.groups_per_chunk)
        self.chunks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        keys = ts[self.order]
        keys -= self.base
        if n_chunks > 1:
            np.remainder(group_number, self.groups_per_chunk, out=group_number)
        group_number *= self.span
        keys += group_number
        self.keys = keys

    def window_start(self, width: int) -> np.ndarray:
        """Per sorted row at t: the position of its group's first row at or after ``t - width``.

        ``width`` 0 gives the group's first row at t itself, so the rows before it are exactly the
        group's rows earlier than t; the rows from ``window_start(w)`` up to it are those in ``[t - w, t)``.
        """
        found = np.empty(len(self.keys), dtype=np.int64)
        for lo, hi in self.chunks:
            keys = self.keys[lo:hi]
            found[lo:hi] = np.searchsorted(keys, keys - width if width else keys, side="left")
            if lo:
                found[lo:hi] += lo
        return found

    def count_in_window(self, width: int) -> np.ndarray:
        """Per sorted row: the group's rows in ``[t - width, t)``."""
        counts = self.window_start(width)
        np.subtract(self.window_start(0), counts, out=counts)
        return counts

    def count_events(self, event_group: np.ndarray, event_ts: np.ndarray, width: int) -> np.ndarray:
        """Per sorted row: events of the row's group with time in ``[t - width, t)``."""
        counts = np.zeros(len(self.keys), dtype=np.int64)
        if not len(event_group) or not len(self.keys):
            return counts
        position = np.searchsorted(self.groups, event_group)
        position = np.minimum(position, len(self.groups) - 1)
        known = (self.groups[position] == event_group) & (event_ts >= self.base) & (event_ts < self.base + self.span)
        number = position[known]
        event_keys = (number % self.groups_per_chunk) * self.span + (event_ts[known] - self.base)
        event_chunk = number // self.groups_per_chunk
        for chunk, (lo, hi) in enumerate(self.chunks):
            keys = np.sort(event_keys[event_chunk == chunk])
            row_keys = self.keys[lo:hi]
            found = np.searchsorted(keys, row_keys, "left")
            found -= np.searchsorted(keys, row_keys - width, "left")
            counts[lo:hi] = found
        return counts

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """Values computed in sorted row order, put back in the rows' original order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


@dataclass(frozen=True)
class Column:
    """One computed feature column in the rows' order; ``valid`` is False where the value is NULL.

    Where ``valid`` is False, ``values`` holds an arbitrary number: apply the mask (as the Arrow
    conversion does) before reading them.
    """

    values: np.ndarray
    valid: np.ndarray | None = None


def _group_numbers(stream: KeyedStream) -> np.ndarray:
    """The group number of every sorted row (its position in ``stream.groups``)."""
    numbers = np.empty(len(stream.keys), dtype=np.int64)
    for chunk, (lo, hi) in enumerate(stream.chunks):
        numbers[lo:hi] = stream.keys[lo:hi] // stream.span + chunk * stream.groups_per_chunk
    return numbers


def _segment_prefix_sums(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Per row, the sum of the earlier rows of its segment (consecutive rows with one ``segment`` value).

    A doubling scan (``log2`` of the longest segment steps) that never adds across a segment edge,
    so a value in one segment cannot round away the sums of another.
    """
    n = len(values)
    first = np.ones(n, dtype=bool)
    np.not_equal(segment[1:], segment[:-1], out=first[1:])
    offset = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    inclusive = values.astype(np.longdouble)
    step = 1
    while n and step <= offset.max():
        take = np.flatnonzero(offset >= step)
        inclusive[take] = inclusive[take] + inclusive[take - step]
        step *= 2
    exclusive = np.zeros(n, dtype=np.longdouble)
    exclusive[1:] = inclusive[:-1]
    exclusive[first] = 0
    return exclusive


@dataclass(frozen=True)
class _UserSums:
    """What every user window shares: the stream, each row's first row at t, and the amount prefix sums.

    ``cents`` (with a leading 0) is the running sum of the amounts in integer cents; a window's sum is
    the difference of two entries, exact even where the running total wraps around 64 bits, since
    every window's true sum fits. An amount that is not whole cents, or too large for that bound,
    is left out of ``cents`` and summed apart, per user, in extended precision (``segment_sums``
    over the ``apart`` rows' users): it changes the sums of its own user's windows that hold it and
    no other value anywhere.
    """

    stream: KeyedStream
    at_t: np.ndarray
    cents: np.ndarray
    cents_at_t: np.ndarray
    apart: np.ndarray | None
    segment_sums: np.ndarray | None


def _user_sums(users: Future, amount: np.ndarray) -> _UserSums:
    stream = users.result()
    at_t = stream.window_start(0)
    # a missing amount (possible only in rows being scored) adds nothing to a sum, as SQL's sum() skips NULL
    values = np.nan_to_num(amount[stream.order], nan=0.0, posinf=np.inf, neginf=-np.inf)
    n = len(values)
    # any window's sum of n amounts of at most `limit` cents fits in 63 bits
    limit = float(min(2**53, (2**63 - 1) // max(n, 1)))
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = values * 100.0
        cents = np.rint(scaled)
        off_cents = np.abs(np.subtract(scaled, cents, out=scaled), out=scaled)  # NaN for an infinite amount
        every_row = not n or (off_cents.max() < 1e-6 and max(cents.max(), -cents.min()) <= limit)
    apart = segment_sums = None
    if not every_row:
        whole = (off_cents < 1e-6) & (np.abs(cents) <= limit)
        cents[~whole] = 0
        group = _group_numbers(stream)
        apart = np.isin(group, np.unique(group[~whole]))
        segment_sums = np.zeros(n, dtype=np.longdouble)
        segment_sums[apart] = _segment_prefix_sums(np.where(whole, 0.0, values)[apart], group[apart])
    prefix = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(cents.astype(np.int64), out=prefix[1:])
    return _UserSums(stream, at_t, prefix, prefix[at_t], apart, segment_sums)


def _user_window(sums: Future, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's transaction count and amount sum over ``[t - width, t)``, in the rows' order."""
    s: _UserSums = sums.result()
    start = s.stream.window_start(width)
    cents = s.cents[start]
    np.subtract(s.cents_at_t, cents, out=cents)
    total = np.divide(cents, 100.0)
    if s.apart is not None:
        rows = np.flatnonzero(s.apart)
        # 0 exactly where the window holds none of the amounts summed apart
        total[rows] += (s.segment_sums[s.at_t[rows]] - s.segment_sums[start[rows]]).astype(np.float64)
    np.subtract(s.at_t, start, out=start)
    return s.stream.scatter(start), s.stream.scatter(total)


def _user_gap(sums: Future) -> np.ndarray:
    """Seconds since the user's latest row before t (meaningful where the user has one in the window)."""
    s: _UserSums = sums.result()
    previous = s.at_t - 1
    np.maximum(previous, 0, out=previous)
    gap = s.stream.keys[previous]
    np.subtract(s.stream.keys, gap, out=gap)  # within a group, key differences are time differences
    return s.stream.scatter(np.divide(gap, 1e6))


def _event_counts(stream: Future, event_group: np.ndarray, event_ts: np.ndarray, width: int) -> np.ndarray:
    keyed: KeyedStream = stream.result()
    return keyed.scatter(keyed.count_events(event_group, event_ts, width))


def _row_counts(stream: Future, width: int) -> np.ndarray:
    keyed: KeyedStream = stream.result()
    return keyed.scatter(keyed.count_in_window(width))


def _pair_counts(user: np.ndarray, merchant: np.ndarray, ts: np.ndarray, width: int, reach: int) -> np.ndarray:
    """The user's earlier rows at the same merchant in ``[t - width, t)``, in the rows' order."""
    n_merchants = int(merchant.max()) + 1
    # (user, merchant) as one integer; the stream re-numbers it when it does not fit beside the row position
    if int(user.max()) < 2**62 // n_merchants:
        pair = user * n_merchants
        pair += merchant
    else:
        pair = np.unique(np.stack([user, merchant]), axis=1, return_inverse=True)[1].reshape(-1).astype(np.int64)
    pairs = KeyedStream(pair, ts, reach)
    return pairs.scatter(pairs.count_in_window(width))


def _ratio(numerator: np.ndarray, denominator: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """numerator / denominator where valid, 0 elsewhere (those values are NULL in the output).

    A zero denominator on a valid row (a 30d mean of 0 when the only earlier amounts are 0 or
    missing) gives inf or NaN without a warning, as the SQL's division does.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=valid)


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

    The work is a dozen tasks (a stream per key, then a window or a count per task) run on two threads:
    numpy releases the GIL in sorts, searches and gathers. A task that needs a stream waits for it;
    the pool starts tasks in the order they are submitted and every task waits only for tasks
    submitted before it, which are therefore running or done, so the waits cannot deadlock.

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
    merchant_name, merchant_width = merchant_window
    familiarity_name, familiarity_width = familiarity_window
    with ThreadPoolExecutor(max_workers=2) as pool:
        users = pool.submit(KeyedStream, user, ts, reach, chargeback_ts)
        merchants = pool.submit(KeyedStream, merchant, ts, reach, chargeback_ts)
        sums = pool.submit(_user_sums, users, amount)
        familiarity = pool.submit(_pair_counts, user, merchant, ts, familiarity_width, reach)
        merchant_tx = pool.submit(_row_counts, merchants, merchant_width)
        merchant_cb = pool.submit(_event_counts, merchants, chargeback_merchant, chargeback_ts, merchant_width)
        by_window = {name: pool.submit(_user_window, sums, width) for name, width in windows.items()}
        gap = pool.submit(_user_gap, sums)
        user_cb = {
            name: pool.submit(_event_counts, users, chargeback_user, chargeback_ts, width)
            for name, width in chargeback_windows.items()
        }

        columns: dict[str, Column] = {}
        for name, task in by_window.items():
            count, total = task.result()
            has = count > 0
            columns[f"n_prior_tx_{name}"] = Column(count)
            columns[f"sum_amount_{name}"] = Column(total, has)
            columns[f"mean_amount_{name}"] = Column(_ratio(total, count, has), has)
        longest = max(windows, key=windows.get)
        has_longest = columns[f"sum_amount_{longest}"].valid
        columns["seconds_since_prev_tx"] = Column(gap.result(), has_longest)
        columns[f"amount_to_mean_{longest}"] = Column(
            _ratio(amount, columns[f"mean_amount_{longest}"].values, has_longest), has_longest
        )
        for name, task in user_cb.items():
            columns[f"n_prior_chargebacks_{name}"] = Column(task.result())
        n_tx, n_cb = merchant_tx.result(), merchant_cb.result()
        columns[f"n_merchant_tx_{merchant_name}"] = Column(n_tx)
        columns[f"n_merchant_chargebacks_{merchant_name}"] = Column(n_cb)
        has_tx = n_tx > 0
        columns[f"merchant_chargeback_rate_{merchant_name}"] = Column(_ratio(n_cb, n_tx, has_tx), has_tx)
        columns[f"n_prior_user_merchant_tx_{familiarity_name}"] = Column(familiarity.result())
    return columns


def _empty_columns(
    windows: dict[str, int],
    chargeback_windows: dict[str, int],
    merchant_window: tuple[str, int],
    familiarity_window: tuple[str, int],
) -> dict[str, Column]:
    m, f = merchant_window[0], familiarity_window[0]
    counts = [f"n_prior_tx_{w}" for w in windows] + [f"n_prior_chargebacks_{w}" for w in chargeback_windows]
    counts += [f"n_merchant_tx_{m}", f"n_merchant_chargebacks_{m}", f"n_prior_user_merchant_tx_{f}"]
    real = [f"{kind}_amount_{w}" for w in windows for kind in ("sum", "mean")]
    real += [
        "seconds_since_prev_tx",
        f"amount_to_mean_{max(windows, key=windows.get)}",
        f"merchant_chargeback_rate_{m}",
    ]
    columns = {name: Column(np.zeros(0, dtype=np.int64)) for name in counts}
    columns.update({name: Column(np.zeros(0), np.zeros(0, dtype=bool)) for name in real})
    return columns
