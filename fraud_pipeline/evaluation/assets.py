"""Evaluation: the candidate's cost and cohorts on the test window, its outage replay, its backtest and its report."""

from dataclasses import asdict, replace

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.deployment.checks import UPSTREAM_GUARDING_CHECKS, check_record_problems
from fraud_pipeline.deployment.decision import deploy_decision
from fraud_pipeline.deployment.gates import challenger_gate, evaluate_gates, history_gate, outage_gate
from fraud_pipeline.deployment.serving import (
    POLICY,
    ScoringModels,
    peak_hours,
    replay_outage,
)
from fraud_pipeline.evaluation.backtest import (
    DESIGN_SETTINGS,
    design_statement,
    fold_design,
    fold_row,
    folds_judging_the_candidate,
    naming_both_designs,
    run_fold,
    spread,
    spread_findings,
)
from fraud_pipeline.evaluation.cohorts import (
    DEFAULT_COHORT_NAMES,
    cohort_details,
    cohorts_named,
    cohorts_of,
    decompose,
    evaluated_cohorts,
    window_headline,
    with_cohort_columns,
)
from fraud_pipeline.evaluation.metrics import (
    POLICY_VS_SINGLE_COLUMNS,
    CohortSpec,
    Decision,
    cohort_table,
    day_bootstrap,
    evaluate_decisions,
    feature_importance,
    policy_vs_single,
    reliability_bins,
)
from fraud_pipeline.evaluation.report import (
    ReportInputs,
    build_report,
    champion_headline,
    champion_to_compare,
    compare_with_champion,
    decision_view,
    report_facts,
)
from fraud_pipeline.evaluation.result import CohortFloors, ModelEvaluation
from fraud_pipeline.labels.maturity import delay_observations_sql, estimate_delay_profile
from fraud_pipeline.lib.costs import choose_threshold, rule_baseline
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.plots import (
    markdown_image,
)
from fraud_pipeline.lib.records import plain, plain_rows
from fraud_pipeline.lib.warehouse import fetch_frame, replace_tables
from fraud_pipeline.monitoring.estimate import ChampionEstimate
from fraud_pipeline.resources import (
    AFTER_THE_DEPLOY,
    DUCKDB_POOL,
    CostSettings,
    DeployGates,
    ModelRegistry,
)
from fraud_pipeline.training.candidate import Candidate
from fraud_pipeline.training.model import (
    ModelParams,
    RowDigest,
    score,
    to_model_matrix,
    uniform_sample,
)
from fraud_pipeline.training.training_set import load_split, training_set_sql
from fraud_pipeline.training.windows import TrainingWindows, rolling_windows


class EvaluationConfig(dg.Config):
    """How the candidate is judged beyond the cost model."""

    daily_review_capacity: int = Field(
        default=50, description="Users the fraud team can review per day (k of user precision@k)."
    )
    bootstrap_resamples: int = Field(default=200, description="Bootstrap resamples of each small cohort's intervals.")
    bootstrap_max_frauds: int = Field(
        default=100, description="Cohorts with at most this many test frauds get 90% bootstrap intervals."
    )
    bootstrap_seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    max_train_rows: int = Field(
        default=500_000,
        description="The train window's in-sample summary (the train-to-test decomposition) is computed on a fixed "
        "hash sample of about this many of its rows, one rate for all; 0 scores every row.",
    )
    cohorts: list[str] = Field(
        default=list(DEFAULT_COHORT_NAMES),
        description="Cohort splits every metric is reported per: account_age (new vs mature accounts), channel, "
        "region (country), or the name of a categorical transaction column. A split whose column the data "
        "does not have is left out.",
    )
    cohort_min_frauds: int = Field(
        default=CohortFloors.min_frauds,
        description="Cohorts with fewer test frauds are reported but not held to the floors.",
    )
    cohort_min_savings_pct: float = Field(
        default=CohortFloors.min_savings_pct,
        description="Floor of each judged cohort's savings against approve-all, as a share (upper 90% bound where small).",
    )
    cohort_min_recall: float = Field(
        default=CohortFloors.min_recall,
        description="Floor of each judged cohort's recall at the threshold (upper 90% bound where small).",
    )
    cohort_min_calibration_ratio: float = Field(
        default=CohortFloors.min_calibration_ratio,
        description="Floor of each judged cohort's mean score over its observed fraud rate.",
    )

    def floors(self) -> CohortFloors:
        """The cohort floors these settings describe."""
        return CohortFloors(
            min_frauds=self.cohort_min_frauds,
            min_savings_pct=self.cohort_min_savings_pct,
            min_recall=self.cohort_min_recall,
            min_calibration_ratio=self.cohort_min_calibration_ratio,
        )


