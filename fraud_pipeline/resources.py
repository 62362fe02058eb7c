"""Resources: where things live and the settings every asset of a run must agree on."""

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.features.spec import FeatureSpec, default_spec, load_spec
from fraud_pipeline.ingestion.simulator import WorldSpec
from fraud_pipeline.lib.costs import CostModel
from fraud_pipeline.lib.runlock import LOCK_NAME, acquire
from fraud_pipeline.lib.warehouse import RunStamp, set_run_stamp

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Every step that opens the DuckDB file claims this pool; `.dagster_home/dagster.yaml` limits it to
#: one slot, so parallel runs queue for the single writer instead of failing on the file lock.
DUCKDB_POOL = "duckdb"
#: Op tags of the steps that inform but never gate the deploy (backtest, drift, report): every
#: executor runs ready steps by priority, so the deploy decision does not wait for them.
AFTER_THE_DEPLOY = {"dagster/priority": "-1"}
#: The simulated world's default as_of: its last day, so the whole six months are history.
DEFAULT_AS_OF = "2025-07-01"


def data_dir() -> Path:
    """The data folder: ``FRAUD_PIPELINE_DATA_DIR`` if set, else ``data/`` in the project."""
    return Path(os.environ.get("FRAUD_PIPELINE_DATA_DIR", PROJECT_ROOT / "data"))


class RunClock(dg.ConfigurableResource):
    """The run's logical date: everything a run reads is what was known strictly before ``as_of``."""

    as_of: str = Field(
        default=DEFAULT_AS_OF,
        description="Logical date (YYYY-MM-DD or ISO timestamp, UTC). The nightly schedule sets it to the tick's date.",
    )

    def as_of_datetime(self) -> datetime:
        """``as_of`` parsed as a naive UTC datetime."""
        parsed = datetime.fromisoformat(self.as_of)
        if parsed.tzinfo is not None:
            parsed = (parsed - parsed.utcoffset()).replace(tzinfo=None)
        return parsed

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Every table the run writes is stamped with its as_of and run id (``table_stamps``).

        A run launched from the UI or a schedule gets the ``as_of`` tag a command-line run has, so
        the runs list can be filtered by night whichever way the run started.
        """
        set_run_stamp(RunStamp(self.as_of_datetime(), context.run.run_id if context.run else context.run_id))
        run = context.run
        if run is not None and context.instance is not None and "as_of" not in run.tags:
            context.instance.add_run_tags(run.run_id, {"as_of": self.as_of})

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        set_run_stamp(None)


class SimulatedWorld(dg.ConfigurableResource):
    """The built-in simulated world: six months of users, merchants, transactions and chargebacks."""

    start: str = Field(default="2025-01-01", description="First day of simulated traffic (UTC).")
    days: int = Field(default=181, description="Length of the simulated period in days.")
    n_transactions: int = Field(default=500_000, description="Approximate number of transactions to simulate.")
    seed: int = Field(default=7, description="Random seed: the same seed gives the same world.")

    def spec(self) -> WorldSpec:
        """The simulator's spec for these settings."""
        return WorldSpec(
            start=datetime.fromisoformat(self.start), days=self.days, n_transactions=self.n_transactions, seed=self.seed
        )


class DataSource(dg.ConfigurableResource):
    """Where the raw tables come from: the simulated world, or day folders of your own files."""

    mode: Literal["simulated", "files"] = Field(
        default="simulated",
        description="simulated: the built-in world; files: the day folders landed from `folder` (the rest of the graph is the same).",
    )
    folder: str = Field(
        default="",
        description="Folder of day folders (YYYY-MM-DD/transactions.csv|parquet, chargebacks.*, users.*); empty means data/incoming.",
    )
    naive_timestamps: Literal["reject", "utc"] = Field(
        default="reject",
        description="Timestamps without a UTC offset: reject refuses such a file, utc reads them as UTC. Never guessed.",
    )
    max_quarantine_share: float = Field(
        default=0.01,
        description="The blocking quarantine check fails when more than this share of any kind's rows is quarantined.",
    )

    def input_folder(self) -> Path:
        """The folder that holds the day folders."""
        return Path(self.folder) if self.folder else data_dir() / "incoming"

    @classmethod
    def from_environment(cls) -> "DataSource":
        """The defaults, with ``FRAUD_PIPELINE_SOURCE`` and ``FRAUD_PIPELINE_INPUT_FOLDER`` when set (UI, schedule, sensor)."""
        return cls(
            mode=os.environ.get("FRAUD_PIPELINE_SOURCE", "simulated"),
            folder=os.environ.get("FRAUD_PIPELINE_INPUT_FOLDER", ""),
        )


