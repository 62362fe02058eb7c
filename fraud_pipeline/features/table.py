"""The features' DuckDB side: read the rows in time order, run the numpy engine, store the result.

:func:`transaction_features_table` is what the pipeline runs: DuckDB reads the columns the feature
spec needs and sorts the rows by time; the numpy engine (:mod:`fraud_pipeline.features.engine`)
computes the history features with one sort per key, and the result goes back to DuckDB as an Arrow
table. The values equal :func:`fraud_pipeline.features.sql.transaction_features_sql`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from fraud_pipeline.features.engine import history_features
from fraud_pipeline.features.spec import ID_COLUMNS, FeatureSpec, default_spec
from fraud_pipeline.lib.warehouse import in_row_groups, replace_tables

#: Columns of the read that carry derived attributes (prefixed, so no transaction column can collide).
_DERIVED_SQL = {
    "hour_of_day": "CAST(hour(t.event_time) AS INTEGER)",
    "account_age_days": "(epoch_us(t.event_time) - epoch_us(u.created_at)) / 1e6 / 86400.0",
}


def transaction_columns(con, transactions: str = "transactions") -> dict[str, str]:
    """Column name -> DuckDB type of a table or view."""
    relation = con.sql(f"SELECT * FROM {transactions} LIMIT 0")
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types)}


def transaction_features_table(
    con,
    transactions: str = "transactions",
    chargebacks: str = "chargebacks",
    users: str = "users",
    spec: FeatureSpec | None = None,
) -> pa.Table:
    """Every feature of every row of ``transactions``, as an Arrow table in time order.

    DuckDB reads the given tables (or views) and sorts the rows by time; the numpy engine computes
    the history features; the attributes come straight from the read. The values equal
    :func:`transaction_features_sql`'s. Register the result on the connection to store it, e.g.
    ``replace_tables(con, {"transaction_features": "SELECT * FROM f"}, sources={"f": table})``.

    Args:
        con: A DuckDB connection.
        transactions, chargebacks, users: The tables (or views) to read.
        spec: The feature spec; the built-in default spec when None.

    Raises:
        SpecError: If the spec reads a column the transactions lack, or aggregates a non-numeric one.
    """
    spec = spec or default_spec()
    spec.check_columns(transaction_columns(con, transactions))
    wanted = [c for c in spec.transaction_columns if c not in ("transaction_id", "event_time")]
    select = [f"t.{c}" for c in ID_COLUMNS] + [f"t.{c}" for c in wanted if c not in ID_COLUMNS]
    derived = [f for f in spec.attributes if f.derive]
    select += [f"{_DERIVED_SQL[f.derive]} AS _derived_{f.derive}" for f in derived]
    join = f"LEFT JOIN {users} AS u USING (user_id)" if any(f.derive == "account_age_days" for f in derived) else ""
    rows = con.sql(f"""
        SELECT {", ".join(select)}, epoch_us(t.event_time) AS _ts
        FROM {transactions} AS t {join}
        ORDER BY _ts, t.transaction_id
    """).to_arrow_table()
    rows = _in_one_chunk(rows)
    label_keys = [
        c
        for c in dict.fromkeys(
            c for f in spec.aggregates if f.agg in ("label_count", "label_rate") for c in spec.keys[f.key]
        )
    ]
    known = con.sql(f"""
        SELECT {"".join(f"t.{c}, " for c in label_keys)}epoch_us(c.reported_at) AS _ts
        FROM {chargebacks} AS c JOIN {transactions} AS t USING (transaction_id)
    """).to_arrow_table()

    if spec == default_spec():
        # the default spec goes through history_arrays, the seam tests inject known mistakes into
        computed = history_arrays(
            *(_numpy(rows[c]) for c in ("user_id", "merchant_id", "_ts", "amount")),
            *(_numpy(known[c]) for c in ("user_id", "merchant_id", "_ts")),
        )
    else:
        # only what the engine aggregates: an attribute column goes to the output as Arrow, never to numpy
        engine_columns = dict.fromkeys([*spec.key_columns, *(f.of for f in spec.aggregates if f.of)])
        computed = spec_arrays(
            spec,
            {c: _numpy(rows[c]) for c in engine_columns},
            _numpy(rows["_ts"]),
            {c: _numpy(known[c]) for c in label_keys},
            _numpy(known["_ts"]),
        )
    output = {name: rows[name] for name in ID_COLUMNS}
    for f in spec.features:
        if f.derive:
            output[f.name] = rows[f"_derived_{f.derive}"]
        elif f.column:
            output[f.name] = rows[f.column]
        else:
            output[f.name] = computed[f.name]
    return in_row_groups(pa.table(output))


def _in_one_chunk(table: pa.Table) -> pa.Table:
    """The table with every column in one contiguous chunk, combined a column at a time.

    DuckDB hands a large result over in many batches. Combined once here, the engine's numpy view
    of a column and the stored table's re-batching (:func:`in_row_groups`) are both zero-copy,
    instead of a copy each; and since each column's batches are dropped as soon as it is combined,
    only one column is ever held twice.
    """
    schema, columns = table.schema, []
    for _ in range(table.num_columns):
        columns.append(table.column(0).combine_chunks())
        table = table.remove_column(0)
    return pa.Table.from_arrays(columns, schema=schema)


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as numpy: plain where it has no NULLs, else masked (numbers) or objects with None."""
    if column.null_count == 0:
        return column.to_numpy()
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return np.ma.masked_array(column.fill_null(0).to_numpy(), mask=column.is_null().to_numpy())
    return column.to_numpy(zero_copy_only=False)


