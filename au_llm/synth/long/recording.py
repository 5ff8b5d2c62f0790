"""One synthetic long recording and what happens in it: expressions, blinks, head motion.

Pure data (:func:`~au_llm.synth.long.plan.plan_long_recordings` fills it in); the frame naming of
each dataset is here too. Expressions, blinks and turns never overlap their own kind, so the
event at a frame is found by bisection: a frame of an hour-long recording costs the same as one
of a short one.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from au_llm.synth.plan import AUAction


@dataclass(frozen=True)
class LongExpression:
    """One expression embedded in a long recording.

    Attributes:
        onset: First frame number of the movement.
        apex: Frame number of the peak (onset < apex < offset).
        offset: Last frame number.
        kind: ``micro`` or ``macro``.
        name: The expression's name in the annotation (``006_1_3``, ``disgust1_2``; ``""`` for
            CAS(ME)^3, whose rows name only the recording).
        actions: The animated AUs with their side and intensity.
        aus: AU set, sorted.
        au_cell: The AU cell as written (an int for one plain AU, else a string).
        emotion: The emotion written for it (style's vocabulary, ``""`` where the file has none).
        objective_class: The objective class written for it (CAS(ME)^3's micro-expressions).
    """

    onset: int
    apex: int
    offset: int
    kind: str
    name: str
    actions: tuple[AUAction, ...]
    aus: tuple[int, ...]
    au_cell: int | str
    emotion: str
    objective_class: int

    @property
    def n_frames(self) -> int:
        """Frames onset..offset."""
        return self.offset - self.onset + 1


@dataclass(frozen=True)
class Blink:
    """An eye blink: the lids close from ``start`` to the middle frame and open until ``end``."""

    start: int
    end: int
    depth: float  # 1 = the full blink field

    def level(self, frame: int) -> float:
        """Closure in [0, 1] at ``frame`` (0 outside the blink)."""
        if frame <= self.start or frame >= self.end:
            return 0.0
        phase = (frame - self.start) / (self.end - self.start)
        return self.depth * 0.5 * (1.0 - math.cos(2.0 * math.pi * phase))


@dataclass(frozen=True)
class HeadTurn:
    """A quick head turn: the head moves away over ``ramp`` frames, holds, and comes back.

    Attributes:
        start: First frame of the movement.
        ramp: Frames of the turn away (and of the return).
        hold: Frames held at the turned pose.
        shift: Head shift ``(x, y)`` at the turned pose, in output pixels (at size 1).
        roll: Head roll at the turned pose, in degrees.
    """

    start: int
    ramp: int
    hold: int
    shift: tuple[float, float]
    roll: float

    @property
    def end(self) -> int:
        """Last frame of the movement."""
        return self.start + 2 * self.ramp + self.hold

    def level(self, frame: int) -> float:
        """How far the head is turned at ``frame``, in [0, 1]."""
        if frame <= self.start or frame >= self.end:
            return 0.0
        into = frame - self.start
        if into >= self.ramp + self.hold:
            into = self.end - frame
        if into >= self.ramp:
            return 1.0
        return 0.5 * (1.0 - math.cos(math.pi * into / self.ramp))


@dataclass(frozen=True)
class LongRecording:
    """One synthetic long recording, as written.

    Attributes:
        style: ``samm-lv``, ``casme-sq-lv`` or ``casme3-lv``.
        seed: Seed the dataset was written with.
        difficulty: ``normal`` or ``hard``.
        size: Factor on the style's image size (1: 680x363 SAMM-LV, 640x480 CAS(ME)^2 / ^3).
        subject: Subject id as the manifest builder names it (``006``, ``s15``, ``spNO.3``).
        subject_number: The subject's number (6, 15, 3).
        subject_index: Position of the subject among the generated ones (selects its look).
        recording: The recording's id within the subject (``006_1``,
            ``15_0101disgustingteeth``, ``a``): the name of its frames folder.
        index: Position of the recording within its subject (selects its framing).
        fps: Frame rate.
        first_frame: Number of the first frame file.
        n_frames: Number of frames.
        expressions: Embedded expressions, in time order.
        blinks: Blinks, in time order (all outside the expressions).
        turns: Quick head turns, in time order (all outside the expressions).
        drift: Slow head drift: per axis (x, y in output pixels at size 1; roll in degrees) the
            ``(amplitude, period in seconds, phase)`` of its sinusoids.
        frames_dir: Folder of the frames (relative to the frames root until written).
    """

    style: str
    seed: int
    difficulty: str
    size: float
    subject: str
    subject_number: int
    subject_index: int
    recording: str
    index: int
    fps: float
    first_frame: int
    n_frames: int
    expressions: tuple[LongExpression, ...]
    blinks: tuple[Blink, ...]
    turns: tuple[HeadTurn, ...]
    drift: tuple[tuple[tuple[float, float, float], ...], ...]
    frames_dir: Path

    @property
    def last_frame(self) -> int:
        """Number of the last frame file."""
        return self.first_frame + self.n_frames - 1

    @property
    def frame_numbers(self) -> range:
        """Every frame number, first to last."""
        return range(self.first_frame, self.last_frame + 1)

    def frame_name(self, frame: int) -> str:
        """File name of frame ``frame`` in the dataset's naming.

        SAMM-LV: ``006_1_0001.jpg`` (4 digits, more when the recording needs them); CAS(ME)^2:
        ``img001.jpg`` (3 digits); CAS(ME)^3: ``0.jpg``.
        """
        if self.style == "samm-lv":
            digits = max(4, len(str(self.last_frame)))
            return f"{self.recording}_{frame:0{digits}d}.jpg"
        if self.style == "casme-sq-lv":
            return f"img{frame:03d}.jpg"
        return f"{frame}.jpg"

    def frame_path(self, frame: int) -> Path:
        """Path of the JPEG file of frame ``frame``."""
        return self.frames_dir / self.frame_name(frame)

    @cached_property
    def _starts(self) -> tuple[list[int], list[int], list[int]]:
        """First frames of the expressions, the blinks and the turns (each in time order)."""
        return (
            [e.onset for e in self.expressions],
            [b.start for b in self.blinks],
            [t.start for t in self.turns],
        )

    def expression_at(self, frame: int) -> LongExpression | None:
        """The expression whose onset..offset holds ``frame``, or None."""
        k = bisect.bisect_right(self._starts[0], frame) - 1
        return self.expressions[k] if k >= 0 and frame <= self.expressions[k].offset else None

    def blink_at(self, frame: int) -> Blink | None:
        """The blink under way at ``frame``, or None."""
        k = bisect.bisect_right(self._starts[1], frame) - 1
        return self.blinks[k] if k >= 0 and frame <= self.blinks[k].end else None

    def head_pose(self, frame: int) -> tuple[float, float, float]:
        """Head shift ``(x, y)`` in output pixels at size 1 and roll in degrees at ``frame``."""
        seconds = (frame - self.first_frame) / self.fps
        pose = [
            sum(a * math.sin(2.0 * math.pi * seconds / period + phase) for a, period, phase in axis)
            for axis in self.drift
        ]
        k = bisect.bisect_right(self._starts[2], frame) - 1
        if k >= 0:
            turn = self.turns[k]
            level = turn.level(frame)
            pose[0] += level * turn.shift[0]
            pose[1] += level * turn.shift[1]
            pose[2] += level * turn.roll
        return pose[0], pose[1], pose[2]
