"""A run meets an unreadable champion or a mixed night: said loudly and recorded, never a silent pass."""

import dagster as dg
import pytest

from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources, fraud_pipeline_job
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.resources import SimulatedWorld
from fraud_pipeline_tests.conftest import SMALL_WORLD


def run(resources, instance, selection=None):
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=resources,
        instance=instance,
        selection=selection or fraud_pipeline_job.selection,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A night whose registry's champion pointer was torn before the run."""
    folder = tmp_path_factory.mktemp("torn_champion")
    resources = {**default_resources(folder), "world": SimulatedWorld(n_transactions=SMALL_WORLD)}
    store = ModelRegistryStore(folder / "registry")
    store.root.mkdir(parents=True)
    (store.root / "champion.json").write_text("{ torn")
    with dg.DagsterInstance.ephemeral() as instance:
        yield resources, store, instance, run(resources, instance)


def test_a_run_with_an_unreadable_champion_deploys_as_if_there_were_none_and_records_why(night):
    _, store, _, result = night
    deployed = next(
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("deployed_model")
    )
    problem = deployed.materialization.metadata["champion_problem"].value
    assert "champion.json: not valid JSON" in problem
    events = store.history()
    assert any(e["event"] == "champion_unreadable" and "champion.json" in e["reason"] for e in events)
    promoted = [e for e in events if e["event"] == "promoted"]
    assert promoted and "champion.json: not valid JSON" in promoted[-1]["replaced_unreadable"]
    assert store.valid_champion()[1] is None


def test_batch_scores_refuse_features_of_another_night(night):
    from fraud_pipeline.lib.warehouse import RunStamp, replace_tables

    resources, _, instance, _ = night
    with resources["duckdb"].get_connection() as con:
        # a later night rewrote the raw tables and died before its features
        replace_tables(
            con,
            {name: f"SELECT * FROM {name}" for name in ("users", "transactions", "chargebacks")},
            stamp=RunStamp(None, "a-later-night"),
        )
    result = run(resources, instance, ["batch_scores"])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data.error)
    assert "transaction_features" in message and "a-later-night" in message and "does not belong to" in message
