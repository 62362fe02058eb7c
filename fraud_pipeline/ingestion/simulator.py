"""A simulated payments world: users, merchants, transactions, chargebacks and the ground truth.

The world is generated in one vectorised pass from a ``WorldSpec``; the same spec always gives the
same frames. It contains the future (chargebacks reported after ``start + days``): the pipeline is
expected to filter by its own ``as_of``. All timestamps are naive and mean UTC; every region shares
one clock.

Users. About 65% of accounts exist before ``start``, created at a steady rate over the three
years before; the rest sign up during the period at a rate that grows over time. A marketing
campaign from ``campaign_day`` doubles core-region signups and a new region ``R_new`` opens on
``new_region_day`` with its own stream of signups, so the share of traffic from accounts younger
than 30 days rises through the period while nothing else about the traffic changes.

Merchants. Each merchant has a region (``R1``..``R4`` or ``R_new``), a channel (``card_present`` or
``ecommerce``) and a category code (``mcc``, ten 4-digit codes whose mix depends on the channel and
which scale typical amounts, e.g. hotels and electronics cost more than coffee). Popularity is
lognormal. Every user has five favourite merchants in their home region and spends 80% of their
transactions there, 15% elsewhere in the home region and 5% in any core region, so whether a
user has paid a merchant before is a meaningful signal.

Traffic. Transaction times follow an hourly intensity with lunch (12-13h) and evening (18-20h)
peaks, quiet nights and a mild weekly cycle (busier Fridays and Saturdays, quieter Sundays).
Each user's activity rate is lognormal (a few users make many transactions), and amounts are
lognormal around a per-user typical amount times the category's multiplier.

Fraud: ``account_takeover``. A mature account (created at least 60 days before) is taken over at
a time uniform over the day (night included); a burst of 3-10 transactions within a few hours
follows at merchants the user has never favoured, 80% e-commerce, for 3-8 times the user's typical
amount.

Fraud: ``card_testing``. A stolen card is tested with 5-20 tiny payments (0.50-5.00) at one
e-commerce merchant within about 40 minutes, followed by one or two large e-commerce purchases
(median 600). Every transaction of the burst is fraud.

Fraud: ``compromised_merchant``. A few popular core-region merchants are compromised for 14-21
days; fraudulent payments from cards of other users in the region are added there so that about
30% of the merchant's transactions in the window are fraud. Their merchant is familiar to the
merchant's own customers, not to the victims.

Fraud: ``new_account_fraud``. A share of accounts created during the period are fraudsters (2.5%
of ordinary signups, 7% of campaign and ``R_new`` signups). They are generated like genuine users
(same activity, amount and merchant distributions) and 40-60% of their transactions are fraud. 30%
of those frauds are cash-outs: moved to a core-region e-commerce merchant in a resalable category
(electronics, digital goods, department stores) for 2-4 times the account's typical amount, whatever
the category (its usual multiplier is divided out). The rest, and all their genuine transactions, look like anyone's. The
signature is weak on purpose: cash-outs are under 0.1% of traffic, so per-feature histograms stay
flat, and account age and signup cohort remain the main tell; a model can catch part of a young
account's frauds but does much worse on young accounts than on mature ones.

Chargebacks. 87% of frauds get a chargeback; the reporting delay is one day plus a lognormal with
median 13 days and sigma 1.0 (median ~14 days, ~2.5% beyond 90 days), truncated at the 180-day
dispute window. The remaining frauds are never reported. Genuine transactions get a chargeback at a
rate of 0.08% (friendly fraud) with the same delay. The bank cannot tell the two apart: every
chargeback carries the reason ``"fraud"``, and only ``truth`` knows which were genuine. There is at
most one chargeback per transaction.

String columns are plain strings (pandas' ``str`` dtype under pandas 3, ``object`` under pandas 2),
so ``CREATE TABLE t AS SELECT * FROM df`` in DuckDB gives VARCHAR columns. Genuine transactions have
``scenario`` missing (NaN/None, NULL in DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

US_PER_MINUTE = 60_000_000
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR

CORE_REGIONS = ("R1", "R2", "R3", "R4")
NEW_REGION = "R_new"
REGIONS = (*CORE_REGIONS, NEW_REGION)
CHANNELS = ("card_present", "ecommerce")
SCENARIOS = ("account_takeover", "card_testing", "compromised_merchant", "new_account_fraud")
CHARGEBACK_REASON = "fraud"

_CORE_REGION_P = np.array([0.35, 0.28, 0.22, 0.15])
_NEW_REGION_MERCHANT_SHARE = 0.06
_ECOMMERCE_MERCHANT_SHARE = 0.35

# code, card_present weight, ecommerce weight, amount multiplier
_MCC_TABLE = (
    ("5411", 0.25, 0.04, 1.0),  # grocery
    ("5812", 0.20, 0.03, 0.8),  # restaurants
    ("5541", 0.14, 0.00, 1.1),  # fuel
    ("5311", 0.10, 0.08, 1.4),  # department stores
    ("5691", 0.09, 0.15, 1.6),  # clothing
    ("5732", 0.06, 0.15, 3.0),  # electronics
    ("4121", 0.07, 0.10, 0.6),  # taxis and rideshare
    ("7011", 0.04, 0.10, 4.0),  # hotels
    ("5999", 0.05, 0.15, 1.0),  # miscellaneous retail
    ("5817", 0.00, 0.20, 0.4),  # digital goods
)
MCC_CODES = tuple(row[0] for row in _MCC_TABLE)
_MCC_P = np.array([[row[1] for row in _MCC_TABLE], [row[2] for row in _MCC_TABLE]])
_MCC_AMOUNT = np.array([row[3] for row in _MCC_TABLE])

# relative traffic per hour of day (0h..23h): quiet nights, lunch and evening peaks
_HOURLY = np.array(
    [0.15, 0.10, 0.08, 0.08, 0.10, 0.20]
    + [0.40, 0.70, 0.90, 1.00, 1.00, 1.20]
    + [1.60, 1.50, 1.00, 0.95, 1.00, 1.20]
    + [1.50, 1.70, 1.60, 1.20, 0.80, 0.40]
)
# relative traffic per weekday (Monday..Sunday)
_WEEKLY = np.array([0.95, 0.95, 0.97, 1.00, 1.10, 1.12, 0.90])

_FAVOURITE_P = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
_FAVOURITE_SHARE = 0.80
_LOCAL_SHARE = 0.15
_ACTIVITY_SIGMA = 1.0
_TYPICAL_AMOUNT_MEDIAN = 35.0
_TYPICAL_AMOUNT_SIGMA = 0.6
_AMOUNT_SIGMA = 0.7
_MIN_AMOUNT = 0.5

_MATURE_MAX_AGE_DAYS = 3 * 365 - 5
_SIGNUP_GROWTH = 1.0
_CAMPAIGN_LIFT = 2.0
_NEW_REGION_SIGNUPS = 1.2

_ATO_MIN_ACCOUNT_AGE_DAYS = 60
_ATO_BURST = (3, 10)
_ATO_GAP_MINUTES = 20.0
_ATO_AMOUNT_FACTOR = (3.0, 8.0)
_ATO_ECOMMERCE_SHARE = 0.8

_CT_TINY_BURST = (5, 20)
_CT_LARGE_BURST = (1, 2)
_CT_TINY_SPAN_MINUTES = 40.0
_CT_TINY_AMOUNT = (0.5, 5.0)
_CT_LARGE_GAP_MINUTES = 15.0
_CT_LARGE_AMOUNT_MEDIAN = 600.0

# new-account fraud cashes out online in resalable, high-ticket categories
_NAF_CASHOUT_MCC = ("5732", "5817", "5311")  # electronics, digital goods, department stores
_NAF_CASHOUT_AMOUNT_FACTOR = (2.0, 4.0)

_CM_WINDOW_DAYS = (14, 21)
_CM_FRAUD_SHARE = 0.30
_CM_MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a simulated world; equal specs give identical worlds.

    Attributes:
        start: First instant of the simulated period (naive, meaning UTC).
        days: Length of the period in days; transactions fall in ``[start, start + days)``.
        n_transactions: Approximate number of transactions (the result is within a few percent).
        seed: Seed of the random generator.
        n_users: Number of users; ``None`` means ``n_transactions / 25``.
        n_merchants: Number of merchants; ``None`` means ``n_transactions / 250`` clipped to
            ``[50, 20000]``.
        mature_user_share: Share of users created before ``start``.
        campaign_day: Day (from ``start``) on which the signup campaign begins.
        new_region_day: Day on which region ``R_new`` opens.
        account_takeover_rate: Expected account-takeover frauds per transaction.
        card_testing_rate: Expected card-testing frauds per transaction.
        compromised_merchant_rate: Expected compromised-merchant frauds per transaction.
        fraudster_share: Share of ordinary in-period signups that are fraudsters.
        campaign_fraudster_share: Share of campaign and ``R_new`` signups that are fraudsters.
        fraudster_fraud_share: Range of the share of a fraudster's transactions that are fraud.
        fraudster_cashout_share: Share of a fraudster's frauds that are cash-outs (online, in a
            resalable category, for 2-4 times the amount); 0 makes fraudsters look like anyone.
        chargeback_share: Share of frauds that ever get a chargeback.
        friendly_fraud_rate: Share of genuine transactions that get a chargeback.
        delay_median_days: Median chargeback reporting delay in days.
        delay_sigma: Log-scale spread of the reporting delay beyond its one-day minimum.
        max_delay_days: Dispute window; no chargeback is reported later than this.
    """

    start: datetime = datetime(2025, 1, 1)
    days: int = 181
    n_transactions: int = 500_000
    seed: int = 7
    n_users: int | None = None
    n_merchants: int | None = None
    mature_user_share: float = 0.65
    campaign_day: int = 100
    new_region_day: int = 120
    account_takeover_rate: float = 0.0015
    card_testing_rate: float = 0.0015
    compromised_merchant_rate: float = 0.0015
    fraudster_share: float = 0.025
    campaign_fraudster_share: float = 0.07
    fraudster_fraud_share: tuple[float, float] = (0.4, 0.6)
    fraudster_cashout_share: float = 0.3
    chargeback_share: float = 0.87
    friendly_fraud_rate: float = 0.0008
    delay_median_days: float = 14.0
    delay_sigma: float = 1.0
    max_delay_days: float = 180.0

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None:
            raise ValueError("start must be naive (meaning UTC)")
        if self.days < 2 * _CM_WINDOW_DAYS[1]:
            raise ValueError(f"days must be at least {2 * _CM_WINDOW_DAYS[1]}")
        if self.n_transactions < 1_000:
            raise ValueError("n_transactions must be at least 1000")
        if not 0.0 <= self.fraudster_cashout_share <= 1.0:
            raise ValueError("fraudster_cashout_share must be in [0, 1]")
        if not 0.0 < self.mature_user_share < 1.0:
            raise ValueError("mature_user_share must be in (0, 1)")
        if not 1.0 < self.delay_median_days < self.max_delay_days:
            raise ValueError("delay_median_days must be in (1, max_delay_days)")
        if self.max_delay_days > 390:
            raise ValueError("max_delay_days must keep chargebacks within 400 days of the period")

    @property
    def user_count(self) -> int:
        """Number of users in the world."""
        return self.n_users if self.n_users is not None else max(100, round(self.n_transactions / 25))

    @property
    def merchant_count(self) -> int:
        """Number of merchants in the world."""
        if self.n_merchants is not None:
            return self.n_merchants
        return int(np.clip(round(self.n_transactions / 250), 50, 20_000))


