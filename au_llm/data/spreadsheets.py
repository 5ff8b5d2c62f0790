"""CASME II and SAMM annotation spreadsheets (``.xlsx``, or a ``.csv`` export) -> manifests.

The header row is searched for (the first row with ``Subject`` and ``Filename`` cells), so
preambles and extra sheets do not matter. Errata (``data_manifests/errata.csv``) repair known
mistakes of the files: each names its clip and the value it replaces (:mod:`au_llm.data.errata`,
:mod:`au_llm.data.errata_ledger`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
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

DATASET_FPS = {"casme2": 200.0, "samm": 200.0}
_HEADER_ROLES = {
    "subject": "subject",
    "filename": "clip",
    "onsetframe": "onset",
    "onset": "onset",
    "apexframe": "apex",
    "apex": "apex",
    "offsetframe": "offset",
    "offset": "offset",
    "actionunits": "aus",
    "actionunit": "aus",
    "aus": "aus",
    "estimatedemotion": "emotion",
    "emotion": "emotion",
}
_SHEET_REQUIRED = {
    "subject": "Subject",
    "clip": "Filename",
    "onset": "OnsetFrame",
    "offset": "OffsetFrame",
    "aus": "Action Units",
}
_SUBJECT_NUMBER = re.compile(r"^(?:sub)?\s*0*(\d+)$", re.IGNORECASE)


def subject_id(dataset: str, value: object) -> str | None:
    """Return the folder name of a subject: CASME II ``1`` -> ``sub01``, SAMM ``6`` -> ``006``.

    Args:
        dataset: ``casme2`` or ``samm``.
        value: The ``Subject`` cell (int, float, or text such as ``"sub01"`` / ``"006"``).

    Returns:
        The subject id, or None when the cell holds no subject number.
    """
    match = _SUBJECT_NUMBER.match(cell_text(value).strip())
    if match is None:
        return None
    number = int(match.group(1))
    return f"sub{number:02d}" if dataset == "casme2" else f"{number:03d}"


@dataclass(frozen=True)
class _Sheet:
    """The table part of an annotation file: role -> column index, rows with Excel row numbers."""

    columns: dict[str, int]
    rows: list[tuple[int, Cells]]


def _sheet_table(path: Path, title: str, rows: list[tuple[int, Cells]]) -> _Sheet | None:
    """The table of one sheet from its header row, or None when the sheet has no header row."""
    for position, (number, values) in enumerate(rows):
        names = {column: header_name(value) for column, value in values.items()}
        if "subject" not in names.values() or "filename" not in names.values():
            continue
        columns = header_columns({c: _HEADER_ROLES.get(name) for c, name in names.items()})
        missing = [label for role, label in _SHEET_REQUIRED.items() if role not in columns]
        if missing:
            raise ManifestError(
                f"{path}: the header (sheet {title!r}, row {number}) has no "
                f"{missing[0]!r} column; expected the columns "
                f"{', '.join(_SHEET_REQUIRED.values())}"
            )
        return _Sheet(columns, rows[position + 1 :])
    return None


def _find_table(path: Path) -> _Sheet:
    """Locate the annotation table: the first header row followed by at least one data row.

    A header row has ``Subject`` and ``Filename`` cells; every sheet is searched.

    Raises:
        ManifestError: No sheet has a header row, or no header row is followed by data rows.
    """
    empty = []
    for title, rows in read_sheets(path):
        table = _sheet_table(path, title, rows)
        if table is None:
            continue
        if table.rows:
            return table
        empty.append(repr(title))
    if empty:
        raise ManifestError(
            f"{path}: the header row of sheet {', '.join(empty)} is followed by no data rows; "
            "expected one row per clip below the header"
        )
    raise ManifestError(
        f"{path}: no header row found (expected a row with 'Subject' and 'Filename' cells)"
    )


def _sheet_record(
    dataset: str,
    columns: dict[str, int],
    root: Path,
    item: LabelClip,
    errata: ClipErrata,
    log: ClipLog,
) -> dict[str, object]:
    values, subject, clip = item.values, item.label.subject, item.clip
    onset, apex, offset, estimated = read_timing(
        row_cell(values, columns, "onset"),
        row_cell(values, columns, "apex"),
        row_cell(values, columns, "offset"),
        errata,
        log,
    )
    folder = root / subject / clip
    n_frames = count_frames(folder, onset, offset, log)
    raw_aus = row_cell(values, columns, "aus")
    aus = read_aus(raw_aus, errata, log)
    return {
        "dataset": dataset,
        "subject": subject,
        "clip": clip,
        "frames_dir": str(folder),
        "video": "",
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "n_frames": n_frames,
        "fps": DATASET_FPS[dataset],
        "au_raw": cell_text(raw_aus),
        "aus": aus,
        "emotion": cell_text(row_cell(values, columns, "emotion")).strip(),
        "apex_estimated": estimated,
        "notes": "; ".join(log.notes),
    }


def _row_identity(
    dataset: str, values: Cells, columns: dict[str, int]
) -> tuple[str, str, str | None]:
    """Return (subject id, clip, problem or None) of a spreadsheet row."""
    raw_subject = row_cell(values, columns, "subject")
    clip = cell_text(row_cell(values, columns, "clip")).strip()
    subject = subject_id(dataset, raw_subject)
    problems = []
    if subject is None and cell_text(raw_subject).strip():
        problems.append(f"subject {cell_text(raw_subject).strip()!r}, not a subject number")
    elif subject is None:
        problems.append("no subject")
    if not clip:
        problems.append("no filename")
    elif (problem := id_problem("Filename", clip)) is not None:
        problems.append(problem)
    return subject or cell_text(raw_subject).strip(), clip, "; ".join(problems) or None


def _label_clips(dataset: str, sheet: _Sheet) -> list[LabelClip]:
    """Every data row, identified; bad and repeated rows carry the reason they are left out."""
    clips: list[LabelClip] = []
    seen: dict[tuple[str, str], int] = {}
    for row, values in sheet.rows:
        subject, clip, problem = _row_identity(dataset, values, sheet.columns)
        cells = {name: row_cell(values, sheet.columns, name) for name in ERRATA_FIELDS}
        label = LabelRow(row, subject, clip, cells)
        if problem is not None:
            clips.append(LabelClip(label, clip, values, (BAD_ROW, f"row has {problem}")))
        elif (subject, clip) in seen:
            reason = f"clip listed again (first at row {seen[(subject, clip)]})"
            clips.append(LabelClip(label, clip, values, (DUPLICATE, reason)))
        else:
            seen[(subject, clip)] = row
            clips.append(LabelClip(label, clip, values))
    return clips


def _build_coded(
    dataset: str, root: Path, coding: Path, strict: bool, errata: Errata | None
) -> ManifestResult:
    root, coding = Path(root).resolve(), Path(coding)
    if not coding.is_file():
        raise ManifestError(f"{coding}: annotation file not found")
    if not root.is_dir():
        raise ManifestError(f"{root}: frames root folder not found (for {coding})")
    if errata is None:
        try:
            errata = load_errata()
        except ErrataError as exc:
            raise ManifestError(str(exc)) from exc
    sheet = _find_table(coding)

    def read(item: LabelClip, clip_errata: ClipErrata, log: ClipLog) -> dict[str, object]:
        return _sheet_record(dataset, sheet.columns, root, item, clip_errata, log)

    report = BuildReport(coding, strict)
    return read_label_clips(report, _label_clips(dataset, sheet), errata, dataset, read)


def build_casme2(
    root: Path, coding: Path, strict: bool = False, errata: Errata | None = None
) -> ManifestResult:
    """Build the CASME II manifest.

    Args:
        root: Folder holding ``sub01/EP02_01f/img46.jpg`` (or ``reg_img46.jpg``) frames.
        coding: The ``CASME2-coding-*.xlsx`` annotation file (any revision).
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Errata to apply; None loads the repository's ``data_manifests/errata.csv`` and
            ``errata_rows.csv`` (pass ``Errata.empty()`` to apply none).

    Returns:
        The manifest with its report.

    Raises:
        ManifestError: Unreadable or missing files, no header row, or any problem when strict.
    """
    return _build_coded("casme2", root, coding, strict, errata)


def build_samm(
    root: Path, coding: Path, strict: bool = False, errata: Errata | None = None
) -> ManifestResult:
    """Build the SAMM manifest.

    Args:
        root: Folder holding ``006/006_1_2/006_05562.jpg`` frames (any zero padding).
        coding: ``SAMM_Micro_FACS_Codes_v2.xlsx``; the header row is found wherever it is.
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Errata to apply; None loads the repository's ``data_manifests/errata.csv`` and
            ``errata_rows.csv`` (pass ``Errata.empty()`` to apply none).

    Returns:
        The manifest with its report.

    Raises:
        ManifestError: Unreadable or missing files, no header row, or any problem when strict.
    """
    return _build_coded("samm", root, coding, strict, errata)
