"""Errata that MEB gives by row of a label file (``data_manifests/errata_rows.csv``).

MEB (github:tvaranka/meb, ``meb/datasets/datasets.py``) corrects CASME, CAS(ME)^3 Part A, MMEW and
4DME by the pandas row index of their label files, without naming the clip. They are kept here as
data, keyed by the row as Excel shows it (the header is row 1, so MEB's index ``i`` is row
``i + 2``). The table has the columns ``dataset,row,field,value,source,note``; ``field`` is
``onset``, ``apex`` or ``offset`` (``value`` a frame number), ``aus`` (an AU string) or
``aus_row`` (``value`` is another row whose AU cell this row takes: MEB swaps two rows of 4DME).

Row errata are applied exactly like clip errata (:mod:`au_llm.data.rows`): a frame erratum only
replaces a value that is missing or invalid in the file, and the clip's notes say when one is not
applied. A clip erratum of ``data_manifests/errata.csv`` for the same field wins.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from au_llm.data.errata import FRAME_FIELDS, ErrataError, Erratum

ROW_ERRATA_COLUMNS = ("dataset", "row", "field", "value", "source", "note")
ROW_FIELDS = (*FRAME_FIELDS, "aus", "aus_row")
DEFAULT_ROW_ERRATA_PATH = Path(__file__).resolve().parents[2] / "data_manifests" / "errata_rows.csv"


@dataclass(frozen=True)
class RowErrata:
    """Errata keyed by (dataset, Excel row, field).

    Attributes:
        entries: (dataset, row, field) -> erratum (its ``subject`` is ``""`` and ``clip`` is
            ``row N``).
        path: The file they were read from (None when built in code).
    """

    entries: dict[tuple[str, int, str], Erratum] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def empty(cls) -> RowErrata:
        """Row errata that correct nothing."""
        return cls({}, None)

    def get(self, dataset: str, row: int, name: str) -> Erratum | None:
        """The erratum of one field of one row, or None."""
        return self.entries.get((dataset.lower(), row, name))

    def __len__(self) -> int:
        return len(self.entries)


def _entry(raw: dict[str, str], path: Path, line: int) -> tuple[tuple[str, int, str], Erratum]:
    values = {key: (raw.get(key) or "").strip() for key in ROW_ERRATA_COLUMNS}
    where = f"{path}, row {line}"
    for key in ("dataset", "row", "field", "value"):
        if not values[key]:
            raise ErrataError(f"{where}: column {key!r} is empty")
    if not values["row"].isdigit() or int(values["row"]) < 2:
        raise ErrataError(f"{where}: row {values['row']!r} is not a data row number (>= 2)")
    kind = values["field"].lower()
    if kind not in ROW_FIELDS:
        raise ErrataError(
            f"{where}: field {values['field']!r} is not one of {', '.join(ROW_FIELDS)}"
        )
    if kind != "aus" and not values["value"].isdigit():
        raise ErrataError(f"{where}: {kind} value {values['value']!r} is not a number")
    dataset, row = values["dataset"].lower(), int(values["row"])
    erratum = Erratum(
        dataset=dataset,
        subject="",
        clip=f"row {row}",
        field=kind,
        value=values["value"],
        source=values["source"],
        note=values["note"],
    )
    return (dataset, row, kind), erratum


def load_row_errata(path: Path | None = None) -> RowErrata:
    """Read a row errata table.

    Args:
        path: A CSV with the columns of :data:`ROW_ERRATA_COLUMNS`; None reads the repository's
            ``data_manifests/errata_rows.csv`` (nothing when the package is installed elsewhere).

    Raises:
        ErrataError: A missing explicit file, or an invalid or repeated entry (naming the row).
    """
    if path is None:
        if not DEFAULT_ROW_ERRATA_PATH.is_file():
            return RowErrata.empty()
        path = DEFAULT_ROW_ERRATA_PATH
    path = Path(path)
    if not path.is_file():
        raise ErrataError(f"{path}: row errata table not found")
    entries: dict[tuple[str, int, str], Erratum] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for raw in reader:
                if not any(
                    (value or "").strip() for value in raw.values() if isinstance(value, str)
                ):
                    continue
                key, erratum = _entry(raw, path, reader.line_num)
                if key in entries:
                    raise ErrataError(f"{path}, row {reader.line_num}: {key} is listed twice")
                entries[key] = erratum
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ErrataError(f"{path}: cannot read the row errata table ({exc})") from exc
    return RowErrata(entries, path)