DEFAULT_SPEC = WorldSpec()


@dataclass(frozen=True)
class World:
    """The simulated tables; ``truth`` is for tests and documentation, never for the pipeline.

    Attributes:
        users: ``user_id`` int64, ``created_at`` datetime64[us], ``region`` str.
        transactions: ``transaction_id`` int64 (1..N in time order), ``user_id``, ``merchant_id``
            int64, ``event_time`` datetime64[us], ``amount`` float64, ``channel``, ``country``,
            ``mcc`` str; sorted by ``event_time`` then ``transaction_id``.
        chargebacks: ``transaction_id`` int64, ``reported_at`` datetime64[us], ``reason`` str;
            sorted by ``reported_at`` then ``transaction_id``.
        truth: ``transaction_id`` int64, ``is_fraud`` bool, ``scenario`` str (missing if genuine).
    """

    users: pd.DataFrame
    transactions: pd.DataFrame
    chargebacks: pd.DataFrame
    truth: pd.DataFrame


@dataclass(frozen=True)
class _Clock:
    """Piecewise-constant hourly traffic intensity over the period, with its inverse CDF."""

    start_us: int
    end_us: int
    weights: np.ndarray
    cumulative: np.ndarray

    @classmethod
    def build(cls, spec: WorldSpec) -> _Clock:
        start_us = int(np.datetime64(spec.start, "us").astype(np.int64))
        hours = np.arange(spec.days * 24)
        weekday = (spec.start.weekday() + hours // 24) % 7
        weights = _HOURLY[(spec.start.hour + hours) % 24] * _WEEKLY[weekday]
        cumulative = np.concatenate([[0.0], np.cumsum(weights)])
        return cls(start_us, start_us + spec.days * US_PER_DAY, weights, cumulative)

    def mass(self, t_us: np.ndarray) -> np.ndarray:
        """Cumulative traffic intensity from ``start`` up to each time (clipped to the period)."""
        x = np.clip((np.asarray(t_us) - self.start_us) / US_PER_HOUR, 0.0, len(self.weights))
        hour = np.minimum(x.astype(np.int64), len(self.weights) - 1)
        return self.cumulative[hour] + (x - hour) * self.weights[hour]

    def sample(self, rng: np.random.Generator, lo_us: np.ndarray, hi_us: np.ndarray) -> np.ndarray:
        """Draws one time in each ``[lo, hi)`` following the traffic intensity."""
        lo_mass, hi_mass = self.mass(lo_us), self.mass(hi_us)
        v = lo_mass + rng.random(len(lo_mass)) * (hi_mass - lo_mass)
        hour = np.clip(np.searchsorted(self.cumulative, v, side="right") - 1, 0, len(self.weights) - 1)
        x = hour + (v - self.cumulative[hour]) / self.weights[hour]
        t = self.start_us + np.round(x * US_PER_HOUR).astype(np.int64)
        return np.clip(t, lo_us, np.asarray(hi_us) - 1)


class _GroupSampler:
    """Draws items with probability proportional to weight, restricted to a requested group."""

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int) -> None:
        order = np.argsort(groups, kind="stable")
        self._items = order
        self._cumulative = np.cumsum(weights[order])
        bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
        padded = np.concatenate([[0.0], self._cumulative])
        self._first, self._last = bounds[:-1], bounds[1:] - 1
        self._lo, self._hi = padded[bounds[:-1]], padded[bounds[1:]]

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """Returns one item index per entry of ``groups``; each requested group must have items."""
        groups = np.asarray(groups)
        if np.any(self._hi[groups] <= self._lo[groups]):
            raise ValueError("cannot sample from an empty group")
        v = self._lo[groups] + rng.random(len(groups)) * (self._hi[groups] - self._lo[groups])
        pos = np.searchsorted(self._cumulative, v, side="right")
        return self._items[np.clip(pos, self._first[groups], self._last[groups])]


