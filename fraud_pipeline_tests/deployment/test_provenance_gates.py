"""Provenance recomputed by the gates: rows learnt from, threshold, model matrix, test scores, and the too-good warning.

Each gate is fed the fault it guards against on a small world's real candidate and fails with a reason
that says which; each passes on the clean candidate.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources
from fraud_pipeline.deployment.gates import (
    Splits,
    champion_test_cost,
    evaluation_scores_gate,
    history_gate,
    learnt_rows_gate,
    model_matrix_gate,
    threshold_gate,
)
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.features.catalog import HISTORY_FEATURES
from fraud_pipeline.lib.costs import CostModel, choose_threshold, decision_costs
from fraud_pipeline.lib.policy import DecisionPolicy, cell_labels
from fraud_pipeline.resources import CostSettings, SimulatedWorld
from fraud_pipeline.training.candidate import train_candidate
from fraud_pipeline.training.model import ModelParams, model_file_missing_types, model_file_rows, score
from fraud_pipeline.training.training_set import load_split
from fraud_pipeline_tests import faults
from fraud_pipeline_tests.conftest import SMALL_WORLD

UP_TO_THE_EVALUATION = dg.AssetSelection.assets("model_evaluation").upstream().without_checks() - (
    dg.AssetSelection.assets("landed_files")
)
#: Every configured split crossed, no selection, little shrinkage: the small world's candidate then has cells
#: whose thresholds decide test rows otherwise than its global one.
CROSSED = {"ops": {"fraud_model": {"config": {"policy_select_on_holdout": False, "policy_prior_frauds": 1.0}}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small world evaluated once (its policy crossing every split): its warehouse, candidate, evaluation and splits."""
    folder = tmp_path_factory.mktemp("provenance")
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=SMALL_WORLD)}
    result = dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], resources=resources, selection=UP_TO_THE_EVALUATION, run_config=CROSSED
    )
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        splits = {name: load_split(con, name) for name in ("train", "validation", "test")}
    return (
        folder / "warehouse.duckdb",
        result.output_for_node("fraud_model"),
        result.output_for_node("model_evaluation"),
        splits,
    )


@pytest.fixture
def con(world):
    with duckdb.connect(str(world[0]), read_only=True) as connection:
        yield connection


