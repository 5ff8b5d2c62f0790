"""One fold of the MEGC evaluation (``protocol: megc``): spot, then name the AUs, on held-out data.

The fold's model was trained on the other subjects' annotated expressions (clips
``onset..offset``, as every protocol trains). Here the held-out subject's recordings are read
whole: each is streamed through the spotter (:func:`~au_llm.spot.scan.measure_motion`,
:func:`~au_llm.spot.scan.spot_intervals`, with the run's fixed ``spot`` settings: nothing is
tuned on the held-out subject), and every spotted interval's clip is aligned and cached exactly
as a training clip (:func:`~au_llm.preprocess.run.preprocess_manifest`) and scored by the fold's
model at its training thresholds.

Beside the rule spotter, every fold scores two baselines (:data:`METHODS`): ``random``, the rule's
intervals (same count, durations and kinds per recording) moved to random places in the same
recording (seeded by the fold's seed), their AUs named by the same model; and ``none``, which
spots nothing (always negative). The fold returns the spotted intervals of each method and the
held-out annotations as plain data for the fold record; :mod:`au_llm.reports.spotting` scores
them by the MEGC rules (:mod:`au_llm.spot.evaluate`).

A recording's motion does not depend on the fold's model or seed, so :class:`RecordingMotions`
measures each recording once per process and the run's seeds share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from au_llm.config_generation import GenerationConfig
from au_llm.data.fields import ClipReadError
from au_llm.inference import predict_clips
from au_llm.metrics import au_column
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.predict.recordings import FACES_SEARCHED
from au_llm.prediction_rows import output_columns
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.run import exclude_failed, preprocess_manifest
from au_llm.preprocess.windows import RecordingReader
from au_llm.spot.config import SpotConfig
from au_llm.spot.intervals import interval_clips
from au_llm.spot.scan import RecordingMotion, measure_motion, spot_intervals

log = logging.getLogger(__name__)

METHODS = ("rule", "random", "none")
"""The spotting methods every fold scores: the peak rule and its two baselines."""
RECORDING_KEYS = ["dataset", "subject", "recording"]
"""The columns naming a recording in the fold record's interval rows."""


@dataclass(frozen=True)
class HeldOutRecording:
    """A recording of the held-out subject, as its manifest rows name it.

    Attributes:
        dataset: Dataset name.
        subject: Subject id.
        recording: Recording name (the manifest's ``recording``).
        kind: ``frames`` (a frame folder) or ``video``.
        path: The frame folder or video.
        fps: The manifest's frame rate (used where the recording has none of its own).
    """

    dataset: str
    subject: str
    recording: str
    kind: str
    path: Path
    fps: float

    @property
    def keys(self) -> dict[str, str]:
        """The recording's :data:`RECORDING_KEYS`."""
        return {"dataset": self.dataset, "subject": self.subject, "recording": self.recording}


def held_out_recordings(test: pd.DataFrame) -> list[HeldOutRecording]:
    """The recordings whose annotated expressions are the fold's test rows, in name order.

    Each recording's rows name one source (checked when the folds are made:
    :func:`~au_llm.protocols.check_long_videos`); the first row's is taken.
    """
    found = []
    for (dataset, subject, recording), rows in test.groupby(RECORDING_KEYS, sort=True):
        first = rows.iloc[0]
        frames = str(first["frames_dir"] or "") if pd.notna(first["frames_dir"]) else ""
        kind, path = ("frames", frames) if frames else ("video", str(first["video"]))
        fps = float(first["fps"])
        found.append(HeldOutRecording(dataset, subject, recording, kind, Path(path), fps))
    return found


