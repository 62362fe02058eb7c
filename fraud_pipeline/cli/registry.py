"""Registry commands: show the champion and the versions, roll back, score a file with the champion."""

from __future__ import annotations

from pathlib import Path

from fraud_pipeline.deployment.serving import FILE_COLUMNS

#: Exit codes: a user's mistake or an unusable input (2), another process holds the pipeline (3).
USAGE, BUSY = 2, 3


def add_registry_commands(commands) -> None:
    """The ``champion``, ``rollback`` and ``score`` commands."""
    rollback = commands.add_parser("rollback", help="make an earlier model version the champion again")
    rollback.add_argument("version", help="a version listed by `champion`")
    champion = commands.add_parser(
        "champion", help="show the champion, every version in the registry and the nights' deploy decisions"
    )
    champion.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="two versions side by side on the warehouse's matured test window, with one cost model",
    )
    champion.add_argument(
        "--decisions", type=int, default=10, metavar="N", help="how many of the latest decisions to show (default 10)"
    )
    scorer = commands.add_parser("score", help="score a CSV or Parquet file of transactions with the champion")
    scorer.add_argument("file", help=f"columns: {', '.join(FILE_COLUMNS)}")
    scorer.add_argument("--out", required=True, help="where to write the decisions (.parquet writes Parquet, else CSV)")


def registry_command(args) -> int:
    """Shows the registry, or moves the champion pointer back to an earlier version."""
    from fraud_pipeline.deployment.registry import ModelRegistryStore, RegistryError
    from fraud_pipeline.resources import data_dir

    store = ModelRegistryStore(data_dir() / "registry")
    if args.command == "rollback":
        from fraud_pipeline.cli.runner import pipeline_lock
        from fraud_pipeline.lib.runlock import LockHeld

        try:
            with pipeline_lock():
                return _rollback(store, args.version)
        except LockHeld as busy:
            print(busy)
            return BUSY
    if getattr(args, "compare", None):
        return compare_command(store, *args.compare)
    problems = 0
    champion, problem = store.valid_champion()
    if problem:
        problems += 1
        print(f"champion: unreadable, so no valid champion: {problem}")
    else:
        print(f"champion: {champion['version'] if champion else 'none'}")
    for version in store.versions():
        try:
            bundle = store.read_bundle(version)
            evaluation = bundle["evaluation"]
            print(
                f"  {version}  as_of {bundle['windows']['as_of'][:10]}  test cost {evaluation['total_cost']:,.0f}  "
                f"AP {evaluation['average_precision']:.3f}"
            )
        except (RegistryError, KeyError, TypeError, ValueError) as error:
            problems += 1
            reason = str(error) if isinstance(error, RegistryError) else f"bundle lacks {error}"
            print(f"  {version}  unreadable: {reason}")
    try:
        decisions = store.decisions()
    except RegistryError as error:
        print(f"decisions: unreadable: {error}")
        return 1
    shown = decisions[-max(getattr(args, "decisions", 10), 0) :] if decisions else []
    print(f"decisions ({len(shown)} of {len(decisions)}, newest last):" if decisions else "decisions: none yet")
    for event in shown:
        print(
            f"  {str(event.get('as_of', ''))[:10]}  {DECISION_LABELS.get(event['event'], event['event']):<14} "
            f"{event.get('reason', '')}"
        )
    return 1 if problems else 0


#: How ``champion`` names each decision in the history.
DECISION_LABELS = {"promoted": "promoted", "kept_champion": "kept champion", "blocked": "blocked", "refused": "refused"}


