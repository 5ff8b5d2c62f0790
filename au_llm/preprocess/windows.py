"""Sliding windows over a whole recording (a video file or a frame folder) for prediction.

A recording is cut into windows of ``window`` frames every ``stride`` frames
(:func:`window_starts`); each window is read and aligned like a training clip
(:func:`align_window`).
"""

from __future__ import annotations

from pathlib import Path

from au_llm.config import PreprocessConfig
from au_llm.data.fields import ClipReadError
from au_llm.data.frames import index_frames
from au_llm.preprocess.align import AlignResult, align_source
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.readers import FolderSource, VideoSource


def check_window(window: int, stride: int) -> None:
    """Raise ValueError unless ``window >= 2`` and ``stride >= 1``."""
    if window < 2 or stride < 1:
        raise ValueError(f"window = {window}, stride = {stride}: expected window >= 2, stride >= 1")


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Start positions of sliding windows over a recording of ``n_frames`` frames.

    Windows start at 0, stride, 2*stride, ... while they fit; when the last one stops short of the
    recording's end, one more window ending on the last frame is added, so every frame is covered.
    A recording shorter than ``window`` gives a single window over all of it.

    Raises:
        ValueError: If ``window < 2``, ``stride < 1`` or the recording is empty.
    """
    check_window(window, stride)
    if n_frames < 1:
        raise ValueError("the recording has no frame")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def recording_frames(path: Path, kind: str) -> tuple[list[int], float | None]:
    """Frame numbers of a recording and its own frame rate.

    Args:
        path: A frame folder (``kind == "frames"``) or a video file (``"video"``).
        kind: ``frames`` or ``video``.

    Returns:
        The frame numbers in order (files' numbers for folders, 0-based indices for videos) and
        the video's frame rate (None for folders, or a video that reports none).

    Raises:
        ClipReadError: If the recording has no frames.
    """
    if kind == "frames":
        numbers, fps = sorted(index_frames(path)), None
    else:
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        numbers, fps = list(range(len(reader))), float(reader.get_avg_fps()) or None
        del reader
    if not numbers:
        raise ClipReadError(f"{path}: no frames", path)
    return numbers, fps


def align_window(
    path: Path,
    kind: str,
    first: int,
    last: int,
    cfg: PreprocessConfig,
    landmarker: Landmarker | None,
) -> AlignResult:
    """Read frames ``first..last`` of a recording and align them as a training clip."""
    opener = FolderSource if kind == "frames" else VideoSource
    source = opener(path, first, last, f"{path.name}[{first}-{last}]")
    try:
        return align_source(source, cfg, landmarker)
    finally:
        source.close()
