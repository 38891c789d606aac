"""Imports go down only: no job imports another job, and common/ imports nothing above it (AST, no import)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ABOVE_COMMON = ("jobs", "botify", "sim", "pipeline")


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_no_job_imports_another_job():
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py") if p.stem not in ("__init__", "launch")}
    # The DDP rank function is the training job's own half (shipped to the ranks), not another job; what a
    # YARN submit ships once (cluster_cache) is the submitter's own half.
    allowed = {"train_multidae": {"multidae_training"}, "submit": {"cluster_cache"}}
    for job in jobs:
        others = {m.split(".")[1] for m in imported_modules(REPO / "jobs" / f"{job}.py")
                  if m.startswith("jobs.") and m.split(".")[1] in jobs} - {job} - allowed.get(job, set())
        assert not others, f"jobs/{job}.py imports {others}"


MODEL_SIDE = ("model", "training", "checkpoint", "evaluation", "heldout_split", "interactions_run", "ranking_metrics")


def test_model_side_of_common_imports_nothing_above_it():
    for path in (REPO / "common" / f"{name}.py" for name in MODEL_SIDE):
        above = [m for m in imported_modules(path) if m.split(".")[0] in ABOVE_COMMON]
        assert not above, f"{path.name} imports {above}"
