"""The peak rule of the MEGC spotting baselines: a per-frame score -> intervals.

The rule, as the MEGC 2019 baseline (Li et al., LBP feature difference) and MEAN apply it:

1. **Contrast** (optional): ``C(t) = S(t) - (S(t - k) + S(t + k)) / 2``, negative values set to 0
   (a slow drift of the score, which lifts both neighbours as much as the frame, cancels out);
   the ``k`` frames at each end, which lack a neighbour, get 0.
2. **Smoothing**: a centred moving average of ``smooth`` frames (shrunk at the ends).
3. **Threshold**: ``T = mean + p * (max - mean)`` of the smoothed score over the recording
   (Moilanen's threshold; ``p`` in 0..1).
4. **Peaks**: local maxima above ``T`` at least ``k`` frames apart (the higher peak wins).
5. **Intervals**: ``peak - k .. peak + k``, cut at the recording's ends; the peak is the apex.

Frames where the score is undefined (no face) are nan; they are left out of the mean and max and
never peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks


@dataclass(frozen=True)
class Peak:
    """One spotted interval, in positions 0..n-1 of the score.

    Attributes:
        onset: First position.
        apex: The peak's position.
        offset: Last position (inclusive).
        score: The smoothed score at the peak.
    """

    onset: int
    apex: int
    offset: int
    score: float


def contrast(score: np.ndarray, k: int) -> np.ndarray:
    """``S(t) - (S(t - k) + S(t + k)) / 2``, at least 0 (see the module).

    Args:
        score: ``[T]`` per-frame score (nan where undefined).
        k: Distance to the two neighbours, in frames (at least 1); a recording of ``2k`` frames
            or fewer uses the largest distance it allows.

    Returns:
        ``[T]`` contrasted score: 0 on the ``k`` frames at each end (they lack a neighbour), nan
        where the frame or a neighbour is undefined.
    """
    score = np.asarray(score, dtype=np.float64)
    count = len(score)
    k = min(k, (count - 1) // 2)
    out = np.zeros(count)
    if k < 1:
        return out
    middle = score[k : count - k] - (score[: count - 2 * k] + score[2 * k :]) / 2
    out[k : count - k] = np.where(np.isnan(middle), np.nan, np.maximum(middle, 0.0))
    return out


def smooth(score: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``window`` frames over defined values (shrunk at the ends).

    Args:
        score: ``[T]`` (nan where undefined; nan frames stay nan and are left out of their
            neighbours' means).
        window: Frames averaged (1: unchanged).

    Returns:
        ``[T]`` float64.
    """
    score = np.asarray(score, dtype=np.float64)
    if window <= 1 or len(score) == 0:
        return score.copy()
    defined = ~np.isnan(score)
    values = np.where(defined, score, 0.0)
    half = window // 2
    kernel = np.ones(2 * half + 1)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(defined.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    return np.where(defined, out, np.nan)


def threshold(score: np.ndarray, p: float) -> float:
    """``mean + p * (max - mean)`` of the defined values (nan when none is defined)."""
    defined = np.asarray(score, dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    if defined.size == 0:
        return float("nan")
    mean = float(defined.mean())
    return mean + p * (float(defined.max()) - mean)


def spot_peaks(score: np.ndarray, *, k: int, p: float, smooth_frames: int) -> list[Peak]:
    """Intervals ``peak +- k`` around the peaks of a (contrasted) per-frame score.

    Args:
        score: ``[T]`` per-frame score (nan where undefined).
        k: Least distance between two peaks and half the interval length, in frames (>= 1).
        p: Threshold position between the mean (0) and the maximum (1).
        smooth_frames: Moving-average length applied first (1: none).

    Returns:
        The intervals in time order. A flat score (max = mean) gives none.

    Raises:
        ValueError: ``k < 1`` or ``p`` outside 0..1.
    """
    if k < 1:
        raise ValueError(f"k = {k}: expected at least 1 frame")
    if not 0 <= p <= 1:
        raise ValueError(f"p = {p}: expected a fraction in 0..1")
    smoothed = smooth(score, smooth_frames)
    level = threshold(smoothed, p)
    defined = ~np.isnan(smoothed)
    if not defined.any() or np.nanmax(smoothed) <= np.nanmean(smoothed):
        return []
    # find_peaks needs finite values: undefined frames sit below every defined one
    filled = np.where(defined, smoothed, np.nanmin(smoothed) - 1.0)
    positions, _ = find_peaks(filled, height=level, distance=k)
    last = len(smoothed) - 1
    return [
        Peak(max(0, int(t) - k), int(t), min(last, int(t) + k), float(smoothed[t]))
        for t in positions
    ]
