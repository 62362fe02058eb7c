"""Shared fixtures: small simulated worlds in a temporary DuckDB file and registry."""

from __future__ import annotations

import os
import tempfile

import pytest

# Keep the project's data/ untouched: the Definitions' resources point here during tests.
os.environ["FRAUD_PIPELINE_DATA_DIR"] = tempfile.mkdtemp(prefix="fraud_pipeline_tests_")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

#: Large enough for every window to hold the default minimum of frauds, small enough for seconds.
SMALL_WORLD = 60_000


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
