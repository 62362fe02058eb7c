"""Real-world inputs: string ids, extra columns, absent optional columns and users without creation dates."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pytest

from fraud_pipeline.ingestion.known_tables import build_known_tables
from fraud_pipeline.ingestion.landing import FileRejected, land_day, partition_start, scan_input_folder
from fraud_pipeline.lib.schema import encode_id, encode_id_sql
from fraud_pipeline_tests.ingestion.test_landing import csv_text, write_day

DAY = date(2018, 4, 2)
AS_OF = datetime(2018, 4, 10)
TX_HEADER = "transaction_id,user_id,merchant_id,event_time,amount,device_id"
TX = [
    "TX-1,C001,T01,2018-04-02T08:00:00Z,25.50,D9",
    "TX-2,C001,T02,2018-04-02T09:00:00Z,12.00,D9",
    "TX-3,C002,T01,2018-04-02T10:00:00Z,8.00,",
]


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def land(con, root, day=DAY, **files):
    return land_day(con, day, write_day(root, day, **files))


@pytest.mark.parametrize("text", ["C001", "TX-1", "ü-ß ", "12345678901234567890", "0", "-7", "+42", "007", "a'b\"c"])
def test_an_id_gets_the_same_key_in_python_and_in_sql(text):
    with duckdb.connect() as c:
        in_sql = c.execute(f"SELECT {encode_id_sql('$text')}", {"text": text}).fetchone()[0]
    assert in_sql == encode_id(text)
    assert 0 <= encode_id(text) < 2**63 or text in ("-7",)


def test_integer_ids_stay_integers_and_string_ids_hash_apart():
    assert (encode_id("42"), encode_id("+42"), encode_id("007"), encode_id("-7")) == (42, 42, 7, -7)
    assert encode_id("C001") != encode_id("C002")
    assert encode_id("C001") == encode_id("C001")


def test_string_ids_are_encoded_at_landing_with_the_original_kept(tmp_path, con):
    report = land(
        con,
        tmp_path,
        transactions_csv=csv_text(TX_HEADER, TX),
        chargebacks_csv=csv_text("transaction_id,reported_at", ["TX-1,2018-04-02T20:00:00Z"]),
        users_csv=csv_text("user_id,region", ["C001,north", "C002,"]),
    )
    assert report.rows_in == report.rows_loaded == 6
    rows = con.execute(
        "SELECT transaction_id, transaction_id_original, user_id, user_id_original, merchant_id_original, device_id "
        "FROM landing_transactions ORDER BY row_number"
    ).fetchall()
    assert rows[0] == (encode_id("TX-1"), "TX-1", encode_id("C001"), "C001", "T01", "D9")
    assert rows[2][-1] is None
    accounting = {a.kind: a for a in build_known_tables(con, AS_OF)}
    assert all(a.unaccounted == 0 and a.rows_quarantined == 0 for a in accounting.values())
    tx = con.execute("SELECT * FROM transactions ORDER BY event_time").df()
    assert list(tx.columns) == [
        "transaction_id",
        "user_id",
        "merchant_id",
        "event_time",
        "amount",
        "channel",
        "country",
        "mcc",
        "transaction_id_original",
        "user_id_original",
        "merchant_id_original",
        "device_id",
    ]
    assert str(tx["user_id"].dtype) == "int64" and tx["channel"].isna().all()
    assert list(tx["transaction_id_original"]) == ["TX-1", "TX-2", "TX-3"]
    assert con.execute("SELECT transaction_id FROM chargebacks").fetchall() == [(encode_id("TX-1"),)]
    users = dict(con.execute("SELECT user_id, created_at FROM users").fetchall())
    assert users == {encode_id("C001"): datetime(2018, 4, 2, 8), encode_id("C002"): datetime(2018, 4, 2, 10)}
    assert accounting["users"].derived_rows == 2, "created_at unknown: the account age starts at the first transaction"


def test_integer_only_files_get_no_original_columns_in_the_known_tables(tmp_path, con):
    land(
        con,
        tmp_path,
        transactions_csv=csv_text(
            "transaction_id,user_id,merchant_id,event_time,amount", ["1,10,100,2018-04-02T08:00:00Z,5"]
        ),
    )
    build_known_tables(con, AS_OF)
    names = [row[0] for row in con.execute("DESCRIBE transactions").fetchall()]
    assert names == ["transaction_id", "user_id", "merchant_id", "event_time", "amount", "channel", "country", "mcc"]


def test_a_hash_collision_refuses_the_day_in_one_line_and_writes_nothing(tmp_path, con):
    # a string whose key has at most 18 digits: written as an integer elsewhere, that key is taken twice
    name = next(f"C{i:03d}" for i in range(1000) if encode_id(f"C{i:03d}") < 10**18)
    clash = encode_id(name)
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, [f"TX-1,{name},T01,2018-04-02T08:00:00Z,5,"]))
    before = con.execute("SELECT count(*) FROM landing_transactions").fetchone()[0]
    with pytest.raises(FileRejected) as refused:
        land(
            con,
            tmp_path,
            day=date(2018, 4, 3),
            transactions_csv=csv_text(TX_HEADER, [f"TX-9,{clash},T01,2018-04-03T08:00:00Z,5,"]),
        )
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(
        f"{tmp_path / '2018-04-03' / 'transactions.csv'}: row 1, column user_id: '{clash} (written as an integer)' "
        f"and '{name}' get the same integer key {clash}"
    ), message
    assert "hash collision" in message
    assert con.execute("SELECT count(*) FROM landing_transactions").fetchone()[0] == before
    assert con.execute("SELECT count(*) FROM landing_files WHERE day = '2018-04-03'").fetchone()[0] == 0


def test_the_same_string_id_in_two_days_is_no_collision(tmp_path, con):
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, TX))
    report = land(
        con,
        tmp_path,
        day=date(2018, 4, 3),
        transactions_csv=csv_text(TX_HEADER, ["TX-4,C001,T01,2018-04-03T08:00:00Z,5,D9"]),
    )
    assert report.rows_loaded == 1


def test_a_users_file_with_created_at_still_needs_a_value_in_every_row(tmp_path, con):
    report = land(
        con,
        tmp_path,
        transactions_csv=csv_text(TX_HEADER, TX),
        users_csv=csv_text("user_id,created_at", ["C001,2018-01-01T00:00:00Z", "C002,"]),
    )
    users = next(f for f in report.files if f.kind == "users")
    assert (users.rows_loaded, users.rows_quarantined) == (1, 1)
    assert con.execute('SELECT "column", reason FROM quarantine').fetchall() == [
        ("created_at", "created_at: missing value")
    ]


def test_a_users_file_needs_user_id(tmp_path, con):
    with pytest.raises(FileRejected, match=r"users.csv: missing required column\(s\) user_id"):
        land(con, tmp_path, users_csv=csv_text("customer,created_at", ["C001,2018-01-01T00:00:00Z"]))


def test_a_duplicate_string_transaction_id_is_named_as_written(tmp_path, con):
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, [*TX, TX[0]]))
    accounting = {a.kind: a for a in build_known_tables(con, AS_OF)}
    assert accounting["transactions"].quarantined_across_files == 1
    (reason,) = con.execute("SELECT reason FROM quarantine WHERE stage = 'cross-file'").fetchone()
    assert reason.startswith("duplicate transaction_id TX-1 (identical copy of 2018-04-02/transactions.csv row 1)")


def test_a_chargeback_for_a_quarantined_string_transaction_points_to_it(tmp_path, con):
    land(
        con,
        tmp_path,
        transactions_csv=csv_text(TX_HEADER, [*TX, "TX-5,C002,T01,2018-04-02T11:00:00Z,-3,"]),
        chargebacks_csv=csv_text("transaction_id,reported_at", ["TX-5,2018-04-02T20:00:00Z"]),
    )
    build_known_tables(con, AS_OF)
    reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine WHERE kind = 'chargebacks'").fetchall()]
    assert reasons == ["chargeback for a quarantined transaction (see its quarantine row)"]


def test_extra_columns_of_different_days_are_all_kept(tmp_path, con):
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, TX))
    land(
        con,
        tmp_path,
        day=date(2018, 4, 3),
        transactions_csv=csv_text(
            "transaction_id,user_id,merchant_id,event_time,amount,card_bin",
            ["TX-4,C001,T01,2018-04-03T08:00:00Z,5,4111"],
        ),
    )
    build_known_tables(con, AS_OF)
    rows = con.execute(
        "SELECT transaction_id_original, device_id, card_bin FROM transactions ORDER BY event_time"
    ).fetchall()
    assert rows[-1] == ("TX-4", None, "4111") and rows[0] == ("TX-1", "D9", None)


def test_the_partition_start_is_a_setting_checked_in_one_line():
    assert partition_start(None) == partition_start("") == date(2000, 1, 1)
    assert partition_start("2018-04-01") == date(2018, 4, 1)
    for bad, why in (("2018-4-1", "not a day of the form YYYY-MM-DD"), ("1999-12-31", "before 2000-01-01")):
        with pytest.raises(ValueError, match=why) as error:
            partition_start(bad)
        assert str(error.value).startswith(f"FRAUD_PIPELINE_PARTITION_START={bad}: ")


def test_folders_of_2018_land_from_the_default_start_and_are_named_before_a_later_one(tmp_path):
    (tmp_path / "2018-04-02").mkdir()
    landable, skipped = scan_input_folder(tmp_path, partition_start(None), date(2025, 1, 1))
    assert list(landable) == ["2018-04-02"] and skipped == []
    landable, skipped = scan_input_folder(tmp_path, partition_start("2019-01-01"), date(2025, 1, 1))
    assert landable == {} and "before the first day partition (2019-01-01" in skipped[0].reason


def test_parquet_extra_columns_are_text_whatever_their_parquet_type(tmp_path, con):
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    con.execute(
        f"COPY (SELECT 'TX-1' AS transaction_id, 'C001' AS user_id, 7 AS merchant_id, "
        f"TIMESTAMPTZ '2018-04-02 08:00:00+00' AS event_time, 12.5 AS amount, 4111 AS card_bin, "
        f"1.5::DOUBLE AS risk) TO '{folder / 'transactions.parquet'}' (FORMAT parquet)"
    )
    report = land_day(con, DAY, folder)
    assert report.files[0].extra_columns == ["card_bin", "risk"]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE landing_transactions)").fetchall())
    assert (types["card_bin"], types["risk"], types["merchant_id"]) == ("VARCHAR", "VARCHAR", "BIGINT")
    assert con.execute("SELECT card_bin, merchant_id_original FROM landing_transactions").fetchone() == ("4111", None)


def test_too_many_extra_columns_refuse_the_file(tmp_path, con):
    header = TX_HEADER + "," + ",".join(f"x{i}" for i in range(64))
    with pytest.raises(FileRejected, match="65 extra columns; at most 64 are kept"):
        land(con, tmp_path, transactions_csv=csv_text(header, [TX[0] + ",1" * 64]))


def test_a_customer_without_created_at_or_a_known_transaction_is_not_known_yet(tmp_path, con):
    land(
        con,
        tmp_path,
        transactions_csv=csv_text(TX_HEADER, TX[:1]),
        users_csv=csv_text("user_id,region", ["C001,north", "C777,south"]),
    )
    accounting = {a.kind: a for a in build_known_tables(con, AS_OF)}
    assert con.execute("SELECT user_id, region FROM users").fetchall() == [(encode_id("C001"), "north")]
    users = accounting["users"]
    assert (users.rows_in, users.rows_loaded, users.unaccounted, users.derived_rows) == (2, 2, 0, 1)


def test_a_warehouse_landed_before_string_ids_and_extra_columns_were_kept_lands_again(tmp_path, con):
    con.execute(
        "CREATE TABLE landing_files (day DATE, kind VARCHAR, file VARCHAR, sha256 VARCHAR, rows_in BIGINT, "
        "rows_loaded BIGINT, rows_quarantined BIGINT, ignored_columns VARCHAR)"
    )
    con.execute(
        "CREATE TABLE landing_transactions (day DATE, file VARCHAR, row_number BIGINT, transaction_id BIGINT, "
        "user_id BIGINT, merchant_id BIGINT, event_time TIMESTAMP, amount DOUBLE, channel VARCHAR, country VARCHAR, "
        "mcc VARCHAR, device_id VARCHAR, currency VARCHAR)"
    )
    report = land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, TX))
    assert report.files[0].extra_columns == ["device_id"]
    assert land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, TX)).unchanged
    build_known_tables(con, AS_OF)
    assert con.execute("SELECT transaction_id_original, device_id, currency FROM transactions LIMIT 1").fetchone() == (
        "TX-1",
        "D9",
        None,
    )


def _colliding_name() -> str:
    return next(f"C{i:03d}" for i in range(1000) if encode_id(f"C{i:03d}") < 10**18)


def test_the_id_dictionary_of_an_older_warehouse_is_filled_from_its_landed_rows(tmp_path, con):
    from fraud_pipeline.ingestion.landing import ID_NAMESPACES, id_dictionary

    name = _colliding_name()
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, [f"TX-1,{name},T01,2018-04-02T08:00:00Z,5,"]))
    for namespace in ID_NAMESPACES:
        con.execute(f"DROP TABLE {id_dictionary(namespace)}")  # as landed before the dictionaries existed
    with pytest.raises(FileRejected, match="hash collision"):
        land(
            con,
            tmp_path,
            day=date(2018, 4, 3),
            transactions_csv=csv_text(TX_HEADER, [f"TX-9,{encode_id(name)},T01,2018-04-03T08:00:00Z,5,"]),
        )
    assert con.execute(f"SELECT count(*) FROM {id_dictionary('user_id')}").fetchone()[0] == 1


def test_two_ids_of_one_day_that_collide_refuse_it(tmp_path, con):
    name = _colliding_name()
    rows = [f"TX-1,{name},T01,2018-04-02T08:00:00Z,5,", f"TX-2,{encode_id(name)},T01,2018-04-02T09:00:00Z,5,"]
    with pytest.raises(
        FileRejected, match=f"row 1, column user_id: '{encode_id(name)} \\(written as an integer\\)' and '{name}'"
    ):
        land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, rows))
    assert con.execute("SELECT count(*) FROM landing_transactions").fetchone()[0] == 0


def test_the_known_tables_have_the_same_columns_whatever_order_the_days_were_landed_in(tmp_path):
    first = csv_text(TX_HEADER, TX[:1])
    second = csv_text(
        "transaction_id,user_id,merchant_id,event_time,amount,card_bin", ["TX-4,C001,T01,2018-04-03T08:00:00Z,5,4111"]
    )
    described = []
    for order in ((DAY, date(2018, 4, 3)), (date(2018, 4, 3), DAY)):
        with duckdb.connect() as c:
            for day in order:
                land(c, tmp_path / str(len(described)), day=day, transactions_csv=first if day == DAY else second)
            build_known_tables(c, AS_OF)
            described.append(c.execute("DESCRIBE transactions").fetchall())
    assert described[0] == described[1]
    assert [row[0] for row in described[0]][-2:] == ["card_bin", "device_id"]
