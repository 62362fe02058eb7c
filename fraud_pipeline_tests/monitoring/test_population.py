"""Pure population-shift logic: drift, cohort intervals and calibration, decomposition, floors, folds, monitoring."""

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraud_pipeline.deployment.gates import cohort_floor_gate
from fraud_pipeline.evaluation.backtest import spread, spread_findings
from fraud_pipeline.evaluation.cohorts import (
    _weighted_ap,
    bootstrap_intervals,
    calibration,
    cohort_details,
    decompose,
    projected_mix_effect,
    shift_share,
)
from fraud_pipeline.evaluation.metrics import DEFAULT_COHORTS, CohortSpec
from fraud_pipeline.evaluation.result import CohortFloors
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.monitoring.champion import compare, matured_window, shortfalls
from fraud_pipeline.monitoring.drift import (
    cohort_mix,
    feature_drift,
    ks,
    mix_shift_findings,
    psi,
)
from fraud_pipeline.training.windows import rolling_windows, window_problems

COSTS = CostModel()


def test_psi_is_zero_for_identical_samples_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=20_000))
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, pd.Series(rng.normal(size=20_000))) < 0.01
    assert psi(reference, pd.Series(rng.normal(0.5, size=20_000))) > 0.2


def test_psi_counts_a_change_in_missingness_as_drift():
    values = pd.Series(np.arange(10_000, dtype=float))
    more_nulls = values.where(values % 3 != 0)
    assert psi(values, more_nulls) > 0.25
    assert ks(values, more_nulls)[0] < 0.01  # KS on the present values alone sees nothing


def test_psi_of_categories_includes_new_values():
    reference = pd.Series(["a"] * 500 + ["b"] * 500)
    current = pd.Series(["a"] * 450 + ["b"] * 450 + ["new"] * 100)
    assert psi(reference, current, categorical=True) > 0.5


def test_feature_drift_labels_cohort_keys_behaviour_and_outcome_features():
    frame = pd.DataFrame(
        {
            "account_age_days": [1.0, 40.0],
            "n_prior_tx_30d": [0, 3],
            "amount": [1.0, 2.0],
            "merchant_chargeback_rate_30d": [None, 0.1],
        }
    )
    rows = feature_drift(frame, frame, tuple(frame.columns), (), DEFAULT_COHORTS)
    assert {r["feature"]: r["kind"] for r in rows} == {
        "account_age_days": "cohort key",
        "n_prior_tx_30d": "behaviour",
        "amount": "behaviour",
        "merchant_chargeback_rate_30d": "lagged outcome",
    }
    assert all(r["verdict"] == "quiet" for r in rows)


def _population(n_new: int, n_old: int, rng) -> pd.DataFrame:
    """Same behaviour for everyone; only the share of new accounts differs."""
    n = n_new + n_old
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 0.7, n),
            "account_age_days": np.r_[rng.uniform(0, 7, n_new), rng.uniform(30, 900, n_old)],
            "channel": rng.choice(["card_present", "ecommerce"], n),
            "country": rng.choice(["R1", "R2"], n),
            "is_fraud": rng.random(n) < 0.01,
        }
    )


def test_a_tripled_small_cohort_is_loud_in_the_mix_and_quiet_in_the_features():
    rng = np.random.default_rng(1)
    before, after = _population(200, 19_800, rng), _population(600, 19_400, rng)
    features = {r["feature"]: r for r in feature_drift(before, after, ("amount",), (), DEFAULT_COHORTS)}
    assert features["amount"]["verdict"] == "quiet"
    mix = cohort_mix(before, after, DEFAULT_COHORTS)
    new = next(r for r in mix if r["value"] == "<7d")
    assert new["share_ratio"] == pytest.approx(3.0, rel=0.01)
    assert new["mix_psi"] < 0.1  # PSI alone would call this shift quiet
    findings = mix_shift_findings(mix, max_share_ratio=1.5, min_share=0.005, max_mix_psi=0.1)
    assert findings and "account_age=<7d" in findings[0]


def test_mix_shift_findings_are_empty_without_a_shift():
    rng = np.random.default_rng(2)
    mix = cohort_mix(_population(300, 19_700, rng), _population(300, 19_700, rng), DEFAULT_COHORTS)
    assert mix_shift_findings(mix, max_share_ratio=1.5, min_share=0.005, max_mix_psi=0.1) == []


def test_weighted_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(2_000), 2)
    fraud = (rng.random(2_000) < scores * 0.2).astype(float)
    order = np.argsort(-scores, kind="stable")
    ends = np.flatnonzero(np.r_[scores[order][1:] != scores[order][:-1], True])
    counts = np.bincount(rng.integers(0, 2_000, 2_000), minlength=2_000).astype(float)
    ours = _weighted_ap(fraud[order], ends, counts[order][None, :])[0]
    expected = average_precision_score(fraud, scores, sample_weight=counts)
    assert ours == pytest.approx(expected, rel=1e-9)


def _scored(n: int, n_fraud: int, seed: int, informative: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fraud = np.zeros(n, bool)
    fraud[:n_fraud] = True
    score = np.where(fraud, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.6, n)) if informative else rng.random(n)
    return pd.DataFrame({"is_fraud": fraud, "score": score, "amount": np.full(n, 100.0)})


