"""Explanations of AU annotations: description targets built by rule, and their parser.

A clip's description target (VL-FAU's language task) is built from its annotation only:

* one *local* clause per annotated AU, in ascending order, from the FACS table
  (:mod:`au_llm.data.facs`): AU, name, muscle and visible movement, with the side when the raw
  AU cell codes it (``L12``: "on the left side") and the FACS intensity when coded (SAMM's
  ``A``-``E``);
* then a closing *global* sentence: the number of AUs, the facial regions involved and, when
  the manifest has one, the emotion label (``In all, two action units of the upper face,
  annotated as disgust.``).

The AUs come first, so the first decision a model makes after the instruction is which AU the
clip shows (the same decision as a ``list`` answer's first token), and the clauses and the
closing sentence follow from the AUs named.

Every phrasing is data (``au_llm/data/explain_phrasings.csv``: part, key, text). Each part has
few phrasings (one is drawn per clause from the clip's seed and the training step), so most of
a target's tokens follow from its AUs and the loss is spent on content rather than wording.
Every local clause starts with ``AU<n>``, which is what :func:`parse_explanation` reads back:
the AU set, and the side (left / right) said of each AU.
"""

from __future__ import annotations

import csv
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from au_llm.data.au_codes import AUMark, au_marks, parse_aus
from au_llm.data.facs import FacsAU, facs_table

EXPLAIN_INSTRUCTION = "Explain the facial movement: its regions, action units, muscles and sides."
PHRASINGS_FILE = "explain_phrasings.csv"
SIDE_WORDS = {"L": "left", "R": "right"}

_REQUIRED = {
    "local": ("",),
    "local_unlisted": ("",),
    "side": ("L", "R", "A", "T", "B"),
    "intensity": ("",),
    "intensity_word": ("A", "B", "C", "D", "E"),
    "global": ("",),
    "global_none": ("",),
    "region": ("upper", "lower", "both"),
    "units": ("one", "many"),
    "emotion": ("",),
}
_AU_MENTION = re.compile(r"\bAU(\d{1,2})\b")
_SIDE_MENTION = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_MISSING_EMOTION = {"", "nan", "none", "-", "/"}

Phrasings = dict[str, dict[str, tuple[str, ...]]]


def load_phrasings() -> Phrasings:
    """The phrasing table shipped with au-llm (see :func:`parse_phrasings`)."""
    text = resources.files("au_llm.data").joinpath(PHRASINGS_FILE).read_text(encoding="utf-8")
    return parse_phrasings(text)


def parse_phrasings(text: str) -> Phrasings:
    """A phrasing table (CSV ``part,key,text``) as part -> key -> phrasings (in file order).

    Raises:
        ValueError: A required part or key is missing, a local phrasing does not start with
            ``AU{au}``, or a phrasing outside the local clauses names an AU (``AU<n>``), or
            one outside the local clauses and side phrases says left or right (the parser
            reads a side up to the next AU, across the closing global sentence).
    """
    table: dict[str, dict[str, list[str]]] = {}
    for row in csv.DictReader(text.splitlines()):
        table.setdefault(row["part"], {}).setdefault(row["key"], []).append(row["text"])
    for part, keys in _REQUIRED.items():
        for key in keys:
            if not table.get(part, {}).get(key):
                raise ValueError(f"{PHRASINGS_FILE}: no phrasing for part {part!r}, key {key!r}")
    for part in ("local", "local_unlisted"):
        for phrasing in table[part][""]:
            if not phrasing.startswith("AU{au}"):
                raise ValueError(f"{PHRASINGS_FILE}: {part} {phrasing!r} must start with AU{{au}}")
    for part, keys in table.items():
        for phrasings in keys.values():
            if part in ("local", "local_unlisted"):
                continue
            named = [p for p in phrasings if _AU_MENTION.search(p)]
            if named:
                raise ValueError(f"{PHRASINGS_FILE}: {part} {named[0]!r} names an AU")
            sided = [p for p in phrasings if _SIDE_MENTION.search(p)]
            if sided and part != "side":
                raise ValueError(f"{PHRASINGS_FILE}: {part} {sided[0]!r} says a side")
    return {part: {key: tuple(v) for key, v in keys.items()} for part, keys in table.items()}


