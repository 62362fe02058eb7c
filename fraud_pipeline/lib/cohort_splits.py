"""How rows are split into cohorts: a column's values, or right-open bins of a numeric column.

Evaluation reports every metric per cohort, monitoring tracks the cohorts' mix, and the decision
policy (:mod:`fraud_pipeline.lib.policy`) may give each cohort its own alert threshold; all three cut
rows the same way, with the definitions here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

#: Cohort label for rows whose cohort column is NULL.
UNKNOWN = "unknown"
#: Cohort label for non-NULL values that fall outside every bin (e.g. a negative account age).
OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True)
class CohortSpec:
    """How rows are split into cohorts.

    Attributes:
        name: Cohort name in tables (e.g. ``account_age``).
        column: Frame column the cohort is derived from.
        bins: Right-open bin edges for a numeric column; None to use the column's values as they are.
        labels: One label per bin; defaults to ``[a, b)``.
    """

    name: str
    column: str
    bins: tuple | None = None
    labels: tuple | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.bins is None:
            raise ValueError(f"cohort {self.name!r} has labels but no bins")
        if self.bins is not None and self.labels is not None and len(self.labels) != len(self.bins) - 1:
            raise ValueError(f"cohort {self.name!r} needs {len(self.bins) - 1} labels, got {len(self.labels)}")

    def bin_labels(self) -> tuple[str, ...]:
        """The bin labels in bin order (empty for a categorical cohort)."""
        if self.bins is None:
            return ()
        if self.labels is not None:
            return tuple(str(label) for label in self.labels)
        return tuple(f"[{lo:g}, {hi:g})" for lo, hi in zip(self.bins[:-1], self.bins[1:]))


DEFAULT_COHORTS = (
    CohortSpec("account_age", "account_age_days", bins=(0, 7, 30, math.inf), labels=("<7d", "7-30d", ">30d")),
    CohortSpec("channel", "channel"),
    CohortSpec("region", "country"),
)
#: The cohort splits evaluation, monitoring and the decision policy cut by, unless configured otherwise.
DEFAULT_COHORT_NAMES = tuple(c.name for c in DEFAULT_COHORTS)


def cohorts_named(names) -> tuple[CohortSpec, ...]:
    """The cohort splits of the given names: a built-in one (account_age, channel, region) or a transaction column's values.

    Args:
        names: Cohort names, e.g. ``("account_age", "channel")`` or a categorical transaction column
            such as ``"card_type"`` (its values are the cohorts).
    """
    known = {c.name: c for c in DEFAULT_COHORTS}
    return tuple(known.get(name, CohortSpec(name, name)) for name in dict.fromkeys(names))


def assign_cohort(frame: pd.DataFrame, spec: CohortSpec) -> pd.Series:
    """The cohort label of each row.

    Args:
        frame: Rows holding ``spec.column``.
        spec: The cohort definition.

    Returns:
        String labels aligned with ``frame``'s index and named ``spec.name``: the bin label (right-open
        bins) or the value itself; ``unknown`` for NULL, ``out_of_range`` for a value outside every bin.
    """
    values = frame[spec.column]
    if spec.bins is None:
        labels = values.astype(object).where(values.notna(), UNKNOWN).astype(str)
    else:
        binned = pd.cut(values.astype(float), bins=list(spec.bins), right=False, labels=list(spec.bin_labels()))
        labels = binned.astype(object).where(binned.notna(), OUT_OF_RANGE).where(values.notna(), UNKNOWN).astype(str)
    return labels.rename(spec.name)
