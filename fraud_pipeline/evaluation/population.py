"""Population shift: cohort performance, drift beside cohort mix, rolling backtests and champion monitoring."""


import math
from datetime import timedelta

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.checks_common import markdown_table
from fraud_pipeline.core.backtest import fold_row, run_fold, spread, spread_findings
from fraud_pipeline.core.cohorts import decompose, projected_mix_effect
from fraud_pipeline.core.costs import CostModel
from fraud_pipeline.core.drift import cohort_mix, feature_drift, mix_shift_findings
from fraud_pipeline.core.features import CATEGORICAL_FEATURES, FEATURE_NAMES
from fraud_pipeline.core.metrics import DEFAULT_COHORTS, cohort_table, evaluate_decisions
from fraud_pipeline.core.model import ModelParams, TrainedModel, score
from fraud_pipeline.core.monitoring import compare, matured_window, shortfalls, with_cost_per_transaction
from fraud_pipeline.core.training_set import training_set_sql
from fraud_pipeline.core.warehouse import fetch_frame
from fraud_pipeline.core.windows import TrainingWindows, rolling_windows
from fraud_pipeline.resources import AFTER_THE_DEPLOY, DUCKDB_POOL, CostSettings, ModelRegistry

DRIFT_COLUMNS = ["feature", "kind", "psi", "ks", "null_share_reference", "null_share_current", "verdict"]
MIX_COLUMNS = ["cohort", "value", "share_reference", "share_current", "share_ratio", "mix_psi",
               "fraud_share_reference", "test_recall", "test_savings_vs_approve_all_pct"]
FOLD_COLUMNS = ["fold", "test_start", "test_end", "n_transactions", "n_frauds", "threshold",
                "savings_vs_approve_all_pct", "average_precision", "recall", "precision", "cost_per_transaction"]


def _plain(value):
    """numpy scalars to Python, so outputs serialise to JSON as they are."""
    return value.item() if hasattr(value, "item") else value


def _plain_rows(rows: list[dict]) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _sample(con, sql: str, params: dict, max_rows: int) -> pd.DataFrame:
    """Rows of a query, at most ``max_rows`` of them, chosen by a hash of transaction_id (same rows every run)."""
    return fetch_frame(con, f"SELECT * FROM ({sql}) ORDER BY hash(transaction_id), transaction_id LIMIT {int(max_rows)}",
                       params)


class DriftConfig(dg.Config):
    """Which traffic is compared and when a cohort-mix shift is worth a warning."""

    recent_days: int = Field(default=30, description="The current sample: transactions in the last this many days before as_of.")
    max_rows: int = Field(default=200_000, description="Largest sample per side (a fixed hash of transaction_id chooses it).")
    n_bins: int = Field(default=10, description="Quantile bins of numeric features (plus a NULL bin).")
    max_share_ratio: float = Field(
        default=1.5, description="Warn when a cohort's share of traffic changes by more than this factor either way."
    )
    min_share: float = Field(default=0.005, description="Cohorts below this share of both samples are not judged.")
    max_mix_psi: float = Field(default=0.1, description="Warn when a cohort split's mix PSI exceeds this.")