def clip_seed(dataset: str, subject: str, clip: str) -> int:
    """A clip's phrasing seed: CRC-32 of ``dataset/subject/clip`` (stable across processes)."""
    return zlib.crc32(f"{dataset}/{subject}/{clip}".encode())


def annotation_marks(au_raw: object, aus: object) -> dict[int, AUMark]:
    """The clip's AUs (canonical ``aus``) with side and intensity read from ``au_raw``.

    Raises:
        ValueError: ``aus`` is not a canonical AU list.
    """
    return au_marks(au_raw, parse_aus(aus))


def _emotion(label: str) -> str:
    text = " ".join(str(label).split()).lower()
    return "" if text in _MISSING_EMOTION else text


def _side_text(sides: str, rng: np.random.Generator, phrasings: Phrasings) -> str:
    """The side phrases of ``sides``; left and right together (``L12+R12``) say nothing."""
    if {"L", "R"} <= set(sides):
        sides = sides.replace("L", "").replace("R", "")
    return "".join(_pick(phrasings["side"][letter], rng) for letter in sides)


def _intensity_text(letters: str, rng: np.random.Generator, phrasings: Phrasings) -> str:
    if not letters:
        return ""
    words = [phrasings["intensity_word"][letter][0] for letter in letters.split("/")]
    template = _pick(phrasings["intensity"][""], rng)
    return template.format(word=" to ".join(words), letters=letters)


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _local_clause(
    mark: AUMark, entry: FacsAU | None, rng: np.random.Generator, phrasings: Phrasings
) -> str:
    side = _side_text(mark.sides, rng, phrasings)
    intensity = _intensity_text(mark.intensity, rng, phrasings)
    if entry is None:
        template = _pick(phrasings["local_unlisted"][""], rng)
        return template.format(au=mark.au, side=side, intensity=intensity)
    template = _pick(phrasings["local"][""], rng)
    return template.format(
        au=mark.au,
        name=entry.name,
        muscle=entry.muscle,
        movement=entry.movement,
        side=side,
        intensity=intensity,
    )


def _global_sentence(
    entries: list[FacsAU | None], emotion: str, rng: np.random.Generator, phrasings: Phrasings
) -> str:
    label = _emotion(emotion)
    emotion_text = _pick(phrasings["emotion"][""], rng).format(emotion=label) if label else ""
    if not entries:
        return _pick(phrasings["global_none"][""], rng).format(emotion=emotion_text)
    regions = {entry.region for entry in entries if entry is not None}
    region_key = "both" if len(regions) != 1 else regions.pop()
    count = len(entries)
    return _pick(phrasings["global"][""], rng).format(
        regions=_pick(phrasings["region"][region_key], rng),
        count=phrasings.get("number", {}).get(str(count), (str(count),))[0],
        units=phrasings["units"]["one" if count == 1 else "many"][0],
        emotion=emotion_text,
    )


def describe(
    marks: Mapping[int, AUMark],
    emotion: str,
    seed: Sequence[int],
    phrasings: Phrasings | None = None,
) -> str:
    """The description target of one annotation.

    Args:
        marks: The annotated AUs with side and intensity (see :func:`annotation_marks`).
        emotion: The manifest's emotion label (``""`` when none).
        seed: Seed sequence of the phrasing choices (e.g. ``[clip_seed(...), step]``).
        phrasings: The phrasing table (default: :func:`load_phrasings`).

    Returns:
        One sentence per AU in ascending AU order, then the global sentence.
    """
    phrasings = phrasings or load_phrasings()
    rng = np.random.default_rng(np.random.SeedSequence([int(s) % 2**32 for s in seed]))
    table = facs_table()
    ordered = [marks[au] for au in sorted(marks)]
    entries = [table.get(mark.au) for mark in ordered]
    sentences = [
        _local_clause(mark, entry, rng, phrasings) + "."
        for mark, entry in zip(ordered, entries, strict=True)
    ]
    sentences.append(_global_sentence(entries, emotion, rng, phrasings))
    return " ".join(sentences)


