"""The estimate before the labels mature: the delay weighting, calibration, intervals, label shift and the check."""

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.evaluation.metrics import DEFAULT_COHORTS, threshold_metrics
from fraud_pipeline.lib.costs import CostModel, decision_costs
from fraud_pipeline.monitoring.calibration import fit_calibration, fit_platt, reliability_table
from fraud_pipeline.monitoring.checks import estimated_cost_within_promise
from fraud_pipeline.monitoring.estimate import (
    ChampionEstimate,
    OpenRows,
    cost_overrun,
    estimate_performance,
    expected_metrics,
    label_shift,
    posterior_fraud,
    realised_performance,
)
from fraud_pipeline.monitoring.recent import serving_champion

COSTS = CostModel()
COHORTS = DEFAULT_COHORTS[:2]


def _logit(p):
    return np.log(p / (1 - p))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _world(n: int, seed: int, completeness=None, validation_rows: int = 20_000):
    """Rows whose true fraud probability is known; the raw score is a monotone distortion of it.

    Returns the open rows, their eventual labels, and the true probabilities.
    """
    rng = np.random.default_rng(seed)

    def draw(size):
        p = _sigmoid(rng.normal(-4.5, 1.5, size))
        score = _sigmoid((_logit(p) + 1.0) / 2.0)  # what Platt must undo: a = 2, b = -1
        return p, score, rng.random(size) < p

    p, score, eventual = draw(n)
    f = rng.random(n) if completeness is None else np.full(n, completeness)
    reported = eventual & (rng.random(n) < f)  # a fraud's chargeback has arrived with probability F
    frame = pd.DataFrame(
        {
            "score": score,
            "route": "main",
            "alert": score >= np.quantile(score, 0.98),
            "amount": rng.lognormal(4.0, 0.7, n),
            "reported": reported,
            "completeness": f,
            "account_age_days": rng.choice([3.0, 20.0, 400.0], n),
            "channel": rng.choice(["card_present", "ecommerce"], n),
        }
    )
    _, val_score, val_fraud = draw(validation_rows)
    validation = {"main": pd.DataFrame({"score": val_score, "is_fraud": val_fraud})}
    return OpenRows(frame=frame, validation=validation), eventual, p


def test_the_delay_weighting_formula_on_hand_values():
    q = posterior_fraud(
        [0.2, 0.2, 0.2, 0.2, 1.0, 0.5], [False, False, False, True, False, False], [0.5, 0, 1, 0.3, 1, 0.9]
    )
    assert q[0] == pytest.approx(0.2 * 0.5 / (1 - 0.2 * 0.5))  # 0.111: half the chargebacks should have come
    assert q[1] == pytest.approx(0.2)  # nothing could have arrived: the score alone
    assert q[2] == 0.0  # everything would have arrived: the silence is the answer
    assert q[3] == 1.0  # reported is fraud
    assert q[4] == 0.0 and np.isfinite(q).all()  # p = 1 and complete, yet silent: genuine, not 0/0
    assert q[5] == pytest.approx(0.05 / 0.55)


def test_all_labels_arrived_gives_the_realised_metrics():
    rows, eventual, _ = _world(20_000, seed=1, completeness=1.0)
    assert (rows.frame["reported"].to_numpy() == eventual).all()
    for prior in (None, 10.0):
        overall = estimate_performance(rows, COSTS, COHORTS, n_resamples=0, prior_frauds=prior).overall()
        alert = rows.frame["alert"].to_numpy()
        cost = decision_costs(eventual, rows.frame["amount"].to_numpy(), alert, COSTS).sum()
        counts = threshold_metrics(eventual, alert)
        assert overall["cost_per_transaction"] == pytest.approx(cost / len(eventual))
        assert overall["recall"] == pytest.approx(counts["recall"])
        assert overall["precision"] == pytest.approx(counts["precision"])
        assert overall["labels_only_cost_per_transaction"] == pytest.approx(overall["cost_per_transaction"])


def test_no_labels_arrived_gives_the_calibrated_expectation():
    rows, _, _ = _world(20_000, seed=2, completeness=0.0)
    assert not rows.frame["reported"].any()
    estimate = estimate_performance(rows, COSTS, COHORTS, n_resamples=0, prior_frauds=10.0)
    p = estimate.calibration.probability(rows.frame["score"].to_numpy())
    alert, amount = rows.frame["alert"].to_numpy(), rows.frame["amount"].to_numpy()
    by_hand = np.where(alert, COSTS.review_cost + COSTS.friction_cost * (1 - p), p * (amount + COSTS.chargeback_fee))
    overall = estimate.overall()
    assert overall["cost_per_transaction"] == pytest.approx(by_hand.mean())
    assert overall["recall"] == pytest.approx(p[alert].sum() / p.sum())
    assert overall["precision"] == pytest.approx(p[alert].mean())
    assert overall["cost_per_transaction"] == pytest.approx(overall["scores_only_cost_per_transaction"])
    assert overall["labels_only_recall"] != overall["labels_only_recall"]  # no label at all: undefined, not 0


