"""Leakage guards that look at the whole feature table, not a sample.

:func:`future_independence` answers "would this number have existed at prediction time?" by
rebuilding the features from a world that ends at a cutoff (transactions before it, chargebacks
reported before it, users created before it) and requiring every feature of every transaction
before the cutoff to be unchanged. A feature that reads anything from after its transaction changes
when the future is removed.

A cutoff at midnight cannot see a leak that stays inside a day (a count computed once at the end of
the day and joined to every transaction of that day): every record of the day is on the same side
of it. :func:`intraday_cutoffs` places seeded cutoffs inside days, each exactly at a record (a
chargeback report or a transaction) whose user or merchant had transactions earlier that day, so
those transactions are compared with the record removed. For such a cutoff only the transactions of
the day before it can show an intra-day leak; they are compared after rebuilding from the records of
the spec's ``history_days`` before them (:func:`future_independence` with ``compare_days``), which
costs a fraction of a rebuild of the whole table. Both take the feature spec the table was built
with: the rebuild computes its features and every one of them is compared; the cutoffs are placed
on every key it declares.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fraud_pipeline.features.contracts import column_types
from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.features.table import transaction_features_table

#: Real-valued features may be summed in another order on a smaller table.
REL_TOL = 1e-9
#: The records an intra-day cutoff is placed at (for each key), each behind earlier same-day transactions of its key.
RECORD_KINDS = ("chargeback", "transaction")
_REAL_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL")


def cutoff_kinds(spec: FeatureSpec | None = None) -> tuple[str, ...]:
    """``{key}_{record}`` for every key of the spec: chargeback kinds first, as the leak they guard is the classic."""
    spec = spec or default_spec()
    return tuple(f"{key}_{record}" for record in RECORD_KINDS for key in spec.keys)


def _differs(column: str, sql_type: str) -> str:
    a, b = f"f.{column}", f"r.{column}"
    if not any(word in sql_type.upper() for word in _REAL_TYPES):
        return f"{a} IS DISTINCT FROM {b}"
    return (
        f"(({a} IS NULL) <> ({b} IS NULL) OR "
        f"({a} IS NOT NULL AND abs({a} - {b}) > {REL_TOL} * greatest(abs({a}), abs({b}))))"
    )


def _literal(moment: datetime) -> str:
    # a view cannot take parameters; the literal comes from a datetime, never from user text
    return f"TIMESTAMP '{moment.isoformat(sep=' ')}'"


def future_independence(
    con,
    cutoff: datetime,
    sample_size: int = 10,
    compare_days: float | None = None,
    spec: FeatureSpec | None = None,
) -> dict:
    """Rebuilds the features from records known before ``cutoff`` and compares every earlier row.

    Args:
        con: A DuckDB connection holding transactions, chargebacks, users and transaction_features.
        cutoff: Every record at or after it is removed.
        sample_size: Changed rows listed as examples.
        compare_days: None compares every transaction before the cutoff (a rebuild of everything
            before it); a number compares the transactions of that many days before it, rebuilt from
            the records of the spec's ``history_days`` before those (and the transactions the
            chargebacks in them dispute), which is all their windows read.
        spec: The feature spec the table was built with (the default spec when None).

    Returns:
        {'cutoff', 'compared', 'missing_rows', 'changed_rows', 'changed_by_feature': {feature: rows},
        'examples': [...]}
    """
    spec = spec or default_spec()
    con.execute("SET enable_progress_bar = false")
    at = _literal(cutoff)
    if compare_days is None:
        compared_from, since = "", ""
        disputed = f"event_time < {at}"
    else:
        start = cutoff - timedelta(days=compare_days)
        history = _literal(start - timedelta(days=spec.history_days))
        compared_from = f" AND r.event_time >= {_literal(start)}"
        since = f" AND reported_at >= {history}"
        disputed = (
            f"event_time < {at} AND (event_time >= {history} OR transaction_id IN "
            f"(SELECT transaction_id FROM chargebacks WHERE reported_at < {at}{since}))"
        )
    con.execute(f"CREATE OR REPLACE TEMP VIEW past_transactions AS SELECT * FROM transactions WHERE {disputed}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW past_chargebacks AS SELECT * FROM chargebacks WHERE reported_at < {at}{since}"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW past_users AS SELECT * FROM users WHERE created_at < {at}")
    rebuilt = transaction_features_table(con, "past_transactions", "past_chargebacks", "past_users", spec=spec)
    types = column_types(con, "transaction_features")
    # compared where it lies, as Arrow: a copy into a temporary table would hold the rows twice
    con.register("rebuilt_features", rebuilt)
    try:
        checks = {name: _differs(name, types.get(name, "")) for name in spec.names}
        counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in checks.items())
        any_change = " OR ".join(f"({cond})" for cond in checks.values())
        joined = (
            "FROM transaction_features AS f JOIN rebuilt_features AS r USING (transaction_id) "
            f"WHERE true{compared_from}"
        )
        row = con.execute(
            f"SELECT count(*) AS compared, count(*) FILTER (WHERE {any_change}) AS changed, {counts} {joined}"
        ).fetchall()[0]
        n_expected = con.execute(f"SELECT count(*) FROM past_transactions AS r WHERE true{compared_from}").fetchall()[
            0
        ][0]
        by_feature = {name: int(n) for name, n in zip(checks, row[2:]) if n}
        examples = []
        if by_feature:
            feature = next(iter(by_feature))
            examples = [
                {"transaction_id": t, "feature": feature, "with_future": str(a), "without_future": str(b)}
                for t, a, b in con.execute(
                    f"SELECT transaction_id, f.{feature}, r.{feature} {joined} AND ({checks[feature]}) "
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


def _cutoff_candidates_sql(kind: str, spec: FeatureSpec) -> str:
    """Records of one kind (time ``moment``, key, id) whose key had a transaction earlier the same day."""
    key, record = kind.rsplit("_", 1)
    columns = [f'"{c}"' for c in spec.keys[key]]
    picked = [f"r.{c}" for c in columns]
    key_value = picked[0] if len(picked) == 1 else f"row({', '.join(picked)})::VARCHAR"
    on = " AND ".join(f"f.{c} = r.{c}" for c in columns)
    if record == "chargeback":
        records = (
            f"SELECT c.reported_at AS moment, {', '.join(f't.{c}' for c in columns)}, c.transaction_id AS id "
            "FROM chargebacks AS c JOIN transactions AS t USING (transaction_id)"
        )
    else:
        records = f"SELECT event_time AS moment, {', '.join(columns)}, transaction_id AS id FROM transactions"
    return f"""
        WITH firsts AS (
            SELECT {", ".join(columns)}, date_trunc('day', event_time) AS day, min(event_time) AS first
            FROM transactions GROUP BY ALL
        )
        SELECT r.moment, {key_value} AS key, r.id
        FROM ({records}) AS r
        JOIN firsts AS f ON {on} AND f.day = date_trunc('day', r.moment)
        WHERE f.first < r.moment
    """


def intraday_cutoffs(con, n: int, seed: int, spec: FeatureSpec | None = None) -> list[dict]:
    """``n`` seeded cutoffs inside days, taken in turn from each of :func:`cutoff_kinds`.

    Each cutoff is the time of a record (a key's chargeback report, or transaction) whose key had a
    transaction earlier the same day: cut exactly there, a feature of those earlier transactions
    that reads the record (an end-of-day batch) changes. A kind without such records gives its
    turns to the others.

    Returns:
        One dict per cutoff: kind, cutoff (datetime), key (the key's value; a pair as text), record (its id).
    """
    spec = spec or default_spec()
    kinds = cutoff_kinds(spec)
    per_kind = {}
    for kind in kinds:
        per_kind[kind] = con.execute(
            f"SELECT * FROM ({_cutoff_candidates_sql(kind, spec)}) ORDER BY hash(id, $seed, $kind), id, moment LIMIT $n",
            {"seed": int(seed), "kind": kind, "n": int(n)},
        ).fetchall()
    chosen: list[dict] = []
    position = 0
    while len(chosen) < n and any(len(rows) > position for rows in per_kind.values()):
        for kind in kinds:
            if len(chosen) < n and len(per_kind[kind]) > position:
                moment, key, record = per_kind[kind][position]
                chosen.append({"kind": kind, "cutoff": moment, "key": key, "record": record})
        position += 1
    return chosen
