"""One builder for the label files of CASME, CAS(ME)^3 Part A, MMEW and 4DME.

The header row is searched for on every sheet (the first row with a subject and a filename
column, under any of the datasets' names: ``Subject``/``sub_ID``, ``Filename``/``fold_name``), so
sheet names and preambles do not matter. Clips are identified by subject + clip id, never by row
index; only MEB's hand corrections, which MEB itself keys by row, are looked up by row
(:mod:`au_llm.data.row_errata`), after the clip errata of ``data_manifests/errata.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.formats import HEADER_ROLES, DatasetFormat, dataset_format
from au_llm.data.builders.long_formats import LongVideoFormat
from au_llm.data.errata import Errata, ErrataError, Erratum, load_errata
from au_llm.data.manifest import ManifestError, id_problem
from au_llm.data.row_errata import RowErrata, load_row_errata
from au_llm.data.rows import (
    BAD_ROW,
    DUPLICATE,
    BuildReport,
    ClipLog,
    ManifestResult,
    SkipClipError,
    count_frames,
    read_aus,
    read_timing,
)
from au_llm.data.spreadsheets import header_columns, header_name, read_sheets, row_cell

_KEY_FRAME = re.compile(r"\(\s*k\s*\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class LabelTable:
    """Role -> column index, and the data rows with their Excel row numbers."""

    columns: dict[str, int]
    rows: dict[int, tuple[object, ...]]


def find_table(
    spec: DatasetFormat | LongVideoFormat, path: Path, *, empty_ok: bool = False
) -> LabelTable:
    """The label table: the first header row (any sheet) followed by data rows.

    Args:
        spec: The dataset's format (its required columns and title, for messages).
        path: The label file.
        empty_ok: A header row with no data rows below gives an empty table (else an error).

    Raises:
        ManifestError: No header row, a required column missing, or no data rows.
    """
    for title, rows in read_sheets(path):
        for index, values in enumerate(rows):
            roles = [HEADER_ROLES.get(header_name(value)) for value in values]
            if "subject" not in roles or "clip" not in roles:
                continue
            columns = header_columns(roles)
            missing = [label for role, label in spec.columns.items() if role not in columns]
            if missing:
                raise ManifestError(
                    f"{path}: the header (sheet {title!r}, row {index + 1}) has no "
                    f"{missing[0]!r} column; expected the {spec.title} columns "
                    f"{', '.join(spec.columns.values())}"
                )
            data = {
                number + 1: rows[number]
                for number in range(index + 1, len(rows))
                if any(cell_text(value).strip() for value in rows[number])
            }
            if not data and not empty_ok:
                raise ManifestError(
                    f"{path}: the header row of sheet {title!r} is followed by no data rows; "
                    "expected one row per clip below the header"
                )
            return LabelTable(columns, data)
    names = " and ".join(f"{spec.columns[r]!r}" for r in ("subject", "clip"))
    raise ManifestError(f"{path}: no header row found (expected a row with {names} cells)")


def _without_key_frames(cell: object, log: ClipLog) -> object:
    """Drop the AU parts marked ``(k)`` of a 4DME cell (MEB counts them absent); notes say so."""
    text = cell_text(cell)
    parts = text.split("+")
    dropped = [part.strip() for part in parts if _KEY_FRAME.search(part)]
    if not dropped:
        return cell
    log.notes.append(f"AU parts marked (k) not counted: {', '.join(dropped)}")
    return "+".join(part for part in parts if not _KEY_FRAME.search(part))


class _Reader:
    """Reads the rows of one label file into manifest records."""

    def __init__(
        self, spec: DatasetFormat, root: Path, table: LabelTable, errata: Errata, rows: RowErrata
    ) -> None:
        self.spec = spec
        self.root = root
        self.table = table
        self.errata = errata
        self.row_errata = rows

    def cell(self, row: int, role: str) -> object:
        return row_cell(self.table.rows.get(row, ()), self.table.columns, role)

    def lookup(self, subject: str, clip: str, row: int, name: str) -> Erratum | None:
        found = self.errata.get(self.spec.name, subject, clip, name)
        return found or self.row_errata.get(self.spec.name, row, name)

    def au_cell(self, row: int, log: ClipLog) -> object:
        """The row's AU cell, or the cell of the row an ``aus_row`` erratum names."""
        swap = self.row_errata.get(self.spec.name, row, "aus_row")
        cell = self.cell(row, "aus")
        if swap is not None:
            if swap.frame not in self.table.rows:
                raise SkipClipError(
                    BAD_ROW, f"erratum aus_row names row {swap.frame}, which holds no clip"
                )
            cell = self.cell(swap.frame, "aus")
            log.notes.append(f"AU cell of row {swap.frame} used ({swap.origin}: {swap.note})")
        return _without_key_frames(cell, log) if self.spec.key_frame_marks else cell

    def record(self, row: int, subject: str, clip: str, filename: str) -> tuple[dict, ClipLog]:
        log = ClipLog()

        def lookup(name: str) -> Erratum | None:
            return self.lookup(subject, clip, row, name)

        onset, apex, offset, estimated = read_timing(
            self.cell(row, "onset"), self.cell(row, "apex"), self.cell(row, "offset"), lookup, log
        )
        emotion = cell_text(self.cell(row, "emotion")).strip()
        folder = self.spec.frames_folder(self.root, subject, clip, filename, emotion)
        n_frames = count_frames(folder, onset, offset, log)
        raw_aus = self.au_cell(row, log)
        aus = read_aus(raw_aus, lookup("aus"), log)
        if clip != filename:
            log.notes.append(f"recording {filename!r} holds several clips; clip id {clip!r}")
        record = {
            "dataset": self.spec.name,
            "subject": subject,
            "clip": clip,
            "frames_dir": str(folder),
            "video": "",
            "onset": onset,
            "apex": apex,
            "offset": offset,
            "n_frames": n_frames,
            "fps": self.spec.fps,
            "au_raw": cell_text(self.cell(row, "aus")),
            "aus": aus,
            "emotion": emotion,
            "apex_estimated": estimated,
            "notes": "; ".join(log.notes),
        }
        return record, log


