"""The file registry: versions, the champion pointer, the history."""

from __future__ import annotations

import pytest

from fraud_pipeline.deployment.registry import ModelRegistryStore


def test_registry_promotes_and_keeps_history(tmp_path):
    store = ModelRegistryStore(tmp_path)
    assert store.champion() is None
    store.write_bundle("v1", "model-1", {"threshold": 0.5}, "# v1")
    store.promote("v1", as_of="2025-06-01", reason="gates passed")
    store.write_bundle("v2", "model-2", {"threshold": 0.4}, "# v2")
    pointer = store.promote("v2", as_of="2025-07-01", reason="gates passed")
    assert pointer["previous_version"] == "v1"
    assert store.champion()["version"] == "v2"
    assert store.versions() == ["v1", "v2"]
    assert [e["version"] for e in store.history()] == ["v1", "v2"]
    assert (tmp_path / "models" / "v2" / "model.txt").read_text() == "model-2"


def test_report_is_written_next_to_its_model_and_rewritten_whole(tmp_path):
    store = ModelRegistryStore(tmp_path)
    folder = store.write_bundle("v1", "model", {"threshold": 0.5}, "card")
    path = store.write_report("v1", "<html>first</html>")
    assert path == folder / "report.html" and path.read_text() == "<html>first</html>"
    store.write_report("v1", "<html>second</html>")
    assert path.read_text() == "<html>second</html>"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "bundle.json", "model.txt", "report.html"]


def test_registry_refuses_to_promote_an_unknown_version(tmp_path):
    with pytest.raises(FileNotFoundError):
        ModelRegistryStore(tmp_path).promote("missing", as_of="2025-07-01", reason="x")
    assert ModelRegistryStore(tmp_path).champion() is None


def lightgbm_model_text(seed: int = 0) -> str:
    """A real (tiny) LightGBM model file."""
    import lightgbm as lgb
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((60, 2))
    data = lgb.Dataset(x, (x[:, 0] > 0.5).astype(int), params={"verbose": -1})
    return lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 3}, data, num_boost_round=2).model_to_string()


def servable_bundle(version: str) -> dict:
    return {
        "version": version,
        "threshold": 0.5,
        "features": ["a", "b"],
        "categories": {},
        "windows": {"as_of": "2025-07-01"},
        "fallback": {"threshold": 0.5, "features": ["a"], "categories": {}},
        "evaluation": {"total_cost": 1.0, "average_precision": 0.5},
    }


def servable(store: ModelRegistryStore, version: str, seed: int = 0) -> None:
    text = lightgbm_model_text(seed)
    store.write_bundle(version, text, servable_bundle(version), f"# {version}", fallback_text=text)


KILL_SCRIPT = """
import io, os, sys
from pathlib import Path
kill_at, root, model = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).read_text()
count = [0]
real_open, real_replace = io.open, os.replace
def tick():
    count[0] += 1
    if count[0] == kill_at:
        os._exit(9)  # as kill -9: no cleanup, no flush of Python buffers
def killing_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
        tick()
    return real_open(file, mode, *args, **kwargs)
def killing_replace(src, dst):
    tick()
    return real_replace(src, dst)
import builtins
builtins.open = io.open = killing_open
os.replace = killing_replace
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline_tests.deployment.test_registry import servable_bundle
store = ModelRegistryStore(root)
store.write_bundle("v1", model, servable_bundle("v1"), "# v1", fallback_text=model)
store.promote("v1", as_of="2025-07-01", reason="gates passed")
print("finished")
"""


