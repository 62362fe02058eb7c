"""The evaluation report: every section present, numbers for people, escaped, self-contained and deterministic."""

import math
import re
from dataclasses import fields, replace
from functools import cache

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.deployment.decision import deploy_decision
from fraud_pipeline.deployment.gates import GateResult, challenger_gate
from fraud_pipeline.evaluation.metrics import (
    DEFAULT_COHORTS,
    cohort_table,
    day_bootstrap,
    evaluate_decisions,
    feature_importance,
    policy_vs_single,
    reliability_bins,
)
from fraud_pipeline.evaluation.report import (
    ESTIMATE_MEANINGS,
    ReportInputs,
    build_report,
    compare_with_champion,
    decision_view,
    format_change,
    format_value,
    html_table,
)
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.labels.maturity import estimate_delay_profile
from fraud_pipeline.lib.costs import CostModel, choose_threshold
from fraud_pipeline.lib.markdown import html_text
from fraud_pipeline.lib.policy import PolicySettings, fit_policy
from fraud_pipeline.monitoring.estimate import (
    STATUSES,
    ChampionEstimate,
    OpenRows,
    PerformanceEstimate,
    cost_overrun,
    estimate_performance,
)
from fraud_pipeline.training.model import ModelParams, to_model_matrix, train_model

COSTS = CostModel()
DAY = pd.Timestamp("2025-03-01")
MARKUP = '<img src=x onerror="alert(1)">'
SECTIONS = (
    "decision",
    "cost",
    "champion",
    "estimate",
    "cohorts",
    "policy",
    "threshold",
    "calibration",
    "ranking",
    "backtest",
    "outage",
    "drift",
    "importance",
    "maturity",
    "facts",
)


def window(n=3_000, seed=0, channel_values=("card_present", "ecommerce")):
    rng = np.random.default_rng(seed)
    is_fraud = rng.random(n) < 0.05
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "event_time": DAY + pd.to_timedelta(rng.integers(0, 14 * 86_400, n), unit="s"),
            "user_id": rng.integers(0, 400, n),
            "signal": rng.normal(0, 1, n) + 1.5 * is_fraud,
            "noise": rng.normal(0, 1, n),
            "is_fraud": is_fraud,
            "amount": np.round(rng.lognormal(3.5, 1.0, n), 2),
            "account_age_days": rng.exponential(60, n),
            "channel": rng.choice(list(channel_values), n),
            "country": rng.choice(["R1", "R2"], n),
        }
    )


@pytest.fixture(scope="module")
def model():
    return train_model(window(seed=1), window(seed=2), ("signal", "noise"), (), ModelParams(max_rounds=20))


def evaluation_of(frame, threshold, version="cand"):
    headline = evaluate_decisions(frame, threshold, COSTS, 200.0, 20)
    cohorts = pd.concat([cohort_table(frame, threshold, COSTS, 200.0, s) for s in DEFAULT_COHORTS]).to_dict("records")
    known = {f.name for f in fields(ModelEvaluation)}
    return ModelEvaluation(
        model_version=version,
        threshold=threshold,
        rule_amount_threshold=200.0,
        cohorts=cohorts,
        **{k: v for k, v in headline.items() if k in known},
    )


def decision(passed=True, champion=None, champion_cost=None, candidate_cost=1000.0, reason="cost is fine"):
    gates = [
        GateResult("windows_valid", True, "windows are fine"),
        GateResult("cost_beats_baselines", passed, reason, {"total_cost": candidate_cost, "margin": 0.05}),
    ]
    challenge = challenger_gate(candidate_cost, champion_cost, 0.02)
    return decision_view(deploy_decision("2025-07-01", "cand", champion, gates, challenge))


def _open_rows(n: int, seed: int) -> OpenRows:
    """A champion's decisions on ``n`` recent rows with their chargebacks so far, and its validation rows."""
    rng = np.random.default_rng(seed + 100)  # not window's stream: completeness independent of the labels

    def scored(frame):
        return frame.assign(score=1.0 / (1.0 + np.exp(4.0 - 1.5 * frame["signal"])))

    frame = scored(window(n, seed=seed))
    completeness = rng.uniform(0.0, 1.0, n)
    frame = frame.assign(
        route="main",
        alert=frame["score"] >= frame["score"].quantile(0.95),
        completeness=completeness,
        reported=frame["is_fraud"] & (rng.random(n) < completeness),
    )
    validation = scored(window(n, seed=seed + 1))
    return OpenRows(frame=frame, validation={"main": validation[["score", "is_fraud"]]})


