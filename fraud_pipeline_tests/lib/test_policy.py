"""The decision policy: per-cell thresholds, shrunk toward the population's, selected out of sample."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.costs import CostModel, choose_threshold, decision_costs
from fraud_pipeline.lib.policy import (
    DecisionPolicy,
    PolicyRequest,
    PolicySettings,
    as_policy,
    cell_labels,
    choose_policy,
    days_spanned,
    fit_policy,
    policy_of,
)

COSTS = CostModel()
GROUP = CohortSpec("group", "group")
AGE = CohortSpec("age", "age_days", bins=(-math.inf, 7, 30, math.inf), labels=("<7d", "7-30d", ">30d"))


def world(n: int, seed: int, risk: dict[str, float], shares: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows of groups whose fraud rate at a given score is ``risk[group] * score``: same scores, different risk."""
    rng = np.random.default_rng(seed)
    names = list(risk)
    p = None if shares is None else [shares[g] for g in names]
    group = rng.choice(names, n, p=p)
    score = rng.beta(0.6, 6.0, n)
    fraud = rng.random(n) < np.array([risk[g] for g in group]) * score
    start = np.datetime64("2025-01-01T00:00:00")
    return pd.DataFrame(
        {
            "group": group,
            "age_days": rng.uniform(0, 400, n),
            "score": score,
            "is_fraud": fraud,
            "amount": np.full(n, 120.0),
            "event_time": start + np.sort(rng.integers(0, 14 * 86_400, n)).astype("timedelta64[s]"),
        }
    )


def fit(rows: pd.DataFrame, splits=(GROUP,), **settings) -> DecisionPolicy:
    return fit_policy(
        rows["score"], rows["is_fraud"], rows["amount"], rows, PolicySettings(splits=splits, **settings), COSTS, 14
    )


def cost(rows: pd.DataFrame, policy: DecisionPolicy) -> float:
    return float(decision_costs(rows["is_fraud"], rows["amount"], policy.alerts(rows["score"], rows), COSTS).sum())


def test_a_cell_of_another_risk_gets_its_own_threshold_and_the_policy_costs_less():
    rows = world(40_000, 1, {"risky": 1.0, "safe": 0.15})
    policy = fit(rows)
    cells = {c.cell: c for c in policy.cells}
    assert set(cells) == {"group=risky", "group=safe"}
    # the same score is less risk in the safe cell, so it takes a higher score to pay for a review
    assert cells["group=safe"].threshold > policy.global_threshold > cells["group=risky"].threshold
    assert cost(rows, policy) < cost(rows, DecisionPolicy.single(policy.global_threshold))
    assert policy.global_threshold == choose_threshold(rows["score"], rows["is_fraud"], rows["amount"], COSTS).threshold
    # the stored evidence is the cell's own
    safe = rows[rows["group"] == "safe"]
    assert cells["group=safe"].n_rows == len(safe) and cells["group=safe"].n_frauds == int(safe["is_fraud"].sum())
    assert cells["group=safe"].validation_cost == pytest.approx(cost(safe, policy))


def test_a_tiny_cell_gets_about_the_global_threshold_and_a_huge_one_its_own():
    rows = world(60_000, 2, {"big": 1.0, "tiny": 0.2}, shares={"big": 0.9995, "tiny": 0.0005})
    policy = fit(rows)
    cells = {c.cell: c for c in policy.cells}
    tiny, big = cells["group=tiny"], cells["group=big"]
    assert tiny.n_frauds <= 2 and tiny.own_weight < 0.15 and big.own_weight > 0.99
    # the tiny cell's own cheapest threshold is its luck; shrunk, it stays near the global one
    assert abs(tiny.own_threshold - policy.global_threshold) > 0.1
    assert abs(tiny.threshold - policy.global_threshold) < abs(tiny.own_threshold - policy.global_threshold) / 4
    # the huge cell is nearly the population: its threshold is its own cheapest
    big_rows = rows[rows["group"] == "big"]
    at = lambda t: float(  # noqa: E731
        decision_costs(big_rows["is_fraud"], big_rows["amount"], big_rows["score"] >= t, COSTS).sum()
    )
    assert at(big.threshold) <= at(big.own_threshold) * 1.01


def test_a_row_of_an_unseen_cell_or_without_the_column_gets_the_global_threshold():
    policy = fit(world(20_000, 3, {"a": 1.0, "b": 0.3}))
    new = pd.DataFrame({"group": ["a", "b", "c", None], "score": [0.5] * 4})
    thresholds = policy.row_thresholds(new)
    assert thresholds[0] == policy.thresholds()["group=a"] and thresholds[1] == policy.thresholds()["group=b"]
    assert thresholds[2] == thresholds[3] == policy.global_threshold
    assert (policy.row_thresholds(new.drop(columns="group")) == policy.global_threshold).all()
    assert cell_labels(new, (GROUP, AGE)).isna().sum() == 0


@pytest.mark.parametrize("splits", [(GROUP,), (GROUP, AGE), ()])
def test_a_review_capacity_is_respected_on_the_fitted_rows(splits):
    rows = world(30_000, 4, {"a": 1.0, "b": 0.4})
    free = fit(rows, splits)
    free_alerts = int(free.alerts(rows["score"], rows).sum())
    capacity = free_alerts / 14 / 2
    capped = fit(rows, splits, max_alerts_per_day=capacity)
    alerts = int(capped.alerts(rows["score"], rows).sum())
    assert alerts <= capacity * 14 and alerts > 0.8 * capacity * 14
    assert capped.alert_price > 0 and free.alert_price == 0
    # a capacity that the free policy already meets changes nothing
    assert fit(rows, splits, max_alerts_per_day=free_alerts) == replace(free, max_alerts_per_day=free_alerts)


