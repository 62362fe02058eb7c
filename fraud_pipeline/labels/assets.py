"""Labels: how long chargebacks take to arrive, and each transaction's label as known at as_of."""

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from fraud_pipeline.labels.maturity import (
    delay_observations_sql,
    estimate_delay_profile,
    horizon_interval,
    naive_delay_quantile,
    transaction_labels_sql,
)
from fraud_pipeline.lib.markdown import markdown_table
from fraud_pipeline.lib.plots import markdown_image, maturation_curve_png
from fraud_pipeline.lib.warehouse import fetch_records, replace_tables, write_transaction
from fraud_pipeline.resources import DUCKDB_POOL, RunClock


class LabelConfig(dg.Config):
    """How mature a label must be before training and evaluation may use it."""

    coverage: float = Field(
        default=0.95, description="Share of eventual chargebacks that must have arrived for a label to be mature."
    )


def _curve_markdown(curve, every_days: int = 7) -> str:
    weekly = curve[curve["age_days"] % every_days == 0]
    return markdown_table(
        [
            {"age (days)": int(r.age_days), "estimated share reported": r.completeness, "naive share": r.naive_share}
            for r in weekly.itertuples()
        ]
    )


@dg.asset(group_name="labels", deps=["transactions", "chargebacks"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def label_delay_profile(
    context: dg.AssetExecutionContext, config: LabelConfig, duckdb: DuckDBResource, clock: RunClock
) -> dict:
    """The measured chargeback reporting-delay distribution and the maturity horizon it implies."""
    as_of = clock.as_of_datetime()
    with duckdb.get_connection() as con:
        sql, params = delay_observations_sql(as_of)
        observations = con.execute(sql, params).fetchnumpy()
        profile = estimate_delay_profile(observations["delay_days"], observations["truncation_days"], config.coverage)
        low, high = horizon_interval(observations["delay_days"], observations["truncation_days"], config.coverage)
        # the exact steps (delay_days, completeness): transaction_labels joins each age to the last step below it
        replace_tables(
            con,
            {"label_completeness": "SELECT * FROM completeness_frame"},
            sources={"completeness_frame": profile.steps},
        )
    # both by the horizon's rule, in its unit: the smallest delay whose naive or estimated share reaches the share
    naive_horizon = naive_delay_quantile(observations["delay_days"], config.coverage, profile.horizon_unit)
    context.add_output_metadata(
        {
            "horizon_days": profile.horizon_days,
            "horizon_unit": profile.horizon_unit,
            "horizon_days_90pct_interval": f"{low:g}..{high:g}",
            "naive_horizon_days": naive_horizon,
            "coverage": config.coverage,
            "n_chargebacks": profile.n_chargebacks,
            "max_observable_days": profile.max_observable_days,
            "median_delay_days": profile.delay_quantile(0.5),
            "maturation_curve": dg.MetadataValue.md(_curve_markdown(profile.curve)),
            "maturation_plot": dg.MetadataValue.md(
                markdown_image(
                    maturation_curve_png(profile.curve, profile.horizon_days, config.coverage), "label maturation curve"
                )
            ),
        }
    )
    return {
        "horizon_days": profile.horizon_days,
        "horizon_unit": profile.horizon_unit,
        "coverage": profile.coverage,
        "n_chargebacks": profile.n_chargebacks,
        "max_observable_days": profile.max_observable_days,
        "horizon_interval": [low, high],
        "as_of": as_of.isoformat(),
    }


@dg.asset(group_name="labels", deps=["transactions", "chargebacks"], kinds={"duckdb"}, pool=DUCKDB_POOL)
def transaction_labels(
    context: dg.AssetExecutionContext, label_delay_profile: dict, duckdb: DuckDBResource, clock: RunClock
) -> dg.MaterializeResult:
    """Each transaction's label as known at as_of, when it became known, and whether it is mature."""
    as_of = clock.as_of_datetime()
    sql, params = transaction_labels_sql(as_of, label_delay_profile["horizon_days"])
    with duckdb.get_connection() as con:
        with write_transaction(con, ["transaction_labels"]):
            con.execute(f"CREATE OR REPLACE TABLE transaction_labels AS {sql}", params)
        summary = fetch_records(
            con,
            """SELECT count(*) AS rows, count(*) FILTER (WHERE is_fraud) AS frauds_known,
                      count(*) FILTER (WHERE is_mature) AS mature_rows,
                      count(*) FILTER (WHERE is_mature AND is_fraud) AS mature_frauds
               FROM transaction_labels""",
        )[0]
    context.log.info(f"labels at {as_of:%Y-%m-%d}: {summary}")
    return dg.MaterializeResult(
        metadata={**{k: int(v) for k, v in summary.items()}, "horizon_days": label_delay_profile["horizon_days"]}
    )
