"""A second, differently shaped data set: card payments at terminals, the way a foreign source delivers them.

Unlike the built-in world it has string ids (``CU-…``, ``TM-…``, ``TX…``), no channel, mcc or country
columns, an extra ``device_id`` column, dates in 2018, a customers file without account creation
dates, and every fraud charged back exactly 7 days after it happened. Fraud comes from two
scenarios:

- **terminal compromise**: now and then a terminal is compromised for a few weeks; most payments at
  it in that period are fraud, at ordinary amounts (an amount rule cannot see it; the terminal's
  chargebacks, reported a week later, can);
- **device takeover**: a customer's card is used from a fraud ring's device for a short burst of
  larger payments.

Everything is drawn from one seeded generator, so the same spec gives the same files byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ForeignSpec:
    """The size and shape of the foreign data set.

    Attributes:
        start: First day of payments (UTC).
        days: Days of payments.
        n_customers: Customers (each with a few usual terminals and one or two devices).
        n_terminals: Payment terminals (the merchants of the pipeline).
        payments_per_customer_day: Mean payments of a customer per day.
        compromise_every_days: Mean days between two terminal compromises.
        compromise_days: How long a terminal stays compromised.
        compromised_fraud_share: Share of a compromised terminal's payments that are fraud.
        takeover_every_days: Mean days between two device takeovers.
        chargeback_delay_days: Days from a fraud to its chargeback (fixed).
        missing_device_share: Share of payments without a device id.
        seed: Seed of every draw.
    """

    start: date = date(2018, 4, 1)
    days: int = 82
    n_customers: int = 400
    n_terminals: int = 60
    payments_per_customer_day: float = 0.5
    compromise_every_days: float = 6.0
    compromise_days: int = 21
    compromised_fraud_share: float = 0.85
    takeover_every_days: float = 2.0
    chargeback_delay_days: int = 7
    missing_device_share: float = 0.01
    seed: int = 18


@dataclass(frozen=True)
class ForeignWorld:
    """The data set's three tables, as the source delivers them (string ids, text timestamps aside)."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    chargebacks: pd.DataFrame
    #: (terminal, first day, last day) of every compromise.
    compromises: list[tuple[str, date, date]]


def _customer(i: int) -> str:
    return f"CU-{i:05d}"


def _terminal(i: int) -> str:
    return f"TM-{i:04d}"


def generate(spec: ForeignSpec = ForeignSpec()) -> ForeignWorld:
    """Draws the customers, payments and chargebacks of the foreign data set."""
    rng = np.random.default_rng(spec.seed)
    start = datetime.combine(spec.start, datetime.min.time())
    n_cust, n_term = spec.n_customers, spec.n_terminals
    typical_amount = rng.uniform(8, 90, n_cust)
    usual_terminals = [rng.choice(n_term, size=int(rng.integers(4, 10)), replace=False) for _ in range(n_cust)]
    devices = [[f"DV-{i:05d}-{k}" for k in range(int(rng.integers(1, 3)))] for i in range(n_cust)]
    ring = [f"DV-RING-{k:02d}" for k in range(8)]

    rows = []
    for day in range(spec.days):
        counts = rng.poisson(spec.payments_per_customer_day, n_cust)
        for c in np.flatnonzero(counts):
            for _ in range(int(counts[c])):
                # payments cluster in the day (morning to evening), seconds resolution
                second = int(np.clip(rng.normal(14 * 3600, 4 * 3600), 0, 86_399))
                amount = max(0.5, rng.normal(typical_amount[c], typical_amount[c] / 3))
                rows.append(
                    {
                        "customer": c,
                        "terminal": int(rng.choice(usual_terminals[c])),
                        "time": start + timedelta(days=day, seconds=second),
                        "amount": round(float(amount), 2),
                        "device": devices[c][int(rng.integers(len(devices[c])))],
                        "fraud": 0,
                        "scenario": "",
                    }
                )

    compromises = []
    day = float(rng.exponential(spec.compromise_every_days))
    while day < spec.days:
        first = spec.start + timedelta(days=int(day))
        compromises.append((int(rng.integers(n_term)), first, first + timedelta(days=spec.compromise_days - 1)))
        day += float(rng.exponential(spec.compromise_every_days))
    for row in rows:
        for terminal, first, last in compromises:
            if row["terminal"] == terminal and first <= row["time"].date() <= last:
                if rng.random() < spec.compromised_fraud_share:
                    row["fraud"], row["scenario"] = 1, "terminal_compromise"

    day = float(rng.exponential(spec.takeover_every_days))
    while day < spec.days:
        victim = int(rng.integers(n_cust))
        device = ring[int(rng.integers(len(ring)))]
        moment = start + timedelta(days=int(day), seconds=int(rng.integers(0, 86_400)))
        for _ in range(int(rng.integers(2, 6))):
            moment += timedelta(seconds=int(rng.integers(60, 3 * 3600)))
            if moment >= start + timedelta(days=spec.days):
                break
            rows.append(
                {
                    "customer": victim,
                    "terminal": int(rng.integers(n_term)),
                    "time": moment,
                    "amount": round(float(typical_amount[victim] * rng.uniform(2, 5)), 2),
                    "device": device,
                    "fraud": 1,
                    "scenario": "device_takeover",
                }
            )
        day += float(rng.exponential(spec.takeover_every_days))

    frame = pd.DataFrame(rows).sort_values(["time", "customer", "terminal"], kind="mergesort").reset_index(drop=True)
    no_device = rng.random(len(frame)) < spec.missing_device_share
    transactions = pd.DataFrame(
        {
            "transaction_id": [f"TX{i:07d}" for i in range(len(frame))],
            "user_id": frame["customer"].map(_customer),
            "merchant_id": frame["terminal"].map(_terminal),
            "event_time": frame["time"],
            "amount": frame["amount"],
            "device_id": frame["device"].where(~no_device, None),
            "is_fraud": frame["fraud"],
            "scenario": frame["scenario"],
        }
    )
    frauds = transactions[transactions["is_fraud"] == 1]
    chargebacks = pd.DataFrame(
        {
            "transaction_id": frauds["transaction_id"].to_numpy(),
            "reported_at": (frauds["event_time"] + pd.Timedelta(days=spec.chargeback_delay_days)).to_numpy(),
            "reason": "fraud",
        }
    )
    customers = pd.DataFrame(
        {
            "user_id": [_customer(i) for i in range(n_cust)],
            "region": [("north", "south", "east", "west")[i % 4] for i in range(n_cust)],
        }
    )
    return ForeignWorld(
        customers, transactions, chargebacks, [(_terminal(t), first, last) for t, first, last in compromises]
    )