def test_partly_arrived_labels_are_weighted_by_the_delay_curve():
    rows, _, _ = _world(5_000, seed=3)
    estimate = estimate_performance(rows, COSTS, COHORTS, n_resamples=0)
    frame = rows.frame
    p = estimate.calibration.probability(frame["score"].to_numpy())
    f, reported = frame["completeness"].to_numpy(), frame["reported"].to_numpy()
    expected = reported.sum() + (p * (1 - f) / (1 - p * f))[~reported].sum()
    assert estimate.overall()["expected_frauds"] == pytest.approx(expected)
    assert estimate.overall()["known_frauds"] == reported.sum()
    young = next(r for r in estimate.rows if r["value"] == "<7d")
    assert young["n_transactions"] == (frame["account_age_days"] < 7).sum()


def test_expected_metrics_of_known_labels_equal_the_decision_costs():
    labels = np.array([1, 0, 1, 0, 0], dtype=float)
    alert = np.array([True, True, False, False, False])
    amount = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    metrics = expected_metrics(labels, alert, amount, COSTS)
    assert metrics["total_cost"] == pytest.approx(decision_costs(labels.astype(bool), amount, alert, COSTS).sum())
    assert metrics["recall"] == 0.5 and metrics["precision"] == 0.5 and metrics["n_alerts"] == 2


def test_platt_recovers_a_known_distortion():
    rng = np.random.default_rng(0)
    true_p = _sigmoid(rng.normal(-4.0, 1.5, 200_000))
    score = _sigmoid((_logit(true_p) + 1.0) / 2.0)
    a, b = fit_platt(score, rng.random(len(true_p)) < true_p)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-1.0, abs=0.25)


def test_platt_stays_finite_when_most_scores_tie():
    """A small model gives most rows the same score; Newton without a line search diverged there."""
    score = np.r_[np.full(3000, 0.00146), np.linspace(0.002, 0.04, 124)]
    labels = np.r_[np.zeros(2990, bool), np.ones(10, bool), np.arange(124) % 4 == 0]
    calibration = fit_calibration(score, labels)
    p = calibration.probability(score)
    assert np.isfinite(calibration.platt).all() and abs(calibration.platt[0]) < 100
    assert p.sum() == pytest.approx(labels.sum(), rel=0.05)  # the fit keeps the fraud count


def test_isotonic_calibration_and_the_reliability_table():
    rows, _, _ = _world(1_000, seed=4, validation_rows=50_000)
    validation = rows.validation["main"]
    calibration = fit_calibration(validation["score"], validation["is_fraud"], "isotonic")
    p = calibration.probability(validation["score"].to_numpy())
    table = reliability_table(p, validation["is_fraud"].to_numpy(), n_bins=5)
    assert sum(r["n_rows"] for r in table) == len(validation)
    assert sum(r["observed_frauds"] for r in table) == validation["is_fraud"].sum()
    for row in table:
        assert row["p_low"] <= row["mean_predicted"] <= row["p_high"]
        assert row["expected_frauds"] == pytest.approx(row["observed_frauds"], rel=0.2)  # isotonic fits in sample
    assert calibration.probability(np.array([np.nan]))[0] == pytest.approx(calibration.base_rate)
    with pytest.raises(ValueError, match="calibration method"):
        fit_calibration(validation["score"], validation["is_fraud"], "magic")


def test_the_intervals_cover_the_realised_value_in_a_seeded_simulation():
    inside = {"cost_per_transaction": [], "recall": []}
    for seed in range(24):
        rows, eventual, _ = _world(3_000, seed=100 + seed, validation_rows=6_000)
        overall = estimate_performance(rows, COSTS, COHORTS, n_resamples=60, seed=seed).overall()
        realised = realised_performance(rows.frame, eventual, COSTS, COHORTS)[0]
        for metric in inside:
            inside[metric].append(overall[f"{metric}_low"] <= realised[metric] <= overall[f"{metric}_high"])
    for metric, hits in inside.items():
        assert 0.75 <= np.mean(hits) <= 1.0, (metric, np.mean(hits))  # nominal 90%


