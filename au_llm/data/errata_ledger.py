"""Which clip of one label file each erratum reaches, and what becomes of it.

Before a label file's clips are read, :class:`ErrataLedger` matches every erratum of the dataset
(:mod:`au_llm.data.errata`) to the file's rows. An erratum is kept for a clip only where subject,
``Filename`` and the value it replaces all match and exactly one clip matches; otherwise it is
skipped, with the reason: it names no clip (with what the row its source names holds), its clip
is not in the file, the file's value differs from the one it expects, or it matches several
clips. While a clip is read (:mod:`au_llm.data.rows`) its :class:`ClipErrata` records whether
each erratum was applied or declined (an erratum for an invalid value finds a valid one). The
build's summary counts the errata applied and lists those skipped.

Nothing here depends on a row's position but the hint for an erratum that names no clip: errata
never reach a clip by row. A dataset annotated in several label files (CAS(ME)^3's micro- and
macro-expression files of long videos) has its rows matched together, each with its file's name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from au_llm.data.au_codes import cell_text
from au_llm.data.errata import Errata, Erratum

LEFT_OUT = "its clip was left out (see the skipped clips)"


@dataclass(frozen=True)
class LabelRow:
    """One clip row of a label file, as the errata see it.

    Attributes:
        row: Row number as Excel shows it.
        subject: Subject id.
        filename: The ``Filename`` cell.
        cells: Field (``onset``, ``apex``, ``offset``, ``aus``) -> the cell as read.
        source: The label file's name where a dataset has several; ``""`` otherwise.
    """

    row: int
    subject: str
    filename: str
    cells: Mapping[str, object]
    source: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """The row's identity among the rows of every label file of the dataset."""
        return self.source, self.row

    @property
    def where(self) -> str:
        """``row 12``, or ``<file> row 12`` where the dataset has several label files."""
        return f"{self.source} row {self.row}" if self.source else f"row {self.row}"


@dataclass
class ClipErrata:
    """The errata matched to one clip, and what became of each while the clip was read.

    Attributes:
        found: Field -> the erratum that names this clip's value of it.
        used: Errata applied.
        declined: Erratum -> why it was not applied.
    """

    found: dict[str, Erratum] = field(default_factory=dict)
    used: list[Erratum] = field(default_factory=list)
    declined: dict[Erratum, str] = field(default_factory=dict)

    def get(self, name: str) -> Erratum | None:
        """The erratum of field ``name``, or None."""
        return self.found.get(name)

    def apply(self, erratum: Erratum) -> None:
        """Record that ``erratum`` was applied."""
        self.used.append(erratum)

    def decline(self, erratum: Erratum, reason: str) -> None:
        """Record that ``erratum`` was not applied, and why."""
        self.declined[erratum] = reason


def _shown(cell: object) -> str:
    return repr(cell_text(cell).strip())


def _rows(items: Sequence[LabelRow]) -> str:
    """``rows 2, 3`` (``ME.xlsx row 2, MaE.xlsx row 3`` across several label files)."""
    if any(item.source for item in items):
        return ", ".join(item.where for item in items)
    return f"rows {', '.join(str(item.row) for item in items)}"


