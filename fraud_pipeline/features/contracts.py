"""Missingness contracts: exact rules from the feature spec, rates and ranges learned from a reference.

Two kinds of rule hold a feature table to its spec:

- **Structural rules** follow from the spec and are exact, over every row: a count is never NULL and
  never negative; an aggregate is NULL exactly when its availability partner is 0 (a value where the
  partner is 0 stands in for absence; a NULL where it is > 0 hides history); an attribute declared
  non-nullable is never NULL; and a value stays inside what it can be (a standard deviation, a rate
  or an account age is never negative, a time since the previous row lies in ``(0, window]``, an
  hour in 0..23). A categorical attribute the data does not have is left out of the spec or
  declared nullable: then it is NULL on both sides and its learned rate holds.
- **Learned rules** compare the *checked* rows with a *reference* of the same table: each nullable
  feature's missing rate, and each numeric feature's share of values outside the reference's far-out
  fences (Tukey's ``Q1 - k IQR``, ``Q3 + k IQR``, kept on the reference's side of 0; counts have
  exact rules instead, and label rates are left free, since fraud pressure moves them). The checked
  share must lie within ``margin + z * se`` of the reference's share, where ``se`` is the binomial
  standard error of the difference of two proportions and ``z`` is Bonferroni-corrected over the
  learned rules so that a table whose checked rows behave like its reference fails with probability
  at most ``false_alarm``. The ``margin`` is the smallest shift worth stopping a deploy for; it covers
  what the binomial model leaves out (rows of one user are not independent, days differ).

The reference is chosen from the table's own times, never the wall clock
(:func:`newest_days_reference`, :func:`split_reference`). Everything is measured in DuckDB as
aggregates: one statement for the reference's quartiles, then a few statements of counts merged into
a single row (so validation adds about a second, not a pandas copy of the table); Great
Expectations then validates that row (:mod:`fraud_pipeline.features.expectations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

from fraud_pipeline.features.spec import FeatureSpec, default_spec

INF = float("inf")
_NUMERIC_TYPES = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC")


@dataclass(frozen=True)
class ContractSettings:
    """How the learned rules are judged.

    Attributes:
        checked_days: For a feature table, the newest calendar days checked against the reference.
        missing_rate_margin: Smallest change of a missing rate (absolute) that fails the contract
            when the sample is large; the binomial error is added on top.
        out_of_range_margin: Smallest rise of the share of values outside the reference's fences
            that fails the contract when the sample is large.
        fence_iqr: ``k`` of the fences ``Q1 - k IQR`` and ``Q3 + k IQR`` (3 is Tukey's "far out").
        false_alarm: Chance that a table whose checked rows behave like its reference fails a
            learned rule (shared by all of them through a Bonferroni correction).
    """

    checked_days: int = 7
    missing_rate_margin: float = 0.05
    out_of_range_margin: float = 0.01
    fence_iqr: float = 3.0
    false_alarm: float = 0.01


@dataclass(frozen=True)
class FeatureContract:
    """What a feature promises, derived from its spec entry.

    Attributes:
        feature: Column name.
        nullable: Whether NULL is allowed at all (its missing rate is then learned).
        partner: The count whose 0 must explain each NULL, and whose > 0 forbids it.
        bound_sql: SQL condition (on ``{f}``) of a value the feature can never take; None if any.
        bound_text: The structural range in words, for the check's metadata.
        numeric_range: Whether the share of values outside the reference's fences is learned.
    """

    feature: str
    nullable: bool
    partner: str | None
    bound_sql: str | None
    bound_text: str
    numeric_range: bool


def _bounds(feature) -> tuple[str | None, str]:
    if feature.agg in ("count", "label_count", "distinct", "std", "label_rate"):
        return "{f} < 0", ">= 0"
    if feature.agg == "time_since_previous":
        seconds = feature.window_us / 10**6
        return f"{{f}} <= 0 OR {{f}} > {seconds!r}", f"in (0, {seconds:g}] seconds"
    if feature.derive == "hour_of_day":
        return "{f} < 0 OR {f} > 23 OR {f} <> floor({f})", "an integer in 0..23"
    if feature.derive == "account_age_days":
        # an account does not transact before it exists: a negative age is a wrong created_at
        return "{f} < 0", ">= 0"
    return None, "any"


def feature_contracts(spec: FeatureSpec | None = None) -> tuple[FeatureContract, ...]:
    """One contract per feature of ``spec`` (the default spec when None)."""
    spec = spec or default_spec()
    contracts = []
    for f in spec.features:
        bound_sql, bound_text = _bounds(f)
        # a count's absence is a true 0; an aggregate's is NULL, which its partner (if any) explains
        nullable = f.kind == "aggregate" or f.nullable
        # label-derived values move with fraud pressure, which a model must meet, not a deploy refuse
        learned_range = not f.categorical and f.kind != "count" and f.agg != "label_rate"
        contracts.append(
            FeatureContract(
                feature=f.name,
                nullable=nullable,
                partner=f.partner,
                bound_sql=bound_sql,
                bound_text=bound_text,
                numeric_range=learned_range,
            )
        )
    return tuple(contracts)


@dataclass(frozen=True)
class Reference:
    """Which rows of a table are the reference and which are checked, as SQL conditions.

    Attributes:
        reference_sql: Condition selecting the reference rows.
        checked_sql: Condition selecting the checked rows.
        params: Named parameters of both conditions.
        description: The choice in words and its bounds, for the check's metadata.
        problem: Why no judgement is possible (then the contract fails with this reason).
    """

    reference_sql: str
    checked_sql: str
    params: dict
    description: dict
    problem: str | None = None


def _day(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day)


def newest_days_reference(
    con, table: str, spec: FeatureSpec | None = None, checked_days: int = ContractSettings.checked_days
) -> Reference:
    """The newest ``checked_days`` calendar days of ``table`` against its earlier full-history rows.

    The reference starts ``spec.history_days`` after the table's first transaction (where every
    window is full, as for training) and ends where the checked days begin; both come from the
    table's own ``event_time``, so a run for a past as_of judges the same rows again.
    """
    spec = spec or default_spec()
    first, last = con.execute(f"SELECT min(event_time), max(event_time) FROM {table}").fetchone()
    if first is None:
        return Reference("false", "false", {}, {"reference": "none"}, f"{table} is empty")
    warm = first + timedelta(days=spec.history_days)
    checked_start = _day(last) - timedelta(days=max(1, int(checked_days)) - 1)
    description = {
        "reference": f"full-history rows of {table} before the newest {checked_days} days",
        "reference_start": warm.isoformat(),
        "reference_end": checked_start.isoformat(),
        "checked_start": checked_start.isoformat(),
        "checked_end": last.isoformat(),
    }
    problem = None
    if warm >= checked_start:
        problem = (
            f"no reference rows: {table} spans {first:%Y-%m-%d} to {last:%Y-%m-%d}, and the reference needs "
            f"{spec.history_days} days of warm-up (the spec's longest window) before the newest {checked_days} "
            "checked days"
        )
    return Reference(
        "event_time >= $reference_start AND event_time < $checked_start",
        "event_time >= $checked_start",
        {"reference_start": warm, "checked_start": checked_start},
        description,
        problem,
    )


def split_reference(
    con, table: str = "training_set", spec: FeatureSpec | None = None, features: str = "transaction_features"
) -> Reference:
    """The train split's full-history rows against the validation and test splits.

    The model learns from the train split and is validated and tested on the others: they must look
    like what it learnt from. Train rows inside the warm-up (``spec.history_days`` after the first
    transaction of ``features``) are left out of the reference, since their windows are not full.
    """
    spec = spec or default_spec()
    first = con.execute(f"SELECT min(event_time) FROM {features}").fetchone()[0]
    if first is None:
        return Reference("false", "false", {}, {"reference": "none"}, f"{features} is empty")
    warm = first + timedelta(days=spec.history_days)
    n_reference, n_checked = con.execute(
        f"SELECT count(*) FILTER (WHERE split = 'train' AND event_time >= $warm), "
        f"count(*) FILTER (WHERE split IN ('validation', 'test')) FROM {table}",
        {"warm": warm},
    ).fetchone()
    problem = None
    if not n_reference:
        problem = (
            f"no reference rows: {table} has no train row after the {spec.history_days}-day warm-up "
            f"(from {warm:%Y-%m-%d})"
        )
    elif not n_checked:
        problem = f"no checked rows: {table} has no validation or test row"
    return Reference(
        "split = 'train' AND event_time >= $warm",
        "split IN ('validation', 'test')",
        {"warm": warm},
        {"reference": f"train split of {table} from {warm:%Y-%m-%d}", "checked": "validation and test splits"},
        problem,
    )


@dataclass(frozen=True)
class Measure:
    """One measured aggregate and the rule it is held to.

    ``low``/``high`` are exact for structural rules and set from the reference for learned ones
    (:func:`learned_bounds`); ``violation_sql`` selects the rows that break a row-level rule.
    """

    column: str
    feature: str
    rule: str
    low: float = 0.0
    high: float = 0.0
    violation_sql: str | None = None
    partner: str | None = None


def column_types(con, table: str) -> dict[str, str]:
    """The table's columns (name -> DuckDB type)."""
    return {name: str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()}


