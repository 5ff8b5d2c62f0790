"""Similarity alignment of clips to a canonical face template.

Stable landmarks (mediapipe FaceMesh indices) are fitted by least squares (Umeyama, no
reflection) to a template: the eye corners 33 / 133 (right eye outer / inner, subject's right)
and 362 / 263 (left eye inner / outer), and the nose bridge and ridge 168, 6, 197, 195, 5. These
points move little with expressions (brows, lids' centres and the mouth are left out on purpose).
Template positions are the x, y of those vertices in mediapipe's ``canonical_face_model.obj``
(y flipped to point down). The template is framed so that the canonical face's extent (forehead
top 10 to chin 152, cheek to cheek) fills ``1 - 2 * margin`` of the square crop, centred.

Modes (``PreprocessConfig.align``, :data:`~au_llm.config_checks.AlignMode`):

* ``clip``: frames are landmarked from the onset on until ``ref_frames`` faces are found, trying
  at most ``ref_frames + max_face_search`` frames; the per-point median of those landmarks gives
  ONE transform applied to every frame, so landmark noise adds no motion between frames.
* ``frame``: every frame is landmarked; per-frame transform parameters (a, b, tx, ty of
  ``[[a, -b, tx], [b, a, ty]]``) of frames without a face are linearly interpolated, then smoothed
  with a centred moving average of ``smooth`` frames (shrunk symmetrically at the clip ends, so
  linear head motion is followed exactly).
* ``none``: the centred square of the frame, resized.

When no face is found, the centre crop is used and the result says so (``fallback``).
Downscaling by more than 2x first resizes the needed region with area averaging, so small crops
of large frames do not alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from au_llm.config import PreprocessConfig
from au_llm.preprocess.landmarks import FaceLandmarks, Landmarker
from au_llm.preprocess.readers import FrameSource

STABLE_LANDMARKS: tuple[int, ...] = (33, 133, 362, 263, 168, 6, 197, 195, 5)
EYE_CORNERS: tuple[int, ...] = (33, 133, 362, 263)

# x, y (y down) of STABLE_LANDMARKS in mediapipe's canonical_face_model.obj (units: cm).
_CANONICAL = np.array(
    [
        [-4.445859, -2.663991],
        [-1.856432, -2.585245],
        [1.856432, -2.585245],
        [4.445859, -2.663991],
        [0.0, -3.271027],
        [0.0, -2.473255],
        [0.0, -1.728369],
        [0.0, -1.059413],
        [0.0, -0.365669],
    ]
)
# Extent of the canonical face: forehead top (10), chin (152), widest cheek points.
_FACE_TOP, _FACE_BOTTOM, _FACE_HALF_WIDTH = -8.261778, 9.403378, 7.743095
_FACE_SIDE = max(_FACE_BOTTOM - _FACE_TOP, 2 * _FACE_HALF_WIDTH)
_FACE_CENTRE = np.array([0.0, (_FACE_TOP + _FACE_BOTTOM) / 2])

# The fallback marker of a clip in which no face was found (centre-cropped instead).
NO_FACE = "centre_crop"

# Frame mode keeps decoded frames in memory up to this size, and decodes twice beyond it.
_FRAME_MEMORY_BYTES = 256 * 2**20


@dataclass
class AlignResult:
    """An aligned clip.

    Attributes:
        frames: ``[T, size, size, C]`` uint8 (C = 1 for gray, 3 for rgb).
        numbers: ``[T]`` frame numbers.
        transforms: ``[T, 2, 3]`` float64 source-to-crop affine matrices.
        fallback: ``""`` when the face was aligned normally; ``next_frame`` (clip mode: no face on
            the onset frame, later frames used), ``interpolated`` (frame mode: some frames had no
            face) or ``centre_crop`` (no face found). Always ``""`` for mode ``none``.
        confidence: Mean landmark confidence of the detections used (NaN when none).
        detections: Number of frames whose landmarks were used.
    """

    frames: np.ndarray
    numbers: np.ndarray
    transforms: np.ndarray
    fallback: str
    confidence: float
    detections: int


def template_points(size: int, margin: float) -> np.ndarray:
    """Positions of ``STABLE_LANDMARKS`` in the aligned crop.

    Args:
        size: Crop side in pixels.
        margin: Border around the canonical face, as a fraction of the side.

    Returns:
        ``[len(STABLE_LANDMARKS), 2]`` pixel coordinates (x, y); pixel centres are integers.
    """
    scale = size * (1 - 2 * margin) / _FACE_SIDE
    return (_CANONICAL - _FACE_CENTRE) * scale + (size - 1) / 2


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation) mapping ``src`` onto ``dst``.

    Args:
        src: ``[K, 2]`` points.
        dst: ``[K, 2]`` target points.

    Returns:
        ``[2, 3]`` matrix ``[[a, -b, tx], [b, a, ty]]``.
    """
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    w = np.sum(np.conj(zs - ms) * (zd - md)) / max(np.sum(np.abs(zs - ms) ** 2), 1e-12)
    t = md - w * ms
    return np.array([[w.real, -w.imag, t.real], [w.imag, w.real, t.imag]])


