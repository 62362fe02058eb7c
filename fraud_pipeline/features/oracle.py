"""A naive, independent recomputation of the point-in-time features of a spec, one transaction at a time.

It shares no code with the engine in :mod:`fraud_pipeline.features.engine` or the SQL: for each
transaction and each feature of the spec it takes the raw records of the transaction's key (its
earlier transactions, and the chargebacks on the key's transactions) and keeps those known strictly
before the transaction, inside the window. It is slow on purpose (clear over clever) and is the
reference that the engine, the SQL and the pandas reference are compared with.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraud_pipeline.features.spec import FeatureSpec, default_spec

_US = 10**6


def _micros(series: pd.Series) -> np.ndarray:
    return series.astype("datetime64[us]").to_numpy().astype(np.int64)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _key_of(values: dict[str, list], columns: tuple[str, ...], row: int) -> tuple | None:
    """The key value of one row (``values``: column -> its values as Python objects) as a tuple, or None
    when any of its columns is NULL."""
    value = tuple(values[c][row] for c in columns)
    return None if any(_missing(v) for v in value) else value


def _rows_by_key(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[tuple, np.ndarray]:
    """Key value (a tuple) -> the positions of the frame's rows holding it (rows with a NULL key are in none)."""
    groups = frame.groupby(list(columns), dropna=True, sort=False).indices
    return {(key if isinstance(key, tuple) else (key,)): rows for key, rows in groups.items()}


def _value(feature, t: int, own, times: np.ndarray, values: np.ndarray | None, labels: np.ndarray, n: int):
    """One aggregate from the key's earlier transactions (``times``, ``values``) and label times in the window."""
    agg = feature.agg
    if agg == "count":
        return n
    if agg == "label_count":
        return int(len(labels))
    if n == 0:
        return None
    if agg == "label_rate":
        return len(labels) / n
    if agg == "time_since_previous":
        return (t - int(times.max())) / _US
    if agg == "distinct":
        return len({v for v in values if not _missing(v)})
    present = np.asarray([float(v) for v in values if not _missing(v)], dtype=float)
    if agg == "sum":
        return float(present.sum()) if len(present) else None
    if agg == "mean":
        return float(present.sum()) / n if len(present) else None
    if agg == "ratio_to_mean":
        mean = float(present.sum()) / n if len(present) else None
        return None if mean is None or _missing(own) else float(own) / mean
    if agg == "max":
        return float(present.max()) if len(present) else None
    if agg == "std":
        return float(present.std()) if len(present) else None
    raise ValueError(f"unknown agg {agg!r}")


