"""The feature catalogue: which point-in-time features exist, over which windows, and how absence shows.

The feature row of a transaction at time t uses only records whose knowledge time is strictly before
t: earlier transactions (known at their ``event_time``) and chargebacks (known at their
``reported_at``, never at the time of the transaction they dispute). Every window is the half-open
interval [t - w, t).

Every window is bounded and none is longer than :data:`HISTORY_DAYS`: a feature over "all history"
depends on where the data happens to begin (a warehouse loaded six months ago and one loaded two
years ago give different values, and the values grow with the age of the data, not of the user),
so it drifts for no reason in the population. Training starts :data:`HISTORY_DAYS` after the first
transaction, where every window is full.

Absence is explicit. A count over no history is a true 0 and is the *availability partner* of the
aggregates over the same window; every other aggregate over no history (sum, mean, ratio, rate, time
since) is NULL, never 0 and never an average.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Window name -> length in microseconds.
WINDOWS: dict[str, int] = {
    "1h": 3_600 * 10**6,
    "1d": 86_400 * 10**6,
    "7d": 7 * 86_400 * 10**6,
    "30d": 30 * 86_400 * 10**6,
}
CHARGEBACK_WINDOWS: dict[str, int] = {"30d": 30 * 86_400 * 10**6}
MERCHANT_WINDOW = "30d"
#: Window of the user's earlier transactions at the same merchant.
FAMILIARITY_WINDOW = "30d"
#: No feature looks further back than this many days (the training warm-up).
HISTORY_DAYS = max([*WINDOWS.values(), *CHARGEBACK_WINDOWS.values()]) // (86_400 * 10**6)


@dataclass(frozen=True)
class Feature:
    """One model feature and how its absence is expressed.

    Attributes:
        name: Column name in ``transaction_features``.
        kind: ``count`` (never NULL, 0 means no history), ``aggregate`` (NULL exactly when its
            partner count is 0), or ``attribute`` (a property of the transaction itself).
        description: One line for the UI and the model card.
        partner: For aggregates, the count that explains each NULL.
        categorical: Whether the model treats it as categorical.
        history: Whether it comes from a history service (unavailable during a feature outage).
    """

    name: str
    kind: str
    description: str
    partner: str | None = None
    categorical: bool = False
    history: bool = True


def _feature_catalog() -> tuple[Feature, ...]:
    features: list[Feature] = [
        Feature("amount", "attribute", "Transaction amount.", history=False),
        Feature("channel", "attribute", "card_present or ecommerce.", categorical=True, history=False),
        Feature("mcc", "attribute", "Merchant category code.", categorical=True, history=False),
        Feature("country", "attribute", "Merchant country / region.", categorical=True, history=False),
        Feature("hour_of_day", "attribute", "UTC hour of the transaction.", history=False),
        Feature(
            "account_age_days",
            "aggregate",
            "Days since the account was created (NULL if the user is unknown).",
            partner=None,
            history=False,
        ),
    ]
    for window in WINDOWS:
        partner = f"n_prior_tx_{window}"
        features += [
            Feature(partner, "count", f"User's transactions in the {window} before t."),
            Feature(f"sum_amount_{window}", "aggregate", f"User's spend in the {window} before t.", partner=partner),
            Feature(
                f"mean_amount_{window}", "aggregate", f"User's mean amount in the {window} before t.", partner=partner
            ),
        ]
    features += [
        Feature(
            "seconds_since_prev_tx",
            "aggregate",
            "Seconds since the user's previous transaction in the 30d before t.",
            partner="n_prior_tx_30d",
        ),
        Feature(
            "amount_to_mean_30d", "aggregate", "Amount divided by the user's 30d mean amount.", partner="n_prior_tx_30d"
        ),
    ]
    for window in CHARGEBACK_WINDOWS:
        features.append(
            Feature(
                f"n_prior_chargebacks_{window}",
                "count",
                f"Chargebacks on the user's transactions reported in the {window} before t.",
            )
        )
    features += [
        Feature("n_merchant_tx_30d", "count", "Merchant's transactions in the 30d before t (rate denominator)."),
        Feature("n_merchant_chargebacks_30d", "count", "Chargebacks on the merchant reported in the 30d before t."),
        Feature(
            "merchant_chargeback_rate_30d",
            "aggregate",
            "Merchant chargebacks reported / merchant transactions, both over the 30d before t.",
            partner="n_merchant_tx_30d",
        ),
        Feature(
            f"n_prior_user_merchant_tx_{FAMILIARITY_WINDOW}",
            "count",
            f"User's transactions at this merchant in the {FAMILIARITY_WINDOW} before t.",
        ),
    ]
    return tuple(features)


FEATURES: tuple[Feature, ...] = _feature_catalog()
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.categorical)
HISTORY_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.history)
#: What the model falls back to when the history service is down: every feature that is not history.
FALLBACK_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if not f.history)
