"""Deploy gates on the windows and the training set (each blocks the rest of the run) and on the candidate's
provenance (on ``deploy_gate``: they hold back only the promotion, so a blocked candidate is still evaluated)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.deployment.checks import DEPLOY_GATE
from fraud_pipeline.deployment.gates import (
    Splits,
    completeness_gate,
    fraud_count_gate,
    learnt_rows_gate,
    maturity_gate,
    model_matrix_gate,
    split_summary,
    threshold_gate,
    window_gate,
)
from fraud_pipeline.lib.checks import gate_check_result
from fraud_pipeline.resources import DUCKDB_POOL, CostSettings, DeployGates
from fraud_pipeline.training.candidate import Candidate
from fraud_pipeline.training.windows import TrainingWindows


def _split_gate(training_windows: TrainingWindows, duckdb: DuckDBResource, gate) -> dg.AssetCheckResult:
    """Summarises the training set per split from the data and applies one gate to it."""
    with duckdb.get_connection() as con:
        summary = split_summary(con, training_windows)
    return gate_check_result(gate(summary))


@dg.asset_check(
    asset="training_windows", blocking=True, additional_ins={"label_delay_profile": dg.AssetIn("label_delay_profile")}
)
def windows_valid(training_windows: TrainingWindows, label_delay_profile: dict) -> dg.AssetCheckResult:
    """Windows are consecutive, do not overlap, and end at or before as_of minus the horizon label_delay_profile measured."""
    return gate_check_result(window_gate(training_windows, float(label_delay_profile["horizon_days"])))


#: The checks on the training set's splits, judged against the windows and the labels.
_split_check = dg.asset_check(
    asset="training_set",
    blocking=True,
    additional_ins={"training_windows": dg.AssetIn("training_windows")},
    additional_deps=["transaction_labels"],
    pool=DUCKDB_POOL,
)


@_split_check
def mature_labels_only(training_windows: TrainingWindows, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No training, validation or test row uses a label that is immature or was known after as_of."""
    return _split_gate(training_windows, duckdb, maturity_gate)


@_split_check
def min_frauds_per_window(
    training_windows: TrainingWindows, duckdb: DuckDBResource, gates: DeployGates
) -> dg.AssetCheckResult:
    """Train, validation and test each hold enough mature frauds to learn from and to measure."""
    return _split_gate(training_windows, duckdb, lambda summary: fraud_count_gate(summary, gates.min_frauds_per_window))


@_split_check
def labels_complete_enough(
    training_windows: TrainingWindows, duckdb: DuckDBResource, gates: DeployGates
) -> dg.AssetCheckResult:
    """Every label used is estimated, from the delay profile, to be complete to the configured level."""
    return _split_gate(
        training_windows, duckdb, lambda summary: completeness_gate(summary, gates.min_label_completeness)
    )


#: The checks on the candidate's provenance: on the deploy decision, reading the candidate.
_provenance_check = dg.asset_check(
    asset=DEPLOY_GATE,
    blocking=True,
    additional_ins={"fraud_model": dg.AssetIn("fraud_model")},
    additional_deps=["training_set"],
    pool=DUCKDB_POOL,
)


@_provenance_check
def model_learnt_from_its_train_split(fraud_model: Candidate, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """Main and fallback learnt from their train split, fitted its genuine-row sample and stopped on validation (recomputed)."""
    with duckdb.get_connection() as con:
        return gate_check_result(learnt_rows_gate(Splits(con), fraud_model))


@_provenance_check
def threshold_chosen_on_validation(
    fraud_model: Candidate, duckdb: DuckDBResource, costs: CostSettings
) -> dg.AssetCheckResult:
    """Each model's decision policy (global and every cell's threshold) is the one chosen on validation, recomputed from the model file."""
    with duckdb.get_connection() as con:
        return gate_check_result(threshold_gate(Splits(con), fraud_model, costs.cost_model()))


@_provenance_check
def model_matrix_keeps_absence(fraud_model: Candidate, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """What LightGBM receives, in training and in serving, is NaN exactly where training_set is NULL and equal elsewhere."""
    with duckdb.get_connection() as con:
        return gate_check_result(model_matrix_gate(Splits(con), fraud_model))
