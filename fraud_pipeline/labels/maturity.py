"""Label maturation: how long chargebacks take to arrive, and which labels can be trusted at as_of.

A transaction's label is ``fraud`` once a chargeback for it has been *reported*. At a given as_of,
recent transactions look genuine only because their chargebacks have not arrived yet. The reporting
delay is measured from the data, and a label is *mature* once enough time has passed that the
estimated share of chargebacks already reported reaches the configured coverage.

The delay sample is right-truncated: at as_of we only see chargebacks whose delay is shorter than the
transaction's age, so the naive empirical distribution of observed delays is biased towards short
delays. :func:`estimate_delay_profile` corrects this with the Lynden-Bell (reverse-time hazard)
estimator for right-truncated data, the standard tool for reporting-delay "nowcasting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

US_PER_DAY = 86_400_000_000
#: The units a horizon is stated in, as fractions of a day (see :func:`horizon_unit`).
UNIT_DAYS = {"days": 1.0, "hours": 1.0 / 24.0}


def horizon_unit(delay_days: np.ndarray) -> str:
    """The horizon's unit, chosen from the data: ``days`` when every delay is a whole number of days, else ``hours``.

    Sources that date events and reports by day (or report at the same time of day) give whole-day
    delays; the covering delay is then a whole number of days and the horizon is exactly it.
    Timestamped data give delays of any length; the horizon is then the covering delay rounded *up*
    to the next whole hour: at most an hour later than exact, never covering less than the share.
    """
    us = np.rint(np.asarray(delay_days, dtype=float) * US_PER_DAY).astype(np.int64)
    return "days" if bool((us % US_PER_DAY == 0).all()) else "hours"


def in_unit(days: float, unit: str) -> float:
    """``days`` rounded up to a whole number of ``unit`` (unchanged when it already is one)."""
    per_unit = UNIT_DAYS[unit]
    # the rint drops float noise below a millionth of the unit, so 7.000000000001 days stays 7 days
    return float(np.ceil(np.rint(days / per_unit * 1e6) / 1e6) * per_unit)


def covering_delay(values: np.ndarray, cdf: np.ndarray, share: float) -> float:
    """The smallest of ``values`` whose CDF reaches ``share`` (a quantile of a step CDF is one of its steps)."""
    return float(values[np.flatnonzero(cdf >= share - 1e-12)[0]])


def naive_delay_quantile(delay_days: np.ndarray, share: float, unit: str) -> float:
    """The naive (truncation-biased) counterpart of the horizon: the smallest observed delay whose share reaches ``share``."""
    values, counts = np.unique(np.asarray(delay_days, dtype=float), return_counts=True)
    return in_unit(covering_delay(values, np.cumsum(counts) / counts.sum(), share), unit)


@dataclass(frozen=True)
class DelayProfile:
    """The estimated chargeback reporting-delay distribution and the maturity horizon derived from it.

    Attributes:
        horizon_days: The smallest delay d with estimated P(delay <= d) >= ``coverage``, in days: an
            observed delay, exact when ``horizon_unit`` is ``days``, rounded up to the next whole hour
            when it is ``hours``. A label is mature when its transaction is strictly older than this,
            so a chargeback arriving exactly at the horizon was reported before as_of.
        horizon_unit: ``days`` or ``hours`` (:func:`horizon_unit`).
        coverage: The share of chargebacks the horizon must cover.
        steps: The estimated CDF at each distinct observed delay: ``delay_days`` and ``completeness``
            = P(delay <= delay_days). A transaction of age a is ``completeness`` of the row with the
            largest delay_days < a complete (0 when there is none): P(delay < a).
        curve: For plots and tables, one row per whole day of age ``a`` (0 .. span + 1):
            ``completeness`` = P(delay < a), the naive (truncation-biased) share of observed delays
            below a, and ``n_reported``, the observed delays in [a - 1, a).
        n_chargebacks: Number of chargebacks the estimate is based on.
        max_observable_days: Age of the oldest transaction, in whole days (floored); delays longer
            than that cannot be seen, so the estimate is conditional on shorter delays.
    """

    horizon_days: float
    horizon_unit: str
    coverage: float
    steps: pd.DataFrame
    curve: pd.DataFrame
    n_chargebacks: int
    max_observable_days: int

    def completeness_at(self, age_days: np.ndarray) -> np.ndarray:
        """Estimated share of eventual chargebacks reported strictly before as_of for transactions of a given age."""
        age = np.asarray(age_days, dtype=float)
        if (age < 0).any():
            raise ValueError("a transaction is younger than zero days: it lies after as_of")
        cdf = np.concatenate([[0.0], self.steps["completeness"].to_numpy()])
        return cdf[np.searchsorted(self.steps["delay_days"].to_numpy(), age, side="left")]

    def delay_quantile(self, share: float) -> float:
        """The smallest delay covering ``share`` of the chargebacks, in days, in the horizon's unit."""
        steps = self.steps
        return in_unit(
            covering_delay(steps["delay_days"].to_numpy(), steps["completeness"].to_numpy(), share), self.horizon_unit
        )


