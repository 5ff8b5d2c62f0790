"""A label workbook without header rows, read through its naming sheets (CAS(ME)^2's).

The label sheet's columns are read by position (:attr:`NamingSheets.positions`); the subject
sheet turns a subject index into the subject's folder (``1`` -> ``s15``, with its number ``15``)
and the stimulus sheet an expression's stimulus (its name before the last ``_``: ``disgust1_2``
-> ``disgust1``) into the stimulus code (``101``) that names its recording's folder. Rows are
never keyed by their index: each names its file and its row as Excel shows it.
"""

from __future__ import annotations

import re
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.formats import DatasetFormat, NamingSheets
from au_llm.data.builders.labels import LabelTable, find_folder, label_row
from au_llm.data.manifest import ManifestError, id_problem
from au_llm.data.rows import BAD_ROW, LabelClip
from au_llm.data.workbook import Cells, read_sheets, row_cell

_INTEGER = re.compile(r"^\s*0*(\d+)(?:\.0*)?\s*$")
_SUBJECT_COLUMNS = {"number": 0, "folder": 1, "index": 2}  # the subject sheet: 15, s15, 1
_STIMULUS_COLUMNS = {"code": 0, "label": 1}  # the stimulus sheet: 101, disgust1

Rows = dict[int, Cells]
"""A sheet's rows holding a value, by their number as Excel shows it."""


def _integer(value: object) -> int | None:
    """An integer cell (``6``, ``6.0``, ``"006"``), or None."""
    match = _INTEGER.match(cell_text(value))
    return int(match.group(1)) if match else None


def _sheet(sheets: dict[str, Rows], naming: NamingSheets, position: int, path: Path) -> Rows:
    """A sheet by its name, or else by its position (label, subjects, stimuli)."""
    names = (naming.labels, naming.subjects, naming.stimuli)
    if names[position] in sheets:
        return sheets[names[position]]
    titles = list(sheets)
    if position < len(titles):
        return sheets[titles[position]]
    raise ManifestError(
        f"{path}: no sheet {names[position]!r}; expected the sheets {', '.join(map(repr, names))}"
    )


def _naming_rules(
    path: Path, sheets: dict[str, Rows], naming: NamingSheets
) -> tuple[dict[int, tuple[str, int]], dict[str, int]]:
    """Subject index -> (folder, number) and stimulus label -> code, from the naming sheets."""
    subjects: dict[int, tuple[str, int]] = {}
    for values in _sheet(sheets, naming, 1, path).values():
        index = _integer(row_cell(values, _SUBJECT_COLUMNS, "index"))
        number = _integer(row_cell(values, _SUBJECT_COLUMNS, "number"))
        folder = cell_text(row_cell(values, _SUBJECT_COLUMNS, "folder")).strip()
        if index is not None and number is not None and folder:
            subjects[index] = (folder, number)
    stimuli: dict[str, int] = {}
    for values in _sheet(sheets, naming, 2, path).values():
        code = _integer(row_cell(values, _STIMULUS_COLUMNS, "code"))
        label = cell_text(row_cell(values, _STIMULUS_COLUMNS, "label")).strip().lower()
        if code is not None and label:
            stimuli[label] = code
    if not subjects or not stimuli:
        raise ManifestError(
            f"{path}: the sheets {naming.subjects!r} (subject number, folder, index) and "
            f"{naming.stimuli!r} (stimulus code, label) must list the subjects and the stimuli"
        )
    return subjects, stimuli


def named_rows(spec: DatasetFormat, root: Path, path: Path, tag: str) -> list[LabelClip]:
    """The rows of a label workbook read through its naming sheets, identified.

    Raises:
        ManifestError: A sheet missing, or the naming sheets list no subject or no stimulus.
    """
    naming = spec.recordings.naming if spec.recordings is not None else None
    if spec.recordings is None or naming is None:
        raise ValueError(f"{spec.name} has no naming sheets")
    layout = spec.recordings
    sheets = {title: dict(rows) for title, rows in read_sheets(path)}
    subjects, stimuli = _naming_rules(path, sheets, naming)
    columns = {role: k for k, role in enumerate(naming.positions) if role is not None}
    table = LabelTable(columns, _sheet(sheets, naming, 0, path))
    clips = []
    for number, values in sorted(table.rows.items()):
        if not any(cell_text(row_cell(values, columns, role)).strip() for role in columns):
            continue
        cells = table.cells(values)
        if number == 1 and "onset" in cell_text(cells["onset"]).lower():
            continue  # a header row someone added
        index = _integer(cells["subject"])
        clip = cell_text(cells["clip"]).strip()
        label = clip.rsplit("_", 1)[0].lower()
        folder_name, subject_number = subjects.get(index, ("", 0)) if index is not None else ("", 0)
        problem = None
        if index is None:
            problem = "no subject index"
        elif not folder_name:
            problem = f"subject index {index} is not in the sheet {naming.subjects!r}"
        elif not clip:
            problem = "no expression name"
        elif label not in stimuli:
            problem = (
                f"expression {clip!r}: stimulus {label!r} is not in the sheet "
                f"{naming.stimuli!r} (known: {', '.join(sorted(stimuli))})"
            )
        else:
            problem = id_problem("subject folder", folder_name) or id_problem("expression", clip)
        folder = None
        if problem is None:
            folder = find_folder(
                root, spec.frames, subject=folder_name, number=subject_number, code=stimuli[label]
            )
        cells["type"] = type_cell = cell_text(cells["type"]).strip()
        clips.append(
            LabelClip(
                label_row(number, folder_name, clip, cells, tag),
                clip,
                cells,
                path,
                (BAD_ROW, f"row has {problem}") if problem else None,
                folder=folder,
                recording=folder.name if folder is not None else "",
                kind=layout.kind_of(type_cell),
            )
        )
    return clips