def _numeric(sql_type: str) -> bool:
    return any(word in sql_type.upper() for word in _NUMERIC_TYPES)


def measures(contracts: tuple[FeatureContract, ...], types: dict[str, str]) -> list[Measure]:
    """Every aggregate to measure; a contract whose column the table lacks becomes a failing measure."""
    out = [
        Measure("rows", "*", "not_empty", 1, INF),
        Measure("reference_rows", "*", "reference_not_empty", 1, INF),
        Measure("checked_rows", "*", "checked_not_empty", 1, INF),
    ]
    for c in contracts:
        f = c.feature
        if f not in types or (c.partner and c.partner not in types):
            out.append(Measure(f"{f}__present", f, "column_present", 1, 1))
            continue
        if c.nullable:
            out.append(Measure(f"{f}__missing_rate", f, "missing_rate"))
        else:
            out.append(Measure(f"{f}__nulls", f, "not_null", violation_sql=f"{f} IS NULL"))
        if c.bound_sql:
            out.append(Measure(f"{f}__out_of_bounds", f, "structural_range", violation_sql=c.bound_sql.format(f=f)))
        if c.numeric_range and _numeric(types[f]):
            out.append(Measure(f"{f}__out_of_range_share", f, "value_range"))
        if c.partner:
            p = c.partner
            out.append(
                Measure(
                    f"{f}__null_with_history",
                    f,
                    "partner_explains_null",
                    violation_sql=f"{f} IS NULL AND {p} > 0",
                    partner=p,
                )
            )
            out.append(
                Measure(
                    f"{f}__value_without_history",
                    f,
                    "no_sentinel_for_absence",
                    violation_sql=f"{f} IS NOT NULL AND {p} = 0",
                    partner=p,
                )
            )
    return out


