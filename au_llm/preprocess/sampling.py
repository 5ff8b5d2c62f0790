"""Temporal sampling of cached clips (done at load time, so the cache holds every frame).

Strategies (all return exactly ``n_frames`` indices into the clip's frames, in time order, the
first one being the onset frame; a range shorter than ``n_frames`` repeats frames):

* ``uniform``: ``n_frames`` positions evenly spaced from onset to offset, inclusive, rounded to the
  nearest frame (AU-LLM's evaluation sampling).
* ``onset_apex``: evenly spaced from onset to apex, inclusive.
* ``random_end``: AU-LLM's training augmentation. An end frame is drawn uniformly among the
  frames from the apex to the offset (both inclusive), then ``n_frames`` positions are spread
  evenly from the onset to that end frame. The apex is therefore always inside the sampled span
  and the clip's speed varies between draws. Needs ``rng``.

Onset, apex and offset are frame numbers; each is mapped to the nearest frame the clip has
(``numbers``). An unknown apex (None or NaN) is taken as the middle frame of the clip.
"""

from __future__ import annotations

import math

import numpy as np

from au_llm.config import SAMPLING_STRATEGIES


def nearest_position(numbers: np.ndarray, frame: float) -> int:
    """Index of the frame in ``numbers`` (sorted ``[T]``) closest to frame number ``frame``."""
    return int(np.argmin(np.abs(np.asarray(numbers, dtype=np.float64) - frame)))


def spread(start: int, end: int, n_frames: int) -> np.ndarray:
    """``n_frames`` int64 positions evenly spaced from ``start`` to ``end`` inclusive (rounded)."""
    return np.floor(np.linspace(start, end, n_frames) + 0.5).astype(np.int64)


def sample_indices(
    numbers: np.ndarray,
    onset: int,
    apex: float | None,
    offset: int,
    n_frames: int,
    strategy: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Choose which cached frames of a clip form one sample.

    Args:
        numbers: ``[T]`` frame numbers of the cached clip (sorted).
        onset: Onset frame number.
        apex: Apex frame number (None or NaN when unknown).
        offset: Offset frame number.
        n_frames: Number of indices to return (>= 1).
        strategy: ``uniform``, ``onset_apex`` or ``random_end`` (see the module docstring).
        rng: Random generator; required by ``random_end``.

    Returns:
        ``[n_frames]`` int64 indices into ``numbers``, non-decreasing, first = onset frame.

    Raises:
        ValueError: For an unknown strategy, ``n_frames < 1``, an empty clip, or ``random_end``
            without ``rng``.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r}: expected one of {SAMPLING_STRATEGIES}")
    if n_frames < 1:
        raise ValueError(f"n_frames = {n_frames}: expected at least 1")
    if len(numbers) == 0:
        raise ValueError("cannot sample frames of an empty clip")
    start = nearest_position(numbers, onset)
    stop = max(nearest_position(numbers, offset), start)
    if apex is None or (isinstance(apex, float) and math.isnan(apex)):
        peak = (start + stop) // 2
    else:
        peak = min(max(nearest_position(numbers, apex), start), stop)
    if strategy == "uniform":
        return spread(start, stop, n_frames)
    if strategy == "onset_apex":
        return spread(start, peak, n_frames)
    if rng is None:
        raise ValueError("sampling strategy 'random_end' needs a random generator (rng)")
    end = int(rng.integers(peak, stop + 1))
    return spread(start, end, n_frames)