@dataclass(frozen=True)
class _Users:
    created_us: np.ndarray
    region: np.ndarray
    activity: np.ndarray
    typical_amount: np.ndarray
    fraud_share: np.ndarray

    @property
    def fraudster(self) -> np.ndarray:
        return self.fraud_share > 0


@dataclass(frozen=True)
class _Merchants:
    region: np.ndarray
    channel: np.ndarray
    mcc: np.ndarray
    popularity: np.ndarray

    @property
    def core(self) -> np.ndarray:
        return self.region < len(CORE_REGIONS)


@dataclass(frozen=True)
class _Transactions:
    user: np.ndarray
    merchant: np.ndarray
    time_us: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray

    @classmethod
    def concat(cls, parts: list[_Transactions]) -> _Transactions:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def simulate_world(spec: WorldSpec = DEFAULT_SPEC) -> World:
    """Generates the users, transactions, chargebacks and ground truth described by ``spec``.

    Args:
        spec: The world's parameters; equal specs give identical frames.

    Returns:
        The simulated world.
    """
    # one independent stream per concern, so tuning one scenario does not reshuffle the others
    rngs = np.random.default_rng(spec.seed).spawn(9)
    clock = _Clock.build(spec)
    users = _make_users(spec, clock, rngs[0])
    merchants = _make_merchants(spec, rngs[1])
    favourites = _choose_favourites(users, merchants, rngs[2])
    injected_rate = spec.account_takeover_rate + spec.card_testing_rate + spec.compromised_merchant_rate
    genuine = _genuine_traffic(
        users,
        merchants,
        favourites,
        clock,
        round(spec.n_transactions * (1 - injected_rate)),
        rngs[3],
    )
    genuine = _mark_new_account_fraud(spec, genuine, users, merchants, rngs[4])
    parts = [
        genuine,
        _account_takeovers(spec, users, merchants, favourites, clock, rngs[5]),
        _card_testing(spec, users, merchants, clock, rngs[6]),
        _compromised_merchants(spec, users, merchants, genuine, clock, rngs[7]),
    ]
    tx = _sort_by_time(_Transactions.concat(parts))
    return World(
        users=_users_frame(users),
        transactions=_transactions_frame(tx, merchants),
        chargebacks=_chargebacks(spec, tx, rngs[8]),
        truth=_truth_frame(tx),
    )