def recompute_features(
    transactions: pd.DataFrame,
    chargebacks: pd.DataFrame,
    users: pd.DataFrame,
    transaction_ids: list | None = None,
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """Recomputes every feature of ``spec`` for the given transactions from raw records known before each one.

    Args:
        transactions: All transactions (transaction_id, event_time and every column the spec reads).
        chargebacks: Chargebacks known at as_of (transaction_id, reported_at).
        users: Users (user_id, created_at).
        transaction_ids: The transactions to recompute; all when None.
        spec: The feature spec (the default spec when None).

    Returns:
        One row per requested transaction with transaction_id and every feature of the spec.
    """
    spec = spec or default_spec()
    tx = transactions.reset_index(drop=True)
    tx_us = _micros(tx["event_time"])
    row_of = {t: i for i, t in enumerate(tx["transaction_id"].tolist())}
    disputed = np.array([row_of[t] for t in chargebacks["transaction_id"].tolist()], dtype=np.int64)
    reported = _micros(chargebacks["reported_at"]) if len(chargebacks) else np.array([], dtype=np.int64)
    created = dict(zip(users["user_id"].to_numpy().tolist(), _micros(users["created_at"]).tolist()))

    rows_of_key = {name: _rows_by_key(tx, columns) for name, columns in spec.keys.items()}
    column = {f.of: tx[f.of].to_numpy() for f in spec.aggregates if f.of}
    read = dict.fromkeys(
        [*(c for columns in spec.keys.values() for c in columns), "transaction_id", "user_id"]
        + [f.column for f in spec.attributes if f.column]
        + [f.of for f in spec.aggregates if f.of]
    )
    values_of = {c: tx[c].tolist() for c in read}
    hours = tx["event_time"].dt.hour.tolist()
    labels_of_key: dict[str, dict[tuple, list[int]]] = {}
    for name, columns in spec.keys.items():
        by_key: dict[tuple, list[int]] = {}
        for c, row in enumerate(disputed):
            key = _key_of(values_of, columns, int(row))
            if key is not None:
                by_key.setdefault(key, []).append(int(reported[c]))
        labels_of_key[name] = {key: np.asarray(times, dtype=np.int64) for key, times in by_key.items()}

    wanted = tx["transaction_id"].tolist() if transaction_ids is None else list(transaction_ids)
    out = []
    for transaction_id in wanted:
        i = row_of[transaction_id.item() if hasattr(transaction_id, "item") else transaction_id]
        t = int(tx_us[i])
        row: dict[str, object] = {"transaction_id": values_of["transaction_id"][i]}
        for f in spec.attributes:
            if f.derive == "hour_of_day":
                row[f.name] = int(hours[i])
            elif f.derive == "account_age_days":
                user = values_of["user_id"][i]
                row[f.name] = (t - created[user]) / _US / 86_400.0 if user in created else None
            else:
                row[f.name] = values_of[f.column][i]
        for f in spec.aggregates:
            key = _key_of(values_of, spec.keys[f.key], i)
            if key is None:
                row[f.name] = 0 if f.kind == "count" else None
                continue
            same = rows_of_key[f.key][key]
            earlier = same[(tx_us[same] < t) & (tx_us[same] >= t - f.window_us)]
            labels = labels_of_key[f.key].get(key, np.array([], dtype=np.int64))
            labels = labels[(labels < t) & (labels >= t - f.window_us)]
            values = column[f.of][earlier] if f.of else None
            own = values_of[f.of][i] if f.of else None
            row[f.name] = _value(f, t, own, tx_us[earlier], values, labels, len(earlier))
        out.append(row)
    return pd.DataFrame(out, columns=["transaction_id", *spec.names])


#: Absolute tolerance of a standard deviation (a windowed variance may be taken from running sums).
STD_ABS_TOL = 1e-6


def compare_features(
    expected: pd.DataFrame, actual: pd.DataFrame, rel_tol: float = 1e-9, spec: FeatureSpec | None = None
) -> pd.DataFrame:
    """Lists every (transaction, feature) where two feature frames disagree.

    Counts, categories and NULL-ness must match exactly; real-valued aggregates within ``rel_tol``
    (a windowed sum may add the same numbers in another order); a standard deviation within
    ``rel_tol`` or :data:`STD_ABS_TOL` times the larger magnitude plus one.

    Returns:
        One row per mismatch: transaction_id, feature, expected, actual. Empty when they agree.
    """
    spec = spec or default_spec()
    merged = expected.merge(actual, on="transaction_id", how="outer", suffixes=("_expected", "_actual"), indicator=True)
    tolerance = {f.name: (STD_ABS_TOL if f.agg == "std" else 0.0) for f in spec.features}
    mismatches = []
    for _, row in merged.iterrows():
        if row["_merge"] != "both":
            mismatches.append((row["transaction_id"], "<row>", row["_merge"], None))
            continue
        for name in spec.names:
            a, b = row[f"{name}_expected"], row[f"{name}_actual"]
            if not _same(a, b, rel_tol, tolerance[name]):
                mismatches.append((row["transaction_id"], name, a, b))
    return pd.DataFrame(mismatches, columns=["transaction_id", "feature", "expected", "actual"])


def _same(a: object, b: object, rel_tol: float, abs_scale: float = 0.0) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    a, b = float(a), float(b)
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_scale * (1.0 + max(abs(a), abs(b))))


def strata(spec: FeatureSpec | None = None) -> dict[str, tuple[str, str]]:
    """Where a leak inside a day shows: stratum name -> (key, record kind), for every key of the spec.

    A stratum holds the transactions whose key has a record of that kind (a chargeback report or a
    transaction) later the same day.
    """
    spec = spec or default_spec()
    return {f"{key}_{kind}_later_that_day": (key, kind) for key in spec.keys for kind in ("chargeback", "transaction")}


def _strata_sql(spec: FeatureSpec) -> str:
    """Per transaction: its key columns and, per key, whether a chargeback or a transaction of the key comes later that day."""
    keys = [f'"{c}"' for c in dict.fromkeys(c for columns in spec.keys.values() for c in columns)]
    ctes, lasts, flags, joins = [], [], [], []
    for key, columns in spec.keys.items():
        cols = [f'"{c}"' for c in columns]
        known = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        ctes.append(
            f"last_{key}_chargeback AS (SELECT {', '.join(cols)}, day, max(reported_at) AS last FROM known "
            f"WHERE {known} GROUP BY ALL)"
        )
        lasts.append(f"max(event_time) OVER (PARTITION BY {', '.join(cols)}, day) AS {key}_last")
        on = " AND ".join(f"c_{key}.{c} = tx.{c}" for c in cols)
        joins.append(f"LEFT JOIN last_{key}_chargeback AS c_{key} ON {on} AND c_{key}.day = tx.day")
        flags.append(f"coalesce(c_{key}.last > tx.event_time, false) AS {key}_chargeback_later")
        known_here = " AND ".join(f"tx.{c} IS NOT NULL" for c in cols)
        flags.append(f"coalesce({known_here} AND tx.{key}_last > tx.event_time, false) AS {key}_transaction_later")
    return f"""
        WITH known AS (
            SELECT {", ".join(f"t.{c}" for c in keys)}, c.reported_at, date_trunc('day', c.reported_at) AS day
            FROM chargebacks AS c JOIN transactions AS t USING (transaction_id)
        ),
        {", ".join(ctes)},
        tx AS (
            SELECT transaction_id, {", ".join(keys)}, event_time, day, {", ".join(lasts)}
            FROM (SELECT *, date_trunc('day', event_time) AS day FROM transactions)
        )
        SELECT tx.transaction_id, {", ".join(f"tx.{c}" for c in keys)}, {", ".join(flags)}
        FROM tx
        {" ".join(joins)}
    """


