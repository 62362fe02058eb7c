"""The layout stays honest: only the wiring imports Dagster, nothing reads the wall clock, no import cycle."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fraud_pipeline"
#: The only files that may import dagster: the wiring of each domain, the resources, the definitions, the CLI.
WIRING = {"assets.py", "checks.py", "sensors.py", "resources.py", "definitions.py"}
#: Reads of the wall clock; the benchmark times runs and is the one allowed reader.
WALL_CLOCK = re.compile(r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|time\.time\(\)|Timestamp\.now\(")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(path: Path) -> set[str]:
    """Every module name an import statement in the file names, lazy (inside a function) imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_wiring(path: Path) -> bool:
    return path.name in WIRING or "cli" in path.relative_to(PACKAGE).parts or path.name == "__main__.py"


def test_pure_modules_do_not_import_dagster():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in modules().values()
        if not is_wiring(path) and any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in imported(path))
    ]
    assert offenders == []


def test_the_layout_rule_sees_a_dagster_import(tmp_path):
    pure = tmp_path / "engine.py"
    pure.write_text("def f():\n    import dagster as dg\n    return dg\n")
    assert "dagster" in imported(pure)


def test_pipeline_code_never_reads_the_wall_clock():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in modules().values()
        if path.name != "benchmark.py" and WALL_CLOCK.search(path.read_text())
    ]
    assert offenders == []


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (names of functions or classes imported resolve to their module)."""
    known = modules()
    return {name: {n for n in imported(path) if n in known and n != name} for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_anywhere():
    graph = import_graph()
    # a package's __init__ is imported by each of its modules; edges into it are not cycles of our making
    graph = {k: {n for n in v if modules()[n].name != "__init__.py"} for k, v in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True), ({"a": {"b"}, "b": {"c"}, "c": set()}, False), ({"a": {"a"}}, True)],
)
def test_the_cycle_finder_finds_cycles(graph, cyclic):
    assert (find_cycle(graph) is not None) == cyclic


def test_every_module_imports():
    import importlib

    for name in modules():
        if not name.endswith("__main__"):
            importlib.import_module(name)


def test_the_tests_mirror_the_package():
    tests = Path(__file__).resolve().parent
    domains = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [d for d in domains if not list((tests / d).glob("test_*.py"))]
    assert missing == []