@cache
def performance_estimate() -> PerformanceEstimate:
    """The delay-weighted estimate of a small synthetic champion, per cohort, computed once."""
    return estimate_performance(_open_rows(2_000, seed=9), COSTS, DEFAULT_COHORTS, n_resamples=20)


def champion_estimate(promised: float | None = None, **overrides) -> ChampionEstimate:
    """The champion ``champ`` estimated as of 2025-07-01; the promise is the estimated cost unless given."""
    estimate = performance_estimate()
    values = dict(
        status="estimated",
        as_of="2025-07-01T00:00:00",
        max_cost_increase=0.25,
        champion="champ",
        window=("2025-06-03T00:00:00", "2025-07-01T00:00:00"),
        promised_cost_per_transaction=estimate.overall()["cost_per_transaction"] if promised is None else promised,
        estimate=estimate,
    )
    values.update(overrides)
    return ChampionEstimate(**values)


def inputs(model, channel_values=("card_present", "ecommerce"), **overrides):
    frame = window(seed=3, channel_values=channel_values)
    frame["score"] = model.booster().predict(to_model_matrix(frame, model.features, model.categories))
    validation = window(seed=4)
    validation["score"] = model.booster().predict(to_model_matrix(validation, model.features, model.categories))
    threshold = choose_threshold(validation["score"], validation["is_fraud"], validation["amount"], COSTS).threshold
    evaluation = evaluation_of(frame, threshold)
    champion = evaluate_decisions(frame.assign(score=frame["score"] * 0.9), threshold, COSTS, 200.0, 20)
    rng = np.random.default_rng(5)
    delays = rng.exponential(20, 500)
    profile = estimate_delay_profile(delays, delays + rng.uniform(1, 200, 500))
    values = dict(
        version="cand",
        facts={"as_of": "2025-07-01", "alert threshold": threshold},
        decision=decision(),
        evaluation=evaluation,
        bootstrap=day_bootstrap(frame, threshold, COSTS, 200.0, 200, 0, cohorts=DEFAULT_COHORTS),
        validation_curve=choose_threshold(
            validation["score"], validation["is_fraud"], validation["amount"], COSTS
        ).curve,
        test_curve=choose_threshold(frame["score"], frame["is_fraud"], frame["amount"], COSTS).curve,
        is_fraud=frame["is_fraud"].to_numpy(),
        scores=frame["score"].to_numpy(),
        reliability=reliability_bins(frame["is_fraud"], frame["score"], 6),
        importance=feature_importance(model.booster(), to_model_matrix(frame, model.features, model.categories)),
        importance_rows=len(frame),
        champion=compare_with_champion(evaluation.headline(), champion, "champ"),
        maturity_curve=profile.curve,
        label_profile={"horizon_days": profile.horizon_days, "coverage": 0.95, "n_chargebacks": 500},
        champion_estimate=champion_estimate(),
        backtest={
            "folds": [
                {
                    "fold": i,
                    "test_start": f"2025-0{i + 3}-01",
                    "test_end": f"2025-0{i + 3}-21",
                    "candidates_windows": i == 0,
                    "n_transactions": 3000,
                    "n_frauds": 150,
                    "total_cost": 9000.0 + i,
                    "savings_vs_approve_all_pct": 0.2,
                    "average_precision": 0.3 + i / 100,
                    "recall": 0.4,
                    "precision": 0.2,
                }
                for i in range(2)
            ],
            "spread": {"average_precision": {"mean": 0.305, "std": 0.007, "min": 0.3, "max": 0.31}},
            "findings": [],
            "design": {"label": "49/14/21 days", "same_as_run": True},
        },
        outage={
            "n_affected": 120,
            "identified_share": 1.0,
            "recall_affected_outage": 0.25,
            "share": 0.5,
            "peak_hours": [12, 18],
            "policy": {"history_unavailable": "fallback model"},
        },
        drift={
            "features": [{"feature": "signal", "kind": "behaviour", "psi": 0.12, "ks": 0.1, "verdict": "shifted"}],
            "cohort_mix": [
                {
                    "cohort": "channel",
                    "value": "ecommerce",
                    "share_reference": 0.4,
                    "share_current": 0.5,
                    "share_ratio": 1.25,
                    "mix_psi": 0.02,
                }
            ],
            "projected_mix_effect": [
                {
                    "cohort": "channel",
                    "test_cost_per_transaction": 1.2,
                    "projected_cost_per_transaction": 1.3,
                    "mix_change": 0.1,
                    "unpriced_share": 0.0,
                }
            ],
            "reference": "training window",
            "current": "last 30 days",
        },
    )
    values.update(overrides)
    return ReportInputs(**values)


