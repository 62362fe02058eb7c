"""The layout stays honest: pure logic in core/ has no Dagster import, and nothing reads the wall clock."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fraud_pipeline"


def test_core_logic_does_not_import_dagster():
    offenders = [p.name for p in (PACKAGE / "core").glob("*.py") if re.search(r"^\s*(import|from)\s+dagster", p.read_text(), re.M)]
    assert offenders == []


def test_pipeline_code_never_reads_the_wall_clock():
    pattern = re.compile(r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|time\.time\(\)|Timestamp\.now\(")
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "benchmark.py" and pattern.search(p.read_text())]
    assert offenders == []
