"""MODEL_CARD.md (also the `model_card` metadata of `deployed_model`) shows data-derived text inert."""

import re

import pytest

from fraud_pipeline.deployment.model_card import render_model_card

BEACON = "http://127.0.0.1:9/beacon"


def hostile_bundle() -> dict:
    windows = {
        key: "2025-06-01"
        for key in (
            "as_of",
            "label_cutoff",
            "train_start",
            "train_end",
            "validation_start",
            "validation_end",
            "test_start",
            "test_end",
        )
    }
    cohort = {
        "n_transactions": 10,
        "n_frauds": 2,
        "total_cost": 5.0,
        "recall": 0.5,
        "recall_low": 0.1,
        "recall_high": 0.9,
        "calibration_ratio": 1.0,
    }
    return {
        "version": "v1",
        "threshold": 0.5,
        "windows": {**windows, "horizon_days": 30.0},
        "cost_model": {"chargeback_fee": 20.0},
        "features": ["amount", "channel"],
        "evaluation": {
            "total_cost": 1.0,
            "cohorts": [
                {**cohort, "cohort": "channel", "value": f"![x]({BEACON})"},
                {**cohort, "cohort": "country", "value": f'<img src="{BEACON}" onerror="alert(1)">'},
                {**cohort, "cohort": "mcc", "value": "[click](javascript:alert(1)) | broken | row"},
            ],
        },
        "gates": [{"name": "cohort_floors", "passed": False, "reason": f"channel=![y]({BEACON}) below the floor"}],
    }


def test_hostile_cohort_values_and_reasons_render_inert_in_the_model_card():
    markdown_it = pytest.importorskip("markdown_it")
    rendered = (
        markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(render_model_card(hostile_bundle()))
    )
    assert not re.search(r"<(img|a|script)\b", rendered), rendered
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):
        widths = {len(re.findall(r"<t[hd]\b", row)) for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)}
        assert len(widths) == 1, table


def test_hostile_cell_labels_and_split_names_in_the_decision_policy_render_inert():
    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline_tests.deployment.policies import hand_policy

    split = CohortSpec(f"![s]({BEACON})", "channel")
    values = {f"![x]({BEACON})": 0.1, f'<img src="{BEACON}">|x': 0.2, "[c](javascript:alert(1))": 0.3}
    policy = hand_policy(
        0.5,
        split,
        values,
        selection=({"splits": [], "holdout_cost": 10.0}, {"splits": [split.name], "holdout_cost": 9.0}),
    )
    bundle = {
        **hostile_bundle(),
        "policy": policy.as_dict(),
        "fallback": {"threshold": 0.4, "policy": policy.as_dict()},
    }
    markdown_it = pytest.importorskip("markdown_it")
    card = render_model_card(bundle)
    assert card.count("| validation frauds |") == 2
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(card)
    assert not re.search(r"<(img|a|script)\b", rendered), rendered
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):
        widths = {len(re.findall(r"<t[hd]\b", row)) for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)}
        assert len(widths) == 1, table
