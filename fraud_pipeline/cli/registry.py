"""Registry commands: show the champion and the versions, roll back, score a file with the champion."""

from __future__ import annotations

from fraud_pipeline.deployment.serving import FILE_COLUMNS
from fraud_pipeline.lib.schema import sql_casts


def registry_command(args) -> int:
    """Shows the registry, or moves the champion pointer back to an earlier version."""
    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline.resources import data_dir

    store = ModelRegistryStore(data_dir() / "registry")
    if args.command == "rollback":
        if args.version not in store.versions():
            print(
                f"no model version {args.version!r} in {store.root}; versions: {', '.join(store.versions()) or 'none'}"
            )
            return 2
        pointer = store.promote(
            args.version, as_of=store.read_bundle(args.version)["windows"]["as_of"], reason="manual rollback"
        )
        print(f"champion is now {pointer['version']} (was {pointer['previous_version']})")
        return 0
    champion = store.champion()
    print(f"champion: {champion['version'] if champion else 'none'}")
    for version in store.versions():
        bundle = store.read_bundle(version)
        evaluation = bundle["evaluation"]
        print(
            f"  {version}  as_of {bundle['windows']['as_of'][:10]}  test cost {evaluation['total_cost']:,.0f}  "
            f"AP {evaluation['average_precision']:.3f}"
        )
    return 0


def score_file(path: str, out: str) -> int:
    """Scores a file of transactions with the champion against the warehouse's history."""
    import duckdb

    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline.deployment.serving import ScoringModels, score_new_transactions
    from fraud_pipeline.resources import data_dir

    store = ModelRegistryStore(data_dir() / "registry")
    champion = store.champion()
    if champion is None:
        print("no champion in the registry: run the pipeline first (python3 tasks.py run)")
        return 2
    reader = "read_parquet" if path.endswith(".parquet") else "read_csv"
    with duckdb.connect(str(data_dir() / "warehouse.duckdb"), read_only=True) as con:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [path]).fetchall()}
        missing = [c for c in FILE_COLUMNS if c not in present]
        if missing:
            print(
                f"{path}: missing required column(s) {', '.join(missing)}; a file to score needs {', '.join(FILE_COLUMNS)}"
            )
            return 2
        casts = sql_casts("transactions")
        # an unreadable value becomes NULL here and the row goes to review naming the field
        con.execute(
            "CREATE TEMP TABLE new_transactions AS SELECT "
            + ", ".join(f"TRY_CAST({c} AS {t}) AS {c}" for c, t in casts.items())
            + f" FROM {reader}(?)",
            [path],
        )
        n_rows = con.execute("SELECT count(*) FROM new_transactions").fetchone()[0]
        decisions = score_new_transactions(
            con, "new_transactions", ScoringModels.from_candidate(store.scoring_bundle(champion["version"]))
        )
    decisions["model_version"] = champion["version"]
    decisions.to_csv(out, index=False)
    print(
        f"scored {len(decisions)} of {n_rows} rows with {champion['version']}: "
        + ", ".join(f"{route} {n}" for route, n in decisions["route"].value_counts().sort_index().items())
        + f"; {int(decisions['alert'].sum())} alerts -> {out}"
    )
    return 0