@dg.asset(group_name="evaluation", deps=["training_set", "transaction_features"], pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY)
def population_drift(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    training_windows: dict,
    model_evaluation: dict,
    duckdb: DuckDBResource,
) -> dict:
    """Per-feature PSI and KS between the training window and recent traffic, beside the cohort-mix shift, cohort performance and its cost."""
    as_of = TrainingWindows.from_dict(training_windows).as_of
    with duckdb.get_connection() as con:
        reference = _sample(con, "SELECT * FROM training_set WHERE split = 'train'", {}, config.max_rows)
        current = _sample(
            con, "SELECT * FROM transaction_features WHERE event_time >= CAST($start AS TIMESTAMP) AND event_time < CAST($as_of AS TIMESTAMP)",
            {"start": as_of - timedelta(days=config.recent_days), "as_of": as_of}, config.max_rows,
        )
    features = feature_drift(reference, current, FEATURE_NAMES, CATEGORICAL_FEATURES, DEFAULT_COHORTS, config.n_bins)
    performance = {(r["cohort"], r["value"]): r for r in model_evaluation["cohorts"]}
    mix = [
        {**row,
         "test_recall": performance.get((row["cohort"], row["value"]), {}).get("recall", math.nan),
         "test_savings_vs_approve_all_pct": performance.get((row["cohort"], row["value"]), {}).get("savings_vs_approve_all_pct", math.nan)}
        for row in cohort_mix(reference, current, DEFAULT_COHORTS)
    ]
    projection = projected_mix_effect(model_evaluation["cohorts"], mix)
    thresholds = {"max_share_ratio": config.max_share_ratio, "min_share": config.min_share, "max_mix_psi": config.max_mix_psi}
    behaviour = [r["psi"] for r in features if r["kind"] == "behaviour" and r["psi"] == r["psi"]]
    context.add_output_metadata({
        "features": dg.MetadataValue.md(markdown_table(features, DRIFT_COLUMNS)),
        "cohort_mix": dg.MetadataValue.md(markdown_table(mix, MIX_COLUMNS)),
        "projected_mix_effect": dg.MetadataValue.md(markdown_table(projection)),
        "max_behaviour_feature_psi": dg.MetadataValue.float(max(behaviour) if behaviour else math.nan),
        "max_cohort_share_ratio": dg.MetadataValue.float(
            max((r["share_ratio"] for r in mix if math.isfinite(r["share_ratio"])), default=math.nan)),
        "reference_rows": len(reference),
        "current_rows": len(current),
    })
    return {
        "features": _plain_rows(features),
        "cohort_mix": _plain_rows(mix),
        "projected_mix_effect": _plain_rows(projection),
        "thresholds": thresholds,
        "reference": "training window",
        "current": f"last {config.recent_days} days before {as_of:%Y-%m-%d}",
    }


@dg.asset_check(asset="population_drift")
def cohort_mix_shift(population_drift: dict) -> dg.AssetCheckResult:
    """Warns when a cohort's share of traffic moved beyond the threshold since the training window, whatever the feature drift says."""
    findings = mix_shift_findings(population_drift["cohort_mix"], **population_drift["thresholds"])
    quiet = [r["feature"] for r in population_drift["features"] if r["kind"] == "behaviour" and r["verdict"] == "quiet"]
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=("cohort mix shifted: " + "; ".join(findings)) if findings else "no cohort's share moved beyond the thresholds",
        metadata={"findings": dg.MetadataValue.json(findings),
                  "quiet_behaviour_features": len(quiet),
                  "thresholds": dg.MetadataValue.json(population_drift["thresholds"])},
    )


class BacktestConfig(dg.Config):
    """Prequential folds: windows shifted back by the test length, each retrained."""

    n_folds: int = Field(default=3, description="Most folds (fewer when the warmed-up history runs out).")
    train_days: int = Field(default=49, description="Training days per fold.")
    validation_days: int = Field(default=14, description="Validation days per fold (early stopping, threshold).")
    test_days: int = Field(default=14, description="Test days per fold, and the shift between folds.")
    warmup_days: int = Field(default=30, description="Days after the first transaction before training may start.")
    min_train_days: int = Field(default=21, description="Fewest training days for a fold to count.")
    spread_n_std: float = Field(
        default=2.0, description="Warn when the candidate's test savings or AP is more than this many fold std below the fold mean."
    )


