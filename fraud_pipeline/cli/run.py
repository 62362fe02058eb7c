"""``run``: materialise the whole graph once for an as_of and print what the night decided.

Every option is checked before anything starts, each mistake one line (exit code 2): the as_of, the
window lengths and the review capacity (whole numbers from 1), the feature spec (loaded), the
``--config`` file (YAML or JSON, merged under the options, then checked against the job's config
schema). In files mode the as_of defaults to the day after the newest landed day folder.
"""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path

from fraud_pipeline.cli.files import add_source_arguments, source_config
from fraud_pipeline.cli.registry import USAGE
from fraud_pipeline.cli.runner import merge_config
from fraud_pipeline.resources import DEFAULT_AS_OF

#: Option -> (step, config field) of the run config it sets.
STEP_OPTIONS = {
    "train_days": ("training_windows", "train_days"),
    "validation_days": ("training_windows", "validation_days"),
    "test_days": ("training_windows", "test_days"),
    "min_train_days": ("training_windows", "min_train_days"),
    "min_validation_days": ("training_windows", "min_validation_days"),
    "min_test_days": ("training_windows", "min_test_days"),
    "review_capacity": ("model_evaluation", "daily_review_capacity"),
}
#: Top-level keys of a Dagster run config that a ``--config`` file may set.
RUN_CONFIG_KEYS = ("resources", "ops", "loggers", "execution")


class OptionError(ValueError):
    """A command-line option is wrong; the message is one line naming the option."""


def add_run_command(commands) -> None:
    """The ``run`` command and its options."""
    run = commands.add_parser("run", help="materialise the whole graph and print a summary")
    run.add_argument(
        "--as-of",
        default=None,
        help=f"logical date of the run (default: {DEFAULT_AS_OF}; in files mode the day after the newest landed day folder)",
    )
    run.add_argument("--n-transactions", type=int, default=None, help="size of the simulated world")
    run.add_argument("--seed", type=int, default=None, help="seed of the simulated world")
    add_source_arguments(run)
    windows = run.add_argument_group("windows and capacity (each a whole number from 1)")
    windows.add_argument("--train-days", default=None, help="days of training data (default 49)")
    windows.add_argument("--validation-days", default=None, help="days of validation data (default 14)")
    windows.add_argument("--test-days", default=None, help="days of test data (default 21)")
    windows.add_argument(
        "--min-train-days", default=None, help="fewest training days accepted after the warm-up (default 21)"
    )
    windows.add_argument(
        "--min-validation-days",
        default=None,
        help="shortest validation window when the mature history is too short for the requested ones (default 7)",
    )
    windows.add_argument("--min-test-days", default=None, help="shortest test window in that case (default 7)")
    windows.add_argument(
        "--review-capacity", default=None, help="users the fraud team reviews per day: k of precision@k (default 50)"
    )
    run.add_argument("--spec", default=None, help="feature spec file (YAML); default: the built-in spec")
    run.add_argument(
        "--config",
        default=None,
        help="YAML or JSON file of Dagster run config (resources, ops, ...); the options above override it",
    )


def as_of_problem(value: str) -> str | None:
    """Why ``--as-of`` is not a calendar day, in one line, or None: a night's as_of is midnight UTC of a day."""
    try:
        parsed = date.fromisoformat(value)
    except ValueError as error:
        return f"--as-of {value}: not a day of the form YYYY-MM-DD ({error})"
    if parsed.isoformat() != value:
        return f"--as-of {value}: write the day as YYYY-MM-DD ({parsed.isoformat()})"
    return None


def whole_days(option: str, value: str) -> int:
    """The value of a count option (days, reviews): a whole number from 1."""
    try:
        number = int(value.strip())
    except ValueError:
        raise OptionError(f"--{option} {value}: not a whole number") from None
    if number < 1:
        raise OptionError(f"--{option} {value}: must be at least 1")
    return number


