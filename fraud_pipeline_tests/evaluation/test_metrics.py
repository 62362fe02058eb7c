"""Ranking, decision, review-capacity and per-cohort metrics."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_pipeline.evaluation.metrics import (
    COHORT_METRICS,
    DAY_BOOTSTRAP_METRICS,
    DEFAULT_COHORTS,
    POLICY_VS_SINGLE_COLUMNS,
    CohortSpec,
    assign_cohort,
    cohort_table,
    day_bootstrap,
    evaluate_decisions,
    policy_vs_single,
    ranking_metrics,
    reliability_bins,
    threshold_metrics,
    user_precision_at_k,
    user_precision_at_k_until_first_fraud,
)
from fraud_pipeline.lib.costs import CostModel, decision_costs
from fraud_pipeline.lib.policy import CellChoice, DecisionPolicy

COSTS = CostModel()
DAY = pd.Timestamp("2025-03-01")


@pytest.mark.parametrize(
    ("is_fraud", "scores"),
    [([0, 0, 0], [0.1, 0.5, 0.9]), ([1, 1], [0.2, 0.3]), ([], [])],
    ids=["only-genuine", "only-fraud", "empty"],
)
def test_ranking_metrics_are_nan_with_one_class(is_fraud, scores):
    metrics = ranking_metrics(is_fraud, scores)
    assert math.isnan(metrics["average_precision"]) and math.isnan(metrics["roc_auc"])


def test_ranking_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    is_fraud = rng.random(500) < 0.1
    scores = rng.random(500) + 0.3 * is_fraud
    metrics = ranking_metrics(is_fraud, scores)
    assert metrics["average_precision"] == pytest.approx(average_precision_score(is_fraud, scores))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(is_fraud, scores))
    assert ranking_metrics([0, 1, 0, 1], [0.1, 0.8, 0.2, 0.9]) == {"average_precision": 1.0, "roc_auc": 1.0}


def test_threshold_metrics_count_the_confusion_matrix():
    metrics = threshold_metrics([1, 1, 1, 0, 0, 0], [True, True, False, True, False, False])
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (2, 1, 1)
    assert (metrics["n_alerts"], metrics["n_frauds"]) == (3, 3)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("is_fraud", "alert", "undefined", "zero"),
    [
        ([1, 0], [False, False], {"precision"}, {"recall", "f1"}),
        ([0, 0], [True, False], {"recall"}, {"precision", "f1"}),
        ([0, 0], [False, False], {"precision", "recall", "f1"}, set()),
    ],
    ids=["no-alerts", "no-frauds", "neither"],
)
def test_threshold_metrics_are_nan_where_undefined(is_fraud, alert, undefined, zero):
    metrics = threshold_metrics(is_fraud, alert)
    assert {k for k in ("precision", "recall", "f1") if math.isnan(metrics[k])} == undefined
    assert {k for k in ("precision", "recall", "f1") if metrics[k] == 0.0} == zero


def tx(day, hour, user, score, fraud):
    return {"event_time": DAY + pd.Timedelta(days=day, hours=hour), "user_id": user, "score": score, "is_fraud": fraud}


def three_days():
    """Day 0: u1 is caught. Day 1: u1 scores highest but is already compromised. Day 2: one user left."""
    return pd.DataFrame(
        [
            tx(0, 1, "u1", 0.90, True),
            tx(0, 2, "u2", 0.80, False),
            tx(0, 23, "u2", 0.05, False),  # the day's score of u2 is its max, 0.80
            tx(0, 5, "u3", 0.10, False),
            tx(1, 0, "u1", 0.99, False),  # excluded: u1 had a fraud on day 0
            tx(1, 3, "u2", 0.50, False),
            tx(1, 4, "u3", 0.40, True),
            tx(1, 6, "u4", 0.30, False),
            tx(2, 1, "u1", 0.95, False),
            tx(2, 2, "u3", 0.90, True),  # excluded: u3 had a fraud on day 1
            tx(2, 3, "u5", 0.70, False),
            tx(2, 9, "u5", 0.10, True),  # u5 is fraudulent on day 2 through its low-scored transaction
        ]
    )


BOTH_READINGS = pytest.mark.parametrize(
    "precision_at_k", [user_precision_at_k, user_precision_at_k_until_first_fraud], ids=["handbook", "first-fraud"]
)


@BOTH_READINGS
def test_user_precision_at_k_removes_users_compromised_on_an_earlier_day(precision_at_k):
    """Every fraud of three_days is caught on its day, so both readings remove the same users."""
    result = precision_at_k(three_days(), k=2)
    per_day = result["per_day"]
    assert per_day["day"].tolist() == [DAY, DAY + pd.Timedelta(days=1), DAY + pd.Timedelta(days=2)]
    # Day 0: u1, u2 -> 1/2. Day 1: u2, u3 (not u1) -> 1/2. Day 2: only u5 is left -> 1/1.
    assert per_day["n_ranked"].tolist() == [2, 2, 1]
    assert per_day["n_fraud_in_top_k"].tolist() == [1, 1, 1]
    assert per_day["precision"].tolist() == [0.5, 0.5, 1.0]
    assert result["mean"] == pytest.approx(2 / 3)


@BOTH_READINGS
def test_user_precision_at_k_breaks_score_ties_by_user_id(precision_at_k):
    frame = pd.DataFrame([tx(0, 1, "b", 0.5, False), tx(0, 2, "a", 0.5, True), tx(0, 3, "c", 0.5, False)])
    assert precision_at_k(frame, k=1)["mean"] == 1.0
    assert precision_at_k(frame.iloc[::-1], k=1)["mean"] == 1.0


@BOTH_READINGS
def test_a_day_with_nobody_left_to_rank_is_nan_and_left_out_of_the_mean(precision_at_k):
    frame = pd.DataFrame([tx(0, 1, "u1", 0.9, True), tx(0, 2, "u2", 0.1, False), tx(1, 1, "u1", 0.9, True)])
    result = precision_at_k(frame, k=1)
    assert result["per_day"]["n_ranked"].tolist() == [1, 0]
    assert math.isnan(result["per_day"]["precision"].iat[1])
    assert result["mean"] == 1.0


@BOTH_READINGS
def test_user_precision_at_k_needs_a_positive_k(precision_at_k):
    with pytest.raises(ValueError):
        precision_at_k(three_days(), k=0)


def missed_then_caught():
    """Day 0: the model reviews uA (genuine) and misses uB's fraud. Day 1: uB is fraudulent again and tops the list."""
    return pd.DataFrame(
        [
            tx(0, 1, "uA", 0.9, False),
            tx(0, 2, "uB", 0.5, True),
            tx(1, 1, "uB", 0.8, True),
            tx(1, 2, "uC", 0.3, False),
        ]
    )


