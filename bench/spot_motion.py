"""The spotter's motion feature, chosen by measurement: interval F1 and speed on synthetic videos.

Recordings are au-llm's synthetic long videos (:mod:`au_llm.synth.long`: micro- and macro-
expressions at known intervals, blinks, head drift and quick turns), written first (not timed) as
folders of JPEG frames, as the long-video datasets ship them. Each recording is read, landmarked and
aligned once (timed: the shared part of every feature), then each motion feature
(:mod:`au_llm.spot.motion`: ``diff``, ``farneback``, ``dis``) runs over the aligned frames (timed
per feature).

The peak rule's settings (``p`` and ``k_seconds`` per kind, from a small grid) are chosen on half of
the subjects and scored on the other half, both ways (two folds over subjects); the counts of the
two held-out halves are pooled. Beside them: the always-negative spotter (F1 0) and random intervals
(each held-out recording gets as many intervals of each duration as the feature spotted there,
placed uniformly, 20 draws).

The real-time factor is seconds of video per second of computing (decoding, landmarks, alignment and
the feature; >= 1 is real time; JPEG decoding included) with ``--threads`` OpenCV and torch threads;
the load average before and after is recorded, since the machine may be shared.

Usage: ``python bench/spot_motion.py [--style casme-sq-lv] [--subjects 6] [--seconds 30]
[--size 0.5] [--difficulty normal] [--landmark-seconds 0] [--out bench/results/spot_motion.json]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from au_llm.io_utils import atomic_write_text
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.windows import RecordingReader
from au_llm.spot.config import PeakRuleConfig, SpotConfig, frames_at
from au_llm.spot.evaluate import evaluate_spotting
from au_llm.spot.intervals import KINDS, interval_seconds, kind_of
from au_llm.spot.motion import MOTION_FEATURES, MotionMeter
from au_llm.spot.scan import RecordingMotion, spot_intervals
from au_llm.spot.stream import align_stream
from au_llm.synth.long import (
    LongRecording,
    LongRenderer,
    iter_long_frames,
    plan_long_recordings,
)
from au_llm.synth.long.plan import long_look_style
from au_llm.synth.plan import style_spec

ROOT = Path(__file__).resolve().parents[1]
GRID_P = (0.3, 0.4, 0.5, 0.6, 0.7)
GRID_K = {"micro": (0.133, 0.167, 0.2), "macro": (0.5, 0.8, 1.1)}
RANDOM_DRAWS = 20


def write_frames(recording: LongRecording, folder: Path) -> None:
    """The recording's frames as JPEG files with an ``fps.txt``, as the datasets ship them."""
    folder.mkdir(parents=True)
    quality = style_spec(long_look_style(recording.style)).jpeg_quality
    for number, image in iter_long_frames(recording):
        bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        path = folder / f"img{number:05d}.jpg"
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    (folder / "fps.txt").write_text(f"{recording.fps}\n")


def truth_table(recordings: list[LongRecording]) -> pd.DataFrame:
    """The annotated intervals of the recordings."""
    rows = [(r.recording, e.onset, e.offset, e.kind) for r in recordings for e in r.expressions]
    return pd.DataFrame(rows, columns=["recording", "onset", "offset", "kind"])


def grid() -> list[SpotConfig]:
    """The peak-rule settings tried on the tuning half (``p`` and ``k`` chosen per kind)."""
    rules = {
        kind: [PeakRuleConfig(k_seconds=k, p=p) for p in GRID_P for k in GRID_K[kind]]
        for kind in KINDS
    }
    return [
        SpotConfig(micro=micro, macro=macro)
        for micro, macro in itertools.product(rules["micro"], rules["macro"])
    ]


def spotted(
    scores: dict[str, dict[int, np.ndarray]],
    numbers: dict[str, np.ndarray],
    fps: float,
    cfg: SpotConfig,
    names: list[str],
) -> pd.DataFrame:
    """The intervals ``cfg`` spots in the recordings ``names`` from their per-distance scores."""
    tables = []
    for name in names:
        columns = [scores[name][frames_at(cfg.rule(kind).k_seconds, fps)] for kind in KINDS]
        count = len(numbers[name])
        motion = RecordingMotion(
            fps=fps,
            kinds=list(KINDS),
            numbers=numbers[name],
            shown=np.ones(count, bool),
            confidence=np.ones(count, np.float32),
            scores=np.stack(columns, axis=1),
        )
        tables.append(spot_intervals(motion, cfg).assign(recording=name))
    return pd.concat(tables, ignore_index=True)


def random_f1(
    found: pd.DataFrame, truth: pd.DataFrame, numbers: dict[str, np.ndarray], fps: float
) -> float:
    """Mean overall F1 of random intervals with the durations of ``found``, per recording."""
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(RANDOM_DRAWS):
        rows = []
        for name, group in found.groupby("recording"):
            first, last = int(numbers[name][0]), int(numbers[name][-1])
            for onset, offset in zip(group["onset"], group["offset"], strict=True):
                length = int(offset - onset)
                start = int(rng.integers(first, max(first, last - length) + 1))
                kind = kind_of(interval_seconds(start, start + length, fps))
                rows.append((name, start, start + length, kind))
        table = pd.DataFrame(rows, columns=["recording", "onset", "offset", "kind"])
        scores.append(evaluate_spotting(table, truth).counts["overall"].f1)
    return float(np.mean(scores))