def _make_users(spec: WorldSpec, clock: _Clock, rng: np.random.Generator) -> _Users:
    """Mature accounts before ``start`` plus growing in-period signups, some of them fraudsters."""
    n = spec.user_count
    n_mature = round(n * spec.mature_user_share)
    n_new = n - n_mature

    # uniform ages: a steady signup rate before the period, close to the period's opening rate
    age_us = ((1 + rng.random(n_mature) * _MATURE_MAX_AGE_DAYS) * US_PER_DAY).astype(np.int64)
    mature_created = clock.start_us - age_us
    mature_region = rng.choice(len(CORE_REGIONS), n_mature, p=_CORE_REGION_P)

    day = np.arange(spec.days)
    core_signups = (1 + _SIGNUP_GROWTH * day / spec.days) * np.where(day >= spec.campaign_day, _CAMPAIGN_LIFT, 1.0)
    new_region_signups = np.where(day >= spec.new_region_day, _NEW_REGION_SIGNUPS, 0.0)
    intensity = core_signups + new_region_signups
    signup_day = rng.choice(spec.days, n_new, p=intensity / intensity.sum())
    in_new_region = rng.random(n_new) < new_region_signups[signup_day] / intensity[signup_day]
    new_region = np.where(in_new_region, len(CORE_REGIONS), rng.choice(len(CORE_REGIONS), n_new, p=_CORE_REGION_P))
    new_created = clock.start_us + signup_day * US_PER_DAY + rng.integers(0, US_PER_DAY, n_new)
    risky_cohort = in_new_region | (signup_day >= spec.campaign_day)
    fraudster = rng.random(n_new) < np.where(risky_cohort, spec.campaign_fraudster_share, spec.fraudster_share)
    lo, hi = spec.fraudster_fraud_share
    new_fraud_share = np.where(fraudster, rng.uniform(lo, hi, n_new), 0.0)

    created = np.concatenate([mature_created, new_created])
    order = np.argsort(created, kind="stable")
    return _Users(
        created_us=created[order],
        region=np.concatenate([mature_region, new_region]).astype(np.int8)[order],
        activity=rng.lognormal(0.0, _ACTIVITY_SIGMA, n),
        typical_amount=rng.lognormal(np.log(_TYPICAL_AMOUNT_MEDIAN), _TYPICAL_AMOUNT_SIGMA, n),
        fraud_share=np.concatenate([np.zeros(n_mature), new_fraud_share])[order],
    )


