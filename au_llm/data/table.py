"""The user's own clip table (a CSV with manifest columns) -> manifest."""

from __future__ import annotations

import math
from pathlib import Path

from au_llm.data.errata import Errata
from au_llm.data.errata_ledger import ClipErrata, LabelRow
from au_llm.data.manifest import (
    DEFAULT_DATASET,
    DEFAULT_FPS,
    ID_COLUMNS,
    ManifestError,
    id_problem,
    parse_bool,
    read_csv_strings,
    resolve_path,
)
from au_llm.data.report import BuildReport, ManifestResult
from au_llm.data.rows import (
    BAD_ROW,
    DUPLICATE,
    VIDEO_MISSING,
    ClipLog,
    LabelClip,
    SkipClipError,
    count_frames,
    read_aus,
    read_label_clips,
    read_timing,
)


def _table_fps(text: str) -> float:
    """Read a table's fps cell; empty gives the default.

    Raises:
        SkipClipError: The cell is not a positive finite number (``0``, ``-5``, ``fast``).
    """
    if not text.strip():
        return DEFAULT_FPS
    try:
        fps = float(text)
    except ValueError:
        fps = float("nan")
    if not (math.isfinite(fps) and fps > 0):
        raise SkipClipError(BAD_ROW, f"fps {text!r} is not a positive frame rate")
    return fps


def _table_record(
    item: LabelClip, errata: ClipErrata, log: ClipLog, *, columns: set[str], base: Path
) -> dict[str, object]:
    """The manifest record of one row of the table (``base``: the table's folder)."""
    row = {name: str(value) for name, value in item.cells.items()}
    onset, apex, offset, estimated = read_timing(
        row["onset"],
        row.get("apex", ""),
        row["offset"],
        errata,
        log,
        warn_missing_apex="apex" in columns,
    )
    frames_dir, video = row.get("frames_dir", "").strip(), row.get("video", "").strip()
    video_path = resolve_path(video, base) if video else None
    if frames_dir:
        folder = resolve_path(frames_dir, base)
        n_frames = count_frames(folder, onset, offset, log)
        frames_dir = str(folder)
    elif video_path is not None:
        if not video_path.is_file():
            raise SkipClipError(VIDEO_MISSING, f"video file {video_path} not found")
        n_frames = offset - onset + 1
    else:
        raise SkipClipError(BAD_ROW, "neither frames_dir nor video is given")
    aus_text, raw_text = row.get("aus", ""), row.get("au_raw", "")
    aus = read_aus(aus_text if aus_text.strip() else raw_text, errata, log)
    fps = _table_fps(row.get("fps", ""))
    flagged = parse_bool(row.get("apex_estimated", ""))
    if flagged is None:
        log.warn(f"apex_estimated {row['apex_estimated']!r} is not true/false; false used")
    prior = row.get("notes", "").strip()
    return {
        "dataset": row.get("dataset", "").strip() or DEFAULT_DATASET,
        "subject": item.label.subject,
        "clip": item.clip,
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


def build_from_table(table: Path, *, strict: bool = False) -> ManifestResult:
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
    data = read_csv_strings(table, "table")
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
    clips: list[LabelClip] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, row in enumerate(data.to_dict("records")):
        number = index + 2
        if not any(str(value).strip() for value in row.values()):
            continue
        subject, clip = row["subject"].strip(), row["clip"].strip()
        identity = (row.get("dataset", "").strip() or DEFAULT_DATASET, subject, clip)
        problems = [id_problem(c, v) for c, v in zip(ID_COLUMNS, identity, strict=True)]
        problem = None
        if not subject or not clip:
            missing = " and ".join(name for name in ("subject", "clip") if not row[name].strip())
            problem = (BAD_ROW, f"row has no {missing}")
        elif any(problems):
            problem = (BAD_ROW, next(p for p in problems if p))
        elif identity in seen:
            problem = (DUPLICATE, f"clip listed again (first at row {seen[identity]})")
        else:
            seen[identity] = number
        label = LabelRow(number, subject, clip, row)
        clips.append(LabelClip(label, clip, row, table, problem))
    report = BuildReport(table, strict=strict)

    def read(item: LabelClip, errata: ClipErrata, log: ClipLog) -> dict[str, object]:
        return _table_record(item, errata, log, columns=columns, base=base)

    records, ledger = read_label_clips(report, clips, Errata.empty(), DEFAULT_DATASET, read)
    return report.result(records, ledger)