PLOTS = (
    "cohort_bars_png",
    "cost_curve_png",
    "drift_bars_png",
    "folds_png",
    "importance_png",
    "maturation_curve_png",
    "precision_recall_png",
    "reliability_png",
)


@pytest.fixture
def quick_plots(monkeypatch):
    """Stand-in images for the tests about text (the plots themselves are tested in lib/test_plots.py)."""
    import fraud_pipeline.evaluation.report as report

    for name in PLOTS:
        monkeypatch.setattr(report, name, lambda *args, **kwargs: b"\x89PNG\r\n\x1a\nstand-in")


@pytest.fixture(scope="module")
def page(model):
    return build_report(inputs(model))


def text_of(html):
    """The page without its inline images, so numbers can be read."""
    return re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', html)


def test_every_section_is_on_the_page_with_its_plots_inline(page):
    html, plots = page
    for anchor in SECTIONS:
        assert f'<h2 id="{anchor}">' in html and f'href="#{anchor}"' in html
    for caption in (
        "Cost vs threshold",
        "Calibration on the test window",
        "Per-cohort metrics",
        "Feature importance",
        "Backtest folds",
        "Feature drift (PSI)",
        "Label maturation",
        "Precision-recall on the test window",
    ):
        assert caption in plots, caption
    assert html.count('src="data:image/png;base64,') == len(plots)
    assert "user precision@k (caught users removed)" in html and "removed after first fraud day" in html
    assert "champ" in html and "PROMOTED" in html


def test_the_page_is_self_contained_and_fetches_nothing(page):
    html, _ = page
    page = text_of(html)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "://" not in page and "url(" not in page and "@import" not in page
    assert re.findall(r'src="([^"]*)"', page) == [""] * page.count("<img")


def significant_digits(number: str) -> int:
    whole, fraction = number.replace(",", "").split(".")
    return len(whole.lstrip("0")) + len(fraction) if whole.lstrip("0") else len(fraction.lstrip("0"))


def test_numbers_are_rounded_for_people_never_raw_floats_or_dicts(page):
    body = re.sub(r"<style>.*?</style>", "", text_of(page[0]), flags=re.S)
    numbers = re.findall(r"\d[\d,]*\.\d+", body)
    assert numbers and max(significant_digits(n) for n in numbers) <= 4, sorted(numbers, key=significant_digits)[-3:]
    assert "{'" not in body and "&#x27;: " not in body and "nan" not in body.lower().replace("nannyml", "")


def test_the_same_inputs_give_the_same_bytes(model, page):
    second, plots = build_report(inputs(model))
    assert page[0].encode() == second.encode() and page[1] == plots


def test_markup_in_data_strings_is_inert(model, quick_plots):
    hostile = inputs(
        model,
        channel_values=("card_present", MARKUP),
        decision=decision(passed=False, reason=f"cost {MARKUP}"),
        backtest={"folds": [], "spread": {}, "findings": [MARKUP], "design": {"label": MARKUP}},
        outage={"n_affected": 1, "share": 0.5, "peak_hours": [1], "policy": {MARKUP: MARKUP}},
        drift={
            "features": [{"feature": MARKUP, "psi": 0.3}],
            "cohort_mix": [],
            "projected_mix_effect": [],
            "reference": MARKUP,
            "current": "now",
        },
        facts={MARKUP: MARKUP},
    )
    html, _ = build_report(hostile)
    assert MARKUP not in html and "<img src=x" not in html and 'onerror="' not in html
    escaped = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    # the category value in the cohort table, the gate reason, findings, policy, drift and facts
    assert html.count(escaped) >= 7


