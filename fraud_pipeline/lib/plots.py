"""Plots of what the pipeline measured, as small deterministic PNG images.

Every figure is drawn with matplotlib's Agg canvas (no display, no pyplot global state) at a fixed
size and resolution, and saved without the software/date tags, so the same inputs give the same
bytes. :func:`markdown_image` wraps a PNG for a Markdown metadata value in the Dagster UI.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Width and height in inches and dots per inch of every figure: small enough for UI metadata.
FIGURE_SIZE = (6.4, 3.6)
DPI = 90
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _figure(size: tuple[float, float] = FIGURE_SIZE) -> Figure:
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    # metadata Software=None drops the only varying tag matplotlib writes into a PNG
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A PNG as a Markdown image with a data URI, which the Dagster UI renders inline.

    Args:
        png: The PNG bytes.
        alt: Alternative text; square brackets are removed so the Markdown stays valid.
    """
    text = alt.replace("[", "(").replace("]", ")")
    return f"![{text}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def maturation_curve_png(curve: pd.DataFrame, horizon_days: float, coverage: float) -> bytes:
    """The share of eventual chargebacks reported by each age: estimated (truncation-corrected) vs naive.

    Args:
        curve: Columns ``age_days``, ``completeness`` (estimated) and ``naive_share``.
        horizon_days: The maturity horizon in days (whole days or hours), drawn as a vertical line.
        coverage: The share that defines maturity, drawn as a horizontal line.
    """
    figure = _figure()
    ax = figure.add_subplot()
    ax.plot(curve["age_days"], curve["completeness"], color=_COLOURS[0], label="estimated (Lynden-Bell)")
    ax.plot(curve["age_days"], curve["naive_share"], color=_COLOURS[1], linestyle="--", label="naive (biased short)")
    ax.axhline(coverage, color="grey", linewidth=0.8)
    ax.axvline(horizon_days, color=_COLOURS[3], linewidth=1.0, label=f"horizon {horizon_days:g} d at {coverage:.0%}")
    ax.set_xlabel("transaction age (days)")
    ax.set_ylabel("share of chargebacks reported")
    ax.set_ylim(0, 1.02)
    ax.set_title("Label maturation")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(figure)


