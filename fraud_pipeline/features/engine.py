"""The point-in-time feature engine: one sort per key, then binary searches and prefix sums.

:func:`history_features` computes every history feature of a :class:`~fraud_pipeline.features.spec.FeatureSpec`.
Every feature is a question about the rows of one key (a user, a merchant, a user at a merchant, a
device...) in a half-open window ``[t - w, t)`` before a transaction at ``t``. With the key's rows in
time order, that window is a contiguous run that ends at the key's first row at ``t`` (so rows at the
same microsecond are excluded) and starts at the first row at or after ``t - w``; both ends are one
``searchsorted`` on a composite (key, time) integer, a count is the difference of the two
positions, and a sum is the difference of a prefix sum at them (in integer cents, so exact; a value
that is not whole cents is summed apart, per key, so one huge value cannot round away any other
row's sums). A mean is sum / count, a standard deviation comes from prefix sums of shifted values and
their squares, a maximum from a sparse table of power-of-two spans, a distinct count from each row's
previous row with the same value, the time since the previous row from the row before the window's end.
So each key costs one sort of packed integers (``np.sort``, which is vectorised) and a binary search
per window, instead of a frame search per window and row.

Label events (chargebacks) are events on the same keys at their ``reported_at``; each event is
located once in the key's sorted rows (where it becomes known, where it leaves a window), and a
window's count is a running sum over those few positions.

At 10M rows the cost is memory traffic more than arithmetic: window starts are searched block by
block (each block's answers lie in a short run just before it), a window's end is one linear pass,
arrays of the rows' length are reused between tasks (:class:`Buffers`: a fresh 80 MB array costs its
page faults again), and a key's stream and sums are freed as soon as the last task needing them ends.

Key values of any dtype are numbered deterministically (non-negative integer ids are their own codes;
anything else in order of first appearance in time order). A row whose key value is NULL has no
history on that key: its counts are 0 and its aggregates NULL.

This module is pure numpy: it takes arrays and returns arrays. The DuckDB side (reading the tables,
writing ``transaction_features``) is :mod:`fraud_pipeline.features.table`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from threading import Lock

import numpy as np
import pandas as pd

from fraud_pipeline.features.spec import COUNT_AGGS, FeatureSpec

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


#: Idle arrays :func:`history_features` keeps for reuse (see :class:`Buffers`).
_IDLE_BUFFERS = 3

#: Rows per block of a gather that is added into an existing array (small enough to stay in the caches).
_GATHER_BLOCK = 1 << 16

#: Rows per block of :func:`_search_back`: a block's keys and its windows stay in the CPU's caches.
_SEARCH_BLOCK = 4096


def _search_back(keys: np.ndarray, width: int, out: np.ndarray) -> None:
    """``out[i]`` = the first position whose key is at least ``keys[i] - width``, for ascending ``keys``.

    The same positions as one ``np.searchsorted(keys, keys - width)``, found block by block: the
    answers never decrease along the rows and never pass the row itself, so a block's answers lie
    between its first row's answer and its end, and each block is searched in that short run only
    (a search of the whole array jumps across memory that is not in the caches at every step).
    """
    n = len(keys)
    edges = np.arange(0, n, _SEARCH_BLOCK)
    firsts = np.searchsorted(keys, keys[edges] - width, side="left")
    for a, first in zip(edges.tolist(), firsts.tolist()):
        b = min(a + _SEARCH_BLOCK, n)
        block = out[a:b]
        np.subtract(keys[a:b], width, out=block)
        block[:] = np.searchsorted(keys[first:b], block, side="left")
        block += first


class Buffers:
    """Reusable arrays of one length and 8-byte items, shared by the tasks of one computation.

    At 10M rows every fresh 80 MB array costs its page faults again (the kernel's share of the time
    was as large as numpy's): a task hands back the temporaries it is done with, and the next array
    of that length (a temporary, or a result) takes one of them instead. At most ``keep`` idle
    arrays are held, so the pool cannot hold much beyond what was in use at once.

    Args:
        n: The length of every array.
        keep: Idle arrays held at most (0: every array is fresh and nothing is kept).
    """

    def __init__(self, n: int, keep: int = 0) -> None:
        self.n, self.keep = n, keep
        self._idle: list[np.ndarray] = []
        self._lock = Lock()

    def take(self, dtype=np.int64) -> np.ndarray:
        """An array of ``n`` items of an 8-byte dtype, with arbitrary contents."""
        with self._lock:
            array = self._idle.pop() if self._idle else None
        return np.empty(self.n, dtype=dtype) if array is None else array.view(dtype)

    def give(self, *arrays: np.ndarray) -> None:
        """Hands back arrays that nothing reads any more (any array of another shape is just dropped)."""
        for array in arrays:
            if array.shape == (self.n,) and array.itemsize == 8 and array.flags.c_contiguous:
                with self._lock:
                    if len(self._idle) < self.keep:
                        self._idle.append(array)


class KeyedStream:
    """The rows grouped by a key, each group in time order, with composite (group, time) search keys.

    Args:
        group: Non-negative integer key of every row, in the rows' (time) order.
        ts: Microsecond time of every row; rows must be in non-decreasing time order.
        reach: The longest window that will be searched, in microseconds.
        extra_ts: Times of events that will be counted against this stream (e.g. chargebacks); the
            composite keys are laid out to cover them.
        buffers: Where arrays of the rows' length come from (by default fresh ones).

    Attributes:
        order: For each sorted position, the row it holds.
        keys: Per sorted row, ``(group index within its chunk) * span + (time - base)``: ascending
            within each chunk.
        chunks: ``(lo, hi)`` sorted-row ranges of consecutive groups whose keys fit in 62 bits;
            chunk ``k`` holds the groups numbered ``k * groups_per_chunk`` onwards.
        groups: Each group's key value, ascending: the position of a value here is its group number.
    """

    def __init__(
        self,
        group: np.ndarray,
        ts: np.ndarray,
        reach: int,
        extra_ts: np.ndarray | None = None,
        buffers: Buffers | None = None,
    ) -> None:
        n = len(group)
        self.buffers = buffers if buffers is not None and buffers.n == n else Buffers(n)
        bits = max(1, (n - 1).bit_length())
        group = np.asarray(group, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.int64)
        values = None
        if n and group.max() >= 2 ** (63 - bits):
            values, group = np.unique(group, return_inverse=True)
            group = group.astype(np.int64).reshape(-1)
        # one vectorised value sort of (group, position) orders the rows by group, then time; the
        # arithmetic below runs in place, since at 10M rows every fresh array costs page faults
        order = self.buffers.take()
        order[:1] = 0
        order[1:] = 1
        np.cumsum(order, out=order)  # 0, 1, 2, ... in a reused array
        packed = np.left_shift(group, bits, out=self.buffers.take())
        packed |= order
        packed.sort()
        self.order = np.bitwise_and(packed, (1 << bits) - 1, out=order)
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
        for chunk, (a, b) in enumerate(self.chunks):
            if chunk:
                group_number[a:b] -= chunk * self.groups_per_chunk  # the group's number within its chunk
        group_number *= self.span
        group_number -= self.base
        # plus each row's time, gathered a block at a time into the same array (no 80 MB temporary)
        for a in range(0, n, _GATHER_BLOCK):
            group_number[a : a + _GATHER_BLOCK] += ts.take(order[a : a + _GATHER_BLOCK])
        self.keys = group_number

    def window_start(self, width: int) -> np.ndarray:
        """Per sorted row at t: the position of its group's first row at or after ``t - width``.

        ``width`` 0 gives the group's first row at t itself, so the rows before it are exactly the
        group's rows earlier than t; the rows from ``window_start(w)`` up to it are those in ``[t - w, t)``.
        """
        if not width:
            return self._first_of_equal_keys()
        found = self.buffers.take()
        for lo, hi in self.chunks:
            _search_back(self.keys[lo:hi], width, found[lo:hi])
            if lo:
                found[lo:hi] += lo
        return found

    def _first_of_equal_keys(self) -> np.ndarray:
        """Per sorted row: the position of the first row with its composite key (its group's first row at t).

        The same as a binary search of the keys for themselves, in one linear pass: a row that starts
        a run of equal keys (or a chunk) is its own answer, every other row takes the latest start.
        """
        n = len(self.keys)
        starts = self.buffers.take()
        starts[:1] = 0
        starts[1:] = 1
        np.cumsum(starts, out=starts)  # 0, 1, 2, ... in a reused array
        new_run = np.empty(n, dtype=bool)
        new_run[:1] = True
        np.not_equal(self.keys[1:], self.keys[:-1], out=new_run[1:])
        for lo, _ in self.chunks:
            new_run[lo] = True  # keys restart at every chunk
        starts *= new_run
        del new_run
        return np.maximum.accumulate(starts, out=starts)

    def count_in_window(self, width: int) -> np.ndarray:
        """Per sorted row: the group's rows in ``[t - width, t)``."""
        counts = self.window_start(width)
        at_t = self.window_start(0)
        np.subtract(at_t, counts, out=counts)
        self.buffers.give(at_t)
        return counts

    def count_events(self, event_group: np.ndarray, event_ts: np.ndarray, width: int) -> np.ndarray:
        """Per sorted row: events of the row's group with time in ``[t - width, t)``."""
        return self.count_events_in_windows(event_group, event_ts, (width,))[0]

    def count_events_in_windows(
        self, event_group: np.ndarray, event_ts: np.ndarray, widths: tuple[int, ...]
    ) -> list[np.ndarray]:
        """:meth:`count_events` for several widths, sharing the events' keys and their search in the rows."""
        found = self.find_events(event_group, event_ts)
        return [self.count_found_events(found, width) for width in widths]

    def find_events(
        self, event_group: np.ndarray, event_ts: np.ndarray
    ) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """The events of known groups and times, located in the sorted rows, for :meth:`count_found_events`.

        Returns:
            Per chunk that holds events: (its first row, its end, the events' composite keys, and
            the first of the chunk's sorted rows each event is known before).
        """
        if not len(event_group) or not len(self.keys):
            return []
        position = np.searchsorted(self.groups, event_group)
        position = np.minimum(position, len(self.groups) - 1)
        known = (self.groups[position] == event_group) & (event_ts >= self.base) & (event_ts < self.base + self.span)
        number = position[known]
        event_keys = (number % self.groups_per_chunk) * self.span + (event_ts[known] - self.base)
        event_chunk = number // self.groups_per_chunk
        found = []
        for chunk, (lo, hi) in enumerate(self.chunks):
            keys = event_keys[event_chunk == chunk]
            if len(keys):
                found.append((lo, hi, keys, np.searchsorted(self.keys[lo:hi], keys, "right")))
        return found

    def count_found_events(self, found: list[tuple[int, int, np.ndarray, np.ndarray]], width: int) -> np.ndarray:
        """Per sorted row: the found events of the row's group with time in ``[t - width, t)``.

        The few events are searched in the many rows, not the other way round: an event with key k
        is in the window of sorted row i exactly when k < keys[i] (known before t) and not
        k + width < keys[i] (it left the window); both hold from some row on, so the count is a
        running sum of +1 where events become known and -1 where they leave.
        """
        counts = self.buffers.take()
        counts.fill(0)
        for lo, hi, keys, known_from in found:
            running = counts[lo:hi]
            np.add.at(running, known_from[known_from < hi - lo], 1)
            gone_from = np.searchsorted(self.keys[lo:hi], keys + width, "right")
            np.add.at(running, gone_from[gone_from < hi - lo], -1)
            np.cumsum(running, out=running)
        return counts

    def scatter(self, values: np.ndarray, done: bool = False) -> np.ndarray:
        """Values computed in sorted row order, put back in the rows' original order.

        ``done``: nothing reads ``values`` afterwards, so its array goes back to the buffers.
        """
        out = self.buffers.take(values.dtype) if values.itemsize == 8 else np.empty_like(values)
        out[self.order] = values
        if done:
            self.buffers.give(values)
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
class _Sums:
    """What every window of one key over one column shares: the sorted values and their prefix sums.

    ``cents`` (with a leading 0) is the running sum of the values in integer cents; a window's sum is
    the difference of two entries, exact even where the running total wraps around 64 bits, since
    every window's true sum fits. A value that is not whole cents, or too large for that bound,
    is left out of ``cents`` and summed apart, per group, in extended precision (``segment_sums``
    over the ``apart`` rows' groups): it changes the sums of its own group's windows that hold it and
    no other value anywhere. ``values`` (for maxima), ``shifted``/``shifted_squares`` (for standard
    deviations) and ``codes`` (for distinct counts) are there only when a feature needs them.
    """

    stream: KeyedStream
    at_t: np.ndarray
    cents: np.ndarray | None = None
    cents_at_t: np.ndarray | None = None
    apart: np.ndarray | None = None
    segment_sums: np.ndarray | None = None
    values: np.ndarray | None = None
    shifted: np.ndarray | None = None
    shifted_squares: np.ndarray | None = None
    codes: np.ndarray | None = None


def _sums(stream_task: Future, column: np.ndarray, kind: str, squares: bool = False, keep: bool = False) -> _Sums:
    """The key's shared window state over one column: ``kind`` ``numbers`` (float64) or ``codes`` (int64)."""
    stream = stream_task.result()
    at_t = stream.window_start(0)
    if kind == "codes":
        return _Sums(stream, at_t, codes=column[stream.order])
    buffers = stream.buffers
    n = len(column)
    # any window's sum of n values of at most `limit` cents fits in 63 bits
    limit = float(min(2**53, (2**63 - 1) // max(n, 1)))
    if not squares and not keep:
        prefix = _whole_cents_prefix(column, stream.order, limit)
        if prefix is not None:  # every value is whole cents (as amounts are): nothing else is needed
            return _Sums(stream, at_t, prefix, np.take(prefix, at_t, out=buffers.take(), mode="clip"))
    raw = column[stream.order] if keep else None
    # (every position is valid, so take()'s "clip" only spares it a temporary of its own)
    values = np.take(column, stream.order, out=buffers.take(np.float64), mode="clip") if raw is None else raw.copy()
    if np.isnan(column).any():
        # a missing value (possible only in rows being scored) adds nothing to a sum, as SQL's sum() skips NULL
        np.nan_to_num(values, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.multiply(values, 100.0, out=buffers.take(np.float64))
        cents = np.rint(scaled, out=buffers.take(np.float64))
        off_cents = np.abs(np.subtract(scaled, cents, out=scaled), out=scaled)  # NaN for an infinite value
        every_row = not n or (off_cents.max() < 1e-6 and max(cents.max(), -cents.min()) <= limit)
    apart = segment_sums = None
    if not every_row:
        whole = (off_cents < 1e-6) & (np.abs(cents) <= limit)
        cents[~whole] = 0
        group = _group_numbers(stream)
        apart = np.isin(group, np.unique(group[~whole]))
        segment_sums = np.zeros(n, dtype=np.longdouble)
        segment_sums[apart] = _segment_prefix_sums(np.where(whole, 0.0, values)[apart], group[apart])
    del off_cents
    prefix = np.zeros(n + 1, dtype=np.int64)
    whole_cents = scaled.view(np.int64)  # the scaled values are done with: their memory takes the cents
    np.copyto(whole_cents, cents, casting="unsafe")
    buffers.give(cents)
    del scaled, cents
    np.cumsum(whole_cents, out=prefix[1:])
    shifted = shifted_squares = None
    if squares:
        group = _group_numbers(stream)
        first = np.ones(n, dtype=bool)
        np.not_equal(group[1:], group[:-1], out=first[1:])
        start_of_group = np.flatnonzero(first)[np.cumsum(first) - 1]
        if every_row:
            # exact: integer cents shifted by the group's first value; prefix sums may wrap around
            # 64 bits, their differences (a window's sums) do not
            centred = whole_cents - whole_cents[start_of_group]
            with np.errstate(over="ignore"):
                squared = centred * centred
        else:
            centred = (values - values[start_of_group]).astype(np.longdouble)
            squared = centred * centred
        shifted = np.concatenate([np.zeros(1, dtype=centred.dtype), np.cumsum(centred)])
        shifted_squares = np.concatenate([np.zeros(1, dtype=centred.dtype), np.cumsum(squared)])
    buffers.give(whole_cents, values)
    del whole_cents, values
    cents_at_t = np.take(prefix, at_t, out=buffers.take(), mode="clip")
    return _Sums(stream, at_t, prefix, cents_at_t, apart, segment_sums, raw, shifted, shifted_squares)


def _whole_cents_prefix(column: np.ndarray, order: np.ndarray, limit: float) -> np.ndarray | None:
    """Running sums (with a leading 0) of ``column[order]`` in integer cents; None unless all are whole cents.

    The fast path of :func:`_sums`, with the same values: a missing value counts 0, and every value
    must be within 1e-6 of whole cents and at most ``limit`` cents in size. Done a block of rows at a
    time, so the gathered, scaled and rounded values never take arrays of the rows' length.
    """
    n = len(order)
    prefix = np.empty(n + 1, dtype=np.int64)
    prefix[0] = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(0, n, _GATHER_BLOCK):
            scaled = column.take(order[a : a + _GATHER_BLOCK])
            np.nan_to_num(scaled, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)
            scaled *= 100.0
            cents = np.rint(scaled)
            off_cents = np.abs(np.subtract(scaled, cents, out=scaled), out=scaled)  # NaN for an infinite value
            if not (off_cents.max() < 1e-6 and max(cents.max(), -cents.min()) <= limit):
                return None
            np.copyto(prefix[1 + a : 1 + a + len(cents)], cents, casting="unsafe")
    np.cumsum(prefix[1:], out=prefix[1:])
    return prefix


def _ratio(
    numerator: np.ndarray, denominator: np.ndarray, valid: np.ndarray, buffers: Buffers | None = None
) -> np.ndarray:
    """numerator / denominator where valid, 0 elsewhere (those values are NULL in the output).

    A zero denominator on a valid row (a 30d mean of 0 when the only earlier amounts are 0 or
    missing) gives inf or NaN without a warning, as the SQL's division does. The result's array
    comes from ``buffers`` when given.
    """
    if buffers is not None and buffers.n == len(numerator):
        out = buffers.take(np.float64)
        out.fill(0.0)
    else:
        out = np.zeros(len(numerator))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(numerator, denominator, out=out, where=valid)


def _window_values(
    stream_task: Future,
    at_t_task: Future | None,
    sums: dict[tuple[str, str], Future],
    width: int,
    wants: tuple[tuple[str, str | None], ...],
) -> dict[tuple[str, str | None], tuple[np.ndarray, np.ndarray | None]]:
    """Every aggregate of one key over ``[t - width, t)``, in the rows' order.

    Args:
        stream_task: The key's :class:`KeyedStream`.
        at_t_task: Per sorted row, the position of its group's first row at t (None: searched here,
            for a key with one window, so the array does not outlive the task).
        sums: (column, ``numbers`` or ``codes``) -> the key's :class:`_Sums` of that column.
        width: The window, in microseconds.
        wants: (agg, of) pairs wanted beyond the count: ``sum``, ``max``, ``std``, ``distinct``, with
            the column they read (a ``distinct`` gets the column's codes).

    Returns:
        (agg, of) -> (values, None); ``("count", None)`` is always there.
    """
    stream: KeyedStream = stream_task.result()
    at_t: np.ndarray = stream.window_start(0) if at_t_task is None else at_t_task.result()
    start = stream.window_start(width)
    out = {}
    for agg, of in wants:
        if agg == "sum":
            s: _Sums = sums[(of, "numbers")].result()
            # every position is valid, so "clip" only spares take() its own temporary
            cents = np.take(s.cents, start, out=stream.buffers.take(), mode="clip")
            np.subtract(s.cents_at_t, cents, out=cents)
            total = np.divide(cents, 100.0, out=cents.view(np.float64))  # in place: no fresh 80 MB array
            if s.apart is not None:
                rows = np.flatnonzero(s.apart)
                # 0 exactly where the window holds none of the amounts summed apart
                total[rows] += (s.segment_sums[s.at_t[rows]] - s.segment_sums[start[rows]]).astype(np.float64)
            out[("sum", of)] = stream.scatter(total, done=True)
        elif agg == "std":
            out[("std", of)] = stream.scatter(_window_std(sums[(of, "numbers")].result(), start, at_t))
        elif agg == "max":
            out[("max", of)] = stream.scatter(_window_max(sums[(of, "numbers")].result().values, start, at_t))
        elif agg == "distinct":
            out[("distinct", of)] = stream.scatter(_window_distinct(stream, sums[(of, "codes")].result(), start, at_t))
    np.subtract(at_t, start, out=start)
    out[("count", None)] = stream.scatter(start, done=True)
    if at_t_task is None:
        stream.buffers.give(at_t)
    return out


def _window_std(s: _Sums, start: np.ndarray, at_t: np.ndarray) -> np.ndarray:
    """Population standard deviation of the values in ``[start, at_t)`` (sorted positions); 0 on one value.

    From prefix sums of the values and their squares, each shifted by its group's first value: in
    integer cents where every value is whole cents (then ``n * sum(x^2) - sum(x)^2`` is formed from
    exact integers, so equal values give exactly 0), else in extended precision.
    """
    n = (at_t - start).astype(np.longdouble)
    total = s.shifted[at_t] - s.shifted[start]
    squares = s.shifted_squares[at_t] - s.shifted_squares[start]
    scale = 100.0 if s.shifted.dtype == np.int64 else 1.0
    total, squares = total.astype(np.longdouble), squares.astype(np.longdouble)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (n * squares - total * total) / (n * n)
    return (np.sqrt(np.maximum(variance, 0)) / scale).astype(np.float64)


def _window_max(values: np.ndarray, start: np.ndarray, at_t: np.ndarray) -> np.ndarray:
    """The largest value in ``[start, at_t)`` (sorted positions), by a sparse table of power-of-two spans.

    A missing value counts as no value; an empty window (or one of missing values only) gives -inf
    (NULL in the output).
    """
    length = at_t - start
    longest = int(length.max()) if len(length) else 0
    level = np.where(np.isnan(values), -np.inf, values)
    result = np.full(len(values), -np.inf)
    if not longest:
        return result
    # level k holds, at i, the largest of values[i : i + 2**k]; a window is two overlapping spans
    power = np.zeros(len(length), dtype=np.int64)
    nonzero = length > 0
    power[nonzero] = np.floor(np.log2(length[nonzero])).astype(np.int64)
    span = 1
    for k in range(longest.bit_length()):
        if k:
            shifted = np.full(len(level), -np.inf)
            shifted[: len(level) - span] = level[span:]
            level = np.maximum(level, shifted)
            span *= 2
        rows = np.flatnonzero(nonzero & (power == k))
        result[rows] = np.maximum(level[start[rows]], level[at_t[rows] - span])
    return result


def _window_distinct(stream: KeyedStream, s: _Sums, start: np.ndarray, at_t: np.ndarray) -> np.ndarray:
    """Distinct non-missing values in ``[start, at_t)`` (sorted positions).

    A row is a repeat in a window when its previous row of the same group and value is in the window
    too; a missing value is a repeat wherever it is in the window. Row ``i`` with previous ``p`` is a
    repeat in the window of every row ``q`` with ``at_t[q] > i`` and ``start[q] <= p``: since both
    ends never decrease along the sorted rows, that is one contiguous run of rows, added with a
    difference array. Distinct = rows in the window - repeats.
    """
    n = len(start)
    codes = s.codes
    group = _group_numbers(stream)
    position = np.arange(n)
    order = np.lexsort((position, codes, group))
    previous = np.full(n, -1, dtype=np.int64)
    same = (group[order[1:]] == group[order[:-1]]) & (codes[order[1:]] == codes[order[:-1]])
    previous[order[1:][same]] = order[:-1][same]
    missing = codes < 0
    previous[missing] = position[missing]
    repeat = np.flatnonzero(previous >= 0)
    first = np.searchsorted(at_t, repeat, side="right")
    last = np.searchsorted(start, previous[repeat], side="right")  # one past the last window holding p
    keep = first < last
    change = np.zeros(n + 1, dtype=np.int64)
    np.add.at(change, first[keep], 1)
    np.add.at(change, last[keep], -1)
    return (at_t - start) - np.cumsum(change[:n])


def _at_t(stream_task: Future) -> np.ndarray:
    return stream_task.result().window_start(0)


def _previous_gap(stream_task: Future, at_t_task: Future) -> np.ndarray:
    """Seconds since the group's latest row before t (meaningful where the window holds one)."""
    stream: KeyedStream = stream_task.result()
    previous = np.subtract(at_t_task.result(), 1, out=stream.buffers.take())
    np.maximum(previous, 0, out=previous)
    gap = np.take(stream.keys, previous, out=stream.buffers.take(), mode="clip")  # every position is valid
    stream.buffers.give(previous)
    np.subtract(stream.keys, gap, out=gap)  # within a group, key differences are time differences
    return stream.scatter(np.divide(gap, 1e6, out=gap.view(np.float64)), done=True)


def _event_counts(
    stream_task: Future, event_group: np.ndarray, event_ts: np.ndarray, widths: tuple[int, ...]
) -> dict[int, np.ndarray]:
    """Per width: the label events of each row's key in ``[t - width, t)``, in the rows' order."""
    keyed: KeyedStream = stream_task.result()
    found = keyed.find_events(event_group, event_ts)
    return {width: keyed.scatter(keyed.count_found_events(found, width), done=True) for width in widths}


def _one_window_count(columns: list, ts: np.ndarray, width: int, reach: int, buffers: Buffers) -> np.ndarray:
    """A key with nothing but one count: its codes and stream built, searched and dropped in one task."""
    codes, null, _ = _key_codes(columns, [np.zeros(0, dtype=np.int64)] * len(columns), buffers)
    stream = KeyedStream(codes, ts, reach, buffers=buffers)
    if len(columns) > 1:
        buffers.give(codes)  # a pair's codes are this task's own (a single column's may be the input)
    del codes
    counts = stream.scatter(stream.count_in_window(width), done=True)
    buffers.give(stream.order, stream.keys)  # the stream is this task's own and ends here
    del stream
    if null is not None:
        counts[null] = 0  # no history on a NULL key
    return counts


def _masked(values) -> tuple[np.ndarray, np.ndarray | None]:
    """The data and the NULL mask (or None) of an array that may be masked, float with NaN or objects with None."""
    if isinstance(values, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(values)
        return np.ma.getdata(values), (mask if mask.any() else None)
    values = np.asarray(values)
    if values.dtype.kind == "f":
        mask = np.isnan(values)
    elif values.dtype.kind == "O":
        mask = pd.isna(values)
    else:
        return values, None
    return values, (mask if mask.any() else None)


def _factorize(rows, events) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Non-negative integer codes of one key column for the rows and for the events, in one code space.

    Integer ids without NULLs keep today's codes (see :func:`_codes`); any other column (strings,
    floats, NULLs) is numbered in the order of first appearance, which is deterministic for rows in
    time order. A NULL row gets a code of its own (its results are overridden: no history); an event
    whose value no row has, or is NULL, gets -1 and can never fall in a row's window.

    Returns:
        (row codes, NULL mask of the rows or None, event codes).
    """
    rows, row_null = _masked(rows)
    events, event_null = _masked(events)
    if row_null is None and rows.dtype.kind in "iub" and events.dtype.kind in "iub":
        codes, event_codes = _codes(rows.astype(np.int64, copy=False), events.astype(np.int64, copy=False))
        return codes, None, event_codes
    codes, uniques = pd.factorize(rows, sort=False, use_na_sentinel=True)
    codes = codes.astype(np.int64, copy=False)
    if row_null is not None:
        codes[row_null] = -1
    null = codes < 0
    event_codes = pd.Index(uniques).get_indexer(events).astype(np.int64) if len(events) else np.zeros(0, np.int64)
    if event_null is not None:
        event_codes[event_null] = -1
    if null.any():
        codes[null] = len(uniques)
        return codes, null, event_codes
    return codes, None, event_codes


def _key_codes(
    columns: list, events: list, buffers: Buffers | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Codes of a key of one column or a pair of columns (rows and events), and the rows' NULL mask.

    A pair is ``first * width + second``; when that does not fit, both codes are first re-numbered
    densely (in order of first appearance), so it fits for any number of rows below 2**31. A pair's
    codes are a new array (from ``buffers`` when given); a single column's may be the column itself.
    """
    codes, null, event_codes = _factorize(columns[0], events[0])
    if len(columns) == 1:
        return codes, null, event_codes
    second, second_null, second_events = _factorize(columns[1], events[1])
    if second_null is not None:
        null = second_null if null is None else null | second_null
    width = int(second.max()) + 1
    if int(codes.max()) >= 2**62 // width:
        codes, event_codes = _dense(codes, event_codes)
        second, second_events = _dense(second, second_events)
        width = int(second.max()) + 1
    top = int(codes.max())
    pair = np.multiply(codes, width, out=None if buffers is None or buffers.n != len(codes) else buffers.take())
    pair += second
    known = (event_codes >= 0) & (event_codes <= top) & (second_events >= 0) & (second_events < width)
    return pair, null, np.where(known, event_codes * width + second_events, -1)


def _dense(codes: np.ndarray, event_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes re-numbered 0, 1, ... in order of first appearance; events mapped alike (-1 if unseen)."""
    dense, uniques = pd.factorize(codes, sort=False)
    mapped = pd.Index(uniques).get_indexer(event_codes) if len(event_codes) else np.zeros(0, dtype=np.int64)
    return dense.astype(np.int64), np.where(event_codes >= 0, mapped, -1).astype(np.int64)


#: numpy's switch for asking the kernel for huge pages on large arrays (None if this numpy has none).
_SET_MADVISE_HUGEPAGE = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
_small_pages_lock = Lock()
_small_pages_users = [0, True]  # computations inside _small_pages, and the setting to restore after the last


@contextmanager
def _small_pages() -> Iterator[None]:
    """numpy's huge-page hint for new arrays off while the engine runs, then back as it was.

    On a kernel that only gives huge pages to memory that asks for them (``madvise``, the usual
    setting), each fresh 80 MB array is then filled with huge pages, and where free memory is
    fragmented the kernel compacts it first, inside the page fault: at 10M rows that was 3-5 s of
    kernel time per run (of 10-12 s of CPU), against about 1.3 s with ordinary pages and a little
    more user time. Values are not affected. The setting is process-wide, so overlapping
    computations (in threads) restore it only when the last one ends.
    """
    if _SET_MADVISE_HUGEPAGE is None:
        yield
        return
    with _small_pages_lock:
        if not _small_pages_users[0]:
            _small_pages_users[1] = _SET_MADVISE_HUGEPAGE(False)
        _small_pages_users[0] += 1
    try:
        yield
    finally:
        with _small_pages_lock:
            _small_pages_users[0] -= 1
            if not _small_pages_users[0]:
                _SET_MADVISE_HUGEPAGE(_small_pages_users[1])


def history_features(
    spec: FeatureSpec,
    columns: Mapping[str, np.ndarray],
    ts: np.ndarray,
    label_columns: Mapping[str, np.ndarray],
    label_ts: np.ndarray,
) -> dict[str, Column]:
    """Every history feature of the spec for every row, from records known strictly before the row's time.

    The work is a set of tasks (a stream per key, sums per key and column, then a window per key and
    window, counts of label events) run on two threads: numpy releases the GIL in sorts, searches and
    gathers. A task that needs another's result waits for it; the pool starts tasks in the order they
    are submitted and every task waits only for tasks submitted before it, which are therefore
    running or done, so the waits cannot deadlock.

    Args:
        spec: Which features to compute.
        columns: Transaction column -> one entry per transaction, in non-decreasing ``ts`` order: every
            key column and every ``of`` column of the spec. Any dtype; NULLs as a masked array, NaN or None.
        ts: Each transaction's time, microseconds since the epoch.
        label_columns: Key column -> the disputed transaction's value, one entry per known label event
            (chargeback); needed for the key columns of keys with ``label_count``/``label_rate`` features.
        label_ts: Each label event's knowledge time (``reported_at``), microseconds since the epoch.

    Returns:
        Feature name -> column, in the rows' order. Counts are never NULL; every other aggregate is
        NULL exactly where its partner count is 0 (and on every row whose key is NULL).

    Raises:
        ValueError: If the rows are not in time order.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
        raise ValueError("rows must be in non-decreasing time order")
    if not len(ts):
        return _empty_columns(spec)
    label_ts = np.asarray(label_ts, dtype=np.int64)
    reach = max(f.window_us for f in spec.aggregates)
    plan = _plan(spec)
    with _small_pages(), ThreadPoolExecutor(max_workers=2) as pool:
        # only the final results' futures come back: a stream, its sums and positions are then held
        # by the tasks that still need them alone, and freed as soon as the last of them is done
        buffers = Buffers(len(ts), keep=_IDLE_BUFFERS)
        tasks, gaps, label_counts, nulls = _submit(
            pool, spec, plan, columns, ts, label_columns, label_ts, reach, buffers
        )
        return _assemble(spec, columns, tasks, gaps, label_counts, nulls, buffers)


def _submit(pool, spec, plan, columns, ts, label_columns, label_ts, reach, buffers) -> tuple[dict, dict, dict, dict]:
    """Submits every task of :func:`history_features`; returns the futures of the results it assembles.

    Returns:
        (the window tasks by (key, width), the gap tasks by key, the label counts by key, the keys' NULL masks).
    """
    nulls, streams, at_ts, events = {}, {}, {}, {}
    for key, needs in plan.items():
        if needs.single_count:
            continue  # see _one_window_count
        key_columns = spec.keys[key]
        labels = [label_columns.get(c, np.zeros(0, dtype=np.int64)) for c in key_columns] if needs.labels else None
        code, null, event_code = _key_codes(
            [columns[c] for c in key_columns], labels or [np.zeros(0, dtype=np.int64)] * len(key_columns)
        )
        nulls[key], events[key] = null, event_code
        streams[key] = pool.submit(KeyedStream, code, ts, reach, label_ts if needs.labels else None, buffers)
        del code
    sums = {}
    for key, needs in plan.items():
        for of, kind in needs.sums:
            values = _of_values(columns[of], kind)
            squares, keep = of in needs.squares_of, of in needs.max_of
            sums[(key, of, kind)] = pool.submit(_sums, streams[key], values, kind, squares, keep)
    tasks = {}
    # a key with one count goes early, while few results are held: its stream is built and dropped
    for key, needs in plan.items():
        if needs.single_count:
            ((width, _),) = needs.windows.items()
            key_columns = [columns[c] for c in spec.keys[key]]
            tasks[(key, width)] = pool.submit(_one_window_count, key_columns, ts, width, reach, buffers)
    label_counts, gaps = {}, {}
    # keys with sums (the user: a stream plus its sums, the largest state) first, keys with counts
    # only (the merchant) last, each key's tasks together: what is still held beside the results near
    # the end is then a small state, and the last tasks are short ones that share the threads evenly
    for key, needs in sorted(plan.items(), key=lambda item: not item[1].sums):
        if needs.single_count:
            continue
        first_sums = next((sums[(key, *entry)] for entry in needs.sums), None)
        if first_sums is not None:
            at_ts[key] = pool.submit(lambda task: task.result().at_t, first_sums)
        elif len(needs.windows) > 1 or needs.gap:
            at_ts[key] = pool.submit(_at_t, streams[key])
        else:
            at_ts[key] = None
        for width, wants in needs.windows.items():
            key_sums = {entry: sums[(key, *entry)] for entry in needs.sums}
            tasks[(key, width)] = pool.submit(_window_values, streams[key], at_ts[key], key_sums, width, wants)
        if needs.gap:
            gaps[key] = pool.submit(_previous_gap, streams[key], at_ts[key])
        if needs.label_windows:
            label_counts[key] = pool.submit(_event_counts, streams[key], events[key], label_ts, needs.label_windows)
    return tasks, gaps, label_counts, nulls


def _assemble(spec, columns, tasks, gaps, label_counts, nulls, buffers: Buffers) -> dict[str, Column]:
    """The spec's columns from the finished tasks, in spec order, with NULL keys overridden.

    The features are taken up in the order their windows were submitted (so roughly the order they
    finish): the ratios of a window that finished early are computed while later tasks still run,
    instead of all after the last one.
    """
    results = {}
    out: dict[str, Column] = {}
    submitted = {window: i for i, window in enumerate(tasks)}
    for f in sorted(spec.aggregates, key=lambda f: submitted.get((f.key, f.window_us), len(submitted))):
        task = tasks.get((f.key, f.window_us))
        if task is not None and (f.key, f.window_us) not in results:
            value = task.result()
            results[(f.key, f.window_us)] = value if isinstance(value, dict) else {("count", None): value}
        window = results.get((f.key, f.window_us), {})
        count = window.get(("count", None))
        if count is not None and ("has", None) not in window:
            window[("has", None)] = count > 0  # shared by every aggregate of the window
        has = window.get(("has", None))
        if f.agg == "count":
            column = Column(count)
        elif f.agg == "label_count":
            column = Column(label_counts[f.key].result()[f.window_us])
        elif f.agg == "sum":
            column = Column(window[("sum", f.of)], has)
        elif f.agg == "mean":
            column = Column(_mean(window, f.of, count, has, buffers), has)
        elif f.agg == "ratio_to_mean":
            mean = _mean(window, f.of, count, has, buffers)
            values = np.asarray(_masked(columns[f.of])[0], dtype=np.float64)
            column = Column(_ratio(values, mean, has, buffers), has)
        elif f.agg == "time_since_previous":
            column = Column(gaps[f.key].result(), has)
        elif f.agg == "label_rate":
            column = Column(_ratio(label_counts[f.key].result()[f.window_us], count, has, buffers), has)
        elif f.agg == "max":
            values = window[("max", f.of)]
            column = Column(values, has & (values > -np.inf))  # a window of missing values only has no maximum
        else:  # std, distinct
            column = Column(window[(f.agg, f.of)], has)
        null = nulls.get(f.key)
        if null is not None:
            column = _no_history(column, null)
        out[f.name] = column
    return {f.name: out[f.name] for f in spec.aggregates}


def _mean(window: dict, of: str, count: np.ndarray, has: np.ndarray, buffers: Buffers) -> np.ndarray:
    """The window's mean of ``of``, computed once (a mean feature and a ratio to it share it)."""
    if ("mean", of) not in window:
        window[("mean", of)] = _ratio(window[("sum", of)], count, has, buffers)
    return window[("mean", of)]


def _no_history(column: Column, null: np.ndarray) -> Column:
    """A column with the NULL-key rows set to no history: a count of 0, an aggregate NULL."""
    if column.valid is None:
        values = column.values.copy()
        values[null] = 0
        return Column(values)
    return Column(column.values, column.valid & ~null)


@dataclass
class _KeyNeeds:
    """What one key's features need: per window the (agg, of) pairs, sums, label windows, the gap."""

    windows: dict[int, tuple[tuple[str, str | None], ...]]
    sums: tuple[tuple[str, str], ...]
    squares_of: frozenset[str]
    max_of: frozenset[str]
    label_windows: tuple[int, ...]
    gap: bool

    @property
    def labels(self) -> bool:
        return bool(self.label_windows)

    @property
    def single_count(self) -> bool:
        """Nothing but one count: the key's stream is built and dropped inside one task."""
        return len(self.windows) == 1 and not self.sums and not self.labels and not self.gap


_WANT = {"sum": "sum", "mean": "sum", "ratio_to_mean": "sum", "std": "std", "max": "max", "distinct": "distinct"}


def _plan(spec: FeatureSpec) -> dict[str, _KeyNeeds]:
    """Per key (in spec order): which windows, sums and label counts its features need."""
    plan = {}
    for key in dict.fromkeys(f.key for f in spec.aggregates):
        features = [f for f in spec.aggregates if f.key == key]
        windows: dict[int, list] = {}
        for f in features:
            if f.agg in ("label_count",):
                continue
            wants = windows.setdefault(f.window_us, [])
            if f.agg in _WANT and (_WANT[f.agg], f.of) not in wants:
                wants.append((_WANT[f.agg], f.of))
        sums = tuple(
            dict.fromkeys((f.of, "codes" if f.agg == "distinct" else "numbers") for f in features if f.agg in _WANT)
        )
        plan[key] = _KeyNeeds(
            windows={w: tuple(wants) for w, wants in windows.items()},
            sums=sums,
            squares_of=frozenset(f.of for f in features if f.agg == "std"),
            max_of=frozenset(f.of for f in features if f.agg == "max"),
            label_windows=tuple(dict.fromkeys(f.window_us for f in features if f.agg in ("label_count", "label_rate"))),
            gap=any(f.agg == "time_since_previous" for f in features),
        )
    return plan


def _of_values(values, kind: str) -> np.ndarray:
    """A column as float64 values (NaN for NULL) for sums, or as codes (-1 for NULL) for distinct counts."""
    data, null = _masked(values)
    if kind == "codes":
        codes = pd.factorize(data, sort=False, use_na_sentinel=True)[0].astype(np.int64)
        if null is not None:
            codes[null] = -1
        return codes
    numbers = np.asarray(data, dtype=np.float64)
    if null is not None:
        numbers = np.where(null, np.nan, numbers)
    return numbers


def _empty_columns(spec: FeatureSpec) -> dict[str, Column]:
    columns = {}
    for f in spec.aggregates:
        if f.agg in COUNT_AGGS:
            columns[f.name] = Column(np.zeros(0, dtype=np.int64))
        elif f.agg == "distinct":
            columns[f.name] = Column(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
        else:
            columns[f.name] = Column(np.zeros(0), np.zeros(0, dtype=bool))
    return columns
