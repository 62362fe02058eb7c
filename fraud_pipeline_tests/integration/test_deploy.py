"""Deploys that cannot sneak through across runs, champion/challenger, rollback, and reproducible nights."""

from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.cli.main import main as cli
from fraud_pipeline.definitions import (
    ALL_ASSETS,
    ALL_CHECKS,
    default_resources,
    fraud_pipeline_job,
)
from fraud_pipeline.deployment.assets import deployed_model
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.lib.policy import DecisionPolicy
from fraud_pipeline.resources import DeployGates, RunClock, SimulatedWorld
from fraud_pipeline_tests.conftest import SMALL_WORLD


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """One instance and one data folder that several runs share, as nights do in production."""
    folder = tmp_path_factory.mktemp("nights")
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=SMALL_WORLD)}
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS], resources=resources, instance=instance, selection=fraud_pipeline_job.selection
        )
        yield instance, resources, first


def materialize(instance, resources, selection, **overrides):
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources={**resources, **overrides},
        instance=instance,
        selection=selection,
        raise_on_error=False,
    )


def champion(resources):
    return ModelRegistryStore(resources["registry"].root).champion()


def test_a_clean_night_decides_promote_on_the_deploy_gate_and_records_it(history):
    _, resources, first = history
    decision = first.output_for_node("deploy_gate")
    assert decision.outcome == "promote" and not decision.blocked_by
    meta = first.asset_materializations_for_node("deploy_gate")[0].metadata
    assert meta["decision"].value == "promote" and meta["n_gates_failed"].value == 0
    assert meta["headline"].value.startswith(f"promoted {decision.candidate} (champion was none); every gate passed")
    (promoted,) = ModelRegistryStore(resources["registry"].root).decisions()
    assert promoted["event"] == "promoted" and promoted["reason"] == meta["headline"].value
    assert {g["name"] for g in promoted["gates"]} >= {"cost_beats_baselines", "unavailable_history_not_misread"}


def test_deploy_alone_after_a_clean_run_is_allowed(history):
    instance, resources, first = history
    result = materialize(instance, resources, ["deployed_model"])
    assert result.success
    assert champion(resources)["version"] == first.output_for_node("fraud_model").version


