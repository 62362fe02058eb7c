"""Turning the champion's scores into probabilities of an eventual chargeback, fitted on its validation window.

The estimate of performance before the labels mature reads a score as a probability, so the score
must be calibrated on rows whose labels are mature. The champion's validation window is the one
set it chose its threshold on and never trained on.

The default is Platt scaling on the log-odds of the score, ``p = sigmoid(a * logit(s) + b)``: two
parameters, so it is stable on a validation window with a few dozen frauds (a small world, a small
cohort), smooth, and never exactly 0. Isotonic regression is offered for comparison: it makes no
shape assumption, but on few frauds it fits steps and gives whole low-score blocks a probability of
exactly 0, which is where the frauds a model misses live, so it then predicts that none are missed.
``docs/estimation.md`` measures both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression

#: Scores are clipped this far inside (0, 1) before their log-odds are taken (numerical guard only).
SCORE_EPSILON = 1e-9
#: Calibration methods by name.
METHODS = ("platt", "isotonic")


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=float), SCORE_EPSILON, 1.0 - SCORE_EPSILON)
    return np.log(clipped / (1.0 - clipped))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_platt(scores: np.ndarray, is_fraud: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Platt's two parameters (a, b) of ``sigmoid(a * logit(score) + b)``, by Newton's method with backtracking.

    Platt's smoothed targets ((n+ + 1) / (n+ + 2) for frauds, 1 / (n- + 2) for genuine rows) keep
    the fit finite when the classes separate.

    Args:
        scores: Raw model scores in [0, 1].
        is_fraud: Labels of the same rows.
        weights: Optional row weights (a bootstrap resample's counts).

    Returns:
        ``(a, b)``; ``(1, 0)``, the identity, when there is no fraud or no genuine row.
    """
    z = _logit(scores)
    y = np.asarray(is_fraud, dtype=bool)
    w = np.ones(len(z)) if weights is None else np.asarray(weights, dtype=float)
    n_pos, n_neg = float(w[y].sum()), float(w[~y].sum())
    if n_pos == 0 or n_neg == 0:
        return 1.0, 0.0
    target = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    # standardised log-odds keep the 2x2 system well conditioned when most scores tie
    centre = float(np.average(z, weights=w))
    scale = float(np.sqrt(np.average((z - centre) ** 2, weights=w))) or 1.0
    x = (z - centre) / scale

    def loss(theta: np.ndarray) -> float:
        t = theta[0] * x + theta[1]
        return float(np.dot(w, np.logaddexp(0.0, t) - target * t))

    theta = np.array([1.0, float(np.log(n_pos / n_neg))])
    current = loss(theta)
    for _ in range(100):
        p = _sigmoid(theta[0] * x + theta[1])
        r = w * (p - target)
        h = w * p * (1.0 - p)
        g = np.array([np.dot(r, x), r.sum()])
        hess = np.array([[np.dot(h, x * x), np.dot(h, x)], [np.dot(h, x), h.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, g)
        size = 1.0
        while size > 1e-8 and loss(theta - size * step) > current:
            size /= 2.0  # backtracking: Newton's full step can overshoot on a flat likelihood
        theta = theta - size * step
        current = loss(theta)
        # converged: the Newton decrement is at rounding level, or no step lowers the loss any more
        if float(np.dot(g, step)) < 1e-10 * (1.0 + abs(current)) or size <= 1e-8:
            break
    a, b = theta[0] / scale, theta[1] - theta[0] * centre / scale
    return float(a), float(b)


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw score to the probability of an eventual chargeback.

    Attributes:
        method: ``platt`` or ``isotonic``.
        platt: ``(a, b)`` for Platt scaling.
        knots: For isotonic, the raw-score knots and their probabilities (interpolated, clipped at the ends).
        base_rate: The fraud rate of the rows it was fitted on (the probability of a row without a score).
        n_rows: Rows it was fitted on.
        n_frauds: Frauds among them.
    """

    method: str
    base_rate: float
    n_rows: int
    n_frauds: int
    platt: tuple[float, float] = (1.0, 0.0)
    knots: tuple[tuple[float, ...], tuple[float, ...]] = field(default=((), ()))

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """The calibrated probability of each raw score; NaN scores (rows routed to review) get the base rate."""
        values = np.asarray(scores, dtype=float)
        present = ~np.isnan(values)
        out = np.full(len(values), self.base_rate)
        if self.method == "platt":
            a, b = self.platt
            out[present] = _sigmoid(a * _logit(values[present]) + b)
        else:
            x, y = self.knots
            out[present] = np.interp(values[present], x, y) if len(x) else self.base_rate
        return out

    def as_dict(self) -> dict:
        """Plain values for metadata."""
        return {
            "method": self.method,
            "base_rate": self.base_rate,
            "n_rows": self.n_rows,
            "n_frauds": self.n_frauds,
            **({"platt_a": self.platt[0], "platt_b": self.platt[1]} if self.method == "platt" else {}),
            **({"isotonic_knots": len(self.knots[0])} if self.method == "isotonic" else {}),
        }


def fit_calibration(
    scores: np.ndarray, is_fraud: np.ndarray, method: str = "platt", weights: np.ndarray | None = None
) -> Calibration:
    """Fits the calibration map on rows with mature labels (the champion's validation window).

    Args:
        scores: Raw scores of the rows.
        is_fraud: Their mature labels.
        method: ``platt`` (default) or ``isotonic``.
        weights: Optional row weights (a bootstrap resample's counts).

    Raises:
        ValueError: On an unknown method, no rows, or scores and labels of different lengths.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    values = np.asarray(scores, dtype=float)
    labels = np.asarray(is_fraud, dtype=bool)
    if len(values) != len(labels):
        raise ValueError(f"scores has {len(values)} rows but is_fraud has {len(labels)}")
    if len(values) == 0:
        raise ValueError("cannot calibrate on no rows: the champion's validation window is empty")
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    n_frauds = float(w[labels].sum())
    base = n_frauds / float(w.sum()) if w.sum() else math.nan
    common = {"base_rate": base, "n_rows": int(round(w.sum())), "n_frauds": int(round(n_frauds))}
    if method == "platt":
        return Calibration("platt", platt=fit_platt(values, labels, w), **common)
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    keep = w > 0
    model.fit(values[keep], labels[keep].astype(float), sample_weight=w[keep])
    knots = (tuple(float(v) for v in model.X_thresholds_), tuple(float(v) for v in model.y_thresholds_))
    return Calibration("isotonic", knots=knots, **common)


def reliability_table(probability: np.ndarray, is_fraud: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Predicted against observed fraud rate in bins that each hold about the same expected number of frauds.

    With fraud rates well under 1%, bins of equal row counts put every fraud in the top bin; bins of
    equal predicted frauds give every bin's observed rate a similar footing.

    Args:
        probability: Calibrated probabilities of the rows.
        is_fraud: Their labels.
        n_bins: Bins wanted (fewer when probabilities tie).

    Returns:
        One row per bin in increasing probability: p_low, p_high (the bin's range), n_rows,
        expected_frauds (sum of probabilities), observed_frauds, mean_predicted and observed_rate.
    """
    p = np.asarray(probability, dtype=float)
    y = np.asarray(is_fraud, dtype=bool)
    if len(p) == 0:
        return []
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    cumulative = np.cumsum(p_sorted)
    total = cumulative[-1]
    if total <= 0:
        edges = np.array([0, len(p)])
    else:
        cuts = np.searchsorted(cumulative, total * np.arange(1, n_bins) / n_bins, side="left")
        edges = np.unique(np.concatenate([[0], cuts, [len(p)]]))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        part_p, part_y = p_sorted[lo:hi], y_sorted[lo:hi]
        rows.append(
            {
                "p_low": float(part_p[0]),
                "p_high": float(part_p[-1]),
                "n_rows": int(hi - lo),
                "expected_frauds": float(part_p.sum()),
                "observed_frauds": int(part_y.sum()),
                "mean_predicted": float(part_p.mean()),
                "observed_rate": float(part_y.mean()),
            }
        )
    return rows
