"""Data contracts on the raw tables, as SQL rules that count and sample their violations.

Each rule is a SQL predicate that is true for a *violating* row, so a rule can never pass by
accident on an empty result of a mistyped query: a rule that cannot run raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fraud_pipeline.lib.schema import MAX_AMOUNT, MIN_AMOUNT, amount_violation_sql

#: Earliest plausible event time; anything earlier is a parsing or unit error.
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1)


@dataclass(frozen=True)
class Rule:
    """One contract rule.

    Attributes:
        name: Short identifier shown in the UI.
        description: What the rule demands, in one line.
        from_sql: The FROM clause (tables and joins) the rule is evaluated over.
        violation_sql: A predicate that is true for each violating row.
        sample_columns: Columns to show for a sample of violating rows.
    """

    name: str
    description: str
    from_sql: str
    violation_sql: str
    sample_columns: str


@dataclass(frozen=True)
class RuleResult:
    """How one rule fared: the number of violating rows and a few of them."""

    rule: Rule
    n_violations: int
    sample: list[dict]

    @property
    def passed(self) -> bool:
        return self.n_violations == 0


def transaction_rules() -> tuple[Rule, ...]:
    """The transaction contract: unique ids, non-null keys, valid amounts (:data:`MIN_AMOUNT` .. :data:`MAX_AMOUNT`), sane timestamps."""
    dup = "(SELECT transaction_id, count(*) OVER (PARTITION BY transaction_id) AS n, * EXCLUDE (transaction_id) FROM transactions) AS t"
    return (
        Rule("unique_transaction_id", "transaction_id is unique.", dup, "t.n > 1", "t.transaction_id, t.n"),
        Rule(
            "non_null_keys",
            "transaction_id, user_id, merchant_id and event_time are not NULL.",
            "transactions AS t",
            "t.transaction_id IS NULL OR t.user_id IS NULL OR t.merchant_id IS NULL OR t.event_time IS NULL",
            "t.transaction_id, t.user_id, t.merchant_id, t.event_time",
        ),
        Rule(
            "positive_finite_amount",
            f"amount is a finite number from {MIN_AMOUNT:g} to {MAX_AMOUNT:,.0f} (the rule landing applies).",
            "transactions AS t",
            amount_violation_sql("t.amount"),
            "t.transaction_id, t.amount",
        ),
        Rule(
            "event_time_in_range",
            "event_time is on or after 2000-01-01 and before as_of.",
            "transactions AS t",
            "t.event_time < CAST($earliest AS TIMESTAMP) OR t.event_time >= CAST($as_of AS TIMESTAMP)",
            "t.transaction_id, t.event_time",
        ),
    )


def chargeback_rules() -> tuple[Rule, ...]:
    """The chargeback contract: each refers to a known transaction and is reported at or after it."""
    return (
        Rule(
            "known_transaction",
            "every chargeback refers to a known transaction.",
            "chargebacks AS c LEFT JOIN transactions AS t USING (transaction_id)",
            "t.transaction_id IS NULL",
            "c.transaction_id, c.reported_at",
        ),
        Rule(
            "reported_after_transaction",
            "reported_at is at or after the transaction's event_time.",
            "chargebacks AS c JOIN transactions AS t USING (transaction_id)",
            "c.reported_at IS NULL OR c.reported_at < t.event_time",
            "c.transaction_id, t.event_time, c.reported_at",
        ),
        Rule(
            "reported_before_as_of",
            "reported_at is before as_of (nothing from the future).",
            "chargebacks AS c",
            "c.reported_at >= CAST($as_of AS TIMESTAMP)",
            "c.transaction_id, c.reported_at",
        ),
    )


def evaluate_rules(con, rules: tuple[Rule, ...], as_of: datetime, sample_size: int = 5) -> list[RuleResult]:
    """Runs each rule on a DuckDB connection and returns violation counts with samples."""
    results = []
    for rule in rules:
        params = {
            k: v for k, v in {"as_of": as_of, "earliest": EARLIEST_PLAUSIBLE}.items() if f"${k}" in rule.violation_sql
        }
        n = con.execute(f"SELECT count(*) FROM {rule.from_sql} WHERE {rule.violation_sql}", params).fetchone()[0]
        sample: list[dict] = []
        if n:
            cur = con.execute(
                f"SELECT {rule.sample_columns} FROM {rule.from_sql} WHERE {rule.violation_sql} LIMIT {int(sample_size)}",
                params,
            )
            names = [d[0] for d in cur.description]
            sample = [{k: str(v) for k, v in zip(names, values)} for values in cur.fetchall()]
        results.append(RuleResult(rule=rule, n_violations=int(n), sample=sample))
    return results
