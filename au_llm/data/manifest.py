"""Clip manifests: one CSV row per usable clip, built from CASME II / SAMM spreadsheets or a table.

A manifest has the columns of :data:`MANIFEST_COLUMNS` (documented in ``data_manifests/README.md``).
Builders never key anything by row index: clips are identified by subject + clip name, and every
report names the annotation file, the row as Excel shows it and the clip. A clip whose frames or
timing are unusable is reported in :attr:`ManifestResult.skipped` and left out; a questionable
reading (AU alternatives, an estimated apex, ...) is reported in :attr:`ManifestResult.warnings` and
in the clip's ``notes``. With ``strict=True`` any of these raises :class:`ManifestError` instead.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
from openpyxl.utils.exceptions import InvalidFileException

from au_llm.data.au_codes import cell_text, format_aus, parse_au_cell, parse_aus
from au_llm.data.errata import FRAME_FIELDS, Errata, ErrataError, Erratum, load_errata
from au_llm.data.frames import describe_missing, missing_frames, scan_frames
from au_llm.io_utils import atomic_write_csv

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "dataset",
    "subject",
    "clip",
    "frames_dir",
    "video",
    "onset",
    "apex",
    "offset",
    "n_frames",
    "fps",
    "au_raw",
    "aus",
    "emotion",
    "apex_estimated",
    "notes",
]
INT_COLUMNS = ("onset", "apex", "offset", "n_frames")
REQUIRED_MANIFEST_COLUMNS = ("dataset", "subject", "clip", "onset", "apex", "offset", "n_frames")
MANIFEST_KINDS = ("casme2", "samm", "csv")
DATASET_FPS = {"casme2": 200.0, "samm": 200.0}
DEFAULT_FPS = 200.0
DEFAULT_DATASET = "custom"

# Kinds of skipped clips, used to group the summary.
BAD_ROW = "bad row"
BAD_TIMING = "bad onset/offset"
FOLDER_MISSING = "frames folder missing"
NO_FRAMES = "no frames in folder"
FRAMES_MISSING = "frames missing"
VIDEO_MISSING = "video missing"
DUPLICATE = "duplicate clip"

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
_FRAME_TEXT = re.compile(r"^(\d+)(?:\.0*)?\s*(\?)?$")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


class ManifestError(ValueError):
    """A manifest cannot be built or read; the message names the file, the row or clip, and why."""


@dataclass
class SkippedClip:
    """A clip left out of a manifest.

    Attributes:
        clip: Clip name ("" when the row had none).
        subject: Subject id ("" when the row had none).
        reason: What is wrong, e.g. ``"frames 50-52 missing of 46-110 in /data/sub01/EP02_01f"``.
        row: Row of the annotation file as Excel shows it (header rows included), or None.
        kind: Reason group for the summary (``frames missing``, ``bad onset/offset``, ...).
    """

    clip: str
    subject: str
    reason: str
    row: int | None
    kind: str = "other"

    def describe(self) -> str:
        """One line: ``subject/clip (row N): reason``."""
        where = f"{self.subject or '?'}/{self.clip or '?'}"
        if self.row is not None:
            where += f" (row {self.row})"
        return f"{where}: {self.reason}"


@dataclass
class ManifestResult:
    """A built manifest and what happened while building it.

    Attributes:
        frame: The manifest, columns :data:`MANIFEST_COLUMNS`, one row per usable clip.
        skipped: Clips left out, with reasons.
        warnings: Questionable readings, each naming the row and the clip.
        source: The annotation file or table the manifest was built from.
    """

    frame: pd.DataFrame
    skipped: list[SkippedClip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    def summary(self) -> str:
        """Describe the build: clips written, clips skipped grouped by reason, warnings."""
        written = len(self.frame)
        subjects = self.frame["subject"].nunique() if written else 0
        head = (
            f"{written} clips written ({subjects} subjects), {len(self.skipped)} skipped, "
            f"{len(self.warnings)} warnings"
        )
        lines = [f"{self.source}: {head}" if self.source else head]
        estimated = int(self.frame["apex_estimated"].astype(bool).sum()) if written else 0
        if estimated:
            lines.append(f"apex estimated as the middle frame for {estimated} clips")
        if self.skipped:
            groups: dict[str, list[SkippedClip]] = defaultdict(list)
            for item in self.skipped:
                groups[item.kind].append(item)
            lines.append("skipped clips, by reason:")
            for kind in sorted(groups):
                lines.append(f"  {kind} ({len(groups[kind])}):")
                lines.extend(f"    {item.describe()}" for item in groups[kind])
        if self.warnings:
            lines.append("warnings:")
            lines.extend(f"  {warning}" for warning in self.warnings)
        return "\n".join(lines)


class _SkipClipError(Exception):
    """Raised while reading one row: the clip is left out for ``reason``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _Report:
    """Collects skipped clips and warnings; in strict mode the first problem raises."""

    def __init__(self, source: Path, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.skipped: list[SkippedClip] = []
        self.warnings: list[str] = []

    def _strict_error(self, subject: str, clip: str, row: int | None, message: str) -> None:
        if self.strict:
            where = f"row {row}, " if row is not None else ""
            raise ManifestError(
                f"{self.source}, {where}clip {subject or '?'}/{clip or '?'}: {message} "
                "(strict mode; without it the problem is reported and the build goes on)"
            )

    def skip(self, kind: str, reason: str, subject: str, clip: str, row: int | None) -> None:
        self._strict_error(subject, clip, row, f"{reason}; the clip would be left out")
        item = SkippedClip(clip=clip, subject=subject, reason=reason, row=row, kind=kind)
        logger.warning("%s: %s; clip left out", self.source, item.describe())
        self.skipped.append(item)

    def warn(self, message: str, subject: str, clip: str, row: int | None) -> None:
        self._strict_error(subject, clip, row, message)
        where = f"{subject or '?'}/{clip or '?'}" + (f" (row {row})" if row is not None else "")
        text = f"{where}: {message}"
        logger.warning("%s: %s", self.source, text)
        self.warnings.append(text)

    def result(self, records: list[dict[str, object]]) -> ManifestResult:
        return ManifestResult(_typed_frame(records), self.skipped, self.warnings, str(self.source))


@dataclass
class _ClipLog:
    """Notes and warnings of one clip, emitted only when the clip is written."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.notes.append(message)
        self.warnings.append(message)


_Lookup = Callable[[str], Erratum | None]


def _no_errata(_field: str) -> Erratum | None:
    return None


def _typed_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    frame["fps"] = frame["fps"].astype("float64")
    frame["apex_estimated"] = frame["apex_estimated"].astype(bool)
    for column in MANIFEST_COLUMNS:
        if column not in INT_COLUMNS and column not in ("fps", "apex_estimated"):
            frame[column] = frame[column].astype(str)
    return frame


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


def _not_a_frame(name: str, value: object) -> str:
    """Describe an unusable frame cell: ``apex is empty`` / ``apex '/' is not a frame number``."""
    text = cell_text(value).strip()
    return f"{name} {text!r} is not a frame number" if text else f"{name} is empty"


def _parse_frame(value: object) -> tuple[int | None, bool]:
    """Read a frame cell: ``46``, ``46.0``, ``"46.0"``, ``" 46 "``; ``46?`` gives (46, True)."""
    match = _FRAME_TEXT.match(cell_text(value).strip())
    if match is None:
        return None, False
    return int(match.group(1)), match.group(2) is not None


def _boundary(name: str, raw: object, lookup: _Lookup, log: _ClipLog) -> tuple[int, bool]:
    """Read the onset or offset; an erratum replaces it only when missing or not a number."""
    frame, unclear = _parse_frame(raw)
    if frame is not None:
        if unclear:
            log.notes.append(f"{name} {cell_text(raw).strip()!r} marked unclear; {frame} used")
        return frame, False
    erratum = lookup(name)
    if erratum is None:
        raise _SkipClipError(BAD_TIMING, _not_a_frame(name, raw))
    log.notes.append(f"{_not_a_frame(name, raw)}; {erratum.frame} used ({erratum.origin})")
    return erratum.frame, True


def _ordered(
    onset: int, offset: int, handled: set[str], lookup: _Lookup, log: _ClipLog
) -> tuple[int, int]:
    """Check onset <= offset; errata of the two boundaries may repair an inverted pair."""
    if onset <= offset:
        return onset, offset
    original = {"onset": onset, "offset": offset}
    fixed = dict(original)
    for name in fixed:
        erratum = lookup(name)
        if erratum is not None and name not in handled:
            fixed[name] = erratum.frame
    changed = [name for name in fixed if fixed[name] != original[name]]
    if not changed or fixed["onset"] > fixed["offset"]:
        raise _SkipClipError(BAD_TIMING, f"onset {onset} is after offset {offset}")
    handled.update(changed)
    log.notes.append(
        f"onset {onset} is after offset {offset}; errata give {fixed['onset']}-{fixed['offset']}"
        f" ({', '.join(changed)} corrected)"
    )
    return fixed["onset"], fixed["offset"]


def _apex(
    raw: object,
    onset: int,
    offset: int,
    lookup: _Lookup,
    log: _ClipLog,
    warn_missing: bool,
) -> tuple[int, bool, bool]:
    """Return (apex, estimated, erratum applied); see the module docs for the rules."""
    frame, unclear = _parse_frame(raw)
    if frame is not None and onset <= frame <= offset:
        if unclear:
            log.notes.append(f"apex {cell_text(raw).strip()!r} marked unclear; {frame} used")
        return frame, False, False
    if frame is None:
        problem = _not_a_frame("apex", raw)
    else:
        problem = f"apex {frame} lies outside onset..offset {onset}-{offset}"
    erratum = lookup("apex")
    if erratum is not None and onset <= erratum.frame <= offset:
        log.notes.append(f"{problem}; {erratum.frame} used ({erratum.origin})")
        return erratum.frame, False, True
    if erratum is not None:
        log.warn(f"erratum apex {erratum.frame} lies outside onset..offset {onset}-{offset}")
    middle = (onset + offset) // 2
    message = f"{problem}; middle frame {middle} used"
    if warn_missing:
        log.warn(message)
    else:
        log.notes.append(message)
    return middle, True, False


def _timing(
    raw_onset: object,
    raw_apex: object,
    raw_offset: object,
    lookup: _Lookup,
    log: _ClipLog,
    warn_missing_apex: bool = True,
) -> tuple[int, int, int, bool]:
    """Read onset, apex, offset with errata; returns (onset, apex, offset, apex_estimated)."""
    onset, onset_fixed = _boundary("onset", raw_onset, lookup, log)
    offset, offset_fixed = _boundary("offset", raw_offset, lookup, log)
    handled = {name for name, fixed in (("onset", onset_fixed), ("offset", offset_fixed)) if fixed}
    onset, offset = _ordered(onset, offset, handled, lookup, log)
    apex, estimated, apex_fixed = _apex(raw_apex, onset, offset, lookup, log, warn_missing_apex)
    if apex_fixed or estimated:
        handled.add("apex")
    final = {"onset": onset, "apex": apex, "offset": offset}
    for name in FRAME_FIELDS:
        erratum = lookup(name)
        if erratum is not None and name not in handled and erratum.frame != final[name]:
            log.notes.append(
                f"erratum {name} {erratum.frame} not applied: the file's {name} "
                f"{final[name]} is valid"
            )
    return onset, apex, offset, estimated


def _count_frames(folder: Path, onset: int, offset: int, log: _ClipLog) -> int:
    """Check that every frame of onset..offset is in ``folder``; returns their number."""
    if not folder.is_dir():
        raise _SkipClipError(FOLDER_MISSING, f"frames folder {folder} not found")
    scan = scan_frames(folder)
    if not scan.frames:
        raise _SkipClipError(NO_FRAMES, f"no image frames (jpg, jpeg, png, bmp) in {folder}")
    missing = missing_frames(scan.frames, onset, offset)
    if missing:
        raise _SkipClipError(
            FRAMES_MISSING, f"{describe_missing(missing, onset, offset)} in {folder}"
        )
    for message in scan.messages:
        log.warn(message)
    return offset - onset + 1


def _read_aus(cell: object, erratum: Erratum | None, log: _ClipLog) -> str:
    """Read an AU cell into the canonical form; notes and warnings go to ``log``."""
    parsed = parse_au_cell(cell, resolved=erratum.value if erratum is not None else None)
    notes = list(parsed.notes)
    if parsed.resolved_by_erratum and erratum is not None:
        notes[0] = f"{notes[0]} ({erratum.origin})"
    warnings = set(parsed.warnings)
    for note in notes:
        if note in warnings:
            log.warn(note)
        else:
            log.notes.append(note)
    return format_aus(parsed.aus)


# ----------------------------------------------------------------------------------------------
# CASME II / SAMM annotation spreadsheets


@dataclass(frozen=True)
class _Sheet:
    """The table part of an annotation file: role -> column index, rows with Excel row numbers."""

    columns: dict[str, int]
    rows: list[tuple[int, tuple[object, ...]]]


def _read_sheets(path: Path) -> list[tuple[str, list[tuple[object, ...]]]]:
    """All sheets of an .xlsx/.xlsm (or the one table of a .csv), as rows of cell values."""
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".xlsm", ".csv"):
        raise ManifestError(f"{path}: expected an .xlsx or .csv annotation file")
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return [(path.name, [tuple(row) for row in csv.reader(handle)])]
        workbook = openpyxl.load_workbook(path, data_only=True)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{path}: cannot read the annotation file ({exc})") from exc
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise ManifestError(f"{path}: not a readable .xlsx workbook ({exc})") from exc
    try:
        return [
            (sheet.title, list(sheet.iter_rows(min_row=1, values_only=True)))
            for sheet in workbook.worksheets
        ]
    finally:
        workbook.close()


def _header_name(value: object) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower()) if isinstance(value, str) else ""


def _find_table(path: Path) -> _Sheet:
    """Locate the header row (the first row with ``Subject`` and ``Filename`` cells)."""
    for title, rows in _read_sheets(path):
        for index, values in enumerate(rows):
            names = [_header_name(value) for value in values]
            if "subject" not in names or "filename" not in names:
                continue
            columns: dict[str, int] = {}
            for column, name in enumerate(names):
                role = _HEADER_ROLES.get(name)
                if role is not None and role not in columns:
                    columns[role] = column
            missing = [label for role, label in _SHEET_REQUIRED.items() if role not in columns]
            if missing:
                raise ManifestError(
                    f"{path}: the header (sheet {title!r}, row {index + 1}) has no "
                    f"{missing[0]!r} column; expected the columns "
                    f"{', '.join(_SHEET_REQUIRED.values())}"
                )
            data = [(number + 1, rows[number]) for number in range(index + 1, len(rows))]
            return _Sheet(columns, data)
    raise ManifestError(
        f"{path}: no header row found (expected a row with 'Subject' and 'Filename' cells)"
    )


def _cell(values: tuple[object, ...], columns: dict[str, int], role: str) -> object:
    column = columns.get(role)
    return values[column] if column is not None and column < len(values) else None


def _sheet_record(
    dataset: str,
    values: tuple[object, ...],
    columns: dict[str, int],
    root: Path,
    errata: Errata,
    subject: str,
    clip: str,
    log: _ClipLog,
) -> dict[str, object]:
    def lookup(name: str) -> Erratum | None:
        return errata.get(dataset, subject, clip, name)

    onset, apex, offset, estimated = _timing(
        _cell(values, columns, "onset"),
        _cell(values, columns, "apex"),
        _cell(values, columns, "offset"),
        lookup,
        log,
    )
    folder = root / subject / clip
    n_frames = _count_frames(folder, onset, offset, log)
    raw_aus = _cell(values, columns, "aus")
    aus = _read_aus(raw_aus, lookup("aus"), log)
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
        "emotion": cell_text(_cell(values, columns, "emotion")).strip(),
        "apex_estimated": estimated,
        "notes": "; ".join(log.notes),
    }


def _row_identity(
    dataset: str, values: tuple[object, ...], columns: dict[str, int]
) -> tuple[str, str, str | None]:
    """Return (subject id, clip, problem or None) of a spreadsheet row."""
    raw_subject = _cell(values, columns, "subject")
    clip = cell_text(_cell(values, columns, "clip")).strip()
    subject = subject_id(dataset, raw_subject)
    problems = []
    if subject is None and cell_text(raw_subject).strip():
        problems.append(f"subject {cell_text(raw_subject).strip()!r}, not a subject number")
    elif subject is None:
        problems.append("no subject")
    if not clip:
        problems.append("no filename")
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
    report = _Report(coding, strict)
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
        log = _ClipLog()
        try:
            record = _sheet_record(dataset, values, sheet.columns, root, errata, subject, clip, log)
        except _SkipClipError as skip:
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


# ----------------------------------------------------------------------------------------------
# The user's own table


def _read_csv_strings(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"{path}: {what} not found")
    try:
        data = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"{path}: cannot read the {what} ({exc})") from exc
    data.columns = [str(name).strip().lower() for name in data.columns]
    return data


def _resolve_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _parse_bool(text: str) -> bool | None:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    return False if value in _FALSE else None


def _table_fps(text: str, log: _ClipLog) -> float:
    """Read a table's fps cell; empty gives the default, a bad value the default and a warning."""
    if not text.strip():
        return DEFAULT_FPS
    try:
        fps = float(text)
    except ValueError:
        fps = float("nan")
    if not (math.isfinite(fps) and fps > 0):
        log.warn(f"fps {text!r} is not a positive number; {DEFAULT_FPS:g} used")
        return DEFAULT_FPS
    return fps


def _table_record(
    row: dict[str, str], columns: set[str], base: Path, subject: str, clip: str, log: _ClipLog
) -> dict[str, object]:
    onset, apex, offset, estimated = _timing(
        row["onset"],
        row.get("apex", ""),
        row["offset"],
        _no_errata,
        log,
        warn_missing_apex="apex" in columns,
    )
    frames_dir, video = row.get("frames_dir", "").strip(), row.get("video", "").strip()
    video_path = _resolve_path(video, base) if video else None
    if frames_dir:
        folder = _resolve_path(frames_dir, base)
        n_frames = _count_frames(folder, onset, offset, log)
        frames_dir = str(folder)
    elif video_path is not None:
        if not video_path.is_file():
            raise _SkipClipError(VIDEO_MISSING, f"video file {video_path} not found")
        n_frames = offset - onset + 1
    else:
        raise _SkipClipError(BAD_ROW, "neither frames_dir nor video is given")
    aus_text, raw_text = row.get("aus", ""), row.get("au_raw", "")
    aus = _read_aus(aus_text if aus_text.strip() else raw_text, None, log)
    fps = _table_fps(row.get("fps", ""), log)
    flagged = _parse_bool(row.get("apex_estimated", ""))
    if flagged is None:
        log.warn(f"apex_estimated {row['apex_estimated']!r} is not true/false; false used")
    prior = row.get("notes", "").strip()
    return {
        "dataset": row.get("dataset", "").strip() or DEFAULT_DATASET,
        "subject": subject,
        "clip": clip,
        "frames_dir": frames_dir,
        "video": str(video_path) if video_path is not None else "",
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "n_frames": n_frames,
        "fps": fps,
        "au_raw": raw_text if raw_text.strip() else aus_text,
        "aus": aus,
        "emotion": row.get("emotion", "").strip(),
        "apex_estimated": estimated or bool(flagged),
        "notes": "; ".join(([prior] if prior else []) + log.notes),
    }


def build_from_table(table: Path, strict: bool = False) -> ManifestResult:
    """Build a manifest from the user's own CSV table.

    The table has manifest columns (see ``data_manifests/README.md``). Required: ``subject``,
    ``clip``, ``onset``, ``offset``, ``aus`` or ``au_raw`` (any AU notation of
    :func:`~au_llm.data.au_codes.parse_au_cell`), and ``frames_dir`` or ``video`` (per row, one of
    them non-empty; relative paths are resolved against the table's folder). Missing optional
    columns get defaults: ``dataset`` ``custom``, ``apex`` the middle frame, ``fps`` 200,
    ``emotion``/``notes`` empty. A frames folder is checked like the datasets' (every frame of
    onset..offset present); a video must exist and is not opened (``n_frames`` = offset-onset+1).

    Args:
        table: The CSV file.
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.

    Returns:
        The manifest with its report (rows are numbered as in Excel: the header is row 1).

    Raises:
        ManifestError: The table is missing or unreadable, a required column is missing, or any
            problem when strict.
    """
    table = Path(table)
    data = _read_csv_strings(table, "table")
    columns = set(data.columns)
    required = [("subject",), ("clip",), ("onset",), ("offset",)]
    required += [("aus", "au_raw"), ("frames_dir", "video")]
    for options in required:
        if not columns.intersection(options):
            raise ManifestError(
                f"{table}: missing column {' or '.join(repr(name) for name in options)} "
                "(required: subject, clip, onset, offset, aus or au_raw, frames_dir or video)"
            )
    base = table.parent.resolve()
    report = _Report(table, strict)
    records: list[dict[str, object]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, row in enumerate(data.to_dict("records")):
        number = index + 2
        if not any(str(value).strip() for value in row.values()):
            continue
        subject, clip = row["subject"].strip(), row["clip"].strip()
        if not subject or not clip:
            missing = " and ".join(name for name in ("subject", "clip") if not row[name].strip())
            report.skip(BAD_ROW, f"row has no {missing}", subject, clip, number)
            continue
        identity = (row.get("dataset", "").strip() or DEFAULT_DATASET, subject, clip)
        if identity in seen:
            first = seen[identity]
            report.skip(
                DUPLICATE, f"clip listed again (first at row {first})", subject, clip, number
            )
            continue
        seen[identity] = number
        log = _ClipLog()
        try:
            record = _table_record(row, columns, base, subject, clip, log)
        except _SkipClipError as skip:
            report.skip(skip.kind, skip.reason, subject, clip, number)
            continue
        for warning in log.warnings:
            report.warn(warning, subject, clip, number)
        records.append(record)
    return report.result(records)


def build_manifest(
    kind: str,
    *,
    root: Path | None = None,
    coding: Path | None = None,
    table: Path | None = None,
    strict: bool = False,
) -> ManifestResult:
    """Build a manifest of one kind (the ``au-llm manifest`` command).

    Args:
        kind: ``casme2``, ``samm`` (need ``root`` and ``coding``) or ``csv`` (needs ``table``).
        root: Frames root folder of a dataset.
        coding: The dataset's annotation spreadsheet.
        table: The user's CSV table.
        strict: Raise on the first skipped clip or warning.

    Returns:
        The manifest with its report.

    Raises:
        ManifestError: Unknown kind, missing arguments, or as raised by the builder.
    """
    name = kind.strip().lower()
    if name in ("casme2", "samm"):
        if root is None or coding is None:
            raise ManifestError(
                f"manifest {name} needs root (the frames folder) and coding (the annotation file)"
            )
        builder = build_casme2 if name == "casme2" else build_samm
        return builder(Path(root), Path(coding), strict=strict)
    if name == "csv":
        if table is None:
            raise ManifestError("manifest csv needs table (the CSV file)")
        return build_from_table(Path(table), strict=strict)
    raise ManifestError(
        f"unknown manifest kind {kind!r}: expected one of {', '.join(MANIFEST_KINDS)}"
    )


# ----------------------------------------------------------------------------------------------
# Manifest files


def write_manifest(frame: pd.DataFrame, out: Path) -> None:
    """Write a manifest CSV atomically (manifest columns first, extra columns kept after them).

    Args:
        frame: A manifest, e.g. :attr:`ManifestResult.frame`.
        out: Destination CSV; its folder is created.

    Raises:
        ManifestError: A manifest column is missing from ``frame``.
    """
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise ManifestError(f"{out}: cannot write the manifest, column {missing[0]!r} is missing")
    extra = [column for column in frame.columns if column not in MANIFEST_COLUMNS]
    atomic_write_csv(out, frame[MANIFEST_COLUMNS + extra])


def _int_value(path: Path, row: int, column: str, text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"-?\d+(?:\.0*)?", value):
        raise ManifestError(f"{path}, row {row}: {column} {text!r} is not an integer")
    return int(float(value))


def read_manifest(path: Path) -> pd.DataFrame:
    """Read and validate a manifest CSV.

    ``subject`` and ``clip`` stay strings (``006``, ``sub01``); ``onset``, ``apex``, ``offset``,
    ``n_frames`` are ints, ``fps`` float, ``apex_estimated`` bool, ``aus`` canonical (``"4+7"``,
    ``""`` for none). Relative ``frames_dir``/``video`` paths are resolved against the manifest's
    folder. Optional columns (``frames_dir`` or ``video`` but not both, ``fps``, ``au_raw``,
    ``emotion``, ``apex_estimated``, ``notes``) get defaults when absent.

    Args:
        path: The manifest CSV.

    Returns:
        The manifest, columns :data:`MANIFEST_COLUMNS` first, extra columns after.

    Raises:
        ManifestError: Missing file, missing column, or a value of the wrong type; the message
            names the file, the row (header = row 1) and the column.
    """
    path = Path(path)
    data = _read_csv_strings(path, "manifest")
    expected = f"a manifest has the columns {', '.join(MANIFEST_COLUMNS)}"
    for column in (*REQUIRED_MANIFEST_COLUMNS, "aus"):
        if column not in data.columns:
            raise ManifestError(f"{path}: missing column {column!r} ({expected})")
    if "frames_dir" not in data.columns and "video" not in data.columns:
        raise ManifestError(f"{path}: missing column 'frames_dir' or 'video' ({expected})")
    defaults = {"frames_dir": "", "video": "", "emotion": "", "notes": "", "apex_estimated": ""}
    for column, value in defaults.items():
        if column not in data.columns:
            data[column] = value
    if "fps" not in data.columns:
        data["fps"] = str(DEFAULT_FPS)
    if "au_raw" not in data.columns:
        data["au_raw"] = data["aus"]
    base = path.parent.resolve()
    records = []
    for index, row in enumerate(data.to_dict("records")):
        number = index + 2
        record: dict[str, object] = dict(row)
        for column in INT_COLUMNS:
            record[column] = _int_value(path, number, column, row[column])
        try:
            record["fps"] = float(row["fps"])
            record["aus"] = format_aus(parse_aus(row["aus"]))
        except ValueError as exc:
            raise ManifestError(f"{path}, row {number}: {exc}") from exc
        flagged = _parse_bool(row["apex_estimated"])
        if flagged is None:
            raise ManifestError(
                f"{path}, row {number}: apex_estimated {row['apex_estimated']!r} is not true/false"
            )
        record["apex_estimated"] = flagged
        if not row["frames_dir"].strip() and not row["video"].strip():
            raise ManifestError(f"{path}, row {number}: neither frames_dir nor video is given")
        for column in ("frames_dir", "video"):
            text = row[column].strip()
            record[column] = str(_resolve_path(text, base)) if text else ""
        records.append(record)
    extra = [column for column in data.columns if column not in MANIFEST_COLUMNS]
    frame = _typed_frame(
        [{column: record[column] for column in MANIFEST_COLUMNS} for record in records]
    )
    for column in extra:
        frame[column] = [record[column] for record in records]
    return frame


def au_label_matrix(frame: pd.DataFrame, aus: Sequence[int]) -> np.ndarray:
    """Binary AU labels of a manifest.

    Args:
        frame: A manifest with a canonical ``aus`` column.
        aus: The AU numbers to label, in output order.

    Returns:
        float32 array [N, len(aus)]: 1 where the clip's ``aus`` contains the AU, else 0.

    Raises:
        ManifestError: No ``aus`` column, or a value that is not a canonical AU list.
    """
    if "aus" not in frame.columns:
        raise ManifestError("manifest has no 'aus' column")
    wanted = [int(au) for au in aus]
    labels = np.zeros((len(frame), len(wanted)), dtype=np.float32)
    for index, text in enumerate(frame["aus"].tolist()):
        try:
            present = set(parse_aus(text))
        except ValueError as exc:
            clip = frame["clip"].iloc[index] if "clip" in frame.columns else index
            raise ManifestError(f"manifest clip {clip}: {exc}") from exc
        labels[index] = [au in present for au in wanted]
    return labels