def test_a_blocked_night_says_which_gate_blocked_it_and_that_the_champion_stays(model, quick_plots):
    html, _ = build_report(
        inputs(model, decision=decision(passed=False, champion="champ", champion_cost=900.0, reason="too dear"))
    )
    assert "BLOCKED" in html and "blocked by cost_beats_baselines" in html and "champion champ stays" in html
    assert 'class="text fail">FAIL' in html and "too dear" in html


def test_a_kept_champion_and_no_champion_read_as_such(model, quick_plots):
    kept, _ = build_report(inputs(model, decision=decision(champion="champ", champion_cost=500.0)))
    assert "CHAMPION KEPT" in kept and "kept the champion champ" in kept
    none = inputs(model, champion=compare_with_champion({}, None, None, "no champion yet"))
    html, _ = build_report(none)
    assert "no champion yet" in html and "Against the champion" in html


def test_the_champion_comparison_is_candidate_minus_champion():
    comparison = compare_with_champion(
        {
            "total_cost": 900.0,
            "recall": 0.5,
            "precision": 0.2,
            "average_precision": 0.3,
            "n_alerts": 10,
            "savings_vs_approve_all_pct": 0.1,
            "user_precision_at_k": 0.2,
        },
        {
            "total_cost": 1000.0,
            "recall": 0.4,
            "precision": 0.25,
            "average_precision": 0.35,
            "n_alerts": 12,
            "savings_vs_approve_all_pct": 0.05,
            "user_precision_at_k": 0.1,
        },
        "champ",
    )
    rows = {r["metric"]: r for r in comparison.rows}
    assert rows["total cost"]["change"] == -100.0 and rows["recall"]["change"] == pytest.approx(0.1)
    assert format_change(rows["recall"]["change"], "share") == "+10.0 pp"
    assert format_change(-100.0, "money") == "-100"


def test_intervals_in_the_headline_contain_the_point_estimate(model):
    report = inputs(model)
    for name, (low, high) in report.bootstrap["intervals"].items():
        assert low <= getattr(report.evaluation, name) <= high, name


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (None, None, ""),
        (math.nan, "share", ""),
        (0.0, "money", "0.00"),
        (12345.6, "money", "12,346"),
        (0.1234, "share", "12.3%"),
        (0.00123, "share", "0.12%"),
        (0.123456789, "ratio", "0.123"),
        (0.000123456, "score", "0.0001235"),
        (3, "count", "3"),
        (True, None, "yes"),
        ("<7d", None, "<7d"),
        ("-", None, "-"),
        (-0.001, "money", "0.00"),
        (-0.2, "share", "-20.0%"),
    ],
)
def test_format_value_rounds_by_kind_and_leaves_missing_empty(value, kind, text):
    assert format_value(value, kind) == text


def test_tables_escape_headers_and_cells_and_show_intervals():
    table = html_table(
        [{"<col>": "<b>", "recall": 0.5, "recall_low": 0.4, "recall_high": 0.6}], ["<col>", "recall"], ("recall",)
    )
    assert "&lt;col&gt;" in table and "&lt;b&gt;" in table and "<b>" not in table
    assert "50.0% (40.0% to 60.0%)" in table
    assert "none" in html_table([])


def test_the_headline_evaluation_helpers_keep_the_evaluation_shape(model):
    report = inputs(model)
    assert replace(report.evaluation, cohorts=[]).headline().keys() == report.evaluation.headline().keys()


def _stored(store, version, model, threshold=0.5):
    bundle = {
        "version": version,
        "threshold": threshold,
        "features": list(model.features),
        "categories": model.categories,
        "fallback": {"threshold": threshold},
        "windows": {},
    }
    store.write_bundle(version, model.model_text, bundle, "card", fallback_text=model.model_text)


