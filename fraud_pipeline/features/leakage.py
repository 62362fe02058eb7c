"""Leakage guards that look at the whole feature table, not a sample.

:func:`future_independence` answers "would this number have existed at prediction time?" by
rebuilding the features from a world that ends at a cutoff (transactions before it, chargebacks
reported before it, users created before it) and requiring every feature of every transaction
before the cutoff to be unchanged. A feature that reads anything from after its transaction changes
when the future is removed.
"""

from __future__ import annotations

from datetime import datetime

from fraud_pipeline.features.catalog import FEATURES
from fraud_pipeline.features.table import transaction_features_table

#: Real-valued features may be summed in another order on a smaller table.
REL_TOL = 1e-9


def _differs(column: str, kind: str) -> str:
    a, b = f"f.{column}", f"r.{column}"
    if kind == "count" or column in {"channel", "mcc", "country", "hour_of_day"}:
        return f"{a} IS DISTINCT FROM {b}"
    return (
        f"(({a} IS NULL) <> ({b} IS NULL) OR "
        f"({a} IS NOT NULL AND abs({a} - {b}) > {REL_TOL} * greatest(abs({a}), abs({b}))))"
    )


def future_independence(con, cutoff: datetime, sample_size: int = 10) -> dict:
    """Rebuilds the features from records known before ``cutoff`` and compares every earlier row.

    Returns:
        {'cutoff', 'compared', 'changed_rows', 'changed_by_feature': {feature: rows}, 'examples': [...]}
    """
    con.execute("SET enable_progress_bar = false")
    # a view cannot take parameters; the literal comes from a datetime, never from user text
    at = f"TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
    con.execute(f"CREATE OR REPLACE TEMP VIEW past_transactions AS SELECT * FROM transactions WHERE event_time < {at}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW past_chargebacks AS SELECT * FROM chargebacks WHERE reported_at < {at}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW past_users AS SELECT * FROM users WHERE created_at < {at}")
    rebuilt = transaction_features_table(con, "past_transactions", "past_chargebacks", "past_users")
    # compared where it lies, as Arrow: a copy into a temporary table would hold the rows twice
    con.register("rebuilt_features", rebuilt)
    try:
        checks = {f.name: _differs(f.name, f.kind) for f in FEATURES}
        counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in checks.items())
        any_change = " OR ".join(f"({cond})" for cond in checks.values())
        joined = "FROM transaction_features AS f JOIN rebuilt_features AS r USING (transaction_id)"
        row = con.execute(
            f"SELECT count(*) AS compared, count(*) FILTER (WHERE {any_change}) AS changed, {counts} {joined}"
        ).fetchall()[0]
        n_expected = con.execute("SELECT count(*) FROM past_transactions").fetchall()[0][0]
        by_feature = {name: int(n) for name, n in zip(checks, row[2:]) if n}
        examples = []
        if by_feature:
            feature = next(iter(by_feature))
            examples = [
                {"transaction_id": int(t), "feature": feature, "with_future": str(a), "without_future": str(b)}
                for t, a, b in con.execute(
                    f"SELECT transaction_id, f.{feature}, r.{feature} {joined} WHERE {checks[feature]} "
                    f"ORDER BY transaction_id LIMIT {int(sample_size)}"
                ).fetchall()
            ]
    finally:
        con.unregister("rebuilt_features")
    return {
        "cutoff": cutoff.isoformat(),
        "compared": int(row[0]),
        "missing_rows": int(n_expected - row[0]),
        "changed_rows": int(row[1]),
        "changed_by_feature": by_feature,
        "examples": examples,
    }