def _make_merchants(spec: WorldSpec, rng: np.random.Generator) -> _Merchants:
    """Merchants with a region, channel, category and lognormal popularity."""
    n = spec.merchant_count
    region = np.where(
        rng.random(n) < _NEW_REGION_MERCHANT_SHARE,
        len(CORE_REGIONS),
        rng.choice(len(CORE_REGIONS), n, p=_CORE_REGION_P),
    )
    channel = (rng.random(n) < _ECOMMERCE_MERCHANT_SHARE).astype(np.int8)
    # the first merchants cover every region and channel so that no sampling group is empty
    n_cover = min(n, len(REGIONS) * len(CHANNELS))
    region[:n_cover] = np.arange(n_cover) // len(CHANNELS)
    channel[:n_cover] = np.arange(n_cover) % len(CHANNELS)
    u = rng.random(n)
    mcc = np.where(
        channel == 1,
        np.searchsorted(np.cumsum(_MCC_P[1]), u, side="right"),
        np.searchsorted(np.cumsum(_MCC_P[0]), u, side="right"),
    )
    return _Merchants(
        region=region.astype(np.int8),
        channel=channel,
        mcc=np.minimum(mcc, len(MCC_CODES) - 1).astype(np.int8),
        popularity=rng.lognormal(0.0, 1.2, n),
    )


def _choose_favourites(users: _Users, merchants: _Merchants, rng: np.random.Generator) -> np.ndarray:
    """Each user's favourite merchants in their home region, shape (n_users, 5)."""
    by_region = _GroupSampler(merchants.region, merchants.popularity, len(REGIONS))
    k = len(_FAVOURITE_P)
    return by_region.sample(rng, np.repeat(users.region, k)).reshape(-1, k).astype(np.int32)


def _amounts(
    rng: np.random.Generator, typical: np.ndarray, mcc: np.ndarray, spread: float = _AMOUNT_SIGMA
) -> np.ndarray:
    """Lognormal amounts around a typical amount scaled by category, rounded to cents."""
    raw = typical * _MCC_AMOUNT[mcc] * rng.lognormal(0.0, spread, len(typical))
    return np.maximum(np.round(raw, 2), _MIN_AMOUNT)


def _genuine_traffic(
    users: _Users,
    merchants: _Merchants,
    favourites: np.ndarray,
    clock: _Clock,
    n_target: int,
    rng: np.random.Generator,
) -> _Transactions:
    """Ordinary traffic: per-user Poisson counts over the account's lifetime in the period."""
    lo = np.maximum(users.created_us, clock.start_us)
    hi = np.full_like(lo, clock.end_us)
    expected = users.activity * (clock.mass(hi) - clock.mass(lo))
    counts = rng.poisson(expected * n_target / expected.sum())
    user = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    time_us = clock.sample(rng, lo[user], hi[user])

    n = len(user)
    route = rng.random(n)
    slot = np.searchsorted(np.cumsum(_FAVOURITE_P), rng.random(n), side="right")
    merchant = favourites[user, np.minimum(slot, len(_FAVOURITE_P) - 1)]
    local = (route >= _FAVOURITE_SHARE) & (route < _FAVOURITE_SHARE + _LOCAL_SHARE)
    elsewhere = route >= _FAVOURITE_SHARE + _LOCAL_SHARE
    by_region = _GroupSampler(merchants.region, merchants.popularity, len(REGIONS))
    merchant[local] = by_region.sample(rng, users.region[user[local]])
    anywhere_core = _GroupSampler((~merchants.core).astype(np.int8), merchants.popularity, 2)
    merchant[elsewhere] = anywhere_core.sample(rng, np.zeros(int(elsewhere.sum()), dtype=np.int8))

    return _Transactions(
        user=user,
        merchant=merchant.astype(np.int32),
        time_us=time_us,
        amount=_amounts(rng, users.typical_amount[user], merchants.mcc[merchant]),
        scenario=np.full(n, -1, dtype=np.int8),
    )


def _mark_new_account_fraud(
    spec: WorldSpec,
    genuine: _Transactions,
    users: _Users,
    merchants: _Merchants,
    rng: np.random.Generator,
) -> _Transactions:
    """Labels a fraudster's transactions as fraud at its own rate; some frauds become cash-outs.

    A cash-out moves the transaction to a core-region e-commerce merchant in a resalable category
    and multiplies its typical amount by 2-4; every other transaction stays as it was drawn.
    """
    is_fraud = rng.random(len(genuine.user)) < users.fraud_share[genuine.user]
    scenario = np.where(is_fraud, SCENARIOS.index("new_account_fraud"), genuine.scenario).astype(np.int8)
    fraud = np.flatnonzero(is_fraud)
    cashout = fraud[rng.random(len(fraud)) < spec.fraudster_cashout_share]
    online = merchants.core & (merchants.channel == 1)
    resalable = online & np.isin(merchants.mcc, [MCC_CODES.index(c) for c in _NAF_CASHOUT_MCC])
    # a tiny world may lack such shops; any core e-commerce merchant then stands in
    shops = _GroupSampler(np.where(resalable if resalable.any() else online, 0, 1), merchants.popularity, 2)
    merchant = genuine.merchant.copy()
    merchant[cashout] = shops.sample(rng, np.zeros(len(cashout), dtype=np.int8))
    amount = genuine.amount.copy()
    factor = rng.uniform(*_NAF_CASHOUT_AMOUNT_FACTOR, len(cashout))
    # 2-4 times the account's typical amount whatever the category (the category's own multiplier
    # is divided out), so a cash-out is unusual for its account, not a large amount for anyone
    shop_mcc = merchants.mcc[merchant[cashout]]
    amount[cashout] = _amounts(
        rng, users.typical_amount[genuine.user[cashout]] * factor / _MCC_AMOUNT[shop_mcc], shop_mcc
    )
    return _Transactions(genuine.user, merchant, genuine.time_us, amount, scenario)