def meter_scores(
    feature: str, aligned: list, distances: list[int], cfg: SpotConfig
) -> tuple[np.ndarray, float]:
    """``[frames, distances]`` scores of a feature over aligned frames, and the seconds taken."""
    start = time.perf_counter()
    meter = MotionMeter(
        feature=feature,
        distances=distances,
        regions=cfg.regions,
        size=cfg.size,
        top=cfg.top_regions,
    )
    for frame in aligned:
        meter.push(frame)
    return meter.scores(), time.perf_counter() - start


def tuning_f1(
    scores: dict[str, dict[int, np.ndarray]],
    numbers: dict[str, np.ndarray],
    fps: float,
    cfg: SpotConfig,
    names: list[str],
    truth: pd.DataFrame,
) -> float:
    """Overall F1 of ``cfg`` on the recordings ``names`` (-1 where undefined)."""
    value = evaluate_spotting(spotted(scores, numbers, fps, cfg, names), truth).counts["overall"].f1
    return -1.0 if np.isnan(value) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="casme-sq-lv", help="casme-sq-lv, casme3-lv, samm-lv")
    parser.add_argument("--subjects", type=int, default=6, help="one recording each")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each recording")
    parser.add_argument("--size", type=float, default=0.5, help="image size factor")
    parser.add_argument("--difficulty", default="normal", help="normal or hard")
    parser.add_argument("--landmark-seconds", type=float, default=0.0, help="spot.landmark_seconds")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and torch threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/spot_motion.json")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    recordings = plan_long_recordings(
        args.style,
        subjects=args.subjects,
        recordings_per_subject=1,
        seconds=args.seconds,
        seed=args.seed,
        difficulty=args.difficulty,
        size=args.size,
    )
    fps = recordings[0].fps
    base = SpotConfig(landmark_seconds=args.landmark_seconds)
    distances = sorted({frames_at(k, fps) for kind in KINDS for k in GRID_K[kind]})
    names = [r.recording for r in recordings]
    numbers: dict[str, np.ndarray] = {}
    scores: dict[str, dict[str, dict[int, np.ndarray]]] = {f: {} for f in MOTION_FEATURES}
    feature_seconds = dict.fromkeys(MOTION_FEATURES, 0.0)
    align_seconds = 0.0
    landmarker = Landmarker(num_faces=5)
    with tempfile.TemporaryDirectory() as tmp:
        for recording in recordings:
            folder = Path(tmp) / recording.recording
            write_frames(recording, folder)
            start = time.perf_counter()
            reader = RecordingReader(folder, "frames", None)
            aligned = list(
                align_stream(
                    reader,
                    landmarker,
                    size=base.size,
                    margin=base.margin,
                    smooth=frames_at(base.align_smooth_seconds, fps),
                    every=frames_at(base.landmark_seconds, fps) if base.landmark_seconds else 1,
                    block=64,
                )
            )
            align_seconds += time.perf_counter() - start
            numbers[recording.recording] = np.array([f.number for f in aligned])
            for feature in MOTION_FEATURES:
                defaults = [frames_at(base.rule(kind).k_seconds, fps) for kind in KINDS]
                feature_seconds[feature] += meter_scores(feature, aligned, defaults, base)[1]
                values, _ = meter_scores(feature, aligned, distances, base)
                scores[feature][recording.recording] = {
                    k: values[:, i] for i, k in enumerate(distances)
                }
    landmarker.close()
    truth = truth_table(recordings)
    halves = [names[0::2], names[1::2]]
    video_seconds = sum(r.n_frames for r in recordings) / fps
    features = {}
    for feature in MOTION_FEATURES:
        held_out, chosen, random_scores = [], [], []
        for tune, test in (halves, halves[::-1]):
            tuned = truth[truth["recording"].isin(tune)]
            best = max(
                grid(),
                key=lambda cfg, t=tune, a=tuned, f=feature: tuning_f1(
                    scores[f], numbers, fps, cfg, t, a
                ),
            )
            chosen.append(
                {
                    kind: {"p": best.rule(kind).p, "k_seconds": best.rule(kind).k_seconds}
                    for kind in KINDS
                }
            )
            found = spotted(scores[feature], numbers, fps, best, test)
            held_out.append(found)
            random_scores.append(
                random_f1(found, truth[truth["recording"].isin(test)], numbers, fps)
            )
        result = evaluate_spotting(pd.concat(held_out, ignore_index=True), truth)
        seconds = align_seconds + feature_seconds[feature]
        features[feature] = {
            "held_out": {kind: counts.to_dict() for kind, counts in result.counts.items()},
            "random_intervals_f1": float(np.mean(random_scores)),
            "chosen": chosen,
            "feature_seconds": round(feature_seconds[feature], 2),
            "realtime_factor": round(video_seconds / seconds, 3),
        }
        print(feature, json.dumps(features[feature]["held_out"]["overall"]), flush=True)
    result = {
        "style": args.style,
        "difficulty": args.difficulty,
        "recordings": len(recordings),
        "video_seconds": video_seconds,
        "fps": fps,
        "frame_shape": list(LongRenderer(recordings[0]).shape),
        "size_factor": args.size,
        "annotated": truth["kind"].value_counts().to_dict(),
        "blinks": sum(len(r.blinks) for r in recordings),
        "head_turns": sum(len(r.turns) for r in recordings),
        "landmark_seconds": args.landmark_seconds,
        "align_seconds": round(align_seconds, 2),
        "always_negative_f1": 0.0,
        "features": features,
        "threads": args.threads,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "command": "python bench/spot_motion.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