LEARNED_RULES = ("missing_rate", "value_range")


def fences_sql(table: str, all_measures: list[Measure], reference: Reference) -> str | None:
    """One SELECT over the reference rows: the quartiles, min and max of every feature with a learned range."""
    ranged = [m.feature for m in all_measures if m.rule == "value_range"]
    if not ranged:
        return None
    parts = [
        f"quantile_cont({f}, 0.25) AS {f}__q1, quantile_cont({f}, 0.75) AS {f}__q3, min({f}) AS {f}__min, "
        f"max({f}) AS {f}__max"
        for f in ranged
    ]
    return f"SELECT {', '.join(parts)} FROM {table} WHERE {reference.reference_sql}"


def fences(row: dict | None, all_measures: list[Measure], fence_iqr: float) -> dict[str, tuple[float, float] | None]:
    """Each learned range's far-out fences from the reference's quartiles, kept on the reference's side of 0.

    None for a feature without any reference value.
    """
    out: dict[str, tuple[float, float] | None] = {}
    for m in all_measures:
        if m.rule != "value_range":
            continue
        f = m.feature
        q1, q3 = (None, None) if row is None else (row[f"{f}__q1"], row[f"{f}__q3"])
        if q1 is None or q3 is None:
            out[f] = None
            continue
        spread = fence_iqr * (float(q3) - float(q1))
        low, high = float(q1) - spread, float(q3) + spread
        if row[f"{f}__min"] >= 0:
            low = max(low, 0.0)
        if row[f"{f}__max"] <= 0:
            high = min(high, 0.0)
        out[f] = (low, high)
    return out


