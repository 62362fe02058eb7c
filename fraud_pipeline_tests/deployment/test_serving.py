"""Serving decisions: unavailable history goes to the fallback, missing fields to review, nothing is defaulted."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.serving import (
    HISTORY_COUNTS,
    MAIN_REASON,
    REQUIRED_FIELDS,
    ScoringModels,
    decide,
    decide_where_changed,
    misreads_unavailable_history,
    outage_report,
    outage_rows,
    peak_hours,
    replay_outage,
    required_fields,
    top_contributions,
    without_history,
)
from fraud_pipeline.features.catalog import FALLBACK_FEATURES, FEATURES, HISTORY_FEATURES
from fraud_pipeline.features.spec import default_spec, load_spec
from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.policy import DecisionPolicy
from fraud_pipeline.training.model import ModelParams, TrainedModel, to_model_matrix, train_model
from fraud_pipeline_tests.deployment.policies import hand_policy

FOREIGN = load_spec(Path(__file__).resolve().parents[1] / "foreign_spec.yaml")


def frame(n=4000, seed=0, features=FEATURES):
    rng = np.random.default_rng(seed)
    data = {"transaction_id": np.arange(n), "is_fraud": rng.random(n) < 0.05}
    for f in features:
        if f.categorical:
            data[f.name] = rng.choice(["a", "b"], n)
        elif f.kind == "count":
            data[f.name] = rng.integers(0, 5, n)
        else:
            data[f.name] = rng.random(n) * 10
    data["hour_of_day"] = rng.integers(0, 24, n)
    data["amount"] = rng.random(n) * 100 + 1 + data["is_fraud"] * 50
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def models():
    train, validation = frame(seed=1), frame(seed=2)
    params = ModelParams(max_rounds=20)
    main = train_model(train, validation, tuple(f.name for f in FEATURES), ("channel", "mcc", "country"), params)
    fallback = train_model(train, validation, FALLBACK_FEATURES, ("channel", "mcc", "country"), params)
    return ScoringModels(main=main, main_policy=0.5, fallback=fallback, fallback_policy=0.5)


def test_complete_rows_with_history_use_the_main_model(models):
    out = decide(frame(50), models)
    assert (out["route"] == "main").all()
    assert out["score"].between(0, 1).all()


def test_unknown_history_counts_route_to_the_fallback_not_to_a_new_user_reading(models):
    rows = frame(50)
    rows.loc[:9, list(HISTORY_FEATURES)] = np.nan
    out = decide(rows, models)
    assert (out.loc[:9, "route"] == "fallback").all()
    assert (out.loc[:9, "reason"] == f"fallback: history unavailable ({', '.join(HISTORY_COUNTS)} NULL)").all()
    assert (out.loc[10:, "route"] == "main").all() and (out.loc[10:, "reason"] == MAIN_REASON).all()


def test_the_fallback_reason_names_the_counts_that_arrived_null(models):
    rows = frame(5)
    rows["n_prior_tx_30d"] = rows["n_prior_tx_30d"].astype("float64")
    rows.loc[2, "n_prior_tx_30d"] = np.nan
    out = decide(rows, models)
    assert out.loc[2, "route"] == "fallback"
    assert out.loc[2, "reason"] == "fallback: history unavailable (n_prior_tx_30d NULL)"


def test_a_known_empty_history_is_not_an_outage(models):
    rows = frame(20)
    rows[list(HISTORY_COUNTS)] = 0
    assert (decide(rows, models)["route"] == "main").all()


def test_the_required_fields_are_the_specs_non_nullable_attributes():
    # channel, mcc, country and account age are declared nullable: NULL is a value the model learnt
    assert REQUIRED_FIELDS == required_fields(default_spec()) == ("amount", "hour_of_day")
    assert required_fields(FOREIGN) == ("amount", "hour_of_day")


@pytest.mark.parametrize("field", ["channel", "mcc", "country", "account_age_days"])
def test_a_null_nullable_attribute_is_scored_not_reviewed(models, field):
    rows = frame(10)
    rows[field] = rows[field].astype(object if field != "account_age_days" else "float64")
    rows.loc[3, field] = None
    out = decide(rows, models).set_index("transaction_id")
    assert (out["route"] == "main").all() and out["score"].notna().all()


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_a_missing_required_field_goes_to_review_with_its_name_and_no_score(models, field):
    rows = frame(10)
    rows[field] = rows[field].astype(object)
    rows.loc[3, field] = None
    out = decide(rows, models).set_index("transaction_id")
    assert out.loc[3, "route"] == "review"
    assert out.loc[3, "reason"] == f"missing required field: {field}"
    assert np.isnan(out.loc[3, "score"]) and out.loc[3, "alert"]
    assert (out.drop(index=3)["route"] == "main").all()


def test_outage_masks_only_active_users_in_the_given_hours():
    rows = frame(2000)
    affected = outage_rows(rows, share=1.0, hours=[12, 13], seed=0)
    masked = without_history(rows, affected)
    expected = (rows["n_prior_tx_30d"] > 0) & rows["hour_of_day"].isin([12, 13])
    assert (affected == expected.to_numpy()).all()
    assert masked.loc[affected, list(HISTORY_FEATURES)].isna().all().all()
    assert masked.loc[~affected, list(HISTORY_FEATURES)].notna().all().all()
    assert masked["amount"].equals(rows["amount"])


def test_peak_hours_are_the_busiest():
    rows = pd.DataFrame({"hour_of_day": [5] * 10 + [6] * 3 + [7] * 7})
    assert peak_hours(rows, 2) == [5, 7]


def _report(identified, full, outage):
    return {
        "identified_share": identified,
        "n_affected": 100,
        "mean_score_affected_frauds_full_history": full,
        "mean_score_affected_frauds_outage": outage,
    }


@pytest.mark.parametrize(
    "identified, full, outage, misread",
    [
        (1.0, 0.10, 0.005, False),  # recognised: the policy handles it, whatever the scores
        (0.0, 0.10, 0.005, True),  # taken for a new user and read as safe (the seed failure)
        (0.0, 0.01, 0.05, True),  # taken for a new user and read as risky (its mirror)
        (0.0, 0.10, 0.09, False),  # not recognised, but the decision barely moves
        (0.0, 0.10, 0.14, True),  # not recognised, and 40% up: active customers start to look risky
    ],
)
def test_misreading_verdicts(identified, full, outage, misread):
    verdict, reason = misreads_unavailable_history(_report(identified, full, outage), 0.99, 1.25)
    assert verdict is misread
    assert "recognised" in reason


def test_deciding_only_the_changed_rows_equals_deciding_every_row(models):
    rows = frame(400, seed=5)
    full = decide(rows, models)
    affected = outage_rows(rows, 0.5, list(range(24)), seed=1)
    masked = without_history(rows, affected)
    assert 0 < affected.sum() < len(rows)
    pd.testing.assert_frame_equal(decide_where_changed(full, masked, affected, models), decide(masked, models))
    nothing = np.zeros(len(rows), bool)
    pd.testing.assert_frame_equal(decide_where_changed(full, masked, nothing, models), full)


def test_replaying_an_outage_on_the_rows_its_report_reads_equals_deciding_every_row(models):
    from fraud_pipeline.lib.costs import CostModel

    rows = frame(3000, seed=7)
    rows.loc[rows.index % 7 == 0, "n_prior_tx_30d"] = 0  # new users: the report's reference rows
    hours = peak_hours(rows, 6)
    affected = outage_rows(rows, 0.5, hours, seed=3)
    masked = without_history(rows, affected)
    everything = outage_report(rows, affected, decide(rows, models), decide(masked, models), CostModel())
    assert everything["n_affected_frauds"] > 0 and not np.isnan(everything["mean_score_new_users"])
    assert replay_outage(rows, 0.5, hours, 3, models, CostModel()) == pytest.approx(everything, rel=1e-12)


def _signal_model():
    """A tiny model on two features: fraud exactly when ``signal`` is above 8, ``noise`` carries nothing."""

    def rows(n, seed):
        local = np.random.default_rng(seed)
        data = pd.DataFrame(
            {"transaction_id": np.arange(n), "signal": local.random(n) * 10, "noise": local.random(n) * 10}
        )
        data["is_fraud"] = data["signal"] > 8
        return data

    return train_model(
        rows(3000, 1), rows(1000, 2), ("signal", "noise"), (), ModelParams(max_rounds=30, min_data_in_leaf=20)
    )


def test_top_contributions_name_the_feature_that_drove_the_score_with_its_value():
    model = _signal_model()
    rows = pd.DataFrame({"signal": [9.5, 9.0, 1.0], "noise": [1.0, 7.25, 3.0]})
    reasons = top_contributions(model, rows)
    assert reasons[0].startswith("signal=9.50 (+") and reasons[1].startswith("signal=9 (+")
    assert "noise" not in reasons[0].split(";")[0]
    # a row the model finds safe has nothing raising its score above the bias by much: signal is not a reason
    assert not reasons[2].startswith("signal")
    contributions = model.booster().predict(to_model_matrix(rows, model.features, model.categories), pred_contrib=True)
    shown = float(reasons[0].split("(+")[1].split(")")[0])
    assert shown == pytest.approx(contributions[0, 0], abs=0.005)


class _FixedContributions:
    """A booster stand-in whose contributions are given, to pin the order of ties."""

    def __init__(self, contributions):
        self.contributions = np.asarray(contributions, dtype=float)

    def predict(self, matrix, pred_contrib=False):
        assert pred_contrib
        return self.contributions[: len(matrix)]


def test_top_contributions_come_largest_first_ties_by_name_and_only_when_they_raise_the_score():
    model = TrainedModel(model_text="", features=("zeta", "alpha", "mid", "low"), categories={}, best_iteration=1)
    rows = pd.DataFrame({"zeta": [1.0, 2.0], "alpha": [np.nan, 3.0], "mid": [0.5, 4.0], "low": [7, 8]})
    booster = _FixedContributions([[0.5, 0.5, 0.2, -1.0, 0.1], [0.0, -0.3, -0.1, -0.2, 0.4]])
    reasons = top_contributions(model, rows, booster)
    assert reasons[0] == "alpha=NULL (+0.50); zeta=1 (+0.50); mid=0.5 (+0.20)"
    assert reasons[1] == ""  # nothing raised the second row's score
    assert (
        top_contributions(
            model, rows.iloc[::-1].reset_index(drop=True), _FixedContributions(booster.contributions[::-1])
        )[1]
        == reasons[0]
    )


def test_every_alert_says_why_and_the_same_rows_always_read_the_same(models):
    rows = frame(300, seed=11)
    rows.loc[:40, list(HISTORY_FEATURES)] = np.nan
    scored = decide(rows, models)
    # thresholds low enough that about a third of each route alerts
    cut = {route: float(scored.loc[scored["route"] == route, "score"].quantile(0.67)) for route in ("main", "fallback")}
    models = replace(models, main_policy=cut["main"], fallback_policy=cut["fallback"])
    first, second = decide(rows, models), decide(rows, models)
    pd.testing.assert_frame_equal(first, second)
    backwards = decide(rows.iloc[::-1], models).iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, backwards)
    alerted = first[first["alert"] & (first["route"] != "review")]
    assert len(alerted) > 0 and (alerted["top_features"] != "").all()
    assert (first.loc[~first["alert"], "top_features"] == "").all()
    fallback_alerts = alerted[alerted["route"] == "fallback"]
    main_alerts = alerted[alerted["route"] == "main"]
    assert len(fallback_alerts) and len(main_alerts)
    # the fallback's reasons name only the features it has
    named = {part.split("=")[0] for text in fallback_alerts["top_features"] for part in text.split("; ")}
    assert named <= set(FALLBACK_FEATURES)


@pytest.fixture(scope="module")
def foreign_models():
    """Models trained on the foreign spec (no channel/mcc/country, a device key), recording it as a bundle does."""
    train, validation = frame(seed=1, features=FOREIGN.features), frame(seed=2, features=FOREIGN.features)
    params = ModelParams(max_rounds=20)
    main = train_model(train, validation, FOREIGN.names, (), params)
    fallback = train_model(train, validation, FOREIGN.fallback, (), params)
    bundle = {
        **main.as_dict(),
        "threshold": 0.5,
        "fallback": {**fallback.as_dict(), "threshold": 0.5},
        "feature_spec": FOREIGN.to_dict(),
    }
    return ScoringModels.from_candidate(bundle)


def test_a_bundle_recording_its_spec_is_served_by_that_spec(foreign_models, models):
    assert foreign_models.spec == FOREIGN and models.spec == default_spec()
    rows = frame(60, seed=3, features=FOREIGN.features)
    assert not {"channel", "mcc", "country", "n_prior_user_merchant_tx_30d"} & set(rows.columns)
    assert (decide(rows, foreign_models)["route"] == "main").all()
    rows["n_device_tx_30d"] = rows["n_device_tx_30d"].astype("float64")
    rows.loc[4, "n_device_tx_30d"] = np.nan  # a count only the foreign spec has: its service did not answer
    out = decide(rows, foreign_models)
    assert out.loc[4, "route"] == "fallback"
    assert out.loc[4, "reason"] == "fallback: history unavailable (n_device_tx_30d NULL)"


def test_an_outage_under_a_foreign_spec_hides_that_specs_history_and_keys_activity_on_its_count(foreign_models):
    from fraud_pipeline.lib.costs import CostModel
    from fraud_pipeline.training.candidate import history_count

    rows = frame(2000, seed=8, features=FOREIGN.features)
    active_count = history_count(FOREIGN)
    rows.loc[rows.index % 5 == 0, active_count] = 0
    affected = outage_rows(rows, 1.0, [12, 13], 0, FOREIGN)
    expected = (rows[active_count] > 0) & rows["hour_of_day"].isin([12, 13])
    assert (affected == expected.to_numpy()).all() and affected.any()
    masked = without_history(rows, affected, FOREIGN)
    assert masked.loc[affected, list(FOREIGN.history)].isna().all().all()
    assert masked.loc[~affected, list(FOREIGN.history)].notna().all().all()
    report = replay_outage(rows, 1.0, [12, 13], 0, foreign_models, CostModel())
    assert report["n_affected"] == int(affected.sum()) and report["identified_share"] == 1.0


def test_peak_hours_read_the_event_time_when_the_spec_has_no_hour_of_day():
    times = pd.to_datetime(["2018-05-01 05:10"] * 4 + ["2018-05-01 06:00"] + ["2018-05-02 07:59"] * 3)
    assert peak_hours(pd.DataFrame({"event_time": times}), 2) == [5, 7]


SEGMENT = CohortSpec("segment", "segment")


def _twins(models, n=40):
    """Pairs of identical rows but for ``segment`` (a column no model reads): equal scores, different cells."""
    rows = frame(n, seed=21)
    twins = pd.concat([rows.assign(segment="risky"), rows.assign(segment="calm"), rows.assign(segment="new")])
    return twins.assign(transaction_id=np.arange(len(twins))).reset_index(drop=True)


def test_a_cell_with_a_lower_threshold_alerts_a_score_its_twin_in_another_cell_does_not(models):
    rows = _twins(models)
    scores = decide(rows, models)["score"].to_numpy()
    low, high = np.quantile(scores, 0.3), np.quantile(scores, 0.9)
    middle = float(np.quantile(scores, 0.6))
    policy = hand_policy(middle, SEGMENT, {"risky": float(low), "calm": float(high)})
    out = decide(rows, replace(models, main_policy=policy))
    np.testing.assert_array_equal(out["score"].to_numpy(), scores)  # the policy decides, it does not score
    by_segment = {s: out[rows["segment"] == s].reset_index(drop=True) for s in ("risky", "calm", "new")}
    for segment, threshold in (("risky", low), ("calm", high), ("new", middle)):
        part = by_segment[segment]
        assert (part["threshold"] == threshold).all()
        np.testing.assert_array_equal(part["alert"].to_numpy(), part["score"].to_numpy() >= threshold)
    twin = (by_segment["risky"]["alert"] & ~by_segment["calm"]["alert"]).to_numpy()
    assert twin.any(), "some score alerts in the risky cell and not in the calm one"
    assert (by_segment["risky"]["cell"] == "segment=risky").all() and (by_segment["new"]["cell"] == "segment=new").all()
    assert (by_segment["risky"]["reason"] == f"{MAIN_REASON}; threshold {low:.4g} of cell segment=risky").all()
    assert (
        by_segment["new"]["reason"]
        == f"{MAIN_REASON}; global threshold {middle:.4g} (cell segment=new not seen on validation)"
    ).all()
    alerted = out[out["alert"]]
    assert (alerted["top_features"] != "").all()


def test_history_unavailable_rows_are_judged_by_the_fallbacks_policy_not_the_mains(models):
    rows = _twins(models)
    rows.loc[rows.index % 2 == 0, list(HISTORY_FEATURES)] = np.nan
    scored = decide(rows, models)
    fallback = scored["route"] == "fallback"
    cut = float(scored.loc[fallback, "score"].median())
    policy = hand_policy(cut, SEGMENT, {"risky": 0.0, "calm": 1.1})
    out = decide(rows, replace(models, fallback_policy=policy))
    segment = rows["segment"].to_numpy()
    assert (out.loc[fallback & (segment == "risky"), "alert"]).all()  # threshold 0: every fallback row alerts
    assert not (out.loc[fallback & (segment == "calm"), "alert"]).any()
    new = fallback & (segment == "new")
    np.testing.assert_array_equal(out.loc[new, "alert"].to_numpy(), out.loc[new, "score"].to_numpy() >= cut)
    assert out.loc[fallback & (segment == "risky"), "reason"].str.endswith("; threshold 0 of cell segment=risky").all()
    # the main rows keep the main model's single threshold, their reason and no cell
    main = out["route"] == "main"
    assert (out.loc[main, "threshold"] == 0.5).all() and (out.loc[main, "cell"] == "").all()
    assert (out.loc[main, "reason"] == MAIN_REASON).all()
    pd.testing.assert_frame_equal(out[main], scored[main])


def test_a_bundle_written_before_policies_is_served_exactly_as_before(models):
    old = {
        **models.main.as_dict(),
        "threshold": 0.31,
        "fallback": {**models.fallback.as_dict(), "threshold": 0.27},
    }
    served = ScoringModels.from_candidate(old)
    assert served.main_policy == DecisionPolicy.single(0.31) and served.fallback_policy == DecisionPolicy.single(0.27)
    assert served.policy_columns() == ()
    rows = frame(300, seed=12)
    rows.loc[:60, list(HISTORY_FEATURES)] = np.nan
    rows["amount"] = rows["amount"].astype(object)
    rows.loc[5, "amount"] = None
    out = decide(rows, served)
    scored = out["route"] != "review"
    expected = np.where(out["route"] == "main", out["score"] >= 0.31, out["score"] >= 0.27)
    np.testing.assert_array_equal(out.loc[scored, "alert"].to_numpy(), expected[scored.to_numpy()])
    np.testing.assert_array_equal(out.loc[scored, "threshold"], np.where(out["route"] == "main", 0.31, 0.27)[scored])
    assert out.loc[~scored, "threshold"].isna().all() and (out["cell"] == "").all()
    assert set(out["reason"]) == {
        MAIN_REASON,
        f"fallback: history unavailable ({', '.join(HISTORY_COUNTS)} NULL)",
        "missing required field: amount",
    }
    # the same bundle carrying its threshold as a policy of no splits decides alike
    with_policy = {
        **old,
        "policy": DecisionPolicy.single(0.31).as_dict(),
        "fallback": {**old["fallback"], "policy": DecisionPolicy.single(0.27).as_dict()},
    }
    pd.testing.assert_frame_equal(decide(rows, ScoringModels.from_candidate(with_policy)), out)


def test_a_bundles_policy_round_trips_into_serving(models):
    policy = hand_policy(0.4, SEGMENT, {"risky": 0.1, "calm": 0.9})
    bundle = {
        **models.main.as_dict(),
        "threshold": 0.4,
        "policy": policy.as_dict(),
        "fallback": {**models.fallback.as_dict(), "threshold": 0.5},
    }
    served = ScoringModels.from_candidate(bundle)
    assert served.main_policy == policy and served.fallback_policy.is_single
    assert served.policy_columns() == ("segment",) and served.main_threshold == 0.4


def test_rows_without_a_column_the_policy_cuts_by_are_refused_not_read_as_unknown(models):
    policy = hand_policy(0.4, SEGMENT, {"risky": 0.1, "unknown": 0.9})
    with pytest.raises(ValueError, match="cuts rows by segment, which the rows to decide do not carry"):
        decide(frame(10), replace(models, main_policy=policy))


def test_replaying_an_outage_under_a_policy_equals_deciding_every_row(models):
    from fraud_pipeline.lib.costs import CostModel

    rows = frame(3000, seed=7)
    rows.loc[rows.index % 7 == 0, "n_prior_tx_30d"] = 0
    rows["segment"] = np.where(rows.index % 3 == 0, "risky", "calm")
    policed = replace(
        models,
        main_policy=hand_policy(0.5, SEGMENT, {"risky": 0.05, "calm": 0.6}),
        fallback_policy=hand_policy(0.5, SEGMENT, {"risky": 0.02}),
    )
    hours = peak_hours(rows, 6)
    affected = outage_rows(rows, 0.5, hours, seed=3)
    masked = without_history(rows, affected)
    full, outage = decide(rows, policed), decide(masked, policed)
    everything = outage_report(rows, affected, full, outage, CostModel())
    assert replay_outage(rows, 0.5, hours, 3, policed, CostModel()) == pytest.approx(everything, rel=1e-12)
    assert everything != outage_report(rows, affected, decide(rows, models), decide(masked, models), CostModel())
