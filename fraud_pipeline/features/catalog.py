"""The feature catalogue: the default spec's features, as constants for callers that use the defaults.

Which features exist, over which keys and windows, and how their absence shows is declared in a
feature spec (:mod:`fraud_pipeline.features.spec`; the built-in one is ``default_spec.yaml``). This
module keeps the names older callers import, all read off :func:`~fraud_pipeline.features.spec.default_spec`;
every code path that must honour a user's spec takes a ``spec`` argument instead.

The feature row of a transaction at time t uses only records whose knowledge time is strictly before
t: earlier transactions (known at their ``event_time``) and chargebacks (known at their
``reported_at``, never at the time of the transaction they dispute). Every window is the half-open
interval [t - w, t).

Every window is bounded and none is longer than :data:`HISTORY_DAYS`: a feature over "all history"
depends on where the data happens to begin, so it drifts for no reason in the population. Training
starts :data:`HISTORY_DAYS` after the first transaction, where every window is full.

Absence is explicit. A count over no history is a true 0 and is the *availability partner* of the
aggregates over the same key and window; every other aggregate over no history (sum, mean, ratio,
rate, time since) is NULL, never 0 and never an average.
"""

from __future__ import annotations

from fraud_pipeline.features.spec import Feature, FeatureSpec, default_spec

__all__ = [
    "CATEGORICAL_FEATURES",
    "CHARGEBACK_WINDOWS",
    "FAMILIARITY_WINDOW",
    "MERCHANT_WINDOW",
    "FALLBACK_FEATURES",
    "FEATURES",
    "FEATURE_NAMES",
    "HISTORY_DAYS",
    "HISTORY_FEATURES",
    "Feature",
    "FeatureSpec",
    "WINDOWS",
    "default_spec",
]

_DEFAULT = default_spec()

#: The default spec's user windows: name -> length in microseconds.
WINDOWS: dict[str, int] = {f.window: f.window_us for f in _DEFAULT.aggregates if f.key == "user" and f.agg == "count"}
#: The default spec's user chargeback windows, merchant window and user-at-merchant window (legacy names).
CHARGEBACK_WINDOWS: dict[str, int] = {
    f.window: f.window_us for f in _DEFAULT.aggregates if f.key == "user" and f.agg == "label_count"
}
MERCHANT_WINDOW = "30d"
FAMILIARITY_WINDOW = "30d"
FEATURES: tuple[Feature, ...] = _DEFAULT.features
FEATURE_NAMES: tuple[str, ...] = _DEFAULT.names
CATEGORICAL_FEATURES: tuple[str, ...] = _DEFAULT.categorical
HISTORY_FEATURES: tuple[str, ...] = _DEFAULT.history
#: What the model falls back to when the history service is down: every feature that is not history.
FALLBACK_FEATURES: tuple[str, ...] = _DEFAULT.fallback
#: No feature of the default spec looks further back than this many days (the training warm-up).
HISTORY_DAYS: int = _DEFAULT.history_days
