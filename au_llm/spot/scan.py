"""One recording's per-frame motion score, and the intervals the peak rule finds in it.

:func:`measure_motion` streams the frames through the per-frame alignment
(:func:`~au_llm.spot.stream.align_stream`) and the region motion meter
(:class:`~au_llm.spot.motion.MotionMeter`), one distance ``k`` per kind spotted; only a block of
decoded frames and ``2k + 1`` small crops are held, and per frame a few numbers are kept (about
25 bytes: 18 MB for an hour at 200 fps). :func:`spot_intervals` applies each kind's peak rule
(:mod:`au_llm.spot.peaks`) to its score.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from au_llm.spot.config import SpotConfig, frames_at
from au_llm.spot.intervals import interval_seconds, kind_of, span_seconds
from au_llm.spot.motion import MotionMeter
from au_llm.spot.peaks import contrast, spot_peaks
from au_llm.spot.stream import FaceFinder, align_stream

INTERVAL_COLUMNS = ["onset", "apex", "offset", "kind", "score"]


@dataclass
class RecordingMotion:
    """The per-frame motion of a recording.

    Attributes:
        fps: The recording's frame rate.
        kinds: The kinds spotted, in column order of ``scores``.
        numbers: ``[N]`` frame numbers.
        shown: ``[N]`` whether the face was aligned on the frame.
        confidence: ``[N]`` detection score of the face, carried from the last landmarked frame
            (nan where none was given; 0 where the face is not shown).
        scores: ``[N, len(kinds)]`` motion score at each kind's distance (nan where undefined).
    """

    fps: float
    kinds: list[str]
    numbers: np.ndarray
    shown: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray

    def missing_spans(self) -> list[tuple[int, int]]:
        """``(first, last)`` frame numbers of each stretch without the face."""
        spans = []
        for missing, group in itertools.groupby(enumerate(self.shown), key=lambda x: not x[1]):
            if missing:
                positions = [p for p, _ in group]
                spans.append((int(self.numbers[positions[0]]), int(self.numbers[positions[-1]])))
        return spans


def measure_motion(
    frames: Iterable[tuple[int, np.ndarray]],
    fps: float,
    landmarker: FaceFinder,
    cfg: SpotConfig,
    progress: Callable[[int], None] | None = None,
) -> RecordingMotion:
    """Stream a recording's frames into its per-frame motion scores.

    Args:
        frames: ``(number, [H, W, 3] uint8 RGB)`` in time order.
        fps: The recording's frame rate (durations in ``cfg`` become frames at this rate).
        landmarker: Finds the faces of a frame.
        cfg: The spotter's settings.
        progress: Called with the number of frames done after each frame.

    Returns:
        The scores; a recording without frames gives empty arrays.
    """
    distances = [frames_at(cfg.rule(kind).k_seconds, fps) for kind in cfg.kinds]
    meter = MotionMeter(
        feature=cfg.feature,
        distances=distances,
        regions=cfg.regions,
        size=cfg.size,
        top=cfg.top_regions,
    )
    frames = iter(frames)
    first = next(frames, None)
    # compact per-frame columns (13 bytes a frame), never a Python object per frame
    numbers, shown, confidence = array("q"), array("b"), array("f")
    if first is not None:
        block = max(1, cfg.buffer_mb * 2**20 // max(1, first[1].nbytes))
        stream = align_stream(
            itertools.chain([first], frames),
            landmarker,
            size=cfg.size,
            margin=cfg.margin,
            smooth=frames_at(cfg.align_smooth_seconds, fps) if cfg.align_smooth_seconds else 1,
            every=frames_at(cfg.landmark_seconds, fps) if cfg.landmark_seconds else 1,
            block=block,
        )
        score = math.nan
        for aligned in stream:
            meter.push(aligned)
            if aligned.landmarked:
                score = aligned.confidence if aligned.points is not None else 0.0
            numbers.append(aligned.number)
            shown.append(aligned.crop is not None)
            confidence.append(score if aligned.crop is not None else 0.0)
            if progress is not None:
                progress(meter.count)
    return RecordingMotion(
        fps=fps,
        kinds=list(cfg.kinds),
        numbers=np.asarray(numbers, dtype=np.int64),
        shown=np.asarray(shown, dtype=bool),
        confidence=np.asarray(confidence, dtype=np.float32),
        scores=meter.scores(),
    )


def spot_intervals(
    motion: RecordingMotion, cfg: SpotConfig, times: np.ndarray | None = None
) -> pd.DataFrame:
    """The intervals each kind's peak rule finds in its motion score.

    Args:
        motion: A recording's motion (:func:`measure_motion`).
        cfg: The spotter's settings (peak rules, ``micro_max_seconds``, ``drop_nested``).
        times: ``[N]`` presentation times of the frames in seconds, for the durations that
            decide the kinds (None: frame counts at ``motion.fps``).

    Returns:
        ``onset, apex, offset`` (frame numbers), ``kind`` (by the interval's duration: its
        frames' real times, or its frame count at the recording's frame rate), ``score`` (the
        rule's smoothed score at the apex), in time order.
    """
    rows = []
    for column, kind in enumerate(motion.kinds):
        rule = cfg.rule(kind)
        k = frames_at(rule.k_seconds, motion.fps)
        score = motion.scores[:, column].astype(np.float64)
        if rule.contrast:
            score = contrast(score, k)
        smooth = frames_at(rule.smooth_seconds, motion.fps) if rule.smooth_seconds else 1
        for peak in spot_peaks(score, k=k, p=rule.p, smooth_frames=smooth):
            onset, apex, offset = (
                int(motion.numbers[i]) for i in (peak.onset, peak.apex, peak.offset)
            )
            seconds = (
                interval_seconds(peak.onset, peak.offset, motion.fps)
                if times is None
                else span_seconds(times, peak.onset, peak.offset, motion.fps)
            )
            rows.append((onset, apex, offset, kind_of(seconds, cfg.micro_max_seconds), peak.score))
    table = pd.DataFrame(rows, columns=INTERVAL_COLUMNS)
    if cfg.drop_nested:
        table = _drop_nested(table)
    return table.sort_values(["onset", "offset"], kind="stable").reset_index(drop=True)


def _drop_nested(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the micro intervals whose apex lies inside a macro interval."""
    macro = table[table["kind"] == "macro"]
    inside = [
        kind == "micro" and bool(((macro["onset"] <= apex) & (apex <= macro["offset"])).any())
        for kind, apex in zip(table["kind"], table["apex"], strict=True)
    ]
    return table[~np.asarray(inside, dtype=bool)]