def landmark_transform(points: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Similarity from an image's FaceMesh landmarks ``[N, 2]`` to the crop template ``[2, 3]``."""
    return fit_similarity(points[list(STABLE_LANDMARKS)], template_points(size, margin))


def centre_crop_transform(height: int, width: int, size: int) -> np.ndarray:
    """Affine ``[2, 3]`` mapping the centred ``min(H, W)`` square of a frame onto the crop."""
    side = min(height, width)
    scale = size / side
    x0, y0 = (width - side) / 2, (height - side) / 2
    # Pixel-centre convention: source pixel x0 - 0.5 + side maps to size - 0.5.
    tx = -0.5 - (x0 - 0.5) * scale
    ty = -0.5 - (y0 - 0.5) * scale
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


def warp(image: np.ndarray, matrix: np.ndarray, size: int, color: str) -> np.ndarray:
    """Warp one frame into the aligned crop.

    Args:
        image: ``[H, W, 3]`` uint8 RGB frame.
        matrix: ``[2, 3]`` source-to-crop affine matrix.
        size: Crop side.
        color: ``gray`` or ``rgb``.

    Returns:
        ``[size, size, C]`` uint8, C = 1 (gray) or 3 (rgb).
    """
    if color == "gray":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 0.5:
        image, matrix = _area_downscale(image, matrix, size, scale)
    out = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(size, size, -1)


def _area_downscale(
    image: np.ndarray, matrix: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the region the warp reads and shrink it with area averaging to about 2x the output.

    Returns the smaller image and the matrix adjusted to it.
    """
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1]])
    corners = np.vstack([corners, [size - 0.5, size - 0.5, 1]])
    src = corners @ inverse.T
    pad = math.ceil(2 / scale) + 2
    x0 = max(int(math.floor(src[:, 0].min())) - pad, 0)
    y0 = max(int(math.floor(src[:, 1].min())) - pad, 0)
    x1 = min(int(math.ceil(src[:, 0].max())) + pad, width)
    y1 = min(int(math.ceil(src[:, 1].max())) + pad, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        x0, y0, x1, y1 = 0, 0, width, height
    roi = image[y0:y1, x0:x1]
    linear = matrix[:, :2]
    shift = matrix[:, 2] + linear @ np.array([x0, y0], dtype=np.float64)
    ratio = 2 * scale
    new_w = max(round(roi.shape[1] * ratio), 1)
    new_h = max(round(roi.shape[0] * ratio), 1)
    small = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
    rx, ry = new_w / roi.shape[1], new_h / roi.shape[0]
    # A resized pixel p' covers source p = (p' + 0.5) / r - 0.5.
    linear_small = linear @ np.diag([1 / rx, 1 / ry])
    shift_small = shift + linear @ np.array([0.5 / rx - 0.5, 0.5 / ry - 0.5])
    return small, np.hstack([linear_small, shift_small[:, None]])


def smooth_transforms(
    transforms: np.ndarray, valid: np.ndarray, window: int, statistic: str = "mean"
) -> np.ndarray:
    """Fill frames without a face and smooth per-frame similarity transforms over time.

    Args:
        transforms: ``[T, 2, 3]`` matrices (rows where ``valid`` is False are ignored).
        valid: ``[T]`` bool, frames whose transform was estimated.
        window: Moving-average length in frames (1 disables smoothing).
        statistic: ``mean`` (a moving average) or ``median`` (a moving median: it follows
            steady head motion exactly and drops landmark excursions lasting under half the
            window, such as a blink pulling the eye corners).

    Returns:
        ``[T, 2, 3]`` smoothed matrices. Parameters of invalid frames are linearly interpolated
        between their valid neighbours (held constant beyond the first/last valid frame); the
        window is centred and shrinks symmetrically near the ends.
    """
    count = len(transforms)
    params = np.stack(
        [transforms[:, 0, 0], transforms[:, 1, 0], transforms[:, 0, 2], transforms[:, 1, 2]],
        axis=1,
    )
    known = np.flatnonzero(valid)
    steps = np.arange(count)
    filled = np.stack(
        [np.interp(steps, known, params[known, k]) for k in range(params.shape[1])], axis=1
    )
    half = max(window, 1) // 2
    smoothed = np.empty_like(filled)
    for t in range(count):
        h = min(half, t, count - 1 - t)
        part = filled[t - h : t + h + 1]
        smoothed[t] = np.median(part, axis=0) if statistic == "median" else part.mean(axis=0)
    a, b, tx, ty = smoothed.T
    return np.stack([np.stack([a, -b, tx], axis=1), np.stack([b, a, ty], axis=1)], axis=1)


class _FrameStore:
    """Frames of a source decoded once when they fit ``_FRAME_MEMORY_BYTES``, else re-decoded."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.kept: dict[int, np.ndarray] = {}
        self.bytes = 0

    def read(self, i: int, *, keep: bool) -> np.ndarray:
        if i in self.kept:
            return self.kept[i]
        frame = self.source.read(i)
        if keep and self.bytes + frame.nbytes <= _FRAME_MEMORY_BYTES:
            self.kept[i] = frame
            self.bytes += frame.nbytes
        return frame


def align_source(
    source: FrameSource, cfg: PreprocessConfig, landmarker: Landmarker | None
) -> AlignResult:
    """Align every frame of a clip.

    Args:
        source: The clip's frames (see :func:`au_llm.preprocess.readers.open_clip`).
        cfg: Size, colour, margin, mode and face-search settings.
        landmarker: Landmarker to use; may be None only for ``mode: none``.

    Returns:
        The aligned clip with its transforms and fallback information.

    Raises:
        ClipReadError: When a frame cannot be decoded.
    """
    count = len(source.numbers)
    store = _FrameStore(source)
    first = store.read(0, keep=True)
    if cfg.align == "none":
        matrix = centre_crop_transform(first.shape[0], first.shape[1], cfg.size)
        transforms = np.repeat(matrix[None], count, axis=0)
        fallback, confidence, found = "", math.nan, 0
    else:
        if landmarker is None:
            raise ValueError(f"mode {cfg.align!r} needs a Landmarker")
        if cfg.align == "clip":
            transforms, fallback, confidence, found = _clip_transforms(store, cfg, landmarker)
        else:
            transforms, fallback, confidence, found = _frame_transforms(store, cfg, landmarker)
        if found == 0:
            matrix = centre_crop_transform(first.shape[0], first.shape[1], cfg.size)
            transforms = np.repeat(matrix[None], count, axis=0)
    frames = np.stack(
        [warp(store.read(i, keep=False), transforms[i], cfg.size, cfg.color) for i in range(count)]
    )
    return AlignResult(
        frames=frames,
        numbers=np.asarray(source.numbers, dtype=np.int64).copy(),
        transforms=transforms,
        fallback=fallback,
        confidence=confidence,
        detections=found,
    )


def _mean_confidence(found: list[FaceLandmarks]) -> float:
    scores = [f.confidence for f in found if not math.isnan(f.confidence)]
    return float(np.mean(scores)) if scores else math.nan


def _clip_transforms(
    store: _FrameStore, cfg: PreprocessConfig, landmarker: Landmarker
) -> tuple[np.ndarray, str, float, int]:
    count = len(store.source.numbers)
    found: list[FaceLandmarks] = []
    first_face = -1
    for i in range(min(count, cfg.ref_frames + cfg.max_face_search)):
        face = landmarker.detect(store.read(i, keep=True))
        if face is None:
            continue
        first_face = i if first_face < 0 else first_face
        found.append(face)
        if len(found) == cfg.ref_frames:
            break
    if not found:
        return np.zeros((count, 2, 3)), NO_FACE, math.nan, 0
    reference = np.median(np.stack([f.points for f in found]), axis=0)
    matrix = landmark_transform(reference, cfg.size, cfg.margin)
    fallback = "next_frame" if first_face > 0 else ""
    return np.repeat(matrix[None], count, axis=0), fallback, _mean_confidence(found), len(found)


def _frame_transforms(
    store: _FrameStore, cfg: PreprocessConfig, landmarker: Landmarker
) -> tuple[np.ndarray, str, float, int]:
    count = len(store.source.numbers)
    transforms = np.zeros((count, 2, 3))
    valid = np.zeros(count, dtype=bool)
    found: list[FaceLandmarks] = []
    for i in range(count):
        face = landmarker.detect(store.read(i, keep=True))
        if face is not None:
            transforms[i] = landmark_transform(face.points, cfg.size, cfg.margin)
            valid[i] = True
            found.append(face)
    if not found:
        return transforms, NO_FACE, math.nan, 0
    fallback = "" if valid.all() else "interpolated"
    smoothed = smooth_transforms(transforms, valid, cfg.smooth)
    return smoothed, fallback, _mean_confidence(found), len(found)
