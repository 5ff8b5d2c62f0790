"""One builder for every dataset of :data:`~au_llm.data.builders.formats.DATASET_FORMATS`.

The label files are read into identified rows (:mod:`.labels`, :mod:`.naming`), then the row
loop every builder shares (:func:`~au_llm.data.rows.read_label_clips`) reads each clip:

* **Clips** (CASME II, SAMM, CASME, CAS(ME)^3 Part A, MMEW, 4DME): one manifest row per clip,
  its frames in its own folder (every frame of onset..offset present).
* **Long videos** (SAMM-LV, CAS(ME)^2, CAS(ME)^3): one manifest row per annotated expression,
  trained on as an ordinary clip (its onset..offset frames), with two more columns: ``recording``
  (``frames_dir`` is the whole recording's folder) and ``kind`` (``micro`` or ``macro``, as the
  file says). Clip ids: SAMM-LV's ``Filename`` (``006_1_3``), CAS(ME)^2's expression name
  (``disgust1_2``), CAS(ME)^3's ``<recording>_<onset>-<offset>``.

Long-video rows are left out (``strict``: the build fails) for a type cell that names neither
kind; a recording folder missing or holding no frames, frames missing inside onset..offset; an
onset after the offset, an interval that starts before the recording's first frame or ends after
its last (the real SAMM-LV file has two, ``020_6_5`` and ``036_7_4``); a row repeating another's
recording, onset and offset (a duplicate). A 0 in onset, apex or offset of a recording without a
frame 0 means "not annotated", as the MEGC spotting code reads these files: an apex 0 is
estimated as the middle frame (noted); an onset or offset 0 is replaced by the apex (warned);
with the apex 0 too the row is left out. Intervals that overlap another of the same recording
are kept and noted.

Errata (:mod:`au_llm.data.errata`) reach every dataset's rows alike: each names its clip by
subject, ``Filename`` (SAMM-LV's ``Filename``, CAS(ME)^2's expression name, CAS(ME)^3's
recording) and the value it replaces, and the summary counts those applied and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.builders.formats import DatasetFormat
from au_llm.data.builders.labels import clip_rows, recording_rows
from au_llm.data.builders.naming import named_rows
from au_llm.data.errata import Errata, ErrataError, load_errata
from au_llm.data.errata_ledger import ClipErrata
from au_llm.data.frames import FrameScan, describe_missing, missing_frames, scan_frames
from au_llm.data.manifest import RECORDING_COLUMNS, ManifestError
from au_llm.data.report import BuildReport, ManifestResult
from au_llm.data.rows import (
    BAD_TIMING,
    DUPLICATE,
    FOLDER_MISSING,
    FRAMES_MISSING,
    NO_FRAMES,
    ClipLog,
    LabelClip,
    SkipClipError,
    count_frames,
    read_aus,
    read_label_clips,
    read_timing,
)

BEYOND_RECORDING = "interval outside the recording"
UNKNOWN_TYPE = "unknown expression type"
_KEY_FRAME = re.compile(r"\(\s*k\s*\)\s*$", re.IGNORECASE)


def _without_key_frames(cell: object, log: ClipLog) -> object:
    """Drop the AU parts marked ``(k)`` of a cell (MEB counts them absent); notes say so."""
    text = cell_text(cell)
    parts = text.split("+")
    dropped = [part.strip() for part in parts if _KEY_FRAME.search(part)]
    if not dropped:
        return cell
    log.notes.append(f"AU parts marked (k) not counted: {', '.join(dropped)}")
    return "+".join(part for part in parts if not _KEY_FRAME.search(part))


def _record(
    spec: DatasetFormat,
    item: LabelClip,
    timing: tuple[int, int, int, bool],
    n_frames: int,
    aus: str,
) -> dict[str, object]:
    """A manifest record of one clip (``timing``: onset, apex, offset, apex estimated)."""
    onset, apex, offset, estimated = timing
    return {
        "dataset": spec.name,
        "subject": item.label.subject,
        "clip": item.clip,
        "frames_dir": str(item.folder),
        "video": "",
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "n_frames": n_frames,
        "fps": spec.fps,
        "au_raw": cell_text(item.cells["aus"]),
        "aus": aus,
        "emotion": cell_text(item.cells["emotion"]).strip(),
        "apex_estimated": estimated,
        "notes": "",
    }


class _Clips:
    """Reads the clips of a clip dataset, each from its own frames folder."""

    def __init__(self, spec: DatasetFormat) -> None:
        self.spec = spec

    def read(self, item: LabelClip, errata: ClipErrata, log: ClipLog) -> dict[str, object]:
        cells = item.cells
        timing = read_timing(cells["onset"], cells["apex"], cells["offset"], errata, log)
        if item.folder is None:
            raise ValueError(f"row {item.label.row}: an identified clip without a folder")
        n_frames = count_frames(item.folder, timing[0], timing[2], log)
        au_cell = cells["aus"]
        erratum = errata.get("aus")
        if self.spec.key_frame_marks and (erratum is None or erratum.conditional):
            au_cell = _without_key_frames(au_cell, log)
        aus = read_aus(au_cell, errata, log)
        if item.clip != item.label.filename:
            log.notes.append(
                f"recording {item.label.filename!r} holds several clips; clip id {item.clip!r}"
            )
        record = _record(self.spec, item, timing, n_frames, aus)
        record["notes"] = "; ".join(log.notes)
        return record


def _zero(value: object) -> bool:
    return cell_text(value).strip() in ("0", "0.0")


def _unannotated(
    cells: dict[str, object], frames: dict[int, Path], log: ClipLog
) -> dict[str, object]:
    """Cells with a 0 that is no frame of the recording read as "not annotated"."""
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


class _Expressions:
    """Reads the annotated expressions of long recordings; each recording is scanned once."""

    def __init__(self, spec: DatasetFormat) -> None:
        if spec.recordings is None:
            raise ValueError(f"{spec.name} is not a long-video dataset")
        self.spec = spec
        self.layout = spec.recordings
        self.scans: dict[Path, FrameScan] = {}
        self.owners: dict[Path, tuple[str, str]] = {}
        self.seen: dict[tuple[str, ...], str] = {}
        self.clips: dict[tuple[str, str], int] = {}

    def scan(self, item: LabelClip) -> tuple[Path, FrameScan]:
        """A row's recording folder and its frames (scan warnings: reported once, at the end)."""
        folder = item.folder
        if folder is None:
            raise ValueError(f"row {item.label.row}: an identified expression without a folder")
        if folder not in self.scans:
            if not folder.is_dir():
                raise SkipClipError(FOLDER_MISSING, f"recording folder {folder} not found")
            self.scans[folder] = scan_frames(folder)
            self.owners[folder] = (item.label.subject, item.recording)
        scan = self.scans[folder]
        if not scan.frames:
            raise SkipClipError(NO_FRAMES, f"no image frames (jpg, jpeg, png, bmp) in {folder}")
        return folder, scan

    def read(self, item: LabelClip, errata: ClipErrata, log: ClipLog) -> dict[str, object]:
        if item.kind is None:
            raise SkipClipError(
                UNKNOWN_TYPE,
                f"type {item.cells['type']!r} names no expression type "
                f"(expected {self.layout.types_text()})",
            )
        folder, scan = self.scan(item)
        cells = _unannotated(dict(item.cells), scan.frames, log)
        timing = read_timing(
            cells["onset"],
            cells["apex"],
            cells["offset"],
            errata,
            log,
            warn_missing_apex=cells["apex"] is not None,
        )
        onset, _, offset, _ = timing
        n_frames = _inside(scan.frames, onset, offset, folder)
        aus = read_aus(item.cells["aus"], errata, log)
        record = _record(self.spec, item, timing, n_frames, aus)
        subject, clip = item.label.subject, item.clip or f"{item.recording}_{onset}-{offset}"
        key = (subject, item.recording, str(onset), str(offset))
        if key in self.seen:
            raise SkipClipError(DUPLICATE, f"the interval of {self.seen[key]} listed again", clip)
        self.seen[key] = f"{clip} ({item.source.name} row {item.label.row})"
        count = self.clips.get((subject, clip), 0) + 1
        self.clips[(subject, clip)] = count
        record["clip"] = clip if count == 1 else f"{clip}_{count}"
        if count > 1:
            log.notes.append(f"{clip!r} names another interval too; clip id {record['clip']!r}")
        record["notes"] = "; ".join(log.notes)
        record.update(recording=item.recording, kind=item.kind)
        return record

    def finish(self, records: list[dict[str, object]], report: BuildReport) -> None:
        """Note overlapping intervals; report each recording's ignored or doubled frame files."""
        _note_overlaps(records)
        for folder, scan in self.scans.items():
            for message in scan.messages:
                report.warn(message, *self.owners[folder], None)


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


