import numpy as np
import pytest
import skimage.data

from au_llm.preprocess.landmarks import Landmarker, detect_landmarks


def test_finds_the_astronaut_face(landmarker: Landmarker) -> None:
    image = skimage.data.astronaut()
    calls = landmarker.calls
    face = landmarker.detect(image)
    assert landmarker.calls == calls + 1
    assert face is not None
    assert face.points.shape == (478, 2)
    assert 0.5 < face.confidence <= 1.0
    # Pixel coordinates on the face (roughly x 180-270, y 70-180 in this photo).
    assert np.all(face.points[:, 0] > 150) and np.all(face.points[:, 0] < 300)
    assert np.all(face.points[:, 1] > 50) and np.all(face.points[:, 1] < 200)
    # Subject's right eye outer corner (33) is left of the left eye outer corner (263).
    assert face.points[33, 0] < face.points[133, 0] < face.points[362, 0] < face.points[263, 0]


def test_grayscale_input_and_no_face(landmarker: Landmarker) -> None:
    gray = skimage.data.astronaut().mean(axis=2).astype(np.uint8)
    assert landmarker.detect(gray) is not None
    assert landmarker.detect(np.full((200, 200, 3), 128, np.uint8)) is None


def test_detect_landmarks_convenience() -> None:
    points = detect_landmarks(skimage.data.astronaut())
    assert points is not None and points.shape == (478, 2)
    assert detect_landmarks(np.zeros((64, 64, 3), np.uint8)) is None
    with pytest.raises(ValueError, match="uint8"):
        detect_landmarks(np.zeros((64, 64, 3), np.float32))


def test_tasks_backend_needs_local_model(tmp_path) -> None:
    with pytest.raises(ValueError, match="task"):
        Landmarker(backend="tasks")
    with pytest.raises(FileNotFoundError, match="missing.task"):
        Landmarker(backend="tasks", task_model=tmp_path / "missing.task")


def test_closed_landmarker_refuses() -> None:
    marker = Landmarker(score=False)
    marker.close()
    with pytest.raises(RuntimeError, match="closed"):
        marker.detect(np.zeros((32, 32, 3), np.uint8))
