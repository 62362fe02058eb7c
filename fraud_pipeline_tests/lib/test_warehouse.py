"""Reading query results into pandas."""

import duckdb
import pandas as pd
import pytest

from fraud_pipeline.lib.warehouse import fetch_frame, replace_tables


def test_fetch_frame_gives_what_df_gives_even_after_an_unfinished_result():
    con = duckdb.connect()
    con.execute("""
        CREATE TABLE t AS SELECT i AS id, CASE WHEN i % 3 = 0 THEN NULL ELSE i * 1.5 END AS x,
               CASE WHEN i % 4 = 0 THEN NULL ELSE 'v' || (i % 5) END AS label, TIMESTAMP '2025-01-01' + to_seconds(i) AS at,
               i % 2 = 0 AS flag, CAST(i AS INTEGER) AS small
        FROM range(1000) AS r(i)
    """)
    con.execute("SELECT count(*) FROM t").fetchone()  # leaves the result unfinished
    query = "SELECT * FROM t WHERE id >= $low ORDER BY id"
    got = fetch_frame(con, query, {"low": 10})
    expected = con.execute(query, {"low": 10}).df()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) == 990


def _row_groups(batches) -> int:
    import pyarrow as pa

    table = pa.Table.from_batches(batches)
    with duckdb.connect() as con:
        replace_tables(con, {"stored": "SELECT * FROM t"}, sources={"t": table})
        return con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('stored')").fetchall()[0][0]


def test_tables_in_whole_row_groups_store_without_partial_groups():
    import numpy as np
    import pyarrow as pa

    from fraud_pipeline.lib.warehouse import ROW_GROUP_ROWS, in_row_groups

    n = 10 * ROW_GROUP_ROWS - 1000
    table = pa.table({"a": np.arange(n), "b": np.arange(n) * 0.5})
    assert _row_groups(in_row_groups(table, groups_per_batch=1).to_batches()) == 10
    # batches of 2^17 rows, as the features once were: a partial row group behind every batch (19 here)
    assert _row_groups(table.to_batches(max_chunksize=1 << 17)) > 15
    batched = in_row_groups(table)
    assert batched.equals(table) and all(b.num_rows % ROW_GROUP_ROWS == 0 for b in batched.to_batches()[:-1])


# --- a night is one unit: stamps, readers that refuse a mixed set, a full disk ---


def test_every_replaced_table_is_stamped_with_its_run_inside_the_same_transaction():
    from datetime import datetime

    from fraud_pipeline.lib.warehouse import RunStamp, set_run_stamp, table_stamps

    con = duckdb.connect()
    set_run_stamp(RunStamp(datetime(2025, 7, 1), "run-1"))
    try:
        replace_tables(con, {"a": "SELECT 1 AS x", "b": "SELECT 2 AS x"})
    finally:
        set_run_stamp(None)
    stamps = table_stamps(con, ["a", "b"])
    assert {t: (s.as_of, s.run_id) for t, s in stamps.items()} == {
        "a": (datetime(2025, 7, 1), "run-1"),
        "b": (datetime(2025, 7, 1), "run-1"),
    }
    assert stamps["a"].seq == stamps["b"].seq
    try:
        replace_tables(con, {"a": "SELECT 3 AS x", "c": "SELECT * FROM missing_table"}, stamp=RunStamp(None, "run-2"))
    except duckdb.Error:
        pass
    assert table_stamps(con, ["a"])["a"].run_id == "run-1", "a failed write changes no stamp"
    assert con.execute("SELECT x FROM a").fetchall() == [(1,)]


