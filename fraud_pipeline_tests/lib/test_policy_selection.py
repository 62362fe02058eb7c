"""A split earns its own thresholds only when it saves money on later days, beyond chance."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.policy import PolicySettings, choose_policy
from fraud_pipeline.lib.policy_selection import HeldOutDays, adopt_structure, row_days

COSTS = CostModel()
SEGMENT = CohortSpec("segment", "segment")
NOISE = CohortSpec("noise", "noise")


def rows(n_days: int = 14, per_day: int = 3000, seed: int = 0, segment_matters: bool = True) -> pd.DataFrame:
    """Scores in [0, 1); in segment a the fraud rate is the score, in b a tenth of it, so b should alert far less."""
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    score = rng.random(n)
    segment = np.where(rng.random(n) < 0.5, "a", "b")
    rate = np.where((segment == "b") & segment_matters, score * 0.1, score * 0.4)
    start = datetime(2025, 3, 1)
    return pd.DataFrame(
        {
            "score": score,
            "is_fraud": rng.random(n) < rate,
            "amount": np.full(n, 60.0),
            "segment": segment,
            "noise": np.where(rng.random(n) < 0.5, "x", "y"),
            "event_time": [start + timedelta(days=int(i // per_day), seconds=int(i % per_day)) for i in range(n)],
        }
    )


def select(frame: pd.DataFrame, splits, confidence: float = 0.95):
    """The production choice (:func:`choose_policy`): the chosen structure's index and the selection table."""
    settings = PolicySettings(splits=tuple(splits), selection_confidence=confidence)
    policy = choose_policy(
        frame["score"], frame["is_fraud"], frame["amount"], frame, settings, COSTS, times=frame["event_time"]
    )
    tried = list(policy.selection)
    chosen = [i for i, row in enumerate(tried) if row["chosen"]]
    assert len(chosen) == 1
    assert [s.name for s in policy.splits] == tried[chosen[0]]["splits"]
    return chosen[0], tried


def test_a_split_with_a_stable_difference_in_risk_is_adopted():
    best, tried = select(rows(), [SEGMENT])
    assert best == 1 and tried[1]["chosen"] and not tried[0]["chosen"]
    assert tried[1]["adopted"] and tried[1]["daily_saving_low"] > 0
    assert tried[1]["holdout_cost"] < tried[0]["holdout_cost"]
    assert tried[0]["splits"] == [] and tried[1]["splits"] == ["segment"]


def test_a_split_that_only_fits_noise_is_not_adopted():
    best, tried = select(rows(segment_matters=False), [NOISE, SEGMENT])
    assert best == 0 and tried[0]["chosen"]
    assert not tried[1]["adopted"] and not tried[2]["adopted"]
    assert all(row["daily_saving_low"] <= 0 for row in tried[1:])


def test_the_split_that_saves_most_wins_among_those_adopted():
    best, tried = select(rows(), [NOISE, SEGMENT])
    assert best == 2 and tried[2]["chosen"]
    assert not tried[1]["adopted"]


def test_a_stricter_confidence_can_only_adopt_less():
    frame = rows(per_day=600, seed=3)
    loose = select(frame, [SEGMENT], confidence=0.6)[1]
    strict = select(frame, [SEGMENT], confidence=0.999)[1]
    assert strict[1]["daily_saving_low"] < loose[1]["daily_saving_low"]
    assert strict[1]["adopted"] <= loose[1]["adopted"]


def test_too_few_days_for_a_holdout_keep_the_single_threshold():
    best, tried = select(rows(n_days=3), [SEGMENT])
    assert best == 0 and tried[0]["chosen"]
    assert all(row["holdout_cost"] is None for row in tried)


def test_selection_is_deterministic():
    frame = rows(seed=5)
    assert select(frame, [NOISE, SEGMENT]) == select(frame, [NOISE, SEGMENT])


def test_a_confidence_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="selection_confidence must be in"):
        select(rows(n_days=4, per_day=100), [SEGMENT], confidence=1.0)
    with pytest.raises(ValueError, match="confidence must be in"):
        adopt_structure([[]], [np.zeros(3)], 0.0)


def test_the_held_out_days_are_the_later_half_of_the_calendar_days():
    times = pd.Series([datetime(2025, 3, d, 12) for d in (1, 1, 2, 3, 4, 5, 5)])
    held_out = HeldOutDays.of(times)
    # five days: the later two (4th, 5th) are held out
    assert held_out.later.tolist() == [False, False, False, False, True, True, True]
    assert held_out.day_of_later_row.tolist() == [0, 1, 1] and held_out.n_days == 2
    assert held_out.daily(np.array([1.0, 2.0, 3.0])).tolist() == [1.0, 5.0]
    assert HeldOutDays.of(times[:3]) is None  # two days: one held out, no spread to judge


def test_the_bound_is_a_one_sided_t_bound_over_days():
    baseline = np.array([10.0, 10.0, 10.0, 10.0])
    steady = np.array([9.0, 9.0, 9.0, 9.0])  # saves 1 every day: no spread, adopted
    erratic = np.array([0.0, 20.0, 0.0, 19.0])  # saves 0.25 a day on average, wildly: not adopted
    best, tried = adopt_structure([[], ["a"], ["b"]], [baseline, steady, erratic], 0.95)
    assert best == 1
    assert tried[1]["daily_saving"] == 1.0 and tried[1]["daily_saving_low"] == 1.0 and tried[1]["adopted"]
    assert tried[2]["daily_saving"] == 0.25 and not tried[2]["adopted"]
    saving = baseline - erratic
    expected = 0.25 - 2.3533634348018264 * saving.std(ddof=1) / 2.0  # t(0.95, 3 df)
    assert tried[2]["daily_saving_low"] == pytest.approx(expected)


def test_days_are_utc_calendar_days_from_any_time_form():
    naive = pd.Series([datetime(2025, 3, 1, 23, 59), datetime(2025, 3, 2, 0, 0)])
    aware = naive.dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")  # 2025-03-02 00:59 local is still 03-01 UTC
    micros = naive.to_numpy().astype("datetime64[us]").astype(np.int64)
    expected = np.array([20148, 20149])
    assert (row_days(naive) == expected).all()
    assert (row_days(aware) == expected).all()
    assert (row_days(micros) == expected).all()
    assert row_days(np.array([datetime(2025, 3, 1, tzinfo=timezone.utc)], dtype=object))[0] == 20148