def _arrow(computed) -> dict[str, pa.Array]:
    return {
        name: pa.array(column.values, mask=None if column.valid is None else ~column.valid)
        for name, column in computed.items()
    }


def spec_arrays(
    spec: FeatureSpec,
    columns: Mapping[str, np.ndarray],
    ts: np.ndarray,
    label_columns: Mapping[str, np.ndarray],
    label_ts: np.ndarray,
) -> dict[str, pa.Array]:
    """A spec's history features as Arrow arrays, NULL where a value is absent.

    Arguments as :func:`fraud_pipeline.features.engine.history_features` takes them.
    """
    return _arrow(history_features(spec, columns, ts, label_columns, label_ts))


def history_arrays(
    user: np.ndarray,
    merchant: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
    chargeback_user: np.ndarray,
    chargeback_merchant: np.ndarray,
    chargeback_ts: np.ndarray,
) -> dict[str, pa.Array]:
    """The default spec's history features as Arrow arrays, NULL where a value is absent.

    One entry per transaction in time order, times in epoch microseconds, and the chargebacks known
    at as_of (the disputed transaction's user and merchant, and ``reported_at``).
    """
    return spec_arrays(
        default_spec(),
        {"user_id": user, "merchant_id": merchant, "amount": amount},
        ts,
        {"user_id": chargeback_user, "merchant_id": chargeback_merchant},
        chargeback_ts,
    )


def store_transaction_features(
    con,
    table: str = "transaction_features",
    transactions: str = "transactions",
    chargebacks: str = "chargebacks",
    users: str = "users",
    spec: FeatureSpec | None = None,
) -> dict:
    """Computes :func:`transaction_features_table` and replaces ``table`` with it in one transaction.

    Returns:
        {'rows': the stored row count, 'null_share': {feature: share of NULLs}}, read off the Arrow
        columns (which count their NULLs) instead of scanning the stored table again.
    """
    spec = spec or default_spec()
    computed = transaction_features_table(con, transactions, chargebacks, users, spec)
    replace_tables(con, {table: "SELECT * FROM computed_features"}, sources={"computed_features": computed})
    rows = computed.num_rows
    return {
        "rows": rows,
        "null_share": {f.name: (computed.column(f.name).null_count / rows if rows else 0.0) for f in spec.features},
    }