def compare_command(store, first: str, second: str) -> int:
    """Prints two versions side by side on the warehouse's matured test window (exit 2 when they cannot be)."""
    import duckdb

    from fraud_pipeline.deployment.compare import CompareError, compare_versions
    from fraud_pipeline.deployment.registry import RegistryError
    from fraud_pipeline.lib.warehouse import open_problem
    from fraud_pipeline.resources import CostSettings, data_dir

    warehouse = data_dir() / "warehouse.duckdb"
    if not warehouse.exists():
        print(f"{warehouse}: no warehouse yet: run the pipeline first (python3 tasks.py run)")
        return USAGE
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            comparison = compare_versions(con, store, first, second, CostSettings().cost_model())
    except (CompareError, RegistryError) as error:
        print(error)
        return USAGE
    except duckdb.Error as error:
        print(open_problem(warehouse, error))
        return USAGE
    a, b = comparison.columns
    print(
        f"{a.version} (trained as_of {a.trained_as_of}) vs {b.version} (trained as_of {b.trained_as_of}) on the "
        f"warehouse's matured test window {comparison.window_start} .. {comparison.window_end}: "
        f"{comparison.n_transactions:,} transactions, {comparison.n_frauds:,} frauds, one cost model"
    )
    width = max(len(a.version), len(b.version), 12)
    print(f"  {'metric':<28} {a.version:>{width}} {b.version:>{width}} {'B - A':>12}  better")
    for row in comparison.rows():
        cells = [_shown(row[key], row["metric"]) for key in (a.version, b.version, "b_minus_a")]
        print(f"  {row['metric']:<28} {cells[0]:>{width}} {cells[1]:>{width}} {cells[2]:>12}  {row.get('better', '')}")
    return 0


def _shown(value, metric: str) -> str:
    """A number rounded for people: counts and costs whole, percentages to 0.1 point, scores to 3 decimals."""
    if value is None or value != value:
        return ""
    if metric.endswith("_pct"):
        return f"{value:.1%}"
    if metric.startswith("n_") or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _rollback(store, version: str) -> int:
    from fraud_pipeline.deployment.registry import RegistryError

    if version not in store.versions():
        print(f"no model version {version!r} in {store.root}; versions: {', '.join(store.versions()) or 'none'}")
        return USAGE
    try:
        bundle = store.check_version(version)
    except RegistryError as error:
        print(f"cannot roll back to {version}: {error}")
        return USAGE
    pointer = store.promote(version, as_of=bundle["windows"]["as_of"], reason="manual rollback")
    print(f"champion is now {pointer['version']} (was {pointer['previous_version']})")
    return 0