def test_deploy_alone_is_refused_after_its_gate_failed_in_another_run(history):
    instance, resources, first = history
    before = champion(resources)
    strict = materialize(
        instance, resources, dg.AssetSelection.assets("deploy_gate"), gates=DeployGates(cost_margin=0.99)
    )
    assert not strict.success
    assert strict.output_for_node("deploy_gate").outcome == "blocked"
    alone = materialize(instance, resources, ["deployed_model"])
    assert not alone.success
    failure = next(e for e in alone.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "deploy_gate:cost_beats_baselines failed" in str(failure.event_specific_data.error)
    assert champion(resources) == before
    # put the check back to green for the tests that follow
    assert materialize(instance, resources, dg.AssetSelection.assets("deploy_gate")).success


def test_deploy_alone_is_refused_when_a_check_passed_only_for_an_older_materialisation(history):
    instance, resources, _ = history
    without_checks = dg.AssetSelection.assets("deploy_gate").without_checks()
    assert materialize(instance, resources, without_checks).success
    alone = materialize(instance, resources, ["deployed_model"])
    assert not alone.success
    failure = next(e for e in alone.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "older materialisation of deploy_gate" in str(failure.event_specific_data.error)
    assert materialize(instance, resources, dg.AssetSelection.assets("deploy_gate")).success


@pytest.mark.parametrize(
    "asset, corruption, check",
    [
        (
            "transaction_features",
            "UPDATE transaction_features SET n_prior_tx_30d = n_prior_tx_30d + 1",
            "features_match_oracle",
        ),
        (
            "transaction_features",
            "UPDATE transaction_features SET n_prior_chargebacks_30d = n_prior_chargebacks_30d + 1 "
            "WHERE transaction_id % 50 = 0",
            "features_ignore_the_future",
        ),
        (
            "training_set",
            "UPDATE transaction_labels SET is_mature = false WHERE transaction_id IN "
            "(SELECT transaction_id FROM training_set WHERE split = 'test' LIMIT 3)",
            "mature_labels_only",
        ),
        ("transactions", "UPDATE transactions SET amount = -1 WHERE transaction_id = 7", "transaction_contract"),
    ],
)
def test_a_fault_found_by_a_check_stops_the_deploy(history, asset, corruption, check):
    instance, resources, _ = history
    before = champion(resources)
    with resources["duckdb"].get_connection() as con:
        backup = {
            t: con.execute(f"SELECT * FROM {t}").df()
            for t in ("transactions", "transaction_features", "transaction_labels")
        }
        con.execute(corruption)
    try:
        checks = materialize(instance, resources, dg.AssetSelection.checks_for_assets(asset))
        assert not {e.check_name: e.passed for e in checks.get_asset_check_evaluations()}[check]
        alone = materialize(instance, resources, ["deployed_model"])
        assert not alone.success
        failure = next(e for e in alone.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert f"{check} failed" in str(failure.event_specific_data.error)
        assert champion(resources) == before
    finally:
        with resources["duckdb"].get_connection() as con:
            for table, frame in backup.items():
                con.register("restored", frame)
                con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM restored")
                con.unregister("restored")
        assert materialize(instance, resources, dg.AssetSelection.checks_for_assets(asset)).success


def test_a_challenger_worse_than_the_champion_is_kept_but_not_promoted(history):
    instance, resources, first = history
    before = champion(resources)
    candidate = first.output_for_node("fraud_model")
    # the same booster under another version: a trailing newline changes the content hash, not the model
    main = replace(
        candidate.main, model=replace(candidate.main.model, model_text=candidate.main.model.model_text + "\n")
    )
    challenger = replace(candidate, main=main)
    evaluation = replace(first.output_for_node("model_evaluation"), model_version=challenger.version)
    out = deployed_model(
        context=dg.build_asset_context(instance=instance),
        fraud_model=challenger,
        model_evaluation=evaluation,
        outage_replay=first.output_for_node("outage_replay"),
        training_windows=first.output_for_node("training_windows"),
        label_delay_profile=first.output_for_node("label_delay_profile"),
        duckdb=resources["duckdb"],
        registry=resources["registry"],
        gates=DeployGates(champion_tolerance=-0.5),  # the challenger must be twice as cheap: it is not
        costs=resources["costs"],
    )
    assert out["promoted"] is False
    store = ModelRegistryStore(resources["registry"].root)
    assert store.champion() == before
    assert challenger.version in store.versions()
    kept = store.history()[-1]
    assert kept["event"] == "kept_champion" and kept["reason"].startswith(f"kept the champion {before['version']}")
    (challenge,) = [g for g in kept["gates"] if g["name"] == "not_worse_than_champion"]
    (cost,) = challenge["measures"]
    assert cost["name"] == "cost_vs_champion" and cost["margin"] < 0 and cost["observed"] > cost["bound"]


def test_rollback_moves_the_champion_back(history, monkeypatch, capsys):
    _, resources, first = history
    store = ModelRegistryStore(resources["registry"].root)
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(store.root.parent))
    current = store.champion()["version"]
    other = next(v for v in store.versions() if v != current)
    assert cli(["rollback", other]) == 0
    assert store.champion()["version"] == other
    assert store.champion()["reason"] == "manual rollback"
    assert cli(["rollback", current]) == 0
    assert cli(["rollback", "no-such-version"]) == 2
    assert cli(["champion"]) == 0
    assert current in capsys.readouterr().out


def _tables(resources):
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        return {
            name: con.execute(f"SELECT * FROM {name} ORDER BY transaction_id").df()
            for name in ("transaction_labels", "transaction_features", "training_set")
        }


#: A night up to the training set: every table the past night's re-run rebuilds, from newer raw data.
NEWER_DATA = dg.AssetSelection.assets("training_set").upstream().without_checks() & fraud_pipeline_job.selection


def test_rerunning_a_past_night_after_newer_data_arrived_reproduces_it(history):
    instance, resources, first = history
    night = _tables(resources)
    # the later night lands newer data and rebuilds every table from it; its steps after the training set write
    # nothing the re-run's tables or model read (the model, evaluation and registry), so it stops there
    later = materialize(instance, resources, NEWER_DATA, clock=RunClock(as_of="2025-07-20"))
    assert f"{later.output_for_node('training_windows').as_of:%Y-%m-%d}" == "2025-07-20"
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        newer = con.execute("SELECT count(*) FROM chargebacks WHERE reported_at >= TIMESTAMP '2025-07-01'").fetchone()[
            0
        ]
    assert newer > 0, "the later night saw chargebacks the first did not"
    again = materialize(instance, resources, fraud_pipeline_job.selection, clock=RunClock(as_of="2025-07-01"))
    assert (
        again.output_for_node("fraud_model").main.model.model_text
        == first.output_for_node("fraud_model").main.model.model_text
    )
    for name, frame in _tables(resources).items():
        pd.testing.assert_frame_equal(frame, night[name], check_exact=True, obj=name)


def test_batch_scores_use_the_champion_on_the_newest_day(history):
    instance, resources, _ = history
    result = materialize(instance, resources, ["batch_scores"])
    assert result.success
    with resources["duckdb"].get_connection() as con:
        scores = con.execute("SELECT * FROM batch_scores").df()
        newest = con.execute("SELECT max(event_time)::DATE FROM transactions").fetchone()[0]
        n_newest = con.execute("SELECT count(*) FROM transactions WHERE event_time::DATE = ?", [newest]).fetchone()[0]
    assert len(scores) == n_newest > 0
    assert (scores["model_version"] == champion(resources)["version"]).all()
    assert set(scores["route"]) <= {"main", "fallback", "review"}


def test_scoring_a_file_gives_the_same_decisions_as_the_batch_path(history, tmp_path, monkeypatch, capsys):
    """Serving parity: a stored transaction scored from a file gets its stored features and decision."""
    from fraud_pipeline.deployment.serving import FILE_COLUMNS, ScoringModels, decide

    _, resources, _ = history
    store = ModelRegistryStore(resources["registry"].root)
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(store.root.parent))
    with resources["duckdb"].get_connection() as con:
        sample = con.execute(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM transactions WHERE transaction_id % 97 = 0 ORDER BY transaction_id"
        ).df()
        stored = con.execute(
            "SELECT * FROM transaction_features WHERE transaction_id % 97 = 0 ORDER BY transaction_id"
        ).df()
    sample.loc[0, "amount"] = None
    sample.loc[1, "merchant_id"] = None
    path = tmp_path / "new.csv"
    sample.to_csv(path, index=False)
    out = tmp_path / "decisions.csv"
    assert cli(["score", str(path), "--out", str(out)]) == 0
    decisions = pd.read_csv(out).set_index("transaction_id")
    assert len(decisions) == len(sample)
    first, second = sample["transaction_id"].iloc[0], sample["transaction_id"].iloc[1]
    assert decisions.loc[first, "reason"] == "missing required field: amount"
    assert decisions.loc[second, "reason"] == "missing required field: merchant_id"
    assert decisions.loc[[first, second], "route"].eq("review").all()
    models = ScoringModels.from_candidate(store.scoring_bundle(store.champion()["version"]))
    expected = decide(stored.iloc[2:], models).set_index("transaction_id")
    got = decisions.loc[expected.index]
    assert (got["route"] == expected["route"]).all()
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-9)
    assert "scored" in capsys.readouterr().out


