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

#: Transactions and chargebacks are compared in whole days for the delay profile.
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class DelayProfile:
    """The estimated chargeback reporting-delay distribution and the maturity horizon derived from it.

    Attributes:
        horizon_days: Smallest whole number of days after which at least ``coverage`` of the
            chargebacks that will be reported (within the observable span) have been reported.
        coverage: The share of chargebacks the horizon must cover.
        curve: One row per whole number of days of age ``a`` (0 .. span + 1) with ``completeness`` =
            estimated P(delay < a days), the share of eventual chargebacks already reported for a
            transaction that old, beside the naive (truncation-biased) empirical share.
        n_chargebacks: Number of chargebacks the estimate is based on.
        max_observable_days: Age of the oldest transaction; delays longer than this cannot be seen,
            so the estimate is conditional on delay <= this span.
    """

    horizon_days: int
    coverage: float
    curve: pd.DataFrame
    n_chargebacks: int
    max_observable_days: int

    def completeness_at(self, age_days: np.ndarray) -> np.ndarray:
        """Estimated share of eventual chargebacks already reported for transactions of a given age."""
        completeness = self.curve["completeness"].to_numpy()
        index = np.floor(np.asarray(age_days, dtype=float)).astype(np.int64)
        if (index < 0).any():
            raise ValueError("a transaction is younger than zero days: it lies after as_of")
        return completeness[np.minimum(index, len(completeness) - 1)]


def estimate_delay_profile(delay_days: np.ndarray, truncation_days: np.ndarray, coverage: float = 0.95) -> DelayProfile:
    """Estimates the reporting-delay CDF from right-truncated observations and derives the horizon.

    Args:
        delay_days: For each reported chargeback, reported_at minus the transaction's event_time, in days.
        truncation_days: For the same chargebacks, as_of minus the transaction's event_time, in days
            (the longest delay that could have been observed for that transaction).
        coverage: Share of chargebacks the maturity horizon must cover, in (0, 1].

    Returns:
        The delay profile with the maturity horizon in whole days.

    Raises:
        ValueError: If there are no chargebacks, the inputs disagree in length, a delay is negative or
            exceeds its truncation time, or coverage is outside (0, 1].
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    delays = np.floor(np.asarray(delay_days, dtype=float)).astype(np.int64)
    truncation = np.floor(np.asarray(truncation_days, dtype=float)).astype(np.int64)
    if delays.shape != truncation.shape:
        raise ValueError("delay_days and truncation_days must have the same length")
    if delays.size == 0:
        raise ValueError("no chargebacks were reported before as_of: the reporting delay cannot be measured")
    if (delays < 0).any():
        raise ValueError("a chargeback is reported before its transaction; run the chargeback contract first")
    if (delays > truncation).any():
        raise ValueError("a chargeback is reported after as_of; filter chargebacks by as_of first")

    max_day = int(truncation.max())
    # n_at[d]: chargebacks with delay d; at_risk[d]: chargebacks with delay <= d <= truncation.
    n_at = np.bincount(delays, minlength=max_day + 1).astype(float)
    delay_le = np.cumsum(n_at)
    trunc_lt = np.cumsum(np.bincount(truncation, minlength=max_day + 1))
    trunc_lt = np.concatenate([[0], trunc_lt[:-1]]).astype(float)
    at_risk = delay_le - trunc_lt
    reverse_hazard = np.divide(n_at, at_risk, out=np.zeros_like(n_at), where=at_risk > 0)
    # F(d) = prod_{s > d} (1 - h(s)), computed as a reverse cumulative product.
    survival_terms = 1.0 - reverse_hazard
    cdf = np.concatenate([np.cumprod(survival_terms[::-1])[::-1][1:], [1.0]])
    naive = delay_le / delays.size

    # P(delay < a) for age a = 0 .. max_day + 1: nothing is reported at age 0.
    completeness = np.concatenate([[0.0], cdf])
    horizon_days = int(np.nonzero(completeness >= coverage - 1e-12)[0][0])
    curve = pd.DataFrame(
        {
            "age_days": np.arange(max_day + 2),
            "completeness": completeness,
            "naive_share": np.concatenate([[0.0], naive]),
            "n_reported": np.concatenate([[0.0], n_at]).astype(np.int64),
        }
    )
    return DelayProfile(
        horizon_days=horizon_days,
        coverage=coverage,
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


def transaction_labels_sql(as_of: datetime, horizon_days: int) -> tuple[str, list]:
    """SQL building the as-of label of every transaction.

    Columns: transaction_id, event_time, is_fraud (a chargeback was reported before as_of),
    label_known_at (that chargeback's reported_at, NULL when genuine), age_days at as_of,
    is_mature (age >= horizon), and expected_completeness (filled in from the delay profile by the
    caller through the ``label_completeness`` table).
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
            t.event_time <= CAST(? AS TIMESTAMP) - to_days(CAST(? AS INTEGER)) AS is_mature,
            coalesce(lc.completeness, 1.0) AS expected_completeness
        FROM transactions AS t
        LEFT JOIN first_report AS r USING (transaction_id)
        LEFT JOIN label_completeness AS lc
            ON lc.age_days = CAST(floor((epoch_us(CAST(? AS TIMESTAMP)) - epoch_us(t.event_time)) / 1e6 / 86400.0) AS INTEGER)
        WHERE t.event_time < CAST(? AS TIMESTAMP)
        ORDER BY t.transaction_id
    """
    return sql, [as_of, as_of, as_of, horizon_days, as_of, as_of]


def horizon_interval(
    delay_days: np.ndarray, truncation_days: np.ndarray, coverage: float, n_resamples: int = 200, seed: int = 0
) -> tuple[int, int]:
    """A bootstrap 90% interval of the maturity horizon: how much the measured horizon can be trusted.

    The far tail of the delay distribution rests on few old chargebacks, so on small data a handful
    of late reports can move the horizon by weeks; the interval makes that visible.
    """
    delays = np.asarray(delay_days, dtype=float)
    truncation = np.asarray(truncation_days, dtype=float)
    rng = np.random.default_rng(seed)
    horizons = []
    for _ in range(n_resamples):
        pick = rng.integers(0, delays.size, delays.size)
        horizons.append(estimate_delay_profile(delays[pick], truncation[pick], coverage).horizon_days)
    low, high = np.quantile(horizons, [0.05, 0.95])
    return int(np.floor(low)), int(np.ceil(high))