def _identity(spec: DatasetFormat, reader: _Reader, row: int) -> tuple[str, str, str | None]:
    """(subject id, filename, problem or None) of one row."""
    raw = reader.cell(row, "subject")
    subject = spec.subject_id(raw)
    filename = cell_text(reader.cell(row, "clip")).strip()
    problems = []
    if subject is None:
        problems.append("no subject")
    elif id_problem("Subject", subject) is not None:
        problems.append(f"subject {subject!r} with a path separator or a control character")
    if not filename:
        problems.append("no filename")
    elif id_problem("Filename", filename) is not None:
        problems.append(f"Filename {filename!r} with a path separator or a control character")
    return subject or "", filename, "; ".join(problems) or None


def build_composite_dataset(
    name: str,
    root: Path,
    coding: Path,
    strict: bool = False,
    errata: Errata | None = None,
    row_errata: RowErrata | None = None,
) -> ManifestResult:
    """Build the manifest of CASME, CAS(ME)^3 Part A, MMEW or 4DME.

    Args:
        name: ``casme``, ``casme3``, ``mmew`` or ``4dme`` (``smic`` is refused: no AU labels).
        root: The frames root (see :mod:`au_llm.data.builders.formats` for each layout).
        coding: The dataset's label file (.xlsx, or a .csv export).
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Clip errata; None loads ``data_manifests/errata.csv`` (``Errata.empty()``: none).
        row_errata: MEB's row errata; None loads ``data_manifests/errata_rows.csv``
            (``RowErrata.empty()``: none).

    Returns:
        The manifest with its report. A CAS(ME)^3 clip whose subject and ``Filename`` repeat an
        earlier row's gets the id ``<Filename>2``, ``<Filename>3``, ... in row order; a row that
        repeats subject, ``Filename``, onset and offset is skipped as a duplicate.

    Raises:
        ManifestError: Unknown dataset, SMIC, unreadable or missing files, no header row, invalid
            errata, or any problem when strict.
    """
    spec = dataset_format(name)
    root, coding = Path(root).resolve(), Path(coding)
    if not coding.is_file():
        raise ManifestError(f"{coding}: annotation file not found")
    if not root.is_dir():
        raise ManifestError(f"{root}: frames root folder not found (for {coding})")
    try:
        errata = load_errata() if errata is None else errata
        row_errata = load_row_errata() if row_errata is None else row_errata
    except ErrataError as exc:
        raise ManifestError(str(exc)) from exc
    table = find_table(spec, coding)
    reader = _Reader(spec, root, table, errata, row_errata)
    report = BuildReport(coding, strict)
    records: list[dict[str, object]] = []
    seen: dict[tuple[str, ...], int] = {}
    repeats: dict[tuple[str, str], int] = {}
    for row in sorted(table.rows):
        subject, filename, problem = _identity(spec, reader, row)
        if problem is not None:
            report.skip(BAD_ROW, f"row has {problem}", subject, filename, row)
            continue
        key: tuple[str, ...] = (subject, filename)
        if spec.shared_recordings:
            timing = ("onset", "offset")
            key += tuple(cell_text(reader.cell(row, role)).strip() for role in timing)
        if key in seen:
            reason = f"clip listed again (first at row {seen[key]})"
            report.skip(DUPLICATE, reason, subject, filename, row)
            continue
        seen[key] = row
        clip = filename
        if spec.shared_recordings:
            count = repeats.get((subject, filename), 0) + 1
            repeats[(subject, filename)] = count
            clip = filename if count == 1 else f"{filename}{count}"
        try:
            record, log = reader.record(row, subject, clip, filename)
        except SkipClipError as skip:
            report.skip(skip.kind, skip.reason, subject, clip, row)
            continue
        for warning in log.warnings:
            report.warn(warning, subject, clip, row)
        records.append(record)
    return report.result(records)
