from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest

from au_llm.data.fields import ClipReadError
from au_llm.preprocess.readers import open_clip

from .conftest import CANVAS, Clips, manifest_row, write_folder


class ReadClip(NamedTuple):
    """Every frame of a clip: ``frames [T, H, W, 3]`` uint8 RGB and ``numbers [T]``."""

    frames: np.ndarray
    numbers: np.ndarray


def read_clip(row: Mapping[str, Any]) -> ReadClip:
    """Read frames onset..offset of a manifest row through :func:`open_clip`."""
    source = open_clip(row)
    try:
        frames = [source.read(i) for i in range(len(source.numbers))]
    finally:
        source.close()
    return ReadClip(np.stack(frames), source.numbers)


def test_frame_folder_reads_onset_to_offset(clips: Clips) -> None:
    clip = read_clip(manifest_row("still", frames_dir=clips.still_dir, onset=3, offset=7))
    assert clip.frames.shape == (5, CANVAS, CANVAS, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.numbers.tolist() == [3, 4, 5, 6, 7]
    expected = cv2.cvtColor(cv2.imread(str(clips.still_dir / "img3.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(clip.frames[0], expected)


def test_video_uses_zero_based_indices(clips: Clips) -> None:
    video = read_clip(manifest_row("v", video=clips.still_mp4, onset=1, offset=10))
    folder = read_clip(manifest_row("f", frames_dir=clips.still_dir, onset=2, offset=11))
    assert video.frames.shape == folder.frames.shape == (10, CANVAS, CANVAS, 3)
    assert video.numbers.tolist() == list(range(1, 11))
    # Same images up to codec loss.
    same = np.abs(video.frames.astype(int) - folder.frames.astype(int)).mean()
    assert same < 6


def test_video_too_short_names_file_and_frame(clips: Clips) -> None:
    with pytest.raises(ClipReadError, match=r"frame 40.*still\.mp4") as info:
        read_clip(manifest_row("v", video=clips.still_mp4, onset=1, offset=40))
    assert info.value.frame == 40


def test_corrupt_frame_names_file_and_frame(clips: Clips) -> None:
    with pytest.raises(ClipReadError, match=r"frame 5.*img5\.jpg") as info:
        read_clip(manifest_row("corrupt", frames_dir=clips.corrupt_dir))
    assert info.value.path == str(clips.corrupt_file)


def test_missing_frames_and_bad_rows(clips: Clips, tmp_path: Path) -> None:
    with pytest.raises(ClipReadError, match="13-15 missing"):
        read_clip(manifest_row("still", frames_dir=clips.still_dir, onset=10, offset=15))
    with pytest.raises(ClipReadError, match="not found"):
        read_clip(manifest_row("gone", frames_dir=tmp_path / "nowhere"))
    with pytest.raises(ClipReadError, match="neither frames_dir nor video"):
        read_clip(manifest_row("empty"))
    with pytest.raises(ClipReadError, match="onset <= offset"):
        read_clip(manifest_row("still", frames_dir=clips.still_dir, onset=8, offset=3))
    row = manifest_row("still", frames_dir=clips.still_dir)
    row["onset"] = "x"
    with pytest.raises(ClipReadError, match="not a frame number"):
        read_clip(row)


def test_gray_png_frames_after_decord_import(tmp_path: Path) -> None:
    import decord  # noqa: F401  (must not break cv2's PNG decoding: cv2 is imported first)

    gray = (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)
    folder = tmp_path / "006_1_2"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "006_05562.png"), gray)
    assert cv2.imwrite(str(folder / "006_05563.png"), gray)
    clip = read_clip(manifest_row("006_1_2", frames_dir=folder, onset=5562, offset=5563))
    assert clip.numbers.tolist() == [5562, 5563]
    assert clip.frames.shape == (2, 48, 64, 3)
    for channel in range(3):
        assert np.array_equal(clip.frames[0, :, :, channel], gray)


def test_bmp_frames(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "bmp", [np.full((20, 24, 3), 7, np.uint8)] * 3, ext="bmp")
    clip = read_clip(manifest_row("bmp", frames_dir=folder, onset=1, offset=3))
    assert clip.frames.shape == (3, 20, 24, 3)
    assert np.all(clip.frames == 7)


def _tiny_folder(folder: Path, seed: int, count: int = 4, size: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    return write_folder(
        folder, [rng.integers(0, 255, (size, size, 3), np.uint8) for _ in range(count)]
    )


def test_truncated_jpeg_fails_the_clip_naming_the_frame(tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path / "clip", seed=1)
    frame = folder / "img3.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(frame)) is not None  # libjpeg decodes it, grey-filled
    row = manifest_row("clip", frames_dir=folder, onset=1, apex=2, offset=4)
    with pytest.raises(ClipReadError, match=r"frame 3 .*img3\.jpg.*truncated JPEG"):
        read_clip(row)


def test_frame_of_another_size_fails_the_clip_naming_the_frame(tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path / "clip", seed=1)
    _tiny_folder(tmp_path / "big", seed=2, size=32)
    (tmp_path / "big" / "img4.jpg").replace(folder / "img4.jpg")
    row = manifest_row("clip", frames_dir=folder, onset=1, apex=2, offset=4)
    with pytest.raises(ClipReadError, match=r"frame 4 .*size 32x32, expected 24x24"):
        read_clip(row)
