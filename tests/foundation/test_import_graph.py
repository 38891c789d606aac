"""The package rule of docs/design.md, checked on the source: imports go down, never up or sideways.

common/ imports none of jobs, botify, sim, pipeline; jobs, botify, sim and pipeline
import common and nothing of each other; a job never imports another job.
The launcher (jobs/launch.py) finds jobs by name at run time, not by import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "jobs", "botify", "sim", "pipeline")


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


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_common(package):
    allowed = {"common", package}
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