def test_bootstrap_intervals_are_seeded_and_contain_the_point_estimate():
    frame = _scored(3_000, 30, seed=4)
    first = bootstrap_intervals(frame, 0.5, COSTS, 200, seed=7)
    assert first == bootstrap_intervals(frame, 0.5, COSTS, 200, seed=7)
    recall = float(frame.loc[frame.is_fraud, "score"].ge(0.5).mean())
    assert first["recall_low"] <= recall <= first["recall_high"]
    assert first["recall_high"] - first["recall_low"] > 0.05  # 30 frauds: a wide interval


def test_bootstrap_intervals_are_undefined_without_frauds():
    frame = _scored(500, 0, seed=5)
    assert math.isnan(bootstrap_intervals(frame, 0.5, COSTS, 100, seed=0)["recall_low"])


def test_calibration_compares_mean_score_with_the_observed_rate():
    frame = pd.DataFrame({"is_fraud": [True, False, False, False], "score": [0.1, 0.1, 0.1, 0.1], "amount": 1.0})
    assert calibration(frame) == {
        "mean_score": 0.1,
        "observed_fraud_rate": 0.25,
        "calibration_ratio": pytest.approx(0.4),
    }
    assert math.isnan(calibration(frame.assign(is_fraud=False))["calibration_ratio"])


def test_cohort_details_give_intervals_only_to_small_cohorts():
    frame = pd.concat([_scored(2_000, 10, 6).assign(channel="a"), _scored(2_000, 200, 7).assign(channel="b")])
    details = cohort_details(frame, 0.5, COSTS, CohortSpec("channel", "channel"), 100, 50, seed=0).set_index("value")
    assert not math.isnan(details.loc["a", "recall_high"])
    assert math.isnan(details.loc["b", "recall_high"])


def test_shift_share_splits_the_change_exactly():
    old = [{"value": "new", "w": 10, "m": 5.0}, {"value": "old", "w": 90, "m": 1.0}]
    new = [
        {"value": "new", "w": 30, "m": 6.0},
        {"value": "old", "w": 70, "m": 1.0},
        {"value": "R_new", "w": 0, "m": 9.0},
    ]
    split = shift_share(old, new, "m", "w")
    assert split["old"] == pytest.approx(1.4) and split["new"] == pytest.approx(2.5)
    assert split["mix"] == pytest.approx((0.3 - 0.1) * 5 + (0.7 - 0.9) * 1)
    assert split["within"] == pytest.approx(0.3 * 1.0)
    assert split["mix"] + split["within"] == pytest.approx(split["change"])


def test_decompose_attributes_a_growing_bad_cohort_to_the_mix():
    def rows(n_new, n_old):
        return [
            {
                "cohort": "account_age",
                "value": "<7d",
                "n_transactions": n_new,
                "n_frauds": n_new // 10,
                "total_cost": 10.0 * n_new,
                "average_precision": 0.1,
            },
            {
                "cohort": "account_age",
                "value": ">30d",
                "n_transactions": n_old,
                "n_frauds": n_old // 100,
                "total_cost": 1.0 * n_old,
                "average_precision": 0.5,
            },
        ]

    def headline(cohorts, ap):
        return {
            "total_cost": sum(r["total_cost"] for r in cohorts),
            "n_transactions": sum(r["n_transactions"] for r in cohorts),
            "average_precision": ap,
        }

    before, after = rows(100, 9_900), rows(500, 9_500)
    cost, ap = decompose(before, after, headline(before, 0.45), headline(after, 0.40))
    assert cost["metric"] == "cost_per_transaction"
    assert cost["within"] == pytest.approx(0.0) and cost["mix"] == pytest.approx(cost["change"]) and cost["change"] > 0
    assert cost["cross_cohort"] == pytest.approx(0.0)
    assert ap["mix"] < 0 and ap["within"] == pytest.approx(0.0)
    assert ap["mix"] + ap["within"] + ap["cross_cohort"] == pytest.approx(ap["change"])


def _cohort_row(value, n_frauds, **metrics):
    base = {
        "cohort": "account_age",
        "value": value,
        "n_frauds": n_frauds,
        "savings_vs_approve_all_pct": 0.3,
        "recall": 0.5,
        "calibration_ratio": 0.8,
    }
    return {**base, **metrics}


def test_cohort_floors_pass_on_healthy_cohorts_and_skip_small_ones():
    gate = cohort_floor_gate([_cohort_row(">30d", 200), _cohort_row("<7d", 3, recall=0.0)], CohortFloors())
    assert gate.passed and "account_age=<7d (3 frauds)" in gate.reason


@pytest.mark.parametrize(
    "metric, value", [("savings_vs_approve_all_pct", -0.4), ("recall", 0.0), ("calibration_ratio", 0.01)]
)
def test_cohort_floors_fail_on_each_floor(metric, value):
    gate = cohort_floor_gate([_cohort_row(">30d", 200), _cohort_row("7-30d", 40, **{metric: value})], CohortFloors())
    assert not gate.passed and f"account_age=7-30d {metric}" in gate.reason