def _burst_offsets(
    rng: np.random.Generator, sizes: np.ndarray, mean_gap_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per transaction of consecutive bursts: its offset from the burst start, and its burst."""
    burst = np.repeat(np.arange(len(sizes)), sizes)
    gaps = rng.exponential(1.0, len(burst)) * np.repeat(mean_gap_us, sizes)
    elapsed = np.cumsum(gaps)
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return (elapsed - elapsed[first]).astype(np.int64), burst


def _event_count(rate: float, spec: WorldSpec, mean_size: float) -> int:
    """Number of bursts whose expected transactions make ``rate`` of the world's traffic."""
    return max(1, round(rate * spec.n_transactions / mean_size))


def _account_takeovers(
    spec: WorldSpec,
    users: _Users,
    merchants: _Merchants,
    favourites: np.ndarray,
    clock: _Clock,
    rng: np.random.Generator,
) -> _Transactions:
    """Bursts of large payments at unfamiliar, mostly e-commerce merchants on mature accounts."""
    scenario = SCENARIOS.index("account_takeover")
    n_events = _event_count(spec.account_takeover_rate, spec, np.mean(_ATO_BURST))
    eligible = np.flatnonzero(users.created_us <= clock.start_us - _ATO_MIN_ACCOUNT_AGE_DAYS * US_PER_DAY)
    victims = rng.choice(eligible, n_events)
    # fraudsters work around the clock, so the takeover time ignores the diurnal cycle
    t0 = clock.start_us + rng.integers(0, (spec.days - 1) * US_PER_DAY, n_events)
    sizes = rng.integers(_ATO_BURST[0], _ATO_BURST[1] + 1, n_events)
    offsets, burst = _burst_offsets(rng, sizes, np.full(n_events, _ATO_GAP_MINUTES * US_PER_MINUTE))
    user = victims[burst].astype(np.int32)

    by_channel = _GroupSampler(np.where(merchants.core, merchants.channel, 2), merchants.popularity, 3)
    channel = (rng.random(len(user)) < _ATO_ECOMMERCE_SHARE).astype(np.int8)
    merchant = by_channel.sample(rng, channel)
    # redraw any favourite merchant: the fraudster does not know the victim's habits
    familiar = (favourites[user] == merchant[:, None]).any(axis=1)
    for _ in range(50):
        if not familiar.any():
            break
        merchant[familiar] = by_channel.sample(rng, channel[familiar])
        familiar = (favourites[user] == merchant[:, None]).any(axis=1)

    factor = rng.uniform(*_ATO_AMOUNT_FACTOR, len(user))
    amount = np.round(users.typical_amount[user] * factor * rng.lognormal(0.0, 0.2, len(user)), 2)
    return _Transactions(
        user=user,
        merchant=merchant.astype(np.int32),
        time_us=t0[burst] + offsets,
        amount=amount,
        scenario=np.full(len(user), scenario, dtype=np.int8),
    )


def _card_testing(
    spec: WorldSpec, users: _Users, merchants: _Merchants, clock: _Clock, rng: np.random.Generator
) -> _Transactions:
    """Tiny e-commerce test payments on a stolen card, then one or two large purchases."""
    scenario = SCENARIOS.index("card_testing")
    mean_size = np.mean(_CT_TINY_BURST) + np.mean(_CT_LARGE_BURST)
    n_events = _event_count(spec.card_testing_rate, spec, mean_size)
    victims = rng.choice(
        np.flatnonzero(~users.fraudster & (users.created_us < clock.end_us - 2 * US_PER_DAY)),
        n_events,
    )
    earliest = np.maximum(users.created_us[victims], clock.start_us) + US_PER_HOUR
    t0 = earliest + (rng.random(n_events) * (clock.end_us - US_PER_DAY - earliest)).astype(np.int64)

    n_tiny = rng.integers(_CT_TINY_BURST[0], _CT_TINY_BURST[1] + 1, n_events)
    n_large = rng.integers(_CT_LARGE_BURST[0], _CT_LARGE_BURST[1] + 1, n_events)
    tiny_offsets, tiny_burst = _burst_offsets(rng, n_tiny, _CT_TINY_SPAN_MINUTES * US_PER_MINUTE / n_tiny)
    large_offsets, large_burst = _burst_offsets(rng, n_large, np.full(n_events, _CT_LARGE_GAP_MINUTES * US_PER_MINUTE))
    last_tiny = np.zeros(n_events, dtype=np.int64)
    np.maximum.at(last_tiny, tiny_burst, tiny_offsets)
    large_start = last_tiny + (rng.exponential(_CT_LARGE_GAP_MINUTES, n_events) * US_PER_MINUTE).astype(np.int64)

    ecommerce = _GroupSampler(np.where(merchants.core & (merchants.channel == 1), 0, 1), merchants.popularity, 2)
    test_site = ecommerce.sample(rng, np.zeros(n_events, dtype=np.int8))
    large_merchant = ecommerce.sample(rng, np.zeros(len(large_burst), dtype=np.int8))
    tiny_amount = np.round(rng.uniform(*_CT_TINY_AMOUNT, len(tiny_burst)), 2)
    large_amount = np.round(rng.lognormal(np.log(_CT_LARGE_AMOUNT_MEDIAN), 0.5, len(large_burst)), 2)

    user = np.concatenate([victims[tiny_burst], victims[large_burst]]).astype(np.int32)
    return _Transactions(
        user=user,
        merchant=np.concatenate([test_site[tiny_burst], large_merchant]).astype(np.int32),
        time_us=np.concatenate(
            [
                t0[tiny_burst] + tiny_offsets,
                t0[large_burst] + large_start[large_burst] + large_offsets,
            ]
        ),
        amount=np.concatenate([tiny_amount, large_amount]),
        scenario=np.full(len(user), scenario, dtype=np.int8),
    )


def _compromised_merchants(
    spec: WorldSpec,
    users: _Users,
    merchants: _Merchants,
    genuine: _Transactions,
    clock: _Clock,
    rng: np.random.Generator,
) -> _Transactions:
    """Fraud at a few popular merchants during a 2-3 week compromise, ~30% of their traffic."""
    scenario = SCENARIOS.index("compromised_merchant")
    core = np.flatnonzero(merchants.core)
    # Gumbel top-k over popularity cubed: attackers go for big merchants, without replacement
    keys = 3 * np.log(merchants.popularity[core]) - np.log(-np.log(rng.random(len(core))))
    candidates = core[np.argsort(-keys, kind="stable")[:_CM_MAX_CANDIDATES]]
    length_days = rng.integers(_CM_WINDOW_DAYS[0], _CM_WINDOW_DAYS[1] + 1, len(candidates))
    window_start = clock.start_us + (rng.random(len(candidates)) * (spec.days - length_days) * US_PER_DAY).astype(
        np.int64
    )
    window_end = window_start + length_days * US_PER_DAY

    position = np.full(len(merchants.region), -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    k = position[genuine.merchant]
    at_candidate = k >= 0
    k, t = k[at_candidate], genuine.time_us[at_candidate]
    inside = (t >= window_start[k]) & (t < window_end[k])
    traffic = np.bincount(k[inside], minlength=len(candidates))

    expected = traffic * _CM_FRAUD_SHARE / (1 - _CM_FRAUD_SHARE)
    target = spec.compromised_merchant_rate * spec.n_transactions
    chosen = _fill_target(expected, target)
    n_fraud = rng.poisson(expected[chosen])
    which = np.repeat(chosen, n_fraud)
    merchant = candidates[which]

    mature = users.created_us < clock.start_us
    victims_by_region = _GroupSampler(
        np.where(mature, users.region, len(REGIONS)), np.ones(len(mature)), len(REGIONS) + 1
    )
    user = victims_by_region.sample(rng, merchants.region[merchant]).astype(np.int32)
    amount = _amounts(rng, users.typical_amount[user] * 1.5, merchants.mcc[merchant])
    return _Transactions(
        user=user,
        merchant=merchant.astype(np.int32),
        time_us=clock.sample(rng, window_start[which], window_end[which]),
        amount=amount,
        scenario=np.full(len(user), scenario, dtype=np.int8),
    )


def _fill_target(sizes: np.ndarray, target: float) -> np.ndarray:
    """Greedily picks items in order until their sizes reach the target, skipping big overshoots."""
    chosen, total = [], 0.0
    for i, size in enumerate(sizes):
        if total >= target:
            break
        # a merchant overshooting the remainder by over half its size would distort small worlds
        if size > 0 and total + size / 2 <= target:
            chosen.append(i)
            total += size
    if not chosen and np.any(sizes > 0):
        chosen.append(int(np.argmin(np.where(sizes > 0, sizes, np.inf))))
    return np.array(chosen, dtype=np.int64)


def _sort_by_time(tx: _Transactions) -> _Transactions:
    order = np.argsort(tx.time_us, kind="stable")
    return _Transactions(*(getattr(tx, f)[order] for f in _Transactions.__dataclass_fields__))


def _reporting_delays(spec: WorldSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """One day plus a lognormal, redrawn beyond the dispute window; in microseconds."""
    mu = np.log(spec.delay_median_days - 1)
    days = 1 + rng.lognormal(mu, spec.delay_sigma, n)
    late = days > spec.max_delay_days
    while late.any():
        days[late] = 1 + rng.lognormal(mu, spec.delay_sigma, int(late.sum()))
        late = days > spec.max_delay_days
    return (days * US_PER_DAY).astype(np.int64)


def _chargebacks(spec: WorldSpec, tx: _Transactions, rng: np.random.Generator) -> pd.DataFrame:
    """Most frauds and a few genuine transactions (friendly fraud) get one chargeback each."""
    is_fraud = tx.scenario >= 0
    charged = rng.random(len(is_fraud)) < np.where(is_fraud, spec.chargeback_share, spec.friendly_fraud_rate)
    idx = np.flatnonzero(charged)
    reported_us = tx.time_us[idx] + _reporting_delays(spec, len(idx), rng)
    order = np.lexsort((idx, reported_us))
    return pd.DataFrame(
        {
            "transaction_id": (idx[order] + 1).astype(np.int64),
            "reported_at": reported_us[order].astype("datetime64[us]"),
            "reason": _strings(np.zeros(len(idx), dtype=np.int8), (CHARGEBACK_REASON,)),
        }
    )


def _strings(codes: np.ndarray, labels: tuple[str, ...]) -> pd.Series:
    """Plain string column from integer codes (-1 means missing), built through Arrow for speed."""
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.array(labels, type=pa.string()).take(indices).to_pandas()


def _users_frame(users: _Users) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.arange(1, len(users.region) + 1, dtype=np.int64),
            "created_at": users.created_us.astype("datetime64[us]"),
            "region": _strings(users.region, REGIONS),
        }
    )


def _transactions_frame(tx: _Transactions, merchants: _Merchants) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": np.arange(1, len(tx.user) + 1, dtype=np.int64),
            "user_id": tx.user.astype(np.int64) + 1,
            "merchant_id": tx.merchant.astype(np.int64) + 1,
            "event_time": tx.time_us.astype("datetime64[us]"),
            "amount": tx.amount.astype(np.float64),
            "channel": _strings(merchants.channel[tx.merchant], CHANNELS),
            "country": _strings(merchants.region[tx.merchant], REGIONS),
            "mcc": _strings(merchants.mcc[tx.merchant], MCC_CODES),
        }
    )


