"""Per-feature drift (PSI and KS) next to cohort-mix shift, between a reference and a current sample.

Feature drift and population shift are different questions. A per-feature test compares one marginal
histogram at a time; a cohort that triples from 1% to 3% of traffic barely moves any histogram (or
the cohort-mix PSI, which is dominated by the large cohorts), yet if the model fails on that cohort
the business notices. The table therefore puts the cohort shares, their ratio and the cohort's share
of frauds beside the feature PSI, and labels what each feature's drift can and cannot mean.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from fraud_pipeline.evaluation.metrics import CohortSpec, assign_cohort

#: Share floor of an empty bin, so that PSI stays finite (the usual 1e-4 convention).
EPSILON = 1e-4
#: Label of the explicit NULL bin; absence is compared as its own category, never imputed.
NULL_BIN = "NULL"
#: Chargeback counts and rates are lagged labels: they move with the fraud rate itself (the business
#: metric that notices, weeks late), not with the inputs of the population.
OUTCOME_MARKER = "chargeback"
#: Conventional PSI reading: below 0.1 quiet, 0.1-0.25 moderate, above 0.25 major.
PSI_QUIET, PSI_MAJOR = 0.1, 0.25


def _psi_from_shares(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.maximum(reference, EPSILON)
    cur = np.maximum(current, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _shares(labels: pd.Series, bins: list) -> np.ndarray:
    counts = labels.value_counts().reindex(bins, fill_value=0).to_numpy(dtype=float)
    total = counts.sum()
    return counts / total if total else counts


def numeric_bins(reference: pd.Series, n_bins: int = 10) -> np.ndarray:
    """Inner edges of up to ``n_bins`` quantile bins of the reference's non-NULL values (duplicates merged)."""
    values = reference.dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return np.array([])
    quantiles = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.unique(quantiles)


def _bin_numeric(values: pd.Series, edges: np.ndarray) -> pd.Series:
    """Bin index as a string (right-closed on the reference quantiles), NULL as its own bin."""
    index = np.searchsorted(edges, values.to_numpy(dtype=float), side="left").astype(str)
    return pd.Series(np.where(values.isna().to_numpy(), NULL_BIN, index), index=values.index)


def psi(reference: pd.Series, current: pd.Series, categorical: bool = False, n_bins: int = 10) -> float:
    """Population stability index of one feature.

    Numeric features are binned on the reference's quantiles; categorical ones use their values.
    NULL is a bin of its own in both cases, so a change in missingness is drift too.

    Args:
        reference: The feature in the reference sample (e.g. the training window).
        current: The feature in the current sample (e.g. the last 30 days of traffic).
        categorical: Whether to compare values rather than quantile bins.
        n_bins: Quantile bins of a numeric feature (before the NULL bin).

    Returns:
        sum over bins of (current share - reference share) * ln(current share / reference share), with
        empty bins floored at ``EPSILON``; NaN if either sample is empty.
    """
    if len(reference) == 0 or len(current) == 0:
        return math.nan
    if categorical:
        ref_labels = reference.astype(object).where(reference.notna(), NULL_BIN).astype(str)
        cur_labels = current.astype(object).where(current.notna(), NULL_BIN).astype(str)
    else:
        edges = numeric_bins(reference, n_bins)
        ref_labels, cur_labels = _bin_numeric(reference, edges), _bin_numeric(current, edges)
    bins = sorted(set(ref_labels.unique()) | set(cur_labels.unique()))
    return _psi_from_shares(_shares(ref_labels, bins), _shares(cur_labels, bins))


def ks(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value on the non-NULL values (NaN if either has none)."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return math.nan, math.nan
    result = ks_2samp(ref, cur, method="asymp")
    return float(result.statistic), float(result.pvalue)


def _feature_kind(name: str, cohort_columns: set[str]) -> str:
    if name in cohort_columns:
        return "cohort key"
    if OUTCOME_MARKER in name:
        return "lagged outcome"
    return "behaviour"


def _verdict(value: float) -> str:
    if value != value:
        return "n/a"
    return "quiet" if value < PSI_QUIET else ("moderate" if value < PSI_MAJOR else "major")


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: tuple[str, ...],
    categorical: tuple[str, ...],
    cohorts: tuple[CohortSpec, ...],
    n_bins: int = 10,
) -> list[dict]:
    """PSI and KS of every feature between two samples, each labelled with what its drift means.

    Args:
        reference: Feature rows of the reference sample.
        current: Feature rows of the current sample.
        features: Feature columns to compare.
        categorical: Which of them are categorical (no KS).
        cohorts: Cohort definitions; a feature that defines a cohort is a ``cohort key``, its shift is
            the cohort-mix shift.
        n_bins: Quantile bins of numeric features.

    Returns:
        One row per feature: feature, kind (``behaviour``, ``lagged outcome`` or
        ``cohort key``), psi,
        ks, ks_pvalue, null_share_reference, null_share_current and verdict (quiet < 0.1 <= moderate
        < 0.25 <= major, on PSI).
    """
    cohort_columns = {spec.column for spec in cohorts}
    rows = []
    for name in features:
        is_categorical = name in categorical
        value = psi(reference[name], current[name], categorical=is_categorical, n_bins=n_bins)
        statistic, pvalue = (math.nan, math.nan) if is_categorical else ks(reference[name], current[name])
        rows.append(
            {
                "feature": name,
                "kind": _feature_kind(name, cohort_columns),
                "psi": value,
                "ks": statistic,
                "ks_pvalue": pvalue,
                "null_share_reference": float(reference[name].isna().mean()) if len(reference) else math.nan,
                "null_share_current": float(current[name].isna().mean()) if len(current) else math.nan,
                "verdict": _verdict(value),
            }
        )
    return rows


