"""What the Dagster instance remembers about the checks guarding the deploy."""

import dagster as dg

#: The asset the deploy gates' checks sit on: it materialises every night, so a blocked candidate
#: still gets its report, drift and backtest, and a failed gate holds back only the promotion.
DEPLOY_GATE = "deploy_gate"

#: Every blocking check upstream of the deploy; a test keeps this list equal to the graph's.
GUARDING_CHECKS: tuple[dg.AssetCheckKey, ...] = tuple(
    dg.AssetCheckKey(dg.AssetKey(asset), name)
    for asset, name in (
        ("transactions", "quarantine_within_limit"),
        ("transactions", "transaction_contract"),
        ("chargebacks", "chargeback_contract"),
        ("transaction_features", "features_match_oracle"),
        ("transaction_features", "features_ignore_the_future"),
        ("transaction_features", "feature_missingness_contract"),
        ("training_set", "training_set_missingness_contract"),
        ("training_set", "no_default_signal"),
        ("training_windows", "windows_valid"),
        ("training_set", "mature_labels_only"),
        ("training_set", "min_frauds_per_window"),
        ("training_set", "labels_complete_enough"),
        (DEPLOY_GATE, "model_learnt_from_its_train_split"),
        (DEPLOY_GATE, "threshold_chosen_on_validation"),
        (DEPLOY_GATE, "model_matrix_keeps_absence"),
        (DEPLOY_GATE, "cost_beats_baselines"),
        (DEPLOY_GATE, "cohort_floors"),
        (DEPLOY_GATE, "evaluation_scores_reproduce"),
        (DEPLOY_GATE, "unavailable_history_not_misread"),
    )
)
#: The guarding checks upstream of ``deploy_gate`` (the ones on it run after it, on what it decided).
UPSTREAM_GUARDING_CHECKS = tuple(k for k in GUARDING_CHECKS if k.asset_key != dg.AssetKey(DEPLOY_GATE))


def _latest_finished_evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey, depth: int = 20):
    """The newest finished evaluation of a check; a planned one (a queued or running run's) has no verdict yet."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=depth):
        event = record.event.dagster_event if record.event else None
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            return event.asset_check_evaluation_data
    return None


def check_record_problems(instance: dg.DagsterInstance, keys=GUARDING_CHECKS) -> list[str]:
    """Why the latest evaluations of the guarding checks do not clear the current materialisations.

    A check clears its asset only if its latest evaluation passed and targeted the asset's latest
    materialisation; a pass on an older materialisation says nothing about the current candidate.
    """
    problems = []
    for key in keys:
        label = f"{key.asset_key.to_user_string()}:{key.name}"
        evaluation = _latest_finished_evaluation(instance, key)
        if evaluation is None:
            problems.append(f"{label} has no finished evaluation")
            continue
        if not evaluation.passed:
            problems.append(f"{label} failed: {evaluation.description}")
            continue
        latest = instance.get_latest_materialization_event(key.asset_key)
        target = evaluation.target_materialization_data
        if latest is None or target is None or target.run_id != latest.run_id:
            problems.append(f"{label} passed for an older materialisation of {key.asset_key.to_user_string()}")
    return problems