def _truth_frame(tx: _Transactions) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": np.arange(1, len(tx.user) + 1, dtype=np.int64),
            "is_fraud": tx.scenario >= 0,
            "scenario": _strings(tx.scenario, SCENARIOS),
        }
    )


def describe_world(world: World) -> dict[str, Any]:
    """Small summary numbers of a world, for documentation and tests.

    Args:
        world: A world made by ``simulate_world`` (ids 1..N in row order, truth aligned).

    Returns:
        Plain Python numbers: table sizes, fraud rate, frauds per scenario, chargeback coverage and
        delay quantiles (days), friendly-fraud chargebacks, and per month the share of transactions
        made by accounts younger than 30 days.
    """
    tx, truth, cb, users = world.transactions, world.truth, world.chargebacks, world.users
    is_fraud = truth["is_fraud"].to_numpy()
    event_us = tx["event_time"].to_numpy().astype("datetime64[us]").astype(np.int64)

    row = cb["transaction_id"].to_numpy() - 1
    delay_days = (cb["reported_at"].to_numpy().astype("datetime64[us]").astype(np.int64) - event_us[row]) / US_PER_DAY
    by_scenario = truth["scenario"].value_counts()

    created = users.set_index("user_id")["created_at"].reindex(tx["user_id"]).to_numpy()
    young = event_us - created.astype("datetime64[us]").astype(np.int64) < 30 * US_PER_DAY
    month = event_us.astype("datetime64[us]").astype("datetime64[M]")
    months, month_index = np.unique(month, return_inverse=True)
    young_share = np.bincount(month_index, weights=young) / np.bincount(month_index)

    created_at = users["created_at"].to_numpy()
    period_start = tx["event_time"].min().floor("D").to_datetime64()
    n_frauds = int(is_fraud.sum())
    return {
        "n_users": len(users),
        "n_merchants": int(tx["merchant_id"].nunique()),
        "n_transactions": len(tx),
        "n_frauds": n_frauds,
        "fraud_rate": round(n_frauds / len(tx), 5),
        "frauds_by_scenario": {s: int(by_scenario.get(s, 0)) for s in SCENARIOS},
        "n_chargebacks": len(cb),
        "chargeback_coverage_of_frauds": round(float(is_fraud[row].sum()) / max(n_frauds, 1), 4),
        "friendly_fraud_chargebacks": int((~is_fraud[row]).sum()),
        "delay_days_median": round(float(np.median(delay_days)), 2),
        "delay_days_p95": round(float(np.quantile(delay_days, 0.95)), 2),
        "delay_share_over_90_days": round(float(np.mean(delay_days > 90)), 4),
        "users_created_in_period_share": round(float(np.mean(created_at >= period_start)), 4),
        "new_account_share_by_month": {str(m): round(float(v), 4) for m, v in zip(months, young_share, strict=True)},
    }