def test_the_champion_compared_is_the_one_the_candidate_would_replace_whichever_step_ran_first(tmp_path, model):
    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline.evaluation.report import champion_to_compare

    store = ModelRegistryStore(tmp_path)
    assert champion_to_compare(store, "cand") == (None, "no champion yet")
    _stored(store, "old", model)
    _stored(store, "cand", model)
    store.promote("old", as_of="2025-06-01", reason="first")
    assert champion_to_compare(store, "cand") == ("old", None)
    store.promote("cand", as_of="2025-07-01", reason="tonight's deploy ran before the report")
    assert champion_to_compare(store, "cand") == ("old", None)


def test_the_champion_is_scored_on_the_candidates_rows_or_named_when_it_cannot_be(tmp_path, model):
    from fraud_pipeline.deployment.registry import ModelRegistryStore
    from fraud_pipeline.evaluation.report import champion_headline

    store = ModelRegistryStore(tmp_path)
    _stored(store, "old", model, threshold=0.2)
    frame = window(seed=6)
    headline = champion_headline(store, "old", frame, COSTS, 200.0, 20)
    scored = frame.assign(score=model.booster().predict(to_model_matrix(frame, model.features, model.categories)))
    assert headline == evaluate_decisions(scored, 0.2, COSTS, 200.0, 20)
    assert champion_headline(store, "old", frame.drop(columns="noise"), COSTS, 200.0, 20) == (
        "champion old needs features this window does not have: noise"
    )
    assert champion_headline(store, "missing", frame, COSTS, 200.0, 20).startswith("champion missing cannot be read")


def test_the_decision_policy_section_shows_the_cells_the_selection_and_the_single_threshold(model, quick_plots):
    scored = lambda frame: frame.assign(  # noqa: E731
        score=model.booster().predict(to_model_matrix(frame, model.features, model.categories))
    )
    test, validation = scored(window(seed=3)), scored(window(seed=4))
    channel = DEFAULT_COHORTS[1]
    policy = fit_policy(
        validation["score"],
        validation["is_fraud"],
        validation["amount"],
        validation,
        PolicySettings(splits=(channel,), prior_frauds=5),
        COSTS,
    )
    policy = replace(
        policy,
        selection=({"splits": [], "holdout_cost": 1234.5}, {"splits": ["channel"], "holdout_cost": 1200.25}),
    )
    compared = policy_vs_single(test, policy, COSTS, 200.0, DEFAULT_COHORTS)
    evaluation = replace(
        evaluation_of(test, policy.global_threshold), policy=policy.as_dict(), policy_vs_single=compared
    )
    html = text_of(build_report(inputs(model, evaluation=evaluation))[0])
    section = html[html.index('<h2 id="policy">') : html.index('<h2 id="threshold">')]
    assert "channel=card_present" in section and "channel=ecommerce" in section
    assert "own threshold (unshrunk)" in section and "weighted like 5 frauds" in section
    assert "held-out cost" in section and "1,234" in section and "none (one threshold)" in section
    assert "policy minus single" in section and "single-threshold cost" in section
    assert f"{compared[0]['policy_total_cost']:,.0f}" in section
    assert compared[0]["cohort"] == "all" and {r["cohort"] for r in compared[1:]} == {c.name for c in DEFAULT_COHORTS}


def test_an_evaluation_without_a_policy_reads_as_one_threshold(page):
    html, _ = page
    section = html[html.index('<h2 id="policy">') : html.index('<h2 id="threshold">')]
    assert "no decision policy: one threshold for every row" in section


def estimate_section(report: ReportInputs) -> str:
    html = text_of(build_report(report)[0])
    return html[html.index('<h2 id="estimate">') : html.index('<h2 id="cohorts">')]


def test_an_estimate_over_the_promise_by_more_than_the_margin_says_it_exceeds_as_the_check_does(model, quick_plots):
    estimate = performance_estimate()
    overall = estimate.overall()
    over = champion_estimate(promised=overall["cost_per_transaction"] / 2)
    assert cost_overrun(over) is not None
    section = estimate_section(inputs(model, champion_estimate=over))
    assert '<span class="fail">Exceeds the promise</span>' in section and "check warns" in section
    cost = format_value(overall["cost_per_transaction"], "money")
    low, high = (format_value(overall[f"cost_per_transaction_{s}"], "money") for s in ("low", "high"))
    assert (
        html_text(f"cost per transaction, {cost} (90% interval {low} to {high}), is more than 25.0% above") in section
    )
    assert f"promise of {format_value(overall['cost_per_transaction'] / 2, 'money')}" in section
    assert "WARN margin (max_cost_increase)" in section
    assert "Champion champ, the champion serving at the time of the estimate" in section
    assert "Transactions from 2025-06-03 up to (not including) 2025-07-01" in section
    assert f"Status: <b>{STATUSES['estimated']}</b>" in section