def choose_sample(
    con, sample_size: int, seed: int, targeted_size: int = 0, spec: FeatureSpec | None = None
) -> dict[str, int]:
    """Creates the temporary table ``oracle_sample`` (transaction_id and the key columns): a seeded
    uniform sample plus ``targeted_size`` rows split evenly over the spec's :func:`strata`.

    A leak that stays inside a day (a count computed at the end of the day and joined to every
    transaction of it) touches only the transactions whose key has a record later that day: a few
    hundred rows in half a million, which a uniform sample rarely draws. A stratum smaller than its
    share is taken whole.

    Returns:
        Rows drawn per part (``uniform`` and each stratum; a row drawn twice counts in each).
    """
    spec = spec or default_spec()
    keys = ", ".join(f'"{c}"' for c in dict.fromkeys(c for columns in spec.keys.values() for c in columns))
    named = strata(spec)
    parts = [("uniform", "true", int(sample_size))]
    per_stratum = int(targeted_size) // len(named) if targeted_size > 0 and named else 0
    if per_stratum:
        con.execute(f"CREATE OR REPLACE TEMP TABLE oracle_strata AS {_strata_sql(spec)}")
        parts += [(name, f"{key}_{kind}_later", per_stratum) for name, (key, kind) in named.items()]
    source = "oracle_strata" if per_stratum else "transactions"
    selects = [
        f"(SELECT transaction_id, {keys}, '{name}' AS part FROM {source} WHERE {where} "
        f"ORDER BY hash(transaction_id, $seed, '{name}'), transaction_id LIMIT {n})"
        for name, where, n in parts
    ]
    con.execute("CREATE OR REPLACE TEMP TABLE oracle_draws AS " + " UNION ALL ".join(selects), {"seed": int(seed)})
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE oracle_sample AS SELECT DISTINCT transaction_id, {keys} FROM oracle_draws"
    )
    drawn = dict(con.execute("SELECT part, count(*) FROM oracle_draws GROUP BY part").fetchall())
    return {name: int(drawn.get(name, 0)) for name, _, _ in parts}


def sample_and_compare(
    con, sample_size: int, seed: int, targeted_size: int = 0, spec: FeatureSpec | None = None
) -> tuple[int, pd.DataFrame, dict]:
    """Recomputes a seeded sample of ``transaction_features`` rows naively and lists the mismatches.

    The sample is :func:`choose_sample`'s: uniform, plus ``targeted_size`` rows where a leak inside
    a day would show. Only the raw rows the sample needs are read: the transactions sharing a key
    value with a sampled row and the chargebacks on them.

    Returns:
        (number of transactions compared, mismatches as in :func:`compare_features`, rows drawn per part).

    Raises:
        SpecError: If the spec reads a column the transactions lack.
    """
    spec = spec or default_spec()
    spec.check_columns({name: str(kind) for name, kind, *_ in con.execute("DESCRIBE transactions").fetchall()})
    drawn = choose_sample(con, sample_size, seed, targeted_size, spec)
    shares = " OR ".join(
        f"({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) IN "
        f"(SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)} FROM oracle_sample)"
        for columns in spec.keys.values()
    )
    related = (
        f"SELECT * FROM transactions WHERE transaction_id IN (SELECT transaction_id FROM oracle_sample) OR {shares}"
    )
    transactions = con.execute(f"{related} ORDER BY transaction_id").df()
    chargebacks = con.execute(
        f"SELECT c.transaction_id, c.reported_at FROM chargebacks AS c JOIN ({related}) AS t USING (transaction_id) "
        "ORDER BY c.transaction_id"
    ).df()
    users = con.execute(
        "SELECT user_id, created_at FROM users WHERE user_id IN (SELECT user_id FROM transactions "
        "WHERE transaction_id IN (SELECT transaction_id FROM oracle_sample))"
    ).df()
    ids = con.execute("SELECT transaction_id FROM oracle_sample ORDER BY transaction_id").df()["transaction_id"]
    actual = con.execute(
        "SELECT * FROM transaction_features WHERE transaction_id IN (SELECT transaction_id FROM oracle_sample)"
    ).df()
    expected = recompute_features(transactions, chargebacks, users, ids.tolist(), spec)
    absent = [name for name in spec.names if name not in actual.columns]
    if absent:
        # a feature the table lacks mismatches on every compared row, named once per row as any other
        actual = actual.assign(**{name: None for name in absent})
    return len(ids), compare_features(expected, actual[["transaction_id", *spec.names]], spec=spec), drawn
