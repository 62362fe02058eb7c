"""A short plain-text summary of a pipeline run for the terminal."""

from __future__ import annotations

from typing import TextIO

import dagster as dg


def _output(result: dg.ExecuteInProcessResult, node: str):
    try:
        return result.output_for_node(node)
    except dg.DagsterInvariantViolationError:  # the step was blocked or failed; the summary says so below
        return None


def print_summary(result: dg.ExecuteInProcessResult, out: TextIO) -> None:
    """Prints windows, headline cost metrics, the per-cohort table, the gates and the deploy outcome."""
    write = lambda line="": print(line, file=out)  # noqa: E731
    decision = _output(result, "deploy_gate")
    blocked = decision is not None and decision.outcome == "blocked"
    status = (
        "SUCCESS" if result.success else "BLOCKED (the deploy gate held back the promotion)" if blocked else "FAILURE"
    )
    write(f"\nrun {result.run_id}: {status}")
    windows = _output(result, "training_windows")
    if windows:
        write(
            f"as_of {windows.as_of:%Y-%m-%d}, maturity horizon {round(windows.horizon_days, 1):g} days, "
            f"labels mature until {windows.label_cutoff:%Y-%m-%d}"
        )
        days = windows.days()
        for split, (start, end) in windows.splits().items():
            write(f"  {split:<10} {start:%Y-%m-%d} .. {end:%Y-%m-%d}  ({days[split]} days)")
        if shortened := windows.shortened():
            write(f"  shortened: {shortened}")
    evaluation = _output(result, "model_evaluation")
    if evaluation:
        e = evaluation
        write(f"test window: {e.n_transactions:,} transactions, {e.n_frauds:,} frauds")
        write(f"  cost {e.total_cost:,.0f} vs approve-all {e.approve_all_cost:,.0f} and amount rule {e.rule_cost:,.0f}")
        write(
            f"  savings vs approve-all {e.savings_vs_approve_all:,.0f} "
            f"({e.savings_vs_approve_all_pct:.1%}), vs rule {e.savings_vs_rule:,.0f}"
        )
        write(
            f"  average precision {e.average_precision:.3f}, ROC AUC {e.roc_auc:.3f}, "
            f"precision {e.precision:.3f}, recall {e.recall:.3f}, "
            f"user precision@{e.review_capacity_k} {e.user_precision_at_k:.3f}"
        )
        write(f"  {'cohort':<12} {'value':<14} {'tx':>8} {'frauds':>7} {'cost':>10} {'recall':>7} {'AP':>6}")
        for row in evaluation.cohorts:
            write(
                f"  {row['cohort']:<12} {str(row['value']):<14} {row['n_transactions']:>8,} {row['n_frauds']:>7,} "
                f"{row['total_cost']:>10,.0f} {row['recall']:>7.3f} {row['average_precision']:>6.3f}"
            )
    candidate = _output(result, "fraud_model")
    if candidate is not None:
        write(policy_line(candidate.main.policy))
    _population_lines(result, write)
    outage = _output(result, "outage_replay")
    if outage:
        write(
            f"outage replay: history unavailable for {outage['n_affected']:,} active-user transactions in peak hours "
            f"{outage['peak_hours']} ({outage['n_affected_frauds']} frauds); "
            f"{outage['identified_share']:.0%} recognised and sent to the fallback model"
        )
        write(
            f"  recall on those frauds {outage['recall_affected_full_history']:.2f} with history, "
            f"{outage['recall_affected_outage']:.2f} in the outage; cost {outage['cost_affected_full_history']:,.0f} "
            f"with history, {outage['cost_affected_outage']:,.0f} in the outage, "
            f"{outage['cost_affected_approve_all']:,.0f} approving all"
        )
        write(
            f"  mean fraud score {outage['mean_score_affected_frauds_full_history']:.4f} with history, "
            f"{outage['mean_score_affected_frauds_outage']:.4f} in the outage; genuinely new users "
            f"{outage['mean_score_new_users']:.4f}"
        )
    write("checks:")
    for evaluation_event in result.get_asset_check_evaluations():
        status = "PASS" if evaluation_event.passed else f"FAIL ({evaluation_event.severity.value})"
        write(f"  {evaluation_event.asset_check_key.name:<26} {status:<12} {evaluation_event.description or ''}")
    _decision_lines(result, write)


