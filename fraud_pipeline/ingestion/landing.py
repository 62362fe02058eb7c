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
    DECIMAL_ID,
    EXTRA_COLUMN_NAME,
    MAX_EXTRA_COLUMNS,
    MAX_ID_LENGTH,
    NAIVE_TIMESTAMP,
    OFFSET_TIMESTAMP,
    RAW_COLUMNS,
    REQUIRED_COLUMNS,
    SQL_TYPES,
    amount_problem_sql,
    encode_id_sql,
    original_column,
    original_id_sql,
)
from fraud_pipeline.lib.warehouse import literal_path, table_count, write_transaction

KINDS = ("transactions", "chargebacks", "users")
FORMATS = (".csv", ".parquet")
NAIVE_POLICIES = ("reject", "utc")
DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The setting (environment variable) that sets the first day partition, e.g. ``2018-04-01``.
PARTITION_START_VARIABLE = "FRAUD_PIPELINE_PARTITION_START"

_OFFSET_TS, _NAIVE_TS = OFFSET_TIMESTAMP, NAIVE_TIMESTAMP
#: Names a landing table uses for itself; an extra column of that name is ignored.
_RESERVED = frozenset({"day", "file", "row_number", "problems", "raw"})


@dataclass(frozen=True)
class FileSchema:
    """The columns of one kind of input file.

    Attributes:
        kind: ``transactions``, ``chargebacks`` or ``users``.
        typed: Column -> type (``id``, ``timestamp``, ``amount``) of the columns parsed and checked.
        required: The columns a file must have; a file without one is refused.
        optional: Text columns that become NULL when the file lacks them.
    """

    kind: str
    typed: dict[str, str]
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def originals(self) -> tuple[str, ...]:
        """The columns keeping the original text of string ids."""
        return tuple(original_column(c) for c, t in self.typed.items() if t == "id")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns every landed row has, in the landing table's order."""
        return (*self.typed, *self.optional, *self.originals)

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns read from the file."""
        return (*self.typed, *self.optional)

    @property
    def timestamps(self) -> tuple[str, ...]:
        return tuple(c for c, t in self.typed.items() if t == "timestamp")


def _file_schema(kind: str) -> FileSchema:
    typed = {c: t for c, t in RAW_COLUMNS[kind].items() if t != "text"}
    optional = tuple(c for c, t in RAW_COLUMNS[kind].items() if t == "text")
    return FileSchema(kind, typed, REQUIRED_COLUMNS[kind], optional)


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
    extra_columns: list[str] = field(default_factory=list)


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
    """Creates the landing, manifest and quarantine tables when they do not exist yet.

    A landing table starts with its kind's columns; the extra columns of transactions files are
    added (as VARCHAR) when a file first carries them.
    """
    for kind, schema in SCHEMAS.items():
        columns = ", ".join(
            [f"{c} {_SQL_TYPES[t]}" for c, t in schema.typed.items()]
            + [f"{c} VARCHAR" for c in (*schema.optional, *schema.originals)]
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {landing_table(kind)} (day DATE, file VARCHAR, row_number BIGINT, {columns})"
        )
        # a warehouse landed before string ids were kept
        for original in schema.originals:
            con.execute(f"ALTER TABLE {landing_table(kind)} ADD COLUMN IF NOT EXISTS {original} VARCHAR")
    con.execute(
        "CREATE TABLE IF NOT EXISTS landing_files (day DATE, kind VARCHAR, file VARCHAR, sha256 VARCHAR, "
        "rows_in BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT, ignored_columns VARCHAR, extra_columns VARCHAR)"
    )
    # a warehouse landed before extra columns were kept
    con.execute("ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS extra_columns VARCHAR")
    _create_id_dictionaries(con)
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


def landed_extra_columns(con) -> tuple[str, ...]:
    """The extra columns ``landing_transactions`` holds (beyond the raw table's), by name.

    By name, not in the order they were added: the known tables then have the same columns whatever
    order the days were landed in.
    """
    known = {"day", "file", "row_number", *SCHEMAS["transactions"].columns}
    return tuple(
        sorted(
            name
            for (name,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'landing_transactions' "
                "AND schema_name = current_schema() AND database_name = current_database() ORDER BY column_index"
            ).fetchall()
            if name not in known
        )
    )


def _extra_name(name: str, keywords: frozenset[str]) -> str | None:
    """The landing name of an extra column (lower-cased), or None when the name cannot be kept as a column.

    A kept name is a plain identifier that is no SQL keyword (it is then usable unquoted in every
    statement and as a key in a feature spec); any other name is listed with the ignored columns.
    """
    key = name.strip().lower()
    if not EXTRA_COLUMN_NAME.match(key) or key in _RESERVED or key in keywords or key.endswith("_original"):
        return None
    return key


def _sql_keywords(con) -> frozenset[str]:
    return frozenset(
        name
        for (name,) in con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category NOT IN ('unreserved', 'column_name')"
        ).fetchall()
    )


@dataclass(frozen=True)
class RawFile:
    """What reading a file's header found: the kind's columns it has, the extras kept, the columns ignored."""

    present: frozenset[str]
    extras: list[str]
    ignored: list[str]


def _read_raw(con, day_file: DayFile, table: str) -> RawFile:
    """Loads a file as text columns into a temp table with row numbers (extras of a transactions file included)."""
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
    extras: dict[str, str] = {}
    if schema.kind == "transactions":
        keywords = _sql_keywords(con)
        for key, name in by_name.items():
            extra = _extra_name(key, keywords)
            if key not in schema.text_columns and extra is not None:
                extras[extra] = name
        if len(extras) > MAX_EXTRA_COLUMNS:
            raise FileRejected(
                path,
                f"{len(extras)} extra columns; at most {MAX_EXTRA_COLUMNS} are kept (drop the ones no feature uses)",
            )
    selected = ", ".join(
        [
            f'CAST("{_sql_name(by_name[c])}" AS VARCHAR) AS {c}' if c in by_name else f"NULL::VARCHAR AS {c}"
            for c in schema.text_columns
        ]
        + [f'CAST("{_sql_name(name)}" AS VARCHAR) AS {extra}' for extra, name in extras.items()]
    )
    try:
        # insertion order is the file's row order, so rowid + 1 is the data row number
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {selected} FROM {source}", [literal])
    except Exception as error:
        raise FileRejected(path, f"cannot be read as {path.suffix[1:]}: {str(error).splitlines()[0]}") from None
    ignored = sorted(name for key, name in by_name.items() if key not in schema.text_columns and key not in extras)
    return RawFile(frozenset(c for c in schema.text_columns if c in by_name), list(extras), ignored)


def _sql_name(name: str) -> str:
    return name.replace('"', '""')


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


def _checks(
    schema: FileSchema, naive_policy: str, mixed: bool, present: frozenset[str], extras: list[str]
) -> tuple[list[str], list[str]]:
    """SQL for the parsed value of each column (over the trimmed text ``t_<column>``) and for each problem.

    A typed column the file does not have (an optional one, e.g. a users file without
    ``created_at``) is NULL on every row without a problem; one it has must hold a valid value.
    """
    parsed, problems = [], []
    for column, kind in schema.typed.items():
        text = f"_t_{column}"
        missing = f"WHEN {text} IS NULL THEN '{column}: missing value'" if column in present else ""
        if kind == "id":
            # an id written as an integer is that integer; any other text is a string id, hashed
            parsed.append(f"{encode_id_sql(text)} AS {column}")
            parsed.append(f"{original_id_sql(text)} AS {original_column(column)}")
            problems.append(
                f"CASE {missing} "
                f"WHEN regexp_full_match({text}, '(?:{DECIMAL_ID})') THEN '{column}: looks like a decimal number (' || {text} || '); "
                f"write an integer id without a decimal part, or a string id that is not a number' "
                f"WHEN length({text}) > {MAX_ID_LENGTH} THEN '{column}: longer than {MAX_ID_LENGTH} characters' END"
            )
        elif kind == "amount":
            parsed.append(f"TRY_CAST({text} AS DOUBLE) AS {column}")
            problems.append(f"CASE {missing} ELSE {amount_problem_sql(column, text, column)} END")
        else:
            parsed.append(
                f"CASE WHEN regexp_full_match({text}, '{_OFFSET_TS}') THEN timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ)) "
                f"WHEN regexp_full_match({text}, '{_NAIVE_TS}') THEN TRY_CAST({text} AS TIMESTAMP) END AS {column}"
            )
            parsed.append(f"regexp_full_match({text}, '{_NAIVE_TS}') AS _naive_{column}")
            naive_rule = (
                f"WHEN _naive_{column} THEN '{column}: mixed timezones (naive timestamp in a file whose other timestamps carry an offset): ' || {text} "
                if mixed
                else (
                    f"WHEN _naive_{column} THEN '{column}: naive timestamp (no offset) rejected: ' || {text} "
                    if naive_policy == "reject"
                    else ""
                )
            )
            problems.append(
                f"CASE {missing} WHEN {text} IS NOT NULL AND {column} IS NULL THEN '{column}: unparseable timestamp (' || {text} || ')' "
                f"{naive_rule}"
                f"WHEN {column} < $earliest THEN '{column}: out of range (before {EARLIEST_PLAUSIBLE:%Y-%m-%d}): ' || {text} "
                f"WHEN {column} >= $day_end THEN '{column}: out of range (after the end of its day folder): ' || {text} END"
            )
    parsed += [f"_t_{c} AS {c}" for c in (*schema.optional, *extras)]
    return parsed, problems


def _timestamp_styles(con, table: str, schema: FileSchema) -> tuple[int, int]:
    """How many timestamp cells of the file carry an offset and how many are naive."""
    value = " UNION ALL ".join(f"SELECT {_trimmed(c)} AS v FROM {table}" for c in schema.timestamps)
    return con.execute(
        f"SELECT count(*) FILTER (regexp_full_match(v, '{_OFFSET_TS}')), count(*) FILTER (regexp_full_match(v, '{_NAIVE_TS}')) "
        f"FROM ({value})"
    ).fetchone()


def _validate(
    con, day: date, day_file: DayFile, table: str, naive_policy: str, extras: list[str], present: frozenset[str]
) -> tuple[int, int, int]:
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
    parsed, problems = _checks(schema, naive_policy, bool(naive and with_offset), present, extras)
    params = {"earliest": EARLIEST_PLAUSIBLE, "day_end": datetime.combine(day, datetime.min.time()) + timedelta(days=1)}
    read = [*schema.text_columns, *extras]
    texts = ", ".join(f"{_trimmed(c)} AS _t_{c}" for c in read)
    raw = f"to_json(struct_pack({', '.join(f'{c} := _t_{c}' for c in read)}))"
    columns = ", ".join([*schema.columns, *extras])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table}_checked AS "
        f"WITH texts AS (SELECT rowid + 1 AS row_number, {texts} FROM {table}), "
        f"parsed AS (SELECT *, {', '.join(parsed)} FROM texts) "
        f"SELECT row_number, {columns}, "
        f"list_filter([{', '.join(problems)}], lambda p: p IS NOT NULL) AS problems, {raw} AS raw FROM parsed",
        params,
    )
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
            FileReport(kind, name, sha, rows_in, loaded, quarantined, _names(ignored_columns), _names(extra_columns))
            for kind, name, sha, rows_in, loaded, quarantined, ignored_columns, extra_columns in con.execute(
                "SELECT kind, file, sha256, rows_in, rows_loaded, rows_quarantined, ignored_columns, extra_columns "
                "FROM landing_files WHERE day = ? ORDER BY file",
                [day],
            ).fetchall()
        ]
        return DayReport(day, True, reports, ignored)

    reports, staged = [], []
    try:
        for index, day_file in enumerate(files):
            table = f"stage_{index}"
            raw = _read_raw(con, day_file, table)
            n_in, n_good, n_bad = _validate(con, day, day_file, table, naive_policy, raw.extras, raw.present)
            staged.append((day_file, table))
            reports.append(
                FileReport(
                    day_file.kind,
                    day_file.path.name,
                    hashes[day_file.path.name],
                    n_in,
                    n_good,
                    n_bad,
                    raw.ignored,
                    raw.extras,
                )
            )
        _write_day(con, day, day_folder, staged, reports)
    finally:
        for index in range(len(files)):
            for suffix in ("", "_checked", "_good", "_bad"):
                con.execute(f"DROP TABLE IF EXISTS stage_{index}{suffix}")
    return DayReport(day, False, reports, ignored)


def _names(joined: str | None) -> list[str]:
    return joined.split(",") if joined else []


def _write_day(con, day: date, day_folder: Path, staged: list[tuple[DayFile, str]], reports: list[FileReport]) -> None:
    # the landing tables are not a night's tables: nothing to stamp
    with write_transaction(con, (), doing=f"landing the files of {day.isoformat()}"):
        for kind in KINDS:
            con.execute(f"DELETE FROM {landing_table(kind)} WHERE day = ?", [day])
        con.execute("DELETE FROM quarantine WHERE stage = 'file' AND day = ?", [day])
        con.execute("DELETE FROM landing_files WHERE day = ?", [day])
        for extra in dict.fromkeys(e for r in reports for e in r.extra_columns):
            con.execute(f"ALTER TABLE landing_transactions ADD COLUMN IF NOT EXISTS {extra} VARCHAR")
        for (day_file, table), report in zip(staged, reports):
            columns = ", ".join([*SCHEMAS[day_file.kind].columns, *report.extra_columns])
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
                "INSERT INTO landing_files (day, kind, file, sha256, rows_in, rows_loaded, rows_quarantined, "
                "ignored_columns, extra_columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    day,
                    report.kind,
                    report.file,
                    report.sha256,
                    report.rows_in,
                    report.rows_loaded,
                    report.rows_quarantined,
                    ",".join(report.ignored_columns),
                    ",".join(report.extra_columns),
                ],
            )
        collision = id_collision(con, day)
        if collision is not None:
            raise FileRejected(day_folder / collision.file, collision.reason)


#: Where each id namespace lives: the same text gets the same key in every column of its namespace.
ID_NAMESPACES = {
    "transaction_id": (("landing_transactions", "transaction_id"), ("landing_chargebacks", "transaction_id")),
    "user_id": (("landing_transactions", "user_id"), ("landing_users", "user_id")),
    "merchant_id": (("landing_transactions", "merchant_id"),),
}


def id_dictionary(namespace: str) -> str:
    """The table of the distinct (key, original text) pairs landed for an id namespace (e.g. ``landing_ids_user_id``)."""
    return f"landing_ids_{namespace}"


def _create_id_dictionaries(con) -> None:
    """Creates each namespace's id dictionary, filled from the landing tables when it is new (an older warehouse)."""
    for name, places in ID_NAMESPACES.items():
        table = id_dictionary(name)
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
            "AND schema_name = current_schema() AND database_name = current_database()",
            [table],
        ).fetchone()[0]
        if not exists:
            pairs = " UNION ".join(f"SELECT {c} AS id, {original_column(c)} AS original FROM {t}" for t, c in places)
            con.execute(f"CREATE TABLE {table} AS SELECT DISTINCT id, original FROM ({pairs})")


