"""The run clock tags every run with its as_of, however the run was launched."""

import dagster as dg

from fraud_pipeline.resources import RunClock


@dg.asset
def _reads_the_clock(clock: RunClock) -> str:
    return clock.as_of


def test_a_run_launched_without_tags_gets_its_as_of_tag_from_the_clock():
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_reads_the_clock], resources={"clock": RunClock(as_of="2025-06-01")}, instance=instance
        )
        assert instance.get_run_by_id(result.run_id).tags["as_of"] == "2025-06-01"


def test_an_as_of_tag_given_at_launch_is_kept():
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_reads_the_clock],
            resources={"clock": RunClock(as_of="2025-06-01")},
            instance=instance,
            tags={"as_of": "2025-06-01"},
        )
        assert instance.get_run_by_id(result.run_id).tags["as_of"] == "2025-06-01"
        assert result.output_for_node("_reads_the_clock") == "2025-06-01"
