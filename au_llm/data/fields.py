"""Per-row fields of a manifest row (a mapping such as a ``DataFrame`` row as a dict).

The helpers read the row's text, frame numbers, clip name and frame source; a value that is
missing or malformed raises :class:`ClipReadError` naming the clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ClipReadError(RuntimeError):
    """A clip's frames cannot be read; the message names the clip, the file and the frame.

    Attributes:
        path: The file or folder that failed.
        frame: The frame number that failed, or None when the whole source failed.
    """

    def __init__(self, message: str, path: str | Path, frame: int | None = None) -> None:
        super().__init__(message)
        self.path = str(path)
        self.frame = frame


def text_field(row: Mapping[str, Any], key: str) -> str:
    """Return ``row[key]`` as a stripped string, ``""`` when missing, None or NaN."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def int_field(row: Mapping[str, Any], key: str) -> int:
    """Return ``row[key]`` as an int.

    Raises:
        ClipReadError: When the value is missing or not an integer.
    """
    value = text_field(row, key)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number) or number != int(number):
        raise ClipReadError(
            f"clip {clip_name(row)}: {key} = {value!r} is not a frame number", clip_name(row)
        )
    return int(number)


def clip_name(row: Mapping[str, Any]) -> str:
    """Return ``dataset/subject/clip`` for messages."""
    return "/".join(text_field(row, k) or "?" for k in ("dataset", "subject", "clip"))


def source_path(row: Mapping[str, Any]) -> tuple[str, str]:
    """Return ``("frames", folder)`` or ``("video", file)`` for a manifest row.

    Raises:
        ClipReadError: When neither ``frames_dir`` nor ``video`` is set.
    """
    folder = text_field(row, "frames_dir")
    if folder:
        return "frames", os.path.normpath(os.path.expanduser(folder))
    video = text_field(row, "video")
    if video:
        return "video", os.path.normpath(os.path.expanduser(video))
    raise ClipReadError(f"clip {clip_name(row)}: neither frames_dir nor video is set", "")


def frame_range(row: Mapping[str, Any]) -> tuple[int, int]:
    """Return ``(onset, offset)`` of a row, checked to be ordered and non-negative."""
    onset, offset = int_field(row, "onset"), int_field(row, "offset")
    if onset < 0 or offset < onset:
        raise ClipReadError(
            f"clip {clip_name(row)}: expected 0 <= onset <= offset, got {onset}..{offset}",
            clip_name(row),
        )
    return onset, offset