def read_config_file(path: str) -> dict:
    """A ``--config`` file as a dict of run config, or :class:`OptionError` in one line naming the file.

    YAML is read with the safe loader (JSON is YAML), so a file can hold no Python object.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise OptionError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise OptionError(f"--config {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise OptionError(f"--config {path}: {where}not valid YAML or JSON ({problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise OptionError(f"--config {path}: must be a mapping of run config ({', '.join(RUN_CONFIG_KEYS)})")
    unknown = [str(k) for k in loaded if k not in RUN_CONFIG_KEYS]
    if unknown:
        raise OptionError(
            f"--config {path}: unknown top-level key(s) {', '.join(unknown)}; expected {', '.join(RUN_CONFIG_KEYS)}"
        )
    return loaded


def check_spec(path: str) -> str:
    """The spec file's absolute path once it loads, or :class:`OptionError` with the loader's one line."""
    from fraud_pipeline.features.spec import SpecError, load_spec

    file = Path(path)
    if not file.is_file():
        raise OptionError(f"--spec {path}: no such file")
    try:
        load_spec(file)
    except SpecError as error:
        raise OptionError(f"--spec {error}") from None
    return str(file.resolve())


def step_options(args) -> dict:
    """The run config the window and capacity options set (only those given)."""
    ops: dict = {}
    for name, (step, field) in STEP_OPTIONS.items():
        value = getattr(args, name, None)
        if value is not None:
            ops.setdefault(step, {"config": {}})["config"][field] = whole_days(name.replace("_", "-"), value)
    return {"ops": ops} if ops else {}


def check_windows(config: dict) -> None:
    """Refuses a minimum of training, validation or test days above the days themselves (it could never be met)."""
    from fraud_pipeline.training.assets import WindowConfig

    given = config.get("ops", {}).get("training_windows", {}).get("config", {})
    defaults = WindowConfig()
    train = given.get("train_days", defaults.train_days)
    minimum = given.get("min_train_days", defaults.min_train_days)
    if isinstance(train, int) and isinstance(minimum, int) and minimum > train:
        raise OptionError(
            f"--min-train-days {minimum} is more than the {train} training days; lower it or raise --train-days"
        )
    for window in ("validation", "test"):
        days = given.get(f"{window}_days", getattr(defaults, f"{window}_days"))
        shortest = given.get(f"min_{window}_days")  # the default is capped at the window's own length
        if isinstance(days, int) and isinstance(shortest, int) and shortest > days:
            raise OptionError(
                f"--min-{window}-days {shortest} is more than the {days} {window} days; lower it or raise --{window}-days"
            )


def source_mode(config: dict) -> str:
    """The run's source mode: the run config's, else ``FRAUD_PIPELINE_SOURCE``, else simulated."""
    mode = config.get("resources", {}).get("source", {}).get("config", {}).get("mode")
    return mode or os.environ.get("FRAUD_PIPELINE_SOURCE") or "simulated"


def files_default_as_of(warehouse: Path) -> str:
    """The day after the newest day folder landing recorded in ``landing_files``: every landed day is known then."""
    import duckdb

    if not warehouse.exists():
        raise OptionError(
            f"files mode: no warehouse at {warehouse} yet; land the day folders first (ingest) or give --as-of"
        )
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            has_table = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'landing_files'"
            ).fetchone()[0]
            newest = con.execute("SELECT max(day) FROM landing_files").fetchone()[0] if has_table else None
    except duckdb.Error as error:
        from fraud_pipeline.lib.warehouse import open_problem

        raise OptionError(open_problem(warehouse, error)) from None
    if newest is None:
        raise OptionError(f"files mode: no landed day folder in {warehouse}; land them first (ingest) or give --as-of")
    return (newest + timedelta(days=1)).isoformat()


def build_run_config(args) -> tuple[str, dict]:
    """The run's as_of and its run config, every option validated (:class:`OptionError` in one line)."""
    from fraud_pipeline.cli.runner import run_config

    base = read_config_file(args.config) if args.config else {}
    options = step_options(args)
    spec = check_spec(args.spec) if args.spec else None
    merged = merge_config(base, options)
    check_windows(merged)
    source = source_config(args)
    mode = source.get("mode") or source_mode(merged)
    if args.as_of is not None:
        as_of = args.as_of
    elif mode == "files":
        from fraud_pipeline.resources import data_dir

        as_of = files_default_as_of(data_dir() / "warehouse.duckdb")
    else:
        as_of = merged.get("resources", {}).get("clock", {}).get("config", {}).get("as_of", DEFAULT_AS_OF)
    if problem := as_of_problem(as_of):
        raise OptionError(problem)
    config = run_config(as_of, args.n_transactions, args.seed, source, base=merged, spec_path=spec)
    return as_of, config


def validate_against_job(config: dict, origin: str | None) -> None:
    """Checks the run config against the job's config schema; the first error is one line."""
    import dagster as dg

    from fraud_pipeline.definitions import defs

    try:
        dg.validate_run_config(defs.resolve_job_def("fraud_pipeline_job"), config)
    except dg.DagsterInvalidConfigError as error:
        first = error.errors[0].message if error.errors else str(error).splitlines()[0]
        where = f"--config {origin}: " if origin else "run config: "
        raise OptionError(where + " ".join(first.split())) from None


def run_command(args) -> int:
    """Validates the options in one line each, then runs the job in process and prints its summary."""
    if args.as_of is not None and (problem := as_of_problem(args.as_of)):
        print(problem)
        return USAGE
    from fraud_pipeline.cli.runner import pipeline_lock

    # the landed days are read under the lock the run then holds, so no ingest lands in between
    with pipeline_lock():
        try:
            as_of, config = build_run_config(args)
            validate_against_job(config, args.config)
        except OptionError as error:
            print(error)
            return USAGE

        from fraud_pipeline.cli.runner import execute_job, failed_steps
        from fraud_pipeline.cli.summary import print_summary

        result = execute_job("fraud_pipeline_job", config, {"as_of": as_of})
    print_summary(result, sys.stdout)
    for line in failed_steps(result):
        print(line)
    return 0 if result.success else 1
