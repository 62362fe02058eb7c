"""Out-of-time windows and the gates that judge them."""

from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from fraud_pipeline.deployment.gates import (
    cost_gate,
    fraud_count_gate,
    maturity_gate,
    window_gate,
)
from fraud_pipeline.training.windows import (
    TrainingWindows,
    WindowDesign,
    plan_windows,
    rolling_windows,
    window_problems,
)

FIRST = datetime(2025, 1, 1)
LAST = datetime(2025, 6, 30, 23, 59)


def default_windows(as_of=datetime(2025, 7, 1), horizon=60):
    return plan_windows(as_of, horizon, FIRST, LAST, train_days=49, validation_days=14, test_days=21)


def test_windows_are_consecutive_and_end_at_the_label_cutoff():
    w = default_windows()
    assert w.label_cutoff == datetime(2025, 5, 2)
    assert w.test_end == w.label_cutoff
    assert w.train_end == w.validation_start and w.validation_end == w.test_start
    assert (w.test_end - w.test_start).days == 21
    assert (w.validation_end - w.validation_start).days == 14
    assert (w.train_end - w.train_start).days == 49
    assert window_problems(w) == []
    assert window_gate(w, 60).passed


def test_windows_round_trip_through_plain_values():
    w = default_windows()
    assert w.design == WindowDesign(
        train_days=49,
        validation_days=14,
        test_days=21,
        warmup_days=30,
        min_train_days=21,
        min_validation_days=14,
        min_test_days=21,
    )
    assert w.as_dict()["design"] == {
        "train_days": 49,
        "validation_days": 14,
        "test_days": 21,
        "warmup_days": 30,
        "min_train_days": 21,
        "min_validation_days": 14,
        "min_test_days": 21,
    }
    assert TrainingWindows.from_dict(w.as_dict()) == w
    # a bundle written before the windows carried their design still loads
    older = {k: v for k, v in w.as_dict().items() if k != "design"}
    assert TrainingWindows.from_dict(older) == replace(w, design=None)


@pytest.mark.parametrize(
    "horizon, cutoff",
    [
        (7, datetime(2025, 6, 24)),
        (7.5, datetime(2025, 6, 23)),
        (67.5, datetime(2025, 4, 24)),
        (0, datetime(2025, 7, 1)),
    ],
)
def test_a_horizon_in_hours_floors_the_cutoff_to_midnight(horizon, cutoff):
    w = default_windows(horizon=horizon)
    assert w.label_cutoff == w.test_end == cutoff
    assert window_problems(w) == []


def test_folds_of_a_seven_day_design_are_seven_days_each_and_keep_the_design():
    folds = rolling_windows(
        datetime(2025, 7, 1),
        67.5,
        FIRST,
        LAST,
        n_folds=4,
        train_days=7,
        validation_days=7,
        test_days=7,
        min_train_days=7,
    )
    assert [f"{f.test_start:%m-%d}..{f.test_end:%m-%d}" for f in folds] == [
        "04-17..04-24",
        "04-10..04-17",
        "04-03..04-10",
        "03-27..04-03",
    ]
    assert all((f.test_end - f.test_start).days == 7 and f.design.label() == "7/7/7" for f in folds)
    # fold 0 is the run's own windows, planned with the same design and horizon
    assert folds[0] == plan_windows(datetime(2025, 7, 1), 67.5, FIRST, LAST, 7, 7, 7, min_train_days=7)


def test_data_ending_before_the_cutoff_moves_the_windows_back():
    w = plan_windows(datetime(2026, 11, 22), 60, FIRST, LAST, 49, 14, 21)
    assert w.test_end == datetime(2025, 7, 1)
    assert w.test_end <= w.label_cutoff


def test_training_is_clipped_to_the_feature_warmup():
    w = plan_windows(datetime(2025, 7, 1), 70, FIRST, LAST, 200, 14, 21)
    assert w.train_start == FIRST + timedelta(days=30)


@pytest.mark.parametrize("horizon", [120, 150])
def test_too_little_mature_history_is_an_error(horizon):
    with pytest.raises(
        ValueError, match=r"min_train_days 21 \(--min-train-days\) not met: -?\d+ training days available"
    ):
        default_windows(horizon=horizon)


def test_a_minimum_above_the_training_window_names_the_settings_not_the_data():
    with pytest.raises(
        ValueError, match=r"train_days 7 is below min_train_days 21 \(--train-days / --min-train-days\)"
    ):
        plan_windows(datetime(2025, 7, 1), 60, FIRST, LAST, 7, 14, 21)
    windows = plan_windows(datetime(2025, 7, 1), 60, FIRST, LAST, 7, 14, 21, min_train_days=7)
    assert (windows.train_end - windows.train_start).days == 7


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"test_end": datetime(2025, 5, 20)}, "after the label cutoff"),
        ({"validation_end": datetime(2025, 4, 15)}, "overlaps"),
        ({"train_start": datetime(2025, 4, 1)}, "empty or reversed"),
        ({"label_cutoff": datetime(2025, 6, 1), "test_end": datetime(2025, 6, 1)}, "later than as_of - horizon"),
    ],
)
def test_window_gate_fails_on_broken_windows(change, problem):
    broken = replace(default_windows(), **change)
    gate = window_gate(broken, 60)
    assert not gate.passed
    assert problem in gate.reason


def test_window_gate_judges_the_windows_against_the_measured_horizon():
    """Windows planned with a horizon of 0 agree with themselves; the measured 60 days say they end too late."""
    planned_with_zero = default_windows(horizon=0)
    assert window_problems(planned_with_zero) == []
    gate = window_gate(planned_with_zero, 60)
    assert not gate.passed
    assert "planned with a 0-day horizon, measured 60 days" in gate.reason
    assert "test ends 2025-07-01" in gate.reason and "after 2025-05-02" in gate.reason
    # a longer planned horizon than measured is merely conservative
    assert window_gate(default_windows(horizon=70), 60).passed
    # hours: the cutoff is floored to midnight the same way the windows are
    assert window_gate(default_windows(horizon=59.5), 59.5).passed
    assert not window_gate(default_windows(horizon=59.5), 60.25).passed


def _summary(**overrides):
    base = {"n_rows": 1000, "n_frauds": 30, "n_immature": 0, "n_known_after_as_of": 0, "n_label_mismatch": 0}
    return {split: {**base, **overrides.get(split, {})} for split in ("train", "validation", "test")}


def test_maturity_gate_both_ways():
    assert maturity_gate(_summary()).passed
    gate = maturity_gate(_summary(test={"n_immature": 3}))
    assert not gate.passed and "test" in gate.reason


def test_fraud_count_gate_both_ways():
    assert fraud_count_gate(_summary(), min_frauds=20).passed
    gate = fraud_count_gate(_summary(validation={"n_frauds": 5}), min_frauds=20)
    assert not gate.passed and "validation" in gate.reason


@pytest.mark.parametrize("cost, passed", [(800.0, True), (949.0, True), (951.0, False), (1200.0, False)])
def test_cost_gate_requires_the_margin_against_both_baselines(cost, passed):
    evaluation = SimpleNamespace(total_cost=cost, approve_all_cost=2000.0, rule_cost=1000.0)
    assert cost_gate(evaluation, margin=0.05).passed is passed
