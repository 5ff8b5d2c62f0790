"""The clip manifest: its columns, reading and writing manifest CSVs, and AU labels.

A manifest has the columns of :data:`MANIFEST_COLUMNS` (documented in ``data_manifests/README.md``),
one row per usable clip. Manifests are built by :func:`au_llm.data.build.build_manifest`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from au_llm.data.au_codes import format_aus, parse_aus
from au_llm.io_utils import atomic_write_csv, safe_component, unescape_frame

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
RECORDING_COLUMNS = ("recording", "kind")
"""Optional columns of a manifest built from long recordings: the recording's id within its
subject (its frames are ``frames_dir`` or ``video``, the whole recording) and the expression's
kind (:data:`EXPRESSION_KINDS`)."""
EXPRESSION_KINDS = ("micro", "macro")
INT_COLUMNS = ("onset", "apex", "offset", "n_frames")
REQUIRED_MANIFEST_COLUMNS = ("dataset", "subject", "clip", "onset", "apex", "offset", "n_frames")
DEFAULT_FPS = 200.0
DEFAULT_DATASET = "custom"
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
ID_COLUMNS = ("dataset", "subject", "clip")
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")
# Longest id, as a file name: two ids and a 16-character key name one cache file (< 255 bytes).
MAX_ID_LENGTH = 100


class ManifestError(ValueError):
    """A manifest cannot be built or read; the message names the file, the row or clip, and why."""


def id_problem(column: str, value: str) -> str | None:
    """Why ``value`` cannot be a ``dataset``/``subject``/``clip`` id, or None when it can.

    Ids name files and folders (cache entries, fold results), so each must be one safe name: not
    empty, not ``.`` or ``..``, without a slash, a backslash or a control character, and at most
    :data:`MAX_ID_LENGTH` characters long once encoded as a file name
    (:func:`~au_llm.io_utils.safe_component`), so that a cache file named by subject, clip and key
    stays within the usual 255-byte limit of file names.
    """
    text = value.strip()
    if not text:
        return f"{column} is empty"
    if text in (".", ".."):
        return f"{column} {value!r} is not a name"
    if _UNSAFE_ID.search(value):
        return (
            f"{column} {value!r} contains a path separator or a control character; "
            "expected a single name such as sub01"
        )
    length = len(safe_component(value))
    if length > MAX_ID_LENGTH:
        return (
            f"{column} {value[:20]!r}... is too long ({length} characters as a file name; at most "
            f"{MAX_ID_LENGTH}, counting each character other than letters, digits and _ - + . as "
            "3 per UTF-8 byte)"
        )
    return None


def _subject_key(subject: str) -> str:
    """``subject`` without case, spaces, a ``sub`` prefix and zero padding (``SUB 01`` -> ``1``)."""
    text = re.sub(r"\s+", "", subject.lower())
    text = re.sub(r"^sub(?=\d)", "", text)
    return re.sub(r"\d+", lambda m: str(int(m.group())), text)


def similar_subjects(frame: pd.DataFrame) -> list[str]:
    """Warnings for subject ids of one dataset that differ only by case, padding or spaces.

    LOSO treats ``sub1``, ``sub01`` and ``SUB01`` as three people: when they are one, their
    clips leak between the train and test sides of a fold.
    """
    warnings = []
    for dataset, rows in frame.groupby("dataset", sort=True):
        groups: dict[str, set[str]] = {}
        for subject in rows["subject"].astype(str).unique():
            groups.setdefault(_subject_key(subject), set()).add(subject)
        for names in groups.values():
            if len(names) > 1:
                listed = ", ".join(repr(name) for name in sorted(names))
                warnings.append(
                    f"dataset {dataset}: subjects {listed} differ only by case, padding or "
                    "spaces; they are treated as different people (rename them to one id if "
                    "they are the same person)"
                )
    return warnings


def typed_frame(
    records: list[dict[str, object]], extra_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Manifest records as a frame of :data:`MANIFEST_COLUMNS` with the columns' types.

    Args:
        records: One dict per clip, keyed by manifest column.
        extra_columns: Text columns kept after the manifest's (e.g. :data:`RECORDING_COLUMNS`).
    """
    frame = pd.DataFrame.from_records(records, columns=[*MANIFEST_COLUMNS, *extra_columns])
    for column in extra_columns:
        frame[column] = frame[column].astype(str)
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    frame["fps"] = frame["fps"].astype("float64")
    frame["apex_estimated"] = frame["apex_estimated"].astype(bool)
    for column in MANIFEST_COLUMNS:
        if column not in INT_COLUMNS and column not in ("fps", "apex_estimated"):
            frame[column] = frame[column].astype(str)
    return frame


