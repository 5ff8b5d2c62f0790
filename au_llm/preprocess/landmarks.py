"""Facial landmarks with mediapipe, offline.

Two backends:

* ``facemesh`` (default): ``mediapipe.solutions.face_mesh.FaceMesh`` whose models ship inside the
  mediapipe 0.10.21 wheel. It runs in ``static_image_mode`` (every image is detected on its own,
  no tracking state leaks between frames or clips) with ``refine_landmarks=True``, giving 478
  points (468 mesh points + 10 iris points).
* ``tasks``: the Tasks ``FaceLandmarker`` from a local ``face_landmarker.task`` file (478 points).
  Nothing is ever downloaded.

``FaceLandmarks.confidence`` is the score of mediapipe's short-range BlazeFace face detector (the
detector FaceMesh runs internally before it fits the mesh), run on the same image; FaceMesh itself
exposes no score. It is 0.0 when the mesh was fitted but the detector alone scores below its
lowest threshold, and NaN when the detector is not available in the installed mediapipe.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ("facemesh", "tasks")


@dataclass(frozen=True)
class FaceLandmarks:
    """Landmarks of one face.

    Attributes:
        points: ``[N, 2]`` float64 pixel coordinates (x, y) in the input image; N is 478 for both
            backends here (468 with ``refine=False``).
        confidence: BlazeFace detection score in [0, 1] (see the module docstring).
    """

    points: np.ndarray
    confidence: float


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


class Landmarker:
    """A reusable face landmarker (one face per image).

    Create it once per process and call :meth:`detect` on many images; use it as a context
    manager or call :meth:`close` to free the mediapipe graphs.

    Args:
        backend: ``facemesh`` or ``tasks``.
        task_model: Path of a local ``face_landmarker.task`` file (``tasks`` only).
        min_detection_confidence: Face detector threshold of the landmarker.
        refine: ``facemesh`` only: add the 10 iris points (478 instead of 468) and refine the eye
            and lip contours.
        score: Also run the BlazeFace detector to fill ``FaceLandmarks.confidence``; when False
            the confidence is NaN.

    Attributes:
        calls: Number of :meth:`detect` calls so far.
    """

    def __init__(
        self,
        backend: str = "facemesh",
        task_model: str | Path | None = None,
        min_detection_confidence: float = 0.5,
        refine: bool = True,
        score: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"landmarker backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        self.calls = 0
        self._detector: Any = None
        self._mesh: Any = None
        self._tasks: Any = None
        import mediapipe as mp

        if backend == "facemesh":
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=refine,
                min_detection_confidence=min_detection_confidence,
            )
        else:
            self._tasks = _create_tasks_landmarker(task_model, min_detection_confidence)
        if score:
            solutions = getattr(mp, "solutions", None)
            if solutions is not None and hasattr(solutions, "face_detection"):
                self._detector = solutions.face_detection.FaceDetection(
                    model_selection=0, min_detection_confidence=0.05
                )
            else:
                logger.warning("mediapipe face_detection unavailable: landmark confidence is NaN")

    @classmethod
    def from_config(cls, cfg: Any) -> Landmarker:
        """Build a landmarker from a ``PreprocessConfig`` (``landmarker``, ``task_model``)."""
        return cls(backend=cfg.landmarker, task_model=cfg.task_model)

    def detect(self, image_rgb: np.ndarray) -> FaceLandmarks | None:
        """Find the landmarks of the most prominent face.

        Args:
            image_rgb: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grayscale) image.

        Returns:
            The landmarks in pixels, or None when no face is found.
        """
        if self._mesh is None and self._tasks is None:
            raise RuntimeError("Landmarker is closed")
        image = as_rgb(image_rgb)
        self.calls += 1
        height, width = image.shape[:2]
        normalised = (
            self._mesh_points(image) if self._mesh is not None else self._task_points(image)
        )
        if normalised is None:
            return None
        points = normalised * np.array([width, height], dtype=np.float64)
        return FaceLandmarks(points=points, confidence=self._score(image))

    def _mesh_points(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        return np.array([(m.x, m.y) for m in marks], dtype=np.float64)

    def _task_points(self, image: np.ndarray) -> np.ndarray | None:
        import mediapipe as mp

        result = self._tasks.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        if not result.face_landmarks:
            return None
        return np.array([(m.x, m.y) for m in result.face_landmarks[0]], dtype=np.float64)

    def _score(self, image: np.ndarray) -> float:
        if self._detector is None:
            return float("nan")
        result = self._detector.process(image)
        if not result.detections:
            return 0.0
        return float(max(d.score[0] for d in result.detections))

    def close(self) -> None:
        """Release the mediapipe graphs (idempotent)."""
        for graph in (self._mesh, self._tasks, self._detector):
            if graph is not None:
                graph.close()
        self._mesh = self._tasks = self._detector = None

    def __enter__(self) -> Landmarker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _create_tasks_landmarker(task_model: str | Path | None, min_confidence: float) -> Any:
    if not task_model:
        raise ValueError("landmarker 'tasks' needs a local face_landmarker.task path (task_model)")
    path = Path(task_model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"landmarker 'tasks': model file not found: {path}")
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import (
        FaceLandmarker,
        FaceLandmarkerOptions,
        RunningMode,
    )

    options = FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=RunningMode.IMAGE,
        num_faces=1,
        min_face_detection_confidence=min_confidence,
        min_face_presence_confidence=min_confidence,
    )
    return FaceLandmarker.create_from_options(options)


_shared: Landmarker | None = None
_shared_lock = threading.Lock()


def detect_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """Landmarks of the face in one photo with the bundled FaceMesh.

    A process-wide FaceMesh is created on the first call and reused (calls are serialised with a
    lock, so this is safe but not parallel across threads).

    Args:
        image_rgb: ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` grayscale) image.

    Returns:
        ``[478, 2]`` float64 pixel coordinates (x, y), or None when no face is found.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Landmarker(score=False)
        found = _shared.detect(image_rgb)
    return None if found is None else found.points