def score_file(path: str, out: str) -> int:
    """Scores a file of transactions with the champion against the warehouse's history.

    Every problem a user can cause (no such file, an unreadable file or warehouse, a missing
    column, no valid champion, tables from different nights) is one line and exit code 2.
    """
    import duckdb

    from fraud_pipeline.deployment.registry import ModelRegistryStore, RegistryError
    from fraud_pipeline.deployment.serving import (
        ScoringModels,
        file_columns,
        parse_new_transactions_sql,
        score_new_transactions,
    )
    from fraud_pipeline.ingestion.landing import FileRejected
    from fraud_pipeline.lib.warehouse import (
        WarehouseError,
        literal_path,
        open_problem,
        require_written_together,
    )
    from fraud_pipeline.resources import data_dir

    source, target = Path(path), Path(out)
    if source.suffix.lower() not in (".csv", ".parquet"):
        print(f"{path}: not a .csv or .parquet file")
        return USAGE
    if not source.is_file():
        print(f"{path}: no such file")
        return USAGE
    store = ModelRegistryStore(data_dir() / "registry")
    champion, problem = store.valid_champion()
    if problem:
        print(f"no valid champion to score with: {problem}")
        return USAGE
    if champion is None:
        print("no champion in the registry: run the pipeline first (python3 tasks.py run)")
        return USAGE
    warehouse = data_dir() / "warehouse.duckdb"
    if not warehouse.exists():
        print(f"{warehouse}: no warehouse yet: run the pipeline first (python3 tasks.py run)")
        return USAGE
    try:
        literal = literal_path(source.resolve())
        con = duckdb.connect(str(warehouse), read_only=True)
    except ValueError as error:
        print(f"{path}: {error}")
        return USAGE
    except duckdb.Error as error:
        print(open_problem(warehouse, error))
        return USAGE
    try:
        reader = _reader(source)
    except FileRejected as error:
        con.close()
        print(error)
        return USAGE
    with con:
        con.execute("SET TimeZone = 'UTC'")
        try:
            types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}", [literal]).fetchall()}
        except duckdb.Error as error:
            print(f"{path}: cannot be read as {source.suffix[1:].lower()}: {_first_line(error)}")
            return USAGE
        try:
            models = ScoringModels.from_candidate(store.scoring_bundle(champion["version"]))
        except RegistryError as error:
            print(f"no valid champion to score with: {error}")
            return USAGE
        # the champion's feature spec says which columns a file must carry (a device key needs device_id)
        needed = file_columns(models.spec)
        missing = [c for c in needed if c not in types]
        if missing:
            print(f"{path}: missing required column(s) {', '.join(missing)}; a file to score needs {', '.join(needed)}")
            return USAGE
        try:
            require_written_together(con, ["transactions", "chargebacks", "users"])
            parse = parse_new_transactions_sql(reader, types, models.spec)
            con.execute(f"CREATE TEMP TABLE new_transactions AS {parse}", [literal])
            n_rows = con.execute("SELECT count(*) FROM new_transactions").fetchone()[0]
            known_until = _known_until(con)
            decisions = score_new_transactions(con, "new_transactions", models, known_until=known_until)
        except WarehouseError as error:
            print(error)
            return USAGE
        except duckdb.Error as error:
            print(f"cannot score {path}: {_first_line(error)}")
            return USAGE
    decisions["model_version"] = champion["version"]
    if target.suffix.lower() == ".parquet":
        decisions.to_parquet(target, index=False)
    else:
        decisions.to_csv(target, index=False)
    gap = decisions["reason"].str.startswith("history unavailable: event_time after").sum()
    print(
        f"scored {len(decisions)} of {n_rows} rows with {champion['version']}: "
        + ", ".join(f"{route} {n}" for route, n in decisions["route"].value_counts().sort_index().items())
        + f"; {int(decisions['alert'].sum())} alerts -> {out}"
        + (
            f"; {gap} rows are after the warehouse's as_of {known_until:%Y-%m-%d}, so their history is unknown: "
            "scored by the fallback model (rebuild the warehouse for a later as_of to give them their history)"
            if gap
            else ""
        )
    )
    return 0


def _reader(source: Path) -> str:
    """The DuckDB reader of a file to score (one ``?`` for its path); a CSV is read as landing reads it.

    The CSV format is fixed (comma, double quotes, a header line) and every column is text, parsed
    afterwards, so nothing is sniffed or guessed and a bad value cannot stop the read.
    """
    from fraud_pipeline.ingestion.landing import check_text_file

    if source.suffix.lower() == ".parquet":
        return "read_parquet(?)"
    header = check_text_file(source)
    names = [name.strip() or f"column{i}" for i, name in enumerate(header, start=1)]
    columns = "{" + ", ".join("'" + n.replace("'", "''") + "': 'VARCHAR'" for n in dict.fromkeys(names)) + "}"
    return (
        "read_csv(?, header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
        f"columns = {columns})"
    )


def _known_until(con):
    """The warehouse's as_of: what the raw tables' stamp says, else the latest time they hold."""
    from fraud_pipeline.lib.warehouse import table_stamps

    stamp = table_stamps(con, ["transactions"]).get("transactions")
    if stamp is not None and stamp.as_of is not None:
        return stamp.as_of
    latest = con.execute(
        "SELECT greatest((SELECT max(event_time) FROM transactions), (SELECT max(reported_at) FROM chargebacks))"
    ).fetchone()[0]
    return latest


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
