"""``python -m fraud_pipeline.cli.worlds``: the pipeline on a grid of simulated worlds, one table row per world.

Each world (a seed and an as_of) runs as its own ``python -m fraud_pipeline run --seed S --as-of D``
process, in ``WORK/<seed>_<as_of>/`` with its own data folder (``FRAUD_PIPELINE_DATA_DIR``) and
Dagster instance (``DAGSTER_HOME``, holding a copy of the project's ``.dagster_home/dagster.yaml``);
its output is kept there as ``run.txt``. The row is read from what the run left, not guessed:

* the outcome from the registry's ``history.jsonl`` (the night's ``promoted``, ``kept_champion``,
  ``blocked`` or ``refused`` event), else from the run summary (blocked upstream by a check, or the
  ``step X failed: ...`` line of a night that stopped before the deploy gate);
* the numbers from the pickled ``training_windows``, ``model_evaluation`` and ``fraud_model`` outputs
  in the world's Dagster storage (a blocked candidate has no bundle, so this is where its numbers are).

The table is Markdown, printed and optionally written (``--out``); its last line says how many worlds
deployed. A second table explains what each candidate caught: its test frauds by kind, from the
simulator's ground truth (``truth``, re-simulated with the world's seed and size; the pipeline never
sees it), each as ``caught/frauds`` by the alerts the evaluation stored (``evaluation_scores``). A
blocked world shows there which kind of fraud its model missed. The exit code is 0 whenever the table was made, whatever the worlds decided; a usage mistake
is one line and exit code 2. Options after ``--`` go to every ``run`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fraud_pipeline.cli.run import as_of_problem
from fraud_pipeline.lib.markdown import markdown_table

#: Exit code of a usage mistake (as ``python -m fraud_pipeline``).
USAGE = 2
#: The ``run`` options this command sets per world itself, so ``--`` may not pass them.
OWN_RUN_OPTIONS = ("--seed", "--as-of", "--n-transactions")
#: Column names of the table, in order.
COLUMNS = (
    "seed",
    "as_of",
    "outcome",
    "windows",
    "frauds",
    "cost",
    "approve-all",
    "savings",
    "policy",
    "single-threshold cost",
    "seconds",
)
#: The outcome of a world that deployed a new champion.
PROMOTED = "promoted"
#: ``run`` summary line of a night whose deploy gate never ran because an upstream check blocked it.
_UPSTREAM = re.compile(r"^decision: none taken, the deploy gate was blocked upstream by (?P<checks>.+); the champion")
#: ``run`` summary line of a step that failed (not a gate's block).
_FAILED_STEP = re.compile(r"^step (?P<step>\S+) failed: (?P<why>.*)$")


class WorldsError(ValueError):
    """A mistake in this command's options; the message is one line naming the option."""


@dataclass(frozen=True)
class World:
    """One world of the grid: a seed of the simulated world and the night it is run for."""

    seed: int
    as_of: str

    @property
    def folder_name(self) -> str:
        """The world's folder under the work folder, ``<seed>_<as_of>``."""
        return f"{self.seed}_{self.as_of}"


