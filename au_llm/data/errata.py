"""Known errata of the annotation files, kept as data (``data_manifests/errata.csv``).

The table has the columns ``dataset,subject,clip,field,value,source,note``; ``field`` is one of
``onset``, ``apex``, ``offset`` (``value`` is a frame number) or ``aus`` (``value`` is an AU string
such as ``R12+R15``). Entries are keyed by dataset + subject + clip, with the subject written as in
the manifest (``sub04``, ``006``). How they are applied is decided by :mod:`au_llm.data.rows`:
a frame erratum only replaces a value that is missing or invalid in the file, an ``aus`` erratum
only resolves AU alternatives.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from au_llm.data.au_codes import parse_au_cell

logger = logging.getLogger(__name__)

ERRATA_COLUMNS = ("dataset", "subject", "clip", "field", "value", "source", "note")
ERRATA_FIELDS = ("onset", "apex", "offset", "aus")
FRAME_FIELDS = ("onset", "apex", "offset")
DEFAULT_ERRATA_PATH = Path(__file__).resolve().parents[2] / "data_manifests" / "errata.csv"
_REQUIRED = ("dataset", "subject", "clip", "field", "value")


class ErrataError(ValueError):
    """The errata table is unreadable or invalid; the message names the file and the row."""


@dataclass(frozen=True)
class Erratum:
    """One correction of one field of one clip.

    Attributes:
        dataset: ``casme2``, ``samm`` (lower case).
        subject: Subject id as in the manifest (``sub04``, ``006``).
        clip: Clip name (``Filename`` column), e.g. ``EP12_01f``.
        field: ``onset``, ``apex``, ``offset`` or ``aus``.
        value: Frame number (as text) or AU string.
        source: Where the correction comes from.
        note: Why it is needed.
    """

    dataset: str
    subject: str
    clip: str
    field: str
    value: str
    source: str = ""
    note: str = ""

    @property
    def frame(self) -> int:
        """The value as a frame number (frame fields only)."""
        return int(self.value)

    @property
    def origin(self) -> str:
        """A short label for notes, e.g. ``"erratum, MEB benchmark"``."""
        return f"erratum, {self.source}" if self.source else "erratum"


@dataclass(frozen=True)
class Errata:
    """A set of errata keyed by (dataset, subject, clip, field).

    Attributes:
        entries: (dataset, subject, clip, field) -> erratum.
        path: The file they were read from (None when empty or built in code).
    """

    entries: dict[tuple[str, str, str, str], Erratum] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def empty(cls) -> Errata:
        """Errata that correct nothing."""
        return cls({}, None)

    @classmethod
    def from_entries(cls, entries: list[Erratum], path: Path | None = None) -> Errata:
        """Build errata from a list; a repeated (dataset, subject, clip, field) is an error."""
        table: dict[tuple[str, str, str, str], Erratum] = {}
        for entry in entries:
            key = (entry.dataset, entry.subject, entry.clip, entry.field)
            if key in table:
                raise ErrataError(f"{path or 'errata'}: {'/'.join(key)} is listed twice")
            table[key] = entry
        return cls(table, path)

    def get(self, dataset: str, subject: str, clip: str, field: str) -> Erratum | None:
        """Return the erratum of one field of one clip, or None."""
        return self.entries.get((dataset.lower(), subject, clip, field))

    def __len__(self) -> int:
        return len(self.entries)


def _validated(raw: dict[str, str], path: Path, row: int) -> Erratum:
    values = {key: (raw.get(key) or "").strip() for key in ERRATA_COLUMNS}
    where = f"{path}, row {row}"
    for key in _REQUIRED:
        if not values[key]:
            raise ErrataError(f"{where}: column {key!r} is empty")
    kind = values["field"].lower()
    if kind not in ERRATA_FIELDS:
        raise ErrataError(
            f"{where}: field {values['field']!r} is not one of {', '.join(ERRATA_FIELDS)}"
        )
    if kind in FRAME_FIELDS and not values["value"].isdigit():
        raise ErrataError(f"{where}: {kind} value {values['value']!r} is not a frame number")
    if kind == "aus":
        parsed = parse_au_cell(values["value"])
        if parsed.warnings or not parsed.aus:
            problems = "; ".join(parsed.warnings) or "no AU"
            raise ErrataError(
                f"{where}: aus value {values['value']!r} is not a plain AU list ({problems})"
            )
    return Erratum(
        dataset=values["dataset"].lower(),
        subject=values["subject"],
        clip=values["clip"],
        field=kind,
        value=values["value"],
        source=values["source"],
        note=values["note"],
    )


def load_errata(path: Path | None = None) -> Errata:
    """Read an errata table.

    Args:
        path: A CSV with the columns of :data:`ERRATA_COLUMNS` (``source`` and ``note`` may be
            absent). None reads the repository's ``data_manifests/errata.csv``; when that file is
            absent (the package is installed elsewhere) nothing is loaded and a warning is logged.

    Returns:
        The errata.

    Raises:
        ErrataError: An explicit ``path`` is missing, or the file is invalid (unknown field,
            non-numeric frame, unreadable AU string, repeated entry, missing column); the message
            names the file and the row (the header is row 1).
    """
    if path is None:
        if not DEFAULT_ERRATA_PATH.is_file():
            logger.warning("errata table %s not found; no errata applied", DEFAULT_ERRATA_PATH)
            return Errata.empty()
        path = DEFAULT_ERRATA_PATH
    path = Path(path)
    if not path.is_file():
        raise ErrataError(f"{path}: errata table not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            missing = [name for name in _REQUIRED if name not in header]
            if missing:
                raise ErrataError(
                    f"{path}: missing column {missing[0]!r} (expected {', '.join(ERRATA_COLUMNS)})"
                )
            entries = [
                _validated(raw, path, reader.line_num)
                for raw in reader
                if any((value or "").strip() for value in raw.values() if isinstance(value, str))
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ErrataError(f"{path}: cannot read the errata table ({exc})") from exc
    return Errata.from_entries(entries, path)
