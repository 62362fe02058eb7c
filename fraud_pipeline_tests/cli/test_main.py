"""The command line refuses a wrong --as-of in one line, before anything starts."""

import pytest

from fraud_pipeline.cli import main as cli


class Started(Exception):
    """Raised by the stand-in runner: the command got as far as starting a run."""


@pytest.fixture
def runner(monkeypatch):
    def start(*args, **kwargs):
        raise Started(args)

    from fraud_pipeline.cli import runner as job_runner

    monkeypatch.setattr(job_runner, "execute_job", start)


@pytest.mark.parametrize("value", ["2025-13-01", "2025-06-01T12:00", "2025-6-1", "20250601", "2024-02-30", "yesterday"])
def test_a_wrong_as_of_is_one_line_and_starts_nothing(runner, capsys, value):
    assert cli.main(["run", "--as-of", value]) == 2
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and out.startswith(f"--as-of {value}:"), out


def test_a_day_goes_on_to_start_the_run(runner):
    with pytest.raises(Started):
        cli.main(["run", "--as-of", "2025-06-01"])