def test_a_reader_refuses_features_that_do_not_belong_to_the_transactions():
    from datetime import datetime

    from fraud_pipeline.lib.warehouse import MixedNight, RunStamp, require_one_night

    con = duckdb.connect()
    night_a, night_b = RunStamp(datetime(2025, 6, 1), "run-a"), RunStamp(datetime(2025, 7, 1), "run-b")
    replace_tables(con, {"transactions": "SELECT 1 AS id"}, stamp=night_a)
    replace_tables(con, {"transaction_features": "SELECT 1 AS id"}, stamp=night_a)
    require_one_night(con, "transaction_features", ["transactions"])
    # night B rewrote the transactions, then ran out of disk before the features
    replace_tables(con, {"transactions": "SELECT 2 AS id"}, stamp=night_b)
    with pytest.raises(MixedNight) as mixed:
        require_one_night(con, "transaction_features", ["transactions"])
    message = str(mixed.value)
    assert (
        "transaction_features (as_of 2025-06-01, run run-a" in message and "transactions (as_of 2025-07-01" in message
    )
    assert "\n" not in message
    replace_tables(con, {"transaction_features": "SELECT 2 AS id"}, stamp=night_b)
    require_one_night(con, "transaction_features", ["transactions"])
    # the same night rebuilt by another run: the reader needs the derived table after its input
    replace_tables(con, {"transactions": "SELECT 2 AS id"}, stamp=RunStamp(datetime(2025, 7, 1), "run-c"))
    with pytest.raises(MixedNight):
        require_one_night(con, "transaction_features", ["transactions"])


def _whole_table(con) -> list:
    return con.execute("SELECT count(*), sum(i), min(s), max(s) FROM kept").fetchall()


def test_a_full_disk_is_one_line_naming_the_file_and_every_table_stays_whole(tmp_path):
    from fraud_pipeline.lib.warehouse import WarehouseFull
    from fraud_pipeline_tests.small_disk import fill, small_filesystem

    with small_filesystem(tmp_path / "disk", "6m") as disk:
        path = disk / "warehouse.duckdb"
        con = duckdb.connect(str(path))
        replace_tables(con, {"kept": "SELECT range AS i, md5(range::VARCHAR) AS s FROM range(20000)"})
        before = _whole_table(con)
        # full in the middle of a write
        with pytest.raises(WarehouseFull) as full:
            replace_tables(
                con,
                {
                    "kept": "SELECT 1 AS i, 'x' AS s",
                    "big": "SELECT range AS i, md5(range::VARCHAR) || md5((range + 1)::VARCHAR) AS s FROM range(3000000)",
                },
            )
        message = str(full.value)
        assert message.startswith(f"{path}: No space left on device while replacing kept, big") and "\n" not in message
        con.close()
        with duckdb.connect(str(path)) as reopened:
            assert _whole_table(reopened) == before
            assert "big" not in {r[0] for r in reopened.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        # full before the run starts: the real cause is the headline, not the failed rollback
        fill(disk)
        con = duckdb.connect(str(path))
        with pytest.raises(WarehouseFull, match="No space left on device") as full:
            replace_tables(con, {"kept": "SELECT range AS i, 'y' AS s FROM range(200000)"})
        assert "cannot rollback" not in str(full.value)
        con.close()
        with duckdb.connect(str(path)) as reopened:
            assert _whole_table(reopened) == before


def test_glob_characters_in_a_path_are_read_literally(tmp_path):
    from fraud_pipeline.lib.warehouse import literal_path

    folder = tmp_path / "in[1]*"
    folder.mkdir()
    for name, value in {"t_a.csv": 1, "t_b.csv": 2, "t_*.csv": 3, "t_[ab].csv": 4, "t_?.csv": 5}.items():
        (folder / name).write_text(f"x\n{value}\n")
    con = duckdb.connect()
    for name, value in {"t_*.csv": 3, "t_[ab].csv": 4, "t_?.csv": 5, "t_a.csv": 1}.items():
        assert con.execute("SELECT x FROM read_csv(?)", [literal_path(folder / name)]).fetchall() == [(value,)]
    with pytest.raises(ValueError, match="backslash"):
        literal_path(folder / "t_\\*.csv")
