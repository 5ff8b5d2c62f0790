"""A learnt spotter measured against the rule spotter, leave one subject out, on synthetic videos.

Recordings are au-llm's synthetic long videos (:mod:`au_llm.synth.long`), written as JPEG frame
folders and aligned once per frame as the spotter aligns them (:func:`~au_llm.spot.stream.
align_stream` with the default ``spot`` settings); the rule spotter's motion score (the default
``farneback`` feature at each kind's ``k``) is measured on the same aligned frames.

In each fold (one held-out subject) the learnt spotter is the project's backbone
(:func:`~au_llm.model.backbones.build_backbone`, ``led3dcnn``, no LLM) with a linear head over three
classes (neutral, micro, macro), trained from scratch on the other subjects' annotated interval
clips (onset..offset, its ends jittered by up to a fifth of its length, ``frames`` frames sampled
evenly) against neutral windows of the same lengths drawn at least the macro ``k`` away from every
annotation (``negatives`` per positive). On the held-out recordings it scores, for each kind, the
window of ``2k + 1`` frames centred on every frame (``k`` of that kind's peak rule); the kind's
probability is that frame's score. The SAME peak rule and kinds
(:func:`~au_llm.spot.scan.spot_intervals`, the default :class:`~au_llm.spot.config.SpotConfig`)
turn the scores into intervals, once with the rule's contrast (as configured) and once without it
(a probability needs no drift removed), and the SAME evaluator
(:func:`~au_llm.spot.evaluate.evaluate_spotting`, IoU >= 0.5) scores the intervals pooled over
the folds, per seed. The rule spotter (default settings, nothing tuned on these recordings) is
scored on the same recordings and folds.

Usage: ``python bench/spot_learnt.py [--subjects 5] [--seconds 24] [--seeds 0 1]
[--out bench/results/spot_learnt.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from record import cpu_flags
from spot_motion import truth_table, write_frames
from torch import nn

from au_llm.config_model import BackboneConfig
from au_llm.io_utils import atomic_write_text
from au_llm.model.backbones import build_backbone
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.sampling import spread
from au_llm.preprocess.windows import RecordingReader
from au_llm.spot.config import SpotConfig, frames_at
from au_llm.spot.evaluate import evaluate_spotting
from au_llm.spot.intervals import KINDS
from au_llm.spot.motion import MotionMeter
from au_llm.spot.scan import RecordingMotion, spot_intervals
from au_llm.spot.stream import align_stream
from au_llm.synth.long import plan_long_recordings

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("neutral", *KINDS)
"""The learnt spotter's classes; a kind's class index is its position here."""


def aligned_recording(folder: Path, landmarker: Landmarker, cfg: SpotConfig, fps: float) -> dict:
    """A recording's aligned crops ``[N, S, S]`` uint8, frame numbers and rule motion scores."""
    reader = RecordingReader(folder, "frames", None)
    meter = MotionMeter(
        feature=cfg.feature,
        distances=[frames_at(cfg.rule(kind).k_seconds, fps) for kind in cfg.kinds],
        regions=cfg.regions,
        size=cfg.size,
        top=cfg.top_regions,
    )
    crops, numbers, shown = [], [], []
    last = np.zeros((cfg.size, cfg.size), np.uint8)
    for frame in align_stream(
        reader,
        landmarker,
        size=cfg.size,
        margin=cfg.margin,
        smooth=frames_at(cfg.align_smooth_seconds, fps),
        every=frames_at(cfg.landmark_seconds, fps),
        block=64,
    ):
        meter.push(frame)
        last = frame.crop if frame.crop is not None else last
        crops.append(last)
        numbers.append(frame.number)
        shown.append(frame.crop is not None)
    return {
        "crops": np.stack(crops),
        "numbers": np.asarray(numbers, np.int64),
        "shown": np.asarray(shown, bool),
        "rule": meter.scores(),
    }


