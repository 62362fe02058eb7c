"""tasks.py: the first install says what it does and shows pip's progress; ``ui --port N`` serves where asked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """tasks.py loaded as a module, its .venv pointed at an empty folder so nothing real is installed."""
    spec = importlib.util.spec_from_file_location("tasks_under_test", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(module, "BIN", tmp_path / ".venv" / "bin")
    monkeypatch.setattr(module, "PYTHON", tmp_path / ".venv" / "bin" / "python")
    monkeypatch.setattr(module, "STAMP", tmp_path / ".venv" / ".installed")
    return module


def test_the_first_install_numbers_its_steps_and_lets_pip_show_its_progress(tasks, monkeypatch, capsys):
    created, ran = [], []
    monkeypatch.setattr(tasks.venv.EnvBuilder, "create", lambda self, path: created.append(path))

    def run(command, check):
        tasks.STAMP.parent.mkdir(parents=True, exist_ok=True)
        ran.append(command)

    tasks.setup(run=run)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/3] creating .venv" and lines[1] == "[2/3] upgrading pip in .venv"
    assert lines[2].startswith("[3/3] installing fraud_pipeline") and lines[-1] == "set up: .venv is ready"
    assert created == [tasks.VENV]
    install = ran[-1]
    assert "--quiet" not in install and install[install.index("--progress-bar") + 1] == "on"
    tasks.setup(run=run)  # installed once per pyproject.toml: nothing runs, nothing is printed
    assert len(ran) == 2 and capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "argv, host, port",
    [
        ([], "127.0.0.1", "3000"),
        (["--port", "3901"], "127.0.0.1", "3901"),
        (["-p=3902", "--host", "0.0.0.0"], "0.0.0.0", "3902"),
    ],
)
def test_ui_serves_on_the_port_asked_for(tasks, capsys, argv, host, port):
    command = tasks.ui_command(argv)
    assert command[1:4] == ["dev", "-w", "workspace.yaml"]
    assert command[command.index("-h") + 1] == host and command[command.index("-p") + 1] == port
    assert command.count("-p") == 1
    assert f"http://{host}:{port}" in capsys.readouterr().out


def test_ui_refuses_a_port_that_is_not_a_number_before_installing_anything(tasks):
    with pytest.raises(SystemExit, match="--port takes a number"):
        tasks.ui_command(["--port", "web"])


def test_ui_runs_dagster_dev_without_its_supersession_warning(tasks, monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    env = tasks.ui_environment()
    assert env["PYTHONWARNINGS"] == "default,ignore:Function `dev_command` is superseded"
    assert env["DAGSTER_DISABLE_TELEMETRY"] == "1"
