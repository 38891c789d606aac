"""Each measured figure lives in one place: docs/results.md (model and A/B results) or docs/benchmarks.md
(times, ratios, serving); every other page links there instead of keeping a copy that goes stale.

The rule checked, on README.md and every docs/*.md page other than those two:

- the text is prose: fenced and indented code blocks are left out;
- it is cut into *sentences*: a paragraph, a list item or a table row (one line) is split after
  ``.``, ``!`` or ``?`` followed by white space and a capital letter, a bracket or a backtick;
- a sentence that holds a markdown link to results.md or benchmarks.md *quotes* figures: every number
  in it that carries a unit (``%``, ``×`` or an ``x`` written right after the digits, ``s``, ``ms``,
  ``min``, ``h``, ``KB``, ``MB``, ``GB``, ``MiB``, ``GiB``, ``req/s``, ``events/s``, ``users/s``,
  ``steps/s``, ``s/epoch``) must be a figure of results.md or benchmarks.md with the same unit;
- an interval in square brackets right after a number, ``+66.8% [+61.1, +72.5]``, takes that
  number's unit, in a quote as on the figure pages;
- a figure there has the unit written after it, or, in a table cell without one, the unit its column's
  header names (``effect %``, ``95% CI``);
- a range written ``17-22 s`` is not read (the hyphen cannot be told from a minus sign), nor is a
  threshold: a number right after ``<``, ``>``, ``≤``, ``≥``, "over", "under", "above", "below",
  "within", "at most" or "at least" (an alert's limit, a target) states no measurement;
- numbers are compared after normalising: a leading ``+`` and thousands separators dropped, the
  typographic minus read as ``-``, ``x`` read as ``×``, ``seconds``/``minutes``/``hours`` as
  ``s``/``min``/``h``;
- rounding: a quote with d decimal places matches a figure with at least d places that rounds (half
  away from zero) to it: ``+67%`` and ``+66.8%`` both quote ``+66.8%``; ``+66.9%`` does not, nor does
  ``526.0 s`` quote ``526 s`` (a quote may not claim more precision than was measured).

Numbers in a sentence without such a link are not checked: a page may state its own facts (a
default, a limit), but once it points at the figures, what it quotes must be them.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURE_PAGES = ("results.md", "benchmarks.md")

UNITS = {"%": "%", "×": "×", "x": "×", "ms": "ms", "s": "s", "seconds": "s", "min": "min", "minutes": "min",
         "h": "h", "hours": "h", "KB": "KB", "MB": "MB", "GB": "GB", "MiB": "MiB", "GiB": "GiB",
         "req/s": "req/s", "events/s": "events/s", "users/s": "users/s", "steps/s": "steps/s",
         "s/epoch": "s/epoch"}
_SPACED_UNITS = sorted((u for u in UNITS if u != "x"), key=len, reverse=True)
NUMBER = re.compile(
    r"(?<![\w.@#/-])(?P<sign>[+\-−]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?:(?P<x>x)(?![\w])|\s?(?P<unit>" + "|".join(re.escape(u) for u in _SPACED_UNITS) + r")(?![\w/]))")
BARE_NUMBER = re.compile(r"(?<![\w.@#/-])[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
THRESHOLD = re.compile(r"(?:[<>≤≥]|\b(?:over|under|above|below|within|at most|at least))\s*$")
INTERVAL = re.compile(r"\s*\[([^\]]*)\]")
FIGURE_LINK = re.compile(r"\]\([^)\s]*\b(?:results|benchmarks)\.md(?:#[^)\s]*)?\)")
FENCE = re.compile(r"```.*?```", re.S)
INDENTED = re.compile(r"(?m)^(?: {4}|\t).*$")
NEW_UNIT = re.compile(r"^\s*(?:\||[-*] |\d+\. |#)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[`*])")


def normalise(number: str) -> Decimal:
    """The value of a number as written: ``+1,395`` -> 1395, ``−4.42`` -> -4.42."""
    return Decimal(number.replace("+", "").replace("−", "-").replace(",", ""))


def decimals_of(number: str) -> int:
    return len(number.partition(".")[2])


def quoted(text: str):
    """(as written, value, decimals, unit) of every number with a unit in ``text``, and of the numbers of
    the interval in square brackets right after one."""
    for m in NUMBER.finditer(text):
        if THRESHOLD.search(text, 0, m.start()):
            continue
        unit = "×" if m.group("x") else UNITS[m.group("unit")]
        number = m.group("sign") + m.group("int") + (m.group("frac") or "")
        yield m.group(0).strip(), normalise(number), decimals_of(number), unit
        interval = INTERVAL.match(text, m.end())
        for bound in BARE_NUMBER.findall(interval.group(1)) if interval else ():
            yield bound, normalise(bound), decimals_of(bound), unit


def prose(text: str) -> str:
    return INDENTED.sub("", FENCE.sub("", text))


def sentences(text: str):
    """Paragraphs, list items and table rows of ``text``'s prose, each cut into sentences."""
    units, current = [], []
    for line in prose(text).splitlines():
        if not line.strip() or NEW_UNIT.match(line) or (current and current[-1].lstrip().startswith("|")):
            if current:
                units.append(" ".join(current))
            current = [line.strip()] if line.strip() else []
        else:
            current.append(line.strip())
    if current:
        units.append(" ".join(current))
    for unit in units:
        yield from SENTENCE_END.split(unit)


