"""The point-in-time features of a feature spec as one portable SQL statement, for a warehouse without a Python engine.

Every window is a RANGE frame ending ``1 PRECEDING`` on the microsecond epoch, so that other
transactions at the very same microsecond are excluded too. Chargebacks enter as events at their
``reported_at`` on the keys of the transaction they dispute; transaction aggregates partition on
(key, event kind) so the chargeback events stay out of them, label aggregates count those events. A
transaction whose key value is NULL has no history on that key. The tests hold this statement equal
to the numpy engine (:mod:`fraud_pipeline.features.table`) and to the naive oracle.
"""

from __future__ import annotations

from fraud_pipeline.features.spec import ID_COLUMNS, FeatureSpec, default_spec

#: The aggregates computed over the key's earlier transactions (the rest count label events).
_TRANSACTION_AGGS = ("count", "sum", "mean", "max", "std", "distinct", "time_since_previous", "ratio_to_mean")


def _frame(micros: int) -> str:
    return f"RANGE BETWEEN {micros} PRECEDING AND 1 PRECEDING"


def _q(column: str) -> str:
    return f'"{column}"'


def transaction_features_sql(
    transactions: str = "transactions",
    chargebacks: str = "chargebacks",
    users: str = "users",
    spec: FeatureSpec | None = None,
) -> str:
    """Returns the SELECT that computes every feature of ``spec`` for every row of ``transactions``.

    Reads the given tables (or views). The caller is responsible for ``chargebacks`` holding only
    what was known at as_of (the windows already exclude anything reported at or after each
    transaction). Rows come in no particular order; sort on ``transaction_id`` when order matters.

    Args:
        transactions, chargebacks, users: Table or view names.
        spec: The feature spec (the default spec when None).
    """
    spec = spec or default_spec()
    key_columns = list(dict.fromkeys(c for columns in spec.keys.values() for c in columns))
    read = list(dict.fromkeys([*ID_COLUMNS, *key_columns, *(c for c in spec.transaction_columns)]))
    read = [c for c in read if c not in ("transaction_id", "event_time")]
    groups: dict[tuple[str, int], int] = {}
    for f in spec.aggregates:
        groups.setdefault((f.key, f.window_us), len(groups))

    windows, history = [], []
    for (key, width), g in groups.items():
        partition = ", ".join(_q(c) for c in spec.keys[key])
        windows.append(f"w{g}_tx AS (PARTITION BY {partition}, cb ORDER BY ts {_frame(width)})")
        windows.append(f"w{g}_all AS (PARTITION BY {partition} ORDER BY ts {_frame(width)})")
        history.append(f"count(tx) OVER w{g}_tx AS _n{g}")
    for j, f in enumerate(spec.aggregates):
        g = groups[(f.key, f.window_us)]
        x = _q(f.of) if f.of else None
        raw = {
            "sum": f"sum({x}) OVER w{g}_tx",
            "mean": f"sum({x}) OVER w{g}_tx",
            "ratio_to_mean": f"sum({x}) OVER w{g}_tx",
            "max": f"max({x}) OVER w{g}_tx",
            "std": f"stddev_pop({x}) OVER w{g}_tx",
            "distinct": f"count(DISTINCT {x}) OVER w{g}_tx",
            "time_since_previous": f"max(ts) OVER w{g}_tx",
            "label_count": f"count(cb) OVER w{g}_all",
            "label_rate": f"count(cb) OVER w{g}_all",
        }.get(f.agg)
        if raw is not None:
            history.append(f"{raw} AS _f{j}")

    outputs = []
    for f in spec.attributes:
        if f.derive == "hour_of_day":
            outputs.append(f"CAST(hour(h.event_time) AS INTEGER) AS {f.name}")
        elif f.derive == "account_age_days":
            outputs.append(f"(h.ts - epoch_us(u.created_at)) / 1e6 / 86400.0 AS {f.name}")
        else:
            outputs.append(f"h.{_q(f.column)} AS {f.name}")
    for j, f in enumerate(spec.aggregates):
        g = groups[(f.key, f.window_us)]
        known = " AND ".join(f"h.{_q(c)} IS NOT NULL" for c in spec.keys[f.key])
        n = f"h._n{g}"
        value = {
            "count": n,
            "label_count": f"h._f{j}",
            "sum": f"h._f{j}",
            "mean": f"h._f{j} / {n}",
            "max": f"h._f{j}",
            "std": f"h._f{j}",
            "distinct": f"h._f{j}",
            "time_since_previous": f"(h.ts - h._f{j}) / 1e6",
            "ratio_to_mean": f"h.{_q(f.of or '')} / (h._f{j} / {n})",
            "label_rate": f"h._f{j} / {n}",
        }[f.agg]
        # no history on a NULL key: a count of 0, every other aggregate NULL (as over an empty window)
        if f.kind == "count":
            outputs.append(f"CASE WHEN {known} THEN {value} ELSE 0 END AS {f.name}")
        else:
            outputs.append(f"CASE WHEN {known} AND {n} > 0 THEN {value} END AS {f.name}")
    keep = ", ".join(_q(c) for c in read)
    nulls = ", ".join(f"NULL AS {_q(c)}" for c in read if c not in key_columns)
    cb_keys = ", ".join(f"t.{_q(c)}" for c in key_columns)
    cb_select = ", ".join(x for x in [", ".join(_q(c) for c in key_columns), nulls] if x)
    ids = ", ".join(f"h.{c}" for c in ID_COLUMNS)
    ages = any(f.derive == "account_age_days" for f in spec.attributes)
    join_users = f"LEFT JOIN {users} AS u ON u.user_id = h.user_id" if ages else ""
    sep = ",\n                "
    return f"""
        WITH
        known_chargebacks AS (
            SELECT {cb_keys}, epoch_us(c.reported_at) AS ts
            FROM {chargebacks} AS c
            JOIN {transactions} AS t USING (transaction_id)
        ),
        events AS (
            SELECT transaction_id, event_time, {keep}, epoch_us(event_time) AS ts, 1 AS tx, NULL::INTEGER AS cb
            FROM {transactions}
            UNION ALL BY NAME
            SELECT NULL AS transaction_id, NULL AS event_time, {cb_select}, ts, NULL AS tx, 1 AS cb
            FROM known_chargebacks
        ),
        history AS (
            SELECT *,
                {sep.join(history)}
            FROM events
            WINDOW
            {sep.join(windows)}
            QUALIFY tx IS NOT NULL
        )
        SELECT
            {ids},
            {sep.join(outputs)}
        FROM history AS h
        {join_users}
    """
