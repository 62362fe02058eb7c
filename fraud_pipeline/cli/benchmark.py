"""Benchmark: the whole job per stage at several world sizes, and the feature engine against pandas.

    python3 tasks.py bench                                 # 1M and 10M transactions, once each
    python3 tasks.py bench --sizes 1000000 --repeat 3      # medians of three runs
    python3 tasks.py bench --sizes 1000000 10000000 30000000  # larger worlds

Each run is its own process against a fresh DuckDB file under ``data/benchmark/``, so its peak RSS
is the pipeline's own. The job runs in process exactly as ``tasks.py run`` does; stage times come
from the run's step events (steps the table does not know are summed as "other" and listed by
name). Then the point-in-time features are rebuilt alone, read to stored, with the pipeline's engine
and with the portable SQL. In another process the pandas reference
(:mod:`fraud_pipeline.features.pandas_reference`) and the engine both compute them from the same frames in
memory (a like-for-like time); every value of both, and of the stored table, is compared, and the
ratios are printed. ``--demo`` also times ``python -m fraud_pipeline run``
on the default world, Dagster start-up included.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
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
        "transaction_features_features_match_oracle",
        "transaction_features_features_ignore_the_future",
    ),
    "missingness contracts + default signal": (
        "transaction_features_feature_missingness_contract",
        "training_set_training_set_missingness_contract",
        "training_set_no_default_signal",
    ),
    "training set": ("training_windows", "training_set"),
    "training": ("fraud_model",),
    "evaluation": ("model_evaluation",),
    "outage replay": ("outage_replay",),
    "gates + deploy": (
        "training_windows_windows_valid",
        "training_set_mature_labels_only",
        "training_set_min_frauds_per_window",
        "training_set_labels_complete_enough",
        # the deploy gate recomputes every gate and records the night's decision; its checks are the gates
        "deploy_gate",
        "deploy_gate_model_learnt_from_its_train_split",
        "deploy_gate_threshold_chosen_on_validation",
        "deploy_gate_model_matrix_keeps_absence",
        "deploy_gate_cost_beats_baselines",
        "deploy_gate_cohort_floors",
        "deploy_gate_evaluation_scores_reproduce",
        "deploy_gate_unavailable_history_not_misread",
        "deployed_model",
    ),
    "batch scores": ("batch_scores",),
    "population drift + report": ("population_drift", "population_drift_cohort_mix_shift", "evaluation_report"),
    "champion monitoring + estimate": (
        "champion_monitoring",
        "champion_monitoring_champion_realised_vs_promised",
        "champion_estimate",
        "champion_estimate_estimated_cost_within_promise",
    ),
    "backtest (retrained folds)": ("backtest", "backtest_backtest_spread"),
}
OTHER = "other"
#: Stages whose rows/s is meaningful (they touch every transaction).
PER_ROW_STAGES = ("world generation + load", "features")


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class RssSampler:
    """Samples this process's resident memory every ``interval`` seconds, so each stage gets its own peak.

    Reads ``/proc/self/statm`` (Linux); elsewhere it records nothing and stages show no peak.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time.time(), GiB)  # wall-clock ok: timing the benchmark
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _read(self) -> float | None:
        try:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * self._page / 1024**3
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is None:
                return
            self.samples.append((time.time(), value))  # wall-clock ok
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, spans: list[tuple[float, float]]) -> float | None:
        """Highest sample inside any of the (start, end) spans, or None without samples there."""
        inside = [gib for at, gib in self.samples if any(start <= at <= end for start, end in spans)]
        return max(inside) if inside else None