def _distinct_delays(delays: np.ndarray, truncation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct delays x_j, each chargeback's j, and for each the first j with x_j >= its truncation time."""
    values, delay_index = np.unique(delays, return_inverse=True)
    return values, delay_index, np.searchsorted(values, truncation, side="left")


def _lynden_bell(
    delay_index: np.ndarray, truncation_index: np.ndarray, n_values: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """F(x_j) = P(delay <= x_j) at every distinct delay, from right-truncated data, without binning.

    A chargeback is seen only when its delay is shorter than its truncation time (reported strictly
    before as_of). The reverse hazard at x_j is n_j / R_j, with R_j = #{i : delay_i <= x_j < truncation_i}
    the chargebacks that would have been seen had their delay been x_j; F(x_j) = prod_{l > j} (1 - n_l / R_l).
    ``weights`` counts each chargeback that many times (a bootstrap resample).
    """
    n_at = np.bincount(delay_index, weights=weights, minlength=n_values).astype(float)
    delay_le = np.cumsum(n_at)
    # truncation_i <= x_j exactly when j >= truncation_index_i
    truncation_le = np.cumsum(np.bincount(truncation_index, weights=weights, minlength=n_values + 1))[:n_values]
    at_risk = delay_le - truncation_le
    reverse_hazard = np.divide(n_at, at_risk, out=np.zeros(n_values), where=at_risk > 0)
    return np.concatenate([np.cumprod((1.0 - reverse_hazard)[::-1])[::-1][1:], [1.0]])


def _observations(delay_days: np.ndarray, truncation_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The delays and truncation times as floats, refused when they cannot be right-truncated observations."""
    delays = np.asarray(delay_days, dtype=float)
    truncation = np.asarray(truncation_days, dtype=float)
    if delays.shape != truncation.shape:
        raise ValueError("delay_days and truncation_days must have the same length")
    if delays.size == 0:
        raise ValueError("no chargebacks were reported before as_of: the reporting delay cannot be measured")
    if (delays < 0).any():
        raise ValueError("a chargeback is reported before its transaction; run the chargeback contract first")
    if (delays >= truncation).any():
        raise ValueError("a chargeback is reported at or after as_of; filter chargebacks by as_of first")
    return delays, truncation


def estimate_delay_profile(delay_days: np.ndarray, truncation_days: np.ndarray, coverage: float = 0.95) -> DelayProfile:
    """Estimates the reporting-delay CDF from right-truncated observations and derives the horizon.

    Args:
        delay_days: For each reported chargeback, reported_at minus the transaction's event_time, in days.
        truncation_days: For the same chargebacks, as_of minus the transaction's event_time, in days
            (a chargeback is seen only when its delay is shorter).
        coverage: Share of chargebacks the maturity horizon must cover, in (0, 1].

    Returns:
        The delay profile with the maturity horizon in days, whole days or hours (:func:`horizon_unit`).

    Raises:
        ValueError: If there are no chargebacks, the inputs disagree in length, a delay is negative or
            not shorter than its truncation time, or coverage is outside (0, 1].
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    delays, truncation = _observations(delay_days, truncation_days)
    values, delay_index, truncation_index = _distinct_delays(delays, truncation)
    cdf = _lynden_bell(delay_index, truncation_index, len(values))
    unit = horizon_unit(delays)

    max_day = int(np.floor(truncation.max()))
    ages = np.arange(max_day + 2)
    below = np.searchsorted(values, ages, side="left")  # distinct delays < each age
    reported_below = np.searchsorted(np.sort(delays), ages, side="left")  # observed delays < each age
    curve = pd.DataFrame(
        {
            "age_days": ages,
            "completeness": np.concatenate([[0.0], cdf])[below],
            "naive_share": reported_below / delays.size,
            "n_reported": np.diff(reported_below, prepend=0).astype(np.int64),
        }
    )
    return DelayProfile(
        horizon_days=in_unit(covering_delay(values, cdf, coverage), unit),
        horizon_unit=unit,
        coverage=coverage,
        steps=pd.DataFrame({"delay_days": values, "completeness": cdf}),
        curve=curve,
        n_chargebacks=int(delays.size),
        max_observable_days=max_day,
    )


def delay_observations_sql(as_of: datetime) -> tuple[str, list]:
    """SQL returning (delay_days, truncation_days) for every chargeback known at as_of."""
    sql = """
        SELECT
            (epoch_us(c.reported_at) - epoch_us(t.event_time)) / 1e6 / 86400.0 AS delay_days,
            (epoch_us(CAST(? AS TIMESTAMP)) - epoch_us(t.event_time)) / 1e6 / 86400.0 AS truncation_days
        FROM chargebacks AS c
        JOIN transactions AS t USING (transaction_id)
        WHERE c.reported_at < CAST(? AS TIMESTAMP)
        ORDER BY c.transaction_id
    """
    return sql, [as_of, as_of]


def transaction_labels_sql(as_of: datetime, horizon_days: float) -> tuple[str, list]:
    """SQL building the as-of label of every transaction.

    Columns: transaction_id, event_time, is_fraud (a chargeback was reported before as_of),
    label_known_at (that chargeback's reported_at, NULL when genuine), age_days at as_of,
    is_mature (age > horizon: the transaction is strictly older than the horizon, so a chargeback
    with a delay of exactly the horizon is already known), and expected_completeness = P(delay < age)
    from the delay profile's steps, which the caller stores as ``label_completeness`` (columns
    delay_days, completeness): the step with the largest delay_days below the age, 0 below the first.
    """
    sql = """
        WITH first_report AS (
            SELECT transaction_id, min(reported_at) AS reported_at
            FROM chargebacks
            WHERE reported_at < CAST(? AS TIMESTAMP)
            GROUP BY transaction_id
        )
        SELECT
            t.transaction_id,
            t.event_time,
            r.reported_at IS NOT NULL AS is_fraud,
            r.reported_at AS label_known_at,
            (epoch_us(CAST(? AS TIMESTAMP)) - epoch_us(t.event_time)) / 1e6 / 86400.0 AS age_days,
            t.event_time < CAST(? AS TIMESTAMP) - to_microseconds(CAST(? AS BIGINT)) AS is_mature,
            coalesce(lc.completeness, 0.0) AS expected_completeness
        FROM transactions AS t
        LEFT JOIN first_report AS r USING (transaction_id)
        ASOF LEFT JOIN label_completeness AS lc
            ON (epoch_us(CAST(? AS TIMESTAMP)) - epoch_us(t.event_time)) / 1e6 / 86400.0 > lc.delay_days
        WHERE t.event_time < CAST(? AS TIMESTAMP)
        ORDER BY t.transaction_id
    """
    # the horizon in whole microseconds, the resolution of the timestamps: no rounding to days
    return sql, [as_of, as_of, as_of, round(horizon_days * US_PER_DAY), as_of, as_of]


def horizon_interval(
    delay_days: np.ndarray, truncation_days: np.ndarray, coverage: float, n_resamples: int = 200, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap 90% interval of the maturity horizon: how much the measured horizon can be trusted.

    The far tail of the delay distribution rests on few old chargebacks, so on small data a handful
    of late reports can move the horizon by weeks; the interval makes that visible. Each resample's
    horizon is found by the same rule and in the same unit as the horizon itself, so the bounds are
    the resampled horizons' 5% and 95% order statistics, with no further rounding.
    """
    delays, truncation = _observations(delay_days, truncation_days)
    values, delay_index, truncation_index = _distinct_delays(delays, truncation)
    unit = horizon_unit(delays)
    rng = np.random.default_rng(seed)
    horizons = []
    for _ in range(n_resamples):
        counts = np.bincount(rng.integers(0, delays.size, delays.size), minlength=delays.size).astype(float)
        cdf = _lynden_bell(delay_index, truncation_index, len(values), weights=counts)
        horizons.append(in_unit(covering_delay(values, cdf, coverage), unit))
    return float(np.quantile(horizons, 0.05, method="lower")), float(np.quantile(horizons, 0.95, method="higher"))
