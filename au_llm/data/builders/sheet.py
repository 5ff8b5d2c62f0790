"""One builder for the label files of CASME, CAS(ME)^3 Part A, MMEW and 4DME.

The header row is searched for on every sheet (the first row with a subject and a filename
column, under any of the datasets' names: ``Subject``/``sub_ID``, ``Filename``/``fold_name``), so
sheet names and preambles do not matter. Clips are identified by subject + clip id, never by row
index, and so are the errata (:mod:`au_llm.data.errata`): each names its clip by subject,
``Filename`` and the value it replaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.formats import HEADER_ROLES, DatasetFormat, dataset_format
from au_llm.data.builders.long_formats import LongVideoFormat
from au_llm.data.errata import ERRATA_FIELDS, Errata, ErrataError, load_errata
from au_llm.data.errata_ledger import ClipErrata, LabelRow
from au_llm.data.manifest import ManifestError, id_problem
from au_llm.data.rows import (
    BAD_ROW,
    DUPLICATE,
    BuildReport,
    ClipLog,
    LabelClip,
    ManifestResult,
    count_frames,
    read_aus,
    read_label_clips,
    read_timing,
)
from au_llm.data.workbook import Cells, header_columns, header_name, read_sheets, row_cell

_KEY_FRAME = re.compile(r"\(\s*k\s*\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class LabelTable:
    """Role -> column index, and the data rows with their Excel row numbers."""

    columns: dict[str, int]
    rows: dict[int, Cells]


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
        for position, (number, values) in enumerate(rows):
            roles = {column: HEADER_ROLES.get(header_name(v)) for column, v in values.items()}
            if "subject" not in roles.values() or "clip" not in roles.values():
                continue
            columns = header_columns(roles)
            missing = [label for role, label in spec.columns.items() if role not in columns]
            if missing:
                raise ManifestError(
                    f"{path}: the header (sheet {title!r}, row {number}) has no "
                    f"{missing[0]!r} column; expected the {spec.title} columns "
                    f"{', '.join(spec.columns.values())}"
                )
            data = dict(rows[position + 1 :])
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

    def __init__(self, spec: DatasetFormat, root: Path, table: LabelTable) -> None:
        self.spec = spec
        self.root = root
        self.table = table

    def cell(self, row: int, role: str) -> object:
        return row_cell(self.table.rows.get(row, {}), self.table.columns, role)

    def au_cell(self, row: int, errata: ClipErrata, log: ClipLog) -> object:
        """The row's AU cell; 4DME parts marked ``(k)`` dropped unless an erratum replaces it."""
        cell = self.cell(row, "aus")
        erratum = errata.get("aus")
        if self.spec.key_frame_marks and (erratum is None or erratum.conditional):
            return _without_key_frames(cell, log)
        return cell

    def record(self, item: LabelClip, errata: ClipErrata, log: ClipLog) -> dict[str, object]:
        row, subject, filename, clip = (
            item.label.row,
            item.label.subject,
            item.label.filename,
            item.clip,
        )
        onset, apex, offset, estimated = read_timing(
            self.cell(row, "onset"), self.cell(row, "apex"), self.cell(row, "offset"), errata, log
        )
        emotion = cell_text(self.cell(row, "emotion")).strip()
        folder = self.spec.frames_folder(self.root, subject, clip, filename, emotion)
        n_frames = count_frames(folder, onset, offset, log)
        aus = read_aus(self.au_cell(row, errata, log), errata, log)
        if clip != filename:
            log.notes.append(f"recording {filename!r} holds several clips; clip id {clip!r}")
        return {
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


def _label_clips(spec: DatasetFormat, reader: _Reader) -> list[LabelClip]:
    """Every data row, identified, with its clip id; bad and repeated rows carry the reason.

    A CAS(ME)^3 clip whose subject and ``Filename`` repeat an earlier row's gets the id
    ``<Filename>2``, ``<Filename>3``, ... in row order, passing over every id that a row of the
    file already uses as its ``Filename``, so ids never collide.
    """
    rows = sorted(reader.table.rows)
    identities = {row: _identity(spec, reader, row) for row in rows}
    taken = {
        (subject, filename) for subject, filename, problem in identities.values() if not problem
    }
    clips: list[LabelClip] = []
    seen: dict[tuple[str, ...], int] = {}
    used: set[tuple[str, str]] = set()
    for row in rows:
        subject, filename, problem = identities[row]
        cells = {name: reader.cell(row, name) for name in ERRATA_FIELDS}
        label = LabelRow(row, subject, filename, cells)
        values = reader.table.rows[row]
        if problem is not None:
            clips.append(LabelClip(label, filename, values, (BAD_ROW, f"row has {problem}")))
            continue
        key: tuple[str, ...] = (subject, filename)
        if spec.shared_recordings:
            key += tuple(cell_text(reader.cell(row, role)).strip() for role in ("onset", "offset"))
        if key in seen:
            reason = f"clip listed again (first at row {seen[key]})"
            clips.append(LabelClip(label, filename, values, (DUPLICATE, reason)))
            continue
        seen[key] = row
        clip = filename
        if (subject, filename) in used:
            count = 2
            while {(subject, f"{filename}{count}")} & (taken | used):
                count += 1
            clip = f"{filename}{count}"
        used.add((subject, clip))
        clips.append(LabelClip(label, clip, values))
    return clips


def build_composite_dataset(
    name: str,
    root: Path,
    coding: Path,
    strict: bool = False,
    errata: Errata | None = None,
) -> ManifestResult:
    """Build the manifest of CASME, CAS(ME)^3 Part A, MMEW or 4DME.

    Args:
        name: ``casme``, ``casme3``, ``mmew`` or ``4dme`` (``smic`` is refused: no AU labels).
        root: The frames root (see :mod:`au_llm.data.builders.formats` for each layout).
        coding: The dataset's label file (.xlsx, or a .csv export).
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Errata; None loads ``data_manifests/errata.csv`` and ``errata_rows.csv``
            (``Errata.empty()``: none). Each names its clip and the value it replaces.

    Returns:
        The manifest with its report. A CAS(ME)^3 clip whose subject and ``Filename`` repeat an
        earlier row's gets the id ``<Filename>2``, ``<Filename>3``, ... in row order (an id that a
        row of the file uses as its ``Filename`` is passed over); a row that repeats subject,
        ``Filename``, onset and offset is skipped as a duplicate.

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
    except ErrataError as exc:
        raise ManifestError(str(exc)) from exc
    reader = _Reader(spec, root, find_table(spec, coding))
    report = BuildReport(coding, strict)
    return read_label_clips(report, _label_clips(spec, reader), errata, spec.name, reader.record)
