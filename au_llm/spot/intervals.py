"""Expression intervals in a recording: frame ranges with inclusive ends, and their kind.

An interval is ``onset..offset`` with both ends included, in the recording's frame numbers (a
frame folder's file numbers, a video's 0-based indices), as the long-video datasets annotate
them. Its kind is ``micro`` when it lasts at most ``micro_max_seconds`` (0.5 s in the
micro-expression literature and the MEGC spotting challenges), else ``macro``; the duration is
measured at the recording's own frame rate, so the same number of frames is micro at 200 fps
(SAMM) and macro at 30 fps (CAS(ME)^2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from au_llm.data.builders.formats import MICRO_MAX_SECONDS
from au_llm.data.manifest import EXPRESSION_KINDS, typed_frame

KINDS = EXPRESSION_KINDS
"""The kinds of an expression interval: ``micro`` (at most ``micro_max_seconds``), ``macro``."""


def interval_seconds(onset: int, offset: int, fps: float) -> float:
    """Seconds of frames ``onset..offset`` (both ends included) at ``fps``."""
    return (offset - onset + 1) / fps


def span_seconds(times: np.ndarray, first: int, last: int, fps: float) -> float:
    """Seconds from the start of frame ``first`` to the end of frame ``last`` (positions).

    ``times`` are the frames' presentation times, so a variable frame rate is kept; the last
    frame lasts one period at the average rate ``fps``. At a constant rate this is
    :func:`interval_seconds`.
    """
    return float(times[last] - times[first]) + 1 / fps


def kind_of(seconds: float, micro_max_seconds: float = MICRO_MAX_SECONDS) -> str:
    """``micro`` for an interval of at most ``micro_max_seconds``, else ``macro``."""
    return "micro" if seconds <= micro_max_seconds + 1e-9 else "macro"


def iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Intersection over union of frame ranges with inclusive ends.

    Args:
        first: ``[N, 2]`` integer ``(onset, offset)`` rows.
        second: ``[M, 2]`` integer ``(onset, offset)`` rows.

    Returns:
        ``[N, M]`` float64: frames in both ranges over frames in either (``[0, 5]`` and ``[5, 9]``
        share one frame of eleven: 1/11; ranges that only touch, ``[0, 4]`` and ``[5, 9]``,
        share none: 0).

    Raises:
        ValueError: A row has ``offset < onset``.
    """
    first = np.asarray(first, dtype=np.int64).reshape(-1, 2)
    second = np.asarray(second, dtype=np.int64).reshape(-1, 2)
    for name, rows in (("first", first), ("second", second)):
        bad = np.flatnonzero(rows[:, 1] < rows[:, 0])
        if bad.size:
            onset, offset = rows[bad[0]]
            raise ValueError(f"{name} interval {bad[0]}: offset {offset} before onset {onset}")
    low = np.maximum(first[:, None, 0], second[None, :, 0])
    high = np.minimum(first[:, None, 1], second[None, :, 1])
    inter = np.clip(high - low + 1, 0, None)
    lengths = (first[:, 1] - first[:, 0] + 1)[:, None] + (second[:, 1] - second[:, 0] + 1)[None]
    return inter / (lengths - inter)


def interval_clips(
    intervals: pd.DataFrame,
    names: list[str],
    *,
    dataset: str,
    subject: str,
    source: tuple[str, Path],
    fps: float,
) -> pd.DataFrame:
    """Intervals of one recording as manifest rows: clips ``onset..offset`` to align and score.

    Args:
        intervals: ``onset, apex, offset`` rows (frame numbers of the recording).
        names: The clip name of each row (unique within the subject).
        dataset: The rows' dataset.
        subject: The rows' subject.
        source: ``(kind, path)``: ``frames`` and the frame folder, or ``video`` and the file.
        fps: The recording's frame rate.

    Returns:
        One manifest row per interval (no AU labels), in order.
    """
    kind, path = source
    rows = [
        {
            "dataset": dataset,
            "subject": subject,
            "clip": name,
            "frames_dir": str(path) if kind == "frames" else "",
            "video": str(path) if kind == "video" else "",
            "onset": int(onset),
            "apex": int(apex),
            "offset": int(offset),
            "n_frames": int(offset) - int(onset) + 1,
            "fps": fps,
            "au_raw": "",
            "aus": "",
            "emotion": "",
            "apex_estimated": False,
            "notes": "",
        }
        for name, onset, apex, offset in zip(
            names, intervals["onset"], intervals["apex"], intervals["offset"], strict=True
        )
    ]
    return typed_frame(rows)
