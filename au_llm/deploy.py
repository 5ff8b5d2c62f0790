"""``au-llm predict``: a deployed model (:mod:`au_llm.deployed`) applied to new inputs.

:class:`Predictor` applies a model directory from ``au-llm train`` to manifests (one row per
annotated clip) and to whole recordings, videos or frame folders, scanned with sliding windows (one
row per window and face).
Every input goes through the same face alignment as training. Inputs that cannot be read or show
no face are listed in ``failures.csv`` beside the predictions; the others go on.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from au_llm.data.fields import ClipReadError
from au_llm.data.manifest import read_manifest
from au_llm.deployed import DeployedModel, load_deployed
from au_llm.inference import ClipOutputs, answer_tries, clip_outputs, inference_prompt_cache
from au_llm.io_utils import OutputError, atomic_write_csv
from au_llm.metrics import au_column
from au_llm.model.engine import PromptCache
from au_llm.predict_outputs import input_paths, per_frame_path, prediction_files
from au_llm.prediction_rows import output_columns
from au_llm.preprocess.align import NO_FACE
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset, to_clip_tensor
from au_llm.preprocess.landmarks import Landmarker
from au_llm.preprocess.run import preprocess_manifest
from au_llm.preprocess.tracks import FACE_POLICIES, FrameRecord, choose_tracks, track_frames
from au_llm.preprocess.windows import (
    VIDEO_SUFFIXES,
    AlignedWindow,
    RecordingReader,
    StreamStats,
    align_track,
    check_window,
    recording_name,
    recording_names,
    stream_windows,
    window_starts,
)
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.reports.recording import per_frame_table, plot_recording
from au_llm.training import seed_everything

log = logging.getLogger(__name__)

# Exit statuses of ``au-llm predict`` (0: every input gave rows; 2: usage or output error).
EXIT_SOME_FAILED = 3
EXIT_ALL_FAILED = 4
# Faces looked for per frame, so that windows never mix people (see tracks.py).
FACES_SEARCHED = 5
INT_COLUMNS = ("onset", "offset", "frame_start", "frame_end", "face_id")
FAILURE_COLUMNS = ["input", "clip", "face_id", "frame_start", "frame_end", "time_start", "time_end"]
FAILURE_COLUMNS += ["reason"]
SUMMARY_COLUMNS = ["input", "frames", "windows", "failed_windows", "reason"]


def input_kind(path: Path) -> str:
    """``manifest`` (a .csv), ``frames`` (a folder) or ``video`` (a video file).

    Raises:
        ClipReadError: If the path does not exist or is of no known kind.
    """
    if path.is_dir():
        return "frames"
    if not path.exists():
        raise ClipReadError(f"input not found: {path}", path)
    if path.suffix.lower() == ".csv":
        return "manifest"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    raise ClipReadError(
        f"input {path}: expected a manifest .csv, a frame folder or a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))})",
        path,
    )


@dataclass
class Predictor:
    """Applies a deployed model to manifests and recordings.

    Args:
        deployed: The model and its settings.
        window: Sliding-window length in frames (default: the model's median training clip
            duration at the recording's frame rate).
        stride: Window stride in frames (default: half the window).
        fps: Frame rate of frame folders without an ``fps.txt`` and of videos that report none
            (videos use their own); a folder without either fails.
        strict: Raise on the first input or window that fails instead of reporting it.
        cache_dir: Aligned-clip cache for manifest inputs (default: the model config's
            ``data.cache_dir``; :func:`predict_inputs` always passes one under its output).
        constrained: Constrained decoding of text answers (default: the model's
            ``model.text.constrained``).
        face: Face policy for recordings: ``largest``, ``all`` (one stream per tracked face) or
            ``center`` (see :mod:`au_llm.preprocess.tracks`).
        min_face: Least fraction of a window's frames showing its face; windows below go to the
            failures with their span.
        batch_size: Windows per model batch (default: the model's ``train.batch_size``); at
            most one batch of aligned windows is held at a time.
        explain: Add an ``explanation`` column (greedy, deterministic); the model must have been
            trained with ``model.explain.weight > 0``.
        align: Alignment mode replacing the model's ``preprocess.mode`` (``clip``, ``frame`` for
            recordings with head motion, ``none``); None keeps the model's.

    Attributes:
        failures: One row per failed input, clip or window (``FAILURE_COLUMNS``).
        summary: One row per input (``SUMMARY_COLUMNS``).
        peak_windows: Most aligned windows held at once.
    """

    deployed: DeployedModel
    window: int | None = None
    stride: int | None = None
    fps: float | None = None
    strict: bool = False
    cache_dir: Path | None = None
    constrained: bool | None = None
    face: str = "largest"
    min_face: float = 0.8
    batch_size: int | None = None
    explain: bool = False
    align: str | None = None
    failures: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    peak_windows: int = 0

    def __post_init__(self) -> None:
        if self.explain and not self.deployed.cfg.model.explains:
            raise ValueError(
                "--explain: this model was not trained with explanations "
                "(train it with model.explain.weight > 0)"
            )
        if self.window is not None:
            check_window(self.window, self.stride or max(1, self.window // 2))
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps {self.fps:g}: expected a positive frame rate")
        if self.face not in FACE_POLICIES:
            raise ValueError(f"--face {self.face}: expected one of {', '.join(FACE_POLICIES)}")
        if not 0 <= self.min_face <= 1:
            raise ValueError(f"--min-face {self.min_face}: expected a fraction in 0..1")
        self.batch_size = self.batch_size or self.deployed.cfg.train.batch_size
        if self.align is not None:
            self._override_alignment(self.align)
        self._landmarker: Landmarker | None = None
        model = self.deployed.model.eval()
        self._prompt_cache: PromptCache | None = inference_prompt_cache(model)
        processor = self.deployed.processor
        self._text = model.cfg.has_text_head
        self._tries = answer_tries(model, processor, self.constrained) if self._text else {}

    def _override_alignment(self, mode: str) -> None:
        """Use alignment ``mode`` instead of the model's ``preprocess.mode``."""
        cfg = self.deployed.cfg
        preprocess = replace(cfg.preprocess, mode=mode)
        log.info(
            "alignment: %s (--align; the model was trained with %s)", mode, cfg.preprocess.mode
        )
        self.deployed = replace(self.deployed, cfg=replace(cfg, preprocess=preprocess))

    def close(self) -> None:
        """Release the face landmarker (idempotent; a later recording creates a new one)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def window_for(self, fps: float) -> tuple[int, int]:
        """``(window, stride)`` in frames for a recording at ``fps`` frames per second."""
        window = self.window or max(2, round(self.deployed.clip_seconds * fps))
        stride = self.stride or max(1, window // 2)
        check_window(window, stride)
        return window, stride

    @property
    def landmarker(self) -> Landmarker | None:
        """The face landmarker, created on first use (None for ``preprocess.mode: none``)."""
        pre = self.deployed.cfg.preprocess
        if self._landmarker is None and pre.mode != "none":
            faces = max(pre.num_faces, FACES_SEARCHED)
            self._landmarker = Landmarker(model=pre.landmarker_model, num_faces=faces)
        return self._landmarker

    def _fail(
        self, source: Path | str, reason: str, clip: str = "", warn: bool = True, **span: Any
    ) -> None:
        """Record a failure (``span``: the window's FAILURE_COLUMNS); raise under ``strict``."""
        if self.strict:
            raise ValueError(f"{source}: {clip + ': ' if clip else ''}{reason}")
        if warn:
            log.warning("%s: %s%s", source, clip + ": " if clip else "", reason)
        self.failures.append({"input": str(source), "clip": clip, "reason": reason, **span})

    def _output_columns(
        self,
        outputs: ClipOutputs,
        labels: np.ndarray | None = None,
        explained: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The row's columns after its keys (see :func:`~au_llm.prediction_rows.output_columns`)."""
        model = self.deployed.model.cfg
        deployed = self.deployed
        return output_columns(
            outputs,
            deployed.aus,
            deployed.thresholds,
            model.head,
            model.text.formats,
            labels,
            explained,
        )

    def _outputs(self, clips: torch.Tensor) -> ClipOutputs:
        """Probabilities, answers and (``explain``) explanations of clips ``[B, C, T, H, W]``.

        The clips go through the model in batches of its ``train.batch_size``.
        """
        model, processor = self.deployed.model.eval(), self.deployed.processor
        train = self.deployed.cfg.train
        cache, tries = self._prompt_cache, self._tries
        parts = [
            clip_outputs(model, processor, batch, cache, tries, self._text, self.explain)
            for batch in torch.split(clips, train.batch_size)
        ]
        return ClipOutputs.concat(parts, len(self.deployed.aus))

    def predict_manifest(self, path: Path) -> pd.DataFrame:
        """One row per annotated clip: ``source, dataset, subject, clip, onset, offset``, AUs.

        ``dataset`` and ``subject`` are kept because CASME II reuses clip names across subjects.
        """
        cfg = self.deployed.cfg
        manifest = read_manifest(path)
        cache = ClipCache(Path(self.cache_dir or cfg.data.cache_dir), cfg.preprocess)
        report = preprocess_manifest(manifest, cache, progress=False)
        usable = []
        for row, rec in zip(manifest.to_dict("records"), report.to_dict("records"), strict=True):
            if rec["status"] == "failed":
                self._fail(path, rec["error"], row["clip"])
            elif rec["fallback"] == NO_FACE:
                self._fail(path, "no face found", row["clip"])
            else:
                usable.append(row)
        rows = pd.DataFrame(usable, columns=manifest.columns)
        failed = len(manifest) - len(rows)
        reason = f"{failed} clips failed (see failures.csv)" if failed else ""
        self.summary.append(
            {
                "input": str(path),
                "windows": len(manifest),
                "failed_windows": failed,
                "reason": reason,
            }
        )
        if rows.empty:
            return pd.DataFrame()
        data = ClipDataset(
            rows, cache, self.deployed.aus, cfg.sampling.frames_per_clip, cfg.sampling.test
        )
        clips = torch.stack([data[i][0] for i in range(len(data))])
        outputs = self._outputs(clips)
        labelled = rows["aus"].fillna("").astype(str).str.strip().ne("").any()
        frame = pd.DataFrame(
            {
                "source": str(path),
                "dataset": rows["dataset"],
                "subject": rows["subject"],
                "clip": rows["clip"],
                "onset": rows["onset"],
                "offset": rows["offset"],
            }
        )
        labels = data.labels.numpy() if labelled else None
        explained = None
        if self.explain:
            explained = {c: rows[c] for c in ("au_raw", "aus") if c in rows.columns}
        return frame.assign(**self._output_columns(outputs, labels, explained))

    def _describe_window(self, path: Path, fps: float, window: int, stride: int) -> None:
        """Log the window in frames and seconds; warn when it is shorter than the model's input."""
        n_frames = self.deployed.cfg.sampling.frames_per_clip
        given = "--window" if self.window else "the model's clip duration"
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
        cfg = self.deployed.cfg
        tracks: list[int | None] = [None]
        if cfg.preprocess.mode != "none":
            tracks = list(choose_tracks(window, self.face))
        n_frames, strategy = cfg.sampling.frames_per_clip, cfg.sampling.test
        return [
            (t, align_track(window, t, cfg.preprocess, n_frames, strategy, rng)) for t in tracks
        ]

    def _score_batch(self, batch: list[tuple[dict, AlignedWindow]]) -> pd.DataFrame:
        """Rows of one batch of aligned windows (their keys, then the AU columns)."""
        self.peak_windows = max(self.peak_windows, len(batch))
        clips = torch.stack([to_clip_tensor(aligned.frames) for _, aligned in batch])
        outputs = self._outputs(clips)
        frame = pd.DataFrame([keys for keys, _ in batch])
        explained: dict[str, Any] | None = {} if self.explain else None
        return frame.assign(**self._output_columns(outputs, explained=explained))

    def predict_recording(self, path: Path, kind: str, clip: str | None = None) -> pd.DataFrame:
        """One row per window and face: keys, coverage, face box, AU columns.

        Keys (``clip``: the given name, default the file's stem or the folder's name):
        ``source, clip, face_id, frame_start, frame_end, time_start, time_end``; frame
        numbers are the files' numbers for frame folders and 0-based indices for videos; times are
        seconds from the recording's first frame. Coverage: ``face_frames`` (frames showing the
        face / window length) and ``face_confidence``; ``face_x, face_y, face_w, face_h`` is the
        median face box in source pixels. Every frame is decoded and landmarked once; windows
        stream through the model ``batch_size`` at a time.
        """
        reader = RecordingReader(path, kind, self.fps)
        fps = reader.fps
        window, stride = self.window_for(fps)
        self._describe_window(path, fps, window, stride)
        rng = np.random.default_rng(0)
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
                self._fail(path, "no face found", f"frames {first}-{last}", False, **span)
            for face_id, aligned in faces:
                if aligned.face_frames < self.min_face:
                    reason = f"face on fewer than {self.min_face:.0%} of the frames"
                    failed[reason] += 1
                    detail = f"{reason} ({aligned.face_frames:.0%})"
                    self._fail(
                        path, detail, f"frames {first}-{last}", False, face_id=face_id, **span
                    )
                    continue
                box = aligned.box or (np.nan,) * 4
                keys = {"source": str(path), "face_id": face_id, **span}
                keys |= {"face_frames": aligned.face_frames, "face_confidence": aligned.confidence}
                keys |= dict(zip(("face_x", "face_y", "face_w", "face_h"), box, strict=True))
                batch.append((keys, aligned))
                if len(batch) >= self.batch_size:
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
        self.summary.append(
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

    def predict(self, path: Path, clip: str | None = None) -> pd.DataFrame:
        """Predictions for one input (``clip``: a recording's name, see :func:`recording_names`).

        A failure is recorded and gives an empty frame.
        """
        done = len(self.summary)
        try:
            kind = input_kind(path)
            if kind == "manifest":
                return self.predict_manifest(path)
            return self.predict_recording(path, kind, clip)
        except OutputError:
            raise
        except (ClipReadError, ValueError, RuntimeError) as exc:
            self._fail(path, str(exc))
            if len(self.summary) == done:
                self.summary.append({"input": str(path), "reason": str(exc)})
            return pd.DataFrame()


@dataclass
class PredictionRun:
    """What :func:`predict_inputs` wrote and how it went.

    Attributes:
        out: The predictions CSV.
        failures: The failure table beside it.
        summary: One row per input: ``input, frames, windows, failed_windows, reason``.
        status: 0 when every input gave rows, :data:`EXIT_SOME_FAILED` when some gave none,
            :data:`EXIT_ALL_FAILED` when none did.
        precision: The precision the model ran in (``fp32`` or ``bf16``).
    """

    out: Path
    failures: Path
    summary: pd.DataFrame
    status: int
    precision: str = "fp32"


def predict_inputs(
    model_dir: Path,
    inputs: list[Path],
    out: Path,
    window: int | None = None,
    stride: int | None = None,
    fps: float | None = None,
    plot: bool = False,
    strict: bool = False,
    cache_dir: Path | None = None,
    overwrite: bool = False,
    face: str = "largest",
    min_face: float = 0.8,
    explain: bool = False,
    per_frame: bool = False,
    align: str | None = None,
    precision: str | None = None,
) -> PredictionRun:
    """Predict AUs for many inputs and write one CSV (plus ``failures.csv`` beside it).

    Everything is written under the folder of ``out`` (or into ``cache_dir`` when given), never
    where the model's config points. Arguments after ``out`` are :class:`Predictor`'s; ``plot``
    also writes ``<out stem>_<nn>_<recording>.png`` per recording (``nn``: input position);
    ``per_frame`` also writes ``<out stem>_per_frame.csv``: one row per frame of each recording,
    each AU's probability averaged over the windows covering it. ``precision`` (``auto``,
    ``fp32``, ``bf16``) replaces the one the model was trained in (the default); the one used is
    :attr:`PredictionRun.precision`.

    Raises:
        ValueError: See :func:`prediction_files`, or a bad option.
        OutputError: The output folder (checked first) or the cache cannot be written.
    """
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "cache"
    sources = input_paths(Path(model_dir), [Path(p) for p in inputs])
    out, failures = prediction_files(out, overwrite, sources, per_frame, cache)
    seed_everything(0)
    predictor = Predictor(
        load_deployed(model_dir, precision),
        window,
        stride,
        fps,
        strict,
        cache,
        face=face,
        min_face=min_face,
        explain=explain,
        align=align,
    )
    frames, produced = [], 0
    try:
        for index, (path, clip) in enumerate(zip(inputs, recording_names(inputs), strict=True)):
            frame = predictor.predict(Path(path), clip)
            if frame.empty:
                continue
            produced += 1
            frames.append(frame)
            if plot and "time_start" in frame:
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).name)
                png = out.with_name(f"{out.stem}_{index:02d}_{name}.png")
                gaps = pd.DataFrame(predictor.failures, columns=FAILURE_COLUMNS)
                gaps = gaps[gaps["input"] == str(path)]
                plot_recording(frame, predictor.deployed.aus, png, gaps)
    finally:
        predictor.close()
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    atomic_write_csv(out, _ordered(table, predictor.deployed.aus))
    if per_frame:
        frames_table = per_frame_table(table, predictor.deployed.aus)
        atomic_write_csv(per_frame_path(out), _integers(frames_table))
    failed = _integers(pd.DataFrame(predictor.failures, columns=FAILURE_COLUMNS))
    atomic_write_csv(failures, failed)
    status = 0
    if produced < len(inputs):
        status = EXIT_SOME_FAILED if produced else EXIT_ALL_FAILED
    summary = _integers(pd.DataFrame(predictor.summary, columns=SUMMARY_COLUMNS))
    return PredictionRun(out, failures, summary, status, predictor.deployed.model.precision)


def _integers(table: pd.DataFrame) -> pd.DataFrame:
    """Integer-valued columns as nullable integers (empty cells where a kind of row has none)."""
    names = [*INT_COLUMNS, "frame", "frames", "windows", "failed_windows"]
    return table.astype({c: "Int64" for c in names if c in table.columns})


def _ordered(table: pd.DataFrame, aus: list[int]) -> pd.DataFrame:
    """Keys, coverage, face box, ``AUxx_prob, AUxx_pred`` (``AUxx_true``), then answers."""
    keys = ["source", "dataset", "subject", "clip", "onset", "offset", "face_id", "frame_start"]
    keys += ["frame_end", "time_start", "time_end", "face_frames", "face_confidence"]
    keys += ["face_x", "face_y", "face_w", "face_h"]
    if table.empty:
        cols = [au_column(au, kind) for au in aus for kind in ("prob", "pred")]
        return pd.DataFrame(columns=["source", "clip", *cols])
    kinds = ("prob", "pred", "true")
    au_cols = [au_column(au, k) for au in aus for k in kinds if au_column(au, k) in table]
    answers = [c for c in table.columns if c.startswith(ANSWER_PREFIX)]
    answers += [c for c in ("au_raw", "aus", "explanation") if c in table.columns]
    return _integers(table[[k for k in keys if k in table.columns] + au_cols + answers])