def test_a_compromised_user_the_model_missed_stays_in_the_handbook_ranking():
    handbook = user_precision_at_k(missed_then_caught(), k=1)
    assert handbook["per_day"]["precision"].tolist() == [0.0, 1.0]
    assert handbook["mean"] == 0.5


def test_the_first_fraud_reading_removes_the_missed_user_too():
    first_fraud = user_precision_at_k_until_first_fraud(missed_then_caught(), k=1)
    # uB left the ranking after day 0, caught or not: day 1 reviews uC
    assert first_fraud["per_day"]["precision"].tolist() == [0.0, 0.0]
    assert first_fraud["mean"] == 0.0


def test_only_a_review_on_a_fraudulent_day_counts_as_detected():
    """uA is reviewed on day 0 while genuine and on day 1 while fraudulent: removed only from day 2 on."""
    frame = pd.DataFrame(
        [
            tx(0, 1, "uA", 0.9, False),
            tx(0, 2, "uB", 0.2, False),
            tx(1, 1, "uA", 0.9, True),
            tx(1, 2, "uB", 0.2, False),
            tx(2, 1, "uA", 0.9, True),
            tx(2, 2, "uB", 0.2, True),
        ]
    )
    handbook = user_precision_at_k(frame, k=1)["per_day"]
    assert handbook["precision"].tolist() == [0.0, 1.0, 1.0]  # day 2 reviews uB: uA was caught on day 1
    first_fraud = user_precision_at_k_until_first_fraud(frame, k=1)["per_day"]
    assert first_fraud["precision"].tolist() == [0.0, 1.0, 1.0]
    # with two reviews a day the readings part: the handbook drops caught uA, the other drops every fraud-day user
    assert user_precision_at_k(frame, k=2)["per_day"]["n_ranked"].tolist() == [2, 2, 1]


