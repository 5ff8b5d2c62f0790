"""Faces followed across the frames of a recording, and which face a window uses.

Every frame is landmarked once (all faces, largest first). :class:`FaceTracker` gives each face a
track id: a face continues the track whose last box overlaps it most (intersection over union at
least ``min_iou``, each track used once per frame), otherwise it starts a new track. A window is
always built from one track, so it never mixes two people. :func:`choose_tracks` applies the face
policy to a window: ``largest`` (the track with the largest summed box area over the window),
``center`` (the track whose boxes lie closest to the image centre on average) or ``all`` (every
track present in the window, one output stream each).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from au_llm.config_checks import FacePolicy, choices
from au_llm.preprocess.landmarks import FaceLandmarks

FACE_POLICIES = choices(FacePolicy)
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackedFace:
    """One face in one frame.

    Attributes:
        track: Track id (0, 1, ... in order of first appearance).
        points: ``[478, 2]`` pixel landmarks (x, y).
        confidence: Face detection score (NaN when not scored).
        box: ``(x, y, w, h)`` bounding box of the landmarks in source pixels.
    """

    track: int
    points: np.ndarray
    confidence: float
    box: Box


@dataclass
class FrameRecord:
    """A decoded frame with its tracked faces.

    Attributes:
        number: Frame number (file number for folders, 0-based index for videos).
        image: ``[H, W, 3]`` uint8 RGB.
        faces: The tracked faces of the frame.
    """

    number: int
    image: np.ndarray
    faces: list[TrackedFace] = field(default_factory=list)

    def face(self, track: int) -> TrackedFace | None:
        """The face of ``track`` in this frame, or None."""
        return next((f for f in self.faces if f.track == track), None)


def face_box(points: np.ndarray) -> Box:
    """``(x, y, w, h)`` bounding box of landmarks ``[N, 2]``."""
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when disjoint or empty)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Assigns track ids to the faces of consecutive frames by box overlap.

    Args:
        min_iou: Least overlap with a track's last box for a face to continue that track.
    """

    def __init__(self, min_iou: float = 0.3) -> None:
        self.min_iou = min_iou
        self.last: dict[int, Box] = {}

    def update(self, faces: Sequence[FaceLandmarks]) -> list[TrackedFace]:
        """Track ids for the faces of the next frame (greedy, highest overlap first)."""
        boxes = [face_box(f.points) for f in faces]
        pairs = sorted(
            (
                (box_iou(box, last), i, track)
                for i, box in enumerate(boxes)
                for track, last in self.last.items()
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        for iou, i, track in pairs:
            if iou < self.min_iou:
                break
            if i not in assigned and track not in assigned.values():
                assigned[i] = track
        tracked = []
        for i, (face, box) in enumerate(zip(faces, boxes, strict=True)):
            track = assigned.get(i)
            if track is None:
                track = len(self.last)
            self.last[track] = box
            tracked.append(TrackedFace(track, face.points, face.confidence, box))
        return tracked


def track_frames(
    frames: Iterable[tuple[int, np.ndarray]], landmarker: object | None
) -> Iterator[FrameRecord]:
    """Landmark every frame once (``landmarker.detect_all``) and track its faces.

    Args:
        frames: ``(number, [H, W, 3] uint8 RGB)`` in time order.
        landmarker: Anything with ``detect_all(image) -> list[FaceLandmarks]``; None records no
            faces (alignment mode ``none``).
    """
    tracker = FaceTracker()
    for number, image in frames:
        faces = landmarker.detect_all(image) if landmarker is not None else []  # type: ignore[attr-defined]
        yield FrameRecord(number, image, tracker.update(faces))


def choose_tracks(window: Sequence[FrameRecord], policy: str) -> list[int]:
    """Track ids a window is predicted for under a face policy (empty when it has no face).

    Raises:
        ValueError: For an unknown policy.
    """
    if policy not in FACE_POLICIES:
        raise ValueError(f"face policy {policy!r}: expected one of {', '.join(FACE_POLICIES)}")
    boxes: dict[int, list[Box]] = {}
    for record in window:
        for face in record.faces:
            boxes.setdefault(face.track, []).append(face.box)
    if not boxes or policy == "all":
        return sorted(boxes)
    if policy == "largest":
        return [max(sorted(boxes), key=lambda t: sum(b[2] * b[3] for b in boxes[t]))]
    height, width = window[0].image.shape[:2]
    centre = np.array([width / 2, height / 2])

    def distance(track: int) -> float:
        middles = np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2] for b in boxes[track]])
        return float(np.linalg.norm(middles - centre, axis=1).mean())

    return [min(sorted(boxes), key=distance)]
