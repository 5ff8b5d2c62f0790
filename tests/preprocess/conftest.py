"""Synthetic CASME-like clips built from skimage's astronaut photo (a real, public-domain face)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from au_llm.preprocess.landmarks import Landmarker

CANVAS = 320
FACE_CENTRE = (160.0, 124.0)
N_FILES = 12  # img1.jpg .. img12.jpg; the clip is onset 2 .. offset 11
ONSET, APEX, OFFSET = 2, 6, 11
BROW = (160.0, 86.0)  # where the simulated micro-movement (a brow raise) happens, canvas pixels


def base_image() -> np.ndarray:
    """The astronaut's head and shoulders on a 320 x 320 RGB canvas."""
    return np.ascontiguousarray(skimage.data.astronaut()[0:CANVAS, 65 : 65 + CANVAS])


def brow_raise(image: np.ndarray, amount: float) -> np.ndarray:
    """Move the brow region up by ``amount`` pixels (Gaussian falloff): a tiny AU1/2-like motion."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    bump = np.exp(-(((xs - BROW[0]) / 40) ** 2 + ((ys - BROW[1]) / 10) ** 2))
    return cv2.remap(image, xs, ys + amount * bump, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def pose(image: np.ndarray, dx: float, dy: float, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees about the face and shift by (dx, dy) pixels."""
    matrix = cv2.getRotationMatrix2D(FACE_CENTRE, angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (CANVAS, CANVAS), borderMode=cv2.BORDER_REFLECT)


def brow_amount(number: int) -> float:
    """Brow raise (pixels) of frame ``number``: 0 at onset, 1.5 at apex, back towards 0."""
    if number <= ONSET:
        return 0.0
    if number <= APEX:
        return 1.5 * (number - ONSET) / (APEX - ONSET)
    return 1.5 * max(OFFSET - number, 0) / (OFFSET - APEX)


def still_frames() -> list[np.ndarray]:
    """Head posed once (shifted, rotated 5 degrees) and kept still; only the brows move."""
    base = base_image()
    return [pose(brow_raise(base, brow_amount(n)), 12, -6, 5) for n in range(1, N_FILES + 1)]


def moving_frames() -> list[np.ndarray]:
    """The head drifts (0.5 px/frame right, 0.3 px/frame down) and turns 0.25 degrees/frame."""
    base = base_image()
    return [pose(base, 12 + 0.5 * t, -6 + 0.3 * t, 5 - 0.25 * t) for t in range(N_FILES)]


def write_folder(folder: Path, frames: list[np.ndarray], ext: str = "jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(folder / f"img{number}.{ext}"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (CANVAS, CANVAS))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    assert path.stat().st_size > 0
    return path


def manifest_row(
    clip: str,
    frames_dir: Path | str = "",
    video: Path | str = "",
    onset: int = ONSET,
    apex: float = APEX,
    offset: int = OFFSET,
    aus: str = "1+2",
    subject: str = "sub01",
    dataset: str = "casme2",
) -> dict:
    return {
        "dataset": dataset,
        "subject": subject,
        "clip": clip,
        "frames_dir": str(frames_dir) if frames_dir else np.nan,
        "video": str(video) if video else np.nan,
        "onset": onset,
        "apex": apex,
        "offset": offset,
        "n_frames": offset - onset + 1,
        "fps": 200.0,
        "au_raw": aus,
        "aus": aus,
        "emotion": "surprise",
        "apex_estimated": False,
        "notes": "",
    }


@dataclass
class Clips:
    """Paths of the synthetic inputs."""

    still_dir: Path
    still_mp4: Path
    moving_dir: Path
    grey_dir: Path
    corrupt_dir: Path
    corrupt_file: Path

    def manifest(self) -> pd.DataFrame:
        """Still clip (folder and video), a clip without a face and one with a corrupt frame."""
        return pd.DataFrame(
            [
                manifest_row("still", frames_dir=self.still_dir, aus="1+2"),
                # Video indices are 0-based: frames 1..10 are img2..img11 of the folder.
                manifest_row(
                    "still_video", video=self.still_mp4, onset=1, apex=5, offset=10, aus="4"
                ),
                manifest_row("noface", frames_dir=self.grey_dir, subject="sub02", aus="12"),
                manifest_row("corrupt", frames_dir=self.corrupt_dir, subject="sub02", aus="4+7"),
            ]
        )


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    root = tmp_path_factory.mktemp("clips")
    still = still_frames()
    rng = np.random.default_rng(0)
    grey = [
        np.clip(128 + rng.normal(0, 4, (CANVAS, CANVAS, 3)), 0, 255).astype(np.uint8)
        for _ in range(N_FILES)
    ]
    corrupt_dir = write_folder(root / "sub02" / "corrupt", still)
    corrupt_file = corrupt_dir / "img5.jpg"
    corrupt_file.write_bytes(b"\x00garbage, not a jpeg" * 50)
    return Clips(
        still_dir=write_folder(root / "sub01" / "still", still),
        still_mp4=write_video(root / "still.mp4", still),
        moving_dir=write_folder(root / "sub01" / "moving", moving_frames()),
        grey_dir=write_folder(root / "sub02" / "noface", grey),
        corrupt_dir=corrupt_dir,
        corrupt_file=corrupt_file,
    )


@pytest.fixture(scope="session")
def landmarker() -> Iterator[Landmarker]:
    with Landmarker() as marker:
        yield marker
