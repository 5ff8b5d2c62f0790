"""Every marked figure in README.md and docs/*.md equals the JSON under bench/results/ it cites.

The rules (docs/benchmarks.md, "How figures are kept true"):

- A measured number is followed immediately by ``<!-- fig NAME.json:PATH -->``: ``NAME.json`` a
  file under ``bench/results/``, ``PATH`` its keys joined by dots, list items by their index
  (``points.2.formats.list.mean_binary_f1``); a key that itself holds dots or spaces is matched
  whole.
- The printed number is the JSON value rounded to the printed decimals (a value exactly halfway
  may round either way). ``98%`` prints a fraction (0.98) as a percentage, ``9.30x`` a ratio as
  it is, ``9/16`` a fraction as a count out of 16 (``round(fraction * 16) == 9``); ``+0.018``
  keeps its sign. Each number of a ``0.565 +- 0.011`` pair has its own marker.
- ``<!-- fig-block NAME.json:PATH -->`` on the line before a fenced code block: the block is
  printed output, and its lines appear in that order, one after the other, in the text at PATH
  (trailing spaces ignored).

A number without a marker is not checked: the documents quote no measurement without one
(thresholds, budgets and settings are not measurements).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIGURE = re.compile(
    r"(?<![\w.])(?P<number>[+-]?\d+(?:\.\d+)?(?:/\d+)?)(?P<suffix>%|x)?"
    r"<!-- fig (?P<file>[\w.-]+\.json):(?P<path>[^>]+?) -->"
)
BLOCK = re.compile(r"<!-- fig-block (?P<file>[\w.-]+\.json):(?P<path>[^>]+?) -->\n```[^\n]*\n")


def resolve(data: object, path: str) -> object:
    """The value at the dotted ``path`` of ``data`` (see the module docstring)."""
    rest = path
    while rest:
        if isinstance(data, list):
            head, _, rest = rest.partition(".")
            if not head.isdigit() or int(head) >= len(data):
                raise KeyError(f"no list item {head!r}")
            data = data[int(head)]
            continue
        if not isinstance(data, dict):
            raise KeyError(f"{rest!r} goes below a value")
        keys = [k for k in data if rest == k or rest.startswith(f"{k}.")]
        if not keys:
            raise KeyError(f"no key at {rest!r}")
        key = max(keys, key=len)
        data, rest = data[key], rest[len(key) + 1 :]
    return data


def figure_problem(number: str, suffix: str | None, value: object) -> str | None:
    """Why ``number`` (with its ``%``/``x`` suffix) does not print ``value``; None when it does."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"the JSON holds {value!r}, not a number"
    if "/" in number:
        count, total = (int(part) for part in number.split("/"))
        if round(value * total) == count:
            return None
        return f"{number} is not the fraction {value!r} of {total}"
    printed = Decimal(number)
    exact = Decimal(repr(float(value))) * (100 if suffix == "%" else 1)
    decimals = -printed.as_tuple().exponent
    if abs(printed - exact) <= Decimal(5) / Decimal(10) ** (decimals + 1):
        return None
    return f"{number}{suffix or ''} is not {value!r} rounded to {decimals} decimal(s)"