def test_the_estimate_is_deterministic():
    rows, _, _ = _world(3_000, seed=5)
    first = estimate_performance(rows, COSTS, COHORTS, n_resamples=50, seed=3, prior_frauds=10.0)
    again = estimate_performance(rows, COSTS, COHORTS, n_resamples=50, seed=3, prior_frauds=10.0)
    assert pd.DataFrame(first.rows).equals(pd.DataFrame(again.rows))


def test_the_label_shift_follows_the_arrivals_shrunk_by_the_prior():
    p, f = np.full(1000, 0.01), np.full(1000, 0.5)
    assert label_shift(p, f, arrived=5.0, prior_frauds=10.0) == pytest.approx(0.0, abs=1e-9)  # as expected
    up = label_shift(p, f, arrived=20.0, prior_frauds=0.0)
    assert np.dot(_sigmoid(_logit(p) + up), f) == pytest.approx(20.0)
    shrunk = label_shift(p, f, arrived=20.0, prior_frauds=10.0)
    assert 0 < shrunk < up
    assert label_shift(p, np.zeros(1000), arrived=0.0, prior_frauds=10.0) == 0.0  # nothing could have arrived


def test_the_label_shift_raises_the_estimate_when_more_frauds_arrive_than_the_scores_say():
    rows, _, _ = _world(10_000, seed=6)
    frame = rows.frame.copy()
    extra = np.random.default_rng(0).random(len(frame)) < 0.02 * frame["completeness"].to_numpy()
    shifted = OpenRows(frame=frame.assign(reported=frame["reported"].to_numpy() | extra), validation=rows.validation)
    plain = estimate_performance(shifted, COSTS, COHORTS, n_resamples=0).overall()
    adjusted = estimate_performance(shifted, COSTS, COHORTS, n_resamples=0, prior_frauds=10.0).overall()
    assert adjusted["expected_frauds"] > plain["expected_frauds"]
    assert adjusted["cost_per_transaction"] > plain["cost_per_transaction"]


def _champion_estimate(promised: float) -> ChampionEstimate:
    rows, _, _ = _world(3_000, seed=7)
    return ChampionEstimate(
        status="estimated",
        as_of="2025-07-01T00:00:00",
        max_cost_increase=0.25,
        champion="abc",
        window=("2025-06-03T00:00:00", "2025-07-01T00:00:00"),
        promised_cost_per_transaction=promised,
        estimate=estimate_performance(rows, COSTS, COHORTS, n_resamples=20),
    )


def test_the_check_warns_only_beyond_the_margin():
    estimated = _champion_estimate(1.0).estimate.overall()["cost_per_transaction"]
    over = _champion_estimate(estimated / 1.3)
    assert cost_overrun(over) is not None
    check = estimated_cost_within_promise(over)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "exceeds the promise" in check.description
    within = estimated_cost_within_promise(_champion_estimate(estimated / 1.2))
    assert within.passed and "within 25%" in within.description
    nothing = estimated_cost_within_promise(ChampionEstimate(status="no_champion", as_of="x", max_cost_increase=0.25))
    assert nothing.passed and "nothing to judge" in nothing.description


def test_the_metadata_is_numeric_per_cohort():
    metadata = _champion_estimate(1.0).to_metadata()
    assert isinstance(metadata["estimated_cost_per_transaction"], float)
    assert isinstance(metadata["estimated_recall_account_age_<7d"], float)
    assert isinstance(metadata["promised_cost_per_transaction"], float)
    assert not math.isnan(metadata["estimated_cost_per_transaction_low"])


def test_the_serving_champion_is_the_last_promotion_of_an_earlier_night(tmp_path):
    store = ModelRegistryStore(tmp_path)
    assert serving_champion(store, pd.Timestamp("2025-06-01").to_pydatetime()) == (None, None)
    for version, night in (("v1", "2025-05-01"), ("v2", "2025-06-01")):
        store.record({"event": "promoted", "version": version, "as_of": f"{night}T00:00:00"})
    store.record({"event": "refused", "version": "v3", "as_of": "2025-06-02T00:00:00"})
    # v2 was promoted on the night itself: the traffic before it was v1's (read before any version check)
    event, problem = serving_champion(store, pd.Timestamp("2025-06-01").to_pydatetime())
    assert event is None and "v1" in problem  # v1's folder does not exist here: named, not a traceback
    event, problem = serving_champion(store, pd.Timestamp("2025-06-02").to_pydatetime())
    assert event is None and "v2" in problem
