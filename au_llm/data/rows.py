"""What the manifest builders share: the build result and its report, and reading one clip.

Builders never key anything by row index: clips are identified by subject + clip name, and every
report names the annotation file, the row as Excel shows it and the clip. A clip whose frames or
timing are unusable is reported in :attr:`ManifestResult.skipped` and left out; a questionable
reading (AU alternatives, an estimated apex, ...) is reported in :attr:`ManifestResult.warnings` and
in the clip's ``notes``. With ``strict=True`` any of these raises
:class:`~au_llm.data.manifest.ManifestError` instead.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from au_llm.data.au_codes import cell_text, format_aus, parse_au_cell
from au_llm.data.errata import FRAME_FIELDS, Erratum
from au_llm.data.frames import describe_missing, missing_frames, scan_frames
from au_llm.data.manifest import ManifestError, similar_subjects, typed_frame

logger = logging.getLogger(__name__)

# Kinds of skipped clips, used to group the summary.
BAD_ROW = "bad row"
BAD_TIMING = "bad onset/offset"
FOLDER_MISSING = "frames folder missing"
NO_FRAMES = "no frames in folder"
FRAMES_MISSING = "frames missing"
VIDEO_MISSING = "video missing"
DUPLICATE = "duplicate clip"

_FRAME_TEXT = re.compile(r"^(\d+)(?:\.0*)?\s*(\?)?$")


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


class SkipClipError(Exception):
    """Raised while reading one row: the clip is left out for ``reason``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BuildReport:
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
        """Leave a clip out for ``reason`` (group ``kind``); raises when strict."""
        self._strict_error(subject, clip, row, f"{reason}; the clip would be left out")
        item = SkippedClip(clip=clip, subject=subject, reason=reason, row=row, kind=kind)
        logger.warning("%s: %s; clip left out", self.source, item.describe())
        self.skipped.append(item)

    def warn(self, message: str, subject: str, clip: str, row: int | None) -> None:
        """Record a warning about a written clip; raises when strict."""
        self._strict_error(subject, clip, row, message)
        where = f"{subject or '?'}/{clip or '?'}" + (f" (row {row})" if row is not None else "")
        text = f"{where}: {message}"
        logger.warning("%s: %s", self.source, text)
        self.warnings.append(text)

    def result(
        self, records: list[dict[str, object]], extra_columns: tuple[str, ...] = ()
    ) -> ManifestResult:
        """The manifest of ``records`` with the skipped clips and warnings collected.

        Subject ids that differ only by case, padding or spaces are warned about (raises when
        strict).

        Args:
            records: One dict per clip, keyed by manifest column.
            extra_columns: Optional text columns the records also have (e.g.
                :data:`~au_llm.data.manifest.RECORDING_COLUMNS`), kept after the manifest's.
        """
        frame = typed_frame(records, extra_columns)
        for message in similar_subjects(frame):
            if self.strict:
                raise ManifestError(f"{self.source}: {message} (strict mode)")
            logger.warning("%s: %s", self.source, message)
            self.warnings.append(message)
        return ManifestResult(frame, self.skipped, self.warnings, str(self.source))


@dataclass
class ClipLog:
    """Notes and warnings of one clip, emitted only when the clip is written."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Add ``message`` to the clip's notes and to the build's warnings."""
        self.notes.append(message)
        self.warnings.append(message)


Lookup = Callable[[str], Erratum | None]


def no_errata(_field: str) -> Erratum | None:
    """A :data:`Lookup` that finds no erratum (the user's table has none)."""
    return None


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


def _boundary(name: str, raw: object, lookup: Lookup, log: ClipLog) -> tuple[int, bool]:
    """Read the onset or offset; an erratum replaces it only when missing or not a number."""
    frame, unclear = _parse_frame(raw)
    if frame is not None:
        if unclear:
            log.notes.append(f"{name} {cell_text(raw).strip()!r} marked unclear; {frame} used")
        return frame, False
    erratum = lookup(name)
    if erratum is None:
        raise SkipClipError(BAD_TIMING, _not_a_frame(name, raw))
    log.notes.append(f"{_not_a_frame(name, raw)}; {erratum.frame} used ({erratum.origin})")
    return erratum.frame, True


def _ordered(
    onset: int, offset: int, handled: set[str], lookup: Lookup, log: ClipLog
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
        raise SkipClipError(BAD_TIMING, f"onset {onset} is after offset {offset}")
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
    lookup: Lookup,
    log: ClipLog,
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


def read_timing(
    raw_onset: object,
    raw_apex: object,
    raw_offset: object,
    lookup: Lookup,
    log: ClipLog,
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


def read_aus(cell: object, erratum: Erratum | None, log: ClipLog) -> str:
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