def read_csv_strings(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV with every cell as text and lower-cased, stripped column names.

    Args:
        path: The CSV file.
        what: What the file is, for messages (``"table"``, ``"manifest"``).

    Returns:
        The table, all cells strings (empty cells ``""``), with the spreadsheet escape of
        :func:`~au_llm.io_utils.escape_cell` undone (``'=x`` reads as ``=x``).

    Raises:
        ManifestError: The file is missing or unreadable.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: {what} not found")
    try:
        data = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"{path}: cannot read the {what} ({exc})") from exc
    data.columns = [str(name).strip().lower() for name in data.columns]
    return unescape_frame(data)


def resolve_path(text: str, base: Path) -> Path:
    """Return ``text`` as an absolute path (``~`` expanded, relative to ``base``)."""
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def parse_bool(text: str) -> bool | None:
    """Read a true/false cell (``true/1/yes/y``, ``false/0/no/n/""``); None when neither."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    return False if value in _FALSE else None


def write_manifest(frame: pd.DataFrame, out: Path) -> None:
    """Write a manifest CSV atomically (manifest columns first, extra columns kept after them).

    Args:
        frame: A manifest, e.g. :attr:`~au_llm.data.rows.ManifestResult.frame`.
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


def _fps_value(text: str) -> float:
    """A manifest's ``fps`` cell as a positive finite number.

    Raises:
        ValueError: The cell is not a number, or is zero, negative, infinite or NaN.
    """
    try:
        fps = float(text)
    except ValueError:
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps {text!r}: expected a positive frame rate (frames per second)")
    return fps


def _check_timing(path: Path, number: int, record: dict[str, object]) -> None:
    """Refuse onset > offset; an apex outside onset..offset is replaced by the middle frame.

    The replacement follows the annotation rule (an apex outside the clip is invalid, the
    middle frame is used and ``apex_estimated`` set), with a warning naming the clip.

    Raises:
        ManifestError: The onset lies after the offset.
    """
    onset, apex, offset = (int(str(record[name])) for name in ("onset", "apex", "offset"))
    if onset > offset:
        raise ManifestError(f"{path}, row {number}: onset {onset} is after offset {offset}")
    if onset <= apex <= offset:
        return
    middle = (onset + offset) // 2
    note = f"apex {apex} outside onset..offset {onset}..{offset}; middle frame {middle} used"
    logger.warning(
        "%s, row %d: clip %s/%s/%s: %s",
        path,
        number,
        *(record[column] for column in ID_COLUMNS),
        note,
    )
    record.update(apex=middle, apex_estimated=True)
    record["notes"] = "; ".join(part for part in (str(record["notes"]).strip(), note) if part)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read and validate a manifest CSV.

    ``subject`` and ``clip`` stay strings (``006``, ``sub01``); ``onset``, ``apex``, ``offset``,
    ``n_frames`` are ints, ``fps`` float, ``apex_estimated`` bool, ``aus`` canonical (``"4+7"``,
    ``""`` for none). Relative ``frames_dir``/``video`` paths are resolved against the manifest's
    folder. Optional columns (``frames_dir`` or ``video`` but not both, ``fps``, ``au_raw``,
    ``emotion``, ``apex_estimated``, ``notes``) get defaults when absent. Other columns are kept
    as text after the manifest's, e.g. :data:`RECORDING_COLUMNS` (``kind``: ``micro``,
    ``macro`` or empty).

    Args:
        path: The manifest CSV.

    Returns:
        The manifest, columns :data:`MANIFEST_COLUMNS` first, extra columns after.

    Raises:
        ManifestError: Missing file, missing column, a value of the wrong type, an fps that is
            not a positive number, an AU that FACS does not define, an onset after the offset, a
            ``kind`` that is not an expression kind, an id that is not a single safe name (see
            :func:`id_problem`), or a clip listed twice; the message names the file, the row
            (header = row 1) and the column. An apex outside onset..offset is replaced by the
            middle frame, with a warning.
    """
    path = Path(path)
    data = read_csv_strings(path, "manifest")
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
    seen: dict[tuple[str, ...], int] = {}
    for index, row in enumerate(data.to_dict("records")):
        number = index + 2
        record: dict[str, object] = dict(row)
        for column in ID_COLUMNS:
            problem = id_problem(column, row[column])
            if problem is not None:
                raise ManifestError(f"{path}, row {number}: {problem}")
        identity = tuple(row[column] for column in ID_COLUMNS)
        if identity in seen:
            raise ManifestError(
                f"{path}, row {number}: clip {'/'.join(identity)} is listed again (first at row "
                f"{seen[identity]}); each clip must appear once"
            )
        seen[identity] = number
        for column in INT_COLUMNS:
            record[column] = _int_value(path, number, column, row[column])
        try:
            record["fps"] = _fps_value(row["fps"])
            record["aus"] = format_aus(parse_aus(row["aus"]))
        except ValueError as exc:
            raise ManifestError(f"{path}, row {number}: {exc}") from exc
        flagged = parse_bool(row["apex_estimated"])
        if flagged is None:
            raise ManifestError(
                f"{path}, row {number}: apex_estimated {row['apex_estimated']!r} is not true/false"
            )
        record["apex_estimated"] = flagged
        if "kind" in row and row["kind"].strip() not in ("", *EXPRESSION_KINDS):
            raise ManifestError(
                f"{path}, row {number}: kind {row['kind']!r} is not an expression kind "
                f"(expected {' or '.join(EXPRESSION_KINDS)}, or empty)"
            )
        _check_timing(path, number, record)
        if not row["frames_dir"].strip() and not row["video"].strip():
            raise ManifestError(f"{path}, row {number}: neither frames_dir nor video is given")
        for column in ("frames_dir", "video"):
            text = row[column].strip()
            record[column] = str(resolve_path(text, base)) if text else ""
        records.append(record)
    extra = [column for column in data.columns if column not in MANIFEST_COLUMNS]
    frame = typed_frame(
        [{column: record[column] for column in MANIFEST_COLUMNS} for record in records]
    )
    for column in extra:
        frame[column] = [record[column] for record in records]
    for warning in similar_subjects(frame):
        logger.warning("%s: %s", path, warning)
    return frame


def au_label_matrix(frame: pd.DataFrame, aus: Sequence[int]) -> np.ndarray:
    """Binary AU labels of a manifest, nan where a label is unknown.

    Args:
        frame: A manifest with a canonical ``aus`` column; an optional ``aus_unknown`` column
            (canonical AU lists) names AUs whose label is unknown for a clip (see
            :mod:`au_llm.data.au_sets`).
        aus: The AU numbers to label, in output order.

    Returns:
        float32 array [N, len(aus)]: nan where the clip's ``aus_unknown`` contains the AU (even
        when ``aus`` names it: an AU outside the dataset's set is not scored at all), else 1 where
        its ``aus`` contains the AU, else 0.

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
    if "aus_unknown" in frame.columns:
        for index, text in enumerate(frame["aus_unknown"].tolist()):
            unknown = set(parse_aus(text)) if isinstance(text, str) else set()
            for column, au in enumerate(wanted):
                if au in unknown:
                    labels[index, column] = np.nan
    return labels
