"""What the manifest builders share: the build result and its report, and reading one clip.

Builders never key anything by row index: clips are identified by subject + clip name, and every
report names the annotation file, the row as Excel shows it and the clip. A clip whose frames or
timing are unusable is reported in :attr:`ManifestResult.skipped` and left out; a questionable
reading (AU alternatives, an estimated apex, ...) is reported in :attr:`ManifestResult.warnings` and
in the clip's ``notes``. With ``strict=True`` any of these raises
:class:`~au_llm.data.manifest.ManifestError` instead. Errata (:mod:`au_llm.data.errata`) reach a
clip through its :class:`~au_llm.data.errata_ledger.ClipErrata`; every message about a value an
erratum set names the erratum.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from au_llm.data.au_codes import cell_text, format_aus, parse_au_cell, parse_aus
from au_llm.data.au_sets import DATASET_AU_SETS, unknown_aus
from au_llm.data.errata import FRAME_FIELDS, Errata, Erratum
from au_llm.data.errata_ledger import ClipErrata, ErrataLedger, LabelRow
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
        errata_applied: Errata applied (each is in its clip's ``notes``).
        errata_skipped: Errata of the dataset not applied.
        errata_lines: Why they were not: a line per erratum naming a clip, a line per row for
            errata that name none (with what that row of the file holds).
        outside_set: (dataset, AU) -> clips coding that AU although it lies outside the
            dataset's AU set (:mod:`au_llm.data.au_sets`); with ``data.uncoded_aus: unknown``
            those positives become unknown labels. Each such clip has a note.
    """

    frame: pd.DataFrame
    skipped: list[SkippedClip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    errata_applied: int = 0
    errata_skipped: int = 0
    errata_lines: list[str] = field(default_factory=list)
    outside_set: dict[tuple[str, int], int] = field(default_factory=dict)

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
        if self.errata_applied or self.errata_skipped:
            lines.append(f"errata: {self.errata_applied} applied, {self.errata_skipped} skipped")
            lines.extend(f"  {line}" for line in self.errata_lines)
        for dataset in sorted({name for name, _ in self.outside_set}):
            counts = {
                au: n for (name, au), n in sorted(self.outside_set.items()) if name == dataset
            }
            listed = ", ".join(f"AU{au} in {n}" for au, n in counts.items())
            coded = ", ".join(str(au) for au in DATASET_AU_SETS[dataset])
            lines.append(
                f"AUs coded outside {dataset}'s AU set ({coded}): {listed} clips; with "
                "data.uncoded_aus=unknown these positives are unknown labels (see the clips' notes)"
            )
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
        self,
        records: list[dict[str, object]],
        ledger: ErrataLedger | None = None,
        *,
        extra_columns: tuple[str, ...] = (),
    ) -> ManifestResult:
        """The manifest of ``records`` with the skipped clips and warnings collected.

        Subject ids that differ only by case, padding or spaces are warned about (raises when
        strict). Coded AUs outside a clip's dataset AU set get a note and are counted.

        Args:
            records: One dict per clip, keyed by manifest column.
            ledger: The errata matched to the clips: the result counts those applied and
                skipped (None: no errata).
            extra_columns: Optional text columns the records also have (e.g.
                :data:`~au_llm.data.manifest.RECORDING_COLUMNS`), kept after the manifest's.
        """
        outside = _note_outside_set(records)
        frame = typed_frame(records, extra_columns)
        for message in similar_subjects(frame):
            if self.strict:
                raise ManifestError(f"{self.source}: {message} (strict mode)")
            logger.warning("%s: %s", self.source, message)
            self.warnings.append(message)
        result = ManifestResult(frame, self.skipped, self.warnings, str(self.source))
        result.outside_set = outside
        if ledger is not None:
            applied, skipped, lines = ledger.report()
            result.errata_applied, result.errata_skipped, result.errata_lines = (
                applied,
                skipped,
                lines,
            )
        return result


def _note_outside_set(records: list[dict[str, object]]) -> dict[tuple[str, int], int]:
    """Note each coded AU outside its clip's dataset AU set; (dataset, AU) -> clips."""
    counts: Counter[tuple[str, int]] = Counter()
    for record in records:
        dataset = str(record["dataset"])
        outside = unknown_aus(dataset, parse_aus(record["aus"]))
        if not outside:
            continue
        counts.update((dataset, au) for au in outside)
        listed = ", ".join(f"AU{au}" for au in outside)
        note = (
            f"{listed} coded but outside {dataset}'s AU set; with data.uncoded_aus=unknown "
            "the label is unknown, not positive"
        )
        record["notes"] = "; ".join(part for part in (str(record["notes"]), note) if part)
    return dict(counts)


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
        clip: The clip id the manifest gets.
        values: The row's cells (column index -> value).
        problem: (kind, reason) when the row is left out before reading (bad row, duplicate).
    """

    label: LabelRow
    clip: str
    values: Mapping[int, object]
    problem: tuple[str, str] | None = None


def read_label_clips(
    report: BuildReport,
    clips: Sequence[LabelClip],
    errata: Errata,
    dataset: str,
    read: Callable[[LabelClip, ClipErrata, ClipLog], dict[str, object]],
) -> ManifestResult:
    """Read the clips of one annotation file, with the errata of ``dataset``.

    The errata are matched to the clips first (:class:`~au_llm.data.errata_ledger.ErrataLedger`),
    then each clip is read by ``read``; a clip that cannot be read is skipped naming the errata
    that set its frames.

    Returns:
        The manifest with its report, errata applied and skipped included.
    """
    usable = [item.label for item in clips if item.problem is None]
    ledger = ErrataLedger(errata, dataset, usable)
    records: list[dict[str, object]] = []
    for item in clips:
        row, subject = item.label.row, item.label.subject
        if item.problem is not None:
            report.skip(*item.problem, subject, item.clip, row)
            continue
        log = ClipLog()
        try:
            record = read(item, ledger.clip(item.label), log)
        except SkipClipError as skip:
            report.skip(skip.kind, log.explain(skip.reason), subject, item.clip, row)
            continue
        for warning in log.warnings:
            report.warn(warning, subject, item.clip, row)
        records.append(record)
    return report.result(records, ledger)
