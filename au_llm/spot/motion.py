"""Per-frame micro-movement of facial regions on the aligned face, streamed.

The face is cut into regions by its landmarks (brows, eyes, mouth, chin; the nose bridge is the
reference): each region's box is the bounding box of its landmarks in the aligned crop, padded
(a brow's box is the strip along its upper edge, so that blinks stay out of it), placed by the
per-coordinate median of the last landmarked frames' landmarks. For frame ``t`` and a distance
``k`` the movement of a region compares the frame with the mean of its two neighbours ``t - k``
and ``t + k`` (the MEGC baselines' feature difference: a movement lasting about ``2k`` frames
stands out, a slow drift does not). Two kinds of feature measure it:

* ``diff``: mean absolute difference of the blurred gray pixels in the box;
* ``farneback`` / ``dis``: mean magnitude of OpenCV's dense optical flow (Farnebäck, or DIS at its
  ultrafast preset) from the neighbours' mean to the frame.

Residual head motion is removed by the reference region: its mean difference is subtracted from
each region's (``diff``), its mean flow vector from every flow vector (flows). The frame's score
at distance ``k`` is the mean of the ``top`` largest region values. Frames without the face, or
whose neighbour lacks it, have no score (nan).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from au_llm.config_checks import choices

if TYPE_CHECKING:
    from au_llm.spot.stream import AlignedFrame

MotionFeature = Literal["diff", "farneback", "dis"]
"""How the movement of a region is measured (see the module)."""
MOTION_FEATURES = choices(MotionFeature)

# FaceMesh landmarks of each region ("right" is the subject's right, the image's left).
REGION_LANDMARKS: dict[str, tuple[int, ...]] = {
    "brow_right": (70, 63, 105, 66, 107, 46, 53, 52, 65, 55),
    "brow_left": (300, 293, 334, 296, 336, 276, 283, 282, 295, 285),
    "eye_right": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "eye_left": (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398),
    "mouth": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39),
    "chin": (152, 148, 176, 149, 150, 377, 400, 378, 379, 199, 175, 200),
    "nose": (195, 5, 4, 1, 19, 94),
}
REFERENCE_REGION = "nose"
"""The region whose movement stands for residual head motion: the lower nose ridge and tip (the
bridge between the eyes follows the lids in a blink)."""
FACE_REGIONS: tuple[str, ...] = tuple(r for r in REGION_LANDMARKS if r != REFERENCE_REGION)
# Box padding per region, as fractions of the crop side: (sideways, up, down). A brow's box is the
# strip along its upper edge (the brow's movement shows there), kept off the lids, which blinks
# move: it ends 0.06 of the side above the brow's lower landmarks.
_PADDING: dict[str, tuple[float, float, float]] = {
    "brow_right": (0.03, 0.08, -0.06),
    "brow_left": (0.03, 0.08, -0.06),
    "eye_right": (0.02, 0.02, 0.02),
    "eye_left": (0.02, 0.02, 0.02),
    "mouth": (0.04, 0.03, 0.04),
    "chin": (0.03, 0.0, 0.03),
    "nose": (0.03, 0.02, 0.02),
}
# Farneback's averaging window in pixels: small, so that a blink's flow does not spread into the
# brows' boxes.
_FARNEBACK_WINDOW = 5
# Landmark sets of the last landmarked frames whose median places the boxes.
_BOX_HISTORY = 5


def region_boxes(points: np.ndarray, regions: Sequence[str], size: int) -> np.ndarray:
    """Pixel boxes of regions from landmarks in crop pixels.

    Args:
        points: ``[478, 2]`` landmarks (x, y) in the crop.
        regions: Region names (keys of :data:`REGION_LANDMARKS`).
        size: Crop side.

    Returns:
        ``[R, 4]`` int ``(x0, y0, x1, y1)``, end exclusive: the landmarks' bounding box padded
        per region (a brow's is the strip along its upper edge, off the lids) and cut to the
        crop; at least one pixel each.
    """
    index = np.concatenate([REGION_LANDMARKS[name] for name in regions])
    starts = np.cumsum([0] + [len(REGION_LANDMARKS[name]) for name in regions[:-1]])
    marks = points[index]
    pads = size * np.array([_PADDING[name] for name in regions])  # [R, 3]: side, up, down
    low = np.floor(np.minimum.reduceat(marks, starts) - pads[:, :2]).astype(np.int64)
    high = np.ceil(np.maximum.reduceat(marks, starts) + pads[:, [0, 2]]).astype(np.int64) + 1
    low = np.clip(low, 0, size - 1)
    high = np.clip(high, low + 1, size)
    return np.hstack([low, high])


def _box_means(values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``values [H, W, ...]`` inside each box: ``[R, ...]``."""
    return np.stack([values[y0:y1, x0:x1].mean(axis=(0, 1)) for x0, y0, x1, y1 in boxes])


@dataclass
class _Entry:
    crop: np.ndarray | None
    smooth: np.ndarray | None
    boxes: np.ndarray | None


class MotionMeter:
    """Per-frame scores of a streamed recording, at several distances.

    Args:
        feature: ``diff``, ``farneback`` or ``dis``.
        distances: ``k`` per scale, in frames (each at least 1).
        regions: The face regions scored (the reference region is always measured too).
        size: Side of the aligned crops.
        top: The frame's score is the mean of its ``top`` largest region values.

    Raises:
        ValueError: An unknown feature or region, a distance below 1, or ``top`` outside
            ``1..len(regions)``.
    """

    def __init__(
        self,
        *,
        feature: str,
        distances: Sequence[int],
        regions: Sequence[str],
        size: int,
        top: int,
    ) -> None:
        if feature not in MOTION_FEATURES:
            raise ValueError(f"feature {feature!r}: expected one of {', '.join(MOTION_FEATURES)}")
        unknown = [r for r in regions if r not in FACE_REGIONS]
        if unknown or not regions:
            raise ValueError(f"regions {list(regions)}: expected some of {', '.join(FACE_REGIONS)}")
        if min(distances, default=0) < 1:
            raise ValueError(f"distances {list(distances)}: expected at least 1 frame each")
        if not 1 <= top <= len(regions):
            raise ValueError(f"top = {top}: expected 1..{len(regions)} (the regions scored)")
        self.feature, self.distances, self.size, self.top = feature, list(distances), size, top
        self.regions = [*regions, REFERENCE_REGION]
        self._buffer: deque[_Entry] = deque(maxlen=2 * max(self.distances) + 1)
        self._history: deque[np.ndarray] = deque(maxlen=_BOX_HISTORY)
        self._used = np.unique(np.concatenate([REGION_LANDMARKS[r] for r in self.regions]))
        self._boxes: np.ndarray | None = None
        self._scores = np.full((1024, len(self.distances)), np.nan, dtype=np.float32)
        self.count = 0
        self._flow = None
        if feature == "dis":
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def push(self, frame: AlignedFrame) -> None:
        """Add the next frame (frames must come in order, none left out)."""
        if frame.points is not None:
            self._history.append(frame.points[self._used])
            points = np.zeros((len(frame.points), 2))
            points[self._used] = np.median(np.stack(self._history), axis=0)
            self._boxes = region_boxes(points, self.regions, self.size)
        boxes = self._boxes if frame.crop is not None else None
        smooth = None
        if frame.crop is not None and self.feature == "diff":
            smooth = cv2.GaussianBlur(frame.crop.astype(np.float32), (0, 0), 1.0)
        self._buffer.append(_Entry(frame.crop, smooth, boxes))
        if self.count == len(self._scores):
            grown = np.full((2 * len(self._scores), len(self.distances)), np.nan, np.float32)
            grown[: self.count] = self._scores
            self._scores = grown
        self.count += 1
        for s, k in enumerate(self.distances):
            if len(self._buffer) > 2 * k:
                head = self._buffer[-1]
                centre = self._buffer[-1 - k]
                tail = self._buffer[-1 - 2 * k]
                self._scores[self.count - 1 - k, s] = self._score(tail, centre, head)

    def scores(self) -> np.ndarray:
        """``[frames pushed, scales]`` float32 scores (nan where undefined)."""
        return self._scores[: self.count].copy()

    def _score(self, tail: _Entry, centre: _Entry, head: _Entry) -> float:
        if centre.boxes is None or tail.crop is None or head.crop is None:
            return np.nan
        values = self._region_values(tail, centre, head, centre.boxes)
        face, reference = values[:-1], values[-1]
        face = np.sort(np.maximum(face - reference, 0.0) if self.feature == "diff" else face)
        return float(face[-self.top :].mean())

    def _region_values(
        self, tail: _Entry, centre: _Entry, head: _Entry, boxes: np.ndarray
    ) -> np.ndarray:
        """``[R + 1]`` movement per region, the reference last (see the module)."""
        if self.feature == "diff":
            assert tail.smooth is not None and centre.smooth is not None
            assert head.smooth is not None
            change = np.abs(centre.smooth - (tail.smooth + head.smooth) / 2)
            return _box_means(change, boxes)
        assert tail.crop is not None and centre.crop is not None and head.crop is not None
        neighbours = ((tail.crop.astype(np.uint16) + head.crop) // 2).astype(np.uint8)
        if self._flow is not None:
            flow = self._flow.calc(neighbours, centre.crop, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(
                neighbours, centre.crop, None, 0.5, 2, _FARNEBACK_WINDOW, 3, 5, 1.1, 0
            )
        x0, y0, x1, y1 = boxes[-1]
        flow = flow - flow[y0:y1, x0:x1].reshape(-1, 2).mean(axis=0)
        return _box_means(np.hypot(flow[..., 0], flow[..., 1]), boxes)
