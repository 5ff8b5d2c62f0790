import numpy as np
import pytest

from au_llm.preprocess.landmarks import FaceLandmarks
from au_llm.preprocess.tracks import FaceTracker, FrameRecord, box_iou, choose_tracks


def _face(x, y, side):
    corners = np.array([[x, y], [x + side, y + side]], dtype=np.float64)
    return FaceLandmarks(np.repeat(corners, 239, axis=0)[:478], 0.9)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_tracks_follow_moving_faces_whatever_their_order():
    tracker = FaceTracker()
    first = tracker.update([_face(0, 0, 40), _face(100, 0, 30)])
    assert [f.track for f in first] == [0, 1]
    # the right face grew larger (listed first) and both moved a little
    second = tracker.update([_face(104, 2, 44), _face(3, 1, 40)])
    assert [f.track for f in second] == [1, 0]
    third = tracker.update([_face(300, 300, 20)])
    assert [f.track for f in third] == [2]


def test_policies_pick_one_track_per_window():
    tracker = FaceTracker()
    image = np.zeros((100, 200, 3), np.uint8)
    window = [
        FrameRecord(i, image, tracker.update([_face(5, 5, 30), _face(90, 30, 20)]))
        for i in range(3)
    ]
    assert choose_tracks(window, "largest") == [0]
    assert choose_tracks(window, "center") == [1]
    assert choose_tracks(window, "all") == [0, 1]
    assert choose_tracks([FrameRecord(0, image)], "largest") == []
    with pytest.raises(ValueError, match="face policy"):
        choose_tracks(window, "biggest")


def test_two_real_faces_side_by_side_are_tracked_apart():
    import skimage

    from au_llm.preprocess.landmarks import Landmarker
    from au_llm.preprocess.tracks import track_frames

    face = skimage.data.astronaut()[0:320, 65:385]
    frames = []
    for shift in (0, 6, 12):
        image = np.full((360, 720, 3), 90, np.uint8)
        image[20:340, 10 + shift : 330 + shift] = face
        image[20:340, 380 - shift : 700 - shift] = face
        frames.append((shift, image))
    with Landmarker(num_faces=4) as marker:
        records = list(track_frames(frames, marker))
        assert marker.calls == 3
    for record in records:
        assert len(record.faces) == 2
        left = record.face(0) if record.face(0).box[0] < 360 else record.face(1)
        assert left.box[0] < 360
    lefts = {min(r.faces, key=lambda f: f.box[0]).track for r in records}
    rights = {max(r.faces, key=lambda f: f.box[0]).track for r in records}
    assert len(lefts) == len(rights) == 1 and lefts != rights
    assert choose_tracks(records, "all") == [0, 1]
