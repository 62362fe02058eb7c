"""Every check called directly: it fails with ERROR on the fault it guards against and passes on clean data."""

from __future__ import annotations

import shutil
from dataclasses import MISSING, fields, replace
from datetime import timedelta

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources
from fraud_pipeline.evaluation.checks import cost_beats_baselines
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.features.catalog import FEATURES
from fraud_pipeline.features.checks import (
    ContractConfig,
    DefaultSignalConfig,
    FutureConfig,
    OracleConfig,
    feature_missingness_contract,
    features_ignore_the_future,
    features_match_oracle,
    no_default_signal,
    training_set_missingness_contract,
)
from fraud_pipeline.features.spec import default_spec
from fraud_pipeline.ingestion.checks import chargeback_contract, transaction_contract
from fraud_pipeline.resources import DeployGates, FeatureSpecSettings, RunClock, SimulatedWorld
from fraud_pipeline.training.checks import (
    labels_complete_enough,
    mature_labels_only,
    min_frauds_per_window,
    windows_valid,
)
from fraud_pipeline_tests.conftest import SMALL_WORLD

#: The run's feature spec as the pipeline's resource gives it: the built-in default.
DEFAULT_SPEC = FeatureSpecSettings()

UPSTREAM = {
    "users",
    "transactions",
    "chargebacks",
    "label_delay_profile",
    "transaction_labels",
    "transaction_features",
    "training_windows",
    "training_set",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small world materialised up to the training set (no checks), shared read-only by the tests."""
    folder = tmp_path_factory.mktemp("built")
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=SMALL_WORLD)}
    selection = [a for a in ALL_ASSETS if {k.path[-1] for k in a.keys} & UPSTREAM]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(selection, resources=resources, instance=instance, selection=sorted(UPSTREAM))
        windows = result.asset_value("training_windows")
        profile = result.asset_value("label_delay_profile")
    return folder / "warehouse.duckdb", windows, profile


@pytest.fixture
def db(built, tmp_path):
    """A private copy of the built warehouse that a test may corrupt."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(built[0], path)
    return path


def run_sql(path, sql):
    with duckdb.connect(str(path)) as con:
        con.execute(sql)


def assert_fails(result: dg.AssetCheckResult):
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.ERROR


def test_checks_are_in_the_definitions():
    names = {spec.name for check in ALL_CHECKS for spec in check.check_specs}
    assert {
        "transaction_contract",
        "chargeback_contract",
        "features_match_oracle",
        "windows_valid",
        "mature_labels_only",
        "min_frauds_per_window",
        "cost_beats_baselines",
    } <= names


def test_contracts_pass_on_the_clean_world(db):
    resource = DuckDBResource(database=str(db))
    assert transaction_contract(duckdb=resource, clock=RunClock()).passed
    assert chargeback_contract(duckdb=resource, clock=RunClock()).passed


@pytest.mark.parametrize(
    "corruption",
    [
        "UPDATE transactions SET amount = -5 WHERE transaction_id = 10",
        "UPDATE transactions SET amount = 'nan'::DOUBLE WHERE transaction_id = 10",
        "UPDATE transactions SET user_id = NULL WHERE transaction_id = 10",
        "UPDATE transactions SET transaction_id = 11 WHERE transaction_id = 10",
        "UPDATE transactions SET event_time = TIMESTAMP '2031-01-01' WHERE transaction_id = 10",
    ],
)
def test_transaction_contract_fails_on_bad_rows(db, corruption):
    run_sql(db, corruption)
    result = transaction_contract(duckdb=DuckDBResource(database=str(db)), clock=RunClock())
    assert_fails(result)
    assert any(key.startswith("sample_") for key in result.metadata)


@pytest.mark.parametrize(
    "corruption",
    [
        "INSERT INTO chargebacks VALUES (999999999, TIMESTAMP '2025-03-01', 'fraud')",
        "UPDATE chargebacks SET reported_at = reported_at - INTERVAL 400 DAY",
    ],
)
def test_chargeback_contract_fails_on_bad_rows(db, corruption):
    run_sql(db, corruption)
    assert_fails(chargeback_contract(duckdb=DuckDBResource(database=str(db)), clock=RunClock()))


def test_feature_oracle_passes_on_the_sql_features(db):
    result = features_match_oracle(
        config=OracleConfig(sample_size=100), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert result.passed, result.description


@pytest.mark.parametrize(
    "corruption",
    [
        # a leaky feature: the transaction counted in its own history
        "UPDATE transaction_features SET n_prior_tx_30d = n_prior_tx_30d + 1",
        # absence filled with 0
        "UPDATE transaction_features SET mean_amount_30d = 0 WHERE mean_amount_30d IS NULL",
    ],
)
def test_feature_oracle_fails_on_wrong_features(db, corruption):
    run_sql(db, corruption)
    result = features_match_oracle(
        config=OracleConfig(sample_size=300), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert_fails(result)
    assert result.metadata["mismatches"].value > 0


def test_window_check_both_ways(built):
    windows, profile = built[1], built[2]
    assert windows_valid(training_windows=windows, label_delay_profile=profile).passed
    late = replace(windows, test_end=windows.label_cutoff + timedelta(days=3))
    assert_fails(windows_valid(training_windows=late, label_delay_profile=profile))


def test_window_check_fails_on_windows_planned_with_horizon_zero(built):
    """They agree with the horizon stored in them; they do not with the one label_delay_profile measured."""
    from fraud_pipeline.training.windows import plan_windows

    windows, profile = built[1], built[2]
    zero = plan_windows(
        windows.as_of, 0.0, windows.train_start - timedelta(days=60), windows.as_of - timedelta(hours=1), 49, 14, 21
    )
    result = windows_valid(training_windows=zero, label_delay_profile=profile)
    assert_fails(result)
    assert "planned with a 0-day horizon" in result.description


def test_maturity_check_both_ways(db, built):
    resource = DuckDBResource(database=str(db))
    assert mature_labels_only(training_windows=built[1], duckdb=resource).passed
    run_sql(
        db,
        "UPDATE transaction_labels SET is_mature = false WHERE transaction_id = (SELECT max(transaction_id) FROM training_set WHERE split = 'test')",
    )
    result = mature_labels_only(training_windows=built[1], duckdb=resource)
    assert_fails(result)
    assert "test" in result.description


def test_min_frauds_check_both_ways(db, built):
    resource = DuckDBResource(database=str(db))
    assert min_frauds_per_window(training_windows=built[1], duckdb=resource, gates=DeployGates()).passed
    run_sql(db, "DELETE FROM training_set WHERE split = 'validation' AND is_fraud")
    assert_fails(min_frauds_per_window(training_windows=built[1], duckdb=resource, gates=DeployGates()))


@pytest.mark.parametrize("cost, passed", [(500.0, True), (990.0, False)])
def test_cost_check_both_ways(cost, passed):
    headline = {f.name: 0 for f in fields(ModelEvaluation) if f.default is MISSING and f.default_factory is MISSING}
    evaluation = ModelEvaluation(
        **{**headline, "model_version": "m", "total_cost": cost, "approve_all_cost": 2000.0, "rule_cost": 1000.0}
    )
    result = cost_beats_baselines(model_evaluation=evaluation, gates=DeployGates(cost_margin=0.05))
    assert result.passed is passed
    assert result.severity == dg.AssetCheckSeverity.ERROR


def test_future_check_passes_on_the_sql_features(db):
    result = features_ignore_the_future(
        config=FutureConfig(), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert result.passed, result.description
    assert result.metadata["compared"].value > 0


def test_future_check_fails_on_a_tampered_feature(db):
    run_sql(
        db,
        "UPDATE transaction_features SET n_prior_chargebacks_30d = n_prior_chargebacks_30d + 1 WHERE transaction_id % 97 = 0",
    )
    assert_fails(
        features_ignore_the_future(
            config=FutureConfig(), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
        )
    )


def test_future_check_fails_when_chargebacks_are_counted_at_transaction_time(db, monkeypatch):
    """The classic leak: a chargeback counted from its transaction's time instead of when it was reported."""
    import fraud_pipeline.features.leakage as leakage
    from fraud_pipeline.features.sql import transaction_features_sql

    def leaky(con, transactions="transactions", chargebacks="chargebacks", users="users", spec=None):
        sql = transaction_features_sql(transactions, chargebacks, users, spec=spec)
        return con.sql(sql.replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts")).to_arrow_table()

    run_sql(
        db,
        "CREATE OR REPLACE TABLE transaction_features AS "
        + transaction_features_sql().replace("epoch_us(c.reported_at) AS ts", "epoch_us(t.event_time) AS ts"),
    )
    monkeypatch.setattr(leakage, "transaction_features_table", leaky)
    result = features_ignore_the_future(
        config=FutureConfig(), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert_fails(result)
    assert "n_prior_chargebacks_30d" in result.metadata["changed_by_feature"].value


def test_completeness_check_both_ways(db, built):
    resource = DuckDBResource(database=str(db))
    assert labels_complete_enough(training_windows=built[1], duckdb=resource, gates=DeployGates()).passed
    run_sql(
        db,
        "UPDATE transaction_labels SET expected_completeness = 0.5 WHERE transaction_id = (SELECT max(transaction_id) FROM training_set)",
    )
    result = labels_complete_enough(training_windows=built[1], duckdb=resource, gates=DeployGates())
    assert_fails(result)
    assert "too recent" in result.description


def contract(check, db, **settings):
    """A missingness-contract check run as the pipeline runs it, on the warehouse at ``db``."""
    return check(config=ContractConfig(**settings), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC)


#: The newest checked days of the feature table (ContractConfig.checked_days), as SQL.
CHECKED_DAYS = "event_time >= (SELECT date_trunc('day', max(event_time)) - INTERVAL 6 DAY FROM transaction_features)"


def outage_sql(table: str, where: str, counts: str = "0") -> str:
    """A feature-service outage: every history feature of the matching rows lost (counts as ``counts``)."""
    sets = ", ".join(f"{f.name} = {counts if f.kind == 'count' else 'NULL'}" for f in default_spec().aggregates)
    return f"UPDATE {table} SET {sets} WHERE {where}"


#: A fifth of the active users (history in the 30 days before), by a hash of the user.
ACTIVE_FIFTH = "n_prior_tx_30d > 0 AND hash(user_id) % 5 = 0"


def failing_rules(result) -> set[str]:
    return set(result.metadata["failed_rules"].value)


def test_missingness_contracts_pass_on_clean_tables(db):
    result = contract(feature_missingness_contract, db)
    assert result.passed, result.description
    assert result.metadata["expectations"].value > 50
    assert "missing_rate" in result.metadata["learned_rules"].value
    assert result.metadata["reference"].value["reference_rows"] > result.metadata["reference"].value["checked_rows"]
    training = contract(training_set_missingness_contract, db)
    assert training.passed, training.description


def test_a_categorical_column_the_data_lacks_is_not_a_failed_contract(db):
    """No mcc at all (a foreign data set's): the default spec declares it nullable, its rate is 1 both sides."""
    run_sql(db, "UPDATE transaction_features SET mcc = NULL, channel = NULL")
    run_sql(db, "UPDATE training_set SET mcc = NULL, channel = NULL")
    assert contract(feature_missingness_contract, db).passed
    assert contract(training_set_missingness_contract, db).passed


@pytest.mark.parametrize(
    "corruption, rule",
    [
        (
            "UPDATE transaction_features SET mean_amount_30d = 0 WHERE mean_amount_30d IS NULL",
            "no_sentinel_for_absence",
        ),
        ("UPDATE transaction_features SET n_prior_tx_7d = NULL WHERE transaction_id % 10 = 0", "not_null"),
        ("UPDATE transaction_features SET account_age_days = -1 WHERE transaction_id % 10 = 0", "structural_range"),
        (
            "UPDATE transaction_features SET account_age_days = account_age_days * 365 WHERE " + CHECKED_DAYS,
            "value_range",
        ),
        ("UPDATE transaction_features SET amount = amount * 100 WHERE " + CHECKED_DAYS, "value_range"),
        (
            "UPDATE transaction_features SET seconds_since_prev_tx = -5 WHERE transaction_id % 97 = 0",
            "structural_range",
        ),
        (
            "UPDATE transaction_features SET n_merchant_chargebacks_7d = -1 WHERE transaction_id = 10",
            "structural_range",
        ),
        (
            "UPDATE transaction_features SET sum_amount_7d = NULL WHERE n_prior_tx_7d > 0 AND transaction_id % 10 = 0",
            "partner_explains_null",
        ),
        ("UPDATE transaction_features SET seconds_since_prev_tx = NULL", "partner_explains_null"),
        (outage_sql("transaction_features", f"{CHECKED_DAYS} AND {ACTIVE_FIFTH}"), "missing_rate"),
        (outage_sql("transaction_features", f"{CHECKED_DAYS} AND {ACTIVE_FIFTH}", "NULL"), "not_null"),
        ("UPDATE transaction_features SET account_age_days = NULL WHERE " + CHECKED_DAYS, "missing_rate"),
        ("ALTER TABLE transaction_features DROP COLUMN mcc", "column_present"),
    ],
)
def test_feature_missingness_contract_fails(db, corruption, rule):
    run_sql(db, corruption)
    result = contract(feature_missingness_contract, db)
    assert_fails(result)
    assert rule in failing_rules(result), result.metadata["failures"].value


def test_an_outage_read_as_no_history_fails_only_the_learned_missing_rates(db):
    """Counts 0 and aggregates NULL is structurally valid: only the shift against the reference shows it."""
    run_sql(db, outage_sql("transaction_features", f"{CHECKED_DAYS} AND {ACTIVE_FIFTH}"))
    result = contract(feature_missingness_contract, db)
    assert_fails(result)
    assert failing_rules(result) == {"missing_rate"}
    assert "sum_amount_30d" in result.description or "mean_amount_30d" in result.metadata["failures"].value


def test_the_feature_contract_names_an_empty_reference(db):
    run_sql(
        db,
        "DELETE FROM transaction_features WHERE event_time < "
        "(SELECT max(event_time) - INTERVAL 20 DAY FROM transaction_features)",
    )
    result = contract(feature_missingness_contract, db)
    assert_fails(result)
    assert "no reference rows" in result.description and "30 days of warm-up" in result.description


@pytest.mark.parametrize(
    "corruption, rule",
    [
        ("UPDATE training_set SET mean_amount_7d = 0 WHERE mean_amount_7d IS NULL", "no_sentinel_for_absence"),
        (outage_sql("training_set", f"split = 'test' AND {ACTIVE_FIFTH}"), "missing_rate"),
        ("UPDATE training_set SET amount = amount * 100 WHERE split <> 'train'", "value_range"),
    ],
)
def test_training_set_contract_fails(db, corruption, rule):
    run_sql(db, corruption)
    result = contract(training_set_missingness_contract, db)
    assert_fails(result)
    assert rule in failing_rules(result)


def test_the_training_set_contract_names_an_empty_reference(db):
    run_sql(db, "DELETE FROM training_set WHERE split = 'train'")
    result = contract(training_set_missingness_contract, db)
    assert_fails(result)
    assert "no reference rows" in result.description


def test_default_signal_detector_passes_on_real_features(db):
    result = no_default_signal(
        config=DefaultSignalConfig(), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert result.passed, result.description


HISTORY_AGGREGATES = [f.name for f in FEATURES if f.kind == "aggregate" and f.partner]


@pytest.mark.parametrize("feature", HISTORY_AGGREGATES)
@pytest.mark.parametrize("fill", ["0", "(SELECT avg({f}) FROM training_set)"])
def test_default_signal_detector_fails_on_any_filled_history_feature(db, feature, fill):
    run_sql(db, f"UPDATE training_set SET {feature} = {fill.format(f=feature)} WHERE {feature} IS NULL")
    result = no_default_signal(
        config=DefaultSignalConfig(), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert_fails(result)
    assert result.metadata["flagged"].value == [feature]


def _train_candidate(train, validation, fill_history=False):
    """A candidate as fraud_model builds it; with ``fill_history`` the legacy way: NULL history -> 0."""
    from fraud_pipeline.lib.costs import CostModel
    from fraud_pipeline.training.candidate import train_candidate
    from fraud_pipeline.training.model import ModelParams

    if fill_history:
        train, validation = zero_fill(train), zero_fill(validation)
    return train_candidate(train, validation, ModelParams(max_rounds=150), CostModel())[0]


def zero_fill(frame):
    from fraud_pipeline.features.catalog import HISTORY_FEATURES

    filled = frame.copy()
    for name in HISTORY_FEATURES:
        filled[name] = filled[name].astype("float64").fillna(0.0)  # the legacy default under test
    return filled


def _outage_result(db, fill_history):
    from fraud_pipeline.deployment.serving import (
        ScoringModels,
        decide,
        outage_report,
        outage_rows,
        peak_hours,
        without_history,
    )
    from fraud_pipeline.evaluation.checks import unavailable_history_not_misread
    from fraud_pipeline.lib.costs import CostModel
    from fraud_pipeline.training.training_set import load_split

    with duckdb.connect(str(db)) as con:
        train, validation, test = (load_split(con, s) for s in ("train", "validation", "test"))
    models = ScoringModels.from_candidate(_train_candidate(train, validation, fill_history).as_dict())
    affected = outage_rows(test, 0.5, peak_hours(test, 6), seed=0)
    masked = without_history(test, affected)
    if fill_history:  # the legacy feature service answers a timeout with its default: 0
        test, masked = zero_fill(test), zero_fill(masked)
    report = outage_report(test, affected, decide(test, models), decide(masked, models), CostModel())
    return report, unavailable_history_not_misread(outage_replay=report)


def test_outage_check_passes_when_unavailable_history_stays_unknown(db):
    report, result = _outage_result(db, fill_history=False)
    assert result.passed, result.description
    assert report["identified_share"] == 1.0
    assert report["n_affected_frauds"] > 0


def test_outage_check_fails_for_a_model_trained_and_served_on_zero_filled_history(db):
    report, result = _outage_result(db, fill_history=True)
    assert_fails(result)
    assert report["identified_share"] == 0.0
    shift = report["mean_score_affected_frauds_outage"] / report["mean_score_affected_frauds_full_history"]
    assert not 0.8 <= shift <= 1.25


@pytest.fixture
def end_of_day_features(db, monkeypatch):
    """The 60k world's features rebuilt with the seed's end-of-day chargeback batch; the checks rebuild with it too."""
    from fraud_pipeline.features.table import store_transaction_features
    from fraud_pipeline_tests import faults

    faults.end_of_day_chargeback_counts(monkeypatch)
    with duckdb.connect(str(db)) as con:
        store_transaction_features(con)
    return DuckDBResource(database=str(db))


@pytest.mark.parametrize("seed", range(6))
def test_an_end_of_day_chargeback_batch_fails_both_point_in_time_checks_in_every_seed(end_of_day_features, seed):
    """On the 60k world too: the intra-day cutoffs and the oracle's targeted rows find it whatever the seed."""
    ignored = features_ignore_the_future(
        config=FutureConfig(seed=seed), duckdb=end_of_day_features, feature_spec=DEFAULT_SPEC
    )
    assert_fails(ignored)
    assert "n_prior_chargebacks_30d" in ignored.metadata["changed_by_feature"].value
    matched = features_match_oracle(
        config=OracleConfig(seed=seed), duckdb=end_of_day_features, feature_spec=DEFAULT_SPEC
    )
    assert_fails(matched)
    assert set(matched.metadata["mismatching_features"].value) == {"n_prior_chargebacks_30d"}


def test_a_midnight_cutoff_and_a_uniform_oracle_sample_miss_the_end_of_day_batch(end_of_day_features):
    """Why the checks needed intra-day cutoffs and a targeted sample: without them the leak passes."""
    midnight_only = features_ignore_the_future(
        config=FutureConfig(intraday_cutoffs=0), duckdb=end_of_day_features, feature_spec=DEFAULT_SPEC
    )
    assert midnight_only.passed, midnight_only.description
    uniform_only = features_match_oracle(
        config=OracleConfig(targeted_size=0), duckdb=end_of_day_features, feature_spec=DEFAULT_SPEC
    )
    assert uniform_only.passed, uniform_only.description


def test_the_oracle_draws_every_stratum_and_passes_on_clean_features(db):
    result = features_match_oracle(
        config=OracleConfig(seed=3), duckdb=DuckDBResource(database=str(db)), feature_spec=DEFAULT_SPEC
    )
    assert result.passed, result.description
    drawn = result.metadata["drawn_per_part"].value
    assert drawn["uniform"] == 200 and all(drawn[name] > 0 for name in drawn)
