"""The documentation holds together: the README stays a front door, and nothing cites a document that is not there.

Checked on the tracked files themselves: every ``docs/<page>.md`` named in code,
config or docs exists; every relative markdown link in README.md and docs/
points at a file that exists and, with ``#anchor``, at a heading it has. Then
the budget, machine paths, the commands the docs give (each option a command
passes exists, and each synopsis lists every option its command has) and the
repository paths they name. Figures: tests/test_figures.py.
"""
from __future__ import annotations

import functools
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
# Console scripts that are one command; botify, botify-sim and botify-job take a subcommand or job first.
CONSOLE_SCRIPTS = {"botify-demo": "pipeline.demo", "botify-daily": "pipeline.daily", "botify-upload": "pipeline.upload_logs",
                   "botify-minicluster": "pipeline.minicluster"}
BOTIFY_COMMANDS = ["serve", "reload", "hold", "release", "rollback", "rotate-logs"]
SIM_COMMANDS = ["generate", "run", "bulk"]  # python -m sim <command> (botify-sim)
SIM_MODULES = {"sim.run": "run", "sim.bulk_logs": "bulk"}  # the same commands as modules
LAUNCHER_OPTIONS = frozenset({"--record-id"})  # taken by launcher/launch.py before the job sees its arguments
SCRIPT_DELEGATES = {"bench/e2e.py": "pipeline/demo.py"}  # passes its arguments to botify-demo


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


def doc_command_lines():
    """(page, line) of every line in the docs' code blocks, ``$ `` dropped, continuation lines joined: after a
    backslash, or an indented line going on with a bracket (a synopsis wrapped as argparse wraps its usage)."""
    for page in markdown_pages():
        for block in CODE_BLOCK.finditer(page.read_text()):
            text = re.sub(r"\\\n\s*", " ", block.group(1) or block.group(2))
            text = re.sub(r"\n[ \t]+(?=\[)", " ", text)
            for line in text.splitlines():
                yield page.name, line.strip().removeprefix("$ ")


def parse_command(line: str):
    """What a docs line runs, or None when it is not one of ours.

    Returns (program, subs, shared, args): ``program`` is ``job`` (spark-submit.sh or botify-job),
    ``botify``, ``sim``, a console script's name, ``("module", m)`` or ``("script", path)``; ``subs`` the
    jobs or subcommands the line is about (a ``<placeholder>`` names them all, ``a|b`` several: ``shared``
    is then true); ``args`` the words after them. Raises AssertionError for a job or subcommand that does
    not exist.
    """
    import shlex

    from jobs import JOBS

    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return None
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        argv = argv[1:]  # environment assignments before the command
    if not argv:
        return None
    head, rest = Path(argv[0]).name, argv[1:]
    if head in ("spark-submit.sh", "botify-job"):
        program = "job"
    elif head in ("botify", "botify-sim"):
        program = "sim" if head == "botify-sim" else "botify"
    elif head in CONSOLE_SCRIPTS:
        return head, (None,), False, rest
    elif head == "python" and rest[:1] == ["-m"] and len(rest) > 1:
        module, rest = rest[1], rest[2:]
        if module in SIM_MODULES:
            return "sim", (SIM_MODULES[module],), False, rest
        if module != "sim":
            return ("module", module), (None,), False, rest
        program = "sim"
    elif head == "python" and rest:
        return ("script", rest[0]), (None,), False, rest[1:]
    else:
        return None
    known = {"job": sorted(JOBS), "botify": BOTIFY_COMMANDS, "sim": SIM_COMMANDS}[program]
    word = rest[0] if rest else ""
    if re.fullmatch(r"<[^>]+>", word):
        return program, tuple(known), True, rest[1:]
    names = tuple(word.split("|"))
    assert all(name in known for name in names), f"no {program} {word!r} (known: {', '.join(known)})"
    return program, names, len(names) > 1, rest[1:]