#: The columns the source delivers in its transactions files (the truth columns stay out).
DELIVERED = ("transaction_id", "user_id", "merchant_id", "event_time", "amount", "device_id")


def write_day_folders(world: ForeignWorld, out: Path, file_format: str = "csv") -> dict[str, int]:
    """Writes the data set as ``out/<YYYY-MM-DD>/{transactions,chargebacks}.<format>`` plus the customers file.

    Payments go to the folder of their day, chargebacks to the folder of the day they were reported,
    and the customers (user_id, region; no creation date) to the first day's folder as
    ``users_customers.<format>``. Timestamps are UTC: ISO-8601 text ending in ``Z`` in CSV,
    ``TIMESTAMP WITH TIME ZONE`` in Parquet.

    Returns:
        Files written per kind.
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be csv or parquet, got {file_format!r}")
    tables = {
        "transactions": (world.transactions[list(DELIVERED)], "event_time"),
        "chargebacks": (world.chargebacks, "reported_at"),
    }
    written = {"transactions": 0, "chargebacks": 0, "users": 0}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for kind, (frame, time_column) in tables.items():
            con.register("frame", frame)
            shown = (
                f"strftime({time_column}, '%Y-%m-%dT%H:%M:%SZ')"
                if file_format == "csv"
                else f"timezone('UTC', {time_column})"
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE export AS SELECT CAST({time_column} AS DATE) AS day, "
                f"* REPLACE ({shown} AS {time_column}) FROM frame ORDER BY {time_column}, transaction_id"
            )
            con.unregister("frame")
            for (day,) in con.execute("SELECT DISTINCT day FROM export ORDER BY day").fetchall():
                _copy(con, "SELECT * EXCLUDE (day) FROM export WHERE day = ?", [day], out, day, kind, file_format)
                written[kind] += 1
        con.register("customers", world.customers)
        _copy(
            con,
            "SELECT * FROM customers",
            [],
            out,
            world.transactions["event_time"].min().date(),
            "users_customers",
            file_format,
        )
        written["users"] = 1
    return written


def _copy(con, query: str, params: list, out: Path, day: date, name: str, file_format: str) -> None:
    folder = out / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = str(folder / f"{name}.{file_format}").replace("'", "''")
    options = "(FORMAT csv, HEADER true)" if file_format == "csv" else "(FORMAT parquet)"
    con.execute(f"COPY ({query}) TO '{target}' {options}", params)
