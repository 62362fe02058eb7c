"""Shared fixtures: small simulated worlds in a temporary DuckDB file and registry, and the nights that several
test modules read, each run once for the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Keep the project's data/ untouched: the Definitions' resources point here during tests.
os.environ["FRAUD_PIPELINE_DATA_DIR"] = tempfile.mkdtemp(prefix="fraud_pipeline_tests_")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

#: Large enough for every window to hold the default minimum of frauds, small enough for seconds.
SMALL_WORLD = 60_000
#: A cost margin no candidate can meet: the deploy gate blocks the night.
IMPOSSIBLE_COST_MARGIN = 0.99


@pytest.fixture
def make_resources(tmp_path):
    """Builds the pipeline's resources over a fresh folder, with a small simulated world."""
    from fraud_pipeline.definitions import default_resources
    from fraud_pipeline.resources import SimulatedWorld

    def build(folder=None, **overrides):
        resources = default_resources(folder or tmp_path)
        resources["world"] = SimulatedWorld(n_transactions=SMALL_WORLD)
        resources.update(overrides)
        return resources

    return build


def small_world_resources(folder: Path, **overrides) -> dict:
    """The pipeline's resources over ``folder``, with the small simulated world (and ``overrides``)."""
    from fraud_pipeline.definitions import default_resources
    from fraud_pipeline.resources import SimulatedWorld

    return {**default_resources(folder), "world": SimulatedWorld(n_transactions=SMALL_WORLD), **overrides}


@dataclass(frozen=True)
class Night:
    """A whole night run once for the session: its data folder (warehouse, registry), resources, instance, result.

    Read-only for the tests that share it; a test that writes works on a ``copy_to`` of its own.
    """

    folder: Path
    resources: dict
    instance: object  # dg.DagsterInstance, kept open for the session
    result: object  # dg.ExecuteInProcessResult

    def copy_to(self, folder: Path) -> dict:
        """A private copy of the night's warehouse and registry in ``folder``, and the small world's resources over it."""
        shutil.copytree(self.folder, folder, dirs_exist_ok=True)
        return small_world_resources(folder)


def _night_as_the_command_line_runs_it(folder: Path, **overrides) -> Iterator[Night]:
    """The job with the command line's run config (as_of 2025-07-01, the small world) on ``folder``."""
    import dagster as dg

    from fraud_pipeline.cli.runner import run_config
    from fraud_pipeline.definitions import defs

    resources = small_world_resources(folder, **overrides)
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("fraud_pipeline_job").execute_in_process(
            run_config=run_config("2025-07-01", SMALL_WORLD, None),
            instance=instance,
            raise_on_error=False,
            resources=resources,
        )
        yield Night(folder, resources, instance, result)


@pytest.fixture(scope="session")
def clean_night(tmp_path_factory) -> Iterator[Night]:
    """A clean first night on the small world, as the command line runs it: a champion in its registry."""
    yield from _night_as_the_command_line_runs_it(tmp_path_factory.mktemp("clean_night"))


@pytest.fixture(scope="session")
def blocked_first_night(tmp_path_factory) -> Iterator[Night]:
    """A first night on the small world whose candidate misses an impossible cost margin: no champion."""
    from fraud_pipeline.resources import DeployGates

    gates = DeployGates(cost_margin=IMPOSSIBLE_COST_MARGIN)
    yield from _night_as_the_command_line_runs_it(tmp_path_factory.mktemp("blocked_first_night"), gates=gates)


@dataclass(frozen=True)
class DefaultWorldNight:
    """The default world's clean night: its instance and resources (live), the run's result, a pristine copy."""

    instance: object  # dg.DagsterInstance, kept open for the session
    resources: dict
    result: object  # dg.ExecuteInProcessResult
    pristine: Path


@pytest.fixture(scope="session")
def default_world_night(tmp_path_factory) -> Iterator[DefaultWorldNight]:
    """The default 500k world at the default as_of, the whole job run once, clean: a champion in the registry.

    Built once for the session, as it is the slowest world: integration/test_faults_blocked.py re-runs parts of
    the graph on the live folder with a fault injected (and restores what it changed); integration/
    test_population.py reads ``pristine``, a copy of the warehouse taken right after the clean run, so nothing a
    fault test leaves behind reaches it.
    """
    import dagster as dg

    from fraud_pipeline.definitions import ALL_ASSETS, ALL_CHECKS, default_resources, fraud_pipeline_job

    resources = default_resources(tmp_path_factory.mktemp("faults_default_world"))
    with dg.DagsterInstance.ephemeral() as instance:
        clean = dg.materialize(
            [*ALL_ASSETS, *ALL_CHECKS], resources=resources, instance=instance, selection=fraud_pipeline_job.selection
        )
        pristine = tmp_path_factory.mktemp("default_world_pristine")
        for file in Path(resources["duckdb"].database).parent.glob("warehouse.duckdb*"):
            shutil.copy(file, pristine / file.name)
        yield DefaultWorldNight(instance, resources, clean, pristine)
