"""The cost model, the exact cost-minimising threshold and the amount-rule baseline."""

import math

import numpy as np
import pytest

from fraud_pipeline.lib.costs import (
    CURVE_POINTS,
    CostModel,
    approve_all_cost,
    choose_threshold,
    decision_costs,
    rule_baseline,
)

COSTS = CostModel()


@pytest.mark.parametrize(
    ("is_fraud", "amount", "alert", "expected"),
    [
        (True, 100.0, True, 3.0),  # caught fraud: review only
        (False, 100.0, True, 13.0),  # false alert: review + friction
        (True, 100.0, False, 120.0),  # missed fraud: amount + fee
        (False, 100.0, False, 0.0),  # approved genuine
    ],
)
def test_decision_cost_of_each_outcome(is_fraud, amount, alert, expected):
    assert decision_costs([is_fraud], [amount], [alert], COSTS).tolist() == [expected]


def test_decision_costs_use_the_given_cost_model():
    model = CostModel(chargeback_fee=5.0, review_cost=1.0, friction_cost=2.0)
    costs = decision_costs([1, 0, 1, 0], [40.0, 40.0, 40.0, 40.0], [True, True, False, False], model)
    assert costs.tolist() == [1.0, 3.0, 45.0, 0.0]


def test_approve_all_costs_every_fraud_amount_plus_its_fee():
    is_fraud = np.array([1, 0, 1, 0, 0])
    amount = np.array([10.0, 99.0, 250.0, 5.0, 1.0])
    assert approve_all_cost(is_fraud, amount, COSTS) == pytest.approx(10 + 20 + 250 + 20)
    assert approve_all_cost(is_fraud, amount, COSTS) == pytest.approx(
        decision_costs(is_fraud, amount, np.zeros(5, bool), COSTS).sum()
    )


def test_alerting_everything_costs_reviews_plus_friction_of_the_genuine():
    is_fraud = np.array([1, 0, 1, 0, 0])
    amount = np.array([10.0, 99.0, 250.0, 5.0, 1.0])
    everything = decision_costs(is_fraud, amount, np.ones(5, bool), COSTS).sum()
    assert everything == pytest.approx(5 * 3.0 + 3 * 10.0)


@pytest.mark.parametrize(
    ("is_fraud", "amount", "alert"),
    [
        ([True, None], [1.0, 2.0], [False, False]),
        ([True, False], [1.0, np.nan], [False, False]),
        ([True, False], [1.0, 2.0], [False]),
    ],
    ids=["missing-label", "nan-amount", "length-mismatch"],
)
def test_decision_costs_refuse_bad_input(is_fraud, amount, alert):
    with pytest.raises(ValueError):
        decision_costs(is_fraud, amount, alert, COSTS)


def brute_force(scores, is_fraud, amount, cost_model):
    """(cost, n_alerts) of the cheapest threshold, trying every distinct score and 'alert nothing'."""
    options = [(approve_all_cost(is_fraud, amount, cost_model), 0)]
    for threshold in np.unique(scores):
        alert = scores >= threshold
        options.append((decision_costs(is_fraud, amount, alert, cost_model).sum(), int(alert.sum())))
    best = min(cost for cost, _ in options)
    return best, min(n for cost, n in options if cost <= best + 1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, 6], ids=["many-ties", "some-ties", "few-ties"])
def test_choose_threshold_matches_a_brute_force_search(seed, decimals):
    rng = np.random.default_rng(seed)
    n = 300
    is_fraud = rng.random(n) < 0.1
    scores = np.round(np.clip(rng.normal(0.3 + 0.3 * is_fraud, 0.2), 0, 1), decimals)
    amount = np.round(rng.lognormal(3.0, 1.2, n), 2)
    fee, review, friction = rng.uniform([0, 1, 0], [40, 10, 30])
    cost_model = CostModel(chargeback_fee=fee, review_cost=review, friction_cost=friction)

    choice = choose_threshold(scores, is_fraud, amount, cost_model)
    best_cost, fewest_alerts = brute_force(scores, is_fraud, amount, cost_model)

    alert = scores >= choice.threshold
    assert choice.expected_cost == pytest.approx(best_cost, rel=1e-9)
    assert choice.n_alerts == fewest_alerts == int(alert.sum())
    assert decision_costs(is_fraud, amount, alert, cost_model).sum() == pytest.approx(choice.expected_cost, rel=1e-9)


def test_tied_scores_are_alerted_together():
    # Alerting only the fraud of the tied pair would cost 3, but ties cannot be split: 3 + 13.
    choice = choose_threshold([0.9, 0.9, 0.1], [1, 0, 0], [1000.0, 5.0, 5.0], COSTS)
    assert choice.n_alerts == 2
    assert choice.expected_cost == pytest.approx(16.0)
    assert 0.1 < choice.threshold <= 0.9