def options_in(args) -> list:
    """The ``--options`` among a command's words, brackets of a synopsis and ``=value`` taken off."""
    return [o for word in args for o in re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", word)]


def is_synopsis(args, shared: bool) -> bool:
    """A synopsis shows optional parts in brackets, or names several subcommands (``<job>``, ``a|b``)."""
    return shared or any(re.search(r"\[--?[A-Za-z]", word) for word in args)


def capture(call, args) -> str:
    """What ``call(args)`` prints (argparse's help), with ``sys.argv`` set as a console script would."""
    import contextlib
    import io
    import sys

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


def options_of_help(text: str) -> set:
    """The long options argparse's help lists (its option lines start with two spaces and a dash)."""
    options = set()
    for line in text.splitlines():
        if re.match(r"^  -", line):
            options |= set(re.findall(r"--[\w-]+", re.split(r"\s{2,}", line.strip())[0]))
    return options


@functools.lru_cache(maxsize=None)
def command_options(program, sub=None) -> frozenset:
    """The options ``--help`` lists for a command, in-process (no JVM, no server)."""
    import importlib

    from jobs import JOBS

    if program == "wrapper":
        text = capture(importlib.import_module("launcher.submit").main, ["--help"])
    elif program == "job":
        text = capture(importlib.import_module(JOBS[sub]).main, ["--help"])
    elif program in ("botify", "sim"):
        main = importlib.import_module("botify.cli" if program == "botify" else "sim.__main__").main
        text = capture(main, [sub, "--help"])
    else:
        main = importlib.import_module(CONSOLE_SCRIPTS[program]).main
        text = capture(lambda a: main(*([a] if main.__code__.co_argcount else [])), ["--help"])
    options = frozenset(options_of_help(text))
    assert options, f"no --help options for {program} {sub or ''}"
    return options


def allowed_options(line: str, program, subs) -> tuple:
    """(what the line runs, a test for one of its options): the options every named job or subcommand
    takes (plus the wrapper's through spark-submit.sh), or, for modules and scripts, their help or source."""
    import runpy

    if program in ("job", "botify", "sim") or program in CONSOLE_SCRIPTS:
        allowed = frozenset.intersection(*(command_options(program, sub) for sub in subs))
        if program == "job":
            allowed |= LAUNCHER_OPTIONS
            if Path(line.split()[0]).name == "spark-submit.sh":
                allowed |= command_options("wrapper")
        name = " ".join(x for x in (str(program), "|".join(s for s in subs if s)) if x)
        return name, lambda option: option in allowed
    kind, target = program
    if kind == "module":
        text = capture(lambda a: runpy.run_module(target, run_name="__main__"), ["--help"])
    else:
        assert (REPO / target).is_file(), f"no script {target}"
        # A bench script may start servers or Spark before parsing: read its options from the source instead.
        source = (REPO / SCRIPT_DELEGATES.get(target, target)).read_text()
        text = " ".join(re.findall(r"add_argument\(\s*(?:\"-\w\", )?\"(--[\w-]+)\"", source))
    assert text, "no --help"
    return target, lambda option: re.search(re.escape(option) + r"\b", text) is not None


def doc_commands():
    """(page, line, parsed) of every command of ours in the docs' code blocks."""
    for page, line in doc_command_lines():
        parsed = parse_command(line)
        if parsed is not None:
            yield page, line, parsed


def test_every_command_in_the_docs_names_a_real_program_and_options():
    """Each ``--option`` a documented command or synopsis passes appears in its program's ``--help``; a
    synopsis naming several jobs or subcommands (``<job>``, ``a|b``) only options every one of them takes."""
    wrong = []
    for page, line in doc_command_lines():
        try:
            parsed = parse_command(line)
            if parsed is None:
                continue
            program, subs, _, args = parsed
            name, known = allowed_options(line, program, subs)
        except AssertionError as exc:
            wrong.append(f"{page}: {line}: {exc}")
            continue
        wrong += [f"{page}: {name}: no option {option}" for option in options_in(args) if not known(option)]
    assert wrong == []


# ---- synopses, the other way round -------------------------------------------------------------------------------

def required_synopses():
    from jobs import JOBS

    return ([(name, None) for name in ("botify-demo", "botify-daily", "botify-upload", "botify-minicluster")]
            + [("wrapper", None)] + [("botify", name) for name in BOTIFY_COMMANDS]
            + [("job", name) for name in sorted(JOBS)] + [("sim", name) for name in SIM_COMMANDS])


def synopsis_gaps(lines, required, options_of) -> list:
    """What the synopses in ``lines`` ((page, line) pairs) leave out (the rule: the next test's docstring).

    ``options_of(program, sub)`` gives a command's options; pure, so a planted mismatch can be tested."""
    own, shared, wrapper = {}, {}, {}
    for page, line in lines:
        parsed = parse_command(line)
        if parsed is None:
            continue
        program, subs, is_shared, args = parsed
        if not is_synopsis(args, is_shared):
            continue
        options = set(options_in(args))
        if program == "job" and is_shared and Path(line.split()[0]).name == "spark-submit.sh":
            wrapper.setdefault(page, set()).update(options)
        for sub in subs:
            if is_shared:
                shared.setdefault((program, sub), set()).update(options)
            else:
                own.setdefault((program, sub), {}).setdefault(page, set()).update(options)
    gaps = []
    for program, sub in required:
        name = " ".join(x for x in (program, sub) if x)
        if program == "wrapper":
            pages = wrapper or {"(none)": None}
            for page, documented in pages.items():
                if documented is None:
                    gaps.append("spark-submit.sh: no ./spark-submit.sh <job> synopsis")
                    continue
                missing = options_of("wrapper", None) - {"--help"} - documented
                gaps += [f"{page}: spark-submit.sh: synopsis lacks {o}" for o in sorted(missing)]
            continue
        pages = own.get((program, sub)) or ({"(shared synopses)": set()} if (program, sub) in shared else {})
        if not pages:
            gaps.append(f"{name}: no synopsis")
        for page, documented in pages.items():
            missing = options_of(program, sub) - {"--help"} - documented - shared.get((program, sub), set())
            gaps += [f"{page}: {name}: synopsis lacks {o}" for o in sorted(missing)]
    return gaps


def test_every_synopsis_lists_every_option_of_its_command():
    """Synopses hold every option, the reverse of the test above.

    A *synopsis* is a code-block line of README.md or docs/*.md that runs one of our commands and shows
    optional parts in brackets (``[--master M]``), or names several jobs or subcommands at once:
    ``./spark-submit.sh <job>`` (every job), ``botify serve|reload|...`` (those listed); it may wrap after a
    backslash or onto an indented line starting with ``[``. Such a *shared*
    synopsis documents its options for each command it names, wherever it stands: it is where options
    common to all of them are given once. For a command with synopsis lines of its own on a page, every
    option its ``--help`` lists (``-h/--help`` aside) must appear on those lines or on a shared synopsis
    naming it; a command with none must be covered by shared synopses alone. The options of
    spark-submit.sh itself must all be on each page's ``./spark-submit.sh <job>`` line. Every command in
    ``required_synopses()`` must have a synopsis. Pages are globbed: a new page is covered once it exists.
    """
    assert synopsis_gaps(doc_command_lines(), required_synopses(), command_options) == []


def test_the_synopsis_check_flags_a_planted_mismatch():
    options = {("botify-demo", None): {"--help", "--scale", "--cluster"}, ("wrapper", None): {"--help", "--master"},
               ("job", "analyze_ab"): {"--help", "--config", "--run"}, ("botify", "release"): {"--help", "--config"}}
    lines = [("a.md", ".venv/bin/botify-demo [--scale S]"),                    # lacks --cluster
             ("a.md", "./spark-submit.sh <job> [--master M] [--config F]"),  # shared: --config for every job
             ("a.md", "./spark-submit.sh analyze_ab [--run ID]"),
             ("b.md", "botify-demo [--scale S] [--cluster C]"),              # complete on this page
             ("b.md", "./spark-submit.sh analyze_ab --run 2026-11-27")]      # an example, not a synopsis
    required = [("botify-demo", None), ("wrapper", None), ("job", "analyze_ab"), ("botify", "release")]
    assert synopsis_gaps(lines, required, lambda p, s: options[(p, s)]) == [
        "a.md: botify-demo: synopsis lacks --cluster", "botify release: no synopsis"]
    lines.append(("c.md", "botify hold|release [--config F]"))
    lines.append(("c.md", "./spark-submit.sh <job> [--dry-run]"))             # the wrapper's line, incomplete
    assert synopsis_gaps(lines, required, lambda p, s: options[(p, s)]) == [
        "a.md: botify-demo: synopsis lacks --cluster", "c.md: spark-submit.sh: synopsis lacks --master"]


# ---- paths the docs name ---------------------------------------------------------------------------------------

REPO_PATH = re.compile(r"(?<![\w./<$-])((?:common|jobs|botify|sim|pipeline|launcher|testkit|tests|bench|conf|hadoop)"
                       r"/[\w./{},-]*[\w}])")
REPO_MODULE = re.compile(r"(?<![\w./<$-])((?:common|jobs|botify|sim|pipeline|launcher|testkit)\.[a-z_]\w*)")


def test_every_repository_path_the_docs_name_exists():
    """``common/recommender_rules.py``, ``jobs/train_als``, ``conf/spark/{local,yarn}.yml``, ``tests/yarn/``,
    ``common.storage``: each names a file, folder or module of this checkout (a rename that missed a page
    shows here)."""
    missing = []
    for page in markdown_pages() + [REPO / "CHANGELOG.md"]:
        text = page.read_text()
        for match in REPO_PATH.finditer(text):
            path = match.group(1).split("::")[0]
            brace = re.search(r"\{([^}]*)\}", path)
            for candidate in ([path[:brace.start()] + x + path[brace.end():] for x in brace.group(1).split(",")]
                              if brace else [path]):
                if not (REPO / candidate).exists() and not (REPO / f"{candidate}.py").is_file():
                    missing.append(f"{page.name}: {candidate}")
        for match in REPO_MODULE.finditer(text):
            package, name = match.group(1).split(".")
            if name not in ("md", "yml", "py", "json", "jsonl") and not (
                    (REPO / package / f"{name}.py").is_file() or (REPO / package / name).is_dir()):
                missing.append(f"{page.name}: {match.group(1)}")
    assert missing == []
