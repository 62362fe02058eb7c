"""The default-signal detector: values that stand in for absence.

A zero-filled (or mean-filled) history feature shows itself as one value that fills the rows whose
upstream history is missing (its availability partner is 0 there): real features keep those rows
NULL. A feature without a partner is flagged when its most common value holds a large share of the
rows, looks like a filler (0, a negative code, or the mean of the other values), and carries a label
rate sharply different from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from fraud_pipeline.features.spec import FeatureSpec, default_spec

#: Codes commonly used to fill absence.
FILLER_CODES = (0.0, -1.0, -999.0, -9999.0)


@dataclass(frozen=True)
class DetectorSettings:
    """When a frequent value counts as a default signal.

    Attributes:
        max_fill_share: Highest share of the no-history rows that may hold the most common value.
        min_no_history_rows: Fewest no-history rows needed to judge the fill share.
        min_share: For features without a partner, the share of all rows the most common value
            must hold to be examined.
        label_ratio: For those, the label rate of that value vs the rest beyond which (either way)
            a filler-looking value is flagged.
    """

    max_fill_share: float = 0.5
    min_no_history_rows: int = 10
    min_share: float = 0.02
    label_ratio: float = 3.0


def candidate_features(spec: FeatureSpec | None = None) -> list[tuple[str, str | None]]:
    """(feature, availability partner) for every real-valued feature of ``spec`` that could be filled.

    Those are the aggregates: NULL when their partner is 0 (or, for the account age, when the user
    is unknown), the absence a filler could hide. Counts and attributes have none to hide.
    """
    spec = spec or default_spec()
    return [(f.name, f.partner) for f in spec.features if f.kind == "aggregate"]


def mode_profile_sql(table: str, feature: str, partner: str | None, label: str | None) -> str:
    """One row describing the most common non-NULL value of ``feature`` in ``table``.

    With a partner the value is the most common one among the rows without upstream history (where
    an honest feature is NULL); without one, among all rows.
    """
    scope = f"WHERE {feature} IS NOT NULL" + (f" AND {partner} = 0" if partner else "")
    no_history = f"count(*) FILTER (WHERE t.{partner} = 0)" if partner else "NULL"
    filled = f"count(*) FILTER (WHERE t.{partner} = 0 AND t.{feature} = m.v)" if partner else "NULL"
    label_mode = f"avg(t.{label}::DOUBLE) FILTER (WHERE t.{feature} = m.v)" if label else "NULL"
    label_rest = f"avg(t.{label}::DOUBLE) FILTER (WHERE t.{feature} IS DISTINCT FROM m.v)" if label else "NULL"
    return f"""
        WITH m AS (
            SELECT {feature} AS v, count(*) AS n FROM {table} {scope}
            GROUP BY 1 ORDER BY n DESC, v LIMIT 1
        )
        SELECT
            m.v AS value,
            count(*) FILTER (WHERE t.{feature} = m.v) AS n_value,
            count(*) AS n_rows,
            {filled} AS n_value_without_history,
            {no_history} AS n_without_history,
            {label_mode} AS label_rate_value,
            {label_rest} AS label_rate_rest,
            avg(t.{feature}) FILTER (WHERE t.{feature} <> m.v) AS mean_rest
        FROM {table} AS t CROSS JOIN m
        GROUP BY m.v
    """


def judge(feature: str, profile: dict | None, settings: DetectorSettings) -> dict:
    """Turns one feature's mode profile into a verdict with the numbers behind it."""
    if profile is None:
        return {"feature": feature, "flagged": False, "why": "no value stands where history is missing"}
    share = profile["n_value"] / profile["n_rows"]
    value, mean_rest = profile["value"], profile["mean_rest"]
    looks_filled = value in FILLER_CODES or (
        mean_rest is not None and abs(value - mean_rest) <= 1e-9 * max(1.0, abs(mean_rest))
    )
    rate_value, rate_rest = profile["label_rate_value"], profile["label_rate_rest"]
    ratio = rate_value / rate_rest if rate_value is not None and rate_rest else None
    no_history = profile["n_without_history"]
    fill_share = profile["n_value_without_history"] / no_history if no_history else None
    reasons = []
    if no_history is not None:
        if no_history >= settings.min_no_history_rows and fill_share > settings.max_fill_share:
            reasons.append(f"{fill_share:.0%} of the {no_history} rows without upstream history hold {value!r}")
    elif (
        share >= settings.min_share
        and looks_filled
        and ratio is not None
        and (ratio >= settings.label_ratio or ratio <= 1 / settings.label_ratio)
    ):
        reasons.append(f"{share:.0%} of rows hold the filler-looking {value!r} with label rate {ratio:.2f}x the rest")
    return {
        "feature": feature,
        "flagged": bool(reasons),
        "value": value,
        "share": share,
        "fill_share_of_no_history": fill_share,
        "no_history_rows": no_history,
        "label_rate_ratio": ratio,
        "looks_filled": looks_filled,
        "why": "; ".join(reasons) or "most common value is ordinary",
    }


def detect_default_signals(
    con,
    table: str,
    label: str | None = "is_fraud",
    settings: DetectorSettings = DetectorSettings(),
    spec: FeatureSpec | None = None,
) -> list[dict]:
    """Profiles every candidate feature of ``spec`` (the default spec when None) in ``table``; one verdict each."""
    verdicts = []
    for feature, partner in candidate_features(spec):
        cur = con.execute(mode_profile_sql(table, feature, partner, label))
        row = cur.fetchone()
        profile = dict(zip([d[0] for d in cur.description], row)) if row else None
        verdicts.append(judge(feature, profile, settings))
    return verdicts
