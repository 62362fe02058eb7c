"""Reading query results into pandas."""

import duckdb
import pandas as pd

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
