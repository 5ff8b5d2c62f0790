"""Annotation workbooks (``.xlsx``, or a ``.csv`` export) read as rows of the cells holding values.

Workbooks are read in openpyxl's read-only mode, and only the cells the file holds: a styled empty
cell far out (``XFD1048576``) costs nothing, and a workbook that unpacks to more than
:data:`MAX_UNPACKED_BYTES` is refused, so time and memory stay bounded for any file. Formula
cells give the result saved with them; one with none is an error naming the cell. The builders
find header rows with :func:`header_name` and read data rows with :func:`row_cell`.
"""

from __future__ import annotations

import csv
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from au_llm.data.au_codes import cell_text
from au_llm.data.manifest import ManifestError

if TYPE_CHECKING:
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

Cells = dict[int, object]
"""The cells of one row that hold a value: column index (0 = column A) -> value."""

MAX_UNPACKED_BYTES = 64 * 1024 * 1024
"""Largest workbook, unpacked, that is read (a label file of thousands of clips is under 5 MB)."""


def _parsed_rows(sheet: ReadOnlyWorksheet) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The rows of a read-only sheet as stored: (row number, the cells its XML holds).

    openpyxl's own row iterators fill every row up to the sheet's declared extent (a styled cell
    at XFD1048576 declares 17 billion cells); its parser gives only the cells the file holds, so
    time and memory follow the size of the file.
    """
    from openpyxl.worksheet._reader import WorkSheetParser

    book = sheet.parent
    with sheet._get_source() as source:
        parser = WorkSheetParser(
            source,
            sheet._shared_strings,
            data_only=book.data_only,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        yield from parser.parse()


def _check_size(path: Path) -> None:
    """Refuse a workbook that unpacks to more than :data:`MAX_UNPACKED_BYTES`."""
    with zipfile.ZipFile(path) as archive:
        size = sum(info.file_size for info in archive.infolist())
    if size > MAX_UNPACKED_BYTES:
        raise ManifestError(
            f"{path}: the workbook unpacks to {size:,} bytes, more than the {MAX_UNPACKED_BYTES:,} "
            "read for an annotation file; expected a label file (one row per clip)"
        )


def _value_rows(sheet: ReadOnlyWorksheet) -> tuple[list[tuple[int, Cells]], set[tuple[int, int]]]:
    """(rows holding a value, with their cells; every (row, column) with a saved value)."""
    rows: list[tuple[int, Cells]] = []
    saved: set[tuple[int, int]] = set()
    for number, cells in _parsed_rows(sheet):
        kept: Cells = {}
        for cell in cells:
            if cell["value"] is None:
                continue
            saved.add((number, cell["column"]))
            if cell_text(cell["value"]).strip():
                kept[cell["column"] - 1] = cell["value"]
        if kept:
            rows.append((number, kept))
    return rows, saved


def _check_formula_results(
    path: Path, formulas: ReadOnlyWorksheet, saved: set[tuple[int, int]]
) -> None:
    """Refuse a formula cell whose result was never saved (it would read as an empty cell).

    Formula cells are read through the result the spreadsheet program saved with them
    (``saved`` holds the cells with one). A file written by a program that saves no results
    (e.g. a script) has formulas with none.

    Raises:
        ManifestError: Naming the file, the cell (``Sheet1!H2``) and its formula.
    """
    from openpyxl.utils import get_column_letter

    for number, cells in _parsed_rows(formulas):
        for cell in cells:
            if cell["data_type"] != "f" or (number, cell["column"]) in saved:
                continue
            formula = getattr(cell["value"], "text", cell["value"])
            raise ManifestError(
                f"{path}: cell {formulas.title}!{get_column_letter(cell['column'])}{number} holds "
                f"the formula {formula} with no saved result; open and save the file in a "
                "spreadsheet program (which stores the results) or replace the formula by its value"
            )


def _workbook_sheets(path: Path) -> list[tuple[str, list[tuple[int, Cells]]]]:
    """The sheets of an .xlsx/.xlsm, read in read-only mode (see :func:`read_sheets`)."""
    import openpyxl  # only for workbooks: CSV annotations and manifests never need it

    _check_size(path)
    values = openpyxl.load_workbook(path, read_only=True, data_only=True)
    formulas = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        sheets = []
        for sheet in values.worksheets:
            rows, saved = _value_rows(sheet)
            _check_formula_results(path, formulas[sheet.title], saved)
            sheets.append((sheet.title, rows))
        return sheets
    finally:
        values.close()
        formulas.close()


def read_sheets(path: Path) -> list[tuple[str, list[tuple[int, Cells]]]]:
    """All sheets of an .xlsx/.xlsm (or the one table of a .csv): the rows holding a value.

    Each row is ``(row number as Excel shows it, cells)`` with only the cells holding a value
    (blank and whitespace-only cells are absent; so are blank rows). Formula cells give the
    result saved with them. Only what the file holds is read: a styled empty cell far out
    (``XFD1048576``) costs nothing, and a workbook unpacking to more than
    :data:`MAX_UNPACKED_BYTES` is refused, so time and memory are bounded.

    Raises:
        ManifestError: The file is missing, not a workbook, damaged (e.g. a broken deflate
            stream inside the .xlsx) or too large unpacked, naming the file; or a formula cell
            has no saved result, naming the cell.
    """
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".xlsm", ".csv"):
        raise ManifestError(f"{path}: expected an .xlsx or .csv annotation file")
    workbook_errors: tuple[type[Exception], ...] = ()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = [
                    (number, {column: text for column, text in enumerate(row) if text.strip()})
                    for number, row in enumerate(csv.reader(handle), start=1)
                ]
            return [(path.name, [(number, cells) for number, cells in rows if cells])]
        from openpyxl.utils.exceptions import InvalidFileException

        workbook_errors = (InvalidFileException,)
        return _workbook_sheets(path)
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


def header_columns(roles: dict[int, str | None]) -> dict[str, int]:
    """The first column of each role named in a header row (column -> role, None: no role)."""
    columns: dict[str, int] = {}
    for column in sorted(roles):
        role = roles[column]
        if role is not None and role not in columns:
            columns[role] = column
    return columns


def row_cell(values: Cells, columns: dict[str, int], role: str) -> object:
    """The cell of ``role`` in a data row; None when the column is absent or the cell empty."""
    column = columns.get(role)
    return values.get(column) if column is not None else None