@dataclass(frozen=True)
class WorldRow:
    """What one world's run decided and measured (None where the run left no such number).

    Attributes:
        world: The seed and as_of.
        outcome: ``promoted``, ``kept champion``, ``blocked: <gates>``, ``stopped: <step>`` or
            ``crashed: ...``.
        windows: ``train/validation/test`` days, ``(shortened)`` appended when the planning shortened them.
        frauds: Frauds in the test window.
        cost: The candidate's test cost with its decision policy.
        approve_all: The test cost of approving every transaction.
        savings_pct: Savings against approve-all, a fraction.
        policy: The main model's policy structure: its splits' names, or ``single``.
        single_cost: The test cost of the policy's single global threshold (None when the evaluation
            does not compare the two).
        seconds: How long the run took.
    """

    world: World
    outcome: str
    windows: str | None = None
    frauds: int | None = None
    cost: float | None = None
    approve_all: float | None = None
    savings_pct: float | None = None
    policy: str | None = None
    single_cost: float | None = None
    seconds: float | None = None

    @property
    def deployed(self) -> bool:
        """Whether the world's night promoted its candidate."""
        return self.outcome == PROMOTED

    def cells(self) -> dict[str, str]:
        """The row as table cells, by column name ("-" for what the run did not leave)."""
        money = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
        return {
            "seed": str(self.world.seed),
            "as_of": self.world.as_of,
            "outcome": self.outcome,
            "windows": self.windows or "-",
            "frauds": "-" if self.frauds is None else f"{self.frauds:,}",
            "cost": money(self.cost),
            "approve-all": money(self.approve_all),
            "savings": "-" if self.savings_pct is None else f"{self.savings_pct:.1%}",
            "policy": self.policy or "-",
            "single-threshold cost": money(self.single_cost),
            "seconds": "-" if self.seconds is None else f"{self.seconds:.0f}",
        }


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """The options, each checked, with the ``run`` options after ``--`` as ``run_args``.

    Raises:
        WorldsError: An as_of that is not a day, a count below 1, or a ``--`` option this command sets.
    """
    argv = list(argv)
    run_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m fraud_pipeline.cli.worlds",
        description="Run the pipeline on a grid of simulated worlds and print one Markdown table row per world.",
        epilog="Options after -- go to every `python -m fraud_pipeline run`, e.g. -- --min-validation-days 14.",
    )
    parser.add_argument("--seeds", nargs="+", type=int, required=True, help="seeds of the simulated worlds")
    parser.add_argument("--as-of", nargs="+", required=True, help="nights to run each seed for (YYYY-MM-DD)")
    parser.add_argument(
        "--n-transactions", type=int, default=None, help="size of each world (default: the default world's size)"
    )
    parser.add_argument(
        "--work",
        default=None,
        help="folder of the worlds' folders <seed>_<as_of>/ (each emptied before its run; default: a new temporary folder)",
    )
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    parser.add_argument("--jobs", type=int, default=1, help="worlds run at once (default 1: one after the other)")
    args = parser.parse_args(own)
    for day in args.as_of:
        if problem := as_of_problem(day):
            raise WorldsError(problem)
    for option, value in (("--jobs", args.jobs), ("--n-transactions", args.n_transactions)):
        if value is not None and value < 1:
            raise WorldsError(f"{option} {value}: must be at least 1")
    if clash := [a for a in run_args if a.split("=", 1)[0] in OWN_RUN_OPTIONS]:
        raise WorldsError(f"-- {clash[0]}: set per world by this command; use --seeds, --as-of or --n-transactions")
    if args.out and not Path(args.out).parent.is_dir():
        raise WorldsError(f"--out {args.out}: no folder {Path(args.out).parent} to write it in")
    args.run_args = run_args
    args.seeds = list(dict.fromkeys(args.seeds))
    args.as_of = list(dict.fromkeys(args.as_of))
    return args


def grid(seeds: Sequence[int], days: Sequence[str]) -> list[World]:
    """Every seed with every night, seed first then night (the table's order)."""
    return [World(seed, day) for seed in seeds for day in sorted(days, key=date.fromisoformat)]


def run_command(world: World, n_transactions: int | None, run_args: Sequence[str]) -> list[str]:
    """The ``python -m fraud_pipeline run`` command line of one world."""
    size = ["--n-transactions", str(n_transactions)] if n_transactions is not None else []
    return [
        sys.executable,
        "-m",
        "fraud_pipeline",
        "run",
        "--seed",
        str(world.seed),
        "--as-of",
        world.as_of,
        *size,
        *run_args,
    ]


def prepare_world(folder: Path, project_home: Path) -> dict[str, str]:
    """Empties the world's folder and gives it a Dagster home; the environment its run gets.

    The data folder and Dagster home are the world's own, so worlds never share a warehouse, a
    registry or a run history, and a reused ``--work`` folder leaves no stale output behind.
    """
    if folder.exists():
        shutil.rmtree(folder)
    home = folder / "home"
    home.mkdir(parents=True)
    shutil.copyfile(project_home / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "FRAUD_PIPELINE_DATA_DIR": str(folder / "data"),
        "DAGSTER_HOME": str(home),
        "FRAUD_PIPELINE_SOURCE": "simulated",
    }


