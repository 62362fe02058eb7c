"""What the UI shows: plots as Markdown metadata, the report beside the model, progress in the run log."""

import base64
import re

import lightgbm as lgb
import numpy as np

from fraud_pipeline.training.assets import TrainingProgress

IMAGE = re.compile(r"^!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)$")


def _png_of(metadata, key):
    match = IMAGE.match(metadata[key].value)
    assert match, f"{key} is not a Markdown data-URI image"
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG") and len(png) < 150_000
    return png


def test_plots_and_the_report_are_one_click_away_after_a_run(clean_night):
    # the session's clean_night (conftest.py), shared with other modules: the job as the command line runs it
    result = clean_night.result
    assert result.success
    meta = {
        node: result.asset_materializations_for_node(node)[0].metadata
        for node in ("label_delay_profile", "fraud_model", "evaluation_report")
    }
    _png_of(meta["label_delay_profile"], "maturation_plot")
    _png_of(meta["fraud_model"], "cost_vs_threshold")
    linked = [
        _png_of(meta["evaluation_report"], key)
        for key in ("precision_recall_curve", "cohort_metrics", "calibration", "feature_importance", "feature_drift")
    ]

    version = meta["fraud_model"]["version"].value
    report = clean_night.folder / "registry" / "models" / version / "report.html"
    assert meta["evaluation_report"]["report_path"].value == str(report)
    html = report.read_text(encoding="utf-8")
    assert f"Evaluation of model {version}" in html and "cost_beats_baselines" in html and "all pass" in html
    assert "account_age" in html and "Cohort mix" in html
    # every plot the UI links is the one the report embeds
    assert all(base64.b64encode(png).decode() in html for png in linked)


def _tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 4))
    y = (x[:, 0] + rng.normal(scale=1.5, size=2000) > 2).astype(int)
    return x, y


def _train(callbacks):
    x, y = _tiny_data()
    params = {
        "objective": "binary",
        "metric": "average_precision",
        "verbosity": -1,
        "seed": 7,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
    }
    train, valid = lgb.Dataset(x[:1500], y[:1500]), lgb.Dataset(x[1500:], y[1500:])
    return lgb.train(
        params, train, num_boost_round=120, valid_sets=[valid], valid_names=["validation"], callbacks=callbacks
    ).model_to_string()


def test_training_progress_logs_counts_and_eta_without_changing_the_model():
    lines, ticks = [], iter(range(1000))
    progress = TrainingProgress(lines.append, "main model", max_rounds=120, every=50, clock=lambda: float(next(ticks)))
    assert _train([progress]) == _train([])
    assert len(lines) == 3
    assert lines[0].startswith("main model: round 50 of at most 120, 1.0 s elapsed, ETA 1.4 s")
    assert "validation average_precision" in lines[0]
    assert lines[-1].startswith("main model: round 120 of at most 120") and "ETA 0.0 s" in lines[-1]
