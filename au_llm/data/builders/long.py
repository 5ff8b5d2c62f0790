"""One builder for the long-video datasets: SAMM-LV, CAS(ME)^2 and CAS(ME)^3 Part A.

Each annotated expression becomes one manifest row that can be trained on as an ordinary clip
(its onset..offset frames), with two more columns: ``recording`` (the recording's id within its
subject; ``frames_dir`` is the whole recording's folder, so a spotter reads it from there) and
``kind`` (``micro`` or ``macro``, as the file says). Clip ids: SAMM-LV's ``Filename``
(``006_1_3``), CAS(ME)^2's expression name (``disgust1_2``), CAS(ME)^3's
``<recording>_<onset>-<offset>`` (its rows name only the recording).

Bad rows are reported with their file and row and left out (``strict``: the build fails):

* no subject, an unknown subject index or stimulus (CAS(ME)^2's naming sheets), a ``Filename``
  that is not ``<subject>_<recording>_<expression>`` (SAMM-LV);
* a type cell that names neither kind;
* a recording folder that is missing or holds no frames, frames missing inside onset..offset;
* an onset after the offset, and an interval that starts before the recording's first frame or
  ends after its last (the real SAMM-LV file has two, ``020_6_5`` and ``036_7_4``);
* a row repeating another's recording, onset and offset (a duplicate).

A 0 in onset, apex or offset of a recording without a frame 0 means "not annotated", as the
MEGC spotting code reads these files: an apex 0 is estimated as the middle frame (noted); an
onset or offset 0 is replaced by the apex (warned); with the apex 0 too the row is left out.
Intervals that overlap another of the same recording are kept and noted.
"""

from __future__ import annotations

from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.long_formats import long_format
from au_llm.data.builders.long_tables import LongRow, read_long_rows
from au_llm.data.frames import FrameScan, describe_missing, missing_frames, scan_frames
from au_llm.data.manifest import RECORDING_COLUMNS, ManifestError
from au_llm.data.rows import (
    BAD_ROW,
    BAD_TIMING,
    DUPLICATE,
    FOLDER_MISSING,
    FRAMES_MISSING,
    NO_FRAMES,
    BuildReport,
    ClipLog,
    ManifestResult,
    SkipClipError,
    no_errata,
    read_aus,
    read_timing,
)

BEYOND_RECORDING = "interval outside the recording"
UNKNOWN_TYPE = "unknown expression type"


class _Recordings:
    """Frame scans of the recording folders, one scan per folder."""

    def __init__(self) -> None:
        self.scans: dict[Path, FrameScan] = {}
        self.owners: dict[Path, tuple[str, str]] = {}

    def scan(self, row: LongRow) -> FrameScan:
        """The frames of a row's recording (the scan's warnings are reported once, at the end)."""
        folder = row.folder
        if folder not in self.scans:
            if not folder.is_dir():
                raise SkipClipError(FOLDER_MISSING, f"recording folder {folder} not found")
            self.scans[folder] = scan_frames(folder)
            self.owners[folder] = (row.subject, row.recording)
        scan = self.scans[folder]
        if not scan.frames:
            raise SkipClipError(NO_FRAMES, f"no image frames (jpg, jpeg, png, bmp) in {folder}")
        return scan


def _zero(value: object) -> bool:
    return cell_text(value).strip() in ("0", "0.0")


def _unannotated(
    cells: dict[str, object], frames: dict[int, Path], log: ClipLog
) -> dict[str, object]:
    """Cells with a 0 that is no frame of the recording read as "not annotated"."""
    cells = dict(cells)
    if 0 in frames:
        return cells
    if _zero(cells["apex"]):
        cells["apex"] = None
        log.notes.append("apex 0: not annotated")
    for name in ("onset", "offset"):
        if _zero(cells[name]):
            if cells["apex"] is None:
                raise SkipClipError(BAD_TIMING, f"{name} 0 (not annotated) and no apex to use")
            log.warn(f"{name} 0 (not annotated): the apex {cell_text(cells['apex'])} used")
            cells[name] = cells["apex"]
    return cells


def _inside(frames: dict[int, Path], onset: int, offset: int, folder: Path) -> int:
    """Check onset..offset lies within the recording and every frame is there."""
    first, last = min(frames), max(frames)
    if onset < first or offset > last:
        raise SkipClipError(
            BEYOND_RECORDING,
            f"interval {onset}-{offset} runs outside the recording's frames {first}-{last} "
            f"in {folder}",
        )
    missing = missing_frames(frames, onset, offset)
    if missing:
        raise SkipClipError(
            FRAMES_MISSING, f"{describe_missing(missing, onset, offset)} in {folder}"
        )
    return offset - onset + 1


