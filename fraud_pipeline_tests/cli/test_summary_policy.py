"""The run summary's decision-policy line says what the policy is and, for one threshold, why."""

from fraud_pipeline.cli.summary import policy_line
from fraud_pipeline.lib.cohort_splits import CohortSpec
from fraud_pipeline.lib.policy import CellChoice, DecisionPolicy

CHANNEL = CohortSpec("channel", "channel")


def cell(name: str, threshold: float) -> CellChoice:
    return CellChoice(name, 100, 10, 0.4, threshold, threshold, 50.0, 5)


def test_a_policy_of_cells_names_its_split_and_range():
    policy = DecisionPolicy(0.05, (CHANNEL,), (cell("channel=a", 0.02), cell("channel=b", 0.09)))
    line = policy_line(policy)
    assert line.startswith("decision policy: 2 thresholds by channel (0.02..0.09; global 0.05 for unseen cells)")


def test_one_threshold_says_why():
    assert "no cohort split to choose from" in policy_line(DecisionPolicy.single(0.05))
    tried = (
        {"splits": [], "holdout_cost": 10.0, "daily_saving": 0.0, "daily_saving_low": 0.0},
        {"splits": ["channel"], "holdout_cost": 11.0, "daily_saving": -1.0, "daily_saving_low": -3.0},
    )
    line = policy_line(DecisionPolicy(0.05, selection=tried))
    assert line == (
        "decision policy: one threshold 0.05; no cohort split saved money on the later validation days beyond "
        "chance (channel tried)"
    )
    short = tuple({**row, "holdout_cost": None, "daily_saving_low": None} for row in tried)
    assert "validation too short" in policy_line(DecisionPolicy(0.05, selection=short))
