"""Landing users' own transaction, chargeback and user files into DuckDB, with a reason for every bad row.

Files arrive in day folders (``<folder>/<YYYY-MM-DD>/transactions.csv``, ``chargebacks.parquet``, ...).
Landing a day reads each file as text, names every bad cell (file, row, column, reason) in the
``quarantine`` table and replaces that day's rows of the landing tables in one transaction.
:mod:`fraud_pipeline.ingestion.known_tables` then assembles the tables known at an as_of.

Row numbers count data rows from 1 (the header is not a row), so in a CSV file row N is on line N + 1.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from fraud_pipeline.ingestion.rules import EARLIEST_PLAUSIBLE
from fraud_pipeline.lib.schema import (
    EXTRA_TRANSACTION_COLUMNS,
    INTEGER_ID,
    NAIVE_TIMESTAMP,
    OFFSET_TIMESTAMP,
    RAW_COLUMNS,
    REQUIRED_COLUMNS,
    SQL_TYPES,
    amount_problem_sql,
)
from fraud_pipeline.lib.warehouse import literal_path, table_count, write_transaction

KINDS = ("transactions", "chargebacks", "users")
FORMATS = (".csv", ".parquet")
NAIVE_POLICIES = ("reject", "utc")
DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_OFFSET_TS, _NAIVE_TS, _INTEGER = OFFSET_TIMESTAMP, NAIVE_TIMESTAMP, INTEGER_ID


@dataclass(frozen=True)
class FileSchema:
    """The columns of one kind of input file.

    Attributes:
        kind: ``transactions``, ``chargebacks`` or ``users``.
        required: Column -> type (``id``, ``timestamp``, ``amount``, ``text``); a file without one is refused.
        optional: Text columns that become NULL when the file lacks them.
    """

    kind: str
    required: dict[str, str]
    optional: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    @property
    def timestamps(self) -> tuple[str, ...]:
        return tuple(c for c, t in self.required.items() if t == "timestamp")


def _file_schema(kind: str) -> FileSchema:
    required = {c: RAW_COLUMNS[kind][c] for c in REQUIRED_COLUMNS[kind]}
    optional = tuple(c for c in RAW_COLUMNS[kind] if c not in required)
    return FileSchema(kind, required, optional + (EXTRA_TRANSACTION_COLUMNS if kind == "transactions" else ()))


SCHEMAS: dict[str, FileSchema] = {kind: _file_schema(kind) for kind in ("transactions", "chargebacks", "users")}

_SQL_TYPES = SQL_TYPES


class FileRejected(ValueError):
    """A whole file cannot be landed; nothing of its day is written."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class DayFile:
    """One input file of a day folder."""

    kind: str
    path: Path


@dataclass
class FileReport:
    """Row accounting of one landed file."""

    kind: str
    file: str
    sha256: str
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class DayReport:
    """What landing one day did: ``unchanged`` when the same files were landed before."""

    day: date
    unchanged: bool
    files: list[FileReport]
    ignored_files: list[str]

    @property
    def rows_in(self) -> int:
        return sum(f.rows_in for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)


def landing_table(kind: str) -> str:
    """Name of the landing table of a kind of file."""
    return f"landing_{kind}"


def create_landing_tables(con) -> None:
    """Creates the landing, manifest and quarantine tables when they do not exist yet."""
    for kind, schema in SCHEMAS.items():
        columns = ", ".join(
            [f"{c} {_SQL_TYPES[t]}" for c, t in schema.required.items()] + [f"{c} VARCHAR" for c in schema.optional]
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {landing_table(kind)} (day DATE, file VARCHAR, row_number BIGINT, {columns})"
        )
    con.execute(
        "CREATE TABLE IF NOT EXISTS landing_files (day DATE, kind VARCHAR, file VARCHAR, sha256 VARCHAR, "
        "rows_in BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT, ignored_columns VARCHAR)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS quarantine (stage VARCHAR, day DATE, kind VARCHAR, file VARCHAR, "
        'row_number BIGINT, "column" VARCHAR, reason VARCHAR, raw VARCHAR)'
    )