class RecordingMotions:
    """Each recording's per-frame motion, measured once and kept (a few numbers per frame).

    Args:
        cfg: The spotter's settings.
        landmarker_model: The face landmarker's model file (``preprocess.landmarker_model``).
    """

    def __init__(self, cfg: SpotConfig, landmarker_model: str) -> None:
        self.cfg, self.landmarker_model = cfg, landmarker_model
        self._measured: dict[Path, tuple[RecordingMotion, np.ndarray]] = {}
        self._landmarker: Landmarker | None = None

    def measure(self, recording: HeldOutRecording) -> tuple[RecordingMotion, np.ndarray]:
        """The recording's motion and ``[N]`` frame times (s), measured on first use.

        Raises:
            ClipReadError: The recording cannot be read, or no frame of it decodes.
        """
        path = recording.path.resolve()
        if path not in self._measured:
            reader = RecordingReader(recording.path, recording.kind, recording.fps)
            if self._landmarker is None:
                self._landmarker = Landmarker(model=self.landmarker_model, num_faces=FACES_SEARCHED)
            motion = measure_motion(reader, reader.fps, self._landmarker, self.cfg)
            if not len(motion.numbers):
                raise ClipReadError(f"no frame decodes ({reader.stop_reason})", recording.path)
            times = reader.times[np.searchsorted(reader.numbers, motion.numbers)]
            self._measured[path] = (motion, times)
        return self._measured[path]

    def close(self) -> None:
        """Release the landmarker."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


def random_intervals(
    intervals: pd.DataFrame, numbers: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """``intervals`` moved to random places of the recording: same count, lengths and kinds.

    Args:
        intervals: ``onset, apex, offset`` (frame numbers), ``kind``, ``score`` rows.
        numbers: ``[N]`` the recording's frame numbers, in order.
        rng: The random generator (seeded by the caller).

    Returns:
        One row per row of ``intervals``, in its order: each spans as many frames of the
        recording as the original (at most the whole recording), starts at a uniformly drawn
        frame, and has its apex in the middle; ``score`` is nan.
    """
    rows = []
    for onset, offset, kind in zip(
        intervals["onset"], intervals["offset"], intervals["kind"], strict=True
    ):
        first, last = np.searchsorted(numbers, [onset, offset])
        length = min(int(last - first) + 1, len(numbers))
        start = int(rng.integers(0, len(numbers) - length + 1))
        end = start + length - 1
        apex = (start + end) // 2
        rows.append((int(numbers[start]), int(numbers[apex]), int(numbers[end]), kind, np.nan))
    return pd.DataFrame(rows, columns=["onset", "apex", "offset", "kind", "score"])


@dataclass(frozen=True)
class FoldModel:
    """A fold's trained model, ready to score clips of long recordings.

    Attributes:
        model: The trained model.
        processor: Its text processor.
        thresholds: ``[A]`` the fold's decision thresholds (chosen on its training clips).
        cache: The run's aligned-clip cache (interval clips are aligned as training clips).
        aus: AU numbers, in the model's order.
        frames_per_clip: Frames sampled from a clip (``sampling.frames_per_clip``).
        strategy: The test sampling strategy (``sampling.test_strategy``).
        batch_size: Clips per forward pass.
        head: The model's head (``model.head``).
        formats: The model's text formats.
        generation: How text answers are decoded (``head: text|both``).
    """

    model: AULLM
    processor: AULLMProcessor
    thresholds: np.ndarray
    cache: ClipCache
    aus: list[int]
    frames_per_clip: int
    strategy: str
    batch_size: int
    head: str
    formats: list[str]
    generation: GenerationConfig

    def score(self, clips: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, int]:
        """``AUxx_prob, AUxx_pred`` of each clip, in order, and how many clips failed.

        A clip that cannot be aligned (reported in the log) gets probability 0 and no AU.
        """
        columns = [au_column(au, kind) for au in self.aus for kind in ("prob", "pred")]
        result = pd.DataFrame(0.0, index=range(len(clips)), columns=columns)
        if clips.empty:
            return result, 0
        outcome = preprocess_manifest(clips, self.cache, progress=False)
        usable = exclude_failed(clips, outcome)
        failed = len(clips) - len(usable)
        if failed:
            log.warning("%d spotted interval clips failed alignment; scored as no AU", failed)
        if usable.empty:
            return result, failed
        dataset = ClipDataset(
            usable, self.cache, self.aus, self.frames_per_clip, self.strategy, seed
        )
        outputs, _ = predict_clips(
            self.model,
            self.processor,
            dataset,
            batch_size=self.batch_size,
            answers=self.head != "linear",
            generation=self.generation,
        )
        scored = output_columns(outputs, self.aus, self.thresholds, self.head, self.formats)
        frame = pd.DataFrame({c: scored[c] for c in columns}, index=usable["clip"])
        by_clip = frame.reindex(clips["clip"]).fillna(0.0).reset_index(drop=True)
        return by_clip.astype({au_column(au, "pred"): "int64" for au in self.aus}), failed


def spot_fold(
    test: pd.DataFrame,
    *,
    motions: RecordingMotions,
    fold_model: FoldModel,
    seed: int,
    strict: bool = False,
) -> dict[str, Any]:
    """Spot the held-out recordings, name the AUs of every interval, for the fold record.

    Args:
        test: The fold's test rows: the held-out subject's annotated expressions (a long-video
            manifest's rows: ``recording``, ``kind``, ``aus``, ``frames_dir`` or ``video``).
        motions: The recordings' motion (measured once per process).
        fold_model: The fold's trained model.
        seed: The fold's seed (the random baseline's placements).
        strict: Raise when a recording cannot be read, instead of leaving it unspotted (its
            expressions then count as missed by every method, and ``recordings`` names the
            error).

    Returns:
        ``annotated`` (the held-out expressions: recording keys, ``onset``, ``offset``, ``kind``,
        ``aus``), ``intervals`` (every method's spotted intervals: ``method``, recording keys,
        ``onset, apex, offset, kind, score``, then ``AUxx_prob, AUxx_pred``), ``recordings``
        (frames read, frames without a face, intervals spotted by the rule, failed interval clips).

    Raises:
        ClipReadError: A held-out recording cannot be read (under ``strict``).
    """
    rng = np.random.default_rng(seed)
    tables, recordings = [], []
    for recording in held_out_recordings(test):
        try:
            motion, times = motions.measure(recording)
        except ClipReadError as exc:
            if strict:
                raise
            log.warning("%s: not spotted, its expressions count as missed: %s", recording.path, exc)
            recordings.append({**recording.keys, "error": str(exc)})
            continue
        rule = spot_intervals(motion, motions.cfg, times)
        placed = random_intervals(rule, motion.numbers, rng)
        both = pd.concat([rule.assign(method="rule"), placed.assign(method="random")])
        both = both.reset_index(drop=True)
        names = [
            f"{recording.recording}_{method}{i:04d}_{on}-{off}"
            for i, (method, on, off) in enumerate(
                zip(both["method"], both["onset"], both["offset"], strict=True)
            )
        ]
        clips = interval_clips(
            both,
            names,
            dataset=recording.dataset,
            subject=recording.subject,
            source=(recording.kind, recording.path),
            fps=motion.fps,
        )
        scores, failed = fold_model.score(clips, seed)
        tables.append(pd.concat([both.assign(**recording.keys), scores], axis=1))
        recordings.append(
            {
                **recording.keys,
                "frames": len(motion.numbers),
                "frames_without_face": int((~motion.shown).sum()),
                "rule_intervals": len(rule),
                "failed_interval_clips": failed,
            }
        )
    columns = ["method", *RECORDING_KEYS, "onset", "apex", "offset", "kind", "score"]
    intervals = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    au_columns = [c for c in intervals.columns if c not in columns]
    intervals = intervals[columns + au_columns]
    annotated = test[[*RECORDING_KEYS, "onset", "offset", "kind", "aus"]]
    return {
        "annotated": _records(annotated),
        "intervals": _records(intervals),
        "recordings": recordings,
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (nan as None, numpy scalars as Python numbers)."""
    plain = frame.astype(object).where(frame.notna(), None)
    return [
        {
            key: value.item() if isinstance(value, np.generic) else value
            for key, value in row.items()
        }
        for row in plain.to_dict("records")
    ]
