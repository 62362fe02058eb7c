"""Monitoring: the population's drift beside its cohort mix, and the champion's realised performance."""

import math
from datetime import timedelta

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.evaluation.cohorts import (
    decompose,
    evaluated_cohorts,
    projected_mix_effect,
    with_cohort_columns,
)
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.policy import policy_of
from fraud_pipeline.lib.records import plain_rows
from fraud_pipeline.lib.warehouse import hash_sample
from fraud_pipeline.monitoring.calibration import METHODS
from fraud_pipeline.monitoring.champion import (
    compare,
    matured_window,
    realised_decisions,
    with_cost_per_transaction,
)
from fraud_pipeline.monitoring.drift import (
    cohort_mix,
    feature_drift,
)
from fraud_pipeline.monitoring.estimate import ESTIMATE_COLUMNS, ChampionEstimate
from fraud_pipeline.monitoring.recent import estimate_champion
from fraud_pipeline.resources import (
    AFTER_THE_DEPLOY,
    DUCKDB_POOL,
    FeatureSpecSettings,
    ModelRegistry,
    RunClock,
)
from fraud_pipeline.training.model import TrainedModel, score
from fraud_pipeline.training.windows import TrainingWindows

DRIFT_COLUMNS = ["feature", "kind", "psi", "ks", "null_share_reference", "null_share_current", "verdict"]


MIX_COLUMNS = [
    "cohort",
    "value",
    "share_reference",
    "share_current",
    "share_ratio",
    "mix_psi",
    "fraud_share_reference",
    "test_recall",
    "test_savings_vs_approve_all_pct",
]


class DriftConfig(dg.Config):
    """Which traffic is compared and when a cohort-mix shift is worth a warning."""

    recent_days: int = Field(
        default=30, description="The current sample: transactions in the last this many days before as_of."
    )
    max_rows: int = Field(
        default=200_000, description="Largest sample per side (a fixed hash of transaction_id chooses it)."
    )
    n_bins: int = Field(default=10, description="Quantile bins of numeric features (plus a NULL bin).")
    max_share_ratio: float = Field(
        default=1.5, description="Warn when a cohort's share of traffic changes by more than this factor either way."
    )
    min_share: float = Field(default=0.005, description="Cohorts below this share of both samples are not judged.")
    max_mix_psi: float = Field(default=0.1, description="Warn when a cohort split's mix PSI exceeds this.")


@dg.asset(
    group_name="monitoring", deps=["training_set", "transaction_features"], pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY
)
def population_drift(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    training_windows: TrainingWindows,
    model_evaluation: ModelEvaluation,
    duckdb: DuckDBResource,
    feature_spec: FeatureSpecSettings,
) -> dict:
    """Per-feature PSI and KS between the training window and recent traffic, beside the cohort-mix shift, cohort performance and its cost."""
    as_of = training_windows.as_of
    spec = feature_spec.spec()
    # the splits the evaluation reported, so the mix sits beside each cohort's test performance
    wanted = evaluated_cohorts(model_evaluation.cohorts)
    with duckdb.get_connection() as con:
        reference = hash_sample(con, "SELECT * FROM training_set WHERE split = 'train'", {}, config.max_rows)
        current = hash_sample(
            con,
            "SELECT * FROM transaction_features WHERE event_time >= CAST($start AS TIMESTAMP) AND event_time < CAST($as_of AS TIMESTAMP)",
            {"start": as_of - timedelta(days=config.recent_days), "as_of": as_of},
            config.max_rows,
        )
        reference, _ = with_cohort_columns(con, reference, wanted)
        current, cohorts = with_cohort_columns(con, current, wanted)
    features = feature_drift(reference, current, spec.names, spec.categorical, cohorts, config.n_bins)
    performance = {(r["cohort"], r["value"]): r for r in model_evaluation.cohorts}
    mix = [
        {
            **row,
            "test_recall": performance.get((row["cohort"], row["value"]), {}).get("recall", math.nan),
            "test_savings_vs_approve_all_pct": performance.get((row["cohort"], row["value"]), {}).get(
                "savings_vs_approve_all_pct", math.nan
            ),
        }
        for row in cohort_mix(reference, current, cohorts)
    ]
    projection = projected_mix_effect(model_evaluation.cohorts, mix)
    thresholds = {
        "max_share_ratio": config.max_share_ratio,
        "min_share": config.min_share,
        "max_mix_psi": config.max_mix_psi,
    }
    behaviour = [r["psi"] for r in features if r["kind"] == "behaviour" and r["psi"] == r["psi"]]
    context.add_output_metadata(
        {
            "features": dg.MetadataValue.md(markdown_table(features, DRIFT_COLUMNS)),
            "cohort_mix": dg.MetadataValue.md(markdown_table(mix, MIX_COLUMNS)),
            "projected_mix_effect": dg.MetadataValue.md(markdown_table(projection)),
            "max_behaviour_feature_psi": dg.MetadataValue.float(max(behaviour) if behaviour else math.nan),
            "max_cohort_share_ratio": dg.MetadataValue.float(
                max((r["share_ratio"] for r in mix if math.isfinite(r["share_ratio"])), default=math.nan)
            ),
            "reference_rows": len(reference),
            "current_rows": len(current),
        }
    )
    return {
        "features": plain_rows(features),
        "cohort_mix": plain_rows(mix),
        "projected_mix_effect": plain_rows(projection),
        "thresholds": thresholds,
        "reference": "training window",
        "current": f"last {config.recent_days} days before {as_of:%Y-%m-%d}",
    }


