"""The clean-worlds table command: options, the row read from what a run leaves, the table."""

from __future__ import annotations

import json
import pickle
from datetime import datetime

import pandas as pd
import pytest

from fraud_pipeline.cli import worlds
from fraud_pipeline.cli.worlds import World, WorldRow, WorldsError
from fraud_pipeline.evaluation.result import ModelEvaluation
from fraud_pipeline.lib.cohort_splits import cohorts_named
from fraud_pipeline.lib.policy import CellChoice, DecisionPolicy
from fraud_pipeline.training.candidate import Candidate, ThresholdedModel
from fraud_pipeline.training.model import TrainedModel
from fraud_pipeline.training.windows import plan_windows

WORLD = World(3, "2025-06-01")
SUMMARY_BLOCKED_UPSTREAM = """run abc: FAILURE
decision: none taken, the deploy gate was blocked upstream by leakage_guard, label_maturity; the champion stays
deployed: nothing; the previous champion stays (see the failed checks or step below)
"""
SUMMARY_FAILED_STEP = """run abc: FAILURE
decision: none taken, the deploy gate was not reached (see the failed step below); the champion stays
step training_set failed: disk full writing /tmp/x/warehouse.duckdb
step training_set failed: disk full writing /tmp/x/warehouse.duckdb
"""


def windows(as_of: str, horizon_days: float):
    """Real windows of the default design on six months of data."""
    return plan_windows(
        datetime.fromisoformat(as_of),
        horizon_days,
        datetime(2025, 1, 1),
        datetime(2025, 7, 1),
        train_days=49,
        validation_days=14,
        test_days=21,
        min_validation_days=7,
        min_test_days=7,
    )


def evaluation(policy_vs_single: list[dict]) -> ModelEvaluation:
    """A small real evaluation (only its headline numbers matter here)."""
    return ModelEvaluation(
        model_version="v1",
        threshold=0.03,
        rule_amount_threshold=500.0,
        n_transactions=20_000,
        n_frauds=41,
        fraud_rate=41 / 20_000,
        total_cost=4_200.0,
        approve_all_cost=6_000.0,
        rule_cost=5_500.0,
        savings_vs_approve_all=1_800.0,
        savings_vs_approve_all_pct=0.3,
        savings_vs_rule=1_300.0,
        average_precision=0.2,
        roc_auc=0.9,
        precision=0.1,
        recall=0.5,
        f1=0.17,
        n_alerts=200,
        alert_rate=0.01,
        user_precision_at_k=0.2,
        review_capacity_k=50,
        policy_vs_single=policy_vs_single,
    )


def candidate(policy: DecisionPolicy | None) -> Candidate:
    """A real candidate whose main model carries ``policy``."""
    model = TrainedModel(model_text="tree", features=("amount",), categories={}, best_iteration=1)
    main = ThresholdedModel(model, threshold=0.03, validation_cost=100.0, validation_alerts=5, policy=policy)
    return Candidate(main=main, fallback=ThresholdedModel(model, 0.02, 120.0, 7))


def per_channel_policy() -> DecisionPolicy:
    cell = CellChoice("online", 900, 20, 0.57, 0.02, 0.025, 50.0, 30)
    return DecisionPolicy(global_threshold=0.03, splits=cohorts_named(("channel", "account_age")), cells=(cell,))


def write_storage(folder, **outputs) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in outputs.items():
        (folder / name).write_bytes(pickle.dumps(value))


def write_history(path, events) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "promo', encoding="utf-8")


# --- options ---------------------------------------------------------------------------------------------