def test_a_capacity_needs_the_days_the_rows_span():
    rows = world(2_000, 5, {"a": 1.0})
    with pytest.raises(ValueError, match="number of days"):
        fit_policy(rows["score"], rows["is_fraud"], rows["amount"], rows, PolicySettings(max_alerts_per_day=3.0), COSTS)
    assert days_spanned(rows["event_time"]) == 14


def test_the_policy_survives_json_with_infinite_bin_edges():
    rows = world(20_000, 6, {"a": 1.0, "b": 0.3})
    policy = choose_policy(
        rows["score"],
        rows["is_fraud"],
        rows["amount"],
        rows,
        PolicySettings(splits=(GROUP, AGE), select_on_holdout=False),
        COSTS,
    )
    written = json.dumps(policy.as_dict(), allow_nan=False)
    back = DecisionPolicy.from_dict(json.loads(written))
    assert back == policy and back.splits[1].bins == (-math.inf, 7.0, 30.0, math.inf)
    assert (back.row_thresholds(rows) == policy.row_thresholds(rows)).all()
    assert policy_of({"policy": policy.as_dict(), "threshold": 0.5}) == policy
    assert policy_of({"threshold": 0.25}) == DecisionPolicy.single(0.25) == as_policy(0.25)
    request = PolicyRequest(cohorts=("account_age", "channel"), max_alerts_per_day=40.0)
    assert PolicyRequest.from_dict(json.loads(json.dumps(request.as_dict()))) == request


def test_a_split_that_is_pure_noise_is_not_selected_and_a_real_one_is():
    rows = world(40_000, 7, {"a": 1.0})
    rng = np.random.default_rng(7)
    rows["noise"] = rng.choice([f"n{i}" for i in range(12)], len(rows))
    rows["real"] = np.where(rng.random(len(rows)) < 0.5, "x", "y")
    # within "y" the same score is far less risk
    rows.loc[(rows["real"] == "y") & rows["is_fraud"], "is_fraud"] = (
        rng.random(int(((rows["real"] == "y") & rows["is_fraud"]).sum())) < 0.15
    )
    noise, real = CohortSpec("noise", "noise"), CohortSpec("real", "real")
    choose = lambda splits: choose_policy(  # noqa: E731
        rows["score"],
        rows["is_fraud"],
        rows["amount"],
        rows,
        PolicySettings(splits=splits),
        COSTS,
        n_days=14,
        times=rows["event_time"].to_numpy(),
    )
    only_noise = choose((noise,))
    assert only_noise.is_single and [row["splits"] for row in only_noise.selection] == [[], ["noise"]]
    both = choose((noise, real))
    assert [s.name for s in both.splits] == ["real"]
    tried = {tuple(row["splits"]): row["holdout_cost"] for row in both.selection}
    assert set(tried) == {(), ("noise",), ("real",), ("noise", "real")}
    assert tried[("real",)] == min(tried.values())


def test_the_same_rows_give_the_same_policy():
    rows = world(20_000, 8, {"a": 1.0, "b": 0.3})
    args = (rows["score"], rows["is_fraud"], rows["amount"], rows, PolicySettings(splits=(GROUP, AGE)), COSTS, 14)
    first = choose_policy(*args, times=rows["event_time"].to_numpy())
    assert first == choose_policy(*args, times=rows["event_time"].to_numpy())
    assert json.dumps(first.as_dict()) == json.dumps(
        choose_policy(*args, times=rows["event_time"].to_numpy()).as_dict()
    )


def test_the_request_keeps_only_the_splits_the_model_reads():
    request = PolicyRequest()
    assert [s.name for s in request.settings(["channel", "country", "amount"]).splits] == ["channel", "region"]
    assert request.settings(["amount", "entry_mode"]).splits == ()
    assert [s.name for s in PolicyRequest(cohorts=("entry_mode",)).settings(["entry_mode"]).splits] == ["entry_mode"]


@pytest.mark.parametrize(
    "settings, said",
    [
        ({"prior_frauds": 0}, "prior_frauds must be above 0"),
        ({"max_alerts_per_day": -1}, "max_alerts_per_day must be above 0"),
        ({"splits": (GROUP, GROUP)}, "repeat a name"),
    ],
)
def test_settings_that_make_no_sense_are_refused(settings, said):
    with pytest.raises(ValueError, match=said):
        PolicySettings(**settings)


def test_cells_are_the_crossed_values_in_label_order():
    rows = pd.DataFrame({"group": ["b", "a", None, "a"], "age_days": [3.0, 40.0, 10.0, np.nan]})
    labels = cell_labels(rows, (GROUP, AGE))
    assert labels.tolist() == ["group=b|age=<7d", "group=a|age=>30d", "group=unknown|age=7-30d", "group=a|age=unknown"]
    assert cell_labels(rows, ()).tolist() == ["", "", "", ""] and cell_labels(rows.iloc[:0], (GROUP,)).empty
    policy = fit(world(20_000, 9, {"a": 1.0, "b": 0.3}), (GROUP, AGE))
    names = [c.cell for c in policy.cells]
    assert names == sorted(names) and len(names) == 6
