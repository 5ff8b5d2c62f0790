"""Reading one clip of an annotation file, and the row loop every manifest builder runs.

Builders never key anything by row index: clips are identified by subject + clip name
(:class:`LabelClip`), and :func:`read_label_clips` reads them one by one into manifest records,
reporting each clip it leaves out or warns about (:class:`~au_llm.data.report.BuildReport`).
Errata (:mod:`au_llm.data.errata`) reach a clip through its
:class:`~au_llm.data.errata_ledger.ClipErrata`; every message about a value an erratum set names
the erratum.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from au_llm.data.au_codes import cell_text, format_aus, parse_au_cell
from au_llm.data.errata import FRAME_FIELDS, Errata, Erratum
from au_llm.data.errata_ledger import ClipErrata, ErrataLedger, LabelRow
from au_llm.data.frames import describe_missing, missing_frames, scan_frames
from au_llm.data.report import BuildReport

# Kinds of skipped clips, used to group the summary.
BAD_ROW = "bad row"
BAD_TIMING = "bad onset/offset"
FOLDER_MISSING = "frames folder missing"
NO_FRAMES = "no frames in folder"
FRAMES_MISSING = "frames missing"
VIDEO_MISSING = "video missing"
DUPLICATE = "duplicate clip"

_FRAME_TEXT = re.compile(r"^(\d+)(?:\.0*)?\s*(\?)?$")


class SkipClipError(Exception):
    """Raised while reading one row: the clip is left out for ``reason``.

    ``clip``: the clip's id where the reading gave it one (else the row's).
    """

    def __init__(self, kind: str, reason: str, clip: str = "") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.clip = clip


@dataclass
class ClipLog:
    """Notes and warnings of one clip, emitted only when the clip is written.

    Attributes:
        notes: The clip's notes.
        warnings: The notes that are also build warnings.
        set_by: Frame field -> the erratum that set its value.
    """

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    set_by: dict[str, Erratum] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        """Add ``message`` to the clip's notes and to the build's warnings."""
        self.notes.append(message)
        self.warnings.append(message)

    def sources(self, *names: str) -> str:
        """`` (offset from erratum ...)`` for the fields of ``names`` set by errata, else ``""``."""
        listed = [
            f"{name} from {self.set_by[name].origin}" for name in names if name in self.set_by
        ]
        return f" ({'; '.join(listed)})" if listed else ""

    def explain(self, reason: str) -> str:
        """A reason for leaving the clip out, naming the errata that set its frames."""
        unnamed = [
            name
            for name in FRAME_FIELDS
            if name in self.set_by and self.set_by[name].origin not in reason
        ]
        return reason + self.sources(*unnamed)


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


def _boundary(name: str, raw: object, errata: ClipErrata, log: ClipLog) -> int:
    """Read the onset or offset; an erratum for an invalid value replaces a missing one."""
    frame, unclear = _parse_frame(raw)
    if frame is not None:
        if unclear:
            log.notes.append(f"{name} {cell_text(raw).strip()!r} marked unclear; {frame} used")
        return frame
    erratum = errata.get(name)
    if erratum is None or not erratum.conditional:
        raise SkipClipError(BAD_TIMING, _not_a_frame(name, raw))
    log.notes.append(f"{_not_a_frame(name, raw)}; {erratum.frame} used ({erratum.origin})")
    log.set_by[name] = erratum
    errata.apply(erratum)
    return erratum.frame


def _ordered(onset: int, offset: int, errata: ClipErrata, log: ClipLog) -> tuple[int, int]:
    """Check onset <= offset; errata for invalid boundaries may repair an inverted pair."""
    if onset <= offset:
        return onset, offset
    original = {"onset": onset, "offset": offset}
    fixed = dict(original)
    for name in fixed:
        erratum = errata.get(name)
        if erratum is not None and erratum.conditional and name not in log.set_by:
            fixed[name] = erratum.frame
    changed = [name for name in fixed if fixed[name] != original[name]]
    if not changed or fixed["onset"] > fixed["offset"]:
        raise SkipClipError(
            BAD_TIMING, f"onset {onset} is after offset {offset}{log.sources('onset', 'offset')}"
        )
    for name in changed:
        erratum = errata.get(name)
        if erratum is not None:
            log.set_by[name] = erratum
            errata.apply(erratum)
    log.notes.append(
        f"onset {onset} is after offset {offset}; errata give {fixed['onset']}-{fixed['offset']}"
        f" ({', '.join(changed)} corrected)"
    )
    return fixed["onset"], fixed["offset"]


def _apex(
    raw: object,
    onset: int,
    offset: int,
    errata: ClipErrata,
    log: ClipLog,
    warn_missing: bool,
) -> tuple[int, bool]:
    """Return (apex, estimated); see the module docs for the rules."""
    frame, unclear = _parse_frame(raw)
    if frame is not None and onset <= frame <= offset:
        if unclear:
            log.notes.append(f"apex {cell_text(raw).strip()!r} marked unclear; {frame} used")
        return frame, False
    span = f"onset..offset {onset}-{offset}{log.sources('onset', 'offset')}"
    if frame is None:
        problem = _not_a_frame("apex", raw)
    else:
        problem = f"apex {frame}{log.sources('apex')} lies outside {span}"
    erratum = errata.get("apex")
    if erratum is not None and erratum.conditional and "apex" not in log.set_by:
        if onset <= erratum.frame <= offset:
            log.notes.append(f"{problem}; {erratum.frame} used ({erratum.origin})")
            log.set_by["apex"] = erratum
            errata.apply(erratum)
            return erratum.frame, False
        reason = f"its apex {erratum.frame} lies outside {span}"
        log.warn(f"erratum apex {erratum.frame} not applied: {reason} ({erratum.origin})")
        errata.decline(erratum, reason)
    middle = (onset + offset) // 2
    message = f"{problem}; middle frame {middle} used"
    if warn_missing:
        log.warn(message)
    else:
        log.notes.append(message)
    return middle, True


def read_timing(
    raw_onset: object,
    raw_apex: object,
    raw_offset: object,
    errata: ClipErrata,
    log: ClipLog,
    *,
    warn_missing_apex: bool = True,
) -> tuple[int, int, int, bool]:
    """Read onset, apex, offset with errata; returns (onset, apex, offset, apex_estimated).

    An erratum that names the exact value it replaces replaces it; one for an invalid value
    (:data:`~au_llm.data.errata.OLD_INVALID`) replaces a value the rules cannot use and is
    declined, with a note, where the file's value is valid. Every message about a value an
    erratum set names the erratum; ``log.set_by`` keeps them for the clip's other messages.
    """
    cells: dict[str, object] = {"onset": raw_onset, "apex": raw_apex, "offset": raw_offset}
    for name in FRAME_FIELDS:
        erratum = errata.get(name)
        if erratum is not None and not erratum.conditional:
            shown = cell_text(cells[name]).strip()
            log.notes.append(f"{name} {shown!r} replaced by {erratum.value} ({erratum.origin})")
            cells[name] = erratum.frame
            log.set_by[name] = erratum
            errata.apply(erratum)
    onset = _boundary("onset", cells["onset"], errata, log)
    offset = _boundary("offset", cells["offset"], errata, log)
    onset, offset = _ordered(onset, offset, errata, log)
    apex, estimated = _apex(cells["apex"], onset, offset, errata, log, warn_missing_apex)
    final = {"onset": onset, "apex": apex, "offset": offset}
    for name in FRAME_FIELDS:
        erratum = errata.get(name)
        if erratum is not None and name not in log.set_by and erratum not in errata.declined:
            reason = f"the file's {name} {final[name]} is valid"
            log.notes.append(f"erratum {name} {erratum.value} not applied: {reason}")
            errata.decline(erratum, reason)
    return onset, apex, offset, estimated


def count_frames(folder: Path, onset: int, offset: int, log: ClipLog) -> int:
    """Check that every frame of onset..offset is in ``folder``; returns their number."""
    if not folder.is_dir():
        raise SkipClipError(FOLDER_MISSING, f"frames folder {folder} not found")
    scan = scan_frames(folder)
    if not scan.frames:
        raise SkipClipError(NO_FRAMES, f"no image frames (jpg, jpeg, png, bmp) in {folder}")
    missing = missing_frames(scan.frames, onset, offset)
    if missing:
        raise SkipClipError(
            FRAMES_MISSING, f"{describe_missing(missing, onset, offset)} in {folder}"
        )
    for message in scan.messages:
        log.warn(message)
    return offset - onset + 1


def read_aus(cell: object, errata: ClipErrata, log: ClipLog) -> str:
    """Read an AU cell into the canonical form; notes and warnings go to ``log``.

    An erratum naming the exact cell replaces it; one for AU alternatives
    (:data:`~au_llm.data.errata.OLD_ALTERNATIVES`) resolves them and is declined where the cell
    names none.
    """
    erratum = errata.get("aus")
    resolved = None
    if erratum is not None and not erratum.conditional:
        shown = cell_text(cell).strip()
        log.notes.append(f"AU cell {shown!r} replaced by {erratum.value!r} ({erratum.origin})")
        errata.apply(erratum)
        cell = erratum.value
    elif erratum is not None:
        resolved = erratum.value
    parsed = parse_au_cell(cell, resolved=resolved)
    notes = list(parsed.notes)
    if erratum is not None and resolved is not None:
        if parsed.resolved_by_erratum:
            notes[0] = f"{notes[0]} ({erratum.origin})"
            errata.apply(erratum)
        else:
            errata.decline(erratum, f"{cell_text(cell).strip()!r} names no AU alternative")
    warnings = set(parsed.warnings)
    for note in notes:
        if note in warnings:
            log.warn(note)
        else:
            log.notes.append(note)
    return format_aus(parsed.aus)


@dataclass(frozen=True)
class LabelClip:
    """One data row of an annotation file, identified before any clip is read.

    Attributes:
        label: Row number, subject, ``Filename`` and the cells the errata compare.
        clip: The clip id the manifest gets (``""`` where the clip's interval names it).
        cells: Role (``onset``, ``aus``, ``emotion``, ...) -> the cell as written.
        source: The annotation file.
        problem: (kind, reason) when the row is left out before reading (bad row, duplicate).
        folder: The frames folder of the clip (long videos: of its recording), where the row
            names one.
        recording: The recording's id within its subject (long videos), else ``""``.
        kind: ``micro`` or ``macro`` (long videos); None where the row names neither.
    """

    label: LabelRow
    clip: str
    cells: Mapping[str, object]
    source: Path
    problem: tuple[str, str] | None = None
    folder: Path | None = None
    recording: str = ""
    kind: str | None = None


ClipReader = Callable[[LabelClip, ClipErrata, ClipLog], dict[str, object]]
"""Reads one identified clip into a manifest record (raises :class:`SkipClipError`)."""


def read_label_clips(
    report: BuildReport,
    clips: Sequence[LabelClip],
    errata: Errata,
    dataset: str,
    read: ClipReader,
) -> tuple[list[dict[str, object]], ErrataLedger]:
    """The row loop of every builder: each clip read by ``read``, or reported and left out.

    The errata of ``dataset`` are matched to the clips first
    (:class:`~au_llm.data.errata_ledger.ErrataLedger`), then each clip is read; a row with a
    problem is skipped with it, a clip that cannot be read is skipped naming the errata that set
    its frames, and a clip's warnings are reported under its manifest id.

    Returns:
        The records read, and the errata ledger (for :meth:`BuildReport.result`).
    """
    ledger = ErrataLedger(errata, dataset, [item.label for item in clips if item.problem is None])
    records: list[dict[str, object]] = []
    for item in clips:
        row, subject = item.label.row, item.label.subject
        if item.problem is not None:
            report.skip(*item.problem, subject, item.clip, row, item.source)
            continue
        log = ClipLog()
        try:
            record = read(item, ledger.clip(item.label), log)
        except SkipClipError as skip:
            reason = log.explain(skip.reason)
            report.skip(skip.kind, reason, subject, skip.clip or item.clip, row, item.source)
            continue
        for warning in log.warnings:
            report.warn(warning, subject, str(record["clip"]), row, item.source)
        records.append(record)
    return records, ledger
