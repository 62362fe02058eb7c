"""Great Expectations 1.x validation of the missingness contracts.

The contracts are measured in DuckDB as aggregates (the reference's quartiles, then one row of counts) (:mod:`fraud_pipeline.features.contracts`);
the learned rules' intervals are set from the reference's counts in that row; an ephemeral Great
Expectations context then validates the row's observed values with one ``ExpectColumnMaxToBeBetween``
per measure (on one row the max is the value; unlike ``ExpectColumnValuesToBeBetween`` it fails on
NaN instead of skipping it). Nothing is written to disk and nothing is sent anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from fraud_pipeline.features.contracts import (
    ContractSettings,
    Judged,
    Reference,
    aggregate_statements,
    column_types,
    feature_contracts,
    fences,
    fences_sql,
    learned_bounds,
    measures,
    newest_days_reference,
    violation_sample_sql,
)
from fraud_pipeline.features.spec import FeatureSpec, default_spec

# Current 1.x releases send nothing; earlier 1.x releases read this before import to keep analytics off.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class ContractOutcome:
    """The validation of one table against the contracts.

    Attributes:
        success: Whether every expectation held.
        rows: One per measure: rule, feature, column, low, high, observed, reference, detail, success.
        samples: Failing row-level measure -> example rows.
        reference: Which rows were the reference and which were checked (with their bounds).
        problem: Why the learned rules could not be judged (an empty reference), or None.
    """

    success: bool
    rows: list[dict]
    samples: dict[str, list[dict]]
    reference: dict = field(default_factory=dict)
    problem: str | None = None

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if not r["success"]]


def _validate(judged: list[Judged], name: str) -> dict[str, bool]:
    """Runs the Great Expectations suite on the one-row frame of observed values; returns column -> success."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    frame = pd.DataFrame(
        {j.measure.column: [float("nan") if j.observed is None else j.observed] for j in judged}, dtype="float64"
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
            column=j.measure.column,
            min_value=j.low,
            max_value=None if j.high == float("inf") else j.high,
            meta={"rule": j.measure.rule, "feature": j.measure.feature},
        )
        for j in judged
    ]
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_missingness_contract", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame})
    return {r.expectation_config.kwargs["column"]: bool(r.success) for r in result.results}


def validate_contracts(
    con,
    table: str,
    sample_size: int = 5,
    spec: FeatureSpec | None = None,
    reference: Reference | None = None,
    settings: ContractSettings | None = None,
) -> ContractOutcome:
    """Measures ``table`` against the spec's contracts in DuckDB and validates the measures with GE.

    Args:
        con: A DuckDB connection holding ``table``.
        table: A feature table (``transaction_features`` or ``training_set``).
        sample_size: Example rows kept per failing row-level rule.
        spec: The feature spec the table was built with (the default spec when None).
        reference: The reference and checked rows; the table's newest ``settings.checked_days``
            days against its earlier full-history rows when None.
        settings: How the learned rules are judged (:class:`ContractSettings`' defaults when None).
    """
    spec = spec or default_spec()
    settings = settings or ContractSettings()
    if reference is None:
        reference = newest_days_reference(con, table, spec, settings.checked_days)
    suite_measures = measures(feature_contracts(spec), column_types(con, table))
    quartiles = fences_sql(table, suite_measures, reference)
    reference_row = None
    if quartiles is not None:
        cur = con.execute(quartiles, reference.params)
        reference_row = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    ranges = fences(reference_row, suite_measures, settings.fence_iqr)
    row: dict = {}
    for statement in aggregate_statements(table, suite_measures, reference, ranges):
        cur = con.execute(statement, reference.params)
        row.update(zip([d[0] for d in cur.description], cur.fetchone()))
    judged = learned_bounds(row, suite_measures, settings, ranges)
    verdicts = _validate(judged, table)
    rows, samples = [], {}
    for j in judged:
        success = verdicts[j.measure.column]
        rows.append({**j.as_row(), "success": success})
        if not success and j.measure.violation_sql:
            cur = con.execute(violation_sample_sql(table, j.measure, sample_size))
            names = [d[0] for d in cur.description]
            samples[j.measure.column] = [{k: str(v) for k, v in zip(names, values)} for values in cur.fetchall()]
    return ContractOutcome(
        success=all(r["success"] for r in rows) and reference.problem is None,
        rows=rows,
        samples=samples,
        reference={
            **reference.description,
            "reference_rows": row["reference_rows"],
            "checked_rows": row["checked_rows"],
        },
        problem=reference.problem,
    )