#: Aggregates per statement: DuckDB runs a few short aggregate lists faster than one long one.
AGGREGATES_PER_STATEMENT = 20


def aggregate_statements(
    table: str, all_measures: list[Measure], reference: Reference, ranges: dict[str, tuple[float, float] | None]
) -> list[str]:
    """SELECTs of one row each that together hold every structural count and the learned rules' raw counts.

    For a learned missing rate: ``{f}__reference_nulls`` and ``{f}__checked_nulls``; for a learned
    range (``ranges``, from :func:`fences`): the non-NULL reference and checked values, and those
    outside the fences. Which rows are reference or checked is decided once per row.
    """
    parts = [
        "count(*) AS rows",
        "count(*) FILTER (WHERE _reference) AS reference_rows",
        "count(*) FILTER (WHERE _checked) AS checked_rows",
    ]
    for m in all_measures:
        f = m.feature
        if m.rule == "missing_rate":
            parts.append(f"count(*) FILTER (WHERE _reference AND {f} IS NULL) AS {f}__reference_nulls")
            parts.append(f"count(*) FILTER (WHERE _checked AND {f} IS NULL) AS {f}__checked_nulls")
        elif m.rule == "value_range":
            bounds = ranges.get(f)
            outside = "false" if bounds is None else f"({f} < {bounds[0]!r} OR {f} > {bounds[1]!r})"
            parts += [
                f"count({f}) FILTER (WHERE _reference) AS {f}__reference_values",
                f"count({f}) FILTER (WHERE _checked) AS {f}__checked_values",
                f"count(*) FILTER (WHERE _reference AND {outside}) AS {f}__reference_outside",
                f"count(*) FILTER (WHERE _checked AND {outside}) AS {f}__checked_outside",
            ]
        elif m.violation_sql:
            parts.append(f"count(*) FILTER (WHERE {m.violation_sql}) AS {m.column}")
        elif m.rule == "column_present":
            parts.append(f"0 AS {m.column}")
    flagged = (
        f"SELECT *, coalesce({reference.reference_sql}, false) AS _reference, "
        f"coalesce({reference.checked_sql}, false) AS _checked FROM {table}"
    )
    return [
        f"SELECT {', '.join(parts[i : i + AGGREGATES_PER_STATEMENT])} FROM ({flagged})"
        for i in range(0, len(parts), AGGREGATES_PER_STATEMENT)
    ]


def bonferroni_z(n_rules: int, false_alarm: float) -> float:
    """The two-sided normal quantile giving ``n_rules`` tests a family-wise false-alarm rate of ``false_alarm``."""
    return NormalDist().inv_cdf(1 - false_alarm / (2 * max(1, n_rules)))