def _record(
    name: str, fps: float, row: LongRow, recordings: _Recordings, log: ClipLog
) -> dict[str, object]:
    if row.kind is None:
        types = long_format(name).types_text()
        raise SkipClipError(
            UNKNOWN_TYPE, f"type {row.type_cell!r} names no expression type (expected {types})"
        )
    scan = recordings.scan(row)
    cells = _unannotated(row.cells, scan.frames, log)
    onset, apex, offset, estimated = read_timing(
        cells["onset"],
        cells["apex"],
        cells["offset"],
        no_errata,
        log,
        warn_missing_apex=cells["apex"] is not None,
    )
    n_frames = _inside(scan.frames, onset, offset, row.folder)
    return {
        "dataset": name,
        "subject": row.subject,
        "clip": row.clip or f"{row.recording}_{onset}-{offset}",
        "frames_dir": str(row.folder),
        "video": "",
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "n_frames": n_frames,
        "fps": fps,
        "au_raw": cell_text(row.cells["aus"]),
        "aus": read_aus(row.cells["aus"], None, log),
        "emotion": cell_text(row.cells["emotion"]).strip(),
        "apex_estimated": estimated,
        "notes": "",
        "recording": row.recording,
        "kind": row.kind,
    }


def _note_overlaps(records: list[dict[str, object]]) -> None:
    """Add to each record's notes the other intervals of its recording it overlaps."""
    by_recording: dict[tuple[object, object], list[dict[str, object]]] = {}
    for record in records:
        by_recording.setdefault((record["subject"], record["recording"]), []).append(record)
    for group in by_recording.values():
        for record in group:
            others = [
                f"{other['clip']} ({other['onset']}-{other['offset']})"
                for other in group
                if other is not record
                and int(str(other["onset"])) <= int(str(record["offset"]))
                and int(str(record["onset"])) <= int(str(other["offset"]))
            ]
            if others:
                note = f"overlaps {', '.join(others)}"
                record["notes"] = "; ".join(p for p in (str(record["notes"]), note) if p)


def build_long_dataset(
    name: str, root: Path, codings: list[Path], strict: bool = False
) -> ManifestResult:
    """Build the manifest of SAMM-LV, CAS(ME)^2 or CAS(ME)^3 long videos.

    Args:
        name: ``samm-lv``, ``casme-sq-lv`` or ``casme3-lv``.
        root: The frames root (see :mod:`au_llm.data.builders.long_formats` for each layout).
        codings: The label file(s): SAMM-LV's and CAS(ME)^2's one; CAS(ME)^3's micro- and/or
            macro-expression files.
        strict: Raise :class:`ManifestError` on the first skipped row or warning.

    Returns:
        The manifest (one row per annotated expression, with ``recording`` and ``kind``) and
        its report.

    Raises:
        ManifestError: Unknown dataset, missing or unreadable files, no header row, or any
            problem when strict.
    """
    try:
        spec = long_format(name)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    root = Path(root).resolve()
    if not codings:
        raise ManifestError(f"manifest {name} needs the annotation file (coding)")
    if not root.is_dir():
        raise ManifestError(f"{root}: frames root folder not found (for {codings[0]})")
    paths = [Path(path) for path in codings]
    rows = read_long_rows(spec, root, paths)
    reports = {path: BuildReport(path, strict) for path in paths}
    recordings = _Recordings()
    records: list[dict[str, object]] = []
    seen: dict[tuple[str, ...], str] = {}
    clips: dict[tuple[str, str], int] = {}
    for row in rows:
        report = reports[row.source]
        if row.problem is not None:
            report.skip(BAD_ROW, f"row has {row.problem}", row.subject, row.clip, row.row)
            continue
        log = ClipLog()
        try:
            record = _record(spec.name, spec.fps, row, recordings, log)
        except SkipClipError as skip:
            report.skip(skip.kind, skip.reason, row.subject, row.clip, row.row)
            continue
        key = (row.subject, row.recording, str(record["onset"]), str(record["offset"]))
        clip = str(record["clip"])
        if key in seen:
            reason = f"the interval of {seen[key]} listed again"
            report.skip(DUPLICATE, reason, row.subject, clip, row.row)
            continue
        seen[key] = f"{clip} ({row.source.name} row {row.row})"
        count = clips.get((row.subject, clip), 0) + 1
        clips[(row.subject, clip)] = count
        if count > 1:
            record["clip"] = f"{clip}_{count}"
            log.notes.append(f"{clip!r} names another interval too; clip id {record['clip']!r}")
        record["notes"] = "; ".join(log.notes)
        for warning in log.warnings:
            report.warn(warning, row.subject, str(record["clip"]), row.row)
        records.append(record)
    _note_overlaps(records)
    merged = reports[paths[0]]
    for folder, scan in recordings.scans.items():
        for message in scan.messages:  # ignored or doubled frame files, once per recording
            merged.warn(message, *recordings.owners[folder], None)
    for path in paths[1:]:
        merged.skipped += reports[path].skipped
        merged.warnings += reports[path].warnings
    result = merged.result(records, extra_columns=RECORDING_COLUMNS)
    result.source = " + ".join(str(path) for path in paths)
    return result
