"""Frames of a synthetic long recording, rendered one at a time (bounded memory at any length).

The face is the clip renderer's (:mod:`au_llm.synth.render`: the subject's look, framing, AU
displacement fields, sensor noise); on top of it a recording has head motion (slow drift, quick
turns, sub-pixel jitter: a similarity transform of the face maps per frame) and eye blinks (a
displacement field of the lids). Only the maps of the current expression are kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2  # before anything that may import decord (see the project notes)
import numpy as np

from au_llm.synth.long.plan import RNG_FRAME, long_look_style, long_seed
from au_llm.synth.long.recording import LongExpression, LongRecording
from au_llm.synth.plan import RNG_CLIP, difficulty_spec, rng_for, style_spec
from au_llm.synth.render import actions_field, activation, add_noise, blink_field, frame_face


class LongRenderer:
    """Renders the frames of one long recording (the neutral face's maps computed once)."""

    def __init__(self, recording: LongRecording) -> None:
        base = long_look_style(recording.style)
        spec = style_spec(base)
        level = difficulty_spec(recording.difficulty)
        self.seed = long_seed(recording.style, recording.seed)
        self.code = spec.code
        rng = rng_for(self.seed, spec.code, recording.subject_index, recording.index, RNG_CLIP)
        shift = rng.uniform(-level.pose_shift, level.pose_shift, size=2) * spec.width
        self.framing = frame_face(
            base,
            self.seed,
            recording.subject_index,
            shift=shift,
            roll=math.radians(rng.uniform(-level.pose_roll_deg, level.pose_roll_deg)),
            zoom=rng.uniform(0.98, 1.02),
            brightness=rng.uniform(0.95, 1.05),
            size=recording.size,
        )
        self.maps = np.ascontiguousarray(np.dstack([self.framing.map_x, self.framing.map_y]))
        self.blink = self.framing.motion(blink_field())
        self.noise_sigma = spec.noise_sigma * level.noise_factor
        self.jitter_sigma = level.jitter_step
        self.recording = recording
        self._current: tuple[LongExpression, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a frame: ``(H, W, 3)`` (RGB styles) or ``(H, W)`` (grayscale)."""
        return self.maps.shape[:2] + self.framing.image.shape[2:]

    def _motion(self, expression: LongExpression) -> np.ndarray:
        """The expression's apex motion ``[H, W, 2]`` (kept for the current expression only)."""
        if self._current is None or self._current[0] is not expression:
            self._current = (expression, self.framing.motion(actions_field(expression.actions)))
        return self._current[1]

    def face_maps(self, frame: int) -> np.ndarray:
        """Source maps ``[H, W, 2]`` of the face at ``frame`` before head motion."""
        maps = self.maps
        expression = self.recording.expression_at(frame)
        if expression is not None:
            level = activation(expression.onset, expression.apex, expression.offset, frame)
            if level:
                maps = maps - np.float32(level) * self._motion(expression)
        blink = self.recording.blink_at(frame)
        closure = blink.level(frame) if blink is not None else 0.0
        if closure:
            maps = maps - np.float32(closure) * self.blink
        return maps

    def render(self, frame: int, *, noise: bool = True, head: bool = True) -> np.ndarray:
        """One frame, exactly as :func:`~au_llm.synth.long.write_long_style` encodes it.

        Args:
            frame: Frame number, first..last frame of the recording.
            noise: Add the per-frame sensor noise.
            head: Apply the head motion (drift, turns, jitter).

        Returns:
            ``[H, W, 3]`` uint8 RGB (CAS(ME)^2, CAS(ME)^3) or ``[H, W]`` uint8 (SAMM-LV).

        Raises:
            ValueError: ``frame`` is outside the recording.
        """
        recording = self.recording
        if not recording.first_frame <= frame <= recording.last_frame:
            raise ValueError(
                f"recording {recording.subject}/{recording.recording}: frame {frame} outside "
                f"{recording.first_frame}..{recording.last_frame}"
            )
        rng = rng_for(
            self.seed, self.code, recording.subject_index, recording.index, frame, RNG_FRAME
        )
        jitter = rng.normal(0.0, self.jitter_sigma * recording.size, size=2)
        maps = self.face_maps(frame)
        if head:
            dx, dy, roll = recording.head_pose(frame)
            maps = self._moved(
                maps, dx * recording.size + jitter[0], dy * recording.size + jitter[1], roll
            )
        out = cv2.remap(
            self.framing.image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        return add_noise(out, self.noise_sigma, rng) if noise else out

    def _moved(self, maps: np.ndarray, dx: float, dy: float, roll: float) -> np.ndarray:
        """The maps of a head shifted by ``(dx, dy)`` output pixels and rolled ``roll`` degrees.

        Output pixel ``p`` shows what the still head showed at ``R(-roll) (p - c - d) + c``
        (``c``: the face centre, ``d``: the shift).
        """
        cx, cy = self.framing.centre
        angle = math.radians(roll)
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, sin], [-sin, cos]])
        centre = np.array([cx, cy])
        offset = centre - rotation @ (centre + np.array([dx, dy]))
        matrix = np.hstack([rotation, offset[:, None]]).astype(np.float64)
        height, width = maps.shape[:2]
        return cv2.warpAffine(
            maps,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )


def iter_long_frames(
    recording: LongRecording, *, noise: bool = True, head: bool = True
) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame of a recording in order, as ``(frame number, image)``, one at a time.

    Args:
        recording: A planned recording.
        noise: Add the per-frame sensor noise.
        head: Apply the head motion.

    Yields:
        ``(frame, image)``: image as :meth:`LongRenderer.render` returns it.
    """
    renderer = LongRenderer(recording)
    for frame in recording.frame_numbers:
        yield frame, renderer.render(frame, noise=noise, head=head)