@dg.asset(group_name="evaluation", deps=["training_set"], kinds={"lightgbm"}, pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY)
def backtest(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    training_windows: dict,
    fraud_model: dict,
    model_evaluation: dict,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Rolling out-of-time folds, each retrained with the candidate's settings, so the test metrics come with a spread."""
    current = TrainingWindows.from_dict(training_windows)
    cost_model = costs.cost_model()
    params = ModelParams(**fraud_model["params"])
    folds, cohort_rows = [], []
    with duckdb.get_connection() as con:
        first, last = con.execute("SELECT min(event_time), max(event_time) FROM transactions").fetchone()
        plans = rolling_windows(current.as_of, current.horizon_days, first, last, config.n_folds, config.train_days,
                                config.validation_days, config.test_days, config.warmup_days, config.min_train_days)
        for index, windows in enumerate(plans):
            sql, params_sql = training_set_sql(windows)
            # each split read on its own, one fold at a time: at 10M a fold is about 3.7M rows, and a
            # frame of them all plus its split copies held about 2.5 GiB more at the peak
            splits = {name: fetch_frame(con, f"SELECT * FROM ({sql}) WHERE split = $split ORDER BY transaction_id",
                                        {**params_sql, "split": name})
                      for name in windows.splits()}
            headline, cohorts = run_fold(splits, params, cost_model, model_evaluation["rule_amount_threshold"],
                                         model_evaluation.get("review_capacity_k", 50), DEFAULT_COHORTS[0])
            del splits
            folds.append(fold_row(index, windows, headline))
            cohort_rows += [{"fold": index, **row} for row in cohorts]
    summary = spread(folds)
    findings = spread_findings(folds, summary, model_evaluation, config.spread_n_std)
    context.add_output_metadata({
        "folds": dg.MetadataValue.md(markdown_table(folds, FOLD_COLUMNS)),
        "spread": dg.MetadataValue.md(markdown_table([{"metric": k, **v} for k, v in summary.items()])),
        "fold_cohorts": dg.MetadataValue.md(markdown_table(
            cohort_rows, ["fold", "cohort", "value", "n_transactions", "n_frauds", "recall", "savings_vs_approve_all_pct"])),
        "n_folds": len(folds),
        "savings_pct_mean": dg.MetadataValue.float(summary["savings_vs_approve_all_pct"]["mean"]),
        "savings_pct_std": dg.MetadataValue.float(summary["savings_vs_approve_all_pct"]["std"]),
        "average_precision_mean": dg.MetadataValue.float(summary["average_precision"]["mean"]),
        "average_precision_std": dg.MetadataValue.float(summary["average_precision"]["std"]),
    })
    return {"folds": folds, "spread": summary, "cohorts": _plain_rows(cohort_rows), "findings": findings,
            "spread_n_std": config.spread_n_std}


@dg.asset_check(asset="backtest")
def backtest_spread(backtest: dict) -> dg.AssetCheckResult:
    """Warns when the folds lose money on average or the candidate's test metrics sit far below their spread."""
    findings = backtest["findings"]
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(findings) or f"{len(backtest['folds'])} folds save money on average and the candidate is within their spread",
        metadata={"findings": dg.MetadataValue.json(findings)},
    )


class MonitoringConfig(dg.Config):
    """How the champion is watched as its labels mature."""

    window_days: int = Field(default=21, description="Score the newest this many days of labels matured since the deploy.")
    min_frauds: int = Field(default=20, description="Fewer matured frauds than this are reported but not judged.")
    max_savings_drop: float = Field(
        default=0.10, description="Warn when realised savings vs approve-all fall more than this many share points below the promise."
    )
    max_ap_drop: float = Field(
        default=0.30, description="Warn when realised average precision falls more than this share below the promise."
    )


