"""Videos and frame folders scanned with sliding windows: one row per window and face.

Every frame is decoded and landmarked once; faces are tracked so that windows never mix people
(see :mod:`au_llm.preprocess.tracks`); each window is aligned as training clips are and windows
stream through the model a batch at a time.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from au_llm.data.fields import ClipReadError
from au_llm.predict.config import PredictConfig
from au_llm.predict.failures import FailureLog
from au_llm.predict.inputs import input_kind
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.dataset import to_clip_tensor
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.tracks import FrameRecord, choose_tracks, track_frames
from au_llm.preprocess.windows import (
    AlignedWindow,
    RecordingReader,
    StreamStats,
    align_track,
    check_window,
    recording_name,
    stream_windows,
    window_starts,
)

log = logging.getLogger(__name__)

# Faces looked for per frame, so that windows never mix people (see tracks.py).
FACES_SEARCHED = 5


@dataclass
class RecordingScanner:
    """Scans recordings with sliding windows and scores each window's faces.

    Attributes:
        scorer: The model with its options.
        options: Window, stride, frame rate, face policy and least face coverage.
        log: Where failed recordings and windows and each recording's summary go.
        peak_windows: Most aligned windows held at once.
    """

    scorer: ClipScorer
    options: PredictConfig = field(default_factory=PredictConfig)
    log: FailureLog = field(default_factory=FailureLog)
    peak_windows: int = 0
    _landmarker: Landmarker | None = field(default=None, repr=False)

    @property
    def landmarker(self) -> Landmarker | None:
        """The face landmarker, created on first use (None for alignment mode ``none``)."""
        pre = self.scorer.preprocess
        if self._landmarker is None and pre.align != "none":
            faces = max(pre.num_faces, FACES_SEARCHED)
            self._landmarker = Landmarker(model=pre.landmarker_model, num_faces=faces)
        return self._landmarker

    def close(self) -> None:
        """Release the face landmarker (idempotent; a later recording creates a new one)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def window_for(self, fps: float) -> tuple[int, int]:
        """``(window, stride)`` in frames for a recording at ``fps`` frames per second."""
        clip_seconds = self.scorer.deployed.inference.clip_seconds
        window = self.options.window or max(2, round(clip_seconds * fps))
        stride = self.options.stride or max(1, window // 2)
        check_window(window, stride)
        return window, stride

    def predict(self, path: Path, clip: str | None = None) -> pd.DataFrame:
        """One row per window and face: keys, coverage, face box, AU columns.

        Keys (``clip``: the given name, default the file's stem or the folder's name):
        ``source, clip, face_id, frame_start, frame_end, time_start, time_end``; frame
        numbers are the files' numbers for frame folders and 0-based indices for videos; times are
        seconds from the recording's first frame. Coverage: ``face_frames`` (frames showing the
        face / window length) and ``face_confidence``; ``face_x, face_y, face_w, face_h`` is the
        median face box in source pixels. A recording that cannot be read is recorded in the log
        and gives an empty frame.
        """
        return self.log.attempt(path, lambda: self._scan(path, clip))

    def _describe_window(self, path: Path, fps: float, window: int, stride: int) -> None:
        """Log the window in frames and seconds; warn when it is shorter than the model's input."""
        n_frames = self.scorer.frames_per_clip
        given = "--window" if self.options.window else "the model's clip duration"
        log.info(
            "%s: window %d frames (%.3f s at %g fps, %s), stride %d frames",
            path,
            window,
            window / fps,
            fps,
            given,
            stride,
        )
        if window < n_frames:
            log.warning(
                "%s: a window of %d frames is shorter than the model's %d frames per clip: "
                "frames repeat inside each window; pass --window %d or more",
                path,
                window,
                n_frames,
                n_frames,
            )

    def _window_faces(
        self, window: list[FrameRecord], rng: np.random.Generator
    ) -> list[tuple[int | None, AlignedWindow]]:
        """``(face_id, aligned)`` per face the policy picks in a window (empty: no face)."""
        pre, scorer = self.scorer.preprocess, self.scorer
        tracks: list[int | None] = [None]
        if pre.align != "none":
            tracks = list(choose_tracks(window, self.options.face))
        n_frames, strategy = scorer.frames_per_clip, scorer.frame_sampling
        return [(t, align_track(window, t, pre, n_frames, strategy, rng)) for t in tracks]

    def _score_batch(self, batch: list[tuple[dict, AlignedWindow]]) -> pd.DataFrame:
        """Rows of one batch of aligned windows (their keys, then the AU columns)."""
        self.peak_windows = max(self.peak_windows, len(batch))
        clips = torch.stack([to_clip_tensor(aligned.frames) for _, aligned in batch])
        outputs = self.scorer.outputs(clips)
        frame = pd.DataFrame([keys for keys, _ in batch])
        explained: dict[str, Any] | None = {} if self.scorer.explain else None
        return frame.assign(**self.scorer.columns(frame, outputs, explained=explained))

    def _scan(self, path: Path, clip: str | None) -> pd.DataFrame:
        """:meth:`predict` without the failure guard."""
        kind = input_kind(path)
        if kind == "manifest":
            raise ClipReadError(f"input {path}: expected a video or a frame folder", path)
        reader = RecordingReader(path, kind, self.options.fps)
        fps = reader.fps
        window, stride = self.window_for(fps)
        self._describe_window(path, fps, window, stride)
        rng = np.random.default_rng(0)
        min_face = self.options.min_face
        frames, batch, failed = [], [], Counter()
        expected = len(window_starts(reader.reported, window, stride))
        stats, origin, count = StreamStats(), None, 0
        records = track_frames(reader, self.landmarker)
        bar = tqdm(total=expected, desc=path.name, unit="window", leave=False)
        for records_window in stream_windows(records, window, stride, stats):
            bar.update()
            count += 1
            first, last = records_window[0].number, records_window[-1].number
            origin = first if origin is None else origin
            span = {
                "frame_start": first,
                "frame_end": last,
                "time_start": (first - origin) / fps,
                "time_end": (last - origin) / fps,
            }
            faces = self._window_faces(records_window, rng)
            if not faces:
                failed["no face found"] += 1
                self.log.fail(path, "no face found", f"frames {first}-{last}", False, **span)
            for face_id, aligned in faces:
                if aligned.face_frames < min_face:
                    reason = f"face on fewer than {min_face:.0%} of the frames"
                    failed[reason] += 1
                    detail = f"{reason} ({aligned.face_frames:.0%})"
                    self.log.fail(
                        path, detail, f"frames {first}-{last}", False, face_id=face_id, **span
                    )
                    continue
                box = aligned.box or (np.nan,) * 4
                keys = {"source": str(path), "face_id": face_id, **span}
                keys |= {"face_frames": aligned.face_frames, "face_confidence": aligned.confidence}
                keys |= dict(zip(("face_x", "face_y", "face_w", "face_h"), box, strict=True))
                batch.append((keys, aligned))
                if len(batch) >= self.scorer.batch_size:
                    frames.append(self._score_batch(batch))
                    batch = []
        bar.close()
        if batch:
            frames.append(self._score_batch(batch))
        reasons = [reader.stop_reason] if reader.stop_reason else []
        reasons += [f"{n} windows: {why}" for why, n in sorted(failed.items())]
        if reasons:
            log.warning(
                "%s: %d of %d windows failed; %s",
                path,
                sum(failed.values()),
                count,
                "; ".join(reasons),
            )
        self.log.summary.append(
            {
                "input": str(path),
                "frames": reader.decoded,
                "windows": count,
                "failed_windows": sum(failed.values()),
                "reason": "; ".join(reasons),
            }
        )
        if not frames:
            return pd.DataFrame()
        table = pd.concat(frames, ignore_index=True)
        return table.assign(clip=clip or recording_name(path))
