"""Speed of ``au-llm predict`` on a recording: seconds of video per wall-clock second.

A model is trained for one epoch on a small synthetic CASME II-style set with the demo's shape
(led3dcnn on 6 gray 64x64 frames, a random 2-layer Qwen2 with hidden size 128, ``mode: clip``).
A 640x480 30 fps mp4 is written from ``skimage.data.astronaut()``'s face drifting slowly over a
grey background; ``predict_inputs`` scans it with a 1 s window (30 frames) and a stride of half a
window, on CPU. The time covers the whole call (model loading, landmarker start-up, decoding,
landmarks, alignment, model, CSV); the ratio is video seconds / wall seconds (>= 1 is real time).

Usage: ``python bench/predict_speed.py [--seconds 20] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from au_llm.config import load_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import write_manifest
from au_llm.predict.config import PredictConfig
from au_llm.predict.run import predict_inputs
from au_llm.recipes.train import train_deployable
from au_llm.synth import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
FPS, WIDTH, HEIGHT = 30.0, 640, 480


def write_recording(path: Path, seconds: float) -> int:
    """A 640x480 30 fps mp4 of a face drifting over a grey background; returns its frame count."""
    from skimage import data

    face = cv2.resize(data.astronaut()[0:260, 120:360], (200, 216))
    face = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    count = round(seconds * FPS)
    for i in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        x = int(220 + 60 * np.sin(i / 40))
        y = int(130 + 20 * np.cos(i / 55))
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
        writer.write(frame)
    writer.release()
    return count


def train_model(work: Path) -> Path:
    """A deployable demo-shaped model trained for one epoch on synthetic clips."""
    synth = write_synthetic("casme2", work / "synth", 3, 3, seed=5, frames_per_clip=8)
    result = build_manifest("casme2", root=synth.root, coding=synth.coding, strict=True)
    manifest = work / "casme2.csv"
    write_manifest(result.frame, manifest)
    overrides = [
        f"out_dir='{work}'",
        f"data.cache_dir='{work / 'cache'}'",
        f"data.manifests=['{manifest}']",
        "preprocess.workers=0",
        "train.epochs=1",
    ]
    cfg = load_config(ROOT / "configs" / "demo_casme2_loso.yaml", overrides)
    train_deployable(cfg, work / "model")
    return work / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the recording")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = train_model(work)
        video = work / "rec.mp4"
        frames = write_recording(video, args.seconds)
        window = round(FPS)
        start = time.perf_counter()
        options = PredictConfig(window=window, stride=window // 2)
        predict_inputs(model_dir, [video], work / "out" / "preds.csv", options)
        wall = time.perf_counter() - start
    result = {
        "video_seconds": frames / FPS,
        "wall_seconds": round(wall, 2),
        "realtime_ratio": round(frames / FPS / wall, 3),
        "window": window,
        "stride": window // 2,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