def test_the_handbook_reading_is_never_below_the_first_fraud_reading_on_a_window_where_misses_recur():
    frame = scored_window()
    for k in (5, 20):
        handbook = user_precision_at_k(frame, k)["mean"]
        first_fraud = user_precision_at_k_until_first_fraud(frame, k)["mean"]
        assert handbook > first_fraud


def test_account_age_cohorts_use_right_open_bins_and_keep_null_apart():
    ages = [np.nan, 0.0, 6.99, 7.0, 29.5, 30.0, 400.0, None, -1.0]
    frame = pd.DataFrame({"account_age_days": ages}, index=range(10, 19))
    cohorts = assign_cohort(frame, DEFAULT_COHORTS[0])
    assert cohorts.tolist() == ["unknown", "<7d", "<7d", "7-30d", "7-30d", ">30d", ">30d", "unknown", "out_of_range"]
    assert cohorts.index.equals(frame.index) and cohorts.name == "account_age"


def test_nullable_integer_ages_go_to_unknown_too():
    frame = pd.DataFrame({"account_age_days": pd.array([3, pd.NA, 45], dtype="Int64")})
    assert assign_cohort(frame, DEFAULT_COHORTS[0]).tolist() == ["<7d", "unknown", ">30d"]


def test_categorical_cohorts_use_values_as_they_are():
    frame = pd.DataFrame({"channel": ["ecommerce", None, "card_present"]})
    assert assign_cohort(frame, CohortSpec("channel", "channel")).tolist() == ["ecommerce", "unknown", "card_present"]


@pytest.mark.parametrize(
    "spec_args",
    [{"bins": (0, 7, 30), "labels": ("a",)}, {"labels": ("a", "b")}],
    ids=["label-count", "labels-without-bins"],
)
def test_cohort_spec_refuses_inconsistent_bins(spec_args):
    with pytest.raises(ValueError):
        CohortSpec("age", "account_age_days", **spec_args)


def scored_window(n=2_000, seed=1):
    rng = np.random.default_rng(seed)
    is_fraud = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "event_time": DAY + pd.to_timedelta(rng.integers(0, 10 * 86_400, n), unit="s"),
            "user_id": rng.integers(0, 300, n),
            "score": np.clip(rng.normal(0.3 + 0.4 * is_fraud, 0.2), 0, 1),
            "is_fraud": is_fraud,
            "amount": np.round(rng.lognormal(3.5, 1.0, n), 2),
            "account_age_days": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(60, n)),
            "channel": rng.choice(["card_present", "ecommerce"], n),
            "country": rng.choice(["R1", "R2", "R_new"], n),
        }
    )


