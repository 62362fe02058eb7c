"""Training: out-of-time windows, the training set, and the LightGBM model with its cost threshold."""

import time
from dataclasses import asdict, fields

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.lib.cohort_splits import DEFAULT_COHORT_NAMES
from fraud_pipeline.lib.costs import approve_all_cost
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.plots import cost_curve_png, markdown_image
from fraud_pipeline.lib.policy import PolicyRequest, PolicySettings, policy_markdown, selection_markdown
from fraud_pipeline.lib.warehouse import fetch_records, replace_tables
from fraud_pipeline.resources import DUCKDB_POOL, CostSettings, FeatureSpecSettings, RunClock
from fraud_pipeline.training.candidate import Candidate, train_candidate
from fraud_pipeline.training.model import ModelParams
from fraud_pipeline.training.training_set import load_split, training_set_sql
from fraud_pipeline.training.windows import TrainingWindows, WindowDesign, plan_windows


class WindowConfig(dg.Config):
    """Lengths of the consecutive out-of-time windows, newest (test) last."""

    train_days: int = Field(default=49, description="Days of training data.")
    validation_days: int = Field(default=14, description="Days of validation data (early stopping, threshold).")
    test_days: int = Field(default=21, description="Days of test data (evaluation and the deploy gate).")
    warmup_days: int | None = Field(
        default=None,
        description="Days after the first transaction before training may start; unset: the feature spec's longest "
        "window in whole days, so every feature window is full by then.",
    )
    min_train_days: int = Field(default=21, description="Fewest training days accepted after the warm-up.")
    min_validation_days: int = Field(
        default=7,
        description="When the mature, warmed-up history cannot hold min_train_days after the requested validation "
        "and test windows, both are shortened in proportion, validation not below this (a week: every weekday "
        "once). Set it to validation_days to never shorten.",
    )
    min_test_days: int = Field(
        default=7,
        description="The shortest test window allowed when the windows are shortened (see min_validation_days).",
    )

    def design(self, history_days: int) -> WindowDesign:
        """The window design these settings describe (the backtest's folds inherit it).

        Args:
            history_days: The feature spec's longest window in whole days: the warm-up when unset.
        """
        values = self.model_dump()
        if values["warmup_days"] is None:
            values["warmup_days"] = history_days
        # a window shorter than its default minimum is simply never shortened
        for window in ("validation", "test"):
            values[f"min_{window}_days"] = min(values[f"min_{window}_days"], values[f"{window}_days"])
        return WindowDesign(**values)


