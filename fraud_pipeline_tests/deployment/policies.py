"""Decision policies built by hand for the serving, card and registry tests: cells and thresholds chosen, not fitted."""

from __future__ import annotations

from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.policy import CellChoice, DecisionPolicy


def hand_policy(global_threshold: float, split: CohortSpec, thresholds: dict[str, float], **extra) -> DecisionPolicy:
    """A policy over one split whose cells (``name=value``) get the given thresholds, with made-up evidence.

    Args:
        global_threshold: The threshold of a cell the policy does not know.
        split: The split the cells are values of.
        thresholds: Value -> its cell's threshold.
        extra: Further :class:`DecisionPolicy` fields (``selection``, ``prior_frauds``).
    """
    cells = tuple(
        CellChoice(
            cell=f"{split.name}={value}",
            n_rows=1000 + 10 * i,
            n_frauds=20 + i,
            own_weight=(20 + i) / (35 + i),
            own_threshold=threshold,
            threshold=threshold,
            validation_cost=1234.5 + i,
            validation_alerts=40 + i,
        )
        for i, (value, threshold) in enumerate(sorted(thresholds.items()))
    )
    return DecisionPolicy(global_threshold=global_threshold, splits=(split,), cells=cells, **extra)
