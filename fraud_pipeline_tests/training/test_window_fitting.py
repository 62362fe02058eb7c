"""Windows shortened to fit a short mature history: in proportion, never below their minimum, said aloud."""

from datetime import datetime, timedelta

import pytest

from fraud_pipeline.cli.run import OptionError, check_windows
from fraud_pipeline.training.assets import WindowConfig
from fraud_pipeline.training.windows import TrainingWindows, plan_windows, rolling_windows, window_problems

FIRST = datetime(2025, 1, 1)
LAST = datetime(2025, 5, 31, 23, 59)
AS_OF = datetime(2025, 6, 1)
DESIGN = {"train_days": 49, "validation_days": 14, "test_days": 21, "warmup_days": 30, "min_train_days": 21}


def planned(horizon: float, **overrides) -> TrainingWindows:
    return plan_windows(AS_OF, horizon, FIRST, LAST, **{**DESIGN, **overrides})


def test_windows_that_fit_are_never_shortened():
    # 60-day horizon: mature until 2025-04-02, 61 warmed-up days hold 21 + 14 + 21 with 26 to train
    windows = planned(60, min_validation_days=7, min_test_days=7)
    assert windows.days() == {"train": 26, "validation": 14, "test": 21}
    assert windows.shortened() is None
    assert "shortened" not in windows.to_metadata()
    assert windows.splits() == planned(60).splits()  # the same windows as without minimums


def test_a_short_history_shortens_validation_and_test_in_proportion():
    # 72.75-day horizon (a seed of the default world at 2025-06-01): mature until 2025-03-20, which
    # leaves 48 warmed-up days; 21 train + 14 + 21 do not fit, so 27 days are shared 14:21
    windows = planned(72.75, min_validation_days=7, min_test_days=7)
    assert windows.days() == {"train": 21, "validation": 11, "test": 16}
    assert window_problems(windows) == []
    assert windows.test_end == windows.label_cutoff == datetime(2025, 3, 20)
    assert windows.train_start == FIRST + timedelta(days=30)
    sentence = windows.shortened()
    assert "validation 14 -> 11 days" in sentence and "test 21 -> 16 days" in sentence
    assert windows.to_metadata()["shortened"] == sentence
    # the design records what was asked, so a reader sees both
    assert (windows.design.validation_days, windows.design.test_days) == (14, 21)


def test_shortening_stops_at_the_minimums_and_then_names_them():
    with pytest.raises(ValueError, match="--min-test-days 10 / --min-validation-days 10"):
        planned(90, min_validation_days=10, min_test_days=10)
    # at the minimums exactly: train gets what is left, if that is min_train_days
    windows = planned(80, min_validation_days=7, min_test_days=7)
    assert windows.days()["train"] >= 21
    assert windows.days()["validation"] >= 7 and windows.days()["test"] >= 7


def test_a_validation_window_at_its_minimum_leaves_the_rest_to_test():
    windows = planned(72.75, min_validation_days=12, min_test_days=7)
    assert windows.days() == {"train": 21, "validation": 12, "test": 15}


def test_without_minimums_a_short_history_is_refused_as_before():
    with pytest.raises(ValueError, match="min_train_days 21 .* not met: 13 training days available"):
        planned(72.75)


def test_bad_minimums_are_refused():
    with pytest.raises(ValueError, match="min_test_days must be from 1 to the window's 21 days, got 22"):
        planned(60, min_validation_days=7, min_test_days=22)
    with pytest.raises(ValueError, match="min_validation_days must be from 1"):
        planned(60, min_validation_days=0, min_test_days=7)


def test_backtest_folds_keep_the_newest_folds_shortened_lengths():
    folds = rolling_windows(AS_OF, 60, FIRST, LAST, 3, **DESIGN, min_validation_days=7, min_test_days=7)
    assert [f.days()["test"] for f in folds] == [21] * len(folds)
    later = datetime(2025, 8, 1)
    folds = rolling_windows(
        later, 72.75, FIRST, later - timedelta(minutes=1), 4, **DESIGN, min_validation_days=7, min_test_days=7
    )
    newest = folds[0]
    assert newest.days()["test"] == 21  # enough history at this as_of: nothing shortened
    short = rolling_windows(AS_OF, 72.75, FIRST, LAST, 3, **DESIGN, min_validation_days=7, min_test_days=7)
    assert short[0].days() == {"train": 21, "validation": 11, "test": 16}
    for older in short[1:]:
        assert (older.days()["validation"], older.days()["test"]) == (11, 16)
    for newer, older in zip(short, short[1:]):
        assert older.test_end == newer.test_start


def test_the_run_config_caps_its_default_minimums_at_short_windows():
    design = WindowConfig(validation_days=5, test_days=3).design(history_days=30)
    assert (design.min_validation_days, design.min_test_days) == (5, 3)
    assert WindowConfig().design(history_days=30).min_validation_days == 7


def test_a_minimum_above_its_window_is_one_line_naming_the_option():
    config = {"ops": {"training_windows": {"config": {"validation_days": 10, "min_validation_days": 12}}}}
    with pytest.raises(OptionError, match="^--min-validation-days 12 is more than the 10 validation days"):
        check_windows(config)
    check_windows({"ops": {"training_windows": {"config": {"test_days": 5}}}})  # default minimum capped, no error


def test_the_windows_gate_passes_shortened_windows_and_says_they_were_shortened():
    from fraud_pipeline.deployment.gates import window_gate

    verdict = window_gate(planned(72.75, min_validation_days=7, min_test_days=7), 72.75)
    assert verdict.passed
    assert "(validation 14 -> 11 days, test 21 -> 16 days, to fit the mature history)" in verdict.reason
    assert "shortened" not in window_gate(planned(60), 60).reason