def test_evaluate_decisions_on_a_hand_computed_window():
    frame = pd.DataFrame(
        {
            "event_time": [DAY, DAY, DAY, DAY],
            "user_id": [1, 2, 3, 4],
            "score": [0.9, 0.8, 0.3, 0.1],
            "is_fraud": [True, False, True, False],
            "amount": [100.0, 50.0, 40.0, 500.0],
        }
    )
    result = evaluate_decisions(
        frame, threshold=0.5, cost_model=COSTS, rule_amount_threshold=60.0, daily_review_capacity=2
    )
    # Model alerts users 1 (caught, 3) and 2 (false, 13) and misses 3 (40 + 20).
    assert result["total_cost"] == pytest.approx(76.0)
    assert result["approve_all_cost"] == pytest.approx(180.0)
    # The rule alerts 100 (caught, 3) and 500 (false, 13) and misses 40 (60).
    assert result["rule_cost"] == pytest.approx(76.0)
    assert result["savings_vs_approve_all"] == pytest.approx(104.0)
    assert result["savings_vs_approve_all_pct"] == pytest.approx(104.0 / 180.0)
    assert result["savings_vs_rule"] == pytest.approx(0.0)
    assert (result["n_alerts"], result["alert_rate"]) == (2, 0.5)
    assert (result["precision"], result["recall"]) == (0.5, 0.5)
    assert (result["n_transactions"], result["n_frauds"], result["fraud_rate"]) == (4, 2, 0.5)
    assert result["user_precision_at_k"] == 0.5 and result["review_capacity_k"] == 2
    assert result["roc_auc"] == pytest.approx(0.75)
    assert not any("accuracy" in key for key in result)


def test_evaluate_decisions_has_every_headline_metric():
    result = evaluate_decisions(scored_window(), 0.5, COSTS, 200.0, 20)
    assert set(result) == {
        *COHORT_METRICS,
        "user_precision_at_k",
        "user_precision_at_k_until_first_fraud",
        "review_capacity_k",
    }


@pytest.mark.parametrize("spec", DEFAULT_COHORTS, ids=lambda spec: spec.name)
def test_cohort_table_partitions_the_window(spec):
    frame = scored_window()
    table = cohort_table(frame, 0.5, COSTS, 200.0, spec)
    overall = evaluate_decisions(frame, 0.5, COSTS, 200.0, 20)
    assert list(table.columns) == ["cohort", "value", *COHORT_METRICS]
    assert (table["cohort"] == spec.name).all() and table["value"].is_unique
    for column in ("n_transactions", "n_frauds", "n_alerts"):
        assert table[column].sum() == overall[column]
    for column in ("total_cost", "approve_all_cost", "rule_cost"):
        assert table[column].sum() == pytest.approx(overall[column])


def test_account_age_cohort_rows_come_in_bin_order_with_unknown_last():
    table = cohort_table(scored_window(), 0.5, COSTS, 200.0, DEFAULT_COHORTS[0])
    assert table["value"].tolist() == ["<7d", "7-30d", ">30d", "unknown"]
    assert table.loc[table["value"] == "unknown", "n_transactions"].item() > 0


def test_cohort_metrics_are_nan_where_a_cohort_has_one_class():
    frame = scored_window(n=50)
    frame["is_fraud"] = frame["channel"] == "ecommerce"
    table = cohort_table(frame, 0.5, COSTS, 200.0, DEFAULT_COHORTS[1]).set_index("value")
    assert table["roc_auc"].isna().all() and table["average_precision"].isna().all()
    assert math.isnan(table.at["card_present", "recall"])
    assert table.at["ecommerce", "recall"] >= 0.0


def test_an_empty_window_gives_nan_rates_not_errors():
    empty = scored_window().iloc[:0]
    result = evaluate_decisions(empty, 0.5, COSTS, 200.0, 20)
    assert (result["n_transactions"], result["total_cost"], result["approve_all_cost"]) == (0, 0.0, 0.0)
    for key in ("fraud_rate", "precision", "recall", "average_precision", "user_precision_at_k", "alert_rate"):
        assert math.isnan(result[key]), key
    assert cohort_table(empty, 0.5, COSTS, 200.0, DEFAULT_COHORTS[0]).empty


