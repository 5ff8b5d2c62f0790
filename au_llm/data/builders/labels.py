"""A dataset's label files read into identified rows (:class:`~au_llm.data.rows.LabelClip`).

The header row is searched for on every sheet (the first row with a subject and a filename
column under any dataset's name: ``Subject``/``sub_ID``, ``Filename``/``fold_name``), so sheet
names and preambles do not matter; a workbook without header rows is read through its naming
sheets (:mod:`.naming`). Every row is identified by subject and clip id (or, for long videos, its
recording) before any clip is read, never by its index; a row that cannot be identified, or that
repeats an earlier row's clip, carries the reason it is left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.formats import HEADER_ROLES, DatasetFormat, Recordings
from au_llm.data.errata import ERRATA_FIELDS
from au_llm.data.errata_ledger import LabelRow
from au_llm.data.manifest import ManifestError, id_problem
from au_llm.data.rows import BAD_ROW, DUPLICATE, LabelClip
from au_llm.data.workbook import Cells, header_columns, header_name, read_sheets, row_cell

ROLES = ("subject", "clip", "onset", "apex", "offset", "aus", "emotion", "type")
"""The roles of a label row's cells that the builders read."""


@dataclass(frozen=True)
class LabelTable:
    """Role -> column index, and the data rows with their Excel row numbers."""

    columns: dict[str, int]
    rows: dict[int, Cells]

    def cells(self, values: Cells) -> dict[str, object]:
        """A data row's cells by role (None where the column is absent or the cell empty)."""
        return {role: row_cell(values, self.columns, role) for role in ROLES}


def find_table(spec: DatasetFormat, path: Path, *, empty_ok: bool = False) -> LabelTable:
    """The label table: the first header row of a sheet that has data rows below it.

    Args:
        spec: The dataset's format (its required columns and title, for messages).
        path: The label file.
        empty_ok: The first header row is taken even with no data rows below it.

    Raises:
        ManifestError: No header row, a required column missing, or no data rows.
    """
    empty = []
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
            if data or empty_ok:
                return LabelTable(columns, data)
            empty.append(repr(title))
            break
    if empty:
        raise ManifestError(
            f"{path}: the header row of sheet {', '.join(empty)} is followed by no data rows; "
            "expected one row per clip below the header"
        )
    names = " and ".join(f"{spec.columns[r]!r}" for r in ("subject", "clip"))
    raise ManifestError(f"{path}: no header row found (expected a row with {names} cells)")


def find_folder(root: Path, templates: Sequence[str], **fields: object) -> Path:
    """The frames folder that ``templates`` name under ``root``.

    The first template naming an existing folder is used (one with ``*`` only where exactly one
    folder matches); where none does, the last template without ``*``.

    Args:
        root: The frames root.
        templates: :attr:`DatasetFormat.frames`.
        **fields: The values the templates name (``subject``, ``clip``, ...).

    Raises:
        ValueError: Every template holds ``*``.
    """
    fallback = None
    for template in templates:
        parts = [part.format(**fields) for part in template.split("/")]
        if "*" in template:
            found = sorted(path for path in root.glob("/".join(parts)) if path.is_dir())
            if len(found) == 1:
                return found[0]
            continue
        fallback = root.joinpath(*parts)
        if fallback.is_dir():
            return fallback
    if fallback is None:
        raise ValueError(f"frames folder templates {templates}: none without '*'")
    return fallback


def subject_problem(spec: DatasetFormat, cell: object) -> tuple[str, str | None]:
    """(subject id, or the cell's text; why the cell names no usable subject, or None)."""
    subject = spec.subject_id(cell)
    text = cell_text(cell).strip()
    if subject is None:
        return text, f"subject {text!r}, not a subject number" if text else "no subject"
    return subject, id_problem("Subject", subject)


def label_row(
    number: int, subject: str, filename: str, cells: dict[str, object], tag: str
) -> LabelRow:
    """The row as the errata see it (``tag``: its file's name where a dataset has several)."""
    return LabelRow(number, subject, filename, {name: cells[name] for name in ERRATA_FIELDS}, tag)


