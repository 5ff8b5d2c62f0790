"""The options of ``au-llm predict``, typed and validated once (the CLI builds them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from au_llm.config_checks import AlignMode, FacePolicy, Precision, choices


@dataclass(frozen=True)
class PredictConfig:
    """How a deployed model is applied to inputs.

    Attributes:
        window: Sliding-window length in frames, at least 2 (default: the model's median
            training clip duration at the recording's mean frame rate).
        stride: Window stride in frames, at least 1 (default: half the window).
        max_window_gib: Most memory one window's frames may take at the recording's full
            resolution, in GiB; a recording whose window would take more fails, naming the
            longest window that fits.
        fps: Frame rate of frame folders without an ``fps.txt`` and of videos that report none
            (videos use their own); a folder without either fails.
        face: Face policy for recordings: ``largest``, ``all`` (one stream per tracked face) or
            ``center`` (see :mod:`au_llm.preprocess.tracks`).
        min_face: Least fraction of a window's frames showing its face; windows below go to the
            failures with their span.
        batch_size: Clips per model batch (default: the model's); at most one batch of aligned
            windows is held at a time.
        explain: Add an ``explanation`` column (greedy, deterministic); the model must have been
            trained with ``model.explain: true``.
        align: Alignment mode replacing the model's (``clip``, ``frame`` for recordings with
            head motion, ``none``); None keeps the model's.
        precision: ``auto``, ``fp32`` or ``bf16`` replacing the one the model was trained in;
            None keeps it.
        constrained: Constrained decoding of text answers (default: the model's
            ``generation.constrained``).
        strict: Raise on the first input or window that fails instead of reporting it.
        plot: Also write a PNG of AU probability over time per recording.
        per_frame: Also write a per-frame table (each AU's probability averaged over the windows
            covering a frame).
        overwrite: Replace existing outputs.
        cache_dir: Aligned-clip cache of manifest inputs (default: ``cache`` beside the output).

    Raises:
        ValueError: An option is out of range or not one of its choices (named as on the
            command line).
    """

    window: int | None = None
    stride: int | None = None
    max_window_gib: float = 4.0
    fps: float | None = None
    face: FacePolicy = "largest"
    min_face: float = 0.8
    batch_size: int | None = None
    explain: bool = False
    align: AlignMode | None = None
    precision: Precision | None = None
    constrained: bool | None = None
    strict: bool = False
    plot: bool = False
    per_frame: bool = False
    overwrite: bool = False
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 2:
            raise ValueError(f"--window {self.window}: expected at least 2 frames")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"--stride {self.stride}: expected at least 1 frame")
        if not (math.isfinite(self.max_window_gib) and self.max_window_gib > 0):
            raise ValueError(f"--max-window-gib {self.max_window_gib:g}: expected a positive size")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps {self.fps:g}: expected a positive frame rate")
        _check("--face", self.face, FacePolicy)
        if not 0 <= self.min_face <= 1:
            raise ValueError(f"--min-face {self.min_face}: expected a fraction in 0..1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: expected at least 1")
        if self.align is not None:
            _check("--align (preprocess.align)", self.align, AlignMode)
        if self.precision is not None:
            _check("--precision", self.precision, Precision)


def _check(option: str, value: str, literal: object) -> None:
    """Raise ValueError naming ``option`` unless ``value`` is one of ``literal``'s values."""
    if value not in choices(literal):
        raise ValueError(f"{option} {value}: expected one of {', '.join(choices(literal))}")