def policy_line(policy) -> str:
    """The main model's decision policy in one line: its cells, or the single threshold and why no split was adopted."""
    tried = [row for row in policy.selection if row.get("splits")]
    if policy.is_single:
        if not tried:
            return f"decision policy: one threshold {policy.global_threshold:.4g} (no cohort split to choose from)"
        if all(row.get("daily_saving_low") is None for row in tried):
            return (
                f"decision policy: one threshold {policy.global_threshold:.4g} (validation too short to test a split)"
            )
        return (
            f"decision policy: one threshold {policy.global_threshold:.4g}; no cohort split saved money on the later "
            f"validation days beyond chance ({', '.join(' x '.join(r['splits']) for r in tried)} tried)"
        )
    splits = " x ".join(s.name for s in policy.splits)
    return (
        f"decision policy: {len(policy.cells)} thresholds by {splits} "
        f"({min(c.threshold for c in policy.cells):.4g}..{max(c.threshold for c in policy.cells):.4g}; "
        f"global {policy.global_threshold:.4g} for unseen cells), adopted for saving money on the later validation days"
    )


def _decision_lines(result: dg.ExecuteInProcessResult, write) -> None:
    """The night's deploy decision in one line, then what the deploy did."""
    decision = _output(result, "deploy_gate")
    if decision is not None:
        write(f"decision: {decision.headline()}")
    else:
        upstream = sorted(
            {
                e.asset_check_key.name
                for e in result.get_asset_check_evaluations()
                if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
            }
        )
        held = f"blocked upstream by {', '.join(upstream)}" if upstream else "not reached (see the failed step below)"
        write(f"decision: none taken, the deploy gate was {held}; the champion stays")
    deployed = _output(result, "deployed_model")
    if deployed and deployed["promoted"]:
        write(f"deployed: champion is now {deployed['version']} ({deployed['path']})")
    elif deployed:
        write(f"deployed: candidate {deployed['version']} kept in the registry; champion stays {deployed['champion']}")
    elif decision is not None and decision.outcome == "blocked":
        write("deployed: nothing; the decision is in the registry history (`python3 tasks.py champion`)")
    else:
        write("deployed: nothing; the previous champion stays (see the failed checks or step below)")
    reports = result.asset_materializations_for_node("evaluation_report")
    if reports and "report_path" in reports[0].metadata:
        write(f"report: {reports[0].metadata['report_path'].value}")


def _population_lines(result: dg.ExecuteInProcessResult, write) -> None:
    """Cohort mix against feature drift, the backtest spread and the champion's realised performance."""
    drift = _output(result, "population_drift")
    if drift:
        behaviour = [r["psi"] for r in drift["features"] if r["kind"] == "behaviour" and r["psi"] == r["psi"]]
        write(
            f"population ({drift['reference']} vs {drift['current']}): behaviour features max PSI "
            f"{max(behaviour, default=float('nan')):.3f}"
        )
        for row in drift["cohort_mix"]:
            if row["cohort"] == "account_age" or row["share_reference"] == 0:
                write(
                    f"  {row['cohort']:<12} {row['value']:<8} share {row['share_reference']:6.1%} -> "
                    f"{row['share_current']:6.1%}  test recall {row['test_recall']:.2f}"
                )
    backtest = _output(result, "backtest")
    if backtest:
        savings, ap = backtest["spread"]["savings_vs_approve_all_pct"], backtest["spread"]["average_precision"]
        design = backtest.get("design")
        of_design = (
            f" of {design['windows_label']} ({'the run' if design['same_as_run'] else 'not the run'}'s design)"
            if design
            else ""
        )
        write(
            f"backtest: {len(backtest['folds'])} folds{of_design}, savings {savings['mean']:.1%} +/- "
            f"{savings['std']:.1%}, AP {ap['mean']:.3f} +/- {ap['std']:.3f}"
        )
    monitoring = _output(result, "champion_monitoring")
    if monitoring and monitoring["status"] == "scored":
        rows = {r["metric"]: r for r in monitoring["comparison"]}
        write(
            f"champion {monitoring['champion']} on {monitoring['n_frauds']} frauds matured since its deploy: savings "
            f"{rows['savings_vs_approve_all_pct']['realised']:.1%} realised vs "
            f"{rows['savings_vs_approve_all_pct']['promised']:.1%} promised, AP "
            f"{rows['average_precision']['realised']:.3f} vs {rows['average_precision']['promised']:.3f}"
        )
    elif monitoring:
        write(f"champion monitoring: {monitoring['status'].replace('_', ' ')}")
