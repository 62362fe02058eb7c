#!/usr/bin/env python3
"""One entry point that needs only python3: sets up .venv, then runs, tests, benchmarks or serves the UI.

python3 tasks.py run     # set up, then materialise the whole graph on the simulated world
python3 tasks.py test    # set up, then check the format and lint (ruff), then run the test suite
python3 tasks.py ui      # set up, then start the Dagster UI on http://127.0.0.1:3000 (--port N: another port)
python3 tasks.py bench   # set up, then run the benchmark (1M and 10M transactions)
python3 tasks.py estimates   # validate the pre-maturity estimates on past nights (docs/estimation.md)
python3 tasks.py worlds --seeds 1 2 --as-of 2025-07-01   # the pipeline on a grid of simulated worlds, one table row each
python3 tasks.py champion           # the champion (checked: readable, servable), every version, the nights' decisions
python3 tasks.py champion --compare A B   # two versions side by side on the warehouse's matured test window
python3 tasks.py rollback VERSION   # make an earlier version the champion again
python3 tasks.py score FILE --out OUT.csv   # score a CSV/Parquet file with the champion (--out x.parquet: Parquet)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".installed"


def environment() -> dict:
    """The environment every command runs in: the project's Dagster home, no telemetry."""
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    env["GX_ANALYTICS_ENABLED"] = "False"
    return env


def setup(run=subprocess.run) -> None:
    """Creates .venv and installs the project with its test extras, once per pyproject.toml version.

    Each step says what it does before it starts, and pip shows its own progress (every package as it
    is collected and installed), so a first install on a fresh machine is never minutes of silence.
    """
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    steps = [] if PYTHON.exists() else ["creating .venv"]
    steps += [
        "upgrading pip in .venv",
        "installing fraud_pipeline and its dependencies into .venv (pip lists each one)",
    ]
    for number, step in enumerate(steps, start=1):
        print(f"[{number}/{len(steps)}] {step}", flush=True)
        if step == "creating .venv":
            venv.EnvBuilder(with_pip=True).create(VENV)
        elif step.startswith("upgrading"):
            run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        else:
            run([str(PYTHON), "-m", "pip", "install", "--progress-bar", "on", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)
    print("set up: .venv is ready", flush=True)


#: Where ``tasks.py ui`` serves the Dagster UI unless ``--host`` / ``--port`` say otherwise.
UI_HOST, UI_PORT = "127.0.0.1", "3000"
#: ``dagster dev`` warns on every start that ``dg dev`` supersedes it; both serve the same UI, and
#: ``dagster dev -w workspace.yaml`` needs nothing outside the project's own dependencies.
QUIET_DEV = "ignore:Function `dev_command` is superseded"


def ui_environment() -> dict:
    """The environment of ``tasks.py ui``: the commands' own, without ``dagster dev``'s supersession warning."""
    env = environment()
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), QUIET_DEV) if w)
    return env


def ui_command(argv: list[str]) -> list[str]:
    """``dagster dev`` on the project's workspace; ``--port N`` / ``--host H`` (or ``-p`` / ``-h``) choose where.

    Any other argument is passed to ``dagster dev`` as it is.
    """
    host, port, rest = UI_HOST, UI_PORT, []
    args = iter(argv)
    for arg in args:
        name, _, value = arg.partition("=")
        if name in ("--port", "-p", "--host", "-h"):
            value = value or next(args, "")
            if name in ("--port", "-p"):
                port = value
            else:
                host = value
        else:
            rest.append(arg)
    if not port.isdigit():
        raise SystemExit(f"tasks.py ui: --port takes a number, not {port!r}")
    print(f"the Dagster UI will be at http://{host}:{port}", flush=True)
    return [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", host, "-p", port, *rest]


def main(argv: list[str]) -> int:
    commands = {
        "run": [str(PYTHON), "-m", "fraud_pipeline", "run"],
        "test": [str(PYTHON), "-m", "pytest"],
        "ui": [],
        "bench": [str(PYTHON), "-m", "fraud_pipeline.cli.benchmark"],
        "estimates": [str(PYTHON), "-m", "fraud_pipeline", "estimates"],
        "worlds": [str(PYTHON), "-m", "fraud_pipeline.cli.worlds"],
        "champion": [str(PYTHON), "-m", "fraud_pipeline", "champion"],
        "rollback": [str(PYTHON), "-m", "fraud_pipeline", "rollback"],
        "score": [str(PYTHON), "-m", "fraud_pipeline", "score"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    ui = ui_command(argv[1:]) if argv[0] == "ui" else None  # a bad --port is said before any install
    setup()
    Path(environment()["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if argv[0] == "test":
        for check in (["format", "--check"], ["check"]):
            print(f"ruff {' '.join(check)}", flush=True)
            if subprocess.run([str(BIN / "ruff"), *check, "."], cwd=ROOT).returncode:
                print("ruff found problems: `.venv/bin/ruff format .` fixes the format; the rest is listed above")
                return 1
    if argv[0] == "ui":
        # the instance's storages are created once, under the lock the command line uses, before
        # `dagster dev` and a command started beside it could both try to create them
        init = [str(PYTHON), "-m", "fraud_pipeline", "init-instance"]
        if subprocess.run(init, cwd=ROOT, env=environment()).returncode:
            return 1
        return subprocess.run(ui, cwd=ROOT, env=ui_environment()).returncode
    return subprocess.run(commands[argv[0]] + argv[1:], cwd=ROOT, env=environment()).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