COHORT_COLUMNS = [
    "cohort",
    "value",
    "n_transactions",
    "n_frauds",
    "total_cost",
    "savings_vs_approve_all_pct",
    "savings_vs_approve_all_pct_low",
    "savings_vs_approve_all_pct_high",
    "average_precision",
    "average_precision_low",
    "average_precision_high",
    "precision",
    "recall",
    "recall_low",
    "recall_high",
    "mean_score",
    "observed_fraud_rate",
    "calibration_ratio",
]


DECOMPOSITION_COLUMNS = ["cohort", "metric", "old", "new", "change", "mix", "within", "cross_cohort"]


@dg.asset(group_name="evaluation", deps=["training_set"], pool=DUCKDB_POOL)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    fraud_model: Candidate,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> ModelEvaluation:
    """Test-window cost, savings, AP and AUC of the candidate's decision policy, per cohort with intervals and calibration,
    beside its single global threshold, and the train-to-test decomposition."""
    model = fraud_model.main.model
    policy = fraud_model.policy
    booster = model.booster()
    with duckdb.get_connection() as con:
        wanted = cohorts_named(config.cohorts)
        train, _ = with_cohort_columns(
            con, uniform_sample(load_split(con, "train"), config.max_train_rows, seed=0), wanted
        )
        validation, _ = with_cohort_columns(con, load_split(con, "validation"), wanted)
        test, splits = with_cohort_columns(con, load_split(con, "test"), wanted)
        train["score"] = score(model, train, booster)
        validation["score"] = score(model, validation, booster)
        test["score"] = score(model, test, booster)
        test["alert"] = policy.alerts(test["score"], test)
        replace_tables(
            con,
            {
                "evaluation_scores": "SELECT transaction_id, 'test' AS split, score, alert FROM scored ORDER BY transaction_id"
            },
            sources={"scored": test[["transaction_id", "score", "alert"]]},
        )
    cost_model = costs.cost_model()
    rule = rule_baseline(
        validation["amount"].to_numpy(),
        validation["is_fraud"].to_numpy(),
        test["amount"].to_numpy(),
        test["is_fraud"].to_numpy(),
        cost_model,
    )
    headline = evaluate_decisions(test, policy, cost_model, rule["amount_threshold"], config.daily_review_capacity)
    threshold = policy
    cohorts = _cohort_rows(test, threshold, cost_model, rule["amount_threshold"], config, splits)
    train_headline = window_headline(train, threshold, cost_model)
    # The train window is in-sample (its "within" includes overfitting); validation is the out-of-sample reference.
    decomposition = decompose(
        _cohort_metrics(train, threshold, cost_model, rule["amount_threshold"], splits),
        cohorts,
        train_headline,
        headline,
    )
    decomposition_validation = decompose(
        _cohort_metrics(validation, threshold, cost_model, rule["amount_threshold"], splits),
        cohorts,
        window_headline(validation, threshold, cost_model),
        headline,
    )
    evaluation = ModelEvaluation(
        **{k: plain(v) for k, v in headline.items()},
        model_version=fraud_model.version,
        threshold=fraud_model.threshold,
        rule_amount_threshold=float(rule["amount_threshold"]),
        cohorts=plain_rows(cohorts),
        cohort_floors=config.floors(),
        train_headline={k: plain(v) for k, v in train_headline.items()},
        decomposition_train_to_test=plain_rows(decomposition),
        decomposition_validation_to_test=plain_rows(decomposition_validation),
        test_rows=asdict(RowDigest.of(test["transaction_id"])),
        policy=policy.as_dict(),
        policy_vs_single=plain_rows(policy_vs_single(test, policy, cost_model, rule["amount_threshold"], splits)),
    )
    context.add_output_metadata(
        {
            **evaluation.to_metadata(),
            "train_rows_summarised": len(train),
            "cohorts": dg.MetadataValue.md(markdown_table(cohorts, COHORT_COLUMNS)),
            "decomposition_train_to_test": dg.MetadataValue.md(markdown_table(decomposition, DECOMPOSITION_COLUMNS)),
            "decomposition_validation_to_test": dg.MetadataValue.md(
                markdown_table(decomposition_validation, DECOMPOSITION_COLUMNS)
            ),
            "policy_vs_single": dg.MetadataValue.md(
                markdown_table(evaluation.policy_vs_single, list(POLICY_VS_SINGLE_COLUMNS))
            ),
        }
    )
    return evaluation


