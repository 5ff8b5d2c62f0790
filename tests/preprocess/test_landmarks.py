import os
import shutil
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest
import skimage.data

from au_llm.assets import FACE_LANDMARKER, AssetError, ensure_asset
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


def test_missing_or_wrong_model_names_hash_and_install_command(tmp_path) -> None:
    with pytest.raises(
        AssetError,
        match=f"does not exist.*{FACE_LANDMARKER.sha256}.*assets --install face_landmarker",
    ):
        Landmarker(model=tmp_path / "missing.task")
    not_a_bundle = tmp_path / "notes.task"
    not_a_bundle.write_text("not a model")
    with pytest.raises(AssetError, match=f"not a model bundle.*{FACE_LANDMARKER.sha256}"):
        Landmarker(model=not_a_bundle)
    other_bundle = tmp_path / "other.task"
    with zipfile.ZipFile(other_bundle, "w") as bundle:
        bundle.writestr("hand_landmarks_detector.tflite", b"x")
    with pytest.raises(AssetError, match="lacks face_detector.tflite, face_landmarks_detector"):
        Landmarker(model=other_bundle)


def test_users_own_copy_of_the_bundle(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    own = tmp_path / "mine.task"
    shutil.copyfile(ensure_asset(FACE_LANDMARKER), own)
    with Landmarker(model=own, score=False) as marker:
        assert marker.model == own
        face = marker.detect(skimage.data.astronaut())
    assert face is not None and face.points.shape == (478, 2) and np.isnan(face.confidence)
    assert "not the verified bundle" not in caplog.text
    # A re-packed bundle (another sha256) still works, with a warning naming both hashes.
    repacked = tmp_path / "repacked.task"
    with zipfile.ZipFile(own) as src, zipfile.ZipFile(repacked, "w") as dst:
        for member in src.infolist():
            dst.writestr(member.filename, src.read(member))
    with Landmarker(model=repacked, score=False) as marker:
        assert marker.detect(skimage.data.astronaut()) is not None
    assert "not the verified bundle" in caplog.text and FACE_LANDMARKER.sha256 in caplog.text


def test_several_faces_largest_first(landmarker: Landmarker) -> None:
    face = skimage.data.astronaut()[0:320, 65:385]
    smaller = cv2.resize(face, (240, 240))
    pad = np.zeros_like(face)
    pad[40:280, 40:280] = smaller[:, ::-1]
    image = np.ascontiguousarray(np.concatenate([pad, face], axis=1))
    with Landmarker(num_faces=3) as marker:
        faces = marker.detect_all(image)
        largest = marker.detect(image)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].points[:, 0].min() > 320 > faces[1].points[:, 0].max()
    assert all(0.5 < f.confidence <= 1.0 for f in faces)
    assert largest is not None and np.array_equal(largest.points, faces[0].points)
    # The default landmarker looks for one face only.
    assert len(landmarker.detect_all(image)) == 1
    with pytest.raises(ValueError, match="num_faces"):
        Landmarker(num_faces=0)


def test_closed_landmarker_refuses() -> None:
    marker = Landmarker(score=False)
    marker.close()
    with pytest.raises(RuntimeError, match="closed"):
        marker.detect(np.zeros((32, 32, 3), np.uint8))


def test_landmarker_start_up_prints_nothing() -> None:
    script = (
        "import numpy as np\n"
        "from au_llm.preprocess.landmarks import Landmarker\n"
        "with Landmarker(num_faces=5) as marker:\n"
        "    for _ in range(3):\n"
        "        marker.detect_all(np.zeros((120, 160, 3), np.uint8))\n"
        "print('done')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout == "done\n"
    assert run.stderr == ""


def test_native_warnings_of_any_later_detection_are_dropped(capfd) -> None:
    """LiteRT warns on some CPUs on a later detection (not only the first): all are filtered."""
    line = b"W0000 00:00:1.0 1 inference_runner_litert.cc:1433] Input tensor memory is not aligned"

    class Chatty:
        def __init__(self, tasks):
            self.tasks = tasks

        def detect(self, frame):
            os.write(2, line + b"\n")
            return self.tasks.detect(frame)

        def close(self):
            self.tasks.close()

    with Landmarker(num_faces=1) as marker:
        marker.detect_all(np.zeros((120, 160, 3), np.uint8))
        marker._tasks = Chatty(marker._tasks)
        for _ in range(2):
            marker.detect_all(np.zeros((120, 160, 3), np.uint8))
    assert capfd.readouterr().err == ""