def test_options_pass_what_follows_the_separator_to_run():
    args = worlds.parse_arguments(
        [
            "--seeds",
            "1",
            "2",
            "1",
            "--as-of",
            "2025-07-01",
            "2025-06-01",
            "--jobs",
            "2",
            "--",
            "--min-validation-days",
            "14",
        ]
    )
    assert args.seeds == [1, 2]
    assert args.run_args == ["--min-validation-days", "14"]
    assert args.jobs == 2 and args.n_transactions is None and args.work is None
    assert worlds.grid(args.seeds, args.as_of) == [
        World(1, "2025-06-01"),
        World(1, "2025-07-01"),
        World(2, "2025-06-01"),
        World(2, "2025-07-01"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "1", "--as-of", "2025-6-1"], "--as-of 2025-6-1"),
        (["--seeds", "1", "--as-of", "2025-06-01", "--jobs", "0"], "--jobs 0: must be at least 1"),
        (["--seeds", "1", "--as-of", "2025-06-01", "--n-transactions", "0"], "--n-transactions 0"),
        (["--seeds", "1", "--as-of", "2025-06-01", "--", "--seed=4"], "-- --seed=4: set per world"),
        (["--seeds", "1", "--as-of", "2025-06-01", "--out", "/no/such/folder/t.md"], "--out /no/such/folder/t.md"),
    ],
)
def test_option_mistakes_are_one_line_and_run_nothing(argv, message, capsys, tmp_path):
    with pytest.raises(WorldsError, match=message.replace("?", r"\?")):
        worlds.parse_arguments(argv)
    assert worlds.main(["--work", str(tmp_path), *argv]) == worlds.USAGE
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and message in printed[0]
    assert list(tmp_path.iterdir()) == []