def _step_spans(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) wall-clock times of every finished step of the run."""
    import dagster as dg

    starts, spans = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            spans[event.step_key] = (starts[event.step_key], entry.timestamp)
    return spans


def stage_peaks(spans: dict[str, tuple[float, float]], sampler: RssSampler) -> dict[str, float | None]:
    """Peak RSS (GiB) of each stage, over the spans of its steps; unknown steps go to "other"."""
    known = {key for keys in STAGES.values() for key in keys}
    groups = {name: [spans[k] for k in keys if k in spans] for name, keys in STAGES.items()}
    groups[OTHER] = [span for key, span in spans.items() if key not in known]
    return {name: sampler.peak(group) for name, group in groups.items()}


def bucket_steps(steps: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Sums step durations into the known stages; returns (stages incl. "other", the unknown steps)."""
    known = {key for keys in STAGES.values() for key in keys}
    unknown = {k: v for k, v in steps.items() if k not in known}
    stages = {name: sum(steps.get(k, 0.0) for k in keys) for name, keys in STAGES.items()}
    stages[OTHER] = sum(unknown.values())
    return stages, unknown


def compare_frames(engine_frame, pandas_frame, columns) -> dict[str, int]:
    """Mismatching rows per feature: NULL-ness must agree exactly, values within 1e-9 relative.

    Both frames must be in the same row order (the callers sort on transaction_id).
    """
    if len(engine_frame) != len(pandas_frame):
        return {"<rows>": abs(len(engine_frame) - len(pandas_frame))}
    if not np.array_equal(engine_frame["transaction_id"].to_numpy(), pandas_frame["transaction_id"].to_numpy()):
        return {"<transaction_id order>": len(engine_frame)}
    mismatches = {}
    for column in columns:
        a = engine_frame[column].to_numpy(dtype=float)
        b = pandas_frame[column].to_numpy(dtype=float)
        same_null = np.isnan(a) == np.isnan(b)
        close = np.isclose(a, b, rtol=1e-9, atol=0.0) | (np.isnan(a) & np.isnan(b))
        bad = int((~(same_null & close)).sum())
        if bad:
            mismatches[column] = bad
    return mismatches


def bench_spec():
    """The spec the benchmark computes: ``FRAUD_PIPELINE_FEATURE_SPEC`` (``--spec``) or the default spec."""
    from fraud_pipeline.resources import FeatureSpecSettings

    return FeatureSpecSettings.from_environment().spec()


def compared_features(spec=None) -> list[str]:
    """The features both engines compute: every history feature and the account age."""
    spec = spec or bench_spec()
    return [f.name for f in spec.features if f.history or f.derive == "account_age_days"]