class MonitoringConfig(dg.Config):
    """How the champion is watched as its labels mature."""

    window_days: int = Field(
        default=21, description="Score the newest this many days of labels matured since the deploy."
    )
    min_frauds: int = Field(default=20, description="Fewer matured frauds than this are reported but not judged.")
    max_savings_drop: float = Field(
        default=0.10,
        description="Warn when realised savings vs approve-all fall more than this many share points below the promise.",
    )
    max_ap_drop: float = Field(
        default=0.30, description="Warn when realised average precision falls more than this share below the promise."
    )


@dg.asset(group_name="monitoring", deps=["transaction_features", "transaction_labels"], pool=DUCKDB_POOL)
def champion_monitoring(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    training_windows: TrainingWindows,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
) -> dict:
    """The current champion, decided by its policy, on the newest labels matured since its deploy, next to what it promised."""
    thresholds = {
        "min_frauds": config.min_frauds,
        "max_savings_drop": config.max_savings_drop,
        "max_ap_drop": config.max_ap_drop,
    }
    store = registry.store()
    pointer, problem = store.valid_champion()
    if problem:
        context.log.error(f"no valid champion to monitor: {problem}")
        context.add_output_metadata({"status": "no valid champion", "reason": problem})
        return {"status": "no_champion", "reason": problem, "thresholds": thresholds}
    if pointer is None:
        context.add_output_metadata({"status": "no champion yet"})
        return {"status": "no_champion", "thresholds": thresholds}
    bundle = store.scoring_bundle(pointer["version"])
    deployed = TrainingWindows.from_dict(bundle["windows"])
    now = training_windows
    window = matured_window(deployed.label_cutoff, now.label_cutoff, config.window_days)
    base = {
        "champion": pointer["version"],
        "deployed_as_of": pointer["as_of"],
        "thresholds": thresholds,
        "deployed_label_cutoff": deployed.label_cutoff.isoformat(),
        "label_cutoff": now.label_cutoff.isoformat(),
    }
    if window is None:
        context.add_output_metadata({"status": "nothing matured since the deploy", "champion": pointer["version"]})
        return {**base, "status": "nothing_matured"}
    promised = bundle["evaluation"]
    with duckdb.get_connection() as con:
        frame = con.execute(
            """
            SELECT f.*, l.is_fraud FROM transaction_features AS f JOIN transaction_labels AS l USING (transaction_id)
            WHERE l.is_mature AND f.event_time >= CAST($start AS TIMESTAMP) AND f.event_time < CAST($end AS TIMESTAMP)
            ORDER BY transaction_id
            """,
            {"start": window[0], "end": window[1]},
        ).df()
        # the champion's promise was cut by these splits; realised is cut the same way
        frame, cohorts = with_cohort_columns(con, frame, evaluated_cohorts(promised.get("cohorts", [])))
        # realised is decided as the champion decides: by its policy, whose cells may need a column of their own
        policy = policy_of(bundle)
        frame, _ = with_cohort_columns(con, frame, policy.splits)
    lacking = [c for c in policy.columns() if c not in frame.columns]
    if lacking:
        raise dg.Failure(
            description=f"champion {pointer['version']}'s decision policy cuts rows by {', '.join(lacking)}, "
            "which the warehouse does not have: nothing monitored"
        )
    if frame.empty or not set(bundle["features"]) <= set(frame.columns):
        context.add_output_metadata({"status": "no scorable matured rows", "champion": pointer["version"]})
        return {**base, "status": "nothing_matured", "window": [w.isoformat() for w in window]}
    frame["score"] = score(TrainedModel.from_dict(bundle), frame)
    realised, realised_cohorts = realised_decisions(frame, bundle, cohorts)
    comparison = compare(promised, realised)
    decomposition = decompose(promised["cohorts"], realised_cohorts, promised, realised)
    promised_by_cohort = {(r["cohort"], r["value"]): r for r in promised["cohorts"]}
    cohort_view = [
        {
            "cohort": r["cohort"],
            "value": r["value"],
            "n_frauds": r["n_frauds"],
            "realised_recall": r["recall"],
            "promised_recall": promised_by_cohort.get((r["cohort"], r["value"]), {}).get("recall", math.nan),
            "realised_average_precision": r["average_precision"],
            "promised_average_precision": promised_by_cohort.get((r["cohort"], r["value"]), {}).get(
                "average_precision", math.nan
            ),
        }
        for r in realised_cohorts
    ]
    realised_flat = with_cost_per_transaction(realised)
    metadata = {
        f"realised_{m}": dg.MetadataValue.float(float(realised_flat[m]))
        for m in ("cost_per_transaction", "savings_vs_approve_all_pct", "average_precision", "recall")
    }
    metadata.update({f"promised_{r['metric']}": dg.MetadataValue.float(r["promised"]) for r in comparison})
    metadata.update(
        {
            f"realised_recall_{r['cohort']}_{r['value']}": dg.MetadataValue.float(float(r["realised_recall"]))
            for r in cohort_view
            if cohorts and r["cohort"] == cohorts[0].name
        }
    )
    metadata.update(
        {
            "status": "scored",
            "champion": pointer["version"],
            "window": f"{window[0]:%Y-%m-%d}..{window[1]:%Y-%m-%d}",
            "matured_frauds": int(realised["n_frauds"]),
            "realised_vs_promised": dg.MetadataValue.md(markdown_table(comparison)),
            "cohorts": dg.MetadataValue.md(markdown_table(cohort_view)),
            "decomposition_promised_to_realised": dg.MetadataValue.md(markdown_table(decomposition)),
        }
    )
    context.add_output_metadata(metadata)
    return {
        **base,
        "status": "scored",
        "window": [w.isoformat() for w in window],
        "n_transactions": int(realised["n_transactions"]),
        "n_frauds": int(realised["n_frauds"]),
        "comparison": comparison,
        "cohorts": plain_rows(cohort_view),
        "decomposition": plain_rows(decomposition),
    }