def test_scoring_a_file_without_a_required_column_names_it(history, tmp_path, monkeypatch, capsys):
    _, resources, _ = history
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(ModelRegistryStore(resources["registry"].root).root.parent))
    path = tmp_path / "bad.csv"
    pd.DataFrame({"transaction_id": [1], "user_id": [2]}).to_csv(path, index=False)
    assert cli(["score", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    message = capsys.readouterr().out
    assert str(path) in message and "merchant_id" in message and "amount" in message


def test_two_versions_side_by_side_on_the_same_matured_window(history, monkeypatch, capsys):
    """`champion --compare A B`: both versions decide the warehouse's test split, one cost model, B - A."""
    from fraud_pipeline.deployment.compare import compare_versions

    _, resources, first = history
    store = ModelRegistryStore(resources["registry"].root)
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(store.root.parent))
    a = first.output_for_node("fraud_model").version
    # a second version: the same model files with twice the alert threshold, so it alerts less
    b = "stricter-threshold"
    bundle = store.read_bundle(a)
    folder = store.bundle_dir(a)
    store.write_bundle(
        b,
        store.read_model_text(a),
        {
            **bundle,
            "version": b,
            "threshold": bundle["threshold"] * 2,
            "policy": DecisionPolicy.single(bundle["threshold"] * 2).as_dict(),
        },
        "card",
        fallback_text=(folder / "fallback_model.txt").read_text(),
    )
    with duckdb.connect(resources["duckdb"].database, read_only=True) as con:
        comparison = compare_versions(con, store, a, b, resources["costs"].cost_model())
        n_test = con.execute("SELECT count(*) FROM training_set WHERE split = 'test'").fetchone()[0]
    assert comparison.n_transactions == n_test
    rows = {r["metric"]: r for r in comparison.rows()}
    assert rows["threshold"][b] == pytest.approx(2 * rows["threshold"][a])
    assert rows["n_alerts"][b] < rows["n_alerts"][a]
    assert rows["average_precision"][a] == pytest.approx(rows["average_precision"][b])
    assert rows["total_cost"]["b_minus_a"] == pytest.approx(rows["total_cost"][b] - rows["total_cost"][a])
    assert rows["total_cost"]["better"] == (a if rows["total_cost"][a] < rows["total_cost"][b] else b)
    # the champion's own row is its evaluation: the same rows, the same cost
    assert rows["total_cost"][a] == pytest.approx(first.output_for_node("model_evaluation").total_cost)
    assert cli(["champion", "--compare", a, b]) == 0
    out = capsys.readouterr().out
    assert f"{a} (trained as_of 2025-07-01) vs {b} (trained as_of 2025-07-01)" in out
    assert "matured test window" in out and "total_cost" in out and "average_precision" in out
    assert cli(["champion", "--compare", a, "no-such-version"]) == 2
    assert "no model version 'no-such-version'" in capsys.readouterr().out