def run_job(n_transactions: int, folder: Path) -> dict:
    """Runs the job once on a fresh world of the given size, then rebuilds the features alone with each engine."""
    import dagster as dg
    import duckdb

    from fraud_pipeline.cli.runner import run_config
    from fraud_pipeline.definitions import (
        ALL_ASSETS,
        ALL_CHECKS,
        default_resources,
        fraud_pipeline_job,
    )
    from fraud_pipeline.features.sql import transaction_features_sql
    from fraud_pipeline.features.table import store_transaction_features
    from fraud_pipeline.resources import SimulatedWorld

    shutil.rmtree(folder, ignore_errors=True)
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=n_transactions)}
    job = dg.Definitions(
        assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[fraud_pipeline_job], resources=resources
    ).resolve_job_def("fraud_pipeline_job")
    config = run_config("2025-07-01", None, None)
    config["loggers"]["console"]["config"]["log_level"] = "WARNING"
    with dg.DagsterInstance.ephemeral() as instance, RssSampler() as sampler:
        started_wall = time.time()  # wall-clock ok
        started = time.perf_counter()
        result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
        end_to_end = time.perf_counter() - started
        spans = _step_spans(instance, result.run_id)
    stages, unknown = bucket_steps({key: end - start for key, (start, end) in spans.items()})
    peaks = stage_peaks(spans, sampler)
    deploy_decision = spans["deployed_model"][1] - started_wall if "deployed_model" in spans else None
    rss_after_job = _peak_rss_gib()
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        n_rows = con.execute("SELECT count(*) FROM transactions").fetchone()[0]
        started = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TABLE bench_sql_features AS {transaction_features_sql()}")
        sql_seconds = time.perf_counter() - started
        con.execute("DROP TABLE bench_sql_features")
        started = time.perf_counter()
        store_transaction_features(con, "bench_features", spec=bench_spec())
        engine_seconds = time.perf_counter() - started
    evaluation = result.output_for_node("model_evaluation") if result.success else None
    failed = sorted(
        {e.step_key for e in result.get_step_failure_events()}
        | {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    )
    return {
        "n_transactions": int(n_rows),
        "success": bool(result.success),
        "failed": failed,
        "end_to_end_seconds": end_to_end,
        "deploy_decision_seconds": deploy_decision,
        "stages": stages,
        "stage_peak_rss_gib": peaks,
        "other_steps": unknown,
        "sql_feature_seconds": sql_seconds,
        "engine_feature_seconds": engine_seconds,
        "peak_rss_gib_job": rss_after_job,
        "peak_rss_gib": _peak_rss_gib(),
        "average_precision": evaluation.average_precision if evaluation else None,
        "savings_vs_approve_all_pct": evaluation.savings_vs_approve_all_pct if evaluation else None,
    }


def engine_on_frames(transactions, chargebacks, users, spec=None):
    """The pipeline's engine on the very frames the pandas reference gets, for a like-for-like time.

    Everything the engine needs beyond them is timed too: the sort into time order (DuckDB does it
    in the pipeline), the disputed transactions' keys for the chargebacks, and the account age. The
    result is an Arrow table with NULLs, the form the pipeline hands to DuckDB; rows in time order.
    ``spec`` (default: the default spec) says which features; the default spec goes through
    ``history_arrays`` exactly as the pipeline does.
    """
    import pandas as pd
    import pyarrow as pa

    from fraud_pipeline.features.spec import default_spec
    from fraud_pipeline.features.table import history_arrays, spec_arrays

    spec = spec or default_spec()
    if spec != default_spec():
        return _spec_on_frames(transactions, chargebacks, users, spec, spec_arrays)

    ts, tx = _time_ordered(transactions, ("transaction_id", "user_id", "merchant_id", "amount"))
    disputed = _disputed(chargebacks, transactions, tx, ["user_id", "merchant_id"])
    computed = history_arrays(
        tx["user_id"],
        tx["merchant_id"],
        ts,
        tx["amount"],
        disputed["user_id"],
        disputed["merchant_id"],
        disputed["reported_at"],
    )
    # a hash lookup: a binary search of 10M random ids in the users took 2 s
    found = pd.Index(users["user_id"].to_numpy()).get_indexer(tx["user_id"])
    created = users["created_at"].to_numpy()[found]
    age = (ts - created.astype("datetime64[us]").astype(np.int64)) / 1e6 / 86_400.0
    unknown = (found < 0) | np.isnat(created)  # no such user, or no creation time: NULL, as the SQL's join gives
    return pa.table(
        {"transaction_id": pa.array(tx["transaction_id"]), "account_age_days": pa.array(age, mask=unknown), **computed}
    )


def _micros(series) -> np.ndarray:
    return series.to_numpy().astype("datetime64[us]").astype(np.int64)


def _time_ordered(transactions, names) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The event times and the named columns in (event_time, transaction_id) order.

    Rows already in that order (a check of two comparisons) are taken as they are, as the warehouse's
    sorted read would hand them over; otherwise one lexsort orders them.
    """
    ts = _micros(transactions["event_time"])
    ids = transactions["transaction_id"].to_numpy()
    if len(ts) < 2 or ((ts[1:] >= ts[:-1]).all() and (ids[1:] > ids[:-1]).all()):
        return ts, {name: transactions[name].to_numpy() for name in names}
    order = np.lexsort((ids, ts))
    return ts[order], {name: transactions[name].to_numpy()[order] for name in names}


def _disputed(chargebacks, transactions, tx: dict[str, np.ndarray], keys) -> dict[str, np.ndarray]:
    """Each chargeback's ``reported_at`` (microseconds) and its transaction's key columns, in chargeback order.

    A binary search in the time-ordered ids when they also ascend (the simulator numbers transactions in
    time order), else a join; chargebacks of no known transaction are dropped either way.
    """
    ids = tx["transaction_id"]
    if len(ids) and set(keys) <= set(tx) and (ids[1:] > ids[:-1]).all():
        wanted = chargebacks["transaction_id"].to_numpy()
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        hit = ids[at] == wanted
        found = {c: tx[c][at[hit]] for c in keys}
        return {**found, "reported_at": _micros(chargebacks["reported_at"])[hit]}
    joined = chargebacks[["transaction_id", "reported_at"]].merge(
        transactions[["transaction_id", *keys]], on="transaction_id"
    )
    return {**{c: joined[c].to_numpy() for c in keys}, "reported_at": _micros(joined["reported_at"])}


def _spec_on_frames(transactions, chargebacks, users, spec, spec_arrays):
    """:func:`engine_on_frames` for any spec: the spec's columns in time order, its label keys, the account age."""
    import pandas as pd
    import pyarrow as pa

    engine_columns = dict.fromkeys([*spec.key_columns, *(f.of for f in spec.aggregates if f.of)])
    ts, tx = _time_ordered(transactions, tuple(dict.fromkeys(["transaction_id", "user_id", *engine_columns])))
    label_keys = list(
        dict.fromkeys(c for f in spec.aggregates if f.agg in ("label_count", "label_rate") for c in spec.keys[f.key])
    )
    disputed = _disputed(chargebacks, transactions, tx, label_keys)
    computed = spec_arrays(
        spec,
        {c: tx[c] for c in engine_columns},
        ts,
        {c: disputed[c] for c in label_keys},
        disputed["reported_at"],
    )
    found = pd.Index(users["user_id"].to_numpy()).get_indexer(tx["user_id"])
    created = users["created_at"].to_numpy()[found]
    age = (ts - created.astype("datetime64[us]").astype(np.int64)) / 1e6 / 86_400.0
    unknown = (found < 0) | np.isnat(created)
    return pa.table(
        {"transaction_id": pa.array(tx["transaction_id"]), "account_age_days": pa.array(age, mask=unknown), **computed}
    )


def run_reference(database: Path) -> dict:
    """Times the pandas reference and the engine on the same frames in memory, and compares every value.

    Both are compared with the features the engine stored (``bench_features``), so a wrong value
    in any of the three shows.
    """
    import duckdb

    from fraud_pipeline.features.pandas_reference import pandas_features

    spec = bench_spec()
    columns = compared_features(spec)
    with duckdb.connect(str(database), read_only=True) as con:
        transactions = con.execute("SELECT * FROM transactions ORDER BY transaction_id").df()
        chargebacks = con.execute("SELECT * FROM chargebacks").df()
        users = con.execute("SELECT * FROM users").df()
        stored = con.execute(
            f"SELECT transaction_id, {', '.join(columns)} FROM bench_features ORDER BY transaction_id"
        ).df()
    started = time.perf_counter()
    engine_frame = engine_on_frames(transactions, chargebacks, users, spec)
    engine_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pandas_frame = pandas_features(transactions, chargebacks, users)
    seconds = time.perf_counter() - started
    # a spec the pandas reference does not compute in full is compared on the columns both have
    columns = [c for c in columns if c in pandas_frame.columns]
    engine_frame = engine_frame.to_pandas().sort_values("transaction_id", ignore_index=True)
    return {
        "pandas_feature_seconds": seconds,
        "engine_compute_seconds": engine_seconds,
        "feature_mismatches": compare_frames(stored, pandas_frame, columns),
        "engine_in_memory_mismatches": compare_frames(engine_frame, pandas_frame, columns),
        "peak_rss_gib_pandas": _peak_rss_gib(),
    }


def run_demo() -> float:
    """Seconds for ``python -m fraud_pipeline run`` on the default world, Dagster start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "FRAUD_PIPELINE_DATA_DIR": str(Path(tmp) / "data"),
            "DAGSTER_HOME": str(Path(tmp) / "home"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "GX_ANALYTICS_ENABLED": "False",
        }
        (Path(tmp) / "home").mkdir()
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "fraud_pipeline", "run"], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if out.returncode:
        raise RuntimeError(f"the demo run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "fraud_pipeline.cli.benchmark", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark step {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_size(n_transactions: int, folder: Path) -> dict:
    """One benchmark run at one size: the job in one process, the pandas reference in another."""
    job = _child(["--job", str(n_transactions), "--folder", str(folder)])
    reference = _child(["--reference", str(folder / "warehouse.duckdb")])
    return {**job, **reference}


def _cell(seconds: float, n: int, per_row: bool, rss: float | None = None) -> str:
    if seconds <= 0:
        return "-"
    text = f"{seconds:.1f} ({n / seconds / 1e6:.2f} M/s)" if per_row else f"{seconds:.1f}"
    return text if rss is None else f"{text}; {rss:.2f} GiB"


def format_table(results: list[dict], demo_seconds: list[float] | None = None) -> str:
    """The markdown table of medians per size."""
    sizes = sorted({r["n_transactions"] for r in results})
    by_size = {n: [r for r in results if r["n_transactions"] == n] for n in sizes}
    lines = [
        "| stage | "
        + " | ".join(f"{n:,} tx: s; peak RSS ({len(by_size[n])} run{'s' * (len(by_size[n]) > 1)})" for n in sizes)
        + " |",
        "|---|" + "---|" * len(sizes),
    ]

    def row(label, values, per_row=False, rss=lambda n: None):
        lines.append(f"| {label} | " + " | ".join(_cell(median(values(n)), n, per_row, rss(n)) for n in sizes) + " |")

    def stage_rss(stage):
        def peak(n):
            values = [r.get("stage_peak_rss_gib", {}).get(stage) for r in by_size[n]]
            values = [v for v in values if v is not None]
            return max(values) if values else None

        return peak

    for stage in [*STAGES, OTHER]:
        row(stage, lambda n, s=stage: [r["stages"][s] for r in by_size[n]], stage in PER_ROW_STAGES, stage_rss(stage))
    lines.append(
        "| **generate to deploy decision** (end of `deployed_model`) | "
        + " | ".join(
            (
                f"{median(v):.1f}"
                if (
                    v := [
                        r["deploy_decision_seconds"] for r in by_size[n] if r.get("deploy_decision_seconds") is not None
                    ]
                )
                else "-"
            )
            for n in sizes
        )
        + " |"
    )
    row("**end to end (whole job)**", lambda n: [r["end_to_end_seconds"] for r in by_size[n]], True)
    row(
        "features engine on the frames pandas gets (time sort included)",
        lambda n: [r["engine_compute_seconds"] for r in by_size[n]],
        True,
    )
    row(
        "features pandas reference on the same frames",
        lambda n: [r["pandas_feature_seconds"] for r in by_size[n]],
        True,
    )
    row(
        "features engine, rebuilt alone (DuckDB read to stored)",
        lambda n: [r["engine_feature_seconds"] for r in by_size[n]],
        True,
    )
    row("features portable SQL, rebuilt alone", lambda n: [r["sql_feature_seconds"] for r in by_size[n]], True)
    for label, slower, faster in (
        ("pandas / engine, same frames", "pandas_feature_seconds", "engine_compute_seconds"),
        ("pandas / engine read to stored", "pandas_feature_seconds", "engine_feature_seconds"),
        ("portable SQL / engine, both read to stored", "sql_feature_seconds", "engine_feature_seconds"),
    ):
        lines.append(
            f"| {label} | "
            + " | ".join(f"{median(r[slower] / r[faster] for r in by_size[n]):.1f}x" for n in sizes)
            + " |"
        )
    lines.append(
        "| peak RSS of the job (GiB) | "
        + " | ".join(f"{max(r.get('peak_rss_gib_job', r['peak_rss_gib']) for r in by_size[n]):.2f}" for n in sizes)
        + " |"
    )
    lines.append(
        "| peak RSS of the job process with the rebuilds after it (GiB) | "
        + " | ".join(f"{max(r['peak_rss_gib'] for r in by_size[n]):.2f}" for n in sizes)
        + " |"
    )
    lines.append(
        "| peak RSS of the pandas process (GiB) | "
        + " | ".join(f"{max(r['peak_rss_gib_pandas'] for r in by_size[n]):.2f}" for n in sizes)
        + " |"
    )
    for label, key in (
        ("stored engine features equal pandas", "feature_mismatches"),
        ("in-memory engine features equal pandas", "engine_in_memory_mismatches"),
    ):
        lines.append(
            f"| {label} | "
            + " | ".join(
                "yes" if all(not r[key] for r in by_size[n]) else json.dumps(next(r[key] for r in by_size[n] if r[key]))
                for n in sizes
            )
            + " |"
        )
    lines.append(
        "| job succeeded | "
        + " | ".join(
            "yes"
            if all(r["success"] for r in by_size[n])
            else "no: " + ", ".join(sorted({f for r in by_size[n] for f in r.get("failed", [])}))
            for n in sizes
        )
        + " |"
    )
    others = sorted({k for r in results for k in r["other_steps"]})
    if others:
        lines.append("")
        lines.append(
            "other: "
            + "; ".join(
                f"{k} "
                + "/".join(f"{median(r['other_steps'].get(k, 0.0) for r in by_size[n]):.1f}" for n in sizes)
                + " s"
                for k in others
            )
        )
    if demo_seconds:
        lines.append("")
        lines.append(
            f"default world, `python -m fraud_pipeline run` incl. Dagster start-up: "
            f"{median(demo_seconds):.1f} s (median of {len(demo_seconds)})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline.cli.benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="transactions per world")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (the table shows medians)")
    parser.add_argument("--demo", type=int, default=0, help="also time this many default-world runs through the CLI")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers to this file")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument(
        "--spec", type=Path, default=None, help="a feature spec file to benchmark (default: the built-in default spec)"
    )
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from fraud_pipeline.resources import data_dir

    folder = args.folder or data_dir() / "benchmark"
    if args.spec:
        os.environ["FRAUD_PIPELINE_FEATURE_SPEC"] = str(args.spec.resolve())  # the children inherit it
    if args.job:
        print(json.dumps(run_job(args.job, folder)))
        return 0
    if args.reference:
        print(json.dumps(run_reference(args.reference)))
        return 0
    results = []
    try:
        for size in args.sizes:
            for attempt in range(args.repeat):
                print(f"running {size:,} transactions ({attempt + 1}/{args.repeat})", file=sys.stderr, flush=True)
                results.append(run_size(size, folder))
                last = results[-1]
                print(
                    f"  deploy decision at {last['deploy_decision_seconds'] or float('nan'):.1f} s, "
                    f"end to end {last['end_to_end_seconds']:.1f} s, features {last['stages']['features']:.1f} s, "
                    f"engine read to stored {last['engine_feature_seconds']:.1f} s, engine on frames "
                    f"{last['engine_compute_seconds']:.1f} s, SQL alone {last['sql_feature_seconds']:.1f} s, "
                    f"pandas {last['pandas_feature_seconds']:.1f} s, peak RSS {last['peak_rss_gib']:.2f} GiB, "
                    f"values equal: {not last['feature_mismatches'] and not last['engine_in_memory_mismatches']}, "
                    f"failed: {last['failed'] or 'nothing'}",
                    file=sys.stderr,
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps({"runs": results}, indent=1))
        demo = [run_demo() for _ in range(args.demo)]
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "demo_seconds": demo}, indent=1))
    print(format_table(results, demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
