import tracemalloc

import numpy as np
import pytest

from au_llm.preprocess.align import landmark_transform, smooth_transforms
from au_llm.preprocess.landmarks import FaceLandmarks
from au_llm.spot.config import SpotConfig
from au_llm.spot.motion import MotionMeter, region_boxes
from au_llm.spot.scan import measure_motion
from au_llm.spot.stream import AlignedFrame, align_stream
from au_llm.synth.render import source_landmarks

HEIGHT, WIDTH = 120, 160


def _still_face():
    """478 landmarks of the synthetic astronaut face, fitted into a 160x120 frame."""
    points = source_landmarks()
    points = np.vstack([points, points[:10]])  # the iris points are never used here
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) * 90 / (high - low).max() + [35, 15]


STILL_FACE = _still_face()


def _face_points(dx=0.0, dy=0.0):
    """The face's landmarks shifted by ``(dx, dy)`` pixels."""
    return STILL_FACE + [dx, dy]


class FakeLandmarker:
    """One face per frame, shifted by ``shift(position)``; no face where ``present`` says so."""

    def __init__(self, shift=lambda i: (0.0, 0.0), present=lambda i: True):
        self.shift, self.present, self.calls = shift, present, 0

    def detect_all(self, image):
        position, self.calls = self.calls, self.calls + 1
        if not self.present(position):
            return []
        return [FaceLandmarks(_face_points(*self.shift(position)), 0.9)]


def _frames(count, seed=0):
    """``count`` frames of a still random texture (each a new array, as a decoder gives them)."""
    texture = np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
    for number in range(count):
        yield number, texture.copy()


def test_streamed_smoothing_equals_smoothing_the_whole_recording():
    def shift(i):
        return (3 * np.sin(i / 4), 2 * np.cos(i / 3))

    kwargs = dict(size=32, margin=0.1, smooth=5, every=1)
    small = list(align_stream(_frames(40), FakeLandmarker(shift), block=3, **kwargs))
    whole = list(align_stream(_frames(40), FakeLandmarker(shift), block=1000, **kwargs))
    assert [f.number for f in small] == list(range(40))
    for a, b in zip(small, whole, strict=True):
        np.testing.assert_array_equal(a.crop, b.crop)
    # and the transforms are those of align.smooth_transforms over the whole recording
    raw = np.stack([landmark_transform(_face_points(*shift(i)), 32, 0.1) for i in range(40)])
    smoothed = smooth_transforms(raw, np.ones(40, bool), 5, "median")
    points = _face_points(*shift(7))
    expected = points @ smoothed[7][:, :2].T + smoothed[7][:, 2]
    np.testing.assert_allclose(small[7].points, expected)


def test_landmarks_every_kth_frame_and_no_crop_where_the_face_is_missing():
    fake = FakeLandmarker(present=lambda i: not 4 <= i < 7)  # calls 4-6: frames 12-20
    frames = list(align_stream(_frames(30), fake, size=32, margin=0.1, smooth=1, every=3, block=4))
    assert fake.calls == 10
    assert [f.landmarked for f in frames] == [i % 3 == 0 for i in range(30)]
    missing = [f.number for f in frames if f.crop is None]
    # frames 10-11 lie between a face (9) and none (12); 19-20 between none (18) and one (21)
    assert missing == list(range(10, 21))


def test_motion_score_peaks_where_a_region_moves():
    size, k = 64, 3
    points = _face_points() * 0.5  # landmarks inside a 64-pixel crop (not aligned: no need)
    mouth = region_boxes(points, ["mouth"], size)[0]
    meter = MotionMeter(
        feature="diff", distances=[k], regions=["mouth", "brow_left"], size=size, top=1
    )
    rng = np.random.default_rng(0)
    still = rng.integers(60, 200, (size, size), np.uint8)
    for i in range(80):
        crop = still.copy()
        if 40 <= i <= 46:  # the mouth region brightens and comes back, brightest at 43
            x0, y0, x1, y1 = mouth
            level = 40 * 0.5 * (1 - np.cos(2 * np.pi * (i - 40) / 6))
            crop[y0:y1, x0:x1] = np.clip(crop[y0:y1, x0:x1] + level, 0, 255)
        noise = rng.normal(0, 2, crop.shape)
        crop = np.clip(crop + noise, 0, 255).astype(np.uint8)
        meter.push(AlignedFrame(i, i, crop, True, 0.9, points))
    scores = meter.scores()[:, 0]
    assert np.isnan(scores[:k]).all() and np.isnan(scores[-k:]).all()
    assert np.nanargmax(scores) == 43
    assert np.nanmax(scores) > 5 * np.nanmedian(scores)


@pytest.mark.parametrize("feature", ["farneback", "dis"])
def test_flow_features_ignore_a_shift_of_the_whole_face(feature):
    size = 64
    points = _face_points() * 0.5
    meter = MotionMeter(
        feature=feature, distances=[2], regions=["mouth", "brow_left"], size=size, top=1
    )
    texture = np.random.default_rng(1).integers(0, 255, (size + 8, size + 8), np.uint8)
    texture = (texture.astype(float) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3
    for i in range(12):
        shift = 2 if i % 4 == 2 else 0  # the whole crop jumps: residual head motion
        crop = texture[4 + shift : 4 + shift + size, 4 : 4 + size].astype(np.uint8)
        meter.push(AlignedFrame(i, i, crop, True, 0.9, points))
    assert np.nanmax(meter.scores()) < 0.5  # pixels; the jump is 2 pixels everywhere


def test_memory_stays_bounded_on_a_long_recording():
    cfg = SpotConfig(size=32, buffer_mb=1, kinds=["micro"])

    def peak(count):
        tracemalloc.start()
        motion = measure_motion(_frames(count), 30.0, FakeLandmarker(), cfg)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(motion.numbers) == count
        return top

    short, long = peak(200), peak(800)
    frame_bytes = HEIGHT * WIDTH * 3
    # 600 more frames (35 MB of pixels) cost a few numbers each, not their pixels
    assert long - short < 100 * 600 + 2 * frame_bytes
