"""AU answers as text, in AU-LLaVA's formats: target strings, instructions and strict parsers.

The same model answers in every format; only the instruction that follows the visual token
changes. For the run's AUs (in order) and a set of present AUs:

* ``list``: ``AU1, AU4, AU7`` (in the run's AU order), or ``none``;
* ``yesno``: ``AU1: yes; AU2: no; ...`` over every AU of the run;
* ``json``: ``{"AU1":1,"AU2":0,...}`` over every AU of the run, written compactly (no spaces:
  45 tokens instead of 60 for 8 AUs with SmolLM2's tokenizer, so fewer fixed tokens to learn);
  any JSON spacing parses;
* ``names``: FACS names from the vocabulary table, ``inner brow raiser, brow lowerer``, or ``none``.

:func:`parse_answer` is strict: an answer that is not exactly of its format's shape (an unknown
AU, a duplicate, a missing AU in ``yesno``/``json``, stray text) does not parse; its AUs then count
as absent and the failure is reported. Surrounding whitespace is ignored.

Each format is one entry of :data:`FORMATS` (its instruction, target writer and parser); the
config's ``model.text.formats`` check, the processor and the reports read that table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from au_llm.data.facs import facs_entries

NONE_WORD = "none"

_YESNO_ITEM = re.compile(r"AU(\d{1,2}):\s*(yes|no)")


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer turned back into AU decisions.

    Attributes:
        present: The AUs the answer says are present (None when it does not parse).
        error: Why it does not parse (empty when it does).
    """

    present: frozenset[int] | None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the answer parsed."""
        return self.present is not None


def _parse_items(items: list[str], to_au: dict[str, int], what: str) -> ParsedAnswer:
    found: list[int] = []
    for item in items:
        au = to_au.get(item)
        if au is None:
            return ParsedAnswer(None, f"unknown {what} {item!r}")
        if au in found:
            return ParsedAnswer(None, f"{what} {item!r} given twice")
        found.append(au)
    return ParsedAnswer(frozenset(found))


def _list_target(aus: Sequence[int], chosen: set[int]) -> str:
    return ", ".join(f"AU{au}" for au in aus if au in chosen) or NONE_WORD


def _list_parse(aus: Sequence[int], text: str) -> ParsedAnswer:
    if text == NONE_WORD:
        return ParsedAnswer(frozenset())
    items = [item.strip() for item in text.split(",")]
    return _parse_items(items, {f"AU{au}": au for au in aus}, "AU")


def _yesno_target(aus: Sequence[int], chosen: set[int]) -> str:
    return "; ".join(f"AU{au}: {'yes' if au in chosen else 'no'}" for au in aus)


def _yesno_parse(aus: Sequence[int], text: str) -> ParsedAnswer:
    parts = [part.strip() for part in text.split(";")]
    matches = [_YESNO_ITEM.fullmatch(part) for part in parts]
    if not all(matches):
        return ParsedAnswer(None, f"expected 'AUn: yes|no; ...', got {text[:60]!r}")
    pairs = [(int(m.group(1)), m.group(2) == "yes") for m in matches if m]
    if [au for au, _ in pairs] != list(aus):
        return ParsedAnswer(None, f"expected one answer per AU in the order {list(aus)}")
    return ParsedAnswer(frozenset(au for au, yes in pairs if yes))


def _json_target(aus: Sequence[int], chosen: set[int]) -> str:
    return json.dumps({f"AU{au}": int(au in chosen) for au in aus}, separators=(",", ":"))


def _json_parse(aus: Sequence[int], text: str) -> ParsedAnswer:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return ParsedAnswer(None, f"not JSON: {exc.msg}")
    expected = [f"AU{au}" for au in aus]
    if not isinstance(data, dict) or sorted(data) != sorted(expected):
        return ParsedAnswer(None, f"expected the keys {expected}")
    if any(value not in (0, 1) or isinstance(value, bool) for value in data.values()):
        return ParsedAnswer(None, "expected values 0 or 1")
    return ParsedAnswer(frozenset(au for au in aus if data[f"AU{au}"] == 1))


def _names_target(aus: Sequence[int], chosen: set[int]) -> str:
    names = [entry.name for entry in facs_entries(list(aus)) if entry.au in chosen]
    return ", ".join(names) or NONE_WORD


def _names_parse(aus: Sequence[int], text: str) -> ParsedAnswer:
    if text == NONE_WORD:
        return ParsedAnswer(frozenset())
    names = {entry.name: entry.au for entry in facs_entries(list(aus))}
    return _parse_items([item.strip().lower() for item in text.split(",")], names, "name")


@dataclass(frozen=True)
class AnswerFormat:
    """One way of answering in words.

    Attributes:
        instruction: What the model is asked, after the visual token.
        target: The answer saying that exactly ``chosen`` of the run's AUs (in order) are present:
            ``target(aus, chosen)``.
        parse: The strict parser of an answer (whitespace stripped): ``parse(aus, text)``.
    """

    instruction: str
    target: Callable[[Sequence[int], set[int]], str]
    parse: Callable[[Sequence[int], str], ParsedAnswer]


FORMATS: dict[str, AnswerFormat] = {
    "list": AnswerFormat(
        "Which action units are present? Answer as a comma-separated list, or none.",
        _list_target,
        _list_parse,
    ),
    "yesno": AnswerFormat(
        "For each action unit, is it present? Answer yes or no for each.",
        _yesno_target,
        _yesno_parse,
    ),
    "json": AnswerFormat(
        "Answer in JSON with 1 for each action unit present and 0 for each one absent.",
        _json_target,
        _json_parse,
    ),
    "names": AnswerFormat(
        "Which facial actions are present? Answer with their FACS names, or none.",
        _names_target,
        _names_parse,
    ),
}
"""Every answer format by name (``model.text.formats``)."""
ANSWER_FORMATS = tuple(FORMATS)
INSTRUCTIONS = {name: fmt.instruction for name, fmt in FORMATS.items()}


def check_format(name: str) -> None:
    """Raise ValueError unless ``name`` is one of :data:`ANSWER_FORMATS`."""
    if name not in FORMATS:
        raise ValueError(f"answer format {name!r}: expected one of {', '.join(ANSWER_FORMATS)}")


def target_answer(fmt: str, aus: Sequence[int], present: Iterable[int]) -> str:
    """The answer string of format ``fmt`` saying that exactly ``present`` are present.

    Args:
        fmt: One of :data:`ANSWER_FORMATS`.
        aus: The run's AUs, in order.
        present: AUs present (a subset of ``aus``).

    Raises:
        ValueError: For an unknown format or an AU outside ``aus``.
    """
    check_format(fmt)
    chosen = set(present)
    if not chosen <= set(aus):
        raise ValueError(f"AUs {sorted(chosen - set(aus))} are not among the run's AUs {list(aus)}")
    return FORMATS[fmt].target(aus, chosen)


def parse_answer(fmt: str, aus: Sequence[int], text: str) -> ParsedAnswer:
    """Turn an answer of format ``fmt`` back into the set of present AUs (strictly).

    Args:
        fmt: One of :data:`ANSWER_FORMATS`.
        aus: The run's AUs, in order.
        text: The generated answer.

    Returns:
        The parsed decisions, or a failure with its reason (never raises for bad text).
    """
    check_format(fmt)
    return FORMATS[fmt].parse(aus, text.strip())


def decisions(parsed: Sequence[ParsedAnswer], aus: Sequence[int]) -> list[list[int]]:
    """``[N, A]`` 0/1 decisions of parsed answers; an answer that did not parse is all 0."""
    return [[int(p.ok and au in p.present) for au in aus] for p in parsed]  # type: ignore[operator]


def decision_matrix(fmt: str, aus: Sequence[int], texts: Sequence[str]) -> np.ndarray:
    """``[N, A]`` float 0/1 decisions parsed from answers of format ``fmt`` (``head: text``)."""
    parsed = [parse_answer(fmt, aus, text) for text in texts]
    return np.asarray(decisions(parsed, aus), dtype=np.float64).reshape(len(parsed), len(aus))
