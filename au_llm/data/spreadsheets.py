"""CASME II and SAMM annotation spreadsheets (``.xlsx``, or a ``.csv`` export) -> manifests.

The header row is searched for (the first row with ``Subject`` and ``Filename`` cells), so
preambles and extra sheets do not matter. Errata (``data_manifests/errata.csv``) repair known
mistakes of the files; how they apply is described in :mod:`au_llm.data.rows`.
"""

from __future__ import annotations

import csv
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from au_llm.data.au_codes import cell_text
from au_llm.data.errata import Errata, ErrataError, Erratum, load_errata
from au_llm.data.manifest import ManifestError, id_problem
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

if TYPE_CHECKING:
    import openpyxl

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
    rows: list[tuple[int, tuple[object, ...]]]


def _check_formula_results(path: Path, values: openpyxl.Workbook) -> None:
    """Refuse a formula cell whose result was never saved (it would read as an empty cell).

    Formula cells are read through the result the spreadsheet program saved with them
    (``values``, loaded with ``data_only=True``). A file written by a program that saves no
    results (e.g. a script) has formulas with none.

    Raises:
        ManifestError: Naming the file, the cell (``Sheet1!H2``) and its formula.
    """
    import openpyxl

    formulas = openpyxl.load_workbook(path, data_only=False)
    try:
        for sheet in formulas.worksheets:
            for row in sheet.iter_rows():
                for cell in row:
                    if (
                        cell.data_type != "f"
                        or values[sheet.title][cell.coordinate].value is not None
                    ):
                        continue
                    formula = getattr(cell.value, "text", cell.value)
                    raise ManifestError(
                        f"{path}: cell {sheet.title}!{cell.coordinate} holds the formula "
                        f"{formula} with no saved result; open and save the file in a spreadsheet "
                        "program (which stores the results) or replace the formula by its value"
                    )
    finally:
        formulas.close()


def read_sheets(path: Path) -> list[tuple[str, list[tuple[object, ...]]]]:
    """All sheets of an .xlsx/.xlsm (or the one table of a .csv), as rows of cell values.

    Formula cells give the result saved with them.

    Raises:
        ManifestError: The file is missing, not a workbook, or damaged (e.g. a broken deflate
            stream inside the .xlsx), naming the file; or a formula cell has no saved result,
            naming the cell.
    """
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".xlsm", ".csv"):
        raise ManifestError(f"{path}: expected an .xlsx or .csv annotation file")
    workbook_errors: tuple[type[Exception], ...] = ()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return [(path.name, [tuple(row) for row in csv.reader(handle)])]
        import openpyxl  # only for workbooks: CSV annotations and manifests never need it
        from openpyxl.utils.exceptions import InvalidFileException

        workbook_errors = (InvalidFileException,)
        workbook = openpyxl.load_workbook(path, data_only=True)
        try:
            _check_formula_results(path, workbook)
            return [
                (sheet.title, list(sheet.iter_rows(min_row=1, values_only=True)))
                for sheet in workbook.worksheets
            ]
        finally:
            workbook.close()
    except ManifestError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{path}: cannot read the annotation file ({exc})") from exc
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        ValueError,
        *workbook_errors,
    ) as exc:
        raise ManifestError(
            f"{path}: not a readable .xlsx workbook, the file is damaged ({type(exc).__name__}: "
            f"{exc}); expected an intact .xlsx, e.g. saved again from Excel"
        ) from exc


def header_name(value: object) -> str:
    """A header cell as lower-case letters and digits only (``"Onset Frame"`` -> ``onsetframe``)."""
    return re.sub(r"[^a-z0-9]", "", value.lower()) if isinstance(value, str) else ""


def header_columns(roles: list[str | None]) -> dict[str, int]:
    """The first column of each role named in a header row (None: a column with no role)."""
    columns: dict[str, int] = {}
    for column, role in enumerate(roles):
        if role is not None and role not in columns:
            columns[role] = column
    return columns


