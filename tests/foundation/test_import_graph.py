"""The package rule of docs/design.md, checked on the source: imports go down, never up or sideways.

common/ imports none of the others; jobs, botify, sim and pipeline import common and nothing of each
other; launcher/ (how a job is submitted and run) also reads jobs/' registry; a job never imports another
job, and the launcher finds jobs by name at run time, not by import. bench/ and tests/ share builders
through testkit/, never bench -> tests. No module imports itself back through others (lazy imports
included), and stopping a process group is written once.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "jobs", "launcher", "botify", "sim", "pipeline", "testkit", "tests", "bench")
PRODUCT = ("common", "jobs", "launcher", "botify", "sim", "pipeline")
# What each package may import besides common/ and itself.
ALSO_ALLOWED = {"launcher": {"jobs"}, "testkit": set()}


def imports_of(path: Path):
    """Top-level project modules imported by ``path``: (package, module path) pairs, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(REPO).parts[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = [package + "." + (node.module or "")]
            else:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.append((top, name))
    return found


def sources(package: str):
    return sorted(p for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PRODUCT + ("testkit",))
def test_packages_import_only_common(package):
    allowed = {"common", package} | ALSO_ALLOWED.get(package, set())
    wrong = [(str(p.relative_to(REPO)), name) for p in sources(package) for top, name in imports_of(p)
             if top not in allowed]
    assert wrong == []


def test_no_job_imports_another_job():
    """A job is a module in the JOBS registry; what two jobs share lives in common/ (or, for a rank function
    that one job ships to its executors, in a jobs/ module that is not itself a job)."""
    from jobs import JOBS

    jobs = {module.split(".")[1] for module in JOBS.values() if module.startswith("jobs.")}
    wrong = []
    for path in sources("jobs"):
        for top, name in imports_of(path):
            parts = name.split(".")
            if top == "jobs" and len(parts) > 1 and parts[1] in jobs and parts[1] != path.stem:
                wrong.append((str(path.relative_to(REPO)), name))
    assert wrong == []


def test_bench_imports_no_test_module():
    wrong = [(str(p.relative_to(REPO)), name) for p in sources("bench") for top, name in imports_of(p)
             if top == "tests"]
    assert wrong == []


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle():
    """Module-level and lazy (in-function) imports alike: a lazy cycle still means neither side stands alone."""
    modules = {module_name(p): p for package in PRODUCT + ("testkit",) for p in sources(package)}
    graph = {name: {imported for _, full in imports_of(path) for imported in (full, full.rsplit(".", 1)[0])
                    if imported in modules and imported != name and not name.startswith(imported + ".")}
             for name, path in modules.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_process_groups_are_stopped_in_one_place():
    def signals_a_group(path: Path) -> bool:
        return any(isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "killpg"
                   for node in ast.walk(ast.parse(path.read_text())))

    callers = sorted(str(p.relative_to(REPO)) for package in PACKAGES for p in sources(package) if signals_a_group(p))
    assert callers == ["common/process_group.py"]