def motion_of(data: dict, fps: float, scores: np.ndarray) -> RecordingMotion:
    """A :class:`RecordingMotion` of ``scores`` ``[N, kinds]`` over the recording's frames."""
    count = len(data["numbers"])
    return RecordingMotion(
        fps=fps,
        kinds=list(KINDS),
        numbers=data["numbers"],
        shown=data["shown"],
        confidence=np.ones(count, np.float32),
        scores=scores,
    )


def clip(crops: np.ndarray, start: int, stop: int, frames: int) -> np.ndarray:
    """``[1, frames, S, S]`` float32 clip of positions ``start..stop`` sampled evenly."""
    return crops[spread(start, stop, frames)][None].astype(np.float32) / 255.0


def training_clips(
    data: dict, truth: pd.DataFrame, *, margin: int, negatives: int, frames: int, rng
) -> tuple[list[np.ndarray], list[int]]:
    """Jittered annotated interval clips and neutral windows of the same lengths, with labels."""
    count = len(data["numbers"])
    busy = np.zeros(count, bool)
    spans = []
    for onset, offset, kind in zip(truth["onset"], truth["offset"], truth["kind"], strict=True):
        start, stop = np.searchsorted(data["numbers"], [onset, offset])
        stop = min(int(stop), count - 1)
        busy[max(0, start - margin) : stop + margin + 1] = True
        spans.append((int(start), stop, LABELS.index(kind)))
    free = np.flatnonzero(~busy)
    clips, labels = [], []
    for start, stop, label in spans:
        length = stop - start + 1
        jitter = max(1, length // 5)
        a, b = rng.integers(-jitter, jitter + 1, size=2)
        clips.append(clip(data["crops"], max(0, start + a), min(count - 1, stop + b), frames))
        labels.append(label)
        for _ in range(negatives):
            # a neutral window: every frame of it away from every annotation
            for _try in range(50):
                first = int(rng.choice(free))
                if first + length <= count and not busy[first : first + length].any():
                    clips.append(clip(data["crops"], first, first + length - 1, frames))
                    labels.append(0)
                    break
    return clips, labels


class WindowSpotter(nn.Module):
    """The backbone and a linear head: clips ``[B, 1, T, S, S]`` -> ``[B, 3]`` class logits."""

    def __init__(self, frames: int, size: int) -> None:
        super().__init__()
        self.backbone = build_backbone(BackboneConfig(), 1, frames, size)
        self.head = nn.Linear(self.backbone.high_dim, len(LABELS))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, 3]`` logits of neutral, micro, macro for clips ``[B, 1, T, S, S]``."""
        return self.head(self.backbone.get_clip_features(clips)["high"])


def train(clips: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int) -> WindowSpotter:
    """A :class:`WindowSpotter` trained from scratch (class-balanced cross-entropy, Adam)."""
    torch.manual_seed(seed)
    model = WindowSpotter(clips.shape[2], clips.shape[3])
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float32)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(LABELS))
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = torch.from_numpy(clips), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(16):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def window_scores(model: WindowSpotter, data: dict, ks: list[int], frames: int) -> np.ndarray:
    """``[N, kinds]``: each kind's probability for the ``2k + 1`` frames centred on each frame."""
    count = len(data["numbers"])
    out = np.zeros((count, len(KINDS)), np.float32)
    for column, (kind, k) in enumerate(zip(KINDS, ks, strict=True)):
        for first in range(0, count, 256):
            batch = [
                clip(data["crops"], max(0, t - k), min(count - 1, t + k), frames)
                for t in range(first, min(count, first + 256))
            ]
            probs = model(torch.from_numpy(np.stack(batch))).softmax(dim=1)
            out[first : first + len(batch), column] = probs[:, LABELS.index(kind)].numpy()
    return out