def cost_curve_png(
    curve: pd.DataFrame,
    threshold: float,
    approve_all_cost: float | None = None,
    test_curve: pd.DataFrame | None = None,
) -> bytes:
    """Total cost against the alert threshold, with the chosen threshold marked.

    Args:
        curve: Columns ``threshold`` and ``cost`` (``ThresholdChoice.curve``) of the window the
            threshold was chosen on (validation); infinite thresholds (alert nothing) are left out.
        threshold: The chosen threshold.
        approve_all_cost: Drawn as a horizontal reference when given.
        test_curve: The same curve on the test window, drawn beside it when given.
    """
    figure = _figure()
    ax = figure.add_subplot()
    for frame, colour, label in ((curve, _COLOURS[0], "validation"), (test_curve, _COLOURS[1], "test")):
        if frame is None:
            continue
        points = frame[np.isfinite(frame["threshold"].to_numpy(dtype=float))].sort_values("threshold")
        name = "total cost" if test_curve is None else f"total cost, {label}"
        ax.plot(points["threshold"], points["cost"], color=colour, label=name)
    if approve_all_cost is not None:
        ax.axhline(approve_all_cost, color="grey", linestyle=":", label="approve all")
    ax.axvline(threshold, color=_COLOURS[3], linewidth=1.0, label=f"chosen threshold {threshold:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("alert threshold on the score (log scale)")
    ax.set_ylabel("cost" if test_curve is not None else "cost on validation")
    ax.set_title("Cost vs threshold")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(figure)


def reliability_png(
    bins: Sequence[dict],
    title: str = "Calibration on the test window",
    predicted_label: str = "mean score in the bin (predicted fraud rate)",
    level: float = 0.9,
) -> bytes:
    """A reliability diagram: observed fraud rate against mean score per score bin, with the diagonal.

    Args:
        bins: Rows with ``n_transactions``, ``mean_score``, ``observed_rate``, ``observed_rate_low`` and
            ``observed_rate_high`` (:func:`fraud_pipeline.evaluation.metrics.reliability_bins`); log
            axes, so a zero rate is drawn at the axis floor.
        title: The plot's title (which scores, on which rows).
        predicted_label: The x axis: what ``mean_score`` is.
        level: Coverage of the observed rate's interval, for the legend.
    """
    rows = [r for r in bins if r["n_transactions"] > 0]
    figure = _figure()
    ax = figure.add_subplot()
    predicted = np.array([r["mean_score"] for r in rows], dtype=float)
    observed = np.array([r["observed_rate"] for r in rows], dtype=float)
    low = np.array([r["observed_rate_low"] for r in rows], dtype=float)
    high = np.array([r["observed_rate_high"] for r in rows], dtype=float)
    positive = np.concatenate([predicted[predicted > 0], observed[observed > 0], high[high > 0]])
    floor = float(positive.min()) / 2 if len(positive) else 1e-4
    shown = np.maximum(observed, floor)
    ax.errorbar(
        predicted,
        shown,
        yerr=[shown - np.maximum(low, floor), np.maximum(high, floor) - shown],
        fmt="o",
        color=_COLOURS[0],
        ecolor="grey",
        capsize=2,
        label=f"observed ({level:.0%} interval)",
    )
    edge = [floor, max(1.0, float(positive.max()) if len(positive) else 1.0)]
    ax.plot(edge, edge, color=_COLOURS[3], linewidth=0.8, linestyle="--", label="perfectly calibrated")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(predicted_label)
    ax.set_ylabel("observed fraud rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(figure)


def importance_png(rows: Sequence[dict], top: int = 15) -> bytes:
    """Two panels of horizontal bars per feature: share of LightGBM gain and mean |contribution|.

    Args:
        rows: Rows with ``feature``, ``gain_share`` and ``mean_abs_contribution``, in the order to draw.
        top: Most features drawn.
    """
    shown = list(rows)[:top]
    figure = _figure((FIGURE_SIZE[0] + 1.6, 1.2 + 0.25 * max(len(shown), 1)))
    gain_ax, contribution_ax = figure.subplots(1, 2, sharey=True)
    y = np.arange(len(shown))
    gain_ax.barh(y, [float(r["gain_share"]) for r in shown], color=_COLOURS[0])
    contribution_ax.barh(y, [float(r["mean_abs_contribution"]) for r in shown], color=_COLOURS[2])
    gain_ax.set_yticks(y, [str(r["feature"]) for r in shown], fontsize=8)
    gain_ax.invert_yaxis()
    gain_ax.set_xlabel("share of gain")
    contribution_ax.set_xlabel("mean |contribution| (log-odds)")
    gain_ax.set_title("LightGBM gain", fontsize=10)
    contribution_ax.set_title("pred_contrib on the test window", fontsize=10)
    for ax in (gain_ax, contribution_ax):
        ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def folds_png(
    folds: Sequence[dict], candidate: dict, metrics: Sequence[str] = ("savings_vs_approve_all_pct", "average_precision")
) -> bytes:
    """Each backtest fold's metrics by its test window, the candidate's own value as a dashed line.

    Args:
        folds: Backtest fold rows (``test_start`` and the metrics).
        candidate: The candidate's values of the same metrics.
        metrics: One panel per metric.
    """
    figure = _figure((FIGURE_SIZE[0], 1.0 + 1.8 * len(metrics)))
    axes = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    ordered = sorted(folds, key=lambda f: str(f["test_start"]))
    x = np.arange(len(ordered))
    for ax, metric in zip(axes, metrics):
        ax.plot(x, [float(f[metric]) for f in ordered], "o-", color=_COLOURS[0], label="backtest folds")
        value = candidate.get(metric)
        if value is not None and value == value:
            ax.axhline(float(value), color=_COLOURS[3], linestyle="--", linewidth=1.0, label="candidate")
        ax.set_xticks(x, [str(f["test_start"]) for f in ordered], fontsize=8)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_title("Backtest folds by test window start")
    axes[0].legend(loc="best", fontsize=7)
    return _png(figure)


def precision_recall_png(is_fraud: Sequence[bool], scores: Sequence[float], threshold: float | None = None) -> bytes:
    """The precision-recall curve of scores against labels, with the operating point marked.

    Args:
        is_fraud: Labels.
        scores: Scores, higher meaning more likely fraud.
        threshold: The alert threshold; its precision and recall are marked when given.
    """
    labels = np.asarray(is_fraud, dtype=bool)
    values = np.asarray(scores, dtype=float)
    order = np.argsort(-values, kind="stable")
    ranked, ranked_labels = values[order], labels[order]
    tp = np.cumsum(ranked_labels)
    n = np.arange(1, len(ranked) + 1)
    # one point per distinct score: the last row of each group of ties
    last = np.concatenate([ranked[:-1] > ranked[1:], [True]]) if len(ranked) else np.array([], dtype=bool)
    n_frauds = max(int(labels.sum()), 1)
    recall, precision = tp[last] / n_frauds, tp[last] / n[last]
    figure = _figure()
    ax = figure.add_subplot()
    ax.step(
        np.concatenate([[0.0], recall]),
        np.concatenate([[precision[0] if len(precision) else 1.0], precision]),
        where="post",
        color=_COLOURS[0],
        label="model",
    )
    ax.axhline(labels.mean() if len(labels) else 0.0, color="grey", linestyle=":", label="fraud rate")
    if threshold is not None and len(values):
        alert = values >= threshold
        tp_at = int((alert & labels).sum())
        ax.plot(
            [tp_at / n_frauds],
            [tp_at / max(int(alert.sum()), 1)],
            "o",
            color=_COLOURS[3],
            label=f"threshold {threshold:.3f}",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall on the test window")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(figure)


def cohort_bars_png(
    cohorts: Sequence[dict], metrics: Sequence[str] = ("recall", "precision", "average_precision")
) -> bytes:
    """Grouped bars of per-cohort metrics, one panel per cohort (account age, channel, region ...).

    Args:
        cohorts: Rows with ``cohort``, ``value`` and the metric columns; NaN or None leaves a gap.
        metrics: The metric columns to draw.
    """
    frame = pd.DataFrame(list(cohorts))
    names = list(dict.fromkeys(frame["cohort"])) if len(frame) else []
    figure = _figure((FIGURE_SIZE[0] + 1.6, 1.0 + 2.0 * max(len(names), 1)))
    axes = figure.subplots(max(len(names), 1), 1, squeeze=False)[:, 0]
    width = 0.8 / len(metrics)
    for ax, name in zip(axes, names):
        rows = frame[frame["cohort"] == name]
        x = np.arange(len(rows))
        for i, metric in enumerate(metrics):
            values = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float)
            ax.bar(
                x + (i - (len(metrics) - 1) / 2) * width, values, width, color=_COLOURS[i % len(_COLOURS)], label=metric
            )
        ax.set_xticks(x, [str(v) for v in rows["value"]], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(str(name), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("Per-cohort metrics on the test window")
    if names:
        axes[0].legend(loc="upper right", fontsize=7, ncols=len(metrics))
    return _png(figure)


def drift_bars_png(features: Sequence[dict], value: str = "psi", top: int = 15) -> bytes:
    """Horizontal bars of a drift statistic per feature, largest first.

    Args:
        features: Rows with ``feature`` and the statistic.
        value: The statistic's key (``psi`` by default).
        top: Most features drawn.
    """
    rows = [
        r for r in features if r.get(value) is not None and not (isinstance(r[value], float) and math.isnan(r[value]))
    ]
    rows = sorted(rows, key=lambda r: (-float(r[value]), str(r["feature"])))[:top]
    figure = _figure((FIGURE_SIZE[0], 1.2 + 0.25 * max(len(rows), 1)))
    ax = figure.add_subplot()
    ax.barh(np.arange(len(rows)), [float(r[value]) for r in rows], color=_COLOURS[0])
    ax.set_yticks(np.arange(len(rows)), [str(r["feature"]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(value)
    ax.set_title(f"Feature drift ({value}), reference vs recent")
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)
