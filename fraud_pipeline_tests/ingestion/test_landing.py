"""Bring your own data: one malformed file per bad-input case, each with its reason and the row accounting."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from fraud_pipeline.ingestion.known_tables import build_known_tables, judge_quarantine
from fraud_pipeline.ingestion.landing import FileRejected, land_day

DAY = date(2025, 3, 1)
AS_OF = datetime(2025, 3, 10)
TX_HEADER = "transaction_id,user_id,merchant_id,event_time,amount"
GOOD_TX = [
    "1,10,100,2025-03-01T08:00:00Z,25.50",
    "2,10,101,2025-03-01T09:00:00+02:00,12.00",
    "3,11,100,2025-03-01T10:00:00Z,8.00",
]
EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


def write_day(root: Path, day: date, **files: str | bytes) -> Path:
    """Writes files (name -> text or bytes) into ``root/<day>/`` and returns that folder."""
    folder = root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name.replace("_csv", ".csv")
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def csv_text(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def quarantine(con) -> list[tuple]:
    return con.execute(
        'SELECT stage, file, row_number, "column", reason FROM quarantine ORDER BY stage DESC, day, file, row_number'
    ).fetchall()


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def land(con, root: Path, day: date = DAY, policy: str = "reject", **files):
    return land_day(con, day, write_day(root, day, **files), policy)


# --- row-level problems: one file per case, the row quarantined with its reason, the others loaded ---

ROW_CASES = {
    "unparseable timestamp": ("4,12,100,2025-02-30T10:00:00Z,5.00", "event_time", "unparseable timestamp"),
    "not a timestamp": ("4,12,100,yesterday,5.00", "event_time", "unparseable timestamp (yesterday)"),
    "timestamp before 2000": ("4,12,100,1970-01-01T00:00:00Z,5.00", "event_time", "out of range (before 2000-01-01)"),
    "timestamp after its day": (
        "4,12,100,2025-03-02T00:00:00Z,5.00",
        "event_time",
        "out of range (after the end of its day folder)",
    ),
    "offset moves it past its day": (
        "4,12,100,2025-03-01T23:30:00-01:00,5.00",
        "event_time",
        "out of range (after the end",
    ),
    "mixed timezones": ("4,12,100,2025-03-01 10:00:00,5.00", "event_time", "mixed timezones"),
    "amount text": ("4,12,100,2025-03-01T10:00:00Z,ten", "amount", "not a number (ten)"),
    "negative amount": ("4,12,100,2025-03-01T10:00:00Z,-5", "amount", "negative (-5)"),
    "NaN amount": ("4,12,100,2025-03-01T10:00:00Z,NaN", "amount", "NaN"),
    "infinite amount": ("4,12,100,2025-03-01T10:00:00Z,inf", "amount", "infinite"),
    "zero amount": ("4,12,100,2025-03-01T10:00:00Z,0", "amount", "zero"),
    "denormal amount": ("4,12,100,2025-03-01T10:00:00Z,1e-320", "amount", "out of range (below 0.01) (1e-320)"),
    "amount below a cent": ("4,12,100,2025-03-01T10:00:00Z,0.001", "amount", "out of range (below 0.01)"),
    "huge amount": ("4,12,100,2025-03-01T10:00:00Z,1e300", "amount", "out of range (above 1,000,000,000) (1e300)"),
    "amount above the range": ("4,12,100,2025-03-01T10:00:00Z,1000000000.5", "amount", "out of range (above"),
    "missing amount": ("4,12,100,2025-03-01T10:00:00Z,", "amount", "missing value"),
    "fractional id": ("4.5,12,100,2025-03-01T10:00:00Z,5.00", "transaction_id", "looks like a decimal number (4.5)"),
    "id through a float column": (
        "4,12.0,100,2025-03-01T10:00:00Z,5.00",
        "user_id",
        "looks like a decimal number (12.0)",
    ),
    "id in scientific notation": ("4,12,1e5,2025-03-01T10:00:00Z,5.00", "merchant_id", "looks like a decimal number"),
    "id too long": (f"4,12,{'m' * 257},2025-03-01T10:00:00Z,5.00", "merchant_id", "longer than 256 characters"),
    "missing user": ("4,,100,2025-03-01T10:00:00Z,5.00", "user_id", "missing value"),
}


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_each_bad_row_is_quarantined_with_file_row_column_and_reason(tmp_path, con, case):
    bad, column, reason = ROW_CASES[case]
    rows = [GOOD_TX[0], bad, *GOOD_TX[1:]]
    report = land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, rows))
    (file_report,) = report.files
    assert (file_report.rows_in, file_report.rows_loaded, file_report.rows_quarantined) == (4, 3, 1)
    ((stage, file, row, bad_column, text),) = quarantine(con)
    assert (stage, file, row, bad_column) == ("file", "transactions.csv", 2, column)
    assert reason in text, text
    assert con.execute("SELECT list(row_number ORDER BY row_number) FROM landing_transactions").fetchone()[0] == [
        1,
        3,
        4,
    ]


def test_a_row_with_an_extra_field_refuses_the_file_naming_its_line(tmp_path, con):
    with pytest.raises(FileRejected, match="transactions.csv: cannot be read as csv"):
        land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, [GOOD_TX[0], "4,12,100,2025-03-01T10:00:00Z,12,50"]))


def test_every_problem_of_a_row_is_named_and_the_raw_values_kept(tmp_path, con):
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, [*GOOD_TX, "4.0,12,100,never,-1"]))
    stage, day, row, column, reason, raw = con.execute(
        'SELECT stage, day, row_number, "column", reason, raw FROM quarantine'
    ).fetchone()
    assert (stage, day, row, column) == ("file", DAY, 4, "transaction_id")
    for expected in (
        "transaction_id: looks like a decimal number (4.0)",
        "event_time: unparseable timestamp (never)",
        "amount: negative (-1)",
    ):
        assert expected in reason
    assert '"event_time":"never"' in raw


def test_offsets_are_normalised_to_utc(tmp_path, con):
    land(con, tmp_path, transactions_csv=csv_text(TX_HEADER, GOOD_TX))
    times = con.execute("SELECT list(event_time ORDER BY transaction_id) FROM landing_transactions").fetchone()[0]
    assert times == [datetime(2025, 3, 1, 8), datetime(2025, 3, 1, 7), datetime(2025, 3, 1, 10)]


def test_naive_timestamps_are_an_explicit_choice(tmp_path, con):
    naive = csv_text(TX_HEADER, ["1,10,100,2025-03-01 08:00:00,25.50", "2,10,101,2025-03-01,12.00"])
    with pytest.raises(FileRejected, match="naive timestamps .* naive_timestamps"):
        land(con, tmp_path, transactions_csv=naive)
    assert con.execute("SELECT count(*) FROM landing_files").fetchone()[0] == 0
    report = land(con, tmp_path, policy="utc", transactions_csv=naive)
    assert report.rows_loaded == 2
    times = con.execute("SELECT list(event_time ORDER BY transaction_id) FROM landing_transactions").fetchone()[0]
    assert times == [datetime(2025, 3, 1, 8), datetime(2025, 3, 1)]


def test_a_file_mixing_naive_and_offset_timestamps_quarantines_the_naive_rows_even_under_utc(tmp_path, con):
    rows = [*GOOD_TX, "4,12,100,2025-03-01 10:00:00,5.00"]
    report = land(con, tmp_path, policy="utc", transactions_csv=csv_text(TX_HEADER, rows))
    assert report.rows_quarantined == 1
    assert "mixed timezones" in quarantine(con)[0][4]


# --- whole-file problems: refused before anything is written, naming the file ---

FILE_CASES = {
    "missing required column": (
        csv_text("transaction_id,user_id,event_time,amount", ["1,10,2025-03-01T08:00:00Z,25.50"]),
        r"transactions.csv: missing required column\(s\) merchant_id",
    ),
    "empty file": ("", r"transactions.csv: empty file \(0 bytes\)"),
    "whitespace only": ("\n  \n", r"transactions.csv: empty file \(only whitespace\)"),
    "wrong encoding": (
        (csv_text(TX_HEADER, GOOD_TX[:1])).encode() + "2,10,100,2025-03-01T09:00:00Z,1,café\n".encode("latin-1"),
        r"transactions.csv: wrong encoding: line 3 is not UTF-8",
    ),
    "utf-16": (csv_text(TX_HEADER, GOOD_TX).encode("utf-16"), r"transactions.csv: wrong encoding: line 1"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_whole_file_problem_refuses_the_day_and_leaves_the_previous_tables_intact(tmp_path, con, case):
    content, message = FILE_CASES[case]
    land(con, tmp_path / "before", transactions_csv=csv_text(TX_HEADER, GOOD_TX))
    before = con.execute("SELECT * FROM landing_transactions ORDER BY transaction_id").fetchall()
    manifest = con.execute("SELECT * FROM landing_files").fetchall()
    with pytest.raises(FileRejected, match=message):
        land(
            con,
            tmp_path / "after",
            transactions_csv=content,
            chargebacks_csv=csv_text("transaction_id,reported_at", ["1,2025-03-01T12:00:00Z"]),
        )
    assert con.execute("SELECT * FROM landing_transactions ORDER BY transaction_id").fetchall() == before
    assert con.execute("SELECT * FROM landing_files").fetchall() == manifest
    assert con.execute("SELECT count(*) FROM landing_chargebacks").fetchone()[0] == 0


def test_a_header_only_file_is_a_day_without_rows(tmp_path, con):
    report = land(con, tmp_path, transactions_csv=TX_HEADER + "\n")
    assert (report.rows_in, report.rows_loaded, report.rows_quarantined) == (0, 0, 0)


def test_optional_columns_missing_from_a_file_are_null_and_extra_columns_are_kept_as_text(tmp_path, con):
    report = land(
        con,
        tmp_path,
        transactions_csv=csv_text(
            TX_HEADER + ",Channel,Device_ID,bad name,select", [r + ",pos,d1,x,y" for r in GOOD_TX]
        ),
    )
    assert report.files[0].extra_columns == ["device_id"]
    assert report.files[0].ignored_columns == ["bad name", "select"], "not an identifier, a SQL keyword"
    rows = con.execute("SELECT DISTINCT channel, country, mcc, device_id FROM landing_transactions").fetchall()
    assert rows == [("pos", None, None, "d1")]
    assert con.execute("SELECT extra_columns, ignored_columns FROM landing_files").fetchall() == [
        ("device_id", "bad name,select")
    ]


# --- cross-file problems: quarantined when the raw tables are built at as_of ---


def tx_file(*rows: str) -> str:
    return csv_text(TX_HEADER, list(rows))


def cb_file(*rows: str) -> str:
    return csv_text("transaction_id,reported_at,reason", list(rows))


def build(con) -> dict:
    return {a.kind: a for a in build_known_tables(con, AS_OF)}


def assert_accounted(accounting: dict) -> None:
    for a in accounting.values():
        assert a.rows_in == a.rows_loaded + a.quarantined_in_file + a.quarantined_across_files, a


def test_an_identical_duplicate_keeps_the_first_copy_and_a_conflicting_one_holds_back_every_copy(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX))
    land(
        con, tmp_path, day=date(2025, 3, 2), transactions_csv=tx_file(GOOD_TX[0], "3,11,100,2025-03-01T10:00:00Z,9.00")
    )
    accounting = build(con)
    assert_accounted(accounting)
    assert con.execute("SELECT list(transaction_id ORDER BY transaction_id) FROM transactions").fetchone()[0] == [1, 2]
    reasons = [r[4] for r in quarantine(con)]
    assert any(
        r.startswith("duplicate transaction_id 1 (identical copy of 2025-03-01/transactions.csv row 1)")
        for r in reasons
    )
    assert sum(r.startswith("conflicting duplicate transaction_id 3") for r in reasons) == 2
    assert accounting["transactions"].quarantined_across_files == 3


def test_a_duplicate_within_one_file_is_caught_too(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX, GOOD_TX[1]))
    assert build(con)["transactions"].quarantined_across_files == 1
    assert quarantine(con)[0][2:4] == (4, "transaction_id")


CHARGEBACK_CASES = {
    "chargeback before its transaction": (
        "2,2025-03-01T06:00:00Z,fraud",
        "reported_at",
        "chargeback before its transaction",
    ),
    "chargeback for an unknown transaction": (
        "99,2025-03-01T12:00:00Z,fraud",
        "transaction_id",
        "unknown transaction_id",
    ),
    "duplicate chargeback": (
        "1,2025-03-01T13:00:00Z,fraud",
        "transaction_id",
        "duplicate chargeback for transaction_id 1",
    ),
    "chargeback for a quarantined transaction": (
        "4,2025-03-01T12:00:00Z,fraud",
        "transaction_id",
        "quarantined transaction",
    ),
}


@pytest.mark.parametrize("case", list(CHARGEBACK_CASES))
def test_each_bad_chargeback_is_quarantined_with_its_reason(tmp_path, con, case):
    row, column, reason = CHARGEBACK_CASES[case]
    land(
        con,
        tmp_path,
        transactions_csv=tx_file(*GOOD_TX, "4,12,100,2025-03-01T10:00:00Z,-1"),
        chargebacks_csv=cb_file("1,2025-03-01T12:00:00Z,fraud", row),
    )
    accounting = build(con)
    assert_accounted(accounting)
    assert (accounting["chargebacks"].rows_in, accounting["chargebacks"].rows_loaded) == (2, 1)
    cross = [q for q in quarantine(con) if q[0] == "cross-file"]
    assert [(q[1], q[2], q[3]) for q in cross] == [("chargebacks.csv", 2, column)]
    assert reason in cross[0][4]
    assert con.execute("SELECT list(transaction_id) FROM chargebacks").fetchone()[0] == [1]


def test_a_late_chargeback_in_a_later_folder_updates_the_labels_through_as_of(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX))
    land(con, tmp_path, day=date(2025, 4, 20), chargebacks_csv=cb_file("2,2025-04-20T09:00:00Z,fraud"))
    build_known_tables(con, datetime(2025, 4, 20))
    assert con.execute("SELECT count(*) FROM chargebacks").fetchone()[0] == 0
    build_known_tables(con, datetime(2025, 4, 21))
    assert con.execute("SELECT transaction_id, reported_at FROM chargebacks").fetchall() == [
        (2, datetime(2025, 4, 20, 9))
    ]


def test_a_chargeback_whose_transaction_arrives_in_a_later_folder_is_held_back_until_then(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(GOOD_TX[0]), chargebacks_csv=cb_file("3,2025-03-01T12:00:00Z,fraud"))
    build(con)
    assert "unknown transaction_id" in quarantine(con)[0][4]
    land(con, tmp_path, day=date(2025, 3, 2), transactions_csv=tx_file(GOOD_TX[2]))
    accounting = build(con)
    assert accounting["chargebacks"].rows_loaded == 1 and quarantine(con) == []


def test_landing_the_same_files_again_changes_nothing_and_says_so(tmp_path, con):
    first = land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX, "4,12,100,2025-03-01T10:00:00Z,-1"))
    snapshot = [
        con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("landing_transactions", "quarantine", "landing_files")
    ]
    again = land_day(con, DAY, tmp_path / DAY.isoformat())
    assert not first.unchanged and again.unchanged
    assert (again.rows_in, again.rows_loaded, again.rows_quarantined) == (4, 3, 1)
    assert [
        con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("landing_transactions", "quarantine", "landing_files")
    ] == snapshot


def test_a_changed_file_replaces_its_day_and_only_its_day(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX))
    land(con, tmp_path, day=date(2025, 3, 2), transactions_csv=tx_file("5,12,100,2025-03-02T10:00:00Z,5.00"))
    report = land(con, tmp_path, transactions_csv=tx_file(GOOD_TX[0]))
    assert not report.unchanged
    assert con.execute("SELECT list(transaction_id ORDER BY transaction_id) FROM landing_transactions").fetchone()[
        0
    ] == [1, 5]


def test_without_a_users_file_account_age_starts_at_the_first_transaction_seen(tmp_path, con):
    land(
        con,
        tmp_path,
        transactions_csv=tx_file(*GOOD_TX),
        users_csv=csv_text("user_id,created_at", ["10,2024-12-01T00:00:00Z"]),
    )
    accounting = build(con)
    assert accounting["users"].derived_rows == 1
    assert con.execute("SELECT user_id, created_at, region FROM users ORDER BY user_id").fetchall() == [
        (10, datetime(2024, 12, 1), None),
        (11, datetime(2025, 3, 1, 10), None),
    ]


def test_the_quarantine_verdict_fails_above_the_limit_and_passes_within_it(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX, "4,12,100,2025-03-01T10:00:00Z,-1"))
    accounting = build_known_tables(con, AS_OF)
    failing = judge_quarantine(accounting, 0.10)
    assert not failing.passed and "transactions: 1 of 4 rows quarantined (25.00% > 10.00%)" in failing.reason
    assert judge_quarantine(accounting, 0.25).passed


def test_rows_lost_between_landing_and_the_tables_fail_the_verdict(tmp_path, con):
    land(con, tmp_path, transactions_csv=tx_file(*GOOD_TX))
    accounting = build_known_tables(con, AS_OF)
    broken = [
        a
        if a.kind != "transactions"
        else type(a)(a.kind, a.files, a.rows_in + 1, a.rows_loaded, a.quarantined_in_file, a.quarantined_across_files)
        for a in accounting
    ]
    verdict = judge_quarantine(broken, 1.0)
    assert not verdict.passed and "1 rows neither loaded nor quarantined" in verdict.reason


def test_parquet_input_with_timezone_aware_and_naive_timestamps(tmp_path, con):
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    con.execute(
        f"COPY (SELECT 1::BIGINT AS transaction_id, 10 AS user_id, 100 AS merchant_id, "
        f"TIMESTAMPTZ '2025-03-01 10:00:00+02:00' AS event_time, 5.5 AS amount, 'pos' AS channel) "
        f"TO '{folder / 'transactions.parquet'}' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT 1 AS transaction_id, TIMESTAMP '2025-03-01 12:00:00' AS reported_at) "
        f"TO '{folder / 'chargebacks.parquet'}' (FORMAT parquet)"
    )
    with pytest.raises(FileRejected, match="chargebacks.parquet: naive timestamps"):
        land_day(con, DAY, folder, "reject")
    land_day(con, DAY, folder, "utc")
    assert con.execute("SELECT event_time, amount, channel FROM landing_transactions").fetchone() == (
        datetime(2025, 3, 1, 8),
        5.5,
        "pos",
    )
    assert con.execute("SELECT reported_at FROM landing_chargebacks").fetchone() == (datetime(2025, 3, 1, 12),)


def test_row_numbers_match_the_file_lines_in_a_large_file(tmp_path, con):
    rows = [f"{i},10,100,2025-03-01T{i % 24:02d}:00:00Z,{'-1' if i % 997 == 0 else '5.0'}" for i in range(1, 30_001)]
    land(con, tmp_path, transactions_csv=tx_file(*rows))
    numbers = [r[2] for r in quarantine(con)]
    assert numbers == [i for i in range(1, 30_001) if i % 997 == 0]
    assert con.execute("SELECT bool_and(row_number = transaction_id) FROM landing_transactions").fetchone()[0]


def test_a_simulated_world_exported_as_files_gives_the_same_raw_tables_as_the_simulated_mode(tmp_path, con):
    from fraud_pipeline.ingestion.assets import KNOWN_AT_AS_OF
    from fraud_pipeline.ingestion.export import export_world
    from fraud_pipeline.ingestion.landing import day_folders
    from fraud_pipeline.ingestion.simulator import WorldSpec, simulate_world
    from fraud_pipeline.lib.warehouse import replace_tables

    world = simulate_world(WorldSpec(start=datetime(2025, 1, 1), days=42, n_transactions=2_000, seed=5))
    export_world(world, tmp_path, "parquet")
    as_of = datetime(2025, 2, 5)
    for day, folder in day_folders(tmp_path).items():
        if date.fromisoformat(day) < as_of.date():
            land_day(con, date.fromisoformat(day), folder)
    accounting = build_known_tables(con, as_of)
    assert all(a.rows_quarantined == 0 and a.unaccounted == 0 for a in accounting)
    con.execute("CREATE SCHEMA sim")
    replace_tables(
        con,
        {f"sim.{name}": sql for name, sql in KNOWN_AT_AS_OF.items()},
        params={"as_of": as_of},
        sources={
            "sim_users": world.users,
            "sim_transactions": world.transactions,
            "sim_chargebacks": world.chargebacks,
        },
    )
    for table in ("users", "transactions", "chargebacks"):
        assert con.execute(f"DESCRIBE {table}").fetchall() == con.execute(f"DESCRIBE sim.{table}").fetchall()
        assert con.execute(f"SELECT * FROM {table}").fetchall() == con.execute(f"SELECT * FROM sim.{table}").fetchall()
    assert con.execute("SELECT count(*) FROM chargebacks").fetchone()[0] > 0


def test_the_committed_example_lands_with_its_deliberate_mistakes(con):
    for day in ("2025-03-01", "2025-03-02"):
        land_day(con, date.fromisoformat(day), EXAMPLES / day)
    accounting = {a.kind: a for a in build_known_tables(con, datetime(2025, 3, 3))}
    assert_accounted(accounting)
    assert (accounting["transactions"].rows_in, accounting["transactions"].rows_loaded) == (13, 4)
    assert (accounting["chargebacks"].rows_in, accounting["chargebacks"].rows_loaded) == (5, 1)
    assert accounting["users"].derived_rows == 1


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path, con):
    content = "\ufeff" + csv_text(TX_HEADER, GOOD_TX).replace("\n", "\r\n")
    report = land(con, tmp_path, transactions_csv=content.encode("utf-8"))
    assert (report.rows_loaded, report.rows_quarantined) == (3, 0)


# --- file names, links and folders: exactly the named file, never anything else ---


@pytest.mark.parametrize("name", ["transactions_*.csv", "transactions_[ab].csv", "transactions_?.csv"])
def test_a_file_name_with_glob_characters_reads_only_that_file(tmp_path, con, name):
    land(
        con,
        tmp_path,
        transactions_a_csv=tx_file(GOOD_TX[0]),
        transactions_b_csv=tx_file(GOOD_TX[1]),
        **{name.replace(".csv", "_csv"): tx_file(GOOD_TX[2])},
    )
    rows = dict(
        con.execute(
            "SELECT file, list(transaction_id ORDER BY transaction_id) FROM landing_transactions GROUP BY file"
        ).fetchall()
    )
    assert rows == {"transactions_a.csv": [1], "transactions_b.csv": [2], name: [3]}
    manifest = con.execute("SELECT file, rows_in FROM landing_files ORDER BY file").fetchall()
    assert sorted(manifest) == sorted([("transactions_a.csv", 1), ("transactions_b.csv", 1), (name, 1)])


def test_a_symlinked_input_file_is_refused_naming_the_link_and_nothing_of_its_target(tmp_path, con):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:SECRET-FIRST-LINE\n")
    folder = write_day(tmp_path / "incoming", DAY, transactions_csv=tx_file(*GOOD_TX))
    (folder / "transactions_link.csv").symlink_to(secret)
    with pytest.raises(FileRejected) as refused:
        land_day(con, DAY, folder)
    message = str(refused.value)
    assert "transactions_link.csv" in message and "symbolic link" in message
    assert "SECRET" not in message and "root:x" not in message
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'landing%'").fetchone()[0] == 0


def test_a_symlinked_day_folder_is_skipped_with_its_reason_and_refused_when_landed(tmp_path, con):
    from fraud_pipeline.ingestion.landing import day_folders, scan_input_folder

    incoming = tmp_path / "incoming"
    write_day(incoming, DAY, transactions_csv=tx_file(*GOOD_TX))
    elsewhere = write_day(tmp_path / "elsewhere", date(2025, 3, 2), transactions_csv=tx_file(*GOOD_TX))
    (incoming / "2025-03-02").symlink_to(elsewhere, target_is_directory=True)
    landable, skipped = scan_input_folder(incoming, date(2020, 1, 1), date(2025, 6, 1))
    assert list(landable) == ["2025-03-01"] and list(day_folders(incoming)) == ["2025-03-01"]
    assert [(s.name, s.reason) for s in skipped] == [("2025-03-02", "a symbolic link (links are not followed)")]
    with pytest.raises(FileRejected, match="2025-03-02: is a symbolic link"):
        land_day(con, date(2025, 3, 2), incoming / "2025-03-02")


def test_every_entry_that_is_not_a_landable_day_folder_is_listed_with_its_reason(tmp_path):
    from fraud_pipeline.ingestion.landing import scan_input_folder

    for name in ("2025-03-01", "2025-13-01", "latest", "2025-3-4", "2019-12-31", "2031-01-01"):
        (tmp_path / name).mkdir()
    (tmp_path / "transactions.csv").write_text(TX_HEADER + "\n")
    landable, skipped = scan_input_folder(tmp_path, date(2020, 1, 1), date(2025, 6, 30))
    assert list(landable) == ["2025-03-01"]
    reasons = {s.name: s.reason for s in skipped}
    assert reasons["2025-13-01"].startswith("not a valid date (month must be in 1..12")
    assert reasons["latest"] == reasons["2025-3-4"] == "not a day folder name (YYYY-MM-DD, e.g. 2025-03-04)"
    assert reasons["2019-12-31"] == (
        "before the first day partition (2020-01-01; set FRAUD_PIPELINE_PARTITION_START to an earlier day to land it)"
    )
    assert reasons["2031-01-01"] == "its day has not ended yet (the last ended day is 2025-06-30)"
    assert reasons["transactions.csv"] == "not a directory"
    assert len(skipped) == 6


def test_a_user_created_after_their_first_transaction_is_quarantined_and_accounted(tmp_path, con):
    land(
        con,
        tmp_path,
        transactions_csv=tx_file(*GOOD_TX),
        users_csv=csv_text("user_id,created_at", ["10,2025-03-01T09:30:00Z", "11,2025-02-01T00:00:00Z"]),
    )
    accounting = build(con)
    assert_accounted(accounting)
    users = accounting["users"]
    assert (users.rows_in, users.rows_loaded, users.quarantined_across_files, users.derived_rows) == (2, 1, 1, 1)
    ((stage, file, row, column, reason),) = [q for q in quarantine(con) if q[0] == "cross-file"]
    assert (stage, file, row, column) == ("cross-file", "users.csv", 1, "created_at")
    assert "after the user's first transaction (2025-03-01 07:00:00)" in reason
    # user 10's account age starts at the first transaction instead: never negative
    assert con.execute("SELECT user_id, created_at FROM users ORDER BY user_id").fetchall() == [
        (10, datetime(2025, 3, 1, 7)),
        (11, datetime(2025, 2, 1)),
    ]
