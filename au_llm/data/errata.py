"""Known errata of the annotation files, kept as data in one format.

The tables are ``data_manifests/errata.csv`` and ``data_manifests/errata_rows.csv``. Each
erratum names the clip it fixes and the value it replaces; the columns are
``dataset,subject,filename,field,old,value,source,note,row``:

* ``subject`` is the subject id as in the manifest (``sub04``, ``006``, ``spNO.1``) and
  ``filename`` the label file's ``Filename`` cell (for CAS(ME)^3 the recording, shared by
  several clips);
* ``field`` is ``onset``, ``apex``, ``offset`` (``value`` a frame number) or ``aus`` (``value`` an
  AU string such as ``R12+R15``);
* ``old`` is the value the erratum replaces, as the file has it (``/``, ``5127``,
  ``(R6 or R12)+R15``), or a class of values: :data:`OLD_INVALID` (frame fields: a value the
  reading rules cannot use: missing, not a number, an apex outside onset..offset, an onset after
  the offset) or :data:`OLD_ALTERNATIVES` (``aus``: a cell naming alternative AUs);
* ``row`` (optional) is the row of the label file the erratum's source keys it by, as Excel shows
  it. An entry whose clip could not be established (MEB keys some corrections by row only) leaves
  ``subject``, ``filename`` and ``old`` empty and gives ``row``: it is loaded, never applied, and
  every build reports it with what that row of the file holds.

Which clip an erratum reaches and what becomes of it is decided by
:mod:`au_llm.data.errata_ledger`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text, parse_au_cell

logger = logging.getLogger(__name__)

ERRATA_COLUMNS = (
    "dataset",
    "subject",
    "filename",
    "field",
    "old",
    "value",
    "source",
    "note",
    "row",
)
ERRATA_FIELDS = ("onset", "apex", "offset", "aus")
FRAME_FIELDS = ("onset", "apex", "offset")
OLD_INVALID = "<invalid>"
OLD_ALTERNATIVES = "<alternatives>"
_DATA = Path(__file__).resolve().parents[2] / "data_manifests"
DEFAULT_ERRATA_PATHS = (_DATA / "errata.csv", _DATA / "errata_rows.csv")
_REQUIRED = ("dataset", "subject", "filename", "field", "old", "value")
_IDENTITY = ("subject", "filename", "old")


class ErrataError(ValueError):
    """The errata table is unreadable or invalid; the message names the file and the row."""


def _plain_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Erratum:
    """One correction of one field of one clip.

    Attributes:
        dataset: Manifest dataset name (``casme2``, ``samm``, ``casme3``, ...; lower case).
        subject: Subject id as in the manifest; ``""`` when the clip is not established.
        filename: The ``Filename`` cell of the clip; ``""`` when not established.
        field: ``onset``, ``apex``, ``offset`` or ``aus``.
        old: The value replaced, as the file has it, or :data:`OLD_INVALID` /
            :data:`OLD_ALTERNATIVES`; ``""`` when not established.
        value: Frame number (as text) or AU string.
        source: Where the correction comes from.
        note: Why it is needed.
        row: The label file's row its source keys it by (Excel numbering), or None.
        table: The name of the errata file it was read from (``errata.csv``), or ``""``.
        line: Its row in that file (the header is row 1), or None.
    """

    dataset: str
    subject: str
    filename: str
    field: str
    old: str
    value: str
    source: str = ""
    note: str = ""
    row: int | None = None
    table: str = ""
    line: int | None = None

    @property
    def where(self) -> str:
        """The table and row it was read from (``errata.csv row 3``), or ``""``."""
        return f"{self.table} row {self.line}" if self.table else ""

    @property
    def named(self) -> bool:
        """Whether the erratum names its clip and the value it replaces."""
        return bool(self.subject and self.filename and self.old)

    @property
    def conditional(self) -> bool:
        """Whether ``old`` is a class of values (invalid frames, AU alternatives)."""
        return self.old in (OLD_INVALID, OLD_ALTERNATIVES)

    @property
    def frame(self) -> int:
        """The value as a frame number (frame fields only)."""
        return int(self.value)

    @property
    def origin(self) -> str:
        """A short label for notes, e.g. ``"erratum errata.csv row 3, MEB benchmark"``."""
        label = f"erratum {self.where}" if self.where else "erratum"
        return f"{label}, {self.source}" if self.source else label

    def describe(self) -> str:
        """``casme sub01/EP01_5 offset '98' -> 100`` (or ``casme row 42 offset -> 100``)."""
        clip = f"{self.subject}/{self.filename}" if self.named else f"row {self.row}"
        old = f" {self.old!r}" if self.old else ""
        return f"{self.dataset} {clip} {self.field}{old} -> {self.value or '?'}"

    def accepts(self, cell: object) -> bool:
        """Whether a clip's cell may be the value this erratum replaces.

        An exact ``old`` must equal the cell's text (spaces around it ignored; ``46`` equals
        ``46.0``). A class of values accepts every cell here: whether the cell belongs to it is
        decided while the clip is read.
        """
        if self.conditional:
            return True
        text = cell_text(cell).strip()
        if text == self.old:
            return True
        if self.field not in FRAME_FIELDS:
            return False
        number, expected = _plain_number(text), _plain_number(self.old)
        return number is not None and number == expected


@dataclass(frozen=True)
class Errata:
    """A set of errata.

    Attributes:
        entries: The errata, in table order.
        paths: The files they were read from (empty when built in code).
    """

    entries: tuple[Erratum, ...] = ()
    paths: tuple[Path, ...] = ()

    @classmethod
    def empty(cls) -> Errata:
        """Errata that correct nothing."""
        return cls()

    @classmethod
    def from_entries(cls, entries: list[Erratum], paths: tuple[Path, ...] = ()) -> Errata:
        """Build errata from a list; the same value of one clip listed twice is an error."""
        seen: dict[tuple[object, ...], Erratum] = {}
        for entry in entries:
            if entry.named:
                key: tuple[object, ...] = (entry.dataset, entry.subject, entry.filename)
                key += (entry.field, entry.old)
            else:
                key = (entry.dataset, entry.row, entry.field)
            if key in seen:
                first = seen[key]
                raise ErrataError(
                    f"{entry.where or 'errata'}: {entry.describe()} is listed again (first at "
                    f"{first.where or first.describe()})"
                )
            seen[key] = entry
        return cls(tuple(entries), paths)

    def of_dataset(self, dataset: str) -> tuple[Erratum, ...]:
        """The errata of one dataset, in table order."""
        name = dataset.lower()
        return tuple(entry for entry in self.entries if entry.dataset == name)

    def __add__(self, other: Errata) -> Errata:
        return Errata.from_entries([*self.entries, *other.entries], self.paths + other.paths)

    def __len__(self) -> int:
        return len(self.entries)


def _check_value(kind: str, value: str, where: str) -> None:
    if kind in FRAME_FIELDS and not value.isdigit():
        raise ErrataError(f"{where}: {kind} value {value!r} is not a frame number")
    if kind == "aus":
        parsed = parse_au_cell(value)
        if parsed.warnings or not parsed.aus:
            problems = "; ".join(parsed.warnings) or "no AU"
            raise ErrataError(f"{where}: aus value {value!r} is not a plain AU list ({problems})")


def _check_old(kind: str, old: str, where: str) -> None:
    if old == OLD_INVALID and kind not in FRAME_FIELDS:
        raise ErrataError(f"{where}: old {OLD_INVALID} applies to onset, apex and offset only")
    if old == OLD_ALTERNATIVES and kind != "aus":
        raise ErrataError(f"{where}: old {OLD_ALTERNATIVES} applies to aus only")


def _validated(raw: dict[str, str], path: Path, line: int) -> Erratum:
    values = {key: (raw.get(key) or "").strip() for key in ERRATA_COLUMNS}
    message_where = f"{path}, row {line}"
    for key in ("dataset", "field"):
        if not values[key]:
            raise ErrataError(f"{message_where}: column {key!r} is empty")
    kind = values["field"].lower()
    if kind not in ERRATA_FIELDS:
        raise ErrataError(
            f"{message_where}: field {values['field']!r} is not one of {', '.join(ERRATA_FIELDS)}"
        )
    if values["row"] and (not values["row"].isdigit() or int(values["row"]) < 2):
        raise ErrataError(f"{message_where}: row {values['row']!r} is not a data row number (>= 2)")
    row = int(values["row"]) if values["row"] else None
    given = [key for key in _IDENTITY if values[key]]
    if not given:
        if row is None:
            raise ErrataError(
                f"{message_where}: the erratum names no clip (subject, filename and old are "
                "empty) and no row; give the clip, or the row its source keys it by"
            )
    elif len(given) < len(_IDENTITY):
        missing = next(key for key in _IDENTITY if not values[key])
        raise ErrataError(
            f"{message_where}: column {missing!r} is empty; an erratum names its clip "
            f"(subject, filename) and the value it replaces (old: the value as the file has it, "
            f"{OLD_INVALID} or {OLD_ALTERNATIVES})"
        )
    else:
        _check_old(kind, values["old"], message_where)
        if not values["value"]:
            raise ErrataError(f"{message_where}: column 'value' is empty")
    if values["value"]:
        _check_value(kind, values["value"], message_where)
    return Erratum(
        dataset=values["dataset"].lower(),
        subject=values["subject"],
        filename=values["filename"],
        field=kind,
        old=values["old"],
        value=values["value"],
        source=values["source"],
        note=values["note"],
        row=row,
        table=path.name,
        line=line,
    )


def _read_table(path: Path) -> Errata:
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
    return Errata.from_entries(entries, (path,))


def load_errata(path: Path | None = None) -> Errata:
    """Read an errata table.

    Args:
        path: A CSV with the columns of :data:`ERRATA_COLUMNS` (``source``, ``note`` and ``row``
            may be absent). None reads the repository's ``data_manifests/errata.csv`` and
            ``data_manifests/errata_rows.csv``; a file of those that is absent (the package is
            installed elsewhere) is passed over with a warning.

    Returns:
        The errata.

    Raises:
        ErrataError: An explicit ``path`` is missing, or a file is invalid (unknown field, a value
            that is not a frame number or a plain AU list, a clip named without the value it
            replaces, an entry listed twice, a missing column); the message names the file and
            the row (the header is row 1).
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ErrataError(f"{path}: errata table not found")
        return _read_table(path)
    errata = Errata.empty()
    for default in DEFAULT_ERRATA_PATHS:
        if default.is_file():
            errata = errata + _read_table(default)
        else:
            logger.warning("errata table %s not found; its errata are not applied", default)
    return errata
