"""Sliding windows over a whole recording (a video file or a frame folder) for prediction.

A recording is read once, front to back (:class:`RecordingReader`); every frame is landmarked
once (:func:`au_llm.preprocess.tracks.track_frames`) and windows of ``window`` frames every
``stride`` frames are cut from a buffer of the last ``window`` frames (:func:`stream_windows`), so
memory is bounded by the window, not the recording. Windows follow :func:`window_starts` over the
frames actually decoded: a video that reports more frames than it decodes ends where decoding
ends, and no frame is ever repeated to fill a window. :func:`align_track` aligns one face track of
a window like a training clip, warping only the frames the model samples.

Every frame has its own time (:attr:`RecordingReader.times`): a video's presentation timestamps,
so recordings with a variable frame rate (phones, screen recorders) get true times, and a frame
folder's ``number / fps``. A window's frames are held at full resolution, at most
``--max-window-gib`` of them (:func:`check_window_memory`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from au_llm.config import PreprocessConfig
from au_llm.data.fields import ClipReadError
from au_llm.data.frames import index_frames
from au_llm.preprocess.align import (
    centre_crop_transform,
    landmark_transform,
    smooth_transforms,
    warp,
)
from au_llm.preprocess.readers import call_decord, read_image_file
from au_llm.preprocess.sampling import sample_indices
from au_llm.preprocess.tracks import FrameRecord

log = logging.getLogger(__name__)

FPS_SIDECAR = "fps.txt"
GIB = 2**30
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v"}


def check_window(window: int, stride: int) -> None:
    """Raise ValueError unless ``window >= 2`` and ``stride >= 1``."""
    if window < 2 or stride < 1:
        raise ValueError(f"window = {window}, stride = {stride}: expected window >= 2, stride >= 1")


def check_window_memory(window: int, frames: int, image: np.ndarray, limit_gib: float) -> None:
    """Refuse a window whose frames, held at full resolution, would take over ``limit_gib``.

    Args:
        window: Window length in frames.
        frames: Frames the recording holds (a longer window holds the whole recording).
        image: ``[H, W, 3]`` uint8, one decoded frame of the recording.
        limit_gib: Most memory the window's frames may take, in GiB (``--max-window-gib``).

    Raises:
        ValueError: Naming the frames held, their size and memory, and the longest window that
            fits.
    """
    held = min(window, frames)
    need, limit = held * image.nbytes, limit_gib * GIB
    if need > limit:
        height, width = image.shape[:2]
        fits = int(limit // image.nbytes)
        shorter = f"pass --window {fits} or less, or " if fits >= 2 else "pass "
        raise ValueError(
            f"a window of {window} frames holds {held} frames of {width}x{height} at once "
            f"({need / GIB:.2f} GiB), over --max-window-gib {limit_gib:g}; {shorter}a larger "
            "--max-window-gib"
        )


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Start positions of sliding windows over a recording of ``n_frames`` frames.

    Windows start at 0, stride, 2*stride, ... while they fit; when the last one stops short of the
    recording's end, one more window ending on the last frame is added, so every frame is covered.
    A recording shorter than ``window`` gives a single window over all of it.

    Raises:
        ValueError: If ``window < 2``, ``stride < 1`` or the recording is empty.
    """
    check_window(window, stride)
    if n_frames < 1:
        raise ValueError("the recording has no frame")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def recording_name(path: Path) -> str:
    """A recording's own name: a video's file stem, a frame folder's name."""
    path = Path(path)
    return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name


def recording_names(paths: list[Path]) -> list[str]:
    """One distinct ``clip`` name per input, in order.

    A name is the recording's own (:func:`recording_name`) when no other input shares it, else
    it is prefixed with as many parent folders as make it distinct (``day1/rec``, ``day2/rec``);
    the same path given twice gets ``#<position>`` after its second occurrence.
    """
    paths = [Path(p) for p in paths]
    names = {p: recording_name(p) for p in paths}
    for depth in range(1, max(len(p.parts) for p in paths) if paths else 1):
        counts = Counter(names.values())
        shared = [p for p, name in names.items() if counts[name] > 1]
        if not shared:
            break
        for p in shared:
            parents = [part for part in p.parts[-depth - 1 : -1] if part != p.anchor]
            names[p] = "/".join([*parents, recording_name(p)])
    seen: set[str] = set()
    unique = []
    for position, p in enumerate(paths):
        unique.append(names[p] if names[p] not in seen else f"{names[p]}#{position}")
        seen.add(names[p])
    return unique


def sidecar_fps(folder: Path) -> float | None:
    """Frame rate written in ``fps.txt`` of a frame folder (None without the file).

    Raises:
        ClipReadError: The file does not hold one positive number.
    """
    path = Path(folder) / FPS_SIDECAR
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        fps = float(text)
    except ValueError:
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise ClipReadError(f"{path}: expected one positive frame rate, got {text!r}", path)
    return fps