def test_each_world_runs_the_real_command_line_in_its_own_folders(tmp_path):
    command = worlds.run_command(WORLD, 20_000, ["--min-validation-days", "14"])
    assert command[1:] == [
        "-m",
        "fraud_pipeline",
        "run",
        "--seed",
        "3",
        "--as-of",
        "2025-06-01",
        "--n-transactions",
        "20000",
        "--min-validation-days",
        "14",
    ]
    assert "--n-transactions" not in worlds.run_command(WORLD, None, [])
    project_home = tmp_path / "project_home"
    project_home.mkdir()
    (project_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    folder = tmp_path / "work" / WORLD.folder_name
    write_storage(folder / "home" / "storage", model_evaluation="stale")
    env = worlds.prepare_world(folder, project_home)
    assert env["FRAUD_PIPELINE_DATA_DIR"] == str(folder / "data")
    assert env["DAGSTER_HOME"] == str(folder / "home")
    assert (folder / "home" / "dagster.yaml").read_text(encoding="utf-8").startswith("telemetry")
    assert not (folder / "home" / "storage").exists()  # an earlier run's outputs would be read as this one's


# --- the outcome ------------------------------------------------------------------------------------------


def test_the_outcome_is_the_nights_recorded_decision():
    other_night = {"event": "promoted", "as_of": "2025-07-01T00:00:00", "version": "old"}
    blocked = {
        "event": "blocked",
        "as_of": "2025-06-01T00:00:00",
        "blocked_by": ["cohort_floors"],
        "problems": ["training_set:leakage_guard failed: a feature saw the future"],
    }
    refused = {"event": "refused", "as_of": "2025-06-01T00:00:00", "reason": "cohort_floors: recall 0.02 < 0.05"}
    assert (
        worlds.decision_outcome([other_night, blocked, refused], "2025-06-01")
        == "blocked: cohort_floors, leakage_guard"
    )
    assert worlds.decision_outcome([refused], "2025-06-01") == "blocked: cohort_floors"
    assert worlds.decision_outcome([other_night], "2025-07-01") == "promoted"
    kept = {"event": "kept_champion", "as_of": "2025-06-01T00:00:00"}
    assert worlds.decision_outcome([other_night, kept], "2025-06-01") == "kept champion"
    assert worlds.decision_outcome([other_night], "2025-06-01") is None


def test_a_torn_history_line_is_no_event(tmp_path):
    path = tmp_path / "registry" / "history.jsonl"
    write_history(path, [{"event": "promoted", "as_of": "2025-06-01T00:00:00"}])
    assert [e["event"] for e in worlds.read_history(path)] == ["promoted"]
    assert worlds.read_history(tmp_path / "missing.jsonl") == []


@pytest.mark.parametrize(
    ("summary", "returncode", "outcome"),
    [
        (SUMMARY_BLOCKED_UPSTREAM, 1, "blocked: leakage_guard, label_maturity"),
        (SUMMARY_FAILED_STEP, 1, "stopped: training_set"),
        ("Traceback (most recent call last):\nMemoryError\n", 1, "crashed (exit 1): MemoryError"),
        ("", -9, "crashed (exit -9): no output"),
    ],
)
def test_a_night_without_a_decision_is_read_from_its_summary(summary, returncode, outcome):
    assert worlds.summary_outcome(summary, returncode) == outcome


# --- the numbers ------------------------------------------------------------------------------------------


def test_windows_say_when_they_were_shortened():
    assert worlds.windows_label(windows("2025-07-01", 41.0)) == "49/14/21"
    shortened = windows("2025-06-01", 68.0)
    assert shortened.shortened()
    label = worlds.windows_label(shortened)
    days = shortened.days()
    assert label == f"{days['train']}/{days['validation']}/{days['test']} (shortened)"
    assert days["validation"] < 14


def test_policy_structure_names_its_splits_or_says_single():
    assert worlds.policy_structure(DecisionPolicy.single(0.03)) == "single"
    assert worlds.policy_structure(per_channel_policy()) == "channel x account_age"


def test_a_blocked_candidates_numbers_come_from_the_stored_outputs(tmp_path):
    storage = tmp_path / "home" / "storage"
    comparison = [{"cohort": "all", "value": "all", "policy_total_cost": 4_200.0, "single_total_cost": 4_900.0}]
    write_storage(
        storage,
        training_windows=windows("2025-07-01", 41.0),
        model_evaluation=evaluation(comparison),
        fraud_model=candidate(per_channel_policy()),
    )
    history = tmp_path / "data" / "registry" / "history.jsonl"
    write_history(history, [{"event": "blocked", "as_of": "2025-07-01T00:00:00", "blocked_by": ["cohort_floors"]}])
    row = worlds.world_row(World(3, "2025-07-01"), history, storage, "", 1, 61.4)
    assert row == WorldRow(
        World(3, "2025-07-01"),
        "blocked: cohort_floors",
        windows="49/14/21",
        frauds=41,
        cost=4_200.0,
        approve_all=6_000.0,
        savings_pct=0.3,
        policy="channel x account_age",
        single_cost=4_900.0,
        seconds=61.4,
    )
    assert not row.deployed


def test_a_night_stopped_early_has_only_what_it_wrote(tmp_path):
    storage = tmp_path / "storage"
    write_storage(storage, training_windows=windows("2025-06-01", 68.0))
    (storage / "model_evaluation").write_bytes(b"not a pickle")
    row = worlds.world_row(WORLD, tmp_path / "none.jsonl", storage, SUMMARY_FAILED_STEP, 1, 12.0)
    assert row.outcome == "stopped: training_set"
    assert row.windows.endswith("(shortened)")
    assert (row.frauds, row.cost, row.policy, row.single_cost) == (None, None, None, None)


def test_single_threshold_cost_is_absent_without_the_comparison():
    assert worlds.single_threshold_cost(evaluation([])) is None
    row = {"cohort": "all", "value": "all", "single_total_cost": 5_000.0}
    assert worlds.single_threshold_cost(evaluation([{"cohort": "channel", "value": "online"}, row])) == 5_000.0


# --- the table --------------------------------------------------------------------------------------------


def test_the_table_has_a_row_per_world_and_counts_the_deploys():
    rows = [
        WorldRow(World(1, "2025-06-01"), "promoted", "49/14/21", 120, 9_000.0, 15_000.0, 0.4, "channel", 9_500.0, 58.2),
        WorldRow(World(1, "2025-07-01"), "blocked: cohort_floors", "49/14/21", 90, 12_000.0, 11_000.0, -0.09),
        WorldRow(World(2, "2025-06-01"), "crashed (exit -9): Killed"),
    ]
    table = worlds.render_table(rows).splitlines()
    assert table[0] == "| " + " | ".join(worlds.COLUMNS) + " |"
    assert table[2] == "| 1 | 2025-06-01 | promoted | 49/14/21 | 120 | 9,000 | 15,000 | 40.0% | channel | 9,500 | 58 |"
    assert (
        table[3] == "| 1 | 2025-07-01 | blocked: cohort_floors | 49/14/21 | 90 | 12,000 | 11,000 | -9.0% | - | - | - |"
    )
    assert table[4].startswith("| 2 | 2025-06-01 | crashed (exit -9): Killed | - |")
    assert table[-1] == "1 of 3 deployed"


def test_the_single_threshold_column_is_left_out_when_no_world_has_it():
    table = worlds.render_table([WorldRow(WORLD, "kept champion", policy="single", seconds=3.0)])
    assert "single-threshold cost" not in table
    assert "| 3 | 2025-06-01 | kept champion | - | - | - | - | - | single | 3 |" in table
    assert table.rstrip().endswith("0 of 1 deployed")


def test_text_from_a_run_cannot_break_the_table():
    table = worlds.render_table([WorldRow(WORLD, "crashed (exit 1): a|b [x](y)")])
    assert r"a\|b \[x\](y)" in table


def test_the_caption_names_what_every_world_shares():
    text = worlds.caption(500_000, ["--min-validation-days", "14"])
    assert text == "Simulated worlds of 500,000 transactions; run options --min-validation-days 14."
    table = worlds.render_table([WorldRow(WORLD, "promoted")], text)
    assert table.startswith(text + "\n\n| seed |")
    assert worlds.caption(20_000, []) == "Simulated worlds of 20,000 transactions."


def test_a_world_that_cannot_be_run_is_a_row_and_the_table_is_still_made(tmp_path, monkeypatch, capsys):
    def run_world(world, work, project_root, n_transactions, run_args):
        assert work == tmp_path.resolve() and n_transactions == 20_000 and run_args == ["--test-days", "14"]
        if world.seed == 2:
            raise OSError("No space left on device")
        return WorldRow(world, "promoted", seconds=1.0)

    monkeypatch.setattr(worlds, "run_world", run_world)
    out = tmp_path / "table.md"
    argv = ["--seeds", "1", "2", "--as-of", "2025-07-01", "--n-transactions", "20000", "--work", str(tmp_path)]
    assert worlds.main([*argv, "--out", str(out), "--", "--test-days", "14"]) == 0
    table = out.read_text(encoding="utf-8")
    assert "| 2 | 2025-07-01 | crashed: OSError: No space left on device |" in table
    assert "\n1 of 2 deployed\n" in table
    # neither world left a warehouse: the kinds table says so instead of guessing
    assert table.rstrip().endswith("Test frauds by kind: no world stored its test scores.")
    assert table in capsys.readouterr().out


def _scored_warehouse(path, alerts: dict[int, bool]):
    import duckdb
    import pandas as pd

    frame = pd.DataFrame(
        {"transaction_id": list(alerts), "split": "test", "score": 0.5, "alert": list(alerts.values())}
    )
    with duckdb.connect(str(path)) as con:
        con.register("scored", frame)
        con.execute("CREATE TABLE evaluation_scores AS SELECT * FROM scored")
    return path


TRUTH = pd.DataFrame(
    {
        "transaction_id": [1, 2, 3, 4, 5, 6, 7],
        "is_fraud": [True, True, True, True, False, True, False],
        "scenario": ["card_testing", "card_testing", "compromised_merchant", "new_account_fraud", None, "x", None],
    }
)


def test_caught_by_kind_counts_the_test_frauds_of_each_kind_the_alerts_caught(tmp_path):
    # 6 and 7 are outside the test window (no stored score): not counted; 5 is genuine though alerted
    warehouse = _scored_warehouse(tmp_path / "w.duckdb", {1: True, 2: False, 3: False, 4: True, 5: True})
    counts = worlds.caught_by_kind(warehouse, TRUTH)
    assert counts == {"card_testing": (1, 2), "compromised_merchant": (0, 1), "new_account_fraud": (1, 1)}


def test_caught_by_kind_is_none_without_stored_scores(tmp_path):
    import duckdb

    assert worlds.caught_by_kind(tmp_path / "absent.duckdb", TRUTH) is None
    with duckdb.connect(str(tmp_path / "early.duckdb")) as con:
        con.execute("CREATE TABLE training_set AS SELECT 1 AS transaction_id")
    assert worlds.caught_by_kind(tmp_path / "early.duckdb", TRUTH) is None


def test_the_kinds_table_has_every_kind_of_any_world():
    text = worlds.render_kinds(
        [
            (World(4, "2025-06-01"), {"compromised_merchant": (1, 270), "new_account_fraud": (0, 78)}),
            (World(4, "2025-07-01"), {"card_testing": (48, 52)}),
            (World(5, "2025-06-01"), None),
        ]
    ).splitlines()
    assert text[2] == "| seed | as_of | card_testing | compromised_merchant | new_account_fraud |"
    assert text[4] == "| 4 | 2025-06-01 | - | 1/270 | 0/78 |"
    assert text[5] == "| 4 | 2025-07-01 | 48/52 | - | - |"
    assert text[6] == "| 5 | 2025-06-01 | no scores | no scores | no scores |"