@dg.asset(group_name="evaluation", deps=["transaction_features", "transaction_labels"], pool=DUCKDB_POOL)
def champion_monitoring(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    training_windows: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
) -> dict:
    """The current champion scored on the newest labels matured since its deploy, next to what its evaluation promised."""
    thresholds = {"min_frauds": config.min_frauds, "max_savings_drop": config.max_savings_drop,
                  "max_ap_drop": config.max_ap_drop}
    store = registry.store()
    pointer = store.champion()
    if pointer is None:
        context.add_output_metadata({"status": "no champion yet"})
        return {"status": "no_champion", "thresholds": thresholds}
    bundle = store.scoring_bundle(pointer["version"])
    deployed = TrainingWindows.from_dict(bundle["windows"])
    now = TrainingWindows.from_dict(training_windows)
    window = matured_window(deployed.label_cutoff, now.label_cutoff, config.window_days)
    base = {"champion": pointer["version"], "deployed_as_of": pointer["as_of"], "thresholds": thresholds,
            "deployed_label_cutoff": deployed.label_cutoff.isoformat(), "label_cutoff": now.label_cutoff.isoformat()}
    if window is None:
        context.add_output_metadata({"status": "nothing matured since the deploy", "champion": pointer["version"]})
        return {**base, "status": "nothing_matured"}
    with duckdb.get_connection() as con:
        frame = con.execute(
            """
            SELECT f.*, l.is_fraud FROM transaction_features AS f JOIN transaction_labels AS l USING (transaction_id)
            WHERE l.is_mature AND f.event_time >= CAST($start AS TIMESTAMP) AND f.event_time < CAST($end AS TIMESTAMP)
            ORDER BY transaction_id
            """,
            {"start": window[0], "end": window[1]},
        ).df()
    if frame.empty or not set(bundle["features"]) <= set(frame.columns):
        context.add_output_metadata({"status": "no scorable matured rows", "champion": pointer["version"]})
        return {**base, "status": "nothing_matured", "window": [w.isoformat() for w in window]}
    promised = bundle["evaluation"]
    cost_model = CostModel(**bundle["cost_model"])
    frame["score"] = score(TrainedModel.from_dict(bundle), frame)
    realised = evaluate_decisions(frame, bundle["threshold"], cost_model, promised["rule_amount_threshold"],
                                  int(promised.get("review_capacity_k", 50)))
    realised_cohorts = pd.concat(
        [cohort_table(frame, bundle["threshold"], cost_model, promised["rule_amount_threshold"], spec) for spec in DEFAULT_COHORTS],
        ignore_index=True,
    ).to_dict(orient="records")
    comparison = compare(promised, realised)
    decomposition = decompose(promised["cohorts"], realised_cohorts, promised, realised)
    promised_by_cohort = {(r["cohort"], r["value"]): r for r in promised["cohorts"]}
    cohort_view = [
        {"cohort": r["cohort"], "value": r["value"], "n_frauds": r["n_frauds"], "realised_recall": r["recall"],
         "promised_recall": promised_by_cohort.get((r["cohort"], r["value"]), {}).get("recall", math.nan),
         "realised_average_precision": r["average_precision"],
         "promised_average_precision": promised_by_cohort.get((r["cohort"], r["value"]), {}).get("average_precision", math.nan)}
        for r in realised_cohorts
    ]
    realised_flat = with_cost_per_transaction(realised)
    metadata = {f"realised_{m}": dg.MetadataValue.float(float(realised_flat[m])) for m in ("cost_per_transaction",
                "savings_vs_approve_all_pct", "average_precision", "recall")}
    metadata.update({f"promised_{r['metric']}": dg.MetadataValue.float(r["promised"]) for r in comparison})
    metadata.update({
        f"realised_recall_{r['cohort']}_{r['value']}": dg.MetadataValue.float(float(r["realised_recall"]))
        for r in cohort_view if r["cohort"] == DEFAULT_COHORTS[0].name
    })
    metadata.update({
        "status": "scored",
        "champion": pointer["version"],
        "window": f"{window[0]:%Y-%m-%d}..{window[1]:%Y-%m-%d}",
        "matured_frauds": int(realised["n_frauds"]),
        "realised_vs_promised": dg.MetadataValue.md(markdown_table(comparison)),
        "cohorts": dg.MetadataValue.md(markdown_table(cohort_view)),
        "decomposition_promised_to_realised": dg.MetadataValue.md(markdown_table(decomposition)),
    })
    context.add_output_metadata(metadata)
    return {
        **base,
        "status": "scored",
        "window": [w.isoformat() for w in window],
        "n_transactions": int(realised["n_transactions"]),
        "n_frauds": int(realised["n_frauds"]),
        "comparison": comparison,
        "cohorts": _plain_rows(cohort_view),
        "decomposition": _plain_rows(decomposition),
    }


@dg.asset_check(asset="champion_monitoring")
def champion_realised_vs_promised(champion_monitoring: dict) -> dg.AssetCheckResult:
    """Warns when the champion's realised savings or AP on newly matured labels fall below its promise by more than the margin."""
    status = champion_monitoring["status"]
    if status != "scored":
        reason = "no champion yet" if status == "no_champion" else "no labels have matured since the champion's deploy"
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, description=f"nothing to judge: {reason}",
                                   metadata={"status": status})
    thresholds = champion_monitoring["thresholds"]
    found = shortfalls(champion_monitoring["comparison"], champion_monitoring["n_frauds"], **thresholds)
    judged = champion_monitoring["n_frauds"] >= thresholds["min_frauds"]
    description = ("; ".join(found) if found else
                   ("the champion keeps its promise on " if judged else "too few matured frauds to judge on ")
                   + f"{champion_monitoring['n_frauds']} frauds in {champion_monitoring['window'][0][:10]}..{champion_monitoring['window'][1][:10]}")
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"comparison": dg.MetadataValue.md(markdown_table(champion_monitoring["comparison"])),
                  "findings": dg.MetadataValue.json(found)},
    )
