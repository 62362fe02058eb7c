"""The backtest's design (the run's unless overridden, and said so) and what backtest_spread makes of the folds."""

import dagster as dg
import pytest

from fraud_pipeline.evaluation.backtest import (
    DESIGN_SETTINGS,
    design_statement,
    fold_design,
    naming_both_designs,
    spread,
    spread_findings,
)
from fraud_pipeline.evaluation.checks import backtest_spread
from fraud_pipeline.lib.costs import CostModel

RUN = {
    "train_days": 7,
    "validation_days": 7,
    "test_days": 7,
    "warmup_days": 30,
    "min_train_days": 7,
    "daily_review_capacity": 50,
    "max_genuine_rows": 300_000,
}
UNSET = dict.fromkeys(DESIGN_SETTINGS)


def _statement(design, sources, run=None, n_folds=3):
    return design_statement(
        design,
        sources,
        RUN if run is None else run,
        n_folds_requested=3,
        n_folds=n_folds,
        horizon_days=67.5,
        cost_model=CostModel(),
        rule_amount_threshold=250.0,
    )


def test_an_unset_backtest_config_inherits_every_setting_of_the_run():
    design, sources = fold_design(RUN, UNSET)
    assert design.windows.label() == "7/7/7" and design.as_dict() == RUN
    assert set(sources.values()) == {"run"}
    statement = _statement(design, sources)
    assert statement["same_as_run"] and statement["differs_from_run"] == []
    assert statement["label"] == statement["run_label"] and statement["shift_days"] == 7
    assert statement["settings"]["test_days"] == {"value": 7, "source": "run", "run": 7}
    assert {"horizon_days", "cost_model", "rule_amount_threshold", "n_folds_requested", "n_folds"} <= set(statement)
    assert naming_both_designs(["a finding"], statement) == ["a finding"]


def test_an_explicit_override_is_reported_as_such_and_every_finding_names_both_designs():
    design, sources = fold_design(RUN, {**UNSET, "train_days": 49, "test_days": 14, "daily_review_capacity": 50})
    assert design.windows.label() == "49/7/14"
    assert sources["train_days"] == sources["test_days"] == sources["daily_review_capacity"] == "backtest config"
    assert sources["validation_days"] == "run"
    statement = _statement(design, sources)
    # set to the run's own value, the review capacity is from the config but not a difference
    assert not statement["same_as_run"] and statement["differs_from_run"] == ["train_days", "test_days"]
    (named,) = naming_both_designs(["the folds save -1.0% of approve-all on average"], statement)
    assert "folds of 49/7/14 days" in named and "the candidate's design: 7/7/7 days" in named


def test_a_setting_neither_set_nor_known_from_the_run_is_an_error():
    run = {k: v for k, v in RUN.items() if k != "test_days"}
    with pytest.raises(ValueError, match="test_days"):
        fold_design(run, UNSET)
    design, sources = fold_design(run, {**UNSET, "test_days": 7})
    assert sources["test_days"] == "backtest config" and _statement(design, sources, run)["run_label"] is None


def _fold(i, savings, ap, own=False):
    return {
        "fold": i,
        "test_start": f"s{i}",
        "test_end": f"e{i}",
        "candidates_windows": own,
        "savings_vs_approve_all_pct": savings,
        "average_precision": ap,
    }


def _findings(folds, candidate, n_requested=3):
    return spread_findings(
        folds, spread(folds, ("savings_vs_approve_all_pct", "average_precision")), candidate, 2.0, n_requested
    )


def test_the_candidate_is_judged_against_the_folds_on_other_windows():
    """Fold 0 retrains the candidate itself; inside the sample it is judged by, it could never lie 2 std below it."""
    others = [_fold(1, 0.40, 0.50), _fold(2, 0.42, 0.52), _fold(3, 0.41, 0.51)]
    weak = {"savings_vs_approve_all_pct": 0.10, "average_precision": 0.20}
    folds = [_fold(0, 0.10, 0.20, own=True), *others]
    (finding_savings, finding_ap) = _findings(folds, weak)
    assert "mean of the 3 other folds" in finding_savings and "average_precision" in finding_ap
    # judged with its own fold in the sample, the same candidate would pass
    assert _findings([{**f, "candidates_windows": False} for f in folds], weak) == []
    assert _findings(folds, {"savings_vs_approve_all_pct": 0.41, "average_precision": 0.51}) == []


def test_fewer_than_two_folds_is_a_finding():
    (finding,) = _findings([_fold(0, 0.3, 0.4, own=True)], {"savings_vs_approve_all_pct": 0.3})
    assert finding.startswith("only 1 fold of the 3 requested fits") and "no spread" in finding


def _backtest(folds, candidate, same_as_run=True):
    statement = {"windows_label": "7/7/7 days", "same_as_run": same_as_run}
    return {
        "folds": folds,
        "findings": _findings(folds, candidate),
        "design": statement,
        "candidate_judged_against": sum(not f["candidates_windows"] for f in folds),
    }


def test_backtest_spread_passes_on_folds_that_save_and_a_candidate_in_line():
    folds = [_fold(0, 0.41, 0.51, own=True), _fold(1, 0.40, 0.50), _fold(2, 0.42, 0.52)]
    result = backtest_spread(_backtest(folds, {"savings_vs_approve_all_pct": 0.41, "average_precision": 0.51}))
    assert result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.description == (
        "3 folds of 7/7/7 days save money on average; the candidate is within the spread of the 2 folds on other windows"
    )
    two = backtest_spread(_backtest(folds[:2], {"savings_vs_approve_all_pct": 0.41}))
    assert two.passed and "not judged against a spread: 1 fold besides its own windows" in two.description


def test_backtest_spread_fails_on_losing_folds_and_on_a_single_fold():
    losing = [_fold(0, -0.1, 0.1, own=True), _fold(1, -0.2, 0.1), _fold(2, -0.1, 0.1)]
    result = backtest_spread(_backtest(losing, {"savings_vs_approve_all_pct": -0.1, "average_precision": 0.1}))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "on average" in result.description
    single = backtest_spread(_backtest([_fold(0, 0.3, 0.4, own=True)], {"savings_vs_approve_all_pct": 0.3}))
    assert not single.passed and "only 1 fold of the 3 requested fits" in single.description


def test_a_fold_trains_on_the_candidates_feature_spec(monkeypatch):
    from fraud_pipeline.evaluation import backtest
    from fraud_pipeline.features.spec import FeatureSpec, default_spec

    spec = FeatureSpec.from_dict(
        {
            "version": 1,
            "keys": {"card": ["user_id"]},
            "attributes": [
                {"name": "amount", "column": "amount"},
                {"name": "entry", "column": "entry", "categorical": True},
            ],
            "features": [{"name": "n_card_tx_1h", "key": "card", "window": "1h", "agg": "count"}],
        }
    )
    seen = []

    class Stop(Exception):
        pass

    def train_model(train, validation, features, categorical, params):
        seen.append((features, categorical))
        raise Stop

    monkeypatch.setattr(backtest, "train_model", train_model)
    for given, expected in ((spec, spec), (None, default_spec())):
        with pytest.raises(Stop):
            backtest.run_fold({"train": None, "validation": None}, None, CostModel(), 0.0, 50, None, spec=given)
        assert seen[-1] == (expected.names, expected.categorical)
    assert seen[0] == (("amount", "entry", "n_card_tx_1h"), ("entry",))