def describe_clip(row: Mapping[str, object], variant: int = 0) -> str:
    """The description target of a manifest row (or a clip's meta: ``au_raw``, ``aus``, ids).

    Args:
        row: ``dataset``, ``subject``, ``clip``, ``aus``; ``au_raw`` and ``emotion`` if known.
        variant: Mixed into the clip's seed (the training step), so a clip's phrasing varies.

    Raises:
        ValueError: ``aus`` is not a canonical AU list.
    """

    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None else str(value)

    raw = text("au_raw") or text("aus")
    marks = annotation_marks(raw, text("aus"))
    seed = clip_seed(text("dataset"), text("subject"), text("clip"))
    return describe(marks, text("emotion"), [seed, variant])


def printable(text: str) -> str:
    """Generated text made safe for one CSV cell and one report line.

    Control and format characters (a random model can emit a NUL byte) become spaces, runs of
    whitespace become one space, and the ends are stripped.
    """
    kept = (" " if unicodedata.category(char) in ("Cc", "Cf") else char for char in text)
    return " ".join("".join(kept).split())


@dataclass(frozen=True)
class ParsedExplanation:
    """What an explanation says, read back.

    Attributes:
        aus: Every AU it names (``AU<n>``).
        sides: AU -> the sides (``L``, ``R``) said in that AU's clause (AUs without one absent).
    """

    aus: frozenset[int]
    sides: Mapping[int, frozenset[str]]


def parse_explanation(text: str) -> ParsedExplanation:
    """Read the AUs named in an explanation and the side said of each.

    A clause runs from one ``AU<n>`` mention to the next; ``left``/``right`` in it are that AU's
    sides. Never raises: text without an AU mention names no AU.
    """
    mentions = list(_AU_MENTION.finditer(text or ""))
    sides: dict[int, set[str]] = {}
    for i, match in enumerate(mentions):
        end = mentions[i + 1].start() if i + 1 < len(mentions) else len(text)
        said = {word.lower() for word in _SIDE_MENTION.findall(text[match.end() : end])}
        letters = {letter for letter, word in SIDE_WORDS.items() if word in said}
        if letters:
            sides.setdefault(int(match.group(1)), set()).update(letters)
    return ParsedExplanation(
        frozenset(int(m.group(1)) for m in mentions),
        {au: frozenset(letters) for au, letters in sides.items()},
    )


def contradicted_sides(parsed: ParsedExplanation, marks: Mapping[int, AUMark]) -> list[int]:
    """AUs whose side in the explanation the annotation contradicts.

    The explanation says left or right of an annotated AU, and the annotation codes that AU
    bilateral (no side letter), or unilateral on the other side only. An asymmetric code
    without a side (``A12``) contradicts neither; an AU the annotation does not have is a wrong
    AU, not a wrong side.

    Returns:
        The AUs, ascending.
    """
    wrong = []
    for au, said in sorted(parsed.sides.items()):
        mark = marks.get(au)
        if mark is None:
            continue
        coded = {s for s in mark.sides if s in SIDE_WORDS}
        if coded and not said <= coded or not coded and "A" not in mark.sides:
            wrong.append(au)
    return wrong


def named_aus(texts: Iterable[str], aus: Sequence[int]) -> np.ndarray:
    """``[N, A]`` 0/1 matrix: whether each explanation names each AU of ``aus``."""
    rows = [[int(au in parse_explanation(text).aus) for au in aus] for text in texts]
    return np.asarray(rows, dtype=int).reshape(len(rows), len(aus))
