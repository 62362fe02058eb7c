"""The raw-data contracts: every rule passes on clean data and catches its violation."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd
import pytest

from fraud_pipeline.ingestion.rules import (
    chargeback_rules,
    evaluate_rules,
    transaction_rules,
)

AS_OF = datetime(2025, 7, 1)


def _con(transactions, chargebacks):
    con = duckdb.connect()
    con.register("tx", pd.DataFrame(transactions))
    con.register("cb", pd.DataFrame(chargebacks))
    con.execute("CREATE TABLE transactions AS SELECT * FROM tx")
    con.execute("CREATE TABLE chargebacks AS SELECT * FROM cb")
    return con


CLEAN_TX = {
    "transaction_id": [1, 2, 3],
    "user_id": [10, 10, 11],
    "merchant_id": [5, 6, 5],
    "event_time": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"]),
    "amount": [10.0, 20.5, 3.0],
}


CLEAN_CB = {"transaction_id": [2], "reported_at": pd.to_datetime(["2025-02-20"])}


def _failures(con, rules):
    return {r.rule.name: r.n_violations for r in evaluate_rules(con, rules, AS_OF) if not r.passed}


def test_contracts_pass_on_clean_data():
    con = _con(CLEAN_TX, CLEAN_CB)
    assert _failures(con, transaction_rules()) == {}
    assert _failures(con, chargeback_rules()) == {}


@pytest.mark.parametrize(
    "column, values, rule",
    [
        ("transaction_id", [1, 1, 3], "unique_transaction_id"),
        ("user_id", [10, None, 11], "non_null_keys"),
        ("amount", [10.0, -1.0, 3.0], "positive_finite_amount"),
        ("amount", [10.0, float("nan"), 3.0], "positive_finite_amount"),
        ("amount", [10.0, float("inf"), 3.0], "positive_finite_amount"),
        ("amount", [10.0, 0.0, 3.0], "positive_finite_amount"),
        ("amount", [10.0, 1e-320, 3.0], "positive_finite_amount"),
        ("amount", [10.0, 0.001, 3.0], "positive_finite_amount"),
        ("amount", [10.0, 1e300, 3.0], "positive_finite_amount"),
        ("event_time", pd.to_datetime(["1970-01-01", "2025-02-01", "2025-03-01"]), "event_time_in_range"),
        ("event_time", pd.to_datetime(["2025-01-01", "2025-07-01", "2025-03-01"]), "event_time_in_range"),
    ],
)
def test_transaction_contract_catches(column, values, rule):
    con = _con({**CLEAN_TX, column: values}, CLEAN_CB)
    failures = _failures(con, transaction_rules())
    assert rule in failures
    sample = next(r for r in evaluate_rules(con, transaction_rules(), AS_OF) if r.rule.name == rule).sample
    assert sample, "a failing rule shows the rows that break it"


@pytest.mark.parametrize(
    "chargebacks, rule",
    [
        ({"transaction_id": [99], "reported_at": pd.to_datetime(["2025-02-20"])}, "known_transaction"),
        ({"transaction_id": [2], "reported_at": pd.to_datetime(["2025-01-20"])}, "reported_after_transaction"),
        ({"transaction_id": [2], "reported_at": pd.to_datetime(["2025-08-01"])}, "reported_before_as_of"),
    ],
)
def test_chargeback_contract_catches(chargebacks, rule):
    assert rule in _failures(_con(CLEAN_TX, chargebacks), chargeback_rules())
