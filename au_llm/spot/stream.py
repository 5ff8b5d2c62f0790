"""A recording's face aligned frame by frame, streamed with bounded memory.

Frames arrive in order (``(number, [H, W, 3] uint8 RGB)``, as
:class:`~au_llm.preprocess.windows.RecordingReader` yields them). Every ``every``-th frame is
landmarked and its faces tracked (:class:`~au_llm.preprocess.tracks.FaceTracker`); the face followed
is the one of the previous landmarked frame's track while it is seen, else the largest. Each
landmarked face gives a similarity transform to the face template
(:func:`~au_llm.preprocess.align.landmark_transform`), which removes head translation, rotation and
scale; transforms are interpolated between landmarked frames and smoothed by a moving median over
``smooth`` frames (:func:`~au_llm.preprocess.align.smooth_transforms`: steady head motion is
followed exactly, while the landmarks' short excursions, such as the eye corners following the lids
in a blink, are dropped), then every frame is warped to a small gray crop. A frame counts as showing
the face when the landmarked frames on both sides of it (or itself) found one; the others get no
crop.

Only a block of full frames is held at once (``block`` frames, sized by the caller from a memory
budget) plus the ``lookahead`` frames the interpolation and smoothing need; transforms of frames
already emitted are kept as context for the next block, so the result matches smoothing the whole
recording at once, except that a face missing for more than a block is interpolated from the frames
in reach only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from au_llm.preprocess.align import landmark_transform, smooth_transforms, warp
from au_llm.preprocess.landmarks import FaceLandmarks
from au_llm.preprocess.tracks import FaceTracker, TrackedFace


@dataclass
class AlignedFrame:
    """One frame of the stream.

    Attributes:
        position: 0-based position among the frames read.
        number: The frame's number (a file's number, a video's 0-based index).
        crop: ``[size, size]`` uint8 gray aligned face; None when the face is not shown.
        landmarked: Whether landmarks were computed on this frame.
        confidence: Detection score of the face on a landmarked frame (nan otherwise, or when
            the landmarker gives none).
        points: ``[478, 2]`` landmarks in crop pixels on a landmarked frame with the face; None
            otherwise.
    """

    position: int
    number: int
    crop: np.ndarray | None
    landmarked: bool
    confidence: float
    points: np.ndarray | None


@dataclass
class _Pending:
    position: int
    number: int
    image: np.ndarray | None
    face: TrackedFace | None
    landmarked: bool


class FaceFinder(Protocol):
    """What finds the faces of a frame (:class:`~au_llm.preprocess.landmarks.Landmarker`)."""

    def detect_all(self, image_rgb: np.ndarray) -> Sequence[FaceLandmarks]:
        """Faces of one ``[H, W, 3]`` uint8 RGB image, largest first."""
        ...


def _follow(faces: list[TrackedFace], track: int | None) -> TrackedFace | None:
    """The face of ``track`` when present, else the largest (the first), else None."""
    if not faces:
        return None
    return next((f for f in faces if f.track == track), faces[0])


def align_stream(
    frames: Iterable[tuple[int, np.ndarray]],
    landmarker: FaceFinder,
    *,
    size: int,
    margin: float,
    smooth: int,
    every: int,
    block: int,
) -> Iterator[AlignedFrame]:
    """Align every frame of a recording to the face template, streaming.

    Args:
        frames: ``(number, [H, W, 3] uint8 RGB)`` in time order.
        landmarker: Finds the faces of a frame.
        size: Side of the gray crop in pixels.
        margin: Border around the face template, as a fraction of the side.
        smooth: Frames of the moving median smoothing the transforms (1: none).
        every: Landmark every ``every``-th frame (1: all).
        block: Full frames held before a block is aligned and emitted (at least 1).

    Yields:
        One :class:`AlignedFrame` per frame read, in order.
    """
    every, block = max(1, every), max(1, block)
    lookahead = smooth // 2 + every
    tracker, track = FaceTracker(), None
    pending: list[_Pending] = []
    context: list[_Pending] = []
    for position, (number, image) in enumerate(frames):
        face, landmarked = None, position % every == 0
        if landmarked:
            face = _follow(tracker.update(landmarker.detect_all(image)), track)
            track = face.track if face is not None else track
        pending.append(_Pending(position, number, image, face, landmarked))
        if len(pending) >= block + lookahead:
            count = len(pending) - lookahead
            yield from _emit(context, pending, count, size, margin, smooth)
            context = (context + pending[:count])[-lookahead:]
            pending = pending[count:]
    yield from _emit(context, pending, len(pending), size, margin, smooth)


def _emit(
    context: list[_Pending],
    pending: list[_Pending],
    count: int,
    size: int,
    margin: float,
    smooth: int,
) -> Iterator[AlignedFrame]:
    """Align the first ``count`` pending frames, with ``context`` (emitted frames) before them.

    The emitted frames' images are dropped (their entries stay as context for the next block).
    """
    entries = context + pending
    transforms = np.zeros((len(entries), 2, 3))
    valid = np.zeros(len(entries), dtype=bool)
    for i, entry in enumerate(entries):
        if entry.face is not None:
            transforms[i] = landmark_transform(entry.face.points, size, margin)
            valid[i] = True
    shown = _face_shown(entries)
    if valid.any():
        transforms = smooth_transforms(transforms, valid, smooth, "median")
    for i in range(len(context), len(context) + count):
        entry = entries[i]
        crop, points, confidence = None, None, math.nan
        if shown[i] and entry.image is not None:
            crop = warp(entry.image, transforms[i], size, "gray")[..., 0]
        if entry.face is not None:
            matrix = transforms[i]
            points = entry.face.points @ matrix[:, :2].T + matrix[:, 2]
            confidence = entry.face.confidence
        entry.image = None
        yield AlignedFrame(entry.position, entry.number, crop, entry.landmarked, confidence, points)


def _face_shown(entries: list[_Pending]) -> np.ndarray:
    """Whether each entry shows the face.

    A landmarked entry shows it when its landmarks found it; another entry when the landmarked
    entries on both sides found it (only the one before, at the end of what is in reach).
    """
    count = len(entries)
    before = np.zeros(count, dtype=np.int8)  # -1 no face, 0 unknown, 1 face
    after = np.zeros(count, dtype=np.int8)
    last = 0
    for i, entry in enumerate(entries):
        if entry.landmarked:
            last = 1 if entry.face is not None else -1
        before[i] = last
    last = 0
    for i in range(count - 1, -1, -1):
        if entries[i].landmarked:
            last = 1 if entries[i].face is not None else -1
        after[i] = last
    return (before == 1) & (after >= 0)