def rate_band(
    reference_hits: int, reference_n: int, checked_hits: int, checked_n: int, margin: float, z: float
) -> tuple[float, float, float]:
    """The interval a checked share must lie in, given the reference's share.

    ``reference share ± (margin + z * se)``, with ``se`` the standard error of the difference of two
    binomial shares at the pooled share, smoothed by one hit and one miss so that it is never 0 (a
    reference share of exactly 0 or 1 on few rows still gets a band of its sample size).

    Returns:
        (reference share, low, high), the bounds clipped to [0, 1].
    """
    share = reference_hits / reference_n
    pooled = (reference_hits + checked_hits + 1) / (reference_n + checked_n + 2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / reference_n + 1 / max(checked_n, 1)))
    half = margin + z * se
    return share, max(0.0, share - half), min(1.0, share + half)


@dataclass(frozen=True)
class Judged:
    """A measure with its observed value and (for learned rules) the reference it was judged against."""

    measure: Measure
    observed: float | None
    low: float
    high: float
    reference: float | None = None
    detail: str = ""

    def as_row(self) -> dict:
        m = self.measure
        return {
            "rule": m.rule,
            "feature": m.feature,
            "column": m.column,
            "low": self.low,
            "high": self.high,
            "observed": self.observed,
            "reference": self.reference,
            "detail": self.detail,
        }


def learned_bounds(
    row: dict, all_measures: list[Measure], settings: ContractSettings, ranges: dict[str, tuple[float, float] | None]
) -> list[Judged]:
    """Each measure's observed value and interval, the learned ones set from the reference's counts.

    A learned rule without reference rows cannot be judged and fails (observed NaN); a range rule
    whose feature has no value in the reference (or the checked rows) is not judged: its missing
    rate carries the change.
    """
    n_ref, n_chk = int(row["reference_rows"]), int(row["checked_rows"])
    n_learned = sum(m.rule in LEARNED_RULES for m in all_measures)
    z = bonferroni_z(n_learned, settings.false_alarm)
    judged = []
    for m in all_measures:
        f = m.feature
        if m.rule == "missing_rate":
            if not n_ref or not n_chk:
                judged.append(Judged(m, math.nan, 0.0, 1.0, None, "no reference or checked rows"))
                continue
            hits, checked = int(row[f"{f}__reference_nulls"]), int(row[f"{f}__checked_nulls"])
            share, low, high = rate_band(hits, n_ref, checked, n_chk, settings.missing_rate_margin, z)
            judged.append(Judged(m, checked / n_chk, low, high, share, f"z={z:.2f}"))
        elif m.rule == "value_range":
            values_ref, values_chk = int(row[f"{f}__reference_values"]), int(row[f"{f}__checked_values"])
            if not values_ref or not values_chk or ranges.get(f) is None:
                judged.append(Judged(m, 0.0, 0.0, 1.0, None, "no values to compare"))
                continue
            outside_ref, outside_chk = int(row[f"{f}__reference_outside"]), int(row[f"{f}__checked_outside"])
            share, _, high = rate_band(
                outside_ref, values_ref, outside_chk, values_chk, settings.out_of_range_margin, z
            )
            low_fence, high_fence = ranges[f]
            text = f"outside [{low_fence:.6g}, {high_fence:.6g}]"
            judged.append(Judged(m, outside_chk / values_chk, 0.0, high, share, text))
        else:
            value = row[m.column]
            observed = None if value is None else float(value)
            judged.append(Judged(m, observed, m.low, m.high))
    return judged


def violation_sample_sql(table: str, measure: Measure, limit: int = 5) -> str:
    """A few rows that break a row-level rule, for the check's metadata."""
    columns = ", ".join(
        dict.fromkeys(["transaction_id", measure.feature] + ([measure.partner] if measure.partner else []))
    )
    return f"SELECT {columns} FROM {table} WHERE {measure.violation_sql} ORDER BY transaction_id LIMIT {int(limit)}"
