"""The engine's fast paths give exactly what the plain searches they replace give.

The engine finds a window's start by blocked binary searches, its end by one linear pass, and the
label events of a window by locating the few events in the many rows; it reuses arrays between
tasks. Each is compared here with the straightforward computation it stands for, on keys with ties,
several chunks and events on the window edges.
"""

import tracemalloc
from concurrent.futures import Future

import numpy as np
import pytest

from fraud_pipeline.features import engine
from fraud_pipeline.features.engine import Buffers, KeyedStream, history_features
from fraud_pipeline.features.spec import default_spec

HOUR_US = 3600 * 10**6


def ascending_keys_with_ties(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.choice([0, 0, 1, 5, HOUR_US], n))


@pytest.mark.parametrize("width", [1, 5, HOUR_US, 10 * HOUR_US, 10**18])
def test_a_blocked_search_back_equals_one_binary_search(monkeypatch, width):
    monkeypatch.setattr(engine, "_SEARCH_BLOCK", 7)  # many blocks, and a last one that is short
    keys = ascending_keys_with_ties(1, 1_000)
    found = np.empty(len(keys), dtype=np.int64)
    engine._search_back(keys, width, found)
    assert np.array_equal(found, np.searchsorted(keys, keys - width, side="left"))


def stream_in_chunks(monkeypatch, seed: int = 2, n: int = 3_000):
    """A stream of 40 users over 10 days whose composite keys need several chunks, and its inputs."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 10 * 24, n)) * HOUR_US  # whole hours: many rows at the same time
    group = rng.integers(0, 40, n)
    monkeypatch.setattr(engine, "_KEY_LIMIT", 2**43)  # seven users per chunk for this span
    stream = KeyedStream(group, ts, 24 * HOUR_US, extra_ts=ts + 48 * HOUR_US)
    assert len(stream.chunks) > 3
    return stream, group, ts


def test_the_first_row_at_t_equals_a_binary_search_of_each_chunk(monkeypatch):
    stream, _, _ = stream_in_chunks(monkeypatch)
    expected = np.concatenate(
        [np.searchsorted(stream.keys[lo:hi], stream.keys[lo:hi], side="left") + lo for lo, hi in stream.chunks]
    )
    assert np.array_equal(stream.window_start(0), expected)


def test_event_counts_equal_counting_every_event_of_the_group_in_the_window(monkeypatch):
    stream, group, ts = stream_in_chunks(monkeypatch)
    rng = np.random.default_rng(3)
    picked = rng.choice(len(ts), 400, replace=False)
    event_group = np.concatenate([group[picked], [999, 999]])  # a group no row has
    event_ts = np.concatenate([ts[picked] + rng.integers(0, 30, picked.size) * HOUR_US, ts[:2]])
    event_ts[:50] = ts[picked[:50]]  # some events exactly at a row's time (not known before it)
    widths = (HOUR_US, 24 * HOUR_US)
    counts = stream.count_events_in_windows(event_group, event_ts, widths)
    sorted_group, sorted_ts = group[stream.order], ts[stream.order]
    for width, count in zip(widths, counts):
        expected = [
            int(np.sum((event_group == g) & (event_ts >= t - width) & (event_ts < t)))
            for g, t in zip(sorted_group, sorted_ts)
        ]
        assert count.tolist() == expected


def test_buffers_hand_back_what_was_given_up_to_their_limit():
    buffers = Buffers(10, keep=1)
    first = buffers.take()
    buffers.give(first, buffers.take(), np.zeros(3), np.zeros(10, dtype=np.int32))
    again = buffers.take(np.float64)
    assert again.dtype == np.float64 and np.shares_memory(again, first)  # the first one given came back
    assert not np.shares_memory(buffers.take(), first)  # nothing else was kept
    assert not np.shares_memory(Buffers(10).take(), Buffers(10).take())


def test_no_reuse_gives_the_same_features(monkeypatch):
    rng = np.random.default_rng(4)
    n = 5_000
    ts = np.sort(rng.integers(0, 40 * 24 * 60, n)) * 60 * 10**6
    columns = {"user_id": rng.integers(0, 200, n), "merchant_id": rng.integers(0, 30, n), "amount": rng.random(n)}
    picked = rng.choice(n, 100, replace=False)
    labels = {"user_id": columns["user_id"][picked], "merchant_id": columns["merchant_id"][picked]}
    label_ts = ts[picked] + 3 * HOUR_US
    reused = history_features(default_spec(), columns, ts, labels, label_ts)
    monkeypatch.setattr(engine, "_IDLE_BUFFERS", 0)
    fresh = history_features(default_spec(), columns, ts, labels, label_ts)
    for name, column in fresh.items():
        assert np.array_equal(column.values, reused[name].values, equal_nan=True), name
        assert (column.valid is None) == (reused[name].valid is None), name
        if column.valid is not None:
            assert np.array_equal(column.valid, reused[name].valid), name


class InlineExecutor:
    """Runs each task as it is submitted (the engine's tasks wait only for earlier ones): a fixed timeline."""

    def __init__(self, max_workers=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


def test_the_engine_holds_little_beyond_its_results(monkeypatch):
    """A key's stream and sums are freed when their last task ends, not held until every result is in.

    Holding them to the end (as the engine once did) peaked at 1.28 times the results here.
    """
    monkeypatch.setattr(engine, "ThreadPoolExecutor", InlineExecutor)
    rng = np.random.default_rng(5)
    n = 400_000
    ts = np.sort(rng.integers(0, 180 * 24 * 3600, n)) * 10**6
    columns = {
        "user_id": rng.integers(0, 16_000, n),
        "merchant_id": rng.integers(0, 800, n),
        "amount": np.round(rng.lognormal(3, 1, n), 2),
    }
    picked = rng.choice(n, 2_000, replace=False)
    labels = {"user_id": columns["user_id"][picked], "merchant_id": columns["merchant_id"][picked]}
    tracemalloc.start()
    try:
        result = history_features(default_spec(), columns, ts, labels, ts[picked] + 24 * HOUR_US)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(c.values.nbytes + (0 if c.valid is None else c.valid.nbytes) for c in result.values())
    assert peak < 1.1 * held


def test_the_read_is_combined_into_one_chunk_per_column_with_its_values_and_nulls():
    import pyarrow as pa

    from fraud_pipeline.features.table import _in_one_chunk, _numpy

    read = pa.Table.from_batches(
        [
            pa.record_batch({"id": [1, 2], "mcc": ["5411", None], "amount": [1.5, None]}),
            pa.record_batch({"id": [3], "mcc": ["5812"], "amount": [2.0]}),
        ]
    ).replace_schema_metadata({b"source": b"read"})
    combined = _in_one_chunk(read)
    assert combined.equals(read) and combined.schema.metadata == read.schema.metadata
    assert {combined[name].num_chunks for name in combined.column_names} == {1}
    ids = _numpy(combined["id"])
    assert np.shares_memory(ids, combined["id"].chunk(0).buffers()[1])  # the engine reads it without a copy


def test_whole_cent_sums_block_by_block_equal_one_running_sum_or_step_aside(monkeypatch):
    monkeypatch.setattr(engine, "_GATHER_BLOCK", 7)
    rng = np.random.default_rng(6)
    amounts = np.round(rng.lognormal(3, 1, 100), 2)
    amounts[[5, 50]] = np.nan  # missing: adds nothing
    order = rng.permutation(100)
    prefix = engine._whole_cents_prefix(amounts, order, limit=1e12)
    cents = np.rint(np.nan_to_num(amounts[order]) * 100).astype(np.int64)
    assert prefix.tolist() == [0, *np.cumsum(cents).tolist()]
    for odd in (0.001, np.inf, 1e11):  # off-cent, infinite, beyond the bound: the general path sums those
        changed = amounts.copy()
        changed[order[-1]] = odd  # in the last, short block
        assert engine._whole_cents_prefix(changed, order, limit=1e12) is None


def test_the_huge_page_hint_is_off_while_the_engine_runs_and_restored_after(monkeypatch):
    setting = {"huge": True, "seen": []}

    def set_hint(enabled):
        previous, setting["huge"] = setting["huge"], bool(enabled)
        return previous

    original_sums = engine._sums

    def sums_seeing_the_hint(*args):
        setting["seen"].append(setting["huge"])
        return original_sums(*args)

    monkeypatch.setattr(engine, "_SET_MADVISE_HUGEPAGE", set_hint)
    monkeypatch.setattr(engine, "_sums", sums_seeing_the_hint)
    ts = np.arange(50) * HOUR_US
    columns = {"user_id": np.arange(50) % 3, "merchant_id": np.arange(50) % 2, "amount": np.ones(50)}
    labels = {"user_id": np.zeros(1, dtype=np.int64), "merchant_id": np.zeros(1, dtype=np.int64)}
    history_features(default_spec(), columns, ts, labels, np.array([ts[10]]))
    assert setting["seen"] == [False] and setting["huge"] is True