def cohort_mix(reference: pd.DataFrame, current: pd.DataFrame, cohorts: tuple[CohortSpec, ...]) -> list[dict]:
    """Each cohort's share of transactions in both samples, the share ratio and the cohort-mix PSI.

    Args:
        reference: Rows of the reference sample with every cohort's column (and ``is_fraud`` if known).
        current: Rows of the current sample with every cohort's column.
        cohorts: Cohort definitions.

    Returns:
        One row per cohort value: cohort, value, n_reference, n_current, share_reference,
        share_current, share_ratio (current / reference share; inf for a cohort new in the current
        sample), psi_term (its contribution to the cohort's mix PSI), mix_psi (the cohort's whole mix
        PSI, repeated on each of its rows) and, when the reference has labels, fraud_share_reference
        (the cohort's share of the reference's frauds).
    """
    rows = []
    for spec in cohorts:
        ref_labels, cur_labels = assign_cohort(reference, spec), assign_cohort(current, spec)
        values = sorted(
            set(ref_labels.unique()) | set(cur_labels.unique()),
            key=lambda v: (spec.bin_labels().index(v) if v in spec.bin_labels() else len(spec.bin_labels()), v),
        )
        ref_counts = ref_labels.value_counts().reindex(values, fill_value=0)
        cur_counts = cur_labels.value_counts().reindex(values, fill_value=0)
        ref_share, cur_share = _shares(ref_labels, values), _shares(cur_labels, values)
        terms = (np.maximum(cur_share, EPSILON) - np.maximum(ref_share, EPSILON)) * np.log(
            np.maximum(cur_share, EPSILON) / np.maximum(ref_share, EPSILON)
        )
        frauds = None
        if "is_fraud" in reference and reference["is_fraud"].any():
            frauds = (
                ref_labels[reference["is_fraud"].astype(bool).to_numpy()].value_counts().reindex(values, fill_value=0)
            )
            frauds = frauds / frauds.sum()
        for i, value in enumerate(values):
            row = {
                "cohort": spec.name,
                "value": value,
                "n_reference": int(ref_counts.iloc[i]),
                "n_current": int(cur_counts.iloc[i]),
                "share_reference": float(ref_share[i]),
                "share_current": float(cur_share[i]),
                "share_ratio": float(cur_share[i] / ref_share[i]) if ref_share[i] else math.inf,
                "psi_term": float(terms[i]),
                "mix_psi": float(terms.sum()),
            }
            if frauds is not None:
                row["fraud_share_reference"] = float(frauds.iloc[i])
            rows.append(row)
    return rows


def mix_shift_findings(mix: list[dict], max_share_ratio: float, min_share: float, max_mix_psi: float) -> list[str]:
    """The cohort-mix shifts beyond the thresholds, as sentences.

    A cohort counts when it holds at least ``min_share`` of either sample and its share moved by more
    than a factor ``max_share_ratio`` either way, or when a cohort's whole mix PSI exceeds ``max_mix_psi``.
    """
    findings = []
    for row in mix:
        if max(row["share_reference"], row["share_current"]) < min_share:
            continue
        ratio = row["share_ratio"]
        if ratio > max_share_ratio or ratio < 1.0 / max_share_ratio:
            findings.append(
                f"{row['cohort']}={row['value']}: {row['share_reference']:.1%} -> {row['share_current']:.1%} "
                f"of traffic (x{ratio:.2f})"
            )
    for name in dict.fromkeys(row["cohort"] for row in mix):
        total = next(row["mix_psi"] for row in mix if row["cohort"] == name)
        if total > max_mix_psi:
            findings.append(f"{name} mix PSI {total:.3f} > {max_mix_psi}")
    return findings
