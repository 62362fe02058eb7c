"""The evaluation report: plots and an HTML page written next to each model in the registry."""


from dataclasses import asdict

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.core.plots import cohort_bars_png, drift_bars_png, markdown_image, precision_recall_png
from fraud_pipeline.core.report import render_report
from fraud_pipeline.core.windows import TrainingWindows
from fraud_pipeline.deployment.assets import evaluate_gates
from fraud_pipeline.resources import AFTER_THE_DEPLOY, DUCKDB_POOL, DeployGates, ModelRegistry

#: Columns of the per-cohort table in the report.
COHORT_COLUMNS = (
    "cohort", "value", "n_transactions", "n_frauds", "total_cost", "savings_vs_approve_all",
    "average_precision", "precision", "recall",
)


def drift_sections(population_drift: dict | None) -> tuple[dict[str, bytes], dict[str, list[dict]]]:
    """Plots and tables of a ``population_drift`` result (feature rows and cohort mix); empty without one."""
    if not population_drift:
        return {}, {}
    features = list(population_drift.get("features") or [])
    plots = {"Feature drift (PSI)": drift_bars_png(features)} if any("psi" in r for r in features) else {}
    tables = {"Feature drift": features, "Cohort mix": list(population_drift.get("cohort_mix") or [])}
    return plots, {k: v for k, v in tables.items() if v}


def build_report(
    fraud_model: dict,
    model_evaluation: dict,
    is_fraud,
    scores,
    gates: list[dict],
    population_drift: dict | None = None,
) -> tuple[str, dict[str, bytes]]:
    """The report's HTML and its plots (caption -> PNG) for one candidate."""
    plots = {
        "Precision-recall on the test window": precision_recall_png(is_fraud, scores, fraud_model["threshold"]),
        "Per-cohort metrics": cohort_bars_png(model_evaluation["cohorts"]),
    }
    drift_plots, drift_tables = drift_sections(population_drift)
    plots.update(drift_plots)
    windows = fraud_model["windows"]
    facts = {
        "as_of": windows["as_of"],
        "train": f"{windows['train_start']} .. {windows['train_end']}",
        "validation": f"{windows['validation_start']} .. {windows['validation_end']}",
        "test": f"{windows['test_start']} .. {windows['test_end']}",
        "maturity horizon (days)": windows["horizon_days"],
        "best iteration": fraud_model["best_iteration"],
    }
    headline = {k: v for k, v in model_evaluation.items() if k not in ("cohorts", "model_version")}
    cohorts = [{c: row.get(c) for c in COHORT_COLUMNS} for row in model_evaluation["cohorts"]]
    html = render_report(
        f"Evaluation of model {fraud_model['version']}",
        headline,
        plots,
        tables={"Per-cohort metrics": cohorts, **drift_tables},
        gates=gates,
        facts=facts,
    )
    return html, plots


@dg.asset(group_name="evaluation", deps=["training_set"], kinds={"html"}, pool=DUCKDB_POOL, op_tags=AFTER_THE_DEPLOY)
def evaluation_report(
    context: dg.AssetExecutionContext,
    fraud_model: dict,
    model_evaluation: dict,
    population_drift: dict,
    duckdb: DuckDBResource,
    registry: ModelRegistry,
    gates: DeployGates,
) -> dg.MaterializeResult:
    """An HTML report (metrics, gates, precision-recall, cohorts, drift) written next to the candidate's model."""
    with duckdb.get_connection() as con:
        test = con.execute(
            """SELECT t.is_fraud, s.score FROM evaluation_scores s JOIN training_set t USING (transaction_id)
               WHERE t.split = 'test' ORDER BY transaction_id"""
        ).fetchnumpy()
        verdicts = evaluate_gates(con, TrainingWindows.from_dict(fraud_model["windows"]), fraud_model, model_evaluation, gates)
    html, plots = build_report(fraud_model, model_evaluation, test["is_fraud"], test["score"], [asdict(v) for v in verdicts],
                               population_drift)
    path = registry.store().write_report(fraud_model["version"], html)
    context.log.info(f"evaluation report of {fraud_model['version']} written to {path} ({len(html) / 1024:.0f} KiB)")
    return dg.MaterializeResult(
        metadata={
            "report_path": dg.MetadataValue.path(str(path)),
            "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
            "model_version": fraud_model["version"],
            "report_kib": round(len(html) / 1024, 1),
            "precision_recall_curve": dg.MetadataValue.md(markdown_image(plots["Precision-recall on the test window"],
                                                                         "precision-recall curve")),
            "cohort_metrics": dg.MetadataValue.md(markdown_image(plots["Per-cohort metrics"], "per-cohort metrics")),
            **({"feature_drift": dg.MetadataValue.md(markdown_image(plots["Feature drift (PSI)"], "feature drift"))}
               if "Feature drift (PSI)" in plots else {}),
        }
    )