def test_cohort_floors_judge_small_cohorts_on_the_upper_end_of_their_interval():
    noisy = _cohort_row("7-30d", 20, recall=0.02, recall_low=0.0, recall_high=0.2)
    assert cohort_floor_gate([noisy], CohortFloors()).passed
    confidently_bad = _cohort_row("7-30d", 20, recall=0.0, recall_low=0.0, recall_high=0.0)
    assert not cohort_floor_gate([confidently_bad], CohortFloors()).passed


def test_rolling_windows_step_back_by_the_test_length_and_stop_when_history_runs_out():
    folds = rolling_windows(
        datetime(2025, 7, 1),
        68,
        datetime(2025, 1, 1),
        datetime(2025, 6, 30, 23),
        n_folds=5,
        train_days=49,
        validation_days=14,
        test_days=14,
    )
    assert len(folds) == 3
    for newer, older in zip(folds, folds[1:]):
        assert older.test_end == newer.test_start
    for fold in folds:
        assert window_problems(fold) == []
        assert fold.test_end <= fold.label_cutoff == datetime(2025, 4, 24)
    with pytest.raises(ValueError):
        rolling_windows(datetime(2025, 3, 1), 68, datetime(2025, 1, 1), datetime(2025, 2, 28), 3, 49, 14, 14)


def test_spread_and_its_findings():
    folds = [
        {"fold": i, "test_start": "a", "test_end": "b", "savings_vs_approve_all_pct": s, "average_precision": ap}
        for i, (s, ap) in enumerate([(0.3, 0.4), (0.35, 0.42), (0.25, 0.38)])
    ]
    summary = spread(folds, ("savings_vs_approve_all_pct", "average_precision"))
    assert summary["average_precision"]["mean"] == pytest.approx(0.4)
    assert summary["average_precision"]["std"] == pytest.approx(0.02)
    assert spread_findings(folds, summary, {"savings_vs_approve_all_pct": 0.3, "average_precision": 0.39}, 2.0) == []
    assert (
        "average_precision"
        in spread_findings(folds, summary, {"savings_vs_approve_all_pct": 0.3, "average_precision": 0.2}, 2.0)[0]
    )
    one_noisy = [
        *folds,
        {"fold": 3, "test_start": "c", "test_end": "d", "savings_vs_approve_all_pct": -0.02, "average_precision": 0.4},
    ]
    assert (
        spread_findings(one_noisy, spread(one_noisy, ("savings_vs_approve_all_pct", "average_precision")), {}, 2.0)
        == []
    )
    losing = [{**f, "savings_vs_approve_all_pct": -0.1} for f in folds]
    assert (
        "on average"
        in spread_findings(losing, spread(losing, ("savings_vs_approve_all_pct", "average_precision")), {}, 2.0)[0]
    )


def test_matured_window_is_none_until_labels_mature_after_the_deploy():
    cutoff = datetime(2025, 4, 3)
    assert matured_window(cutoff, cutoff, 21) is None
    assert matured_window(cutoff, cutoff + timedelta(days=5), 21) == (cutoff, cutoff + timedelta(days=5))
    assert matured_window(cutoff, cutoff + timedelta(days=40), 21) == (
        cutoff + timedelta(days=19),
        cutoff + timedelta(days=40),
    )


def _metrics(savings, ap):
    return {
        "total_cost": 100.0,
        "n_transactions": 1_000,
        "savings_vs_approve_all_pct": savings,
        "average_precision": ap,
        "recall": 0.4,
        "precision": 0.3,
    }


def test_shortfalls_fire_only_beyond_the_margins_and_with_enough_frauds():
    promised = _metrics(0.35, 0.40)
    assert shortfalls(compare(promised, _metrics(0.30, 0.35)), 100, 20, 0.10, 0.30) == []
    fired = shortfalls(compare(promised, _metrics(0.10, 0.20)), 100, 20, 0.10, 0.30)
    assert len(fired) == 2
    assert shortfalls(compare(promised, _metrics(0.10, 0.20)), 5, 20, 0.10, 0.30) == []


def test_projected_mix_effect_prices_the_current_mix_at_test_costs():
    test = [
        {"cohort": "account_age", "value": "<7d", "n_transactions": 10, "total_cost": 50.0},
        {"cohort": "account_age", "value": ">30d", "n_transactions": 90, "total_cost": 90.0},
    ]
    mix = [
        {"cohort": "account_age", "value": "<7d", "n_current": 30},
        {"cohort": "account_age", "value": ">30d", "n_current": 60},
        {"cohort": "account_age", "value": "unknown", "n_current": 10},
    ]
    (row,) = projected_mix_effect(test, mix)
    assert row["test_cost_per_transaction"] == pytest.approx(1.4)
    assert row["projected_cost_per_transaction"] == pytest.approx((30 * 5 + 60 * 1) / 90)
    assert row["mix_change"] == pytest.approx(row["projected_cost_per_transaction"] - 1.4)
    assert row["unpriced_share"] == pytest.approx(0.1)