class ModelConfig(dg.Config):
    """LightGBM settings and the decision policy; the defaults make the model file reproducible byte for byte."""

    learning_rate: float = Field(default=ModelParams.learning_rate, description="Boosting learning rate.")
    num_leaves: int = Field(default=ModelParams.num_leaves, description="Leaves per tree.")
    min_data_in_leaf: int = Field(default=ModelParams.min_data_in_leaf, description="Fewest rows in a leaf.")
    feature_fraction: float = Field(default=ModelParams.feature_fraction, description="Share of features per tree.")
    lambda_l2: float = Field(default=ModelParams.lambda_l2, description="L2 regularisation.")
    max_rounds: int = Field(default=ModelParams.max_rounds, description="Most boosting rounds.")
    early_stopping_rounds: int = Field(
        default=ModelParams.early_stopping_rounds,
        description="Stop when validation AP has not improved for this many rounds.",
    )
    num_threads: int = Field(
        default=ModelParams.num_threads, description="LightGBM threads (fixed for reproducibility)."
    )
    seed: int = Field(default=ModelParams.seed, description="LightGBM seed (and the seed of the genuine-row sample).")
    max_genuine_rows: int = Field(
        default=ModelParams.max_genuine_rows,
        description="Genuine rows a model learns from at most: above this a fixed hash sample is kept and weighted up "
        "(every fraud is kept; thresholds use every validation row). 0 keeps all.",
    )

    policy_cohorts: list[str] = Field(
        default=list(DEFAULT_COHORT_NAMES),
        description="Cohort splits the decision policy may give their own alert thresholds (crossed): account_age, "
        "channel, region, or a categorical transaction column. A split whose column the model does not read is "
        "left out (the policy cuts only by what serving sees); empty: one threshold for every row.",
    )
    policy_prior_frauds: float = Field(
        default=PolicySettings.prior_frauds,
        description="Shrinkage of each cohort cell's threshold toward the population's: the population's cost curve "
        "weighs as much as this many frauds in every cell's. The default is the cohort floors' min_frauds, so a "
        "cohort the floors judge has at least as much weight of its own as of the population.",
    )
    policy_select_on_holdout: bool = Field(
        default=True,
        description="Choose which splits to use (none, each alone, all crossed) by the daily cost on the later half "
        "of validation's days of a policy fitted on the earlier half (see policy_selection_confidence); off: "
        "always every split, crossed.",
    )
    policy_selection_confidence: float = Field(
        default=PolicySettings.selection_confidence,
        description="A structure (a split, or the splits crossed) is adopted only when its saving per later "
        "validation day over the single threshold is positive at this one-sided confidence.",
    )
    policy_max_alerts_per_day: float | None = Field(
        default=None,
        description="Review capacity the cohort cells share, in alerts per validation day (a price per alert is "
        "found that meets it); unset: no capacity.",
    )

    def params(self) -> ModelParams:
        """The model parameters."""
        values = self.model_dump()
        return ModelParams(**{f.name: values[f.name] for f in fields(ModelParams)})

    def policy_request(self) -> PolicyRequest:
        """The decision policy these settings ask for."""
        return PolicyRequest(
            cohorts=tuple(self.policy_cohorts),
            prior_frauds=self.policy_prior_frauds,
            max_alerts_per_day=self.policy_max_alerts_per_day,
            select_on_holdout=self.policy_select_on_holdout,
            selection_confidence=self.policy_selection_confidence,
        )


class TrainingProgress:
    """A LightGBM callback that logs the round, elapsed time and ETA every ``every`` rounds.

    It only reads the evaluation environment, so the model is byte for byte the same with or without it.
    """

    order = 100

    def __init__(self, log, name: str, max_rounds: int, every: int = 50, clock=time.perf_counter) -> None:
        self.log, self.name, self.max_rounds, self.every, self.clock = log, name, max_rounds, every, clock
        self.started: float | None = None

    def __call__(self, env) -> None:
        if self.started is None:
            self.started = self.clock()
        done = env.iteration - env.begin_iteration + 1
        if done % self.every and done != self.max_rounds:
            return
        elapsed = self.clock() - self.started
        eta = elapsed / done * (self.max_rounds - done)
        scores = ", ".join(f"{data} {metric} {value:.4f}" for data, metric, value, *_ in env.evaluation_result_list)
        self.log(
            f"{self.name}: round {done} of at most {self.max_rounds}, {elapsed:.1f} s elapsed, "
            f"ETA {eta:.1f} s if it runs to the end (early stopping may end it sooner); {scores}"
        )


@dg.asset(group_name="training", deps=["transactions"], pool=DUCKDB_POOL)
def training_windows(
    context: dg.AssetExecutionContext,
    config: WindowConfig,
    label_delay_profile: dict,
    duckdb: DuckDBResource,
    clock: RunClock,
    feature_spec: FeatureSpecSettings,
) -> TrainingWindows:
    """Consecutive train, validation and test windows ending by as_of minus the maturity horizon.

    The windows carry their design (the configured lengths), so the backtest's folds can be planned the same way.
    """
    with duckdb.get_connection() as con:
        first, last = con.execute("SELECT min(event_time), max(event_time) FROM transactions").fetchone()
    windows = plan_windows(
        as_of=clock.as_of_datetime(),
        horizon_days=float(label_delay_profile["horizon_days"]),
        first_event_time=first,
        last_event_time=last,
        **asdict(config.design(feature_spec.spec().history_days)),
    )
    table = markdown_table(
        [
            {"window": name, "start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}"}
            for name, (start, end) in windows.splits().items()
        ]
    )
    if shortened := windows.shortened():
        context.log.warning(f"windows shortened: {shortened}")
    context.add_output_metadata({"windows": dg.MetadataValue.md(table), **windows.to_metadata()})
    return windows


