"""Validating the estimate before the labels mature: estimated as of past nights, compared with what matured.

    python -m fraud_pipeline.cli.estimates                     # the table of docs/estimation.md
    python -m fraud_pipeline.cli.estimates --n-transactions 60000 --nights 4   # a quick look

On a simulated world longer than the default (so that weeks of traffic follow the deploy), the
pipeline runs the deploy night up to the evaluation, and that night's candidate is made champion
through the registry (what is measured is the estimate, not the deploy gates). The pipeline then
builds the raw tables and the point-in-time features once, at the last night: a feature at t uses
only what was known before t, so tonight's table holds every earlier night's rows unchanged. For
each night the labels are rebuilt as known that night (the labels asset's SQL: chargebacks reported
before it, the delay profile measured on them), the serving champion's estimate is made by the
same functions as ``champion_estimate``, and it is compared with the same rows' metrics under the
world's eventual chargebacks (every chargeback the simulator ever reports: the labels fully matured).

Printed: the mean absolute error of cost per transaction, recall and precision and the share of
nights whose realised value lies inside the interval, overall and over every cohort, for the
delay-weighted estimate (Platt and isotonic calibration) beside the labels-only and scores-only
baselines. ``--out`` also receives one CSV row per night and group.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

#: The world and nights of the table in docs/estimation.md.
DEFAULTS = {
    "n_transactions": 500_000,
    "seed": 7,
    "days": 240,
    "deploy": "2025-06-01",
    "every_days": 7,
    "nights": 12,
    "window_days": 28,
    "n_resamples": 100,
}
METRICS = ("cost_per_transaction", "recall", "precision")
#: Prior strength (pseudo-arrivals) of the label-shift variants; the asset's default is the same.
PRIOR_FRAUDS = 10.0
#: The estimates compared: name -> (calibration, prior_frauds, how many cohort splits the shift is found within).
VARIANTS = {
    "platt": ("platt", None, 0),
    "platt_shift": ("platt", PRIOR_FRAUDS, 0),
    "platt_shift_by_age": ("platt", PRIOR_FRAUDS, 1),
    "isotonic": ("isotonic", None, 0),
}
#: A cohort's recall or precision enters the table only when its realised value rests on this many frauds or alerts.
MIN_COUNT = 10


def promote_candidate(store, night) -> str:
    """Makes a night's candidate the champion through the registry, its bundle holding what scoring and the estimate read.

    Args:
        store: The :class:`~fraud_pipeline.deployment.registry.ModelRegistryStore`.
        night: A materialisation result with ``fraud_model``, ``training_windows`` and ``model_evaluation``.
    """
    from fraud_pipeline.lib.costs import CostModel

    candidate = night.output_for_node("fraud_model")
    windows = night.output_for_node("training_windows")
    plain = candidate.as_dict()
    bundle = {
        **{k: v for k, v in plain.items() if k != "model_text"},
        "fallback": {k: v for k, v in plain["fallback"].items() if k != "model_text"},
        "windows": windows.as_dict(),
        "cost_model": asdict(CostModel()),
        "evaluation": night.output_for_node("model_evaluation").as_dict(),
    }
    store.write_bundle(
        candidate.version,
        candidate.main.model.model_text,
        bundle,
        "champion made by the estimate's validation",
        fallback_text=candidate.fallback.model.model_text,
    )
    store.promote(candidate.version, as_of=windows.as_of.isoformat(), reason="made champion to validate the estimate")
    return candidate.version


def labels_as_of(con, as_of: datetime, coverage: float = 0.95) -> float:
    """Rebuilds ``label_completeness`` and ``transaction_labels`` as known at ``as_of`` (the labels assets' SQL); returns the horizon."""
    from fraud_pipeline.labels.maturity import delay_observations_sql, estimate_delay_profile, transaction_labels_sql

    sql, params = delay_observations_sql(as_of)
    observed = con.execute(sql, params).fetchnumpy()
    profile = estimate_delay_profile(observed["delay_days"], observed["truncation_days"], coverage)
    con.register("completeness_frame", profile.steps)
    con.execute("CREATE OR REPLACE TABLE label_completeness AS SELECT * FROM completeness_frame")
    con.unregister("completeness_frame")
    sql, params = transaction_labels_sql(as_of, profile.horizon_days)
    con.execute(f"CREATE OR REPLACE TABLE transaction_labels AS {sql}", params)
    return profile.horizon_days


def night_rows(con, store, as_of: datetime, eventual: set, window_days: int, n_resamples: int) -> list[dict]:
    """One row per group of one night: every estimate beside the realised value."""
    from fraud_pipeline.evaluation.cohorts import cohorts_of
    from fraud_pipeline.lib.costs import CostModel
    from fraud_pipeline.monitoring.estimate import estimate_performance, realised_performance
    from fraud_pipeline.monitoring.recent import champion_cohorts, open_rows, open_window, serving_champion

    event, problem = serving_champion(store, as_of)
    if event is None:
        raise SystemExit(f"no champion serves at {as_of:%Y-%m-%d}: {problem or 'none promoted before'}")
    bundle = store.scoring_bundle(event["version"])
    cost_model = CostModel(**bundle["cost_model"])
    rows = open_rows(con, bundle, open_window(bundle, as_of, window_days))
    truth = rows.frame["transaction_id"].isin(eventual).to_numpy()
    # the champion's own cohorts, those of them the rows can be split by
    cohorts = cohorts_of(rows.frame.columns, champion_cohorts(bundle))
    realised = realised_performance(rows.frame, truth, cost_model, cohorts)
    estimates = {
        name: estimate_performance(
            rows,
            cost_model,
            cohorts,
            method,
            n_resamples,
            seed=0,
            prior_frauds=prior,
            shift_within=cohorts[:splits],
        )
        for name, (method, prior, splits) in VARIANTS.items()
    }
    out = []
    for g, real in enumerate(realised):
        platt = estimates["platt"].rows[g]
        row = {
            "night": f"{as_of:%Y-%m-%d}",
            "cohort": real["cohort"],
            "value": real["value"],
            "n_transactions": real["n_transactions"],
            "n_alerts": real["n_alerts"],
            "realised_frauds": real["expected_frauds"],
            "known_frauds": platt["known_frauds"],
            "mean_completeness": platt["mean_completeness"],
        }
        for m in METRICS:
            row[f"realised_{m}"] = real[m]
            for name in VARIANTS:
                est = estimates[name].rows[g]
                row[f"{name}_{m}"] = est[m]
                row[f"{name}_{m}_low"] = est[f"{m}_low"]
                row[f"{name}_{m}_high"] = est[f"{m}_high"]
            row[f"labels_only_{m}"] = platt[f"labels_only_{m}"]
            row[f"labels_reweighted_{m}"] = platt[f"labels_reweighted_{m}"]
            row[f"scores_only_{m}"] = platt[f"scores_only_{m}"]
        out.append(row)
    return out


def _judged(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows where the realised metric is defined and rests on enough frauds (recall) or alerts (precision)."""
    ok = frame[f"realised_{metric}"].notna()
    if metric == "recall":
        ok &= frame["realised_frauds"] >= MIN_COUNT
    if metric == "precision":
        ok &= frame["n_alerts"] >= MIN_COUNT
    return frame[ok]


def summary(detail: pd.DataFrame) -> list[dict]:
    """Mean absolute error and interval coverage per estimate, for the overall rows and for the cohort rows."""
    table = []
    for scope, part in (
        ("overall", detail[detail["cohort"] == "overall"]),
        ("cohorts", detail[detail["cohort"] != "overall"]),
    ):
        for name in (*VARIANTS, "scores_only", "labels_reweighted", "labels_only"):
            row = {"rows": scope, "estimate": name}
            for m in METRICS:
                judged = _judged(part, m)
                error = (judged[f"{name}_{m}"] - judged[f"realised_{m}"]).abs()
                row[f"mae_{m}"] = float(error.mean()) if len(judged) else math.nan
                if name in VARIANTS:
                    inside = (judged[f"{name}_{m}_low"] <= judged[f"realised_{m}"]) & (
                        judged[f"realised_{m}"] <= judged[f"{name}_{m}_high"]
                    )
                    row[f"coverage_{m}"] = float(inside.mean()) if len(judged) else math.nan
                else:
                    row[f"coverage_{m}"] = math.nan
                row[f"n_{m}"] = len(judged)
            table.append(row)
    return table


def _markdown(rows: list[dict]) -> str:
    from fraud_pipeline.lib.markdown import markdown_table

    return markdown_table(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (for ``main`` here, or a subcommand of ``fraud_pipeline.cli.main``)."""
    parser.add_argument("--n-transactions", type=int, default=DEFAULTS["n_transactions"], help="size of the world")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the world")
    parser.add_argument("--days", type=int, default=DEFAULTS["days"], help="length of the world in days")
    parser.add_argument("--deploy", default=DEFAULTS["deploy"], help="the deploy night (YYYY-MM-DD)")
    parser.add_argument("--every-days", type=int, default=DEFAULTS["every_days"], help="days between estimated nights")
    parser.add_argument("--nights", type=int, default=DEFAULTS["nights"], help="nights estimated after the deploy")
    parser.add_argument("--window-days", type=int, default=DEFAULTS["window_days"], help="days of traffic estimated")
    parser.add_argument("--n-resamples", type=int, default=DEFAULTS["n_resamples"], help="bootstrap resamples")
    parser.add_argument("--work", default=None, help="folder of the warehouse and registry (default: a temporary one)")
    parser.add_argument("--out", default=None, help="CSV file receiving one row per night and group")


def main(argv: list[str] | None = None) -> int:
    """Parses the options and runs the validation; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fraud_pipeline.cli.estimates", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Runs the validation and prints its table; each wrong option is one line (exit code 2)."""
    for name in ("n_transactions", "days", "every_days", "nights", "window_days"):
        if getattr(args, name) < 1:
            print(
                f"--{name.replace('_', '-')}: must be a whole number from 1, got {getattr(args, name)}", file=sys.stderr
            )
            return 2
    try:
        deploy = datetime.fromisoformat(args.deploy)
    except ValueError:
        print(f"--deploy: not a date (YYYY-MM-DD): {args.deploy!r}", file=sys.stderr)
        return 2
    nights = [deploy + timedelta(days=args.every_days * (i + 1)) for i in range(args.nights)]

    import dagster as dg
    import duckdb

    from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources
    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline.ingestion.simulator import simulate_world
    from fraud_pipeline.resources import RunClock, SimulatedWorld

    world = SimulatedWorld(n_transactions=args.n_transactions, seed=args.seed, days=args.days)
    end = datetime.fromisoformat(world.start) + timedelta(days=args.days)
    if nights[-1] > end:
        print(
            f"--nights: the last night {nights[-1]:%Y-%m-%d} is after the world's end {end:%Y-%m-%d}", file=sys.stderr
        )
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fraud_pipeline_estimates_"))
    resources = {**default_resources(work), "world": world}
    landing = dg.AssetSelection.assets("landed_files")
    with dg.DagsterInstance.ephemeral() as instance:
        print(f"deploy night {deploy:%Y-%m-%d}: training the champion in {work}", file=sys.stderr)
        first = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            instance=instance,
            resources={**resources, "clock": RunClock(as_of=args.deploy)},
            selection=dg.AssetSelection.assets("model_evaluation").upstream().without_checks() - landing,
        )
        store = ModelRegistryStore(resources["registry"].root)
        version = promote_candidate(store, first)
        print(f"champion {version}; features until {nights[-1]:%Y-%m-%d}", file=sys.stderr)
        dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS],
            instance=instance,
            resources={**resources, "clock": RunClock(as_of=nights[-1].isoformat())},
            selection=dg.AssetSelection.assets("transaction_features").upstream().without_checks() - landing,
        )
    eventual = set(simulate_world(world.spec()).chargebacks["transaction_id"].tolist())
    detail = []
    with duckdb.connect(str(work / "warehouse.duckdb")) as con:
        for night in nights:
            horizon = labels_as_of(con, night)
            rows = night_rows(con, store, night, eventual, args.window_days, args.n_resamples)
            overall = rows[0]
            print(
                f"{night:%Y-%m-%d} horizon {horizon:g} d: cost/tx estimated {overall['platt_cost_per_transaction']:.4f} "
                f"(shifted {overall['platt_shift_cost_per_transaction']:.4f}) "
                f"realised {overall['realised_cost_per_transaction']:.4f} labels-only "
                f"{overall['labels_only_cost_per_transaction']:.4f}",
                file=sys.stderr,
            )
            detail.extend(rows)
    frame = pd.DataFrame(detail)
    if args.out:
        frame.to_csv(args.out, index=False)
    print(
        f"world {args.n_transactions:,} transactions, seed {args.seed}, {args.days} days; champion of "
        f"{deploy:%Y-%m-%d}; {len(nights)} nights {nights[0]:%Y-%m-%d}..{nights[-1]:%Y-%m-%d}, "
        f"each estimating its last {args.window_days} days"
    )
    print(_markdown([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in summary(frame)]))
    overall = frame[frame["cohort"] == "overall"]
    columns = ["night", "n_transactions", "mean_completeness"] + [
        f"{kind}_{m}"
        for m in ("cost_per_transaction", "recall")
        for kind in ("realised", "platt", "platt_shift", "labels_only")
    ]
    print()
    print(
        _markdown(
            [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                for r in overall[columns].to_dict("records")
            ]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
