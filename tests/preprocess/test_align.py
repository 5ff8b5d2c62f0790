import cv2
import numpy as np
import pytest

from au_llm.config import PreprocessConfig
from au_llm.preprocess.align import (
    EYE_CORNERS,
    STABLE_LANDMARKS,
    align_source,
    centre_crop_transform,
    fit_similarity,
    smooth_transforms,
    template_points,
    warp,
)
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.readers import open_clip

from .conftest import BROW, Clips, base_image, manifest_row, pose

SIZE = 128


class ListSource:
    """A FrameSource over in-memory frames."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.numbers = np.arange(len(frames))
        self.path = "memory"

    def read(self, i: int) -> np.ndarray:
        return self.frames[i]

    def close(self) -> None:
        pass


def eye_errors(frames: np.ndarray, marker: Landmarker, margin: float) -> np.ndarray:
    """Per frame, the largest distance (px) of the 4 detected eye corners from the template."""
    template = template_points(frames.shape[1], margin)[: len(EYE_CORNERS)]
    errors = []
    for frame in frames:
        face = marker.detect(frame)
        assert face is not None
        errors.append(np.linalg.norm(face.points[list(EYE_CORNERS)] - template, axis=1).max())
    return np.array(errors)


def test_fit_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (9, 2))
    angle, scale, shift = np.deg2rad(7.0), 0.4, np.array([-31.0, 12.5])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = fit_similarity(src, src @ rot.T + shift)
    assert np.allclose(matrix[:, :2], rot) and np.allclose(matrix[:, 2], shift)


def test_template_is_symmetric_and_inside_the_crop() -> None:
    tpl = template_points(SIZE, 0.15)
    assert tpl.shape == (len(STABLE_LANDMARKS), 2)
    assert np.all((tpl > 0) & (tpl < SIZE - 1))
    centre = (SIZE - 1) / 2
    assert np.allclose(tpl[0, 0] + tpl[3, 0], 2 * centre) and tpl[0, 1] == tpl[3, 1]
    assert np.allclose(tpl[4:, 0], centre)
    # A larger margin shrinks the face around the same centre.
    wide = template_points(SIZE, 0.3)
    assert np.ptp(wide[:, 0]) < np.ptp(tpl[:, 0])


def test_clip_mode_puts_eyes_on_template_and_keeps_only_the_micro_movement(
    clips: Clips, landmarker: Landmarker
) -> None:
    cfg = PreprocessConfig(size=SIZE, color="rgb", align="clip", workers=0)
    source = open_clip(manifest_row("still", frames_dir=clips.still_dir))
    result = align_source(source, cfg, landmarker)
    assert result.fallback == "" and result.detections == cfg.ref_frames
    assert result.frames.shape == (10, SIZE, SIZE, 3) and result.frames.dtype == np.uint8
    assert np.all(result.transforms == result.transforms[0])  # one transform per clip
    assert eye_errors(result.frames, landmarker, cfg.margin).max() < 2.0
    # The head is still in the aligned clip: apex - onset differs only around the brows.
    diff = np.abs(result.frames[4].astype(float) - result.frames[0].astype(float)).mean(axis=2)
    brow = cv2.transform(np.array([[BROW]]), pose_matrix())[0, 0]
    brow_out = result.transforms[0] @ np.array([*brow, 1.0])
    y = int(round(brow_out[1]))
    assert diff[y - 4 : y + 5].mean() > 3 * diff[y + 30 :].mean()
    assert diff[y + 30 :].mean() < 1.5  # JPEG noise only below the brows


def pose_matrix() -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((160.0, 124.0), 5, 1.0)
    matrix[:, 2] += (12, -6)
    return matrix


def test_frame_mode_follows_head_motion(clips: Clips, landmarker: Landmarker) -> None:
    row = manifest_row("moving", frames_dir=clips.moving_dir)
    frame_cfg = PreprocessConfig(size=SIZE, color="rgb", align="frame", smooth=3, workers=0)
    clip_cfg = PreprocessConfig(size=SIZE, color="rgb", align="clip", workers=0)
    aligned = align_source(open_clip(row), frame_cfg, landmarker)
    assert aligned.fallback == "" and aligned.detections == 10
    assert eye_errors(aligned.frames, landmarker, frame_cfg.margin).max() < 2.0
    # One transform per clip cannot follow the drift: the eyes leave the template.
    still = align_source(open_clip(row), clip_cfg, landmarker)
    assert eye_errors(still.frames[-1:], landmarker, clip_cfg.margin).max() > 2.5


def test_smoothing_keeps_linear_motion_and_fills_gaps() -> None:
    steps = np.arange(8, dtype=float)
    a, b, tx, ty = 1.0 + 0.01 * steps, 0.02 * steps, 3.0 * steps, -steps
    transforms = np.stack([np.stack([a, -b, tx], axis=1), np.stack([b, a, ty], axis=1)], axis=1)
    valid = np.ones(8, dtype=bool)
    valid[4] = False
    noisy = transforms.copy()
    noisy[4] = 99.0  # ignored: not valid
    assert np.allclose(smooth_transforms(noisy, valid, 5), transforms)
    valid[0] = False  # held constant before the first valid frame
    assert np.allclose(smooth_transforms(noisy, valid, 1)[0], transforms[1])
    jitter = transforms.copy()
    jitter[3, :, 2] += 2.0
    assert (
        np.abs(smooth_transforms(jitter, np.ones(8, bool), 5)[3, :, 2] - transforms[3, :, 2]).max()
        < 0.5
    )


def test_no_face_falls_back_to_centre_crop(clips: Clips, landmarker: Landmarker) -> None:
    cfg = PreprocessConfig(size=64, color="gray", align="clip", max_face_search=2, workers=0)
    calls = landmarker.calls
    result = align_source(open_clip(manifest_row("g", frames_dir=clips.grey_dir)), cfg, landmarker)
    assert result.fallback == "centre_crop" and result.detections == 0
    assert landmarker.calls - calls == cfg.ref_frames + cfg.max_face_search
    assert result.frames.shape == (10, 64, 64, 1)
    frame_cfg = PreprocessConfig(size=64, align="frame", workers=0)
    result = align_source(
        open_clip(manifest_row("g", frames_dir=clips.grey_dir)), frame_cfg, landmarker
    )
    assert result.fallback == "centre_crop"


def test_face_found_after_onset_is_flagged(landmarker: Landmarker) -> None:
    face = pose(base_image(), 12, -6, 5)
    frames = [np.full_like(face, 128), face, face, face, face]
    cfg = PreprocessConfig(size=64, color="rgb", align="clip", workers=0)
    result = align_source(ListSource(frames), cfg, landmarker)
    assert result.fallback == "next_frame" and result.detections == cfg.ref_frames
    frame_cfg = PreprocessConfig(size=64, color="rgb", align="frame", workers=0)
    result = align_source(ListSource(frames), frame_cfg, landmarker)
    assert result.fallback == "interpolated" and result.detections == 4
    assert np.allclose(result.transforms[0], result.transforms[1])


def test_mode_none_is_a_centre_crop() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, 40:280] = 200  # the centred 240 x 240 square
    cfg = PreprocessConfig(size=48, color="gray", align="none", workers=0)
    result = align_source(ListSource([image, image]), cfg, None)
    assert result.fallback == "" and result.frames.shape == (2, 48, 48, 1)
    # Nothing of the dark sides enters, except a little antialiasing blur at the border.
    assert np.all(result.frames[:, :, 1:-1] == 200) and result.frames.min() > 180
    with pytest.raises(ValueError, match="Landmarker"):
        align_source(ListSource([image]), PreprocessConfig(align="clip"), None)


def test_large_downscale_averages_instead_of_aliasing() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)
    small = warp(image, centre_crop_transform(800, 800, 80), 80, "rgb")
    reference = cv2.resize(image, (80, 80), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(float) - reference).mean() < 2.0
    # Plain bilinear sampling of noise would keep its full contrast.
    assert small.std() < 0.3 * image.std()


def test_moving_median_follows_steady_motion_and_drops_a_short_excursion():
    steps = np.arange(20, dtype=float)
    transforms = np.zeros((20, 2, 3))
    transforms[:, 0, 0] = transforms[:, 1, 1] = 1.0
    transforms[:, 0, 2] = 0.5 * steps  # a steady head drift
    bumped = transforms.copy()
    np.testing.assert_allclose(
        smooth_transforms(transforms, np.ones(20, bool), 7, "median")[:, 0, 2], 0.5 * steps
    )
    bumped[9:11, 0, 2] += 10.0  # the landmarks jump for two frames (a blink)
    median = smooth_transforms(bumped, np.ones(20, bool), 7, "median")
    # the jump is gone; what is left is at most the drift of the two frames it lasted
    assert np.abs(median[:, 0, 2] - 0.5 * steps).max() <= 1.0
    mean = smooth_transforms(bumped, np.ones(20, bool), 7)
    assert np.abs(mean[:, 0, 2] - 0.5 * steps).max() > 2.5