def test_a_kill_at_any_point_of_a_deploy_leaves_whole_versions_and_a_champion_the_history_explains(tmp_path):
    """kill -9 after each file write or rename of writing a version and promoting it, one run per point."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    model = lightgbm_model_text(1)
    (tmp_path / "model.txt").write_text(model)
    project = Path(__file__).resolve().parents[2]
    finished, kill_at = False, 0
    while not finished:
        kill_at += 1
        assert kill_at < 40, "the deploy never finished"
        root = tmp_path / f"registry_{kill_at}"
        store = ModelRegistryStore(root)
        servable(store, "v0")
        store.promote("v0", as_of="2025-06-01", reason="first")
        done = subprocess.run(
            [sys.executable, "-c", KILL_SCRIPT, str(kill_at), str(root), str(tmp_path / "model.txt")],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project)},
            capture_output=True,
            text=True,
        )
        finished = "finished" in done.stdout
        assert finished or done.returncode == 9, done.stderr
        for version in store.versions():
            folder = store.bundle_dir(version)
            assert {p.name for p in folder.iterdir()} >= {
                "model.txt",
                "fallback_model.txt",
                "bundle.json",
                "MODEL_CARD.md",
            }
            if version == "v1":
                assert (folder / "model.txt").read_text() == model
                assert json.loads((folder / "bundle.json").read_text())["version"] == "v1"
                assert (folder / "MODEL_CARD.md").read_text() == "# v1"
        champion = store.champion()
        promoted = [e["version"] for e in store.history() if e["event"] == "promoted"]
        assert champion["version"] == promoted[-1], (kill_at, champion, promoted)
        assert champion["version"] in store.versions()
        if not finished:
            shutil.rmtree(root)
    assert kill_at > 5  # the deploy has that many points to be killed at
    assert store.valid_champion() == (store.champion(), None) and store.champion()["version"] == "v1"


def test_an_unreadable_champion_pointer_or_bundle_is_a_one_line_error_naming_the_file(tmp_path):
    from fraud_pipeline.deployment.registry import RegistryError

    store = ModelRegistryStore(tmp_path)
    servable(store, "v1")
    store.promote("v1", as_of="2025-07-01", reason="gates passed")
    (tmp_path / "champion.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"champion\.json: not valid JSON") as error:
        store.champion()
    assert "\n" not in str(error.value) and str(tmp_path / "champion.json") in str(error.value)
    pointer, problem = store.valid_champion()
    assert pointer is None and "champion.json: not valid JSON" in problem
    # a promotion replaces an unreadable pointer, and says so in the history
    servable(store, "v2", seed=2)
    store.promote("v2", as_of="2025-07-02", reason="gates passed")
    assert store.champion()["version"] == "v2"
    assert "champion.json: not valid JSON" in store.history()[-1]["replaced_unreadable"]
    (store.bundle_dir("v2") / "bundle.json").write_text("[1, 2")
    with pytest.raises(RegistryError, match=r"v2/bundle\.json: not valid JSON"):
        store.read_bundle("v2")
    assert "v2/bundle.json: not valid JSON" in store.valid_champion()[1]


@pytest.mark.parametrize("damage", ["folder gone", "garbage model", "empty fallback", "bundle lacks threshold"])
def test_a_champion_that_cannot_be_served_is_no_valid_champion(tmp_path, damage):
    import json
    import shutil

    store = ModelRegistryStore(tmp_path)
    servable(store, "v1")
    store.promote("v1", as_of="2025-07-01", reason="gates passed")
    folder = store.bundle_dir("v1")
    if damage == "folder gone":
        shutil.rmtree(folder)
        expected = "v1: missing (the folder of model version v1)"
    elif damage == "garbage model":
        (folder / "model.txt").write_text("this is not a model\n")
        expected = "v1/model.txt: not a LightGBM model file"
    elif damage == "empty fallback":
        (folder / "fallback_model.txt").write_text("")
        expected = "v1/fallback_model.txt: not a LightGBM model file"
    else:
        bundle = json.loads((folder / "bundle.json").read_text())
        del bundle["threshold"]
        (folder / "bundle.json").write_text(json.dumps(bundle))
        expected = "v1/bundle.json: not a servable bundle (lacks threshold)"
    pointer, problem = store.valid_champion()
    assert pointer is None and expected in problem and "\n" not in problem
    from fraud_pipeline.deployment.registry import RegistryError

    with pytest.raises(RegistryError, match=re_escape(expected)):
        store.scoring_bundle("v1")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_torn_last_history_line_is_no_event_and_the_next_event_stays_apart(tmp_path):
    store = ModelRegistryStore(tmp_path)
    servable(store, "v1")
    store.promote("v1", as_of="2025-07-01", reason="first")
    with open(tmp_path / "history.jsonl", "a") as handle:
        handle.write('{"event": "promoted", "version": "v9", "as_')  # killed while appending
    assert store.champion()["version"] == "v1"
    store.record({"event": "refused", "version": "v2"})
    assert [e["event"] for e in store.history()] == ["promoted", "refused"]


def _policy_dict() -> dict:
    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline_tests.deployment.policies import hand_policy

    return hand_policy(0.5, CohortSpec("channel", "channel"), {"online": 0.2, "pos": 0.7}).as_dict()


def _malformed(field: str, damage: str) -> dict:
    policy = _policy_dict()
    if damage == "threshold NaN":
        policy["cells"][1]["threshold"] = float("nan")
    elif damage == "no global threshold":
        del policy["global_threshold"]
    elif damage == "cell lacks a field":
        del policy["cells"][0]["n_frauds"]
    elif damage == "split without a column":
        policy["splits"][0]["column"] = ""
    elif damage == "not an object":
        policy = [0.5]
    elif damage == "labels without bins":
        policy["splits"][0]["labels"] = ["a"]
    elif damage == "bins decreasing":
        policy["splits"][0]["bins"] = [30, 7]
    elif damage == "another global threshold":
        policy["global_threshold"] = 0.25
    return policy


@pytest.mark.parametrize(
    "field, damage, expected",
    [
        ("policy", "threshold NaN", "policy.cells[1].threshold: not a finite number (nan)"),
        ("policy", "no global threshold", "policy.global_threshold: not a finite number (None)"),
        ("fallback.policy", "cell lacks a field", "fallback.policy.cells[0]: lacks n_frauds"),
        ("policy", "split without a column", "policy.splits[0].column: not a name ('')"),
        ("fallback.policy", "not an object", "fallback.policy: not an object"),
        ("policy", "labels without bins", "policy: unreadable (ValueError: cohort 'channel' has labels but no bins)"),
        (
            "fallback.policy",
            "another global threshold",
            "fallback.policy.global_threshold: 0.25 is not the model's threshold 0.5",
        ),
        ("policy", "bins decreasing", "policy.splits[0].bins: not increasing bin edges (numbers, or 'inf' / '-inf')"),
    ],
)
def test_a_malformed_decision_policy_is_one_line_naming_bundle_json_and_the_field(tmp_path, field, damage, expected):
    import json

    from fraud_pipeline.deployment.registry import RegistryError

    store = ModelRegistryStore(tmp_path)
    text = lightgbm_model_text()
    bundle = servable_bundle("v1")
    bundle["policy"] = bundle["fallback"]["policy"] = _policy_dict()
    if field == "policy":
        bundle["policy"] = _malformed(field, damage)
    else:
        bundle["fallback"]["policy"] = _malformed(field, damage)
    store.write_bundle("v1", text, json.loads(json.dumps(bundle)), "# v1", fallback_text=text)
    store.promote("v1", as_of="2025-07-01", reason="gates passed")
    pointer, problem = store.valid_champion()
    line = f"v1/bundle.json: malformed decision policy: {expected}"
    assert pointer is None and line in problem and "\n" not in problem, problem
    with pytest.raises(RegistryError, match=re_escape(line)):
        store.scoring_bundle("v1")


def test_a_bundle_with_a_well_formed_policy_or_none_at_all_is_served(tmp_path):
    from fraud_pipeline.lib.policy import policy_of

    store = ModelRegistryStore(tmp_path)
    text = lightgbm_model_text()
    import math

    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline_tests.deployment.policies import hand_policy

    age = CohortSpec("account_age", "account_age_days", bins=(0, 7, math.inf), labels=("<7d", ">=7d"))
    with_policy = servable_bundle("v2")
    with_policy["policy"] = _policy_dict()
    with_policy["fallback"]["policy"] = hand_policy(0.5, age, {"<7d": 0.2}).as_dict()  # an infinite edge
    store.write_bundle("v1", text, servable_bundle("v1"), "# v1", fallback_text=text)
    store.write_bundle("v2", text, with_policy, "# v2", fallback_text=text)
    for version in ("v1", "v2"):
        store.promote(version, as_of="2025-07-01", reason="gates passed")
        assert store.valid_champion() == (store.champion(), None)
    served = store.scoring_bundle("v2")
    assert policy_of(served).thresholds() == {"channel=online": 0.2, "channel=pos": 0.7}
    assert policy_of(served["fallback"]).splits == (age,)
    old = store.scoring_bundle("v1")
    assert policy_of(old).is_single and policy_of(old).global_threshold == 0.5