def usable_timestamps(stamps: np.ndarray) -> np.ndarray | None:
    """A video's frame timestamps ``[N]`` (seconds) as float64, or None when unusable.

    Unusable: fewer than two, not finite, decreasing, or all equal.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    if len(stamps) < 2 or not np.isfinite(stamps).all():
        return None
    if (np.diff(stamps) < 0).any() or stamps[-1] <= stamps[0]:
        return None
    return stamps


def variable_rate(times: np.ndarray) -> bool:
    """Whether frame times ``[N]`` (seconds, increasing) depart from a constant rate.

    True when some frame lies more than half a mean frame interval from where the mean rate
    would put it (times computed from that rate would be wrong by more than half a frame).
    Timestamps rounded to a container's time base (1 ms in Matroska) stay well inside that
    margin up to several hundred frames per second.
    """
    if len(times) < 3:
        return False
    span = float(times[-1] - times[0])
    steady = np.linspace(times[0], times[-1], len(times))
    return bool(np.abs(times - steady).max() > 0.5 * span / (len(times) - 1))


class RecordingReader:
    """Every frame of a recording, decoded once in order, with each frame's own time.

    Args:
        path: A frame folder (``kind == "frames"``) or a video file (``"video"``).
        kind: ``frames`` or ``video``.
        fps: Frame rate to use when the recording has none of its own (``--fps``).

    Attributes:
        reported: Frames the folder holds or the video's header reports.
        numbers: ``[reported]`` int64 frame numbers in order (file numbers of a folder, 0-based
            indices of a video).
        times: ``[reported]`` float64 seconds of each frame from the recording's first frame: a
            video's own presentation timestamps (variable frame rates included), a folder's
            ``(number - first number) / fps``.
        fps: The mean frame rate: a video's from its timestamps (its header's rate when they
            are unusable or it has one frame), else a folder's ``fps.txt``, else ``fps``.
        decoded: Frames decoded so far.
        stop_reason: Why decoding stopped before ``reported`` frames ("" otherwise).

    Raises:
        ClipReadError: The recording cannot be opened, has no frames, or has no frame rate.
    """

    def __init__(self, path: Path, kind: str, fps: float | None) -> None:
        self.path, self.kind = Path(path), kind
        self.decoded, self.stop_reason = 0, ""
        stamps = None
        if kind == "frames":
            self._files = index_frames(self.path)
            self.reported = len(self._files)
            self.numbers = np.array(sorted(self._files), dtype=np.int64)
            own = sidecar_fps(self.path)
            hint = f"pass --fps or write the rate into {self.path / FPS_SIDECAR}"
        else:
            import decord

            self._reader = call_decord(
                lambda: decord.VideoReader(str(self.path), ctx=decord.cpu(0)),
                "cannot open the video",
                self.path,
            )
            self.reported = len(self._reader)
            self.numbers = np.arange(self.reported, dtype=np.int64)
            own = float(self._reader.get_avg_fps()) or None
            hint = "the video reports no frame rate; pass --fps"
            stamps = usable_timestamps(self._timestamps())
        if self.reported < 1:
            raise ClipReadError("no frames", self.path)
        if stamps is not None:
            self.times = np.round(stamps - stamps[0], 6)  # decord's are float32: whole µs
            self.fps = (self.reported - 1) / float(self.times[-1])
        else:
            rate = own or fps
            if not rate:
                raise ClipReadError(f"frame rate unknown: {hint}", self.path)
            if kind == "video" and self.reported > 1:
                log.warning(
                    "%s: the frame timestamps are unusable; times follow the header's %g fps",
                    self.path,
                    rate,
                )
            self.fps = float(rate)
            self.times = (self.numbers - self.numbers[0]) / self.fps

    def _timestamps(self) -> np.ndarray:
        """Start times (s) of the video's frames from its index; empty when unreadable."""
        try:
            stamps = call_decord(
                lambda: self._reader.get_frame_timestamp(range(self.reported)),
                "cannot read the frame timestamps",
                self.path,
            )
        except ClipReadError:
            return np.empty(0)
        return np.asarray(stamps).reshape(-1, 2)[:, 0]

    def time_of(self, number: int) -> float:
        """Seconds of frame ``number`` from the recording's first frame (see ``times``)."""
        return float(self.times[np.searchsorted(self.numbers, number)])

    def frame_times(self) -> pd.Series:
        """``times`` indexed by frame number (the per-frame table's time column)."""
        return pd.Series(self.times, index=self.numbers, name="time")

    @property
    def variable_rate(self) -> bool:
        """Whether the frame rate varies (see :func:`variable_rate`)."""
        return variable_rate(self.times)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(number, [H, W, 3] uint8 RGB)`` for every frame that decodes, in order."""
        if self.kind == "frames":
            yield from self._folder_frames()
        else:
            yield from self._video_frames()

    def _folder_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        size = None
        for number in self.numbers.tolist():
            path = self._files[number]
            image = read_image_file(path, number, f"frame {number} ({path.name})")
            if size is not None and image.shape != size:
                raise ClipReadError(
                    f"frame {number} ({path.name}): size {image.shape[1]}x{image.shape[0]}, "
                    f"expected {size[1]}x{size[0]} like the recording's other frames",
                    path,
                    number,
                )
            size = image.shape
            self.decoded += 1
            yield number, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _video_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        reader, self._reader = self._reader, None
        for number in range(self.reported):
            try:
                frame = call_decord(
                    lambda: reader.next().asnumpy(),
                    f"decoding stopped at frame {number}",
                    self.path,
                    number,
                )
            except StopIteration:
                self.stop_reason = f"the video reports {self.reported} frames, {number} decode"
                return
            except ClipReadError as exc:
                self.stop_reason = str(exc)
                return
            if frame.ndim == 2 or frame.shape[2] == 1:
                frame = np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
            self.decoded += 1
            yield number, np.ascontiguousarray(frame, dtype=np.uint8)


@dataclass
class StreamStats:
    """Memory bookkeeping of :func:`stream_windows`.

    Attributes:
        peak_frames: Most frames held in the buffer at once.
        frames: Frames consumed.
    """

    peak_frames: int = 0
    frames: int = 0


def stream_windows(
    records: Iterable[FrameRecord], window: int, stride: int, stats: StreamStats | None = None
) -> Iterator[list[FrameRecord]]:
    """Windows of consecutive records, as :func:`window_starts` places them on the frames read.

    Only the last ``window`` records are held. Each window is yielded as soon as its last frame
    is read; the closing window (ending on the last frame) once the records run out.
    """
    check_window(window, stride)
    stats = stats or StreamStats()
    buffer: deque[FrameRecord] = deque(maxlen=window)
    last_end = -1
    for position, record in enumerate(records):
        buffer.append(record)
        stats.frames = position + 1
        stats.peak_frames = max(stats.peak_frames, len(buffer))
        start = position - window + 1
        if start >= 0 and start % stride == 0:
            last_end = position
            yield list(buffer)
    if stats.frames and last_end < stats.frames - 1:
        yield list(buffer)


@dataclass
class AlignedWindow:
    """One face track of a window, aligned and sampled.

    Attributes:
        frames: ``[n_frames, size, size, C]`` uint8 sampled aligned frames.
        face_frames: Fraction of the window's frames showing the track's face (NaN for mode
            ``none``).
        confidence: Mean detection score of those faces (NaN when none or unscored).
        box: Median ``(x, y, w, h)`` face box in source pixels (None without a face).
        repeated: Whether the window has fewer frames than the model samples (frames repeat).
        onset: ``[size, size, C]`` uint8 the window's first frame aligned like the others, the
            onset of the optical flow (``preprocess.input`` ``flow`` or ``both``; else None).
    """

    frames: np.ndarray
    face_frames: float
    confidence: float
    box: tuple[float, float, float, float] | None
    repeated: bool
    onset: np.ndarray | None = None


def align_track(
    window: list[FrameRecord],
    track: int | None,
    cfg: PreprocessConfig,
    n_frames: int,
    strategy: str,
    rng: np.random.Generator,
) -> AlignedWindow:
    """Align face ``track`` of a window from its per-frame landmarks and sample ``n_frames``.

    ``clip`` mode uses the median landmarks of the track's first ``ref_frames`` faces in the
    window for every frame; ``frame`` mode smooths per-frame transforms (frames without the face
    interpolated); ``none`` (or ``track`` None) centre-crops. Only sampled frames are warped, and
    the window's first frame (the flow's onset) when ``cfg.input`` reads optical flow.
    """
    numbers = np.array([r.number for r in window], dtype=np.int64)
    idx = sample_indices(numbers, int(numbers[0]), None, int(numbers[-1]), n_frames, strategy, rng)
    faces = [r.face(track) for r in window] if track is not None else [None] * len(window)
    found = [f for f in faces if f is not None]
    height, width = window[0].image.shape[:2]
    transforms = np.repeat(centre_crop_transform(height, width, cfg.size)[None], len(window), 0)
    if found and cfg.align == "clip":
        reference = np.median(np.stack([f.points for f in found[: cfg.ref_frames]]), axis=0)
        transforms[:] = landmark_transform(reference, cfg.size, cfg.margin)
    elif found and cfg.align == "frame":
        valid = np.array([f is not None for f in faces])
        for i, face in enumerate(faces):
            if face is not None:
                transforms[i] = landmark_transform(face.points, cfg.size, cfg.margin)
        transforms = smooth_transforms(transforms, valid, cfg.smooth)
    frames = np.stack([warp(window[i].image, transforms[i], cfg.size, cfg.color) for i in idx])
    onset = None
    if cfg.input != "frames":
        onset = warp(window[0].image, transforms[0], cfg.size, cfg.color)
    scores = [f.confidence for f in found if not math.isnan(f.confidence)]
    box = tuple(float(v) for v in np.median([f.box for f in found], axis=0)) if found else None
    return AlignedWindow(
        frames=frames,
        face_frames=len(found) / len(window) if track is not None else math.nan,
        confidence=float(np.mean(scores)) if scores else math.nan,
        box=box,  # type: ignore[arg-type]
        repeated=len(window) < n_frames,
        onset=onset,
    )
