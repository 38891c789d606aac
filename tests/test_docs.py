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


# ---- budget, machine paths, and the commands the docs give ----------------------------------------------------

PAGE_LIMIT = 20_000   # bytes per docs/ page: a manual page, not a notebook
DOCS_LIMIT = 100_000  # bytes for docs/ in all; history goes to CHANGELOG.md
MACHINE_PATH = re.compile(r"(?<![\w.<$/-])/(?:tmp|work|root|home)/[\w.-]+")
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```|((?:^(?: {4}|\t).*\n?)+)", re.S | re.M)
CONSOLE_SCRIPTS = {"botify-job": "launcher.launch", "botify-demo": "pipeline.demo", "botify-daily": "pipeline.daily",
                   "botify-upload": "pipeline.upload_logs", "botify": "botify.cli", "botify-sim": "sim.__main__"}
LAUNCHER_OPTIONS = {"--record-id"}
SCRIPT_DELEGATES = {"bench/e2e.py": "pipeline/demo.py"}  # passes its arguments to botify-demo  # taken by launcher/launch.py before the job sees its arguments


def docs_pages():
    return sorted((REPO / "docs").glob("*.md"))


def test_docs_stay_within_budget():
    sizes = {p.name: p.stat().st_size for p in docs_pages()}
    assert {name: size for name, size in sizes.items() if size > PAGE_LIMIT} == {}
    assert sum(sizes.values()) <= DOCS_LIMIT, sizes


def test_no_machine_paths_in_docs():
    found = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in markdown_pages() + [REPO / "CHANGELOG.md"]
             for m in MACHINE_PATH.finditer(p.read_text())]
    assert found == []


def doc_commands():
    """(page, argv) of every command of ours in the docs' code blocks, continuation lines joined."""
    import shlex

    for page in markdown_pages():
        for block in CODE_BLOCK.finditer(page.read_text()):
            text = re.sub(r"\\\n\s*", " ", block.group(1) or block.group(2))
            for line in text.splitlines():
                line = line.strip().removeprefix("$ ")
                try:
                    argv = shlex.split(line, comments=True)
                except ValueError:
                    continue
                if any(a.startswith("<") and a.endswith(">") for a in argv[1:2]):
                    continue  # a synopsis (`./spark-submit.sh <job> ...`), not a command
                if argv and (argv[0] in ("./spark-submit.sh", ".venv/bin/python", "python")
                             or Path(argv[0]).name in CONSOLE_SCRIPTS):
                    yield page.name, argv


def help_text(argv):
    """``--help`` of what ``argv`` runs, in-process (no JVM, no server): (program, help text)."""
    import contextlib
    import importlib
    import io
    import runpy
    import sys

    from jobs import JOBS

    def capture(call, args):
        out, old = io.StringIO(), sys.argv
        sys.argv = ["prog", *args]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                call(args)
        except SystemExit:
            pass
        finally:
            sys.argv = old
        return out.getvalue()

    program, rest = argv[0], argv[1:]
    if program == "./spark-submit.sh" or Path(program).name == "botify-job":
        assert rest and rest[0] in JOBS, f"no job {rest[:1]}"
        submit = (REPO / "launcher" / "submit.py").read_text() if program == "./spark-submit.sh" else ""
        return rest[0], capture(importlib.import_module(JOBS[rest[0]]).main, ["--help"]) + submit, rest[1:]
    if program in (".venv/bin/python", "python"):
        if rest[0] == "-m":
            return rest[1], capture(lambda a: runpy.run_module(rest[1], run_name="__main__"), ["--help"]), rest[2:]
        script = REPO / rest[0]
        assert script.is_file(), f"no script {rest[0]}"
        # A bench script may start servers or Spark before parsing: read its options from the source instead.
        source = (REPO / SCRIPT_DELEGATES[rest[0]]).read_text() if rest[0] in SCRIPT_DELEGATES else script.read_text()
        return rest[0], " ".join(re.findall(r"add_argument\(\s*(?:\"-\w\", )?\"(--[\w-]+)\"", source)), rest[1:]
    main = importlib.import_module(CONSOLE_SCRIPTS[Path(program).name]).main
    sub = [rest[0]] if rest and not rest[0].startswith("-") else []
    return program, capture(lambda a: main(*([a] if main.__code__.co_argcount else [])), sub + ["--help"]), rest


def test_every_command_in_the_docs_names_a_real_program_and_options():
    """Each ``--option`` a documented command passes appears in its program's ``--help``."""
    wrong = []
    for page, argv in doc_commands():
        try:
            program, text, args = help_text(argv)
        except AssertionError as exc:
            wrong.append(f"{page}: {' '.join(argv)}: {exc}")
            continue
        if not text:
            wrong.append(f"{page}: {' '.join(argv)}: no --help")
            continue
        for option in (a.split("=", 1)[0] for a in args if a.startswith("--")):
            if option not in LAUNCHER_OPTIONS and not re.search(re.escape(option) + r"\b", text):
                wrong.append(f"{page}: {program}: no option {option}")
    assert wrong == []
