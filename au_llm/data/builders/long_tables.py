"""The rows of the long-video label files, read into one form: subject, recording, clip, cells.

SAMM-LV and CAS(ME)^3 label files have a header row (searched for on every sheet, as for the
clip datasets); CAS(ME)^2's ``CASFEcode_final`` sheet has none, so its columns are read by
position, and its two naming sheets turn a subject index into the subject's folder (``1`` ->
``s15``) and an expression name into its recording's stimulus code (``disgust1_2`` ->
``disgust1`` -> ``0101``). Rows are never keyed by their index: each names its file and its row
as Excel shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.long_formats import LongVideoFormat
from au_llm.data.builders.sheet import LabelTable, find_table
from au_llm.data.manifest import ManifestError, id_problem
from au_llm.data.spreadsheets import read_sheets, row_cell

_INTEGER = re.compile(r"^\s*0*(\d+)(?:\.0*)?\s*$")
_CASME_SQ_SHEETS = ("CASFEcode_final", "naming rule1", "naming rule2")


@dataclass(frozen=True)
class LongRow:
    """One annotated expression as a label file gives it.

    Attributes:
        source: The label file.
        row: The row as Excel shows it.
        subject: Subject id (``006``, ``s15``, ``spNO.3``); ``""`` when the row has none.
        recording: The recording's id within the subject (its frames folder's name).
        folder: The recording's frames folder.
        clip: The expression's name in the file (``006_1_3``, ``disgust1_2``; ``""`` when the
            file names only the recording, as CAS(ME)^3's).
        cells: ``onset``, ``apex``, ``offset``, ``aus``, ``emotion`` cells as written.
        kind: ``micro`` or ``macro``; None when the type cell names neither.
        type_cell: The type cell as written (or the file's kind), for messages.
        problem: Why the row cannot be read, or None.
    """

    source: Path
    row: int
    subject: str
    recording: str
    folder: Path
    clip: str
    cells: dict[str, object]
    kind: str | None
    type_cell: str
    problem: str | None = None


def _integer(value: object) -> int | None:
    """An integer cell (``6``, ``6.0``, ``"006"``), or None."""
    match = _INTEGER.match(cell_text(value))
    return int(match.group(1)) if match else None


def _cells(table: LabelTable, values: tuple[object, ...]) -> dict[str, object]:
    roles = ("onset", "apex", "offset", "aus", "emotion")
    return {role: row_cell(values, table.columns, role) for role in roles}


def _unsafe(what: str, value: str) -> str | None:
    """A problem when ``value`` cannot name a folder (path separators, control characters)."""
    if id_problem(what, value) is not None:
        return f"{what} {value!r} with a path separator or a control character"
    return None


def _samm_lv_rows(spec: LongVideoFormat, root: Path, path: Path) -> list[LongRow]:
    table = find_table(spec, path)
    rows = []
    for number, values in sorted(table.rows.items()):
        subject_number = _integer(row_cell(values, table.columns, "subject"))
        subject = f"{subject_number:03d}" if subject_number is not None else ""
        clip = cell_text(row_cell(values, table.columns, "clip")).strip()
        parts = clip.split("_")
        recording = "_".join(parts[:2])
        type_cell = cell_text(row_cell(values, table.columns, "type")).strip()
        problem = None
        if not subject:
            problem = "no subject number"
        elif len(parts) != 3 or not all(part.isdigit() for part in parts) or parts[0] != subject:
            problem = (
                f"Filename {clip!r} is not <subject>_<recording>_<expression> of subject "
                f"{subject} (e.g. {subject}_1_3)"
            )
        rows.append(
            LongRow(
                source=path,
                row=number,
                subject=subject,
                recording=recording,
                folder=root / recording,
                clip=clip,
                cells=_cells(table, values),
                kind=spec.kind_of(type_cell),
                type_cell=type_cell,
                problem=problem,
            )
        )
    return rows


Rows = dict[int, tuple[object, ...]]
"""A sheet's rows by their number as Excel shows it."""
_RULE1 = {"number": 0, "folder": 1, "index": 2}  # naming rule1: 15, s15, 1
_RULE2 = {"code": 0, "label": 1}  # naming rule2: 101, disgust1


def _sheets_by_title(path: Path) -> dict[str, Rows]:
    """Every sheet of a workbook: title -> its rows by number."""
    return {
        title: {number + 1: values for number, values in enumerate(rows)}
        for title, rows in read_sheets(path)
    }


def _sheet(sheets: dict[str, Rows], name: str, position: int, path: Path) -> Rows:
    """A CAS(ME)^2 sheet by its name, or else by its position."""
    if name in sheets:
        return sheets[name]
    titles = list(sheets)
    if position < len(titles):
        return sheets[titles[position]]
    raise ManifestError(
        f"{path}: no sheet {name!r}; expected the sheets {', '.join(map(repr, _CASME_SQ_SHEETS))}"
    )


def _naming_rules(
    path: Path, sheets: dict[str, Rows]
) -> tuple[dict[int, tuple[str, int]], dict[str, int]]:
    """Subject index -> (folder, number) and stimulus label -> code, from the naming sheets."""
    subjects: dict[int, tuple[str, int]] = {}
    for values in _sheet(sheets, "naming rule1", 1, path).values():
        index = _integer(row_cell(values, _RULE1, "index"))
        number = _integer(row_cell(values, _RULE1, "number"))
        folder = cell_text(row_cell(values, _RULE1, "folder")).strip()
        if index is not None and number is not None and folder:
            subjects[index] = (folder, number)
    stimuli: dict[str, int] = {}
    for values in _sheet(sheets, "naming rule2", 2, path).values():
        code = _integer(row_cell(values, _RULE2, "code"))
        label = cell_text(row_cell(values, _RULE2, "label")).strip().lower()
        if code is not None and label:
            stimuli[label] = code
    if not subjects or not stimuli:
        raise ManifestError(
            f"{path}: the sheets 'naming rule1' (subject number, folder, index) and "
            "'naming rule2' (stimulus code, label) must list the subjects and the stimuli"
        )
    return subjects, stimuli


def _stimulus_folder(root: Path, folder: str, number: int, code: int) -> Path:
    """The recording folder ``<root>/s15/15_0101<name>`` of one stimulus (found by its prefix)."""
    prefix = f"{number}_{code:04d}"
    parent = root / folder
    found = sorted(p for p in parent.glob(f"{prefix}*") if p.is_dir()) if parent.is_dir() else []
    return found[0] if len(found) == 1 else parent / prefix


def _casme_sq_rows(spec: LongVideoFormat, root: Path, path: Path) -> list[LongRow]:
    sheets = _sheets_by_title(path)
    subjects, stimuli = _naming_rules(path, sheets)
    columns = {role: k for k, role in enumerate(spec.positions) if role is not None}
    table = LabelTable(columns, _sheet(sheets, "CASFEcode_final", 0, path))
    rows = []
    for number, values in sorted(table.rows.items()):
        if not any(cell_text(row_cell(values, columns, role)).strip() for role in columns):
            continue
        if number == 1 and "onset" in cell_text(row_cell(values, columns, "onset")).lower():
            continue  # a header row someone added
        index = _integer(row_cell(values, columns, "subject"))
        clip = cell_text(row_cell(values, columns, "clip")).strip()
        label = clip.rsplit("_", 1)[0].lower()
        folder_name, subject_number = subjects.get(index, ("", 0)) if index is not None else ("", 0)
        problem = None
        if index is None:
            problem = "no subject index"
        elif not folder_name:
            problem = f"subject index {index} is not in the sheet 'naming rule1'"
        elif not clip:
            problem = "no expression name"
        elif label not in stimuli:
            problem = (
                f"expression {clip!r}: stimulus {label!r} is not in the sheet 'naming rule2' "
                f"(known: {', '.join(sorted(stimuli))})"
            )
        else:
            problem = _unsafe("subject folder", folder_name) or _unsafe("expression", clip)
        folder = root
        if problem is None:
            folder = _stimulus_folder(root, folder_name, subject_number, stimuli[label])
        type_cell = cell_text(row_cell(values, columns, "type")).strip()
        rows.append(
            LongRow(
                source=path,
                row=number,
                subject=folder_name,
                recording=folder.name if problem is None else "",
                folder=folder,
                clip=clip,
                cells=_cells(table, values),
                kind=spec.kind_of(type_cell),
                type_cell=type_cell,
                problem=problem,
            )
        )
    return rows


def _file_kind(spec: LongVideoFormat, path: Path) -> str:
    """The kind of expression a CAS(ME)^3 label file without a type column lists."""
    for name, kind in spec.coding_names:
        if path.name.lower() == name.lower():
            return kind
    names = " and ".join(repr(name) for name, _ in spec.coding_names)
    raise ManifestError(
        f"{path}: cannot tell whether it lists micro- or macro-expressions: expected the files "
        f"{names} under their real names, or a label file with a type column"
    )


def _casme3_rows(spec: LongVideoFormat, root: Path, path: Path) -> list[LongRow]:
    table = find_table(spec, path, empty_ok=True)  # a recording set may lack one kind
    file_kind = None if "type" in table.columns else _file_kind(spec, path)
    rows = []
    for number, values in sorted(table.rows.items()):
        raw = cell_text(row_cell(values, table.columns, "subject")).strip()
        subject = f"spNO.{_integer(raw)}" if _integer(raw) is not None else raw
        recording = cell_text(row_cell(values, table.columns, "clip")).strip()
        if recording and not (root / subject / recording).is_dir():
            recording = recording.lower()
        type_cell = file_kind or cell_text(row_cell(values, table.columns, "type")).strip()
        problem = None
        if not subject:
            problem = "no subject"
        elif not recording:
            problem = "no filename (the recording)"
        else:
            problem = _unsafe("Subject", subject) or _unsafe("Filename", recording)
        rows.append(
            LongRow(
                source=path,
                row=number,
                subject=subject,
                recording=recording,
                folder=root / subject / recording / "color",
                clip="",
                cells=_cells(table, values),
                kind=file_kind or spec.kind_of(type_cell),
                type_cell=type_cell,
                problem=problem,
            )
        )
    return rows


def read_long_rows(spec: LongVideoFormat, root: Path, codings: list[Path]) -> list[LongRow]:
    """Every row of a long-video dataset's label file(s), in file and row order.

    Args:
        spec: The dataset's format.
        root: The frames root.
        codings: The label file(s): one for SAMM-LV and CAS(ME)^2; CAS(ME)^3's micro- and
            macro-expression files (either or both).

    Raises:
        ManifestError: A file missing or unreadable, no header row, missing naming sheets, or a
            CAS(ME)^3 file whose kind cannot be told.
    """
    readers = {"samm-lv": _samm_lv_rows, "casme-sq-lv": _casme_sq_rows, "casme3-lv": _casme3_rows}
    if len(codings) > 1 and spec.name != "casme3-lv":
        raise ManifestError(
            f"manifest {spec.name} reads one annotation file, got {len(codings)}: "
            f"{', '.join(map(str, codings))}"
        )
    rows = []
    for path in codings:
        if not path.is_file():
            raise ManifestError(f"{path}: annotation file not found")
        rows += readers[spec.name](spec, root, path)
    return rows