@dg.asset(
    group_name="training", deps=["transaction_features", "transaction_labels"], kinds={"duckdb"}, pool=DUCKDB_POOL
)
def training_set(training_windows: TrainingWindows, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Feature rows with mature labels inside the windows, each tagged with its split."""
    sql, params = training_set_sql(training_windows)
    with duckdb.get_connection() as con:
        replace_tables(con, {"training_set": sql}, params=params)
        counts = fetch_records(
            con,
            "SELECT split, count(*) AS rows, count(*) FILTER (WHERE is_fraud) AS frauds FROM training_set GROUP BY split ORDER BY split",
        )
    return dg.MaterializeResult(
        metadata={"splits": dg.MetadataValue.md(markdown_table(counts)), "rows": sum(int(c["rows"]) for c in counts)}
    )


@dg.asset(group_name="training", deps=["training_set"], kinds={"lightgbm"}, pool=DUCKDB_POOL)
def fraud_model(
    context: dg.AssetExecutionContext,
    config: ModelConfig,
    training_windows: TrainingWindows,
    duckdb: DuckDBResource,
    costs: CostSettings,
    feature_spec: FeatureSpecSettings,
) -> Candidate:
    """LightGBM on the point-in-time features (NULL stays NaN) with its cost-minimising threshold, and its fallback."""
    with duckdb.get_connection() as con:
        train = load_split(con, "train")
        validation = load_split(con, "validation")
    context.log.info(
        f"training on {len(train):,} rows, early stopping on {len(validation):,} validation rows, "
        f"at most {config.max_rounds} rounds"
    )
    started = time.perf_counter()
    candidate, cost_choice = train_candidate(
        train,
        validation,
        config.params(),
        costs.cost_model(),
        progress=lambda name: [TrainingProgress(context.log.info, name, config.max_rounds)],
        spec=feature_spec.spec(),
        policy=config.policy_request(),
    )
    candidate = candidate.with_run(config.model_dump(), training_windows)
    rate = candidate.main.model.genuine_sample_rate
    learnt_from = (
        "every training row" if rate == 1 else f"every fraud and {rate:.1%} of genuine rows, weighted by {1 / rate:.2f}"
    )
    context.log.info(
        f"trained {candidate.version} in {time.perf_counter() - started:.1f} s "
        f"(best iteration {candidate.main.model.best_iteration}; learnt from {learnt_from})"
    )
    cost_plot = cost_curve_png(
        cost_choice.curve,
        candidate.threshold,
        approve_all_cost(validation["is_fraud"].to_numpy(), validation["amount"].to_numpy(), costs.cost_model()),
    )
    top = sorted(candidate.main.model.feature_importance.items(), key=lambda kv: -kv[1])[:10]
    context.add_output_metadata(
        {
            **candidate.to_metadata(),
            "train_rows": len(train),
            "top_features_by_gain": dg.MetadataValue.md(markdown_table([{"feature": k, "gain": v} for k, v in top])),
            "cost_vs_threshold": dg.MetadataValue.md(markdown_image(cost_plot, "validation cost vs threshold")),
            "policy": dg.MetadataValue.md(policy_markdown(candidate.main.decision_policy())),
            "policy_selection": dg.MetadataValue.md(selection_markdown(candidate.main.decision_policy())),
            "fallback_policy": dg.MetadataValue.md(policy_markdown(candidate.fallback.decision_policy())),
        }
    )
    return candidate
