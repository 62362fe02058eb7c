"""Benchmark: the whole job per stage at several world sizes, and the SQL features against pandas.

    python3 tasks.py bench                       # 1M and 10M transactions
    python3 tasks.py bench --sizes 500000 --repeat 3

Each size runs in its own process (so its peak RSS is its own) against a fresh DuckDB file under
``data/benchmark/``. The job runs in process exactly as ``tasks.py run`` does; stage times come from
the run's step events. Then the point-in-time features are rebuilt with the DuckDB SQL and with the
pandas reference (:mod:`fraud_pipeline.core.pandas_features`) on the same tables, the values are
compared, and the ratio is printed.
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

STAGES = {
    "world generation + load": ("raw_tables",),
    "contracts": ("transactions_transaction_contract", "chargebacks_chargeback_contract"),
    "labels": ("label_delay_profile", "transaction_labels"),
    "features": ("transaction_features",),
    "feature leakage checks": (
        "transaction_features_features_match_oracle", "transaction_features_features_ignore_the_future",
    ),
    "missingness contracts + default signal": (
        "transaction_features_feature_missingness_contract", "training_set_training_set_missingness_contract",
        "training_set_no_default_signal",
    ),
    "training set": ("training_windows", "training_set"),
    "training": ("fraud_model",),
    "evaluation": ("model_evaluation",),
    "outage replay": ("outage_replay", "outage_replay_unavailable_history_not_misread"),
    "gates + deploy": (
        "training_windows_windows_valid", "training_set_mature_labels_only", "training_set_min_frauds_per_window",
        "training_set_labels_complete_enough", "model_evaluation_cost_beats_baselines", "deployed_model",
    ),
    "batch scores": ("batch_scores",),
}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _step_durations(instance, run_id: str) -> dict[str, float]:
    import dagster as dg

    starts, durations = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            durations[event.step_key] = entry.timestamp - starts[event.step_key]
    return durations


def compare_frames(sql_frame, pandas_frame, columns) -> dict[str, int]:
    """Mismatching rows per feature: NULL-ness must agree exactly, values within 1e-9 relative."""
    mismatches = {}
    for column in columns:
        a = sql_frame[column].to_numpy(dtype=float)
        b = pandas_frame[column].to_numpy(dtype=float)
        same_null = np.isnan(a) == np.isnan(b)
        close = np.isclose(a, b, rtol=1e-9, atol=0.0) | (np.isnan(a) & np.isnan(b))
        bad = int((~(same_null & close)).sum())
        if bad:
            mismatches[column] = bad
    return mismatches


def run_one(n_transactions: int, folder: Path) -> dict:
    """Runs the job once on a fresh world of the given size and times the feature engines."""
    import dagster as dg
    import duckdb

    from fraud_pipeline.__main__ import run_config
    from fraud_pipeline.core.features import FEATURES, transaction_features_sql
    from fraud_pipeline.core.pandas_features import pandas_features
    from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources
    from fraud_pipeline.resources import SimulatedWorld
    from fraud_pipeline.schedules import fraud_pipeline_job

    shutil.rmtree(folder, ignore_errors=True)
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=n_transactions)}
    job = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[fraud_pipeline_job],
                         resources=resources).resolve_job_def("fraud_pipeline_job")
    config = run_config("2025-07-01", None, None)
    config["loggers"]["console"]["config"]["log_level"] = "WARNING"
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
        end_to_end = time.perf_counter() - started
        steps = _step_durations(instance, result.run_id)
    stages = {name: sum(steps.get(k, 0.0) for k in keys) for name, keys in STAGES.items()}
    rss_after_job = _peak_rss_gib()

    history = [f.name for f in FEATURES if f.history or f.name == "account_age_days"]
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        n_rows = con.execute("SELECT count(*) FROM transactions").fetchone()[0]
        started = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TEMP TABLE bench_features AS {transaction_features_sql()}")
        sql_seconds = time.perf_counter() - started
        sql_frame = con.execute(f"SELECT transaction_id, {', '.join(history)} FROM bench_features ORDER BY transaction_id").df()
        transactions = con.execute("SELECT * FROM transactions ORDER BY transaction_id").df()
        chargebacks = con.execute("SELECT * FROM chargebacks").df()
        users = con.execute("SELECT * FROM users").df()
    started = time.perf_counter()
    pandas_frame = pandas_features(transactions, chargebacks, users)
    pandas_seconds = time.perf_counter() - started
    mismatches = compare_frames(sql_frame, pandas_frame, history)
    evaluation = result.output_for_node("model_evaluation") if result.success else {}
    return {
        "n_transactions": int(n_rows),
        "success": bool(result.success),
        "end_to_end_seconds": end_to_end,
        "stages": stages,
        "sql_feature_seconds": sql_seconds,
        "pandas_feature_seconds": pandas_seconds,
        "feature_mismatches": mismatches,
        "peak_rss_gib_job": rss_after_job,
        "peak_rss_gib": _peak_rss_gib(),
        "average_precision": evaluation.get("average_precision"),
        "savings_vs_approve_all_pct": evaluation.get("savings_vs_approve_all_pct"),
    }


def _print_table(results: list[dict]) -> None:
    sizes = sorted({r["n_transactions"] for r in results})
    by_size = {n: [r for r in results if r["n_transactions"] == n] for n in sizes}
    header = "| stage | " + " | ".join(f"{n:,} tx: s (rows/s)" for n in sizes) + " |"
    print(header)
    print("|---|" + "---|" * len(sizes))
    for stage in [*STAGES, "end to end (job)"]:
        cells = []
        for n in sizes:
            key = (lambda r: r["end_to_end_seconds"]) if stage.startswith("end") else (lambda r, s=stage: r["stages"][s])
            seconds = median(key(r) for r in by_size[n])
            cells.append(f"{seconds:.2f} ({n / seconds / 1e6:.2f} M)" if seconds > 0 else "-")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    for label, key in [("features SQL, rebuilt alone", "sql_feature_seconds"), ("features pandas reference", "pandas_feature_seconds")]:
        cells = [f"{median(r[key] for r in by_size[n]):.2f} ({n / median(r[key] for r in by_size[n]) / 1e6:.2f} M)" for n in sizes]
        print(f"| {label} | " + " | ".join(cells) + " |")
    ratio = [f"{median(r['pandas_feature_seconds'] / r['sql_feature_seconds'] for r in by_size[n]):.1f}x" for n in sizes]
    print("| pandas / SQL | " + " | ".join(ratio) + " |")
    print("| peak RSS (GiB) | " + " | ".join(f"{max(r['peak_rss_gib'] for r in by_size[n]):.2f}" for n in sizes) + " |")
    print("| values equal | " + " | ".join(
        "yes" if all(not r["feature_mismatches"] for r in by_size[n]) else str(by_size[n][0]["feature_mismatches"])
        for n in sizes) + " |")
    print("| job succeeded | " + " | ".join(str(all(r["success"] for r in by_size[n])) for n in sizes) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline.benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (the table shows medians)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args(argv)
    from fraud_pipeline.resources import data_dir

    folder = args.folder or data_dir() / "benchmark"
    if args.one:
        print(json.dumps(run_one(args.one, folder)))
        return 0
    results = []
    for size in args.sizes:
        for attempt in range(args.repeat):
            print(f"running {size:,} transactions ({attempt + 1}/{args.repeat})", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, "-m", "fraud_pipeline.benchmark", "--one", str(size),
                                  "--folder", str(folder)], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return out.returncode
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    _print_table(results)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