def row_cell(values: tuple[object, ...], columns: dict[str, int], role: str) -> object:
    """The cell of ``role`` in a data row; None when the column is absent or the row is short."""
    column = columns.get(role)
    return values[column] if column is not None and column < len(values) else None


def _sheet_table(path: Path, title: str, rows: list[tuple[object, ...]]) -> _Sheet | None:
    """The table of one sheet from its header row, or None when the sheet has no header row."""
    for index, values in enumerate(rows):
        names = [header_name(value) for value in values]
        if "subject" not in names or "filename" not in names:
            continue
        columns = header_columns([_HEADER_ROLES.get(name) for name in names])
        missing = [label for role, label in _SHEET_REQUIRED.items() if role not in columns]
        if missing:
            raise ManifestError(
                f"{path}: the header (sheet {title!r}, row {index + 1}) has no "
                f"{missing[0]!r} column; expected the columns "
                f"{', '.join(_SHEET_REQUIRED.values())}"
            )
        data = [(number + 1, rows[number]) for number in range(index + 1, len(rows))]
        return _Sheet(columns, data)
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
        if any(cell_text(value).strip() for _, values in table.rows for value in values):
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
    values: tuple[object, ...],
    columns: dict[str, int],
    root: Path,
    errata: Errata,
    subject: str,
    clip: str,
    log: ClipLog,
) -> dict[str, object]:
    def lookup(name: str) -> Erratum | None:
        return errata.get(dataset, subject, clip, name)

    onset, apex, offset, estimated = read_timing(
        row_cell(values, columns, "onset"),
        row_cell(values, columns, "apex"),
        row_cell(values, columns, "offset"),
        lookup,
        log,
    )
    folder = root / subject / clip
    n_frames = count_frames(folder, onset, offset, log)
    raw_aus = row_cell(values, columns, "aus")
    aus = read_aus(raw_aus, lookup("aus"), log)
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
    dataset: str, values: tuple[object, ...], columns: dict[str, int]
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
    report = BuildReport(coding, strict)
    records: list[dict[str, object]] = []
    seen: dict[tuple[str, str], int] = {}
    for row, values in sheet.rows:
        if not any(cell_text(value).strip() for value in values):
            continue
        subject, clip, problem = _row_identity(dataset, values, sheet.columns)
        if problem is not None:
            report.skip(BAD_ROW, f"row has {problem}", subject, clip, row)
            continue
        if (subject, clip) in seen:
            first = seen[(subject, clip)]
            report.skip(DUPLICATE, f"clip listed again (first at row {first})", subject, clip, row)
            continue
        seen[(subject, clip)] = row
        log = ClipLog()
        try:
            record = _sheet_record(dataset, values, sheet.columns, root, errata, subject, clip, log)
        except SkipClipError as skip:
            report.skip(skip.kind, skip.reason, subject, clip, row)
            continue
        for warning in log.warnings:
            report.warn(warning, subject, clip, row)
        records.append(record)
    return report.result(records)


def build_casme2(
    root: Path, coding: Path, strict: bool = False, errata: Errata | None = None
) -> ManifestResult:
    """Build the CASME II manifest.

    Args:
        root: Folder holding ``sub01/EP02_01f/img46.jpg`` (or ``reg_img46.jpg``) frames.
        coding: The ``CASME2-coding-*.xlsx`` annotation file (any revision).
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Errata to apply; None loads the repository's ``data_manifests/errata.csv``
            (pass ``Errata.empty()`` to apply none).

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
        errata: Errata to apply; None loads the repository's ``data_manifests/errata.csv``
            (pass ``Errata.empty()`` to apply none).

    Returns:
        The manifest with its report.

    Raises:
        ManifestError: Unreadable or missing files, no header row, or any problem when strict.
    """
    return _build_coded("samm", root, coding, strict, errata)