def _cohort_metrics(
    frame: pd.DataFrame, threshold: Decision, cost_model, rule_amount_threshold: float, cohorts: tuple[CohortSpec, ...]
) -> list[dict]:
    """The plain cohort tables of a scored window, every cohort split in one list (empty without a split)."""
    return [
        row
        for spec in cohorts
        for row in cohort_table(frame, threshold, cost_model, rule_amount_threshold, spec).to_dict(orient="records")
    ]


def _cohort_rows(
    frame: pd.DataFrame,
    threshold: Decision,
    cost_model,
    rule_amount_threshold: float,
    config: EvaluationConfig,
    cohorts: tuple[CohortSpec, ...] | None = None,
) -> list[dict]:
    """Every cohort's decision metrics joined with its calibration and, where small, bootstrap intervals.

    ``cohorts`` None: the configured splits whose column the frame has.
    """
    if cohorts is None:
        cohorts = cohorts_of(frame.columns, cohorts_named(config.cohorts))
    tables = []
    for spec in cohorts:
        metrics = cohort_table(frame, threshold, cost_model, rule_amount_threshold, spec)
        details = cohort_details(
            frame,
            threshold,
            cost_model,
            spec,
            config.bootstrap_resamples,
            config.bootstrap_max_frauds,
            config.bootstrap_seed,
        )
        tables.append(metrics.merge(details, on=["cohort", "value"], how="left"))
    return [row for table in tables for row in table.to_dict(orient="records")]


class OutageConfig(dg.Config):
    """The outage to replay."""

    share: float = Field(
        default=0.5, description="Share of active users' peak-hour transactions whose history is unavailable."
    )
    n_peak_hours: int = Field(default=6, description="The busiest UTC hours of the test window are the outage hours.")
    seed: int = Field(default=0, description="Seed choosing the affected transactions.")