class ErrataLedger:
    """The errata of one dataset matched to the clips of one label file.

    Args:
        errata: All errata (those of other datasets are ignored).
        dataset: The manifest dataset name.
        rows: The clip rows to be read (not the skipped ones).
    """

    def __init__(self, errata: Errata, dataset: str, rows: Sequence[LabelRow]) -> None:
        self.entries = errata.of_dataset(dataset)
        self.rows = {item.row: item for item in rows}
        self.skipped: dict[Erratum, str] = {}
        self.row_of: dict[Erratum, tuple[str, int]] = {}
        self.found: dict[tuple[str, int], dict[str, Erratum]] = defaultdict(dict)
        self.clips: dict[tuple[str, int], ClipErrata] = {}
        by_clip: dict[tuple[str, str], list[LabelRow]] = defaultdict(list)
        for item in rows:
            by_clip[(item.subject, item.filename)].append(item)
        labels = {item.key: item for item in rows}
        claims: dict[tuple[tuple[str, int], str], list[Erratum]] = defaultdict(list)
        for erratum in self.entries:
            found = self._match(erratum, by_clip)
            if isinstance(found, str):
                self.skipped[erratum] = found
            else:
                claims[(found.key, erratum.field)].append(erratum)
        for (key, name), errata_here in claims.items():
            if len(errata_here) > 1:
                names = ", ".join(erratum.where or erratum.describe() for erratum in errata_here)
                where = labels[key].where
                for erratum in errata_here:
                    self.skipped[erratum] = f"several errata name {name} of {where} ({names})"
                continue
            self.row_of[errata_here[0]] = key
            self.found[key][name] = errata_here[0]

    def _hint(self, row: int | None, fields: Sequence[str]) -> str:
        """What a row that an erratum's source names holds in this file."""
        item = self.rows.get(row) if row is not None else None
        if item is None:
            return f"row {row} of this file holds no clip read here"
        cells = ", ".join(f"{name} {_shown(item.cells.get(name))}" for name in fields)
        return f"row {row} of this file holds {item.subject}/{item.filename} with {cells}"

    def _match(
        self, erratum: Erratum, by_clip: Mapping[tuple[str, str], list[LabelRow]]
    ) -> LabelRow | str:
        """The one row ``erratum`` names, or why it names none."""
        if not erratum.named:
            return (
                f"names no clip, only row {erratum.row}; {self._hint(erratum.row, [erratum.field])}"
            )
        candidates = by_clip.get((erratum.subject, erratum.filename), [])
        if not candidates:
            return f"no clip {erratum.subject}/{erratum.filename} in this file"
        matching = [item for item in candidates if erratum.accepts(item.cells.get(erratum.field))]
        if not matching:
            found = ", ".join(
                f"{_shown(item.cells.get(erratum.field))} ({item.where})" for item in candidates
            )
            return f"expects {erratum.field} {erratum.old!r}, the file has {found}"
        if len(matching) > 1:
            return (
                f"matches {len(matching)} clips ({_rows(matching)}); give the exact "
                f"{erratum.field} it replaces"
            )
        return matching[0]

    def clip(self, label: LabelRow) -> ClipErrata:
        """The errata of the clip of ``label`` (read once per clip)."""
        self.clips[label.key] = ClipErrata(dict(self.found.get(label.key, {})))
        return self.clips[label.key]

    def report(self) -> tuple[int, int, list[str]]:
        """(errata applied, errata skipped, one line per skipped erratum or row).

        Errata that name no clip are grouped by the row their source names, with what that row
        of this file holds; the others get a line each with the reason.
        """
        applied, skipped = self.outcome()
        lines: list[str] = []
        unnamed: dict[int | None, list[Erratum]] = defaultdict(list)
        for erratum, reason in skipped:
            if erratum.named:
                lines.append(f"{erratum.where}: {erratum.describe()}: {reason}")
            else:
                unnamed[erratum.row].append(erratum)
        for row, group in unnamed.items():
            fixes = ", ".join(f"{erratum.field} -> {erratum.value or '?'}" for erratum in group)
            tables: dict[str, list[str]] = defaultdict(list)
            for erratum in group:
                tables[erratum.table].append(str(erratum.line))
            wheres = "; ".join(
                f"{table} row{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
                for table, numbers in tables.items()
            )
            hint = self._hint(row, list(dict.fromkeys(erratum.field for erratum in group)))
            lines.append(
                f"{wheres}: row {row} ({fixes}) names no clip, so it is never applied; {hint}"
            )
        return len(applied), len(skipped), lines

    def outcome(self) -> tuple[list[Erratum], list[tuple[Erratum, str]]]:
        """(errata applied, errata skipped with the reason), in table order."""
        applied: list[Erratum] = []
        skipped: list[tuple[Erratum, str]] = []
        for erratum in self.entries:
            if erratum in self.skipped:
                skipped.append((erratum, self.skipped[erratum]))
                continue
            clip = self.clips.get(self.row_of[erratum])
            if clip is not None and erratum in clip.used:
                applied.append(erratum)
            elif clip is not None and erratum in clip.declined:
                skipped.append((erratum, clip.declined[erratum]))
            else:
                skipped.append((erratum, LEFT_OUT))
        return applied, skipped
