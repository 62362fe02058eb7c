"""The serving path and the cohorts on a landed foreign-shaped warehouse: string ids, a device key, no channel."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.serving import (
    FILE_COLUMNS,
    features_for_new_transactions,
    file_columns,
    parse_new_transactions_sql,
)
from fraud_pipeline.evaluation.cohorts import cohorts_named, with_cohort_columns
from fraud_pipeline.features.spec import FeatureSpec, default_spec, load_spec
from fraud_pipeline.features.table import store_transaction_features
from fraud_pipeline.ingestion.known_tables import build_known_tables
from fraud_pipeline.ingestion.landing import land_day
from fraud_pipeline.lib.schema import encode_id
from fraud_pipeline_tests.foreign_world import ForeignSpec, generate, write_day_folders

FOREIGN = load_spec(Path(__file__).resolve().parents[1] / "foreign_spec.yaml")
AS_OF = datetime(2018, 4, 21)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """Twenty foreign days landed and built as known at AS_OF, with the foreign spec's features stored."""
    world = generate(ForeignSpec(days=22, n_customers=120, n_terminals=20))
    folder = tmp_path_factory.mktemp("foreign") / "incoming"
    write_day_folders(world, folder)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for day in sorted(folder.iterdir()):
        land_day(con, date.fromisoformat(day.name), day)
    build_known_tables(con, AS_OF)
    store_transaction_features(con, spec=FOREIGN)
    yield con, world
    con.close()


def _as_the_source_writes_them(con, where: str) -> pd.DataFrame:
    """Stored transactions written back with their original string ids and text values, as a file to score."""
    return con.execute(f"""
        SELECT transaction_id_original AS transaction_id, user_id_original AS user_id,
               merchant_id_original AS merchant_id, strftime(event_time, '%Y-%m-%dT%H:%M:%S.%fZ') AS event_time,
               CAST(amount AS VARCHAR) AS amount, device_id
        FROM transactions AS t WHERE {where} ORDER BY t.transaction_id
    """).df()


def _parse(con, rows: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    con.register("incoming_rows", rows.astype(object))
    types = {name: "VARCHAR" for name in rows.columns}
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE new_transactions AS {parse_new_transactions_sql('incoming_rows', types, spec)}"
    )
    con.unregister("incoming_rows")
    return con.execute("SELECT * FROM new_transactions ORDER BY transaction_id").df()


def test_a_file_needs_the_keys_and_the_columns_its_spec_reads():
    assert set(file_columns(default_spec())) == set(FILE_COLUMNS)
    assert file_columns(FOREIGN) == ("transaction_id", "user_id", "merchant_id", "event_time", "amount", "device_id")


def test_string_ids_are_read_as_landing_encodes_them_and_the_device_column_is_kept(warehouse):
    con, _ = warehouse
    rows = _as_the_source_writes_them(con, "hash(t.transaction_id) % 7 = 0")
    rows.loc[0, "user_id"] = "12.5"  # a decimal number is no id: review with the reason, never a hash
    parsed = _parse(con, rows, FOREIGN)
    stored = con.execute(
        "SELECT transaction_id, user_id, merchant_id, device_id FROM transactions WHERE hash(transaction_id) % 7 = 0 "
        "ORDER BY transaction_id"
    ).df()
    assert parsed["transaction_id"].tolist() == sorted(encode_id(t) for t in rows["transaction_id"])
    first = parsed["transaction_id"] == encode_id(rows.loc[0, "transaction_id"])
    assert parsed.loc[first, "invalid"].item() == "user_id: looks like a decimal number (12.5)"
    assert parsed.loc[first, "user_id"].isna().all()
    rest = parsed.loc[~first].set_index("transaction_id")
    expected = stored.set_index("transaction_id").loc[rest.index]
    assert rest["user_id"].tolist() == expected["user_id"].tolist()
    assert rest["merchant_id"].tolist() == expected["merchant_id"].tolist()
    assert rest["device_id"].fillna("").tolist() == expected["device_id"].fillna("").tolist()
    assert rest["invalid"].isna().all() and rest["channel"].isna().all()  # a raw column the file lacks is NULL


def test_a_stored_transaction_scored_again_gets_exactly_its_stored_features_under_its_spec(warehouse):
    con, _ = warehouse
    rows = _as_the_source_writes_them(con, "hash(t.transaction_id) % 5 = 0")
    _parse(con, rows, FOREIGN)
    served = features_for_new_transactions(con, "new_transactions", FOREIGN).set_index("transaction_id")
    stored = (
        con.execute("SELECT * FROM transaction_features WHERE hash(transaction_id) % 5 = 0 ORDER BY transaction_id")
        .df()
        .set_index("transaction_id")
    )
    assert len(served) == len(stored) == len(rows) > 100
    device = [f.name for f in FOREIGN.aggregates if f.key == "device"]
    assert (stored[device].sum() > 0).all(), "the device features carry history here"
    pd.testing.assert_frame_equal(
        served[list(FOREIGN.names)].astype(float), stored[list(FOREIGN.names)].astype(float), check_exact=True
    )