def _file_tags(paths: list[Path]) -> dict[Path, str]:
    """Label file -> how the errata name it: ``""`` for the only one, else its name (or path)."""
    if len(paths) == 1:
        return {paths[0]: ""}
    by_name = len({path.name for path in paths}) == len(paths)
    return {path: path.name if by_name else str(path) for path in paths}


def _label_files(spec: DatasetFormat, root: Path, paths: list[Path]) -> list[LabelClip]:
    """Every row of a dataset's label file(s), identified, in file and row order.

    Raises:
        ManifestError: A file unreadable, no header row, or missing naming sheets.
    """
    tags = _file_tags(paths)
    rows = []
    for path in paths:
        if spec.recordings is None:
            rows += clip_rows(spec, root, path, tags[path])
        elif spec.recordings.naming is not None:
            rows += named_rows(spec, root, path, tags[path])
        else:
            rows += recording_rows(spec, root, path, tags[path])
    return rows


def build_dataset(
    spec: DatasetFormat,
    root: Path,
    codings: Sequence[Path],
    *,
    strict: bool = False,
    errata: Errata | None = None,
) -> ManifestResult:
    """Build the manifest of one dataset from its label file(s) and frames root.

    Args:
        spec: The dataset's format (:data:`~au_llm.data.builders.formats.DATASET_FORMATS`).
        root: The frames root (see :mod:`au_llm.data.builders.formats` for each layout).
        codings: The label file(s): one, or up to one per :attr:`DatasetFormat.coding_names`
            (CAS(ME)^3 long videos: the micro- and/or the macro-expression file).
        strict: Raise :class:`ManifestError` on the first skipped clip or warning.
        errata: Errata; None loads ``data_manifests/errata.csv`` and ``errata_rows.csv``
            (``Errata.empty()``: none). Each names its clip and the value it replaces.

    Returns:
        The manifest with its report (long videos: one row per annotated expression, with
        ``recording`` and ``kind``).

    Raises:
        ManifestError: Missing or unreadable files, too many files, no header row, invalid
            errata, or any problem when strict.
    """
    root, paths = Path(root).resolve(), [Path(path) for path in codings]
    if not paths:
        raise ManifestError(f"manifest {spec.name} needs the annotation file (coding)")
    allowed = len(spec.coding_names)
    if len(paths) > allowed:
        most = "one annotation file" if allowed == 1 else f"at most {allowed} annotation files"
        raise ManifestError(
            f"manifest {spec.name} reads {most}, got {len(paths)}: {', '.join(map(str, paths))}"
        )
    for path in paths:
        if not path.is_file():
            raise ManifestError(f"{path}: annotation file not found")
    if not root.is_dir():
        raise ManifestError(f"{root}: frames root folder not found (for {paths[0]})")
    try:
        errata = load_errata() if errata is None else errata
    except ErrataError as exc:
        raise ManifestError(str(exc)) from exc
    rows = _label_files(spec, root, paths)
    report = BuildReport(paths, strict=strict)
    if spec.recordings is None:
        records, ledger = read_label_clips(report, rows, errata, spec.name, _Clips(spec).read)
        return report.result(records, ledger)
    expressions = _Expressions(spec)
    records, ledger = read_label_clips(report, rows, errata, spec.name, expressions.read)
    expressions.finish(records, report)
    return report.result(records, ledger, extra_columns=RECORDING_COLUMNS)