@dataclass(frozen=True)
class IdCollision:
    """Two different ids with one integer key: the file of the day holding it and the one-line reason."""

    file: str
    reason: str


def id_collision(con, day: date) -> IdCollision | None:
    """Where and why the ids landed for ``day`` cannot be told apart from every id landed before, or None.

    Two different texts that hash to one key (or a string id hashing to an integer id written
    elsewhere) would silently merge two customers, merchants or transactions: the day is refused
    instead. Each namespace's distinct (key, text) pairs are kept in its id dictionary
    (:func:`id_dictionary`), so a day is checked against the ids seen so far rather than every landed
    row, and its new pairs are added. A pair stays known after its day is landed again with other ids
    (``ingest --rebuild`` forgets), which can only refuse a true collision with a text once landed.
    """
    for name, places in ID_NAMESPACES.items():
        table = id_dictionary(name)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE day_ids AS "
            + " UNION ".join(
                f"SELECT {c} AS id, {original_column(c)} AS original FROM {t} WHERE day = $day" for t, c in places
            ),
            {"day": day},
        )
        try:
            found = con.execute(
                "SELECT id, list(coalesce(original, CAST(id AS VARCHAR) || ' (written as an integer)') "
                "ORDER BY original NULLS FIRST)[1:2] FROM (SELECT id, original FROM day_ids UNION "
                f"SELECT k.id, k.original FROM {table} AS k SEMI JOIN day_ids AS d ON k.id = d.id) "
                "GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 1"
            ).fetchone()
            if found is not None:
                key, (first, second) = found
                where = " UNION ALL ".join(
                    f"SELECT file, row_number FROM {t} WHERE day = $day AND {c} = $key" for t, c in places
                )
                file, row = con.execute(
                    f"SELECT file, row_number FROM ({where}) ORDER BY file, row_number LIMIT 1",
                    {"day": day, "key": key},
                ).fetchone()
                return IdCollision(
                    file,
                    f"row {row}, column {name}: {first!r} and {second!r} get the same integer key {key} (a hash "
                    "collision of string ids); nothing of this day is written: rename one of the two ids",
                )
            con.execute(
                f"INSERT INTO {table} SELECT d.id, d.original FROM day_ids AS d ANTI JOIN {table} AS k ON d.id = k.id"
            )
        finally:
            con.execute("DROP TABLE IF EXISTS day_ids")
    return None


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


def partition_start(value: str | None) -> date:
    """The first day partition: ``value`` (``YYYY-MM-DD``) when set, else the earliest plausible day.

    The default lets folders of any plausible date land with no setting (a timestamp before it is
    quarantined anyway); setting a later start only shortens the partition range the UI shows.

    Raises:
        ValueError: ``value`` is not a day from the earliest plausible one on, in one line naming the setting.
    """
    earliest = EARLIEST_PLAUSIBLE.date()
    if not value or not value.strip():
        return earliest
    try:
        start = date.fromisoformat(value.strip())
    except ValueError as error:
        raise ValueError(f"{PARTITION_START_VARIABLE}={value}: not a day of the form YYYY-MM-DD ({error})") from None
    if start < earliest:
        raise ValueError(
            f"{PARTITION_START_VARIABLE}={value}: before {earliest.isoformat()}, the earliest timestamp landing accepts"
        )
    return start


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
                problem = (
                    f"before the first day partition ({first_day.isoformat()}; set {PARTITION_START_VARIABLE} "
                    "to an earlier day to land it)"
                )
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