def test_threshold_lies_strictly_between_the_last_alerted_and_first_approved_score():
    choice = choose_threshold([0.8, 0.2], [1, 0], [500.0, 500.0], COSTS)
    assert choice.n_alerts == 1
    assert 0.2 < choice.threshold <= 0.8


def test_all_genuine_alerts_nothing_with_a_threshold_above_every_score():
    scores = np.array([0.2, 0.9, 0.5])
    choice = choose_threshold(scores, [0, 0, 0], [10.0, 20.0, 30.0], COSTS)
    assert choice.n_alerts == 0
    assert choice.expected_cost == 0.0
    assert choice.threshold > scores.max() and math.isfinite(choice.threshold)
    assert not (scores >= choice.threshold).any()


def test_all_fraud_with_large_amounts_alerts_everything():
    scores = np.array([0.2, 0.9, 0.5, 0.5])
    choice = choose_threshold(scores, [1, 1, 1, 1], [100.0, 200.0, 300.0, 400.0], COSTS)
    assert choice.n_alerts == 4
    assert choice.expected_cost == pytest.approx(4 * 3.0)
    assert (scores >= choice.threshold).all()


@pytest.mark.parametrize(
    ("is_fraud", "amount", "n_alerts", "cost"),
    [(1, 100.0, 1, 3.0), (0, 100.0, 0, 0.0)],
)
def test_single_row(is_fraud, amount, n_alerts, cost):
    choice = choose_threshold([0.4], [is_fraud], [amount], COSTS)
    assert choice.n_alerts == n_alerts
    assert choice.expected_cost == pytest.approx(cost)
    assert (0.4 >= choice.threshold) == bool(n_alerts)


def test_equal_costs_go_to_fewer_alerts():
    # Catching the fraud costs a review of 5, missing it costs 5 + 0: equal, so alert nothing.
    model = CostModel(chargeback_fee=0.0, review_cost=5.0, friction_cost=10.0)
    choice = choose_threshold([0.9, 0.1], [1, 0], [5.0, 5.0], model)
    assert choice.n_alerts == 0
    assert choice.expected_cost == pytest.approx(5.0)


def test_curve_is_sampled_ordered_and_holds_the_choice():
    rng = np.random.default_rng(3)
    n = 5_000
    is_fraud = rng.random(n) < 0.05
    scores = rng.random(n) + is_fraud
    choice = choose_threshold(scores, is_fraud, rng.lognormal(3, 1, n), COSTS)
    curve = choice.curve
    assert list(curve.columns) == ["threshold", "cost", "n_alerts", "recall", "precision"]
    assert len(curve) <= CURVE_POINTS
    assert curve["n_alerts"].is_monotonic_increasing and curve["threshold"].is_monotonic_decreasing
    assert curve["n_alerts"].iat[0] == 0 and curve["n_alerts"].iat[-1] == n
    assert math.isnan(curve["precision"].iat[0]) and curve["recall"].iat[-1] == 1.0
    chosen = curve.loc[curve["n_alerts"] == choice.n_alerts]
    assert chosen["threshold"].tolist() == [choice.threshold]
    assert chosen["cost"].tolist() == [choice.expected_cost]


@pytest.mark.parametrize(
    ("scores", "is_fraud", "amount"),
    [
        ([], [], []),
        ([np.nan, 0.1], [1, 0], [1.0, 1.0]),
        ([0.1, 0.2], [1, None], [1.0, 1.0]),
        ([0.1], [1, 0], [1.0, 1.0]),
    ],
    ids=["empty", "nan-score", "missing-label", "length-mismatch"],
)
def test_choose_threshold_refuses_bad_input(scores, is_fraud, amount):
    with pytest.raises(ValueError):
        choose_threshold(scores, is_fraud, amount, COSTS)


def test_rule_baseline_chooses_the_amount_on_validation_and_costs_it_on_test():
    # Validation: alerting the two large frauds (6) beats alerting 50 too (19) and nothing (1540).
    rule = rule_baseline(
        np.array([10.0, 50.0, 500.0, 1000.0]),
        np.array([0, 0, 1, 1]),
        np.array([20.0, 300.0, 600.0, 100.0]),
        np.array([0, 0, 1, 1]),
        COSTS,
    )
    assert 50.0 < rule["amount_threshold"] <= 500.0
    assert rule["n_alerts"] == 2  # 300 (false alert, 13) and 600 (caught, 3); 100 is missed (120)
    assert rule["cost"] == pytest.approx(13.0 + 3.0 + 120.0)


def test_threshold_between_adjacent_floats_still_separates_them():
    # The midpoint of two neighbouring floats rounds onto one of them; the threshold must not.
    upper = np.nextafter(0.5, 1.0)
    choice = choose_threshold([upper, 0.5], [1, 0], [500.0, 500.0], COSTS)
    assert choice.n_alerts == 1
    assert 0.5 < choice.threshold <= upper