@dg.asset(group_name="evaluation", deps=["training_set"], pool=DUCKDB_POOL)
def outage_replay(
    context: dg.AssetExecutionContext,
    config: OutageConfig,
    fraud_model: Candidate,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Test-window decisions under a simulated peak-hour feature outage, beside the same rows with full history."""
    with duckdb.get_connection() as con:
        test = load_split(con, "test")
    models = ScoringModels.from_candidate(fraud_model.as_dict())
    hours = peak_hours(test, config.n_peak_hours)
    report = replay_outage(test, config.share, hours, config.seed, models, costs.cost_model())
    report.update({"peak_hours": hours, "share": config.share, "model_version": fraud_model.version, "policy": POLICY})
    context.add_output_metadata(
        {
            "outage": dg.MetadataValue.md(
                markdown_table([{"measure": k, "value": v} for k, v in report.items() if isinstance(v, (int, float))])
            ),
            "policy": dg.MetadataValue.json(POLICY),
            "peak_hours_utc": str(hours),
        }
    )
    return report


FOLD_COLUMNS = [
    "fold",
    "test_start",
    "test_end",
    "candidates_windows",
    "n_transactions",
    "n_frauds",
    "threshold",
    "policy_cells",
    "total_cost",
    "savings_vs_approve_all_pct",
    "average_precision",
    "recall",
    "precision",
    "cost_per_transaction",
]


class BacktestConfig(dg.Config):
    """Prequential folds: the run's windows shifted back by the test length, each retrained.

    Every design setting left unset (None) is the run's own: the window lengths of training_windows,
    the review capacity of model_evaluation, the genuine-row cap of fraud_model. A value set here
    overrides it, and the backtest's ``design`` metadata and every finding of backtest_spread say so.
    """

    n_folds: int = Field(default=3, description="Most folds (fewer when the warmed-up history runs out).")
    train_days: int | None = Field(default=None, description="Training days per fold; unset: the run's.")
    validation_days: int | None = Field(
        default=None, description="Validation days per fold (early stopping, threshold); unset: the run's."
    )
    test_days: int | None = Field(
        default=None, description="Test days per fold, and the shift between folds; unset: the run's."
    )
    warmup_days: int | None = Field(
        default=None, description="Days after the first transaction before training may start; unset: the run's."
    )
    min_train_days: int | None = Field(
        default=None, description="Fewest training days for a fold to count; unset: the run's."
    )
    daily_review_capacity: int | None = Field(
        default=None, description="k of user precision@k; unset: the evaluation's daily_review_capacity."
    )
    max_genuine_rows: int | None = Field(
        default=None, description="Genuine rows a fold's model learns from at most; unset: the candidate's."
    )
    spread_n_std: float = Field(
        default=2.0,
        description="Warn when the candidate's test savings or AP is more than this many std below the mean of "
        "the folds on other windows than its own.",
    )
    max_n_std_above: float = Field(
        default=3.0,
        description='Warn, "better than its own history: look for a leak", when the candidate\'s test AP is more than '
        "this many std above the mean of all the folds (the retrain of its own windows included).",
    )


DESIGN_COLUMNS = ["setting", "value", "source", "run"]


@dg.asset(
    group_name="evaluation", deps=["training_set"], kinds={"lightgbm"}, pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY
)
def backtest(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    training_windows: TrainingWindows,
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    duckdb: DuckDBResource,
    costs: CostSettings,
) -> dict:
    """Rolling out-of-time folds of the run's design, each retrained with the candidate's settings, so the test
    metrics come with a spread. Fold 0 is the candidate's own windows when the design is the run's."""
    current = training_windows
    params = ModelParams(**{k: v for k, v in fraud_model.params.items() if k in ModelParams.__dataclass_fields__})
    run = {
        **(asdict(current.design) if current.design else {}),
        "daily_review_capacity": model_evaluation.review_capacity_k,
        "max_genuine_rows": params.max_genuine_rows,
    }
    design, sources = fold_design(run, {name: getattr(config, name, None) for name in DESIGN_SETTINGS})
    params = replace(params, max_genuine_rows=design.max_genuine_rows)
    cost_model = costs.cost_model()  # the run's costs resource, as fraud_model and model_evaluation use
    spec = fraud_model.feature_spec()
    # the fold's cohort is the evaluation's first split (account age where the data gives it)
    cohort = evaluated_cohorts(model_evaluation.cohorts)[:1]
    folds, cohort_rows = [], []
    with duckdb.get_connection() as con:
        first, last = con.execute("SELECT min(event_time), max(event_time) FROM transactions").fetchone()
        plans = rolling_windows(
            current.as_of, current.horizon_days, first, last, config.n_folds, **asdict(design.windows)
        )
        for index, windows in enumerate(plans):
            sql, params_sql = training_set_sql(windows)
            # each split read on its own, one fold at a time: at 10M a fold is about 3.7M rows, and a
            # frame of them all plus its split copies held about 2.5 GiB more at the peak
            splits = {
                name: fetch_frame(
                    con,
                    f"SELECT * FROM ({sql}) WHERE split = $split ORDER BY transaction_id",
                    {**params_sql, "split": name},
                )
                for name in windows.splits()
            }
            splits["test"], _ = with_cohort_columns(con, splits["test"], cohort)
            headline, cohorts = run_fold(
                splits,
                params,
                cost_model,
                model_evaluation.rule_amount_threshold,
                design.daily_review_capacity,
                cohort[0] if cohort else None,
                spec,
                fraud_model.request(),
            )
            del splits
            folds.append(fold_row(index, windows, headline, current))
            cohort_rows += [{"fold": index, **row} for row in cohorts]
    summary = spread(folds)
    statement = design_statement(
        design,
        sources,
        run,
        n_folds_requested=config.n_folds,
        n_folds=len(folds),
        horizon_days=current.horizon_days,
        cost_model=cost_model,
        rule_amount_threshold=model_evaluation.rule_amount_threshold,
    )
    history = history_gate({"folds": folds, "design": statement}, model_evaluation, config.max_n_std_above)
    findings = naming_both_designs(
        spread_findings(folds, summary, model_evaluation.headline(), config.spread_n_std, config.n_folds)
        + ([] if history.passed else [history.reason]),
        statement,
    )
    context.add_output_metadata(
        {
            "design": dg.MetadataValue.md(
                markdown_table([{"setting": k, **v} for k, v in statement["settings"].items()], DESIGN_COLUMNS)
            ),
            "design_label": f"{len(folds)} of {config.n_folds} folds of {statement['label']}, shift "
            f"{statement['shift_days']} d: "
            + (
                "the run's design"
                if statement["same_as_run"]
                else f"not the run's ({', '.join(statement['differs_from_run'])} set by the backtest config)"
            ),
            "design_details": dg.MetadataValue.json(statement),
            "same_as_run": statement["same_as_run"],
            "folds": dg.MetadataValue.md(markdown_table(folds, FOLD_COLUMNS)),
            "spread": dg.MetadataValue.md(markdown_table([{"metric": k, **v} for k, v in summary.items()])),
            "fold_cohorts": dg.MetadataValue.md(
                markdown_table(
                    cohort_rows,
                    ["fold", "cohort", "value", "n_transactions", "n_frauds", "recall", "savings_vs_approve_all_pct"],
                )
            ),
            "n_folds": len(folds),
            "savings_pct_mean": dg.MetadataValue.float(summary["savings_vs_approve_all_pct"]["mean"]),
            "savings_pct_std": dg.MetadataValue.float(summary["savings_vs_approve_all_pct"]["std"]),
            "average_precision_mean": dg.MetadataValue.float(summary["average_precision"]["mean"]),
            "average_precision_std": dg.MetadataValue.float(summary["average_precision"]["std"]),
        }
    )
    return {
        "folds": folds,
        "spread": summary,
        "cohorts": plain_rows(cohort_rows),
        "findings": findings,
        "spread_n_std": config.spread_n_std,
        "history": {"passed": history.passed, "reason": history.reason, **history.details},
        "design": statement,
        "candidate_judged_against": folds_judging_the_candidate(folds),
    }


class ReportConfig(dg.Config):
    """How the report's intervals, calibration and importances are computed."""

    bootstrap_resamples: int = Field(default=1000, description="Resamples of whole test days behind every interval.")
    bootstrap_seed: int = Field(default=0, description="Seed of the day bootstrap.")
    interval_level: float = Field(default=0.9, description="Two-sided coverage of the report's intervals.")
    calibration_bins: int = Field(default=10, description="Bins of the reliability diagram (equal expected frauds).")
    importance_rows: int = Field(
        default=1_500,
        description="Test rows (a fixed hash sample) the mean |contribution| is computed on (pred_contrib costs about half "
        "a millisecond a row on the default world); 0: all.",
    )
    importance_seed: int = Field(default=0, description="Seed of the importance sample.")


@dg.asset(group_name="evaluation", deps=["training_set"], kinds={"html"}, pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    fraud_model: Candidate,
    model_evaluation: ModelEvaluation,
    outage_replay: dict,
    backtest: dict,
    population_drift: dict,
    label_delay_profile: dict,
    champion_estimate: ChampionEstimate,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
    costs: CostSettings,
) -> dg.MaterializeResult:
    """The report a risk lead reads: the decision and why, cost with intervals, the champion and its estimate on recent
    traffic, cohorts, calibration, backtest, outage replay, drift and importances, as one HTML file beside the model."""
    store = registry.store()
    cost_model = costs.cost_model()
    evaluation = model_evaluation
    windows = fraud_model.windows
    model = fraud_model.main.model
    booster = model.booster()
    with duckdb.get_connection() as con:
        test, cohorts = with_cohort_columns(con, load_split(con, "test"), evaluated_cohorts(evaluation.cohorts))
        stored = con.execute("SELECT transaction_id, score FROM evaluation_scores ORDER BY transaction_id").df()
        validation = load_split(con, "validation")
        verdicts = evaluate_gates(
            con, windows, fraud_model, evaluation, gates, costs, float(label_delay_profile["horizon_days"])
        )
        sql, params = delay_observations_sql(windows.as_of)
        observations = con.execute(sql, params).fetchnumpy()
    verdicts.append(outage_gate(outage_replay))
    test = test.merge(stored, on="transaction_id", how="inner", validate="one_to_one")
    champion, note = champion_to_compare(store, fraud_model.version)
    champion_metrics = (
        champion_headline(
            store, champion, test, cost_model, evaluation.rule_amount_threshold, evaluation.review_capacity_k
        )
        if champion
        else None
    )
    if isinstance(champion_metrics, str):
        note, champion_metrics = champion_metrics, None
    challenge = challenger_gate(
        evaluation.total_cost,
        champion_metrics["total_cost"] if champion_metrics else None,
        gates.champion_tolerance,
    )
    decision = deploy_decision(
        windows.as_of.isoformat(),
        fraud_model.version,
        champion,
        verdicts,
        challenge,
        check_record_problems(context.instance, UPSTREAM_GUARDING_CHECKS),
    )
    profile = estimate_delay_profile(
        observations["delay_days"], observations["truncation_days"], float(label_delay_profile["coverage"])
    )
    sample = uniform_sample(test, config.importance_rows, seed=config.importance_seed)
    inputs = ReportInputs(
        version=fraud_model.version,
        facts=report_facts(fraud_model, evaluation, cost_model),
        decision=decision_view(decision),
        evaluation=evaluation,
        bootstrap=day_bootstrap(
            test,
            fraud_model.policy,
            cost_model,
            evaluation.rule_amount_threshold,
            config.bootstrap_resamples,
            config.bootstrap_seed,
            config.interval_level,
            cohorts,
        ),
        validation_curve=choose_threshold(
            score(model, validation, booster),
            validation["is_fraud"].to_numpy(),
            validation["amount"].to_numpy(),
            cost_model,
        ).curve,
        test_curve=choose_threshold(
            test["score"].to_numpy(), test["is_fraud"].to_numpy(), test["amount"].to_numpy(), cost_model
        ).curve,
        is_fraud=test["is_fraud"].to_numpy(dtype=bool),
        scores=test["score"].to_numpy(dtype=float),
        reliability=reliability_bins(test["is_fraud"], test["score"], config.calibration_bins, config.interval_level),
        importance=feature_importance(booster, to_model_matrix(sample, model.features, model.categories)),
        importance_rows=len(sample),
        champion=compare_with_champion(evaluation.headline(), champion_metrics, champion, note or ""),
        maturity_curve=profile.curve,
        label_profile=label_delay_profile,
        champion_estimate=champion_estimate,
        backtest=backtest,
        outage=outage_replay,
        drift=population_drift,
    )
    html, plots = build_report(inputs)
    path = store.write_report(fraud_model.version, html)
    context.log.info(f"evaluation report of {fraud_model.version} written to {path} ({len(html) / 1024:.0f} KiB)")
    return dg.MaterializeResult(
        metadata={
            "report_path": dg.MetadataValue.path(str(path)),
            "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
            "model_version": fraud_model.version,
            "decision": decision.outcome,
            "headline": dg.MetadataValue.text(decision.headline()),
            "report_kib": round(len(html) / 1024, 1),
            "precision_recall_curve": dg.MetadataValue.md(
                markdown_image(plots["Precision-recall on the test window"], "precision-recall curve")
            ),
            "cohort_metrics": dg.MetadataValue.md(markdown_image(plots["Per-cohort metrics"], "per-cohort metrics")),
            "calibration": dg.MetadataValue.md(markdown_image(plots["Calibration on the test window"], "calibration")),
            "feature_importance": dg.MetadataValue.md(
                markdown_image(plots["Feature importance"], "feature importance")
            ),
            **(
                {"feature_drift": dg.MetadataValue.md(markdown_image(plots["Feature drift (PSI)"], "feature drift"))}
                if "Feature drift (PSI)" in plots
                else {}
            ),
        }
    )
