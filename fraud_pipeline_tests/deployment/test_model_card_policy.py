"""The model card shows the decision policy of each model: the global threshold, every cell's, and why that structure."""

import math

from fraud_pipeline.deployment.model_card import render_model_card
from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.policy import DecisionPolicy
from fraud_pipeline_tests.deployment.policies import hand_policy
from fraud_pipeline_tests.deployment.test_model_card_markup import hostile_bundle

AGE = CohortSpec("account_age", "account_age_days", bins=(0, 7, math.inf), labels=("<7d", ">=7d"))


def _section(card: str) -> str:
    return card.split("## Decision policy")[1].split("## Feature spec")[0]


def test_the_card_shows_the_main_and_fallback_policies_cell_by_cell_with_the_structure_chosen_and_why():
    selection = (
        {"splits": [], "holdout_cost": 5000.0},
        {"splits": ["account_age"], "holdout_cost": 4200.0},
        {"splits": ["account_age", "channel"], "holdout_cost": None},
    )
    main = hand_policy(0.05, AGE, {"<7d": 0.0123, ">=7d": 0.08}, selection=selection)
    fallback = DecisionPolicy.single(0.07)
    bundle = {
        **hostile_bundle(),
        "threshold": 0.05,
        "policy": main.as_dict(),
        "fallback": {"threshold": 0.07, "policy": fallback.as_dict()},
    }
    card = render_model_card(bundle)
    assert "score >= the threshold of the row's cohort cell" in card and "global threshold 0.050000" in card
    section = _section(card)
    main_part, fallback_part = section.split("### fallback model (history unavailable)")
    assert "- global threshold: 0.050000" in main_part and "- cells cut by: account_age" in main_part
    assert "| account_age=<7d | 20 | 0.57 | 0.012300 |" in main_part
    assert "| account_age=>=7d | 21 | 0.58 | 0.080000 |" in main_part
    assert "| one threshold (no split) | 5,000 |  |" in main_part and "| account_age | 4,200 | yes |" in main_part
    assert "| account_age x channel | none (no fraud to fit on) |  |" in main_part
    assert "scaled to 15 frauds (own weight = frauds / (frauds + 15))" in main_part
    assert "- global threshold: 0.070000" in fallback_part
    assert "- cells cut by: one threshold (no split)" in fallback_part and "| cell |" not in fallback_part


def test_a_bundle_written_before_policies_shows_its_single_threshold_as_before():
    card = render_model_card(hostile_bundle())
    assert (
        "- decision: alert (review/block) when score >= 0.500000, chosen to minimise expected cost on validation\n"
        in card
    )
    assert "## Decision policy" not in card