def test_cohorts_come_from_the_columns_the_data_has_and_account_age_from_the_users(warehouse):
    con, _ = warehouse
    frame = con.execute("SELECT * FROM transaction_features ORDER BY transaction_id").df()
    assert "account_age_days" not in frame.columns
    with_columns, splits = with_cohort_columns(con, frame, cohorts_named(["account_age", "channel", "region"]))
    # channel and country landed as all-NULL columns: no split, not one "unknown" cohort of every row
    assert [c.name for c in splits] == ["account_age"]
    assert with_columns["transaction_id"].tolist() == frame["transaction_id"].tolist()
    spec_with_age = FeatureSpec.from_dict(
        {
            **FOREIGN.to_dict(),
            "attributes": [
                *FOREIGN.to_dict()["attributes"],
                {"name": "account_age_days", "derive": "account_age_days"},
            ],
        }
    )
    store_transaction_features(con, "features_with_age", spec=spec_with_age)
    derived = con.execute("SELECT account_age_days FROM features_with_age ORDER BY transaction_id").df()
    np.testing.assert_array_equal(with_columns["account_age_days"].to_numpy(), derived["account_age_days"].to_numpy())
    assert with_cohort_columns(con, frame, cohorts_named(["channel", "region"]))[1] == ()
    assert with_cohort_columns(con, frame.iloc[:0], cohorts_named(["account_age"]))[1] == cohorts_named(["account_age"])


@pytest.fixture(scope="module")
def foreign_models():
    """Tiny models on the foreign spec's features (trained on made-up rows: what matters here is the policy)."""
    from fraud_pipeline.training.model import ModelParams, train_model
    from fraud_pipeline_tests.deployment.test_serving import frame as made_up_rows

    train, validation = made_up_rows(seed=1, features=FOREIGN.features), made_up_rows(seed=2, features=FOREIGN.features)
    params = ModelParams(max_rounds=10)
    return train_model(train, validation, FOREIGN.names, (), params), train_model(
        train, validation, FOREIGN.fallback, (), params
    )


def test_a_policy_cut_by_account_age_reads_it_from_the_users_when_the_spec_has_none(warehouse, foreign_models):
    from dataclasses import replace

    from fraud_pipeline.deployment.serving import ScoringModels, score_new_transactions
    from fraud_pipeline.lib.cohort_splits import assign_cohort
    from fraud_pipeline_tests.deployment.policies import hand_policy

    con, _ = warehouse
    age = cohorts_named(["account_age"])[0]
    main, fallback = foreign_models
    plain = ScoringModels(main=main, main_policy=0.5, fallback=fallback, fallback_policy=0.5, spec=FOREIGN)
    rows = _as_the_source_writes_them(con, "hash(t.transaction_id) % 3 = 0")
    _parse(con, rows, FOREIGN)
    single = score_new_transactions(con, "new_transactions", plain).set_index("transaction_id").sort_index()
    policy = hand_policy(0.5, age, {"<7d": 0.0, "7-30d": 1.1})
    decided = score_new_transactions(con, "new_transactions", replace(plain, main_policy=policy))
    decided = decided.set_index("transaction_id").sort_index()
    stored = con.execute(
        "SELECT transaction_id FROM transaction_features WHERE hash(transaction_id) % 3 = 0 ORDER BY transaction_id"
    ).df()
    with_age, _ = with_cohort_columns(con, stored, (age,))
    expected = ("account_age=" + assign_cohort(with_age, age)).set_axis(with_age["transaction_id"]).sort_index()
    main_rows = decided["route"] == "main"
    assert main_rows.sum() > 50
    pd.testing.assert_series_equal(decided.loc[main_rows, "cell"], expected[main_rows], check_names=False)
    thresholds = expected.map({"account_age=<7d": 0.0, "account_age=7-30d": 1.1}).fillna(0.5)
    assert (decided.loc[main_rows, "threshold"] == thresholds[main_rows]).all()
    assert set(expected[main_rows]) >= {"account_age=<7d", "account_age=7-30d"}
    assert (decided.loc[main_rows, "alert"] == (decided.loc[main_rows, "score"] >= thresholds[main_rows])).all()
    pd.testing.assert_series_equal(decided["score"], single["score"])


def test_a_policy_cut_by_a_column_neither_the_file_nor_the_warehouse_has_is_one_line(warehouse, foreign_models):
    from fraud_pipeline.deployment.serving import ScoringModels, score_new_transactions
    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline.lib.warehouse import WarehouseError
    from fraud_pipeline_tests.deployment.policies import hand_policy

    con, _ = warehouse
    main, fallback = foreign_models
    policy = hand_policy(0.5, CohortSpec("segment", "segment"), {"a": 0.1})
    models = ScoringModels(main=main, main_policy=policy, fallback=fallback, fallback_policy=0.5, spec=FOREIGN)
    _parse(con, _as_the_source_writes_them(con, "hash(t.transaction_id) % 11 = 0"), FOREIGN)
    with pytest.raises(
        WarehouseError, match=r"^the champion's decision policy cuts rows by segment, which neither"
    ) as e:
        score_new_transactions(con, "new_transactions", models)
    assert "\n" not in str(e.value)
