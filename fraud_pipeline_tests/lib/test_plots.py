"""Plots are valid, small, deterministic PNGs that embed in Markdown."""

import base64

import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.lib import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _curve():
    age = np.arange(120)
    return pd.DataFrame({"age_days": age, "completeness": 1 - np.exp(-age / 20), "naive_share": 1 - np.exp(-age / 12)})


def _scores(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.03
    return fraud, np.clip(rng.random(n) * 0.7 + fraud * 0.3, 0, 1)


COHORTS = [
    {"cohort": "account_age", "value": v, "recall": 0.4, "precision": 0.3, "average_precision": float("nan")}
    for v in ("< 7 d", "7-30 d", "> 30 d")
] + [
    {"cohort": "channel", "value": v, "recall": 0.2, "precision": 0.5, "average_precision": 0.25}
    for v in ("pos", "web")
]

FIGURES = {
    "maturation": lambda: plots.maturation_curve_png(_curve(), 60, 0.95),
    "cost": lambda: plots.cost_curve_png(
        pd.DataFrame({"threshold": [np.inf, 0.9, 0.5, 0.1, 0.01], "cost": [900.0, 700, 500, 600, 2000]}), 0.5, 900.0
    ),
    "precision_recall": lambda: plots.precision_recall_png(*_scores(), threshold=0.6),
    "cohorts": lambda: plots.cohort_bars_png(COHORTS),
    "drift": lambda: plots.drift_bars_png(
        [{"feature": f"f{i}", "psi": i / 20} for i in range(25)] + [{"feature": "x", "psi": None}]
    ),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_is_a_small_png_identical_on_every_draw(name):
    first, second = FIGURES[name](), FIGURES[name]()
    assert first.startswith(PNG_SIGNATURE)
    assert first == second
    assert 5_000 < len(first) < 150_000
    assert b"Software" not in first and b"matplotlib" not in first.lower()


def test_different_data_draws_a_different_picture():
    assert plots.maturation_curve_png(_curve(), 60, 0.95) != plots.maturation_curve_png(_curve(), 40, 0.95)


def test_markdown_image_is_a_data_uri_that_decodes_back_to_the_png():
    png = FIGURES["cost"]()
    text = plots.markdown_image(png, "cost [validation]")
    assert text.startswith("![cost (validation)](data:image/png;base64,")
    assert base64.b64decode(text.split("base64,", 1)[1].rstrip(")")) == png


RELIABILITY = [
    {
        "n_transactions": 100,
        "mean_score": s,
        "observed_rate": o,
        "observed_rate_low": max(o - 0.01, 0),
        "observed_rate_high": o + 0.01,
    }
    for s, o in ((0.001, 0.0), (0.01, 0.012), (0.1, 0.09), (0.5, 0.55))
]
IMPORTANCE = [
    {"feature": f"f{i}", "gain_share": 1 / (i + 1), "mean_abs_contribution": 0.5 / (i + 1)} for i in range(20)
]
FOLDS = [
    {"test_start": f"2025-0{i + 1}-01", "savings_vs_approve_all_pct": 0.1 * i, "average_precision": 0.3}
    for i in range(3)
]
CURVE = pd.DataFrame({"threshold": [np.inf, 0.9, 0.5, 0.1, 0.01], "cost": [900.0, 700, 500, 600, 2000]})
FIGURES.update(
    {
        "reliability": lambda: plots.reliability_png(RELIABILITY),
        "importance": lambda: plots.importance_png(IMPORTANCE),
        "folds": lambda: plots.folds_png(
            FOLDS, {"savings_vs_approve_all_pct": 0.15, "average_precision": float("nan")}
        ),
        "cost_with_test": lambda: plots.cost_curve_png(CURVE, 0.5, None, CURVE.assign(cost=CURVE["cost"] * 1.1)),
    }
)


@pytest.mark.parametrize("name", ["reliability", "importance", "folds", "cost_with_test"])
def test_report_figures_are_small_deterministic_pngs(name):
    first, second = FIGURES[name](), FIGURES[name]()
    assert first.startswith(PNG_SIGNATURE) and first == second
    assert 5_000 < len(first) < 150_000


def test_the_cost_curve_with_the_test_window_differs_from_the_validation_one_alone():
    assert FIGURES["cost_with_test"]() != plots.cost_curve_png(CURVE, 0.5)
