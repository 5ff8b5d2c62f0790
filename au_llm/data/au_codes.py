"""FACS Action Unit codes as written in CASME II / SAMM spreadsheets, read the way a coder would.

A cell such as ``4D+ref(6)+7C+43E`` or ``(R6 or R12)+R15`` is split on ``+`` (or ``,``) outside
parentheses. In each part:

* ``ref( )`` wrappers and grouping parentheses are removed: ``ref(X)`` counts ``X`` as present;
* side / asymmetry prefixes ``L`` ``R`` ``A`` ``T`` ``B`` are dropped (``A/L12`` = asymmetric, left
  12: the ``/`` here joins two prefixes and is not an alternative), as is an ``AU`` prefix;
* FACS intensity suffixes ``A``-``E`` are dropped, also ranges such as ``10A/B``;
* spaces are ignored;
* what remains is the AU number, which must be a FACS code (:data:`FACS_CODES`).

``or`` and a ``/`` between two AU numbers (``12/14``) mean *alternatives*: ``L12 or L14``,
``R14A or 17A or 24A``. An erratum (see :mod:`au_llm.data.errata`) may resolve them; otherwise the
FIRST alternative is kept and a warning says so. A part without an AU number (``soft focus``) is
dropped with a warning. A part with one number among unexpected characters (``12?``) is read as
that number with a warning; a part whose number is not an AU (``1214``) is dropped with a warning.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import pandas as pd

# The AU numbers FACS defines (Ekman, Friesen & Hager 2002): the action units 1-2 and 4-46 (face,
# jaw, tongue, eyelids), 50-58 (speech, head positions), 61-74 (eye positions, visibility codes)
# and the gross behaviour codes 80-82, 84, 85, 91, 92, 97, 98. Other numbers (0, 3, 47, 150) are
# not AUs.
FACS_CODES = frozenset(
    [1, 2, *range(4, 47), *range(50, 59), *range(61, 75), 80, 81, 82, 84, 85, 91, 92, 97, 98]
)
FACS_RANGES = "1-2, 4-46, 50-58, 61-74, 80-82, 84, 85, 91, 92, 97, 98"
_SEPARATORS = "+,"
_TOKEN = re.compile(
    r"^(?P<prefix>(?:[LRATB]/?)*)(?:AU)?(?P<number>\d+)(?P<intensity>[A-E](?:/[A-E])*)?$",
    re.IGNORECASE,
)
_WRAPPED = re.compile(r"^(?:ref\s*)?\((?P<inner>.*)\)$", re.IGNORECASE | re.DOTALL)
_OR = re.compile(r"\s*\bor\b\s*", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_INTENSITY = re.compile(r"^[A-E]$", re.IGNORECASE)
_CANONICAL_PART = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class AUParse:
    """The AUs read from one annotation cell.

    Attributes:
        aus: AU numbers, sorted and unique.
        notes: Human-readable notes on every interpretation made (for the manifest's ``notes``).
        warnings: The notes that need the user's attention (a subset of ``notes``): alternatives
            resolved to the first one, dropped parts, an empty cell.
        has_alternatives: The cell named alternative AUs (``L12 or L14``).
        resolved_by_erratum: The alternatives were resolved by an erratum's AU string.
    """

    aus: tuple[int, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    has_alternatives: bool = False
    resolved_by_erratum: bool = False


@dataclass
class _Reading:
    aus: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    has_alternatives: bool = False

    def warn(self, message: str) -> None:
        self.notes.append(message)
        self.warnings.append(message)

    def result(self) -> AUParse:
        return AUParse(
            aus=tuple(sorted(set(self.aus))),
            notes=tuple(self.notes),
            warnings=tuple(self.warnings),
            has_alternatives=self.has_alternatives,
        )


def cell_text(cell: object) -> str:
    """Return a spreadsheet cell as text: ints as ``"12"``, ``12.0`` as ``"12"``, empty as ``""``.

    Args:
        cell: A value from openpyxl, pandas or csv (str, int, float, NaN, None, ...).

    Returns:
        The text as written (strings are returned unchanged, spaces included).
    """
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, numbers.Integral):
        return str(int(cell))
    if isinstance(cell, numbers.Real):
        value = float(cell)
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    if pd.api.types.is_scalar(cell) and pd.isna(cell):
        return ""
    return str(cell)


def _depth_ok(text: str) -> bool:
    """True when the parentheses of ``text`` balance without going negative."""
    depth = 0
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if depth < 0:
            return False
    return depth == 0


def _split_top_level(text: str) -> list[str]:
    """Split on ``+`` / ``,`` outside parentheses."""
    parts, current, depth = [], [], 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if char in _SEPARATORS and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unwrap(text: str) -> str:
    """Remove ``ref( )`` and grouping parentheses that enclose the whole text."""
    text = text.strip()
    while (match := _WRAPPED.match(text)) and _depth_ok(match["inner"]):
        text = match["inner"].strip()
    return text


def _slash_alternatives(piece: str) -> list[str]:
    """Split ``12/14`` into alternatives, keeping ``10A/B`` and ``A/L12`` whole."""
    pieces = piece.split("/")
    if sum(bool(_DIGITS.search(part)) for part in pieces) < 2:
        return [piece]
    tokens: list[str] = []
    pending_prefix = ""
    for part in pieces:
        if _DIGITS.search(part):
            tokens.append(pending_prefix + part)
            pending_prefix = ""
        elif tokens and not pending_prefix and _INTENSITY.match(part.strip()):
            tokens[-1] += "/" + part
        else:
            pending_prefix += part + "/"
    return tokens


def _alternatives(body: str) -> list[str]:
    tokens: list[str] = []
    for piece in _OR.split(body):
        tokens.extend(_slash_alternatives(_unwrap(piece)))
    return [token for token in tokens if token.strip()]


def is_facs_code(au: int) -> bool:
    """Whether ``au`` is an AU number that FACS defines (see :data:`FACS_CODES`)."""
    return au in FACS_CODES


def _token_au(token: str) -> tuple[int | None, str | None]:
    """Read one AU token; returns (AU or None, a warning or None)."""
    compact = re.sub(r"[\s()]+", "", token)
    compact = re.sub(r"^ref", "", compact, flags=re.IGNORECASE)
    match = _TOKEN.match(compact)
    if match:
        number = int(match["number"])
    else:
        runs = _DIGITS.findall(compact)
        if not runs:
            return None, f"part {token.strip()!r} has no AU number, dropped"
        if len(runs) > 1:
            return None, f"part {token.strip()!r} could not be read as one AU, dropped"
        number = int(runs[0])
        if is_facs_code(number):
            return number, f"part {token.strip()!r} has unexpected characters; read as AU {number}"
    if not is_facs_code(number):
        return None, f"part {token.strip()!r} is not a FACS AU code ({FACS_RANGES}), dropped"
    return number, None


def _read_part(part: str, reading: _Reading) -> None:
    body = _unwrap(part)
    if not body:
        return
    if len(_split_top_level(body)) > 1:
        for sub in _split_top_level(body):
            _read_part(sub, reading)
        return
    tokens = _alternatives(body)
    if len(tokens) == 1:
        au, warning = _token_au(tokens[0])
        if warning:
            reading.warn(warning)
        if au is not None:
            reading.aus.append(au)
        return
    read = [_token_au(token) for token in tokens]
    choices = list(dict.fromkeys(au for au, _ in read if au is not None))
    unreadable = [warning for au, warning in read if au is None and warning]
    label = part.strip()
    if not choices:
        reading.warn(f"part {label!r} has no readable AU number, dropped")
        return
    reading.aus.append(choices[0])
    for warning in unreadable:
        reading.warn(f"in alternative {label!r}: {warning}")
    if len(choices) == 1:
        reading.notes.append(f"alternative {label!r} names one AU ({choices[0]})")
        return
    reading.has_alternatives = True
    reading.warn(f"alternative {label!r} resolved to first ({choices[0]})")


def _read_text(text: str) -> AUParse:
    reading = _Reading()
    if not text.strip():
        reading.warn("no AU code (empty cell)")
        return reading.result()
    for part in _split_top_level(text):
        _read_part(part, reading)
    if not reading.aus and not reading.warnings:
        reading.warn(f"no AU number in {text.strip()!r}")
    return reading.result()


def parse_au_cell(cell: object, resolved: str | None = None) -> AUParse:
    """Read the AU set of one ``Action Units`` cell.

    Args:
        cell: The cell as read (int ``12``, float ``12.0``, str ``"4+7+L10"``, NaN/None/"").
        resolved: An erratum's replacement AU string (e.g. ``"R12+R15"``). Used only when the cell
            contains alternatives; it is then read instead of the cell. Otherwise it is ignored and
            a note says so.

    Returns:
        The AU set with notes; see the module docstring for the rules.
    """
    text = cell_text(cell)
    parsed = _read_text(text)
    if resolved is None:
        return parsed
    if not parsed.has_alternatives:
        note = f"erratum AUs {resolved!r} not applied: {text.strip()!r} has no AU alternative"
        return replace(parsed, notes=(*parsed.notes, note))
    replacement = _read_text(resolved)
    note = f"AU alternatives in {text.strip()!r} resolved by erratum to {resolved.strip()!r}"
    return AUParse(
        aus=replacement.aus,
        notes=(note, *replacement.notes),
        warnings=replacement.warnings,
        has_alternatives=True,
        resolved_by_erratum=True,
    )


def format_aus(aus: Iterable[int]) -> str:
    """Write an AU set in the canonical manifest form.

    Args:
        aus: AU numbers in any order, repeats allowed.

    Returns:
        Sorted unique numbers joined by ``+`` (``"4+7+10"``); ``""`` when there are none.
    """
    return "+".join(str(au) for au in sorted({int(au) for au in aus}))


def parse_aus(text: object) -> tuple[int, ...]:
    """Read the canonical ``aus`` manifest column (the inverse of :func:`format_aus`).

    Args:
        text: ``"4+7+10"``, a single int, or NaN/None/``""`` for no AU.

    Returns:
        Sorted unique AU numbers.

    Raises:
        ValueError: The text is not AU numbers joined by ``+`` (e.g. ``"L12"``), or names a number
            that FACS does not define (``0``, ``150``).
    """
    value = cell_text(text).strip()
    if not value:
        return ()
    parts = [part.strip() for part in value.split("+")]
    if not all(_CANONICAL_PART.match(part) for part in parts):
        raise ValueError(
            f"{value!r} is not a canonical AU list (expected AU numbers joined by '+', "
            "e.g. '4+7+10')"
        )
    aus = tuple(sorted({int(part) for part in parts}))
    unknown = [au for au in aus if not is_facs_code(au)]
    if unknown:
        raise ValueError(f"{value!r}: AU {unknown[0]} is not a FACS AU code ({FACS_RANGES})")
    return aus


@dataclass(frozen=True)
class AUMark:
    """How one AU of a cell is coded, beyond its number.

    Attributes:
        au: AU number.
        sides: Prefix letters in cell order, upper case: ``L``/``R`` (unilateral, the subject's
            left / right), ``A`` (asymmetric), ``T``/``B`` (top / bottom); empty when bilateral.
        intensity: FACS intensity letters, upper case (``C``, ``A/B``); empty when not coded.
    """

    au: int
    sides: str = ""
    intensity: str = ""


def _token_mark(token: str) -> AUMark | None:
    """The mark of one AU token (``A/L12``, ``43E``, ``ref(7B)``), None when it is not one AU."""
    compact = re.sub(r"[\s()]+", "", token)
    compact = re.sub(r"^ref", "", compact, flags=re.IGNORECASE)
    match = _TOKEN.match(compact)
    if not match or not is_facs_code(int(match["number"])):
        return None
    sides = match["prefix"].replace("/", "").upper()
    return AUMark(int(match["number"]), sides, (match["intensity"] or "").upper())


def _part_marks(part: str) -> list[AUMark]:
    body = _unwrap(part)
    if not body:
        return []
    if len(_split_top_level(body)) > 1:
        return [mark for sub in _split_top_level(body) for mark in _part_marks(sub)]
    marks = (_token_mark(token) for token in _alternatives(body))
    return [mark for mark in marks if mark is not None]


def au_marks(cell: object, aus: Iterable[int]) -> dict[int, AUMark]:
    """Side and intensity of each annotated AU, read from the raw ``Action Units`` cell.

    The cell is read with the rules of :func:`parse_au_cell`; every alternative's token is read,
    then only the AUs in ``aus`` (the clip's resolved AU set, the manifest's ``aus``) are kept,
    so an erratum's choice among alternatives keeps its side (``(R6 or R12)+R15`` with AUs 12, 15
    gives ``R12``, ``R15``). An AU written twice gets the union of its side letters and its first
    intensity. An AU of ``aus`` that the cell does not name (a replaced cell) gets a bare mark.

    Args:
        cell: The ``au_raw`` cell as read (int, str, NaN, ...).
        aus: The clip's AU numbers.

    Returns:
        AU -> mark, for every AU of ``aus``, in ascending AU order.
    """
    found: dict[int, AUMark] = {}
    for part in _split_top_level(cell_text(cell)):
        for mark in _part_marks(part):
            old = found.get(mark.au)
            if old is None:
                found[mark.au] = mark
                continue
            sides = old.sides + "".join(s for s in mark.sides if s not in old.sides)
            found[mark.au] = AUMark(mark.au, sides, old.intensity or mark.intensity)
    return {au: found.get(au, AUMark(au)) for au in sorted({int(a) for a in aus})}