def outside_code(text: str) -> str:
    """``text`` with code blanked (the lines inside fenced blocks, inline spans on other lines):
    markers there are examples. Line breaks and offsets are kept."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
            lines.append(line)
        elif fenced:
            lines.append(" " * len(line))
        else:
            lines.append(re.sub(r"`[^`]+`", lambda m: " " * len(m.group(0)), line))
    return "\n".join(lines)


def document_problems(text: str, results: Path) -> list[str]:
    """Every marker of ``text`` that does not hold, as ``line N: what``."""
    problems, cache = [], {}
    original, text = text, outside_code(text)

    def load(name: str) -> object:
        if name not in cache:
            cache[name] = json.loads((results / name).read_text())
        return cache[name]

    def line(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    found = {m.start("file") for m in FIGURE.finditer(text)} | {
        m.start("file") for m in BLOCK.finditer(text)
    }
    for marker in re.finditer(r"<!-- fig(?:-block)? (?=\S)", text):
        if marker.end() not in found:
            problems.append(f"line {line(marker.start())}: a marker not right after a number")
    for kind, pattern in (("figure", FIGURE), ("block", BLOCK)):
        for match in pattern.finditer(text):
            where = f"line {line(match.start())}: {match['file']}:{match['path']}"
            try:
                value = resolve(load(match["file"]), match["path"])
            except (OSError, ValueError, KeyError) as error:
                problems.append(f"{where}: {error}")
                continue
            if kind == "figure":
                problem = figure_problem(match["number"], match["suffix"], value)
            else:
                problem = block_problem(original[match.end() :].split("\n```", 1)[0], value)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def block_problem(block: str, value: object) -> str | None:
    """Why the code ``block`` is not an excerpt of the printed text ``value``."""
    if not isinstance(value, str):
        return f"the JSON holds {type(value).__name__}, not printed text"
    lines = [line.rstrip() for line in block.splitlines()]
    printed = [line.rstrip() for line in value.splitlines()]
    for start in range(len(printed) - len(lines) + 1):
        if printed[start : start + len(lines)] == lines:
            return None
    return "the block is not a run of lines of the printed text"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_marked_figure_equals_its_json(document: Path) -> None:
    problems = document_problems(document.read_text(), RESULTS)
    assert not problems, f"{document.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_each_form_of_figure_is_read(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "a": {"f1": 0.82549, "share": 0.9791, "ratio": 9.3037, "diff": 0.0177},
                "points": [{"rate": 0.5625}, {"rate": 1.0}],
                "llm.source_none": {"n": 9},
                "printed": "head\nAU1   0.914\nAU2   0.889  \nmean\n",
            }
        )
    )
    good = (
        "F1 0.825<!-- fig r.json:a.f1 --> and 0.83<!-- fig r.json:a.f1 -->, "
        "98%<!-- fig r.json:a.share -->, 9.30x<!-- fig r.json:a.ratio -->, "
        "+0.018<!-- fig r.json:a.diff -->, 9/16<!-- fig r.json:points.0.rate -->, "
        "16/16<!-- fig r.json:points.1.rate -->, 9<!-- fig r.json:llm.source_none.n -->.\n"
        "<!-- fig-block r.json:printed -->\n```\nAU1   0.914\nAU2   0.889\n```\n"
        "An example: `0.5<!-- fig none.json:x -->`.\n```\n1<!-- fig none.json:y -->\n```\n"
    )
    assert document_problems(good, tmp_path) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("F1 0.826<!-- fig r.json:a.f1 -->", "0.826 is not 0.82549 rounded to 3"),
        ("97%<!-- fig r.json:a.share -->", "97% is not 0.9791"),
        ("9.31x<!-- fig r.json:a.ratio -->", "9.31x is not"),
        ("10/16<!-- fig r.json:points.0.rate -->", "10/16 is not the fraction 0.5625"),
        ("-0.018<!-- fig r.json:a.diff -->", "is not 0.0177"),
        ("0.83<!-- fig r.json:a.nothing -->", "no key at 'nothing'"),
        ("0.83<!-- fig r.json:points.5.rate -->", "no list item '5'"),
        ("0.83<!-- fig gone.json:a.f1 -->", "gone.json"),
        ("0.83 <!-- fig r.json:a.f1 -->", "a marker not right after a number"),
        ("<!-- fig-block r.json:printed -->\n```\nAU1   0.915\n```\n", "not a run of lines"),
    ],
)
def test_a_figure_that_differs_from_its_json_fails(tmp_path: Path, text: str, problem: str):
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "a": {"f1": 0.82549, "share": 0.9791, "ratio": 9.3037, "diff": 0.0177},
                "points": [{"rate": 0.5625}],
                "printed": "AU1   0.914\n",
            }
        )
    )
    problems = document_problems(text, tmp_path)
    assert len(problems) == 1 and problem in problems[0], problems