class FeatureSpecSettings(dg.ConfigurableResource):
    """Which feature spec the run computes and trains on (keys, attributes, windowed aggregates).

    Attributes:
        path: A spec file (YAML, see docs/features.md); empty for the built-in default spec.
    """

    path: str = ""

    def spec(self) -> FeatureSpec:
        """The validated spec (a bad file raises :class:`~fraud_pipeline.features.spec.SpecError`, one line)."""
        return load_spec(self.path) if self.path else default_spec()

    @classmethod
    def from_environment(cls) -> "FeatureSpecSettings":
        """Settings from ``FRAUD_PIPELINE_FEATURE_SPEC`` (a spec file's path; unset for the default spec)."""
        return cls(path=os.environ.get("FRAUD_PIPELINE_FEATURE_SPEC", ""))


class CostSettings(dg.ConfigurableResource):
    """The business cost model shared by threshold choice, evaluation and the deploy gate."""

    chargeback_fee: float = Field(default=CostModel.chargeback_fee, description="Fee added to a missed fraud's amount.")
    review_cost: float = Field(default=CostModel.review_cost, description="Cost of reviewing one alert.")
    friction_cost: float = Field(
        default=CostModel.friction_cost, description="Extra cost of a false alert (customer friction)."
    )

    def cost_model(self) -> CostModel:
        """The cost model for these settings."""
        return CostModel(
            chargeback_fee=self.chargeback_fee, review_cost=self.review_cost, friction_cost=self.friction_cost
        )


class ModelRegistry(dg.ConfigurableResource):
    """A file registry of model bundles with a champion pointer."""

    root: str = Field(description="Folder that holds the model bundles and the champion pointer.")
    _release = PrivateAttr(default=None)

    def store(self) -> ModelRegistryStore:
        """The registry's file store."""
        return ModelRegistryStore(Path(self.root))

    def lock_path(self) -> Path:
        """The data folder's pipeline lock (the registry's parent folder holds the warehouse too)."""
        return Path(self.root).parent / LOCK_NAME

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Takes the pipeline lock for the run's life, before its first step, waiting while another run holds it.

        A run from the UI or the schedule and a command-line run thus never overlap. The wait happens
        before the run claims any ``duckdb`` pool slot, so it cannot deadlock with the holder.
        """
        log = context.log.info if context.log is not None else None
        self._release = acquire(self.lock_path(), wait=True, on_wait=log)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class Warehouse(DuckDBResource):
    """The DuckDB warehouse; a run that opens it holds the pipeline lock from its set-up to its end.

    Any run that touches the warehouse (a whole night, one asset materialised from the UI, a check
    re-run) takes the same lock as the command line and the registry, so no two runs ever interleave.
    """

    _release = PrivateAttr(default=None)

    def lock_path(self) -> Path:
        """The data folder's pipeline lock, beside the DuckDB file."""
        return Path(self.database).parent / LOCK_NAME

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        log = context.log.info if context.log is not None else None
        self._release = acquire(self.lock_path(), wait=True, on_wait=log)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class DeployGates(dg.ConfigurableResource):
    """Thresholds of the deploy gates, shared by the blocking checks and the deploy step."""

    cost_margin: float = Field(
        default=0.05, description="The model's test cost must undercut approve-all and the rule by this share."
    )
    min_frauds_per_window: int = Field(
        default=20, description="Fewest mature frauds in each of train, validation, test."
    )
    min_label_completeness: float = Field(
        default=0.95, description="Lowest estimated share of chargebacks already reported for any label used."
    )
    champion_tolerance: float = Field(
        default=0.02,
        description="A candidate replaces the champion unless its test cost exceeds the champion's on the same window by more than this share.",
    )