def run_world(
    world: World, work: Path, project_root: Path, n_transactions: int | None, run_args: Sequence[str]
) -> WorldRow:
    """Runs one world in its own folder and reads its row from what the run left."""
    folder = work / world.folder_name
    env = prepare_world(folder, project_root / ".dagster_home")
    started = time.perf_counter()
    with open(folder / "run.txt", "w", encoding="utf-8") as log:
        completed = subprocess.run(
            run_command(world, n_transactions, run_args),
            cwd=project_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - started
    summary = (folder / "run.txt").read_text(encoding="utf-8", errors="replace")
    return world_row(
        world,
        folder / "data" / "registry" / "history.jsonl",
        folder / "home" / "storage",
        summary,
        completed.returncode,
        seconds,
    )


def world_row(
    world: World, history: Path, storage: Path, summary: str, returncode: int, seconds: float | None
) -> WorldRow:
    """A world's row from its registry history, its Dagster storage and its run output."""
    outcome = decision_outcome(read_history(history), world.as_of) or summary_outcome(summary, returncode)
    return WorldRow(world, outcome, seconds=seconds, **stored_numbers(storage))


def read_history(path: Path) -> list[dict]:
    """The registry history's events, oldest first (none without the file; a torn or foreign line skipped)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def decision_outcome(events: Sequence[dict], as_of: str) -> str | None:
    """The outcome the night of ``as_of`` recorded in the registry history, or None when it recorded none.

    A blocked night may record both the gate's ``blocked`` event (which names its gates) and the
    deploy's ``refused`` one; the ``blocked`` event's names are preferred.
    """
    night = [e for e in events if str(e.get("as_of", ""))[:10] == as_of]
    kinds = {e.get("event"): e for e in night}
    if "promoted" in kinds:
        return PROMOTED
    if "kept_champion" in kinds:
        return "kept champion"
    if "blocked" in kinds:
        event = kinds["blocked"]
        names = list(event.get("blocked_by") or []) + [_check_name(p) for p in event.get("problems") or []]
        return f"blocked: {', '.join(names) or 'unnamed'}"
    if "refused" in kinds:
        reason = str(kinds["refused"].get("reason", ""))
        names = [part.split(":", 1)[0].strip() for part in reason.split("; ") if part.strip()]
        return f"blocked: {', '.join(_check_name(n) for n in names) or 'unnamed'}"
    return None


def _check_name(problem: str) -> str:
    """A guarding check's name from its problem line (``asset:check failed: ...`` -> ``check``)."""
    label = problem.split(" ", 1)[0]
    return label.rsplit(":", 1)[-1] if ":" in label else label


def summary_outcome(summary: str, returncode: int) -> str:
    """The outcome of a night that recorded no decision, read from its run output.

    Blocked upstream by checks (the deploy gate never ran), stopped at a failed step, or crashed
    (the run printed neither; its exit code and last line say how).
    """
    lines = summary.splitlines()
    for line in lines:
        if match := _UPSTREAM.match(line.strip()):
            return f"blocked: {match['checks']}"
    steps = [m["step"] for line in lines if (m := _FAILED_STEP.match(line.strip()))]
    if steps:
        return f"stopped: {', '.join(dict.fromkeys(steps))}"
    last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
    return f"crashed (exit {returncode}): {last[:120]}"


def stored_numbers(storage: Path) -> dict:
    """The row's numbers from the pickled outputs of ``training_windows``, ``model_evaluation`` and ``fraud_model``.

    An output the run did not write (it stopped earlier) leaves its numbers out; a pickle that cannot
    be read is treated the same way, the outcome column saying why the night ended.
    """
    numbers: dict = {}
    candidate = _load(storage / "fraud_model")
    windows = _load(storage / "training_windows") or getattr(candidate, "windows", None)
    if windows is not None:
        numbers["windows"] = windows_label(windows)
    evaluation = _load(storage / "model_evaluation")
    if evaluation is not None:
        numbers.update(
            frauds=int(evaluation.n_frauds),
            cost=float(evaluation.total_cost),
            approve_all=float(evaluation.approve_all_cost),
            savings_pct=float(evaluation.savings_vs_approve_all_pct),
            single_cost=single_threshold_cost(evaluation),
        )
    if candidate is not None:
        numbers["policy"] = policy_structure(candidate.main.decision_policy())
    return numbers


def _load(path: Path):
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)  # the world's own storage, written by the run this command started
    except Exception:  # noqa: BLE001 - an unreadable output is a number the row lacks, not a crash of the table
        return None


def windows_label(windows) -> str:
    """``train/validation/test`` days of the windows, ``(shortened)`` appended when planning shortened them."""
    days = windows.days()
    label = f"{days['train']}/{days['validation']}/{days['test']}"
    return f"{label} (shortened)" if windows.shortened() else label


def policy_structure(policy) -> str:
    """The policy's splits by name (crossed splits joined by ``x``), or ``single`` for one threshold."""
    if policy.is_single:
        return "single"
    return " x ".join(split.name for split in policy.splits)


def single_threshold_cost(evaluation) -> float | None:
    """The test cost of the policy's single global threshold, when the evaluation compares the two."""
    rows = getattr(evaluation, "policy_vs_single", None) or []
    overall = next((r for r in rows if r.get("cohort") == "all"), None)
    return None if overall is None or "single_total_cost" not in overall else float(overall["single_total_cost"])


