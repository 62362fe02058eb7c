"""Missingness contracts: one declared contract per feature, measured in DuckDB as aggregates.

A contract says whether a feature may be NULL, which count (its availability partner) must explain
every NULL, the expected range of its missing rate, its value range, and that no value stands in for
absence. The table is measured with one SQL pass into a single row of aggregates (so validation adds
seconds, not a pandas copy of the table); Great Expectations then validates that row
(:mod:`fraud_pipeline.features.expectations`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fraud_pipeline.features.catalog import FEATURES, WINDOWS

INF = float("inf")


@dataclass(frozen=True)
class FeatureContract:
    """What a feature promises about its values and its absence.

    Attributes:
        feature: Column name.
        nullable: Whether NULL is allowed at all.
        partner: The count whose 0 must explain each NULL, and whose > 0 forbids it (no sentinel:
            a value where the partner is 0 is a stand-in for absence).
        missing_rate: Expected (low, high) share of NULLs.
        value_range: Allowed (low, high) for non-NULL values, inclusive; None for categories.
    """

    feature: str
    nullable: bool
    partner: str | None
    missing_rate: tuple[float, float]
    value_range: tuple[float, float] | None


#: Expected missing rates of the windowed aggregates in the simulated world; edit for your data.
WINDOW_MISSING_RATES = {"1h": (0.80, 1.0), "1d": (0.40, 0.95), "7d": (0.03, 0.60), "30d": (0.0, 0.30)}


def _contract(feature) -> FeatureContract:
    name, kind = feature.name, feature.kind
    if feature.categorical:
        return FeatureContract(name, False, None, (0.0, 0.0), None)
    if kind == "count":
        return FeatureContract(name, False, None, (0.0, 0.0), (0.0, INF))
    if name == "hour_of_day":
        return FeatureContract(name, False, None, (0.0, 0.0), (0.0, 23.0))
    if name == "amount":
        return FeatureContract(name, False, None, (0.0, 0.0), (1e-9, INF))
    if name == "account_age_days":
        return FeatureContract(name, True, None, (0.0, 0.05), (0.0, 365.0 * 100))
    if name == "seconds_since_prev_tx":
        return FeatureContract(name, True, feature.partner, (0.0, 0.15), (0.0, INF))
    if name == "merchant_chargeback_rate_30d":
        return FeatureContract(name, True, feature.partner, (0.0, 0.10), (0.0, INF))
    window = next(w for w in WINDOWS if name.endswith(f"_{w}"))
    return FeatureContract(name, True, feature.partner, WINDOW_MISSING_RATES[window], (1e-12, INF))


CONTRACTS: tuple[FeatureContract, ...] = tuple(_contract(f) for f in FEATURES)


@dataclass(frozen=True)
class Measure:
    """One measured aggregate and the rule it is held to."""

    column: str
    feature: str
    rule: str
    low: float
    high: float
    violation_sql: str | None  # rows that break the rule, for samples; None for rate rules


def measures(contracts: tuple[FeatureContract, ...] = CONTRACTS) -> list[Measure]:
    """Every aggregate to measure, with its allowed interval."""
    out: list[Measure] = [Measure("rows", "*", "not_empty", 1, INF, None)]
    for c in contracts:
        f = c.feature
        out.append(Measure(f"{f}__missing_rate", f, "missing_rate", *c.missing_rate, None))
        if not c.nullable:
            out.append(Measure(f"{f}__nulls", f, "not_null", 0, 0, f"{f} IS NULL"))
        if c.value_range is not None:
            low, high = c.value_range
            bounds = [f"{f} < {low!r}"] + ([f"{f} > {high!r}"] if high != INF else [])
            out.append(Measure(f"{f}__out_of_range", f, "value_range", 0, 0, " OR ".join(bounds)))
        if c.partner:
            out.append(
                Measure(f"{f}__null_with_history", f, "partner_explains_null", 0, 0, f"{f} IS NULL AND {c.partner} > 0")
            )
            out.append(
                Measure(
                    f"{f}__value_without_history",
                    f,
                    "no_sentinel_for_absence",
                    0,
                    0,
                    f"{f} IS NOT NULL AND {c.partner} = 0",
                )
            )
    return out


def aggregate_sql(table: str, contracts: tuple[FeatureContract, ...] = CONTRACTS) -> str:
    """One SELECT returning one row: every measure of every contract over ``table``."""
    parts = []
    for m in measures(contracts):
        if m.rule == "not_empty":
            parts.append(f"count(*) AS {m.column}")
        elif m.rule == "missing_rate":
            parts.append(f"avg(CASE WHEN {m.feature} IS NULL THEN 1.0 ELSE 0.0 END) AS {m.column}")
        else:
            parts.append(f"count(*) FILTER (WHERE {m.violation_sql}) AS {m.column}")
    return f"SELECT {', '.join(parts)} FROM {table}"


def violation_sample_sql(table: str, measure: Measure, limit: int = 5) -> str:
    """A few rows that break a row-level rule, for the check's metadata."""
    contract = next(c for c in CONTRACTS if c.feature == measure.feature)
    columns = ", ".join(
        dict.fromkeys(["transaction_id", measure.feature] + ([contract.partner] if contract.partner else []))
    )
    return f"SELECT {columns} FROM {table} WHERE {measure.violation_sql} ORDER BY transaction_id LIMIT {int(limit)}"