def test_an_estimate_within_the_margin_says_it_is_within(model, quick_plots):
    overall = performance_estimate().overall()
    within = champion_estimate(promised=overall["cost_per_transaction"] / 1.2)
    assert cost_overrun(within) is None
    section = estimate_section(inputs(model, champion_estimate=within))
    assert '<span class="pass">Within the promise</span>' in section and "check passes" in section
    assert "is not more than 25.0% above" in section and "Exceeds" not in section


def test_the_overall_estimate_stands_beside_its_baselines_with_alerts_and_completeness(model, quick_plots):
    overall = performance_estimate().overall()
    section = estimate_section(inputs(model))
    for header in ("estimate (90% interval)", "labels only", "labels reweighted by 1 / completeness", "scores only"):
        assert f">{header}</th>" in section, header
    for metric in ("recall", "precision"):
        shown = [format_value(overall[f"{metric}{s}"], "share") for s in ("", "_low", "_high")]
        assert f"{shown[0]} ({shown[1]} to {shown[2]})" in section, metric
        assert f">{format_value(overall[f'labels_only_{metric}'], 'share')}<" in section, metric
    assert f"{overall['n_alerts']:,} alerts (alert rate {format_value(overall['alert_rate'], 'share')}" in section
    assert f"chargebacks reported so far: {overall['known_frauds']:,}, frauds expected" in section
    assert 0 < overall["known_frauds"] < overall["expected_frauds"]
    assert f"Mean label completeness {format_value(overall['mean_completeness'], 'share')}" in section


def test_every_cohort_row_of_the_estimate_is_shown_with_its_interval(model, quick_plots):
    estimate = performance_estimate()
    section = estimate_section(inputs(model))
    cohorts = section[section.index("<h3>Per cohort</h3>") : section.index("<h3>The calibration")]
    assert len(estimate.rows) > 4 and cohorts.count("<tr>") == len(estimate.rows)  # the header row, less overall
    for row in estimate.rows[1:]:
        cost = [format_value(row[f"cost_per_transaction{s}"], "money") for s in ("", "_low", "_high")]
        assert (
            f'<td class="text">{row["cohort"]}</td><td class="text">{html_text(row["value"])}</td>'
            f'<td class="num">{row["n_transactions"]:,}</td>'
        ) in cohorts
        assert f"{cost[0]} ({cost[1]} to {cost[2]})" in cohorts, row["value"]
        assert f'<td class="num">{format_value(row["labels_only_precision"], "share")}</td>' in cohorts


def test_the_calibration_it_rests_on_is_shown_with_its_fit_and_reliability(model, quick_plots):
    estimate = performance_estimate()
    section = estimate_section(inputs(model))
    a, b = estimate.calibration.platt
    assert f"a = {format_value(a, 'score')} and b = {format_value(b, 'score')}" in section
    assert html_text(f"fitted on {estimate.calibration.n_rows:,} rows of the champion's validation window") in section
    reliability = section[section.index("<h3>The calibration") :]
    assert reliability.count("<tr>") == len(estimate.reliability) + 1 and "observed fraud rate" in reliability
    last = estimate.reliability[-1]
    assert f">{format_value(last['mean_predicted'], 'score')}<" in reliability


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (ChampionEstimate(status="no_champion", as_of="2025-07-01T00:00:00", max_cost_increase=0.25), ()),
        (
            ChampionEstimate(
                status="no_valid_champion",
                as_of="2025-07-01T00:00:00",
                max_cost_increase=0.25,
                reason="champion.json names version v9, which has no model file",
            ),
            ("Why: champion.json names version v9, which has no model file",),
        ),
        (
            ChampionEstimate(
                status="no_open_traffic",
                as_of="2025-07-01T00:00:00",
                max_cost_increase=0.25,
                champion="champ",
                promised_cost_per_transaction=1.5,
            ),
            ("Champion champ, the champion serving", "Its promised cost per transaction is 1.50."),
        ),
    ],
    ids=lambda v: getattr(v, "status", ""),
)
def test_without_an_estimate_the_section_says_why_plainly(model, quick_plots, found, says):
    section = estimate_section(inputs(model, champion_estimate=found))
    assert html_text(f"No estimate tonight: {STATUSES[found.status]}.") in section
    assert html_text(ESTIMATE_MEANINGS[found.status]) in section
    assert all(html_text(s) in section for s in says), says
    assert "<table" not in section and "nan" not in section.lower() and "Exceeds" not in section


