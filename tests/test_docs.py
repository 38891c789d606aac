"""The documentation holds together: the README stays a front door, and nothing cites a document that is not there.

Checked on the tracked files themselves: every ``docs/<page>.md`` named in code,
config or docs exists; every relative markdown link in README.md and docs/
points at a file that exists and, with ``#anchor``, at a heading it has.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_LIMIT = 12_000  # bytes: the README is the front door; details live in docs/
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".txt", ".sh", ".example", ".properties", ".ini", ".cfg"}
DOC_REFERENCE = re.compile(r"\b(?:docs/[A-Za-z0-9_.-]+\.md|DESIGN\.md)")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / n for n in names if Path(n).suffix in TEXT_SUFFIXES and (REPO / n).is_file()]


def markdown_pages():
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to dashes."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set:
    body = FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", body, re.M)}


def test_readme_is_a_front_door():
    assert (REPO / "README.md").stat().st_size <= README_LIMIT


def test_docs_index_lists_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert pages, "docs/ has no pages"
    assert sorted(p for p in pages if f"]({p})" not in index) == []


def test_every_cited_document_exists():
    missing = []
    for path in tracked_text_files():
        for match in DOC_REFERENCE.finditer(path.read_text(errors="replace")):
            if not (REPO / match.group(0)).is_file():
                missing.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert missing == []


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_markdown_links_resolve(page):
    broken = []
    for match in MD_LINK.finditer(FENCE.sub("", page.read_text())):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []
