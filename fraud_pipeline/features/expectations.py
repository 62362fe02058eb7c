"""Great Expectations 1.x validation of the missingness contracts.

The contracts are measured in DuckDB into one row of aggregates (:mod:`feature_contracts`); an
ephemeral Great Expectations context validates that row with one ``ExpectColumnMaxToBeBetween``
per measure (on one row the max is the value; unlike ``ExpectColumnValuesToBeBetween`` it fails on
NaN instead of skipping it). Nothing is written to disk and nothing is sent anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from fraud_pipeline.features.contracts import (
    CONTRACTS,
    Measure,
    aggregate_sql,
    measures,
    violation_sample_sql,
)

# Current 1.x releases send nothing; earlier 1.x releases read this before import to keep analytics off.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class ContractOutcome:
    """The validation of one table against the contracts."""

    success: bool
    rows: list[dict]  # one per measure: rule, feature, column, low, high, observed, success
    samples: dict[str, list[dict]]  # failing row-level measure -> example rows

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if not r["success"]]


def _validate(frame: pd.DataFrame, suite_measures: list[Measure], name: str) -> dict[str, bool]:
    """Runs the Great Expectations suite on the aggregate frame; returns column -> success."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    batch = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(f"{name}_aggregates")
        .add_batch_definition_whole_dataframe(f"{name}_batch")
    )
    # the suite is built whole before it is registered: each add to a registered suite re-serialises it
    expectations = [
        gx.expectations.ExpectColumnMaxToBeBetween(
            column=m.column,
            min_value=m.low,
            max_value=None if m.high == float("inf") else m.high,
            meta={"rule": m.rule, "feature": m.feature},
        )
        for m in suite_measures
    ]
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_missingness_contract", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame})
    return {r.expectation_config.kwargs["column"]: bool(r.success) for r in result.results}


def validate_contracts(con, table: str, sample_size: int = 5) -> ContractOutcome:
    """Measures ``table`` against every contract in DuckDB and validates the measures with GE."""
    suite_measures = measures(CONTRACTS)
    frame = con.execute(aggregate_sql(table)).df()
    verdicts = _validate(frame, suite_measures, table)
    rows, samples = [], {}
    for m in suite_measures:
        observed = frame.at[0, m.column]
        observed = None if pd.isna(observed) else float(observed)
        success = verdicts[m.column]
        rows.append(
            {
                "rule": m.rule,
                "feature": m.feature,
                "column": m.column,
                "low": m.low,
                "high": m.high,
                "observed": observed,
                "success": success,
            }
        )
        if not success and m.violation_sql:
            cur = con.execute(violation_sample_sql(table, m, sample_size))
            names = [d[0] for d in cur.description]
            samples[m.column] = [{k: str(v) for k, v in zip(names, values)} for values in cur.fetchall()]
    return ContractOutcome(success=all(r["success"] for r in rows), rows=rows, samples=samples)
