"""Reading query results into pandas."""

import duckdb
import pandas as pd

from fraud_pipeline.core.warehouse import fetch_frame


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