def clip_rows(spec: DatasetFormat, root: Path, path: Path, tag: str) -> list[LabelClip]:
    """The rows of a clip dataset's label file, identified, each with its clip id and folder.

    A clip whose subject and ``Filename`` repeat an earlier row's is a duplicate; where clips
    share recordings (:attr:`DatasetFormat.shared_recordings`) it is one only with the same
    onset and offset too, and else gets the id ``<Filename>2``, ``<Filename>3``, ... in row order,
    passing over every id that a row of the file already uses as its ``Filename``.
    """
    table = find_table(spec, path)
    identities: dict[int, tuple[str, str, str | None]] = {}
    for number, values in sorted(table.rows.items()):
        subject, problem = subject_problem(spec, row_cell(values, table.columns, "subject"))
        filename = cell_text(row_cell(values, table.columns, "clip")).strip()
        problems = [problem] if problem else []
        if not filename:
            problems.append("no filename")
        elif (unsafe := id_problem("Filename", filename)) is not None:
            problems.append(unsafe)
        identities[number] = (subject, filename, "; ".join(problems) or None)
    taken = {(subject, name) for subject, name, problem in identities.values() if not problem}
    clips: list[LabelClip] = []
    seen: dict[tuple[str, ...], int] = {}
    used: set[tuple[str, str]] = set()
    for number, (subject, filename, problem) in identities.items():
        cells = table.cells(table.rows[number])
        label = label_row(number, subject, filename, cells, tag)
        if problem is not None:
            clips.append(LabelClip(label, filename, cells, path, (BAD_ROW, f"row has {problem}")))
            continue
        key: tuple[str, ...] = (subject, filename)
        if spec.shared_recordings:
            key += tuple(cell_text(cells[role]).strip() for role in ("onset", "offset"))
        if key in seen:
            reason = f"clip listed again (first at row {seen[key]})"
            clips.append(LabelClip(label, filename, cells, path, (DUPLICATE, reason)))
            continue
        seen[key] = number
        clip = filename
        if (subject, filename) in used:
            count = 2
            while {(subject, f"{filename}{count}")} & (taken | used):
                count += 1
            clip = f"{filename}{count}"
        used.add((subject, clip))
        emotion = cell_text(cells["emotion"]).strip()
        folder = find_folder(
            root, spec.frames, subject=subject, clip=clip, filename=filename, emotion=emotion
        )
        clips.append(LabelClip(label, clip, cells, path, folder=folder))
    return clips


def _file_kind(spec: DatasetFormat, layout: Recordings, path: Path) -> str:
    """The kind of expression a label file without a type column lists (by its real name)."""
    for name, kind in zip(spec.coding_names, layout.file_kinds, strict=True):
        if kind and path.name.lower() == name.lower():
            return kind
    names = " and ".join(repr(name) for name in spec.coding_names)
    raise ManifestError(
        f"{path}: cannot tell whether it lists micro- or macro-expressions: expected the files "
        f"{names} under their real names, or a label file with a type column"
    )


def _recording(layout: Recordings, subject: str, filename: str) -> tuple[str, str, str | None]:
    """(clip id, recording, problem or None) a ``Filename`` cell names."""
    if not filename:
        return "", "", "no filename" if layout.expression_pattern else "no filename (the recording)"
    if not layout.expression_pattern:
        return "", filename, id_problem("Filename", filename)
    match = re.fullmatch(layout.expression_pattern, filename)
    if match is None or match.groupdict().get("subject", subject) != subject:
        form = layout.expression_form.format(subject=subject)
        return filename, "", f"Filename {filename!r} is not {form}"
    return filename, match.group("recording"), id_problem("Filename", filename)


def recording_rows(spec: DatasetFormat, root: Path, path: Path, tag: str) -> list[LabelClip]:
    """The rows of a long-video label file with a header row, identified with their recording.

    A ``Filename`` names an expression (its recording read by
    :attr:`Recordings.expression_pattern`) or the recording (the clip id is then made from the
    interval when the clip is read); a recording whose folder is missing under the name as
    written is looked up in lower case. Each row's kind comes from the type column, or else from
    the file's real name (:attr:`Recordings.file_kinds`).
    """
    layout = spec.recordings
    if layout is None:
        raise ValueError(f"{spec.name} is not a long-video dataset")
    several = len(spec.coding_names) > 1  # a recording set may lack one kind
    table = find_table(spec, path, empty_ok=several)
    file_kind = None if "type" in table.columns else _file_kind(spec, layout, path)
    clips = []
    for number, values in sorted(table.rows.items()):
        cells = table.cells(values)
        subject, problem = subject_problem(spec, cells["subject"])
        filename = cell_text(cells["clip"]).strip()
        clip, recording, unnamed = _recording(layout, subject, filename)
        problem = problem or unnamed
        folder = None
        if problem is None:
            folder = find_folder(root, spec.frames, subject=subject, recording=recording)
            if not folder.is_dir() and recording.lower() != recording:
                recording = recording.lower()
                folder = find_folder(root, spec.frames, subject=subject, recording=recording)
        cells["type"] = file_kind or cell_text(cells["type"]).strip()
        label = label_row(number, subject, clip or recording, cells, tag)
        clips.append(
            LabelClip(
                label,
                clip,
                cells,
                path,
                (BAD_ROW, f"row has {problem}") if problem else None,
                folder=folder,
                recording=recording,
                kind=file_kind or layout.kind_of(str(cells["type"])),
            )
        )
    return clips
