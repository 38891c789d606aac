"""atomic_output cleans up after a run that was killed midway (the next run sweeps, no operator needed).

A kill is simulated by leaving on disk exactly what a killed run leaves: a
``_tmp-<name>-<token>`` directory (killed while writing) or the previous output
renamed to ``_old-<name>-<token>`` with no output (killed between the renames).
"""
from __future__ import annotations

import pytest

from common.storage import FsspecStorage, HadoopStorage, atomic_output, join, sweep_leftovers


@pytest.fixture(params=["fsspec", "hadoop"])
def storage(request):
    if request.param == "fsspec":
        return FsspecStorage()
    return HadoopStorage(request.getfixturevalue("spark"))


def names(storage, uri):
    return sorted(u.rstrip("/").rsplit("/", 1)[1] for u in storage.list(uri))


def test_next_run_removes_a_killed_runs_temporary_output(storage, warehouse):
    parent = join(warehouse, "logs")
    storage.write_text(join(parent, "_tmp-ab-0123456789ab", "part-0.jsonl"), "half a file")
    storage.write_text(join(parent, "_tmp-ab-x-0123456789ab", "keep"), "another output's temporary")
    with atomic_output(storage, join(parent, "ab")) as tmp:
        storage.write_text(join(tmp, "part-0.jsonl"), "{}\n")
    assert names(storage, parent) == ["_tmp-ab-x-0123456789ab", "ab"]
    assert names(storage, join(parent, "ab")) == ["_SUCCESS", "part-0.jsonl"]


def test_a_run_killed_between_the_renames_gets_its_previous_output_back(storage, warehouse):
    parent = join(warehouse, "recommendations")
    storage.write_text(join(parent, "_old-v1-00000000abcd", "_SUCCESS"), "")
    sweep_leftovers(storage, join(parent, "v1"))
    assert names(storage, parent) == ["v1"]
    assert storage.exists(join(parent, "v1", "_SUCCESS"))


def test_an_old_copy_beside_a_complete_output_is_removed(storage, warehouse):
    parent = join(warehouse, "recommendations")
    storage.write_text(join(parent, "v1", "_SUCCESS"), "")
    storage.write_text(join(parent, "_old-v1-00000000abcd", "_SUCCESS"), "")
    sweep_leftovers(storage, join(parent, "v1"))
    assert names(storage, parent) == ["v1"]
