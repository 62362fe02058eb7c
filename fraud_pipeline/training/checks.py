"""Deploy gates on the windows and the training set; each blocks the rest of the run."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.deployment.gates import (
    completeness_gate,
    fraud_count_gate,
    maturity_gate,
    split_summary,
    window_gate,
)
from fraud_pipeline.lib.checks import gate_check_result
from fraud_pipeline.resources import DUCKDB_POOL, DeployGates
from fraud_pipeline.training.windows import TrainingWindows


def _split_gate(training_windows: TrainingWindows, duckdb: DuckDBResource, gate) -> dg.AssetCheckResult:
    """Summarises the training set per split from the data and applies one gate to it."""
    with duckdb.get_connection() as con:
        summary = split_summary(con, training_windows)
    return gate_check_result(gate(summary))


@dg.asset_check(asset="training_windows", blocking=True)
def windows_valid(training_windows: TrainingWindows) -> dg.AssetCheckResult:
    """Windows are consecutive, do not overlap, and end at or before as_of minus the maturity horizon."""
    return gate_check_result(window_gate(training_windows))


@dg.asset_check(
    asset="training_set",
    blocking=True,
    additional_ins={"training_windows": dg.AssetIn("training_windows")},
    additional_deps=["transaction_labels"],
    pool=DUCKDB_POOL,
)
def mature_labels_only(training_windows: TrainingWindows, duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """No training, validation or test row uses a label that is immature or was known after as_of."""
    return _split_gate(training_windows, duckdb, maturity_gate)


@dg.asset_check(
    asset="training_set",
    blocking=True,
    additional_ins={"training_windows": dg.AssetIn("training_windows")},
    additional_deps=["transaction_labels"],
    pool=DUCKDB_POOL,
)
def min_frauds_per_window(
    training_windows: TrainingWindows, duckdb: DuckDBResource, gates: DeployGates
) -> dg.AssetCheckResult:
    """Train, validation and test each hold enough mature frauds to learn from and to measure."""
    return _split_gate(training_windows, duckdb, lambda summary: fraud_count_gate(summary, gates.min_frauds_per_window))


@dg.asset_check(
    asset="training_set",
    blocking=True,
    additional_ins={"training_windows": dg.AssetIn("training_windows")},
    additional_deps=["transaction_labels"],
    pool=DUCKDB_POOL,
)
def labels_complete_enough(
    training_windows: TrainingWindows, duckdb: DuckDBResource, gates: DeployGates
) -> dg.AssetCheckResult:
    """Every label used is estimated, from the delay profile, to be complete to the configured level."""
    return _split_gate(
        training_windows, duckdb, lambda summary: completeness_gate(summary, gates.min_label_completeness)
    )
