"""Clip-level vs per-frame alignment: speed, and residual motion of a still face.

Builds 30-frame, 480 x 640 (CASME II-like) clips from ``skimage.data.astronaut()``:

* ``still``: the head is posed once (shifted, rotated 4 degrees) and does not move; only the brows
  rise by up to 1 px (a synthetic micro-movement peaking at the apex frame).
* ``drift``: the same, plus head drift of 0.3 px/frame and 0.1 degree/frame.

It then aligns them with ``mode: clip`` (one transform per clip), ``mode: frame`` (landmarks on
every frame, smoothed over 5 frames) and ``mode: none`` (centre crop, the unaligned baseline) and
reports, within one run:

* clips/s of each mode (in-memory frames, so decoding is not timed) and the clip/frame ratio;
* apex-onset residual motion outside the brows: mean absolute gray difference of the aligned apex
  and onset frames over the face region the brow raise does not touch, and the mean displacement
  of the stable landmarks (landmarks found on the aligned apex and onset frames, converted back to
  source pixels); plus the mean gray difference inside the brow region (the signal that must
  survive).

Run: ``.venv/bin/python bench/align_speed.py``; writes ``bench/results/align_speed.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from au_llm.config import PreprocessConfig
from au_llm.io_utils import atomic_write_text
from au_llm.preprocess.align import STABLE_LANDMARKS, AlignResult, align_source
from au_llm.preprocess.landmarks import Landmarker

FRAMES, APEX, SIZE = 30, 15, 112
FACE_CENTRE = (289.0, 124.0)
BROW = (289.0, 86.0)
REPEATS = 8
OUT = Path(__file__).resolve().parent / "results" / "align_speed.json"


class MemorySource:
    """Frames held in memory, with the reader interface of ``au_llm.preprocess.readers``."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = frames
        self.numbers = np.arange(len(frames))
        self.path = "memory"

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``[H, W, 3]`` uint8 RGB."""
        return self.frames[i]

    def close(self) -> None:
        """Nothing to release."""


def brow_bump(shape: tuple[int, int]) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return np.exp(-(((xs - BROW[0]) / 40) ** 2 + ((ys - BROW[1]) / 10) ** 2))


def pose_matrix(t: int, drift: bool) -> np.ndarray:
    angle = 4.0 - (0.1 * t if drift else 0.0)
    matrix = cv2.getRotationMatrix2D(FACE_CENTRE, angle, 1.0)
    matrix[:, 2] += (10 + (0.3 * t if drift else 0.0), -5 + (0.3 * t if drift else 0.0))
    return matrix


def make_clip(*, drift: bool) -> list[np.ndarray]:
    base = cv2.copyMakeBorder(
        skimage.data.astronaut()[0:480], 0, 0, 64, 64, cv2.BORDER_REFLECT
    )  # 480 x 640
    bump = brow_bump(base.shape[:2])
    ys, xs = np.mgrid[0 : base.shape[0], 0 : base.shape[1]].astype(np.float32)
    frames = []
    for t in range(FRAMES):
        amount = 1.0 * (1 - abs(t - APEX) / APEX)
        raised = cv2.remap(base, xs, ys + amount * bump, cv2.INTER_LINEAR)
        frames.append(
            cv2.warpAffine(raised, pose_matrix(t, drift), (640, 480), borderMode=cv2.BORDER_REFLECT)
        )
    return frames


def config(mode: str) -> PreprocessConfig:
    return PreprocessConfig(size=SIZE, color="gray", align=mode, smooth=5, workers=0)


def residual(
    result: AlignResult, frames: list[np.ndarray], drift: bool, marker: Landmarker
) -> dict[str, float]:
    """Apex-onset motion of an aligned clip (see the module docstring)."""
    bump = brow_bump(frames[0].shape[:2])
    masks = []
    for t in (0, APEX):
        # Brow region and face region of frame t, in crop coordinates of frame t.
        source = cv2.warpAffine(bump, pose_matrix(t, drift), (640, 480))
        face = np.zeros((480, 640), np.float32)
        face[60:190, 220:360] = 1.0
        face = cv2.warpAffine(face, pose_matrix(t, drift), (640, 480))
        masks.append(
            (
                cv2.warpAffine(source, result.transforms[t], (SIZE, SIZE)),
                cv2.warpAffine(face, result.transforms[t], (SIZE, SIZE)),
            )
        )
    onset = result.frames[0, :, :, 0].astype(np.float64)
    apex = result.frames[APEX, :, :, 0].astype(np.float64)
    diff = np.abs(apex - onset)
    brow = (masks[0][0] > 0.3) & (masks[1][0] > 0.3)
    still = (masks[0][0] < 0.01) & (masks[1][0] < 0.01) & (masks[0][1] > 0.5) & (masks[1][1] > 0.5)
    points = []
    for t in (0, APEX):
        rgb = np.repeat(result.frames[t], 3, axis=2)
        face = marker.detect(rgb)
        points.append(None if face is None else face.points[list(STABLE_LANDMARKS)])
    scale = math.sqrt(abs(np.linalg.det(result.transforms[0][:, :2])))
    moved = (
        math.nan
        if points[0] is None or points[1] is None
        else float(np.linalg.norm(points[1] - points[0], axis=1).mean() / scale)
    )
    return {
        "static_abs_diff": float(diff[still].mean()),
        "landmark_shift_src_px": moved,
        "brow_abs_diff": float(diff[brow].mean()),
    }


def main() -> None:
    cv2.setNumThreads(2)
    clips = {"still": make_clip(drift=False), "drift": make_clip(drift=True)}
    results: dict[str, dict] = {"frames": FRAMES, "size": SIZE, "repeats": REPEATS, "modes": {}}
    with Landmarker() as marker:
        for mode in ("clip", "frame", "none"):
            cfg = config(mode)
            align_source(MemorySource(clips["still"]), cfg, marker)  # warm-up
            start = time.perf_counter()
            for _ in range(REPEATS):
                align_source(MemorySource(clips["still"]), cfg, marker)
            entry: dict = {"clips_per_s": REPEATS / (time.perf_counter() - start)}
            for name, frames in clips.items():
                result = align_source(MemorySource(frames), cfg, marker)
                entry[name] = residual(result, frames, name == "drift", marker)
            results["modes"][mode] = entry
    modes = results["modes"]
    results["clip_over_frame_speed"] = modes["clip"]["clips_per_s"] / modes["frame"]["clips_per_s"]
    atomic_write_text(OUT, json.dumps(results, indent=2) + "\n")
    header = f"{'mode':<6} {'clips/s':>8} | {'clip':>6} {'static':>7} {'lm px':>6} {'brow':>6}"
    print(header)
    print("-" * len(header))
    for mode, entry in modes.items():
        for name in clips:
            r = entry[name]
            print(
                f"{mode:<6} {entry['clips_per_s']:8.2f} | {name:>6} {r['static_abs_diff']:7.3f} "
                f"{r['landmark_shift_src_px']:6.3f} {r['brow_abs_diff']:6.2f}"
            )
    print(f"clip/frame speed ratio: {results['clip_over_frame_speed']:.2f}")
    print(
        "static = mean |apex-onset| gray level outside the brows; lm px = stable-landmark shift "
        "(source px); brow = mean |apex-onset| in the brow region"
    )
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