def test_day_bootstrap_intervals_contain_the_point_estimates_and_repeat_with_the_seed():
    frame = scored_window(n=4_000)
    point = evaluate_decisions(frame, 0.5, COSTS, 200.0, 20)
    boot = day_bootstrap(frame, 0.5, COSTS, 200.0, n_resamples=300, seed=3, cohorts=DEFAULT_COHORTS)
    assert boot["n_days"] == 10 and boot["n_resamples"] == 300
    for metric in DAY_BOOTSTRAP_METRICS:
        low, high = boot["intervals"][metric]
        assert low <= point[metric] <= high, metric
        assert low < high, metric
    assert day_bootstrap(frame, 0.5, COSTS, 200.0, 300, seed=3, cohorts=DEFAULT_COHORTS) == boot
    assert day_bootstrap(frame, 0.5, COSTS, 200.0, 300, seed=4)["intervals"] != boot["intervals"]


def test_day_bootstrap_gives_every_cohort_value_an_interval_around_its_own_value():
    frame = scored_window(n=4_000)
    boot = day_bootstrap(frame, 0.5, COSTS, 200.0, n_resamples=300, seed=0, cohorts=DEFAULT_COHORTS)
    table = pd.concat([cohort_table(frame, 0.5, COSTS, 200.0, spec) for spec in DEFAULT_COHORTS], ignore_index=True)
    intervals = {(r["cohort"], r["value"]): r for r in boot["cohorts"]}
    assert set(intervals) == set(zip(table["cohort"], table["value"]))
    for row in table.to_dict(orient="records"):
        found = intervals[(row["cohort"], row["value"])]
        assert found["total_cost_low"] <= row["total_cost"] <= found["total_cost_high"]
        assert found["recall_low"] <= row["recall"] <= found["recall_high"]


def test_day_bootstrap_of_no_rows_is_nan_not_an_error():
    boot = day_bootstrap(scored_window().iloc[:0], 0.5, COSTS, 200.0, 100, seed=0)
    assert boot["n_days"] == 0 and all(math.isnan(low) for low, _ in boot["intervals"].values())


def test_reliability_bins_partition_the_rows_and_follow_a_calibrated_score():
    rng = np.random.default_rng(0)
    scores = rng.beta(0.5, 8, 40_000)
    is_fraud = rng.random(len(scores)) < scores  # calibrated by construction
    bins = reliability_bins(is_fraud, scores, n_bins=8, level=0.99)
    assert sum(b["n_transactions"] for b in bins) == len(scores)
    assert sum(b["n_frauds"] for b in bins) == int(is_fraud.sum())
    assert [b["bin"] for b in bins] == list(range(1, len(bins) + 1)) and len(bins) == 8
    assert all(bins[i]["score_high"] <= bins[i + 1]["score_low"] for i in range(len(bins) - 1))
    # equal expected frauds per bin: the score mass of each bin is about 1/8 of the total
    mass = [b["mean_score"] * b["n_transactions"] for b in bins]
    assert max(mass) / min(mass) < 1.1
    for b in bins:
        assert b["observed_rate_low"] <= b["observed_rate"] <= b["observed_rate_high"]
        assert b["observed_rate_low"] <= b["mean_score"] <= b["observed_rate_high"], b
    assert reliability_bins([], []) == []


def test_feature_importance_agrees_with_pred_contrib_and_the_model_file():
    from fraud_pipeline.evaluation.metrics import feature_importance
    from fraud_pipeline.training.model import ModelParams, to_model_matrix, train_model

    def rows(seed, n=3_000):
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame({"transaction_id": np.arange(n), "strong": rng.normal(size=n), "weak": rng.normal(size=n)})
        frame["silent"] = 0.0  # never split on
        frame["is_fraud"] = frame["strong"] + 0.2 * frame["weak"] + rng.normal(scale=0.5, size=n) > 2
        return frame

    model = train_model(rows(1), rows(2), ("strong", "weak", "silent"), (), ModelParams(max_rounds=25))
    booster = model.booster()
    matrix = to_model_matrix(rows(3), model.features, model.categories)
    table = feature_importance(booster, matrix)
    by_name = {r["feature"]: r for r in table}
    contributions = booster.predict(matrix, pred_contrib=True)
    # each row's contributions plus the bias are its raw score, so the mean contributions sum to the mean raw score
    raw = booster.predict(matrix, raw_score=True)
    assert contributions.sum(axis=1) == pytest.approx(raw)
    mean_bias = contributions[:, -1].mean()
    assert sum(r["mean_contribution"] for r in table) + mean_bias == pytest.approx(raw.mean())
    for i, name in enumerate(model.features):
        assert by_name[name]["mean_abs_contribution"] == pytest.approx(np.abs(contributions[:, i]).mean())
    assert sum(r["gain_share"] for r in table) == pytest.approx(1.0)
    assert sum(r["contribution_share"] for r in table) == pytest.approx(1.0)
    assert [r["feature"] for r in table] == ["strong", "weak", "silent"]
    assert by_name["silent"]["gain"] == 0.0 and by_name["silent"]["mean_abs_contribution"] == 0.0
    assert by_name["strong"]["gain"] == pytest.approx(model.feature_importance["strong"])
    assert feature_importance(booster, matrix) == table