@pytest.fixture
def writable(world, tmp_path):
    """A private copy of the warehouse that a test may corrupt."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(world[0], path)
    with duckdb.connect(str(path)) as connection:
        yield connection


def retrained(train, validation, **params):
    return train_candidate(train, validation, ModelParams(**params), CostModel())[0]


def test_the_clean_candidate_passes_every_provenance_gate(world, con):
    _, candidate, evaluation, _ = world
    for gate in (
        learnt_rows_gate(Splits(con), candidate),
        threshold_gate(Splits(con), candidate, CostModel()),
        model_matrix_gate(Splits(con), candidate),
        evaluation_scores_gate(con, candidate, evaluation, CostModel()),
    ):
        assert gate.passed, (gate.name, gate.reason)
    assert evaluation.test_rows["n_rows"] == evaluation.n_transactions
    assert candidate.provenance()["main"]["train_rows"]["n_rows"] == len(world[3]["train"])


def test_the_model_file_says_how_many_rows_it_fitted(world):
    _, candidate, _, splits = world
    assert model_file_rows(candidate.main.model.model_text) == len(splits["train"])
    assert model_file_rows(candidate.fallback.model.model_text) == int((splits["train"]["n_prior_tx_30d"] > 0).sum())


@pytest.mark.parametrize("extra", ["validation", "test"])
def test_a_model_trained_on_its_train_split_plus_another_is_named(world, con, extra):
    _, _, _, splits = world
    leaky = retrained(pd.concat([splits["train"], splits[extra]]), splits["validation"])
    gate = learnt_rows_gate(Splits(con), leaky)
    assert not gate.passed
    assert f"the main model learnt from train+{extra}" in gate.reason
    assert f"the fallback model learnt from train+{extra}" in gate.reason


def test_a_model_early_stopped_on_the_test_split_is_named(world, con):
    _, _, _, splits = world
    gate = learnt_rows_gate(Splits(con), retrained(splits["train"], splits["test"]))
    assert not gate.passed and "stopped early on test" in gate.reason


def test_a_forged_record_is_caught_by_the_model_files_row_count(world, con):
    """Digests copied from the clean candidate onto a model fitted on more rows: the model file still tells."""
    _, candidate, _, splits = world
    leaky = retrained(pd.concat([splits["train"], splits["test"]]), splits["validation"])
    clean_model = candidate.main.model
    forged = replace(
        leaky.main.model,
        train_rows=clean_model.train_rows,
        fit_rows=clean_model.fit_rows,
        early_stopping_rows=clean_model.early_stopping_rows,
    )
    gate = learnt_rows_gate(Splits(con), replace(candidate, main=replace(candidate.main, model=forged)))
    assert not gate.passed
    assert "the main model file says LightGBM fitted" in gate.reason and "learnt from" not in gate.reason


def test_the_genuine_row_sample_is_recomputed_with_the_candidates_cap_and_seed(world, con):
    _, candidate, _, _ = world
    claims_a_sample = replace(candidate, params={**candidate.params, "max_genuine_rows": 5_000})
    gate = learnt_rows_gate(Splits(con), claims_a_sample)
    assert not gate.passed and "not the genuine-row sample of its train split" in gate.reason


def test_a_candidate_trained_on_a_genuine_row_sample_passes_with_its_sample_recomputed(world, con):
    """Above the cap (the 10M path) the model fits a hash sample; the gate draws the same sample again."""
    _, _, _, splits = world
    sampled = retrained(splits["train"], splits["validation"], max_genuine_rows=5_000)
    assert sampled.main.model.genuine_sample_rate < 1
    assert sampled.main.model.fit_rows.n_rows < sampled.main.model.train_rows.n_rows
    assert model_file_rows(sampled.main.model.model_text) == sampled.main.model.fit_rows.n_rows
    gate = learnt_rows_gate(Splits(con), sampled)
    assert gate.passed, gate.reason


def test_a_candidate_without_digests_cannot_pass(world, con):
    _, candidate, _, _ = world
    old = replace(candidate, main=replace(candidate.main, model=replace(candidate.main.model, train_rows=None)))
    gate = learnt_rows_gate(Splits(con), old)
    assert not gate.passed and "records no digest" in gate.reason


def test_a_threshold_chosen_on_the_test_split_is_named(world, con):
    _, candidate, _, splits = world
    test = splits["test"]
    on_test = choose_threshold(
        score(candidate.main.model, test), test["is_fraud"].to_numpy(), test["amount"].to_numpy(), CostModel()
    )
    assert not math.isclose(on_test.threshold, candidate.threshold)
    gate = threshold_gate(
        Splits(con), replace(candidate, main=replace(candidate.main, threshold=on_test.threshold)), CostModel()
    )
    assert not gate.passed
    assert "the main model's threshold" in gate.reason and "it is the cost-minimising threshold of the test split" in (
        gate.reason
    )
    assert "fallback" not in gate.reason


def test_a_threshold_said_to_be_chosen_on_other_rows_fails(world, con):
    _, candidate, _, _ = world
    other = replace(candidate.fallback, threshold_rows=candidate.main.threshold_rows)
    gate = threshold_gate(Splits(con), replace(candidate, fallback=other), CostModel())
    assert not gate.passed and "the fallback model says its threshold was chosen on" in gate.reason


def test_a_threshold_off_by_a_little_fails(world, con):
    _, candidate, _, _ = world
    nudged = replace(candidate, main=replace(candidate.main, threshold=candidate.threshold * 1.01))
    gate = threshold_gate(Splits(con), nudged, CostModel())
    assert not gate.passed and "chosen elsewhere" in gate.reason


def _with_cell_threshold(candidate, cell: str, threshold: float):
    """The candidate with one cell of its main policy given another threshold."""
    policy = candidate.policy
    cells = tuple(replace(c, threshold=threshold) if c.cell == cell else c for c in policy.cells)
    return replace(candidate, main=replace(candidate.main, policy=replace(policy, cells=cells)))


def _differing_cell(candidate, test: pd.DataFrame):
    """A cell of the main policy whose threshold differs from the global one on test rows it decides otherwise."""
    policy = candidate.policy
    scores = score(candidate.main.model, test)
    labels = cell_labels(test, policy.splits).to_numpy()
    for cell in policy.cells:
        rows = labels == cell.cell
        low, high = sorted((cell.threshold, policy.global_threshold))
        if ((scores[rows] >= low) & (scores[rows] < high)).any():
            return cell
    raise AssertionError("no cell decides a test row otherwise than the global threshold")


def test_the_clean_policy_has_cells_and_every_one_is_recomputed(world, con):
    _, candidate, evaluation, _ = world
    assert len(candidate.policy.cells) > 3 and candidate.request().select_on_holdout is False
    gate = threshold_gate(Splits(con), candidate, CostModel())
    assert gate.passed, gate.reason
    assert gate.details["main"]["stored_cells"] == gate.details["main"]["recomputed_cells"]
    assert evaluation.policy == candidate.policy.as_dict()


def test_a_tampered_cell_threshold_fails_naming_the_cell(world, con):
    _, candidate, _, splits = world
    cell = _differing_cell(candidate, splits["test"])
    tampered = _with_cell_threshold(candidate, cell.cell, cell.threshold * 1.001)
    gate = threshold_gate(Splits(con), tampered, CostModel())
    assert not gate.passed
    assert f"the main model's threshold for cell {cell.cell} is" in gate.reason and "fallback" not in gate.reason
    assert [m.observed for m in gate.measures if m.name == "policy_cells_differing"] == [1]


def test_a_policy_of_other_splits_than_its_request_fails(world, con):
    _, candidate, _, _ = world
    single = replace(candidate, main=replace(candidate.main, policy=DecisionPolicy.single(candidate.threshold)))
    gate = threshold_gate(Splits(con), single, CostModel())
    assert not gate.passed and "the main model's policy splits by none" in gate.reason


def test_stored_alerts_at_the_global_threshold_are_not_the_policys(world, writable):
    _, candidate, evaluation, splits = world
    _differing_cell(candidate, splits["test"])
    writable.execute("UPDATE evaluation_scores SET alert = score >= $t", {"t": candidate.threshold})
    gate = evaluation_scores_gate(writable, candidate, evaluation, CostModel())
    assert not gate.passed
    assert "stored alerts are not score >= the threshold of the row's cell" in gate.reason, gate.reason


def test_an_evaluation_of_another_policy_fails(world, con):
    _, candidate, evaluation, _ = world
    other = replace(evaluation, policy=DecisionPolicy.single(candidate.threshold).as_dict())
    gate = evaluation_scores_gate(con, candidate, other, CostModel())
    assert not gate.passed and "another policy than the candidate's" in gate.reason


def test_the_champion_is_costed_with_its_own_policy(world, con, tmp_path):
    _, candidate, evaluation, splits = world
    store = ModelRegistryStore(tmp_path / "registry")
    bundle = {k: v for k, v in candidate.as_dict().items() if k != "model_text"}
    bundle["fallback"] = {k: v for k, v in bundle["fallback"].items() if k != "model_text"}
    store.write_bundle(
        candidate.version, candidate.main.model.model_text, bundle, "card", candidate.fallback.model.model_text
    )
    test = splits["test"]
    scores = score(candidate.main.model, test)
    costed = lambda alert: float(  # noqa: E731
        decision_costs(test["is_fraud"].to_numpy(), test["amount"].to_numpy(), alert, CostModel()).sum()
    )
    assert champion_test_cost(con, store, candidate.version, CostSettings()) == pytest.approx(
        costed(candidate.policy.alerts(scores, test)), rel=1e-12
    )
    assert costed(candidate.policy.alerts(scores, test)) == pytest.approx(evaluation.total_cost, rel=1e-9)
    assert costed(scores >= candidate.threshold) != pytest.approx(evaluation.total_cost, rel=1e-9)


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_a_filled_model_matrix_fails_for_training_and_serving(world, con, monkeypatch, fill):
    _, candidate, _, _ = world
    faults.filled_model_matrix(monkeypatch, fill)
    gate = model_matrix_gate(Splits(con), candidate)
    assert not gate.passed
    assert "the main model's training matrix is not the table" in gate.reason
    assert "mean_amount_1h (filled" in gate.reason
    assert "serving:" in gate.reason  # the served scores move where the model splits NaN one way and the fill another


def test_a_model_fitted_on_zero_filled_history_shows_it_in_its_model_file(world, con):
    """Filled before the matrix is built: the matrix function is innocent, the model file is not."""
    _, _, _, splits = world

    def zero_filled(frame):
        return frame.assign(**{name: frame[name].astype("float64").fillna(0.0) for name in HISTORY_FEATURES})

    filled = retrained(zero_filled(splits["train"]), zero_filled(splits["validation"]))
    assert model_file_missing_types(filled.main.model.model_text).get("mean_amount_1h", {"none"}) == {"none"}
    gate = model_matrix_gate(Splits(con), filled)
    assert not gate.passed
    assert "the main model file shows no NaN for" in gate.reason and "training matrix" not in gate.reason


@pytest.mark.parametrize(
    "corruption, said",
    [
        ("UPDATE evaluation_scores SET score = score * 0.5", "sampled test scores differ"),
        ("DELETE FROM evaluation_scores WHERE transaction_id % 10 = 0", "test rows are not scored"),
        (
            "INSERT INTO evaluation_scores SELECT transaction_id, 'test', 0.0, false FROM training_set "
            "WHERE split = 'validation' LIMIT 5",
            "scored rows are not test rows",
        ),
        ("UPDATE evaluation_scores SET alert = NOT alert WHERE transaction_id % 7 = 0", "stored alerts are not score"),
        # the score shuffle inside accounts younger than 30 days, done in the evaluation's scores
        (
            "UPDATE evaluation_scores AS e SET score = s.shuffled FROM ("
            " SELECT a.transaction_id, b.score AS shuffled FROM"
            " (SELECT transaction_id, row_number() OVER (ORDER BY transaction_id) AS r FROM evaluation_scores"
            "  JOIN training_set USING (transaction_id) WHERE account_age_days < 30) AS a"
            " JOIN (SELECT score, row_number() OVER (ORDER BY hash(transaction_id)) AS r FROM evaluation_scores"
            "  JOIN training_set USING (transaction_id) WHERE account_age_days < 30) AS b USING (r)"
            ") AS s WHERE e.transaction_id = s.transaction_id",
            "sampled test scores differ",
        ),
    ],
)
def test_the_evaluations_test_scores_are_recomputed(world, writable, corruption, said):
    _, candidate, evaluation, _ = world
    writable.execute(corruption)
    gate = evaluation_scores_gate(writable, candidate, evaluation, CostModel())
    assert not gate.passed and said in gate.reason, gate.reason


def test_an_evaluation_whose_numbers_are_not_its_scores_fails(world, con):
    _, candidate, evaluation, _ = world
    gate = evaluation_scores_gate(
        con, candidate, replace(evaluation, total_cost=evaluation.total_cost * 0.9), CostModel()
    )
    assert not gate.passed and "is not its stored decisions'" in gate.reason
    other = replace(evaluation, test_rows={"n_rows": 3, "sha256": "0" * 64})
    gate = evaluation_scores_gate(con, candidate, other, CostModel())
    assert not gate.passed and "the evaluation says it scored 3 rows" in gate.reason


def test_the_evaluation_of_another_model_fails(world, con):
    _, candidate, evaluation, splits = world
    other = retrained(splits["train"], splits["validation"], max_rounds=20)
    gate = evaluation_scores_gate(
        con, replace(other, main=replace(other.main, threshold=candidate.threshold)), evaluation, CostModel()
    )
    assert not gate.passed
    assert f"the evaluation is of {evaluation.model_version}" in gate.reason and "scores differ" in gate.reason


def _folds(aps, own=0, costs=None):
    costs = costs or [1000.0 + i for i in range(len(aps))]
    return [
        {"fold": i, "average_precision": ap, "total_cost": cost, "candidates_windows": i == own}
        for i, (ap, cost) in enumerate(zip(aps, costs))
    ]


def _evaluation(world, ap, cost):
    return replace(world[2], average_precision=ap, total_cost=cost)


def test_a_candidate_its_own_fold_reproduces_is_never_too_good(world):
    """The candidate is one of the values the spread is taken over: at most (n - 1) / sqrt(n) std above the mean."""
    rng = np.random.default_rng(0)
    for n in range(2, 8):
        for _ in range(50):
            aps = rng.uniform(0.1, 0.7, n).tolist()
            folds = _folds(aps)
            backtest = {"folds": folds, "design": {"same_as_run": True}}
            gate = history_gate(backtest, _evaluation(world, aps[0], folds[0]["total_cost"]), 3.0)
            assert gate.passed, gate.reason


def test_a_candidate_far_above_its_folds_is_told_to_look_for_a_leak(world):
    backtest = {"folds": _folds([0.35, 0.25, 0.33]), "design": {"same_as_run": False}}
    gate = history_gate(backtest, _evaluation(world, 0.67, 1000.0), 3.0)
    assert not gate.passed and gate.reason.startswith("better than its own history: look for a leak")
    passing = history_gate(backtest, _evaluation(world, 0.40, 1000.0), 3.0)
    assert passing.passed and "is not far above its history" in passing.reason
    assert not history_gate(backtest, _evaluation(world, 0.40, 1000.0), 1.0).passed  # the limit is configurable


def test_a_candidate_its_own_windows_do_not_reproduce_is_named(world):
    backtest = {"folds": _folds([0.35, 0.25]), "design": {"same_as_run": True}}
    gate = history_gate(backtest, _evaluation(world, 0.36, 1000.0), 3.0)
    assert not gate.passed and "the backtest retrained the candidate's own windows and reached AP 0.350" in gate.reason
    # with another design than the run's, fold 0 is not the candidate retrained: nothing to compare
    assert history_gate({**backtest, "design": {"same_as_run": False}}, _evaluation(world, 0.36, 1000.0), 3.0).passed


def test_one_fold_cannot_judge(world):
    gate = history_gate({"folds": _folds([0.3]), "design": {}}, _evaluation(world, 0.9, 1.0), 3.0)
    assert gate.passed and "no spread" in gate.reason
