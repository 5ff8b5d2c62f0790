"""The spotter's settings: one typed, validated section, read from YAML like the experiment's.

Durations are in seconds and become frames at each recording's own frame rate
(:func:`frames_at`), so one setting serves a 30 fps and a 200 fps recording alike.
``load_spot_config("spot.yaml", ["micro.p=0.4"])`` returns a validated :class:`SpotConfig`; a
file holds the keys of the section at its top level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from au_llm.config_checks import ConfigError, check_choice, check_positive
from au_llm.config_yaml import blame_errors, merge_overrides, read_yaml
from au_llm.spot.intervals import KINDS, MICRO_MAX_SECONDS
from au_llm.spot.motion import FACE_REGIONS, MOTION_FEATURES

DEFAULT_REGIONS = ("brow_right", "brow_left", "mouth", "chin")
"""The regions scored by default: the eyes are left out (blinks move them most)."""


def frames_at(seconds: float, fps: float) -> int:
    """``seconds`` as a whole number of frames at ``fps``, at least 1."""
    return max(1, round(seconds * fps))


@dataclass
class PeakRuleConfig:
    """The peak rule for one kind of expression (see :mod:`au_llm.spot.peaks`).

    Attributes:
        k_seconds: The feature's distance to the two neighbour frames, the least distance
            between two peaks, and half the spotted interval (which lasts ``2k + 1`` frames).
        p: Threshold between the recording's mean score (0) and its maximum (1).
        smooth_seconds: Moving average applied before the threshold (0: none).
        contrast: Subtract the mean of the score ``k`` frames before and after (MEGC's
            contrasted difference).
    """

    k_seconds: float = 0.1
    p: float = 0.3
    smooth_seconds: float = 0.0
    contrast: bool = True

    def check(self, name: str) -> None:
        """Raise :class:`ConfigError` naming ``spot.<name>.<key>`` for a bad value."""
        check_positive(f"spot.{name}", "k_seconds", self.k_seconds)
        check_positive(f"spot.{name}", "smooth_seconds", self.smooth_seconds, allow_zero=True)
        if not 0 <= self.p <= 1:
            raise ConfigError(f"spot.{name}.p = {self.p}: expected a fraction in 0..1")


@dataclass
class SpotConfig:
    """How expressions are spotted in a recording.

    Attributes:
        feature: How a region's movement is measured: ``diff`` (aligned-frame differences),
            ``farneback`` or ``dis`` (dense optical flow); see :mod:`au_llm.spot.motion`.
        regions: The face regions scored (``brow_right``, ``brow_left``, ``eye_right``,
            ``eye_left``, ``mouth``, ``chin``); the eyes are left out by default, as blinks move
            them most.
        top_regions: A frame's score is the mean of its most moving regions, this many.
        size: Side of the aligned gray crop the movement is measured on, in pixels.
        margin: Border around the face template, as a fraction of the side.
        landmark_seconds: Landmark one frame every this many seconds and interpolate the
            alignment between them (0: every frame); landmarking is the slowest step. The default
            landmarks every frame up to 30 fps, every 7th at 200 fps.
        align_smooth_seconds: Moving median of the per-frame alignment (0: none); it drops the
            landmarks' excursions shorter than half of it (blinks pull the eye corners).
        kinds: The kinds spotted, each with its peak rule (``micro``, ``macro``).
        micro: The peak rule of micro-expressions.
        macro: The peak rule of macro-expressions.
        micro_max_seconds: The longest micro-expression: a spotted interval lasting at most this
            is ``micro``, a longer one ``macro`` (at the recording's own frame rate).
        drop_nested: Drop a spotted micro interval whose apex lies inside a spotted macro
            interval (the two rules fire on the same movement).
        buffer_mb: Memory for decoded frames awaiting alignment, in MiB.
    """

    feature: str = "farneback"
    regions: list[str] = field(default_factory=lambda: list(DEFAULT_REGIONS))
    top_regions: int = 1
    size: int = 64
    margin: float = 0.1
    landmark_seconds: float = 0.033
    align_smooth_seconds: float = 0.3
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    micro: PeakRuleConfig = field(default_factory=lambda: PeakRuleConfig(k_seconds=0.167, p=0.4))
    macro: PeakRuleConfig = field(default_factory=lambda: PeakRuleConfig(k_seconds=0.8, p=0.5))
    micro_max_seconds: float = MICRO_MAX_SECONDS
    drop_nested: bool = True
    buffer_mb: int = 128

    def __post_init__(self) -> None:
        check_choice("spot", "feature", self.feature, MOTION_FEATURES)
        if not self.regions:
            raise ConfigError("spot.regions: expected at least one region")
        for region in self.regions:
            check_choice("spot", "regions", region, FACE_REGIONS)
        if not 1 <= self.top_regions <= len(self.regions):
            raise ConfigError(
                f"spot.top_regions = {self.top_regions}: expected 1..{len(self.regions)} "
                "(the number of regions)"
            )
        if not 16 <= self.size <= 256:
            raise ConfigError(f"spot.size = {self.size}: expected 16..256 pixels")
        if not 0 <= self.margin < 0.5:
            raise ConfigError(f"spot.margin = {self.margin}: expected 0 <= margin < 0.5")
        check_positive("spot", "landmark_seconds", self.landmark_seconds, allow_zero=True)
        check_positive("spot", "align_smooth_seconds", self.align_smooth_seconds, allow_zero=True)
        if not self.kinds:
            raise ConfigError("spot.kinds: expected micro, macro or both")
        for kind in self.kinds:
            check_choice("spot", "kinds", kind, KINDS)
        self.micro.check("micro")
        self.macro.check("macro")
        check_positive("spot", "micro_max_seconds", self.micro_max_seconds)
        check_positive("spot", "buffer_mb", self.buffer_mb)

    def rule(self, kind: str) -> PeakRuleConfig:
        """The peak rule of ``kind``."""
        return self.micro if kind == "micro" else self.macro


def load_spot_config(path: str | Path | None, overrides: list[str] | None = None) -> SpotConfig:
    """The spotter's settings from a YAML file (the section's keys at the top) and overrides.

    Args:
        path: YAML file, or None for the defaults.
        overrides: Dotted ``key=value`` overrides such as ``["micro.p=0.4"]``.

    Raises:
        ConfigError: An unreadable file, an unknown key, a wrong type or a bad value; the message
            names the file (or "command line") and the key.
    """
    merged = OmegaConf.structured(SpotConfig)
    source = "defaults"
    if path is not None:
        source = str(path)
        with blame_errors(source):
            merged = OmegaConf.merge(merged, read_yaml(Path(path)))
            OmegaConf.to_object(merged)
    if overrides:
        source = "command line"
        merged = merge_overrides(merged, overrides)
    with blame_errors(source):
        cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, SpotConfig)
    return cfg