def header_unit(cell: str):
    """The unit a table header names for its column (``effect %`` -> %), or None."""
    for token in re.findall(r"%|×|\b(?:ms|s|min|GiB|MiB|req/s)\b", cell):
        return UNITS.get(token, token)
    return None


def figures(pages) -> set:
    """(value, decimals, unit) of every figure on the figure pages."""
    found = set()
    for page in pages:
        text = prose(page if isinstance(page, str) else page.read_text())
        header = None
        for line in text.splitlines():
            for _, value, decimals, unit in quoted(line):
                found.add((value, decimals, unit))
            if not line.lstrip().startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [header_unit(c) for c in cells]
                continue
            if all(set(c) <= set("-: ") for c in cells):
                continue
            for cell, unit in zip(cells, header):
                if unit is None:
                    continue
                for number in BARE_NUMBER.findall(cell):
                    found.add((normalise(number), decimals_of(number), unit))
    return found


def matches(value: Decimal, decimals: int, unit: str, known: set) -> bool:
    step = Decimal(1).scaleb(-decimals)
    return any(u == unit and d >= decimals and v.quantize(step, rounding=ROUND_HALF_UP) == value
               for v, d, u in known)


def misquoted(text: str, known: set) -> list:
    """Every figure quoted next to a link to the figure pages that the figure pages do not hold."""
    wrong = []
    for sentence in sentences(text):
        if FIGURE_LINK.search(sentence):
            wrong += [written for written, value, decimals, unit in quoted(sentence)
                      if not matches(value, decimals, unit, known)]
    return wrong


def quoting_pages():
    return [REPO / "README.md"] + [p for p in sorted((REPO / "docs").glob("*.md")) if p.name not in FIGURE_PAGES]


@pytest.fixture(scope="module")
def known():
    return figures([REPO / "docs" / name for name in FIGURE_PAGES])


@pytest.mark.parametrize("page", quoting_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_a_page_quotes_only_the_figures_it_links_to(page, known):
    assert misquoted(page.read_text(), known) == []


FAKE_FIGURES = """
| script | figure | ratio |
|---|---|---|
| `bench/yarn.py` | 526 s local, 629 s on YARN; peak RSS 6.6 GiB | 1.20× |

| where | effect % | 95% CI |
|---|---|---|
| local | **+66.8** | +61.1 .. +72.5 |

c=64 3,294 req/s, p99 4.83 ms.
"""


@pytest.mark.parametrize("line, wrong", [
    ("The demo takes 526 s ([benchmarks.md](benchmarks.md)).", []),
    ("The demo takes 468 s ([benchmarks.md](benchmarks.md)).", ["468 s"]),  # a stale figure
    ("MultiDAE +67% over StickyArtist ([results](docs/results.md#ab)).", []),  # rounded
    ("MultiDAE +66.8% [+61.1, +72.5] ([results](results.md)).", []),  # a table's header gives the unit
    ("MultiDAE +53.8% [+48.5, +59.2] ([results](results.md)).", ["+53.8%", "+48.5", "+59.2"]),  # stale
    ("MultiDAE +66.8% [+61.1, +72.4] ([results](results.md)).", ["+72.4"]),  # one bound wrong
    ("On YARN it takes 1.20x the local time ([b](benchmarks.md)).", []),  # x read as ×
    ("It answers 3294 req/s at p99 4.8 ms ([b](benchmarks.md)).", []),  # separators, rounding
    ("It answers 3,300 req/s ([b](benchmarks.md)).", ["3,300 req/s"]),  # not a rounding of 3,294
    ("A claim of 526.0 s ([b](benchmarks.md)).", ["526.0 s"]),  # more precision than measured
    ("66.8 s is not 66.8% ([b](benchmarks.md)).", ["66.8 s"]),  # the unit must agree
    ("The demo takes 468 s. See [benchmarks.md](benchmarks.md).", []),  # another sentence: not a quote
    ("Workers wait 5 s for a request.", []),  # no link: the page's own fact
    ("Alert when p99 is over 25 ms ([b](benchmarks.md)).", []),  # a threshold, not a measurement
    ("The target, p99 ≤ 10 ms, was met: 4.83 ms ([b](benchmarks.md)).", []),
])
def test_the_checker_flags_a_planted_mismatch(line, wrong):
    assert misquoted(line, figures([FAKE_FIGURES])) == wrong


def test_code_blocks_are_not_prose():
    text = "```\nbench/e2e.py  # 999 s ([b](benchmarks.md))\n```\n    999 s ([b](benchmarks.md))\n"
    assert misquoted(text, figures([FAKE_FIGURES])) == []