def _input_kind(name: str) -> str | None:
    kind = next((k for k in KINDS if name.startswith(k)), None)
    return kind if kind is not None and Path(name).suffix.lower() in FORMATS else None


def find_day_files(day_folder: Path) -> tuple[list[DayFile], list[str]]:
    """The input files of a day folder and the names of the files it ignores.

    A file is input when its name starts with a kind (``transactions``, ``chargebacks``, ``users``)
    and ends in ``.csv`` or ``.parquet``, e.g. ``transactions.csv`` or ``chargebacks_eu.parquet``.

    Raises:
        FileRejected: An input file is a symbolic link. Links are never followed (one could point
            anywhere outside the input folder); the error names the link and nothing it points to.
    """
    found, ignored = [], []
    for path in sorted(day_folder.iterdir()):
        kind = _input_kind(path.name)
        if path.is_symlink():
            if kind is not None:
                raise FileRejected(
                    path, "is a symbolic link; links are not followed: copy the file itself into the day folder"
                )
            ignored.append(path.name)
        elif not path.is_file():
            continue
        elif kind is not None:
            found.append(DayFile(kind, path))
        else:
            ignored.append(path.name)
    return found, ignored


def file_sha256(path: Path) -> str:
    """Content hash of a file, so landing the same file again is a visible no-op."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_text_file(path: Path) -> list[str]:
    """Refuses an empty CSV file or one that is not UTF-8, naming the first undecodable line.

    Returns:
        The column names of the header line.
    """
    if path.stat().st_size == 0:
        raise FileRejected(path, "empty file (0 bytes); a day without rows still needs the header line")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    header = None
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                text = decoder.decode(line)
            except UnicodeDecodeError as error:
                raise FileRejected(
                    path, f"wrong encoding: line {line_number} is not UTF-8 ({error.reason} at byte {error.start})"
                ) from None
            if header is None and text.strip():
                header = text
    if header is None:
        raise FileRejected(path, "empty file (only whitespace); a day without rows still needs the header line")
    return next(csv.reader([header]))


def _read_raw(con, day_file: DayFile, table: str) -> list[str]:
    """Loads a file as text columns into a temp table with row numbers; returns the ignored columns."""
    path = day_file.path
    schema = SCHEMAS[day_file.kind]
    try:
        # DuckDB expands *, ? and [..] in a path: the file is read under a pattern that matches only itself
        literal = literal_path(path)
    except ValueError as error:
        raise FileRejected(path, str(error)) from None
    if path.suffix.lower() == ".csv":
        header = check_text_file(path)
        names = _unique([name.strip() or f"column{i}" for i, name in enumerate(header, start=1)])
        # the format is fixed (comma, double quotes, a header line), so nothing is sniffed or guessed
        columns = "{" + ", ".join(f"'{_sql_text(n)}': 'VARCHAR'" for n in names) + "}"
        source = (
            f"read_csv(?, header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
            f"columns = {columns})"
        )
        present = names
    else:
        if path.stat().st_size == 0:
            raise FileRejected(path, "empty file (0 bytes)")
        source = "read_parquet(?)"
        try:
            present = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}", [literal]).fetchall()]
        except Exception as error:  # DuckDB raises several error types for unreadable files
            raise FileRejected(path, f"cannot be read as parquet: {str(error).splitlines()[0]}") from None
    by_name: dict[str, str] = {}
    for name in present:
        by_name.setdefault(name.strip().lower(), name)
    missing = [c for c in schema.required if c not in by_name]
    if missing:
        raise FileRejected(
            path,
            f"missing required column(s) {', '.join(missing)}; a {schema.kind} file needs "
            f"{', '.join(schema.required)} (found: {', '.join(present) or 'none'})",
        )
    selected = ", ".join(
        f'CAST("{by_name[c]}" AS VARCHAR) AS {c}' if c in by_name else f"NULL::VARCHAR AS {c}" for c in schema.columns
    )
    try:
        # insertion order is the file's row order, so rowid + 1 is the data row number
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {selected} FROM {source}", [literal])
    except Exception as error:
        raise FileRejected(path, f"cannot be read as {path.suffix[1:]}: {str(error).splitlines()[0]}") from None
    return sorted(name for key, name in by_name.items() if key not in schema.columns)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return result


def _trimmed(column: str) -> str:
    return f"NULLIF(trim({column}), '')"


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _checks(schema: FileSchema, naive_policy: str, mixed: bool) -> tuple[list[str], list[str]]:
    """SQL for the parsed value of each column (over the trimmed text ``t_<column>``) and for each problem."""
    parsed, problems = [], []
    for column, kind in schema.required.items():
        text = f"t_{column}"
        missing = f"WHEN {text} IS NULL THEN '{column}: missing value'"
        if kind == "id":
            parsed.append(
                f"CASE WHEN regexp_full_match({text}, '{_INTEGER}') THEN CAST({text} AS BIGINT) END AS {column}"
            )
            problems.append(
                f"CASE {missing} WHEN {column} IS NULL THEN '{column}: not an integer id (' || {text} || ')' END"
            )
        elif kind == "amount":
            parsed.append(f"TRY_CAST({text} AS DOUBLE) AS {column}")
            problems.append(f"CASE {missing} ELSE {amount_problem_sql(column, text, column)} END")
        else:
            parsed.append(
                f"CASE WHEN regexp_full_match({text}, '{_OFFSET_TS}') THEN timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) "
                f"WHEN regexp_full_match({text}, '{_NAIVE_TS}') THEN TRY_CAST({text} AS TIMESTAMP) END AS {column}"
            )
            parsed.append(f"regexp_full_match({text}, '{_NAIVE_TS}') AS naive_{column}")
            naive_rule = (
                f"WHEN naive_{column} THEN '{column}: mixed timezones (naive timestamp in a file whose other timestamps carry an offset): ' || {text} "
                if mixed
                else (
                    f"WHEN naive_{column} THEN '{column}: naive timestamp (no offset) rejected: ' || {text} "
                    if naive_policy == "reject"
                    else ""
                )
            )
            problems.append(
                f"CASE {missing} WHEN {column} IS NULL THEN '{column}: unparseable timestamp (' || {text} || ')' "
                f"{naive_rule}"
                f"WHEN {column} < $earliest THEN '{column}: out of range (before {EARLIEST_PLAUSIBLE:%Y-%m-%d}): ' || {text} "
                f"WHEN {column} >= $day_end THEN '{column}: out of range (after the end of its day folder): ' || {text} END"
            )
    parsed += [f"t_{c} AS {c}" for c in schema.optional]
    return parsed, problems


def _timestamp_styles(con, table: str, schema: FileSchema) -> tuple[int, int]:
    """How many timestamp cells of the file carry an offset and how many are naive."""
    value = " UNION ALL ".join(f"SELECT {_trimmed(c)} AS v FROM {table}" for c in schema.timestamps)
    return con.execute(
        f"SELECT count(*) FILTER (regexp_full_match(v, '{_OFFSET_TS}')), count(*) FILTER (regexp_full_match(v, '{_NAIVE_TS}')) "
        f"FROM ({value})"
    ).fetchone()


def _validate(con, day: date, day_file: DayFile, table: str, naive_policy: str) -> tuple[int, int, int]:
    """Splits a raw temp table into ``<table>_good`` (typed rows) and ``<table>_bad`` (quarantine rows).

    Returns:
        Rows in, rows good, rows bad.
    """
    schema = SCHEMAS[day_file.kind]
    with_offset, naive = _timestamp_styles(con, table, schema)
    if naive and not with_offset and naive_policy == "reject":
        raise FileRejected(
            day_file.path,
            f"naive timestamps (no UTC offset) in {', '.join(schema.timestamps)}; write them with an offset or Z, "
            "or set the source's naive_timestamps to 'utc' to read them as UTC",
        )
    parsed, problems = _checks(schema, naive_policy, mixed=bool(naive and with_offset))
    params = {"earliest": EARLIEST_PLAUSIBLE, "day_end": datetime.combine(day, datetime.min.time()) + timedelta(days=1)}
    texts = ", ".join(f"{_trimmed(c)} AS t_{c}" for c in schema.columns)
    raw = f"to_json(struct_pack({', '.join(f'{c} := t_{c}' for c in schema.columns)}))"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table}_checked AS "
        f"WITH texts AS (SELECT rowid + 1 AS row_number, {texts} FROM {table}), "
        f"parsed AS (SELECT *, {', '.join(parsed)} FROM texts) "
        f"SELECT row_number, {', '.join(schema.columns)}, "
        f"list_filter([{', '.join(problems)}], lambda p: p IS NOT NULL) AS problems, {raw} AS raw FROM parsed",
        params,
    )
    columns = ", ".join(schema.columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table}_good AS SELECT row_number, {columns} FROM {table}_checked "
        "WHERE len(problems) = 0"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table}_bad AS SELECT row_number, split_part(problems[1], ':', 1) AS \"column\", "
        f"array_to_string(problems, '; ') AS reason, CAST(raw AS VARCHAR) AS raw FROM {table}_checked "
        "WHERE len(problems) > 0"
    )
    return table_count(con, table), table_count(con, f"{table}_good"), table_count(con, f"{table}_bad")


def landed_hashes(con, day: date) -> set[tuple[str, str]]:
    """The (file, sha256) pairs landed for a day."""
    return {tuple(r) for r in con.execute("SELECT file, sha256 FROM landing_files WHERE day = ?", [day]).fetchall()}


def land_day(con, day: date, day_folder: Path, naive_policy: str = "reject") -> DayReport:
    """Lands every input file of a day folder, replacing that day's landed rows in one transaction.

    Every file is read and validated before anything is written, so a refused file leaves every
    table as it was. Landing the same files again (same names and content hashes) writes nothing.

    Args:
        con: A DuckDB connection.
        day: The day the folder stands for; rows must be timestamped before its end (UTC).
        day_folder: The folder holding the day's files.
        naive_policy: ``reject`` refuses timestamps without an offset; ``utc`` reads them as UTC.

    Returns:
        The day's row accounting per file.

    Raises:
        FileRejected: A file is empty, not UTF-8, unreadable, lacks a required column or holds only
            naive timestamps under ``reject``; or the folder has no input file.
    """
    if naive_policy not in NAIVE_POLICIES:
        raise ValueError(f"naive_timestamps must be one of {NAIVE_POLICIES}, got {naive_policy!r}")
    if day_folder.is_symlink():
        raise FileRejected(day_folder, "is a symbolic link; links are not followed: make the day folder a directory")
    if not day_folder.is_dir():
        raise FileRejected(day_folder, "no such day folder")
    files, ignored = find_day_files(day_folder)
    if not files:
        raise FileRejected(day_folder, f"no input file (expected {', '.join(f'{k}.csv|.parquet' for k in KINDS)})")
    create_landing_tables(con)
    hashes = {f.path.name: file_sha256(f.path) for f in files}
    if landed_hashes(con, day) == set(hashes.items()):
        reports = [
            FileReport(
                kind,
                name,
                sha,
                rows_in,
                loaded,
                quarantined,
                (ignored_columns or "").split(",") if ignored_columns else [],
            )
            for kind, name, sha, rows_in, loaded, quarantined, ignored_columns in con.execute(
                "SELECT kind, file, sha256, rows_in, rows_loaded, rows_quarantined, ignored_columns FROM landing_files "
                "WHERE day = ? ORDER BY file",
                [day],
            ).fetchall()
        ]
        return DayReport(day, True, reports, ignored)

    reports, staged = [], []
    try:
        for index, day_file in enumerate(files):
            table = f"stage_{index}"
            ignored_columns = _read_raw(con, day_file, table)
            n_in, n_good, n_bad = _validate(con, day, day_file, table, naive_policy)
            staged.append((day_file, table))
            reports.append(
                FileReport(
                    day_file.kind, day_file.path.name, hashes[day_file.path.name], n_in, n_good, n_bad, ignored_columns
                )
            )
        _write_day(con, day, staged, reports)
    finally:
        for index in range(len(files)):
            for suffix in ("", "_checked", "_good", "_bad"):
                con.execute(f"DROP TABLE IF EXISTS stage_{index}{suffix}")
    return DayReport(day, False, reports, ignored)


def _write_day(con, day: date, staged: list[tuple[DayFile, str]], reports: list[FileReport]) -> None:
    # the landing tables are not a night's tables: nothing to stamp
    with write_transaction(con, (), doing=f"landing the files of {day.isoformat()}"):
        for kind in KINDS:
            con.execute(f"DELETE FROM {landing_table(kind)} WHERE day = ?", [day])
        con.execute("DELETE FROM quarantine WHERE stage = 'file' AND day = ?", [day])
        con.execute("DELETE FROM landing_files WHERE day = ?", [day])
        for (day_file, table), report in zip(staged, reports):
            columns = ", ".join(SCHEMAS[day_file.kind].columns)
            con.execute(
                f"INSERT INTO {landing_table(day_file.kind)} (day, file, row_number, {columns}) "
                f"SELECT ?, ?, row_number, {columns} FROM {table}_good ORDER BY row_number",
                [day, report.file],
            )
            con.execute(
                f"INSERT INTO quarantine SELECT 'file', ?, ?, ?, row_number, \"column\", reason, raw FROM {table}_bad "
                "ORDER BY row_number",
                [day, day_file.kind, report.file],
            )
            con.execute(
                "INSERT INTO landing_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    day,
                    report.kind,
                    report.file,
                    report.sha256,
                    report.rows_in,
                    report.rows_loaded,
                    report.rows_quarantined,
                    ",".join(report.ignored_columns),
                ],
            )


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of the input folder that is not landed, and why."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"folder": self.name, "reason": self.reason}


def _day_folder_problem(path: Path) -> str | None:
    """Why an entry of the input folder is not a day folder, or None when it is one."""
    if path.is_symlink():
        return "a symbolic link (links are not followed)"
    if not path.is_dir():
        return "not a directory"
    if not DAY_FOLDER.match(path.name):
        return "not a day folder name (YYYY-MM-DD, e.g. 2025-03-04)"
    try:
        date.fromisoformat(path.name)
    except ValueError as error:
        return f"not a valid date ({error})"
    return None


def day_folders(folder: Path) -> dict[str, Path]:
    """Day folders (real directories named by a valid ``YYYY-MM-DD`` date) under the input folder, by day."""
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if _day_folder_problem(p) is None}


def scan_input_folder(folder: Path, first_day: date, last_day: date) -> tuple[dict[str, Path], list[SkippedEntry]]:
    """The day folders that can be landed, and every other entry of the input folder with its reason.

    A day folder can be landed when it is a real directory named by a valid date from ``first_day``
    (the first partition) to ``last_day`` (the last day that has ended); the caller knows both.
    """
    if not folder.is_dir():
        return {}, []
    landable, skipped = {}, []
    for path in sorted(folder.iterdir()):
        problem = _day_folder_problem(path)
        if problem is None:
            day = date.fromisoformat(path.name)
            if day < first_day:
                problem = f"before the first day partition ({first_day.isoformat()})"
            elif day > last_day:
                problem = f"its day has not ended yet (the last ended day is {last_day.isoformat()})"
        if problem is None:
            landable[path.name] = path
        else:
            skipped.append(SkippedEntry(path.name, problem))
    return landable, skipped


def folder_fingerprint(day_folder: Path) -> str:
    """A cheap fingerprint of a day folder's input files (names, sizes, modification times).

    Links are fingerprinted by their own metadata (never followed), so a folder that landing will
    refuse still gets a fingerprint and its run names the link.
    """
    digest = hashlib.sha256()
    for path in sorted(day_folder.iterdir()):
        if _input_kind(path.name) is None:
            continue
        stat = path.lstat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{path.is_symlink()};".encode())
    return digest.hexdigest()[:16]