def test_every_status_of_the_estimate_has_its_meaning():
    assert set(ESTIMATE_MEANINGS) == set(STATUSES)


def test_on_a_promoting_night_the_section_says_the_estimate_is_of_the_champion_that_served(model, quick_plots):
    promoted = estimate_section(inputs(model))
    assert "Tonight's candidate cand was promoted: the model estimated here is the champion it replaces" in promoted
    first = ChampionEstimate(status="no_champion", as_of="2025-07-01T00:00:00", max_cost_increase=0.25)
    first_night = estimate_section(inputs(model, champion_estimate=first))
    assert "Tonight's candidate cand was promoted: it is first estimated on the next night." in first_night
    blocked = estimate_section(inputs(model, decision=decision(passed=False, champion="champ", champion_cost=900.0)))
    assert "was promoted" not in blocked and "the last one promoted on a night before 2025-07-01" in blocked


def test_markup_in_the_estimate_is_inert(model, quick_plots):
    estimate = performance_estimate()
    hostile_rows = [dict(row) for row in estimate.rows]
    hostile_rows[1]["value"] = "<script>alert(1)</script>"
    hostile = champion_estimate(
        champion=MARKUP, reason=MARKUP, window=(MARKUP, MARKUP), estimate=replace(estimate, rows=hostile_rows)
    )
    section = estimate_section(inputs(model, champion_estimate=hostile))
    assert "<script" not in section and MARKUP not in section and "<img src=x" not in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert section.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 4  # champion, reason, window twice


def test_a_champion_without_a_recorded_promise_is_shown_but_not_judged(model, quick_plots):
    section = estimate_section(inputs(model, champion_estimate=champion_estimate(promised=math.nan)))
    assert "the champion records no promised cost per transaction to hold it to" in section
    assert "Within the promise" not in section and "Exceeds the promise" not in section


def test_an_isotonic_calibration_is_named_with_its_knots():
    from fraud_pipeline.evaluation.report import _calibration_fit_text
    from fraud_pipeline.monitoring.calibration import fit_calibration

    rng = np.random.default_rng(0)
    scores = rng.random(500)
    calibration = fit_calibration(scores, rng.random(500) < scores / 4, "isotonic")
    text = _calibration_fit_text(calibration)
    assert text.startswith(f"isotonic regression with {len(calibration.knots[0]):,} knots, fitted on 500 rows")
    assert f"with {calibration.n_frauds:,} frauds" in text


def test_the_estimates_calibration_is_plotted_with_each_bins_observed_interval(model, quick_plots, monkeypatch):
    import fraud_pipeline.evaluation.report as report

    drawn = []

    def reliability_png(bins, *args, **kwargs):
        drawn.append((list(bins), args))
        return b"\x89PNG\r\n\x1a\nstand-in"

    monkeypatch.setattr(report, "reliability_png", reliability_png)
    estimate = performance_estimate()
    section = estimate_section(inputs(model))
    assert html_text(report.ESTIMATE_CALIBRATION_TITLE) in section and "<img" in section
    ours = [(bins, args) for bins, args in drawn if args and args[0] == report.ESTIMATE_CALIBRATION_TITLE]
    assert len(ours) == 1
    bins, args = ours[0]
    assert args[1] == "mean calibrated probability in the bin" and args[2] == estimate.level
    assert [b["n_transactions"] for b in bins] == [r["n_rows"] for r in estimate.reliability]
    for b, row in zip(bins, estimate.reliability):
        assert b["mean_score"] == row["mean_predicted"]
        assert b["observed_rate_low"] <= b["observed_rate"] == row["observed_rate"] <= b["observed_rate_high"]
