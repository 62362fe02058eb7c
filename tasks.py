#!/usr/bin/env python3
"""One entry point that needs only python3: sets up .venv, then runs, tests, benchmarks or serves the UI.

python3 tasks.py run     # set up, then materialise the whole graph on the simulated world
python3 tasks.py test    # set up, then check the format and lint (ruff), then run the test suite
python3 tasks.py ui      # set up, then start the Dagster UI on http://127.0.0.1:3000
python3 tasks.py bench   # set up, then run the benchmark (1M and 10M transactions)
python3 tasks.py champion           # the champion (checked: readable, servable) and every model version
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


def setup() -> None:
    """Creates .venv and installs the project with its test extras, once per pyproject.toml version."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing fraud_pipeline and its dependencies into .venv", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    commands = {
        "run": [str(PYTHON), "-m", "fraud_pipeline", "run"],
        "test": [str(PYTHON), "-m", "pytest"],
        "ui": [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", "3000"],
        "bench": [str(PYTHON), "-m", "fraud_pipeline.cli.benchmark"],
        "champion": [str(PYTHON), "-m", "fraud_pipeline", "champion"],
        "rollback": [str(PYTHON), "-m", "fraud_pipeline", "rollback"],
        "score": [str(PYTHON), "-m", "fraud_pipeline", "score"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
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
    return subprocess.run(commands[argv[0]] + argv[1:], cwd=ROOT, env=environment()).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