def _channel_policy(frame: pd.DataFrame) -> DecisionPolicy:
    """A policy whose two channel cells differ from its global threshold (and from each other)."""
    channel = DEFAULT_COHORTS[1]
    cells = tuple(
        CellChoice(f"channel={value}", 0, 0, 0.0, threshold, threshold, 0.0, 0)
        for value, threshold in zip(sorted(frame["channel"].unique()), (0.2, 0.7))
    )
    return DecisionPolicy(global_threshold=0.5, splits=(channel,), cells=cells)


def test_every_metric_function_decides_with_a_policy_as_with_a_threshold():
    frame = scored_window()
    single = DecisionPolicy.single(0.4)
    assert evaluate_decisions(frame, 0.4, COSTS, 100.0, 5) == evaluate_decisions(frame, single, COSTS, 100.0, 5)
    spec = DEFAULT_COHORTS[1]
    pd.testing.assert_frame_equal(
        cohort_table(frame, 0.4, COSTS, 100.0, spec), cohort_table(frame, single, COSTS, 100.0, spec)
    )
    policy = _channel_policy(frame)
    alert = policy.alerts(frame["score"], frame)
    assert alert.sum() != (frame["score"] >= 0.5).sum()
    cost = float(decision_costs(frame["is_fraud"], frame["amount"], alert, COSTS).sum())
    assert evaluate_decisions(frame, policy, COSTS, 100.0, 5)["total_cost"] == pytest.approx(cost)
    assert evaluate_decisions(frame, policy, COSTS, 100.0, 5)["n_alerts"] == int(alert.sum())
    per_channel = cohort_table(frame, policy, COSTS, 100.0, spec)
    assert per_channel["total_cost"].sum() == pytest.approx(cost)
    boot = day_bootstrap(frame, policy, COSTS, 100.0, 50, 0)
    low, high = boot["intervals"]["total_cost"]
    assert low <= cost <= high


def test_policy_vs_single_sets_the_policy_beside_its_global_threshold():
    frame = scored_window()
    policy = _channel_policy(frame)
    rows = policy_vs_single(frame, policy, COSTS, 100.0, (DEFAULT_COHORTS[1],))
    assert [r["cohort"] for r in rows] == ["all", "channel", "channel"]
    assert list(rows[0]) == list(POLICY_VS_SINGLE_COLUMNS)
    overall = evaluate_decisions(frame, policy, COSTS, 100.0, 5)
    single = evaluate_decisions(frame, 0.5, COSTS, 100.0, 5)
    assert rows[0]["policy_total_cost"] == pytest.approx(overall["total_cost"])
    assert rows[0]["single_total_cost"] == pytest.approx(single["total_cost"])
    assert rows[0]["cost_difference"] == pytest.approx(overall["total_cost"] - single["total_cost"])
    assert sum(r["policy_total_cost"] for r in rows[1:]) == pytest.approx(rows[0]["policy_total_cost"])
    assert rows[0]["policy_recall"] == pytest.approx(overall["recall"])
