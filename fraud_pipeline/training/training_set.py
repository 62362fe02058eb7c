"""The training set: point-in-time features joined with mature as-of labels, split by window."""

from __future__ import annotations

import pandas as pd

from fraud_pipeline.lib.warehouse import fetch_frame
from fraud_pipeline.training.windows import TrainingWindows


def training_set_sql(windows: TrainingWindows) -> tuple[str, dict]:
    """SELECT of feature rows whose transaction lies in a window and whose label is mature."""
    cases = "\n".join(
        f"WHEN f.event_time >= CAST($start_{name} AS TIMESTAMP) AND f.event_time < CAST($end_{name} AS TIMESTAMP) THEN '{name}'"
        for name in windows.splits()
    )
    params = {}
    for name, (start, end) in windows.splits().items():
        params[f"start_{name}"] = start
        params[f"end_{name}"] = end
    sql = f"""
        SELECT * FROM (
            SELECT CASE {cases} END AS split, f.*, l.is_fraud, l.label_known_at
            FROM transaction_features AS f
            JOIN transaction_labels AS l USING (transaction_id)
            WHERE l.is_mature
        )
        WHERE split IS NOT NULL
        ORDER BY transaction_id
    """
    return sql, params


def load_split(con, split: str) -> pd.DataFrame:
    """One split of ``training_set`` as a pandas frame (model I/O is the one place pandas holds rows)."""
    return fetch_frame(con, "SELECT * FROM training_set WHERE split = $split ORDER BY transaction_id", {"split": split})