class EstimateConfig(dg.Config):
    """How the serving champion's performance is estimated before its traffic's labels mature."""

    window_days: int = Field(
        default=28, description="Estimate the newest this many days of transactions (after the champion's test window)."
    )
    calibration: str = Field(
        default="platt", description=f"How scores become probabilities on the validation window: {', '.join(METHODS)}."
    )
    n_resamples: int = Field(default=200, description="Bootstrap resamples of the intervals (0: no intervals).")
    seed: int = Field(default=0, description="Seed of the bootstrap.")
    level: float = Field(default=0.9, description="Two-sided coverage of the intervals.")
    max_cost_increase: float = Field(
        default=0.25,
        description="Warn when the estimated cost per transaction exceeds the champion's promise by more than this share.",
    )
    label_shift: str = Field(
        default="overall",
        description="Move the calibrated scores to agree with the chargebacks arrived so far, within alerted and "
        "approved rows: 'none', 'overall', or 'cohort' (also within each value of the first cohort split).",
    )
    prior_frauds: float = Field(
        default=10.0,
        description="Strength of the shift's shrinkage toward the calibration, in pseudo-chargebacks per cell.",
    )


@dg.asset(
    group_name="monitoring",
    deps=["transaction_features", "transaction_labels"],
    pool=DUCKDB_POOL,
    op_tags=AFTER_THE_DEPLOY,
)
def champion_estimate(
    context: dg.AssetExecutionContext,
    config: EstimateConfig,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    clock: RunClock,
) -> ChampionEstimate:
    """The serving champion's expected cost, recall and precision on recent traffic, from calibrated scores and the labels so far."""
    # "cohort": within the first of the champion's evaluated cohort splits (None says so)
    shifts = {"none": (), "overall": (), "cohort": None}
    if config.label_shift not in shifts:
        raise dg.Failure(
            description=f"champion_estimate config label_shift: {config.label_shift!r} is not one of none, overall, cohort"
        )
    if config.calibration not in METHODS:
        raise dg.Failure(
            description=f"champion_estimate config calibration: {config.calibration!r} is not one of {', '.join(METHODS)}"
        )
    with duckdb.get_connection() as con:
        result = estimate_champion(
            con,
            registry.store(),
            clock.as_of_datetime(),
            None,
            config.window_days,
            config.max_cost_increase,
            config.calibration,
            config.n_resamples,
            config.seed,
            config.level,
            None if config.label_shift == "none" else config.prior_frauds,
            shifts[config.label_shift],
        )
    metadata = result.to_metadata()
    if result.status == "no_valid_champion":
        context.log.error(f"no valid champion to estimate: {result.reason}")
    elif result.reason:
        context.log.warning(f"champion {result.champion} not estimated: {result.reason}")
    if result.estimate is not None:
        metadata["cohorts"] = dg.MetadataValue.md(markdown_table(result.estimate.rows, ESTIMATE_COLUMNS))
        metadata["reliability_on_validation"] = dg.MetadataValue.md(markdown_table(result.estimate.reliability))
        metadata["calibration_fit"] = dg.MetadataValue.json(plain_rows([result.estimate.calibration.as_dict()])[0])
    context.add_output_metadata(
        {k: dg.MetadataValue.float(v) if isinstance(v, float) else v for k, v in metadata.items()}
    )
    return result