def render_table(rows: Sequence[WorldRow], caption: str | None = None) -> str:
    """The Markdown table of the rows and the ``N of M deployed`` line, under ``caption`` when given.

    The single-threshold column is left out when no world's evaluation compares the policy with it.
    """
    columns = [c for c in COLUMNS if c != "single-threshold cost" or any(r.single_cost is not None for r in rows)]
    deployed = sum(r.deployed for r in rows)
    table = f"{markdown_table([r.cells() for r in rows], columns)}\n\n{deployed} of {len(rows)} deployed\n"
    return f"{caption}\n\n{table}" if caption else table


def caption(n_transactions: int, run_args: Sequence[str]) -> str:
    """What every world of the table shares: its size and the options passed to ``run``."""
    options = f"; run options {' '.join(run_args)}" if run_args else ""
    return f"Simulated worlds of {n_transactions:,} transactions{options}."


def caught_by_kind(warehouse: Path, truth) -> dict[str, tuple[int, int]] | None:
    """Per kind of fraud (the simulator's scenario), the test frauds the candidate alerted and their number.

    Args:
        warehouse: The world's ``warehouse.duckdb``; its ``evaluation_scores`` holds the test rows and
            whether the candidate's policy alerted each.
        truth: The simulator's ``truth`` frame of the same world (transaction_id, is_fraud, scenario).

    Returns:
        ``{scenario: (caught, frauds)}`` over the test window, or None when the night stored no scores
        (it stopped before the evaluation) or its warehouse cannot be read.
    """
    import duckdb

    if not warehouse.is_file():
        return None
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            scored = con.execute("SELECT transaction_id, alert FROM evaluation_scores").df()
    except duckdb.Error:
        return None
    frauds = truth[truth["is_fraud"]]
    rows = scored.merge(frauds[["transaction_id", "scenario"]], on="transaction_id", how="inner")
    counts = rows.groupby("scenario", sort=True)["alert"].agg(["sum", "size"])
    return {str(kind): (int(r["sum"]), int(r["size"])) for kind, r in counts.iterrows()}


def render_kinds(rows: Sequence[tuple[World, dict[str, tuple[int, int]] | None]]) -> str:
    """The Markdown table of each world's test frauds by kind, ``caught/frauds`` (``-`` for a kind it had none of)."""
    kinds = sorted({kind for _, counts in rows for kind in (counts or {})})
    if not kinds:
        return "Test frauds by kind: no world stored its test scores.\n"
    cells = []
    for world, counts in rows:
        cell = {"seed": str(world.seed), "as_of": world.as_of}
        for kind in kinds:
            caught, total = (counts or {}).get(kind, (0, 0))
            cell[kind] = "no scores" if counts is None else (f"{caught}/{total}" if total else "-")
        cells.append(cell)
    title = "Test frauds by kind (the simulator's truth), caught/frauds by the candidate's alerts:"
    return f"{title}\n\n{markdown_table(cells, ['seed', 'as_of', *kinds])}\n"


def crashed_row(world: World, error: Exception) -> WorldRow:
    """The row of a world this command could not run at all (its folder or process could not be made)."""
    return WorldRow(world, f"crashed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def world_kinds(world: World, work: Path, n_transactions: int) -> dict[str, tuple[int, int]] | None:
    """:func:`caught_by_kind` of one world of the grid, its truth simulated again from its seed and size."""
    from fraud_pipeline.ingestion.simulator import simulate_world
    from fraud_pipeline.resources import SimulatedWorld

    warehouse = work / world.folder_name / "data" / "warehouse.duckdb"
    if not warehouse.is_file():
        return None
    truth = simulate_world(SimulatedWorld(seed=world.seed, n_transactions=n_transactions).spec()).truth
    return caught_by_kind(warehouse, truth)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the grid and prints (and with ``--out`` writes) the table; 0 once the table is made."""
    try:
        args = parse_arguments(sys.argv[1:] if argv is None else argv)
    except WorldsError as error:
        print(error)
        return USAGE
    from fraud_pipeline.resources import PROJECT_ROOT, SimulatedWorld

    # absolute, since each run starts in the project folder
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="fraud_pipeline_worlds_"))
    worlds = grid(args.seeds, args.as_of)
    print(f"{len(worlds)} worlds in {work}, {args.jobs} at a time", flush=True)

    def one(world: World) -> WorldRow:
        try:
            row = run_world(world, work, PROJECT_ROOT, args.n_transactions, args.run_args)
        except Exception as error:  # noqa: BLE001 - one world that cannot be run or read is a row, the table is still made
            row = crashed_row(world, error)
        print(f"  seed {world.seed} as_of {world.as_of}: {row.outcome}", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(one, worlds))
    size = args.n_transactions or SimulatedWorld.model_fields["n_transactions"].default
    table = render_table(rows, caption(size, args.run_args))
    table += "\n" + render_kinds([(world, world_kinds(world, work, size)) for world in worlds])
    print(table)
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
