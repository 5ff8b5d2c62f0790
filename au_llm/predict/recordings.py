"""Videos and frame folders scanned with sliding windows: one row per window and face.

Every frame is decoded and landmarked once; faces are tracked so that windows never mix people
(see :mod:`au_llm.preprocess.tracks`); each window is aligned as training clips are and windows
stream through the model a batch at a time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
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
from au_llm.preprocess.dataset import model_input
from au_llm.preprocess.flow import onset_flow
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.tracks import FrameRecord, choose_tracks, track_frames
from au_llm.preprocess.windows import (
    AlignedWindow,
    RecordingReader,
    StreamStats,
    align_track,
    check_window,
    check_window_memory,
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
        times: Each scanned recording's frame times (seconds, indexed by frame number; see
            :meth:`~au_llm.preprocess.windows.RecordingReader.frame_times`), by ``source``.
    """

    scorer: ClipScorer
    options: PredictConfig = field(default_factory=PredictConfig)
    log: FailureLog = field(default_factory=FailureLog)
    peak_windows: int = 0
    times: dict[str, pd.Series] = field(default_factory=dict)
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
        seconds from the recording's first frame (a video's own frame timestamps, so variable
        frame rates get true times; ``number / fps`` for frame folders). Coverage:
        ``face_frames`` (frames showing the face / window length) and ``face_confidence``;
        ``face_x, face_y, face_w, face_h`` is the median face box in source pixels. A recording
        that cannot be read is recorded in the log and gives an empty frame.
        """
        return self.log.attempt(path, lambda: self._scan(path, clip))

    def _describe_window(self, reader: RecordingReader, window: int, stride: int) -> None:
        """Log the window in frames and seconds, with warnings.

        Warns when the window is shorter than the model's input or longer than the recording,
        and when the recording's frame rate varies (with the seconds its windows span).
        """
        path, fps, n_frames = reader.path, reader.fps, self.scorer.frames_per_clip
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
        if window > reader.reported:
            log.warning(
                "%s: a window of %d frames is longer than the recording (%d frames): one "
                "window covers all of it",
                path,
                window,
                reader.reported,
            )
        if reader.variable_rate:
            steps = np.diff(reader.times) * 1000
            held = min(window, reader.reported) - 1
            spans = reader.times[held:] - reader.times[: len(reader.times) - held]
            log.warning(
                "%s: variable frame rate (%.1f-%.1f ms between frames, mean %.3g fps): times "
                "are each frame's own timestamp, and windows of %d frames span %.3f-%.3f s",
                path,
                steps.min(),
                steps.max(),
                fps,
                window,
                spans.min(),
                spans.max(),
            )

    def _bounded(self, reader: RecordingReader, window: int) -> Iterator[tuple[int, np.ndarray]]:
        """The reader's frames; the first one checks what a window of them would hold.

        Raises:
            ValueError: The window's frames would take more than ``--max-window-gib``.
        """
        for position, (number, image) in enumerate(reader):
            if position == 0:
                check_window_memory(window, reader.reported, image, self.options.max_window_gib)
            yield number, image

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
        kind = self.scorer.preprocess.input
        clips = torch.stack(
            [
                model_input(
                    aligned.frames,
                    None if aligned.onset is None else onset_flow(aligned.frames, aligned.onset),
                    kind,
                )
                for _, aligned in batch
            ]
        )
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
        window, stride = self.window_for(reader.fps)
        self._describe_window(reader, window, stride)
        self.times[str(path)] = reader.frame_times()
        rng = np.random.default_rng(0)
        min_face = self.options.min_face
        frames, batch, failed = [], [], Counter()
        expected = len(window_starts(reader.reported, window, stride))
        stats, count = StreamStats(), 0
        records = track_frames(self._bounded(reader, window), self.landmarker)
        bar = tqdm(total=expected, desc=path.name, unit="window", leave=False)
        for records_window in stream_windows(records, window, stride, stats):
            bar.update()
            count += 1
            first, last = records_window[0].number, records_window[-1].number
            span = {
                "frame_start": first,
                "frame_end": last,
                "time_start": reader.time_of(first),
                "time_end": reader.time_of(last),
            }
            faces = self._window_faces(records_window, rng)
            if not faces:
                failed["no face found"] += 1
                self.log.fail(path, "no face found", f"frames {first}-{last}", warn=False, **span)
            for face_id, aligned in faces:
                if aligned.face_frames < min_face:
                    reason = f"face on fewer than {min_face:.0%} of the frames"
                    failed[reason] += 1
                    detail = f"{reason} ({aligned.face_frames:.0%})"
                    self.log.fail(
                        path, detail, f"frames {first}-{last}", warn=False, face_id=face_id, **span
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
                "fps": reader.fps,
                "variable_fps": reader.variable_rate,
                "reason": "; ".join(reasons),
            }
        )
        if not frames:
            return pd.DataFrame()
        table = pd.concat(frames, ignore_index=True)
        return table.assign(clip=clip or recording_name(path))