def scored(tables: list[pd.DataFrame], truth: pd.DataFrame) -> dict:
    """Spotting counts and rates of the pooled intervals, per kind and overall."""
    result = evaluate_spotting(pd.concat(tables, ignore_index=True), truth)
    return {kind: counts.to_dict() for kind, counts in result.counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="casme-sq-lv", help="casme-sq-lv, casme3-lv, samm-lv")
    parser.add_argument("--subjects", type=int, default=5, help="one recording each; one fold each")
    parser.add_argument("--seconds", type=float, default=24.0, help="length of each recording")
    parser.add_argument("--size", type=float, default=0.5, help="image size factor")
    parser.add_argument("--difficulty", default="normal", help="normal or hard")
    parser.add_argument("--frames", type=int, default=6, help="frames sampled per clip")
    parser.add_argument("--negatives", type=int, default=3, help="neutral windows per positive")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=3, help="seed of the recordings")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/spot_learnt.json")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    start = time.perf_counter()
    recordings = plan_long_recordings(
        args.style,
        subjects=args.subjects,
        recordings_per_subject=1,
        seconds=args.seconds,
        seed=args.data_seed,
        difficulty=args.difficulty,
        size=args.size,
    )
    fps = recordings[0].fps
    cfg = SpotConfig()
    ks = [frames_at(cfg.rule(kind).k_seconds, fps) for kind in KINDS]
    truth = truth_table(recordings)
    data = {}
    landmarker = Landmarker(num_faces=5)
    with tempfile.TemporaryDirectory() as tmp:
        for recording in recordings:
            folder = Path(tmp) / recording.recording
            write_frames(recording, folder)
            data[recording.recording] = aligned_recording(folder, landmarker, cfg, fps)
            print(f"aligned {recording.recording}", flush=True)
    landmarker.close()
    align_seconds = time.perf_counter() - start
    names = [r.recording for r in recordings]
    rule = [
        spot_intervals(motion_of(data[n], fps, data[n]["rule"]), cfg).assign(recording=n)
        for n in names
    ]
    no_contrast = SpotConfig(
        micro=replace(cfg.micro, contrast=False), macro=replace(cfg.macro, contrast=False)
    )
    learnt: dict[str, dict] = {"contrast": {}, "no_contrast": {}}
    train_seconds = 0.0
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        tables: dict[str, list[pd.DataFrame]] = {"contrast": [], "no_contrast": []}
        for held in names:
            clips, labels = [], []
            for name in names:
                if name != held:
                    more = training_clips(
                        data[name],
                        truth[truth["recording"] == name],
                        margin=ks[-1],
                        negatives=args.negatives,
                        frames=args.frames,
                        rng=rng,
                    )
                    clips += more[0]
                    labels += more[1]
            began = time.perf_counter()
            model = train(np.stack(clips), np.asarray(labels), epochs=args.epochs, seed=seed)
            train_seconds += time.perf_counter() - began
            motion = motion_of(data[held], fps, window_scores(model, data[held], ks, args.frames))
            for variant, spot_cfg in (("contrast", cfg), ("no_contrast", no_contrast)):
                tables[variant].append(spot_intervals(motion, spot_cfg).assign(recording=held))
            print(f"seed {seed} fold {held}: {len(clips)} training clips", flush=True)
        for variant in tables:
            learnt[variant][str(seed)] = scored(tables[variant], truth)
            print(variant, seed, json.dumps(learnt[variant][str(seed)]["overall"]), flush=True)
    for by_seed in learnt.values():
        by_seed["mean"] = {
            kind: {"f1": float(np.mean([by_seed[str(s)][kind]["f1"] or 0.0 for s in args.seeds]))}
            for kind in ("overall", *KINDS)
        }
    result = {
        "style": args.style,
        "difficulty": args.difficulty,
        "recordings": len(recordings),
        "video_seconds": sum(r.n_frames for r in recordings) / fps,
        "fps": fps,
        "annotated": truth["kind"].value_counts().to_dict(),
        "window_frames": {kind: 2 * k + 1 for kind, k in zip(KINDS, ks, strict=True)},
        "rule": scored(rule, truth),
        "learnt": learnt,
        "align_seconds": round(align_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "threads": args.threads,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_flags": cpu_flags(),
        "machine": platform.processor() or platform.machine(),
        "command": "python bench/spot_learnt.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "learnt"}, indent=2))
    print(json.dumps(learnt["contrast"]["mean"]), json.dumps(learnt["no_contrast"]["mean"]))


if __name__ == "__main__":
    main()
