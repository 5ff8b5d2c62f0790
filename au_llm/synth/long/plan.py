"""The plan of synthetic long recordings: timelines of expressions, blinks and head motion, names.

Pixel-free: :func:`plan_long_recordings` decides what :mod:`.render` draws and :mod:`.write`
writes. A recording is a neutral face for most of its length; expressions sit at known,
never-overlapping intervals separated by neutral stretches; blinks and quick head turns happen
only in the neutral stretches (at least :data:`MARGIN_SECONDS` away from any expression), slow
head drift and per-frame jitter everywhere.

* **Micro-expressions** last 0.2-0.5 s from onset to offset (at most
  :data:`~au_llm.data.builders.long_formats.MICRO_MAX_SECONDS`: ``offset - onset + 1 <= 0.5 fps``
  frames), with the difficulty's clip amplitudes (the synthetic clips' AU movements).
* **Macro-expressions** last 0.6-3 s with twice those amplitudes.
* Kinds alternate within a recording (the first drawn at random); AU combinations (1-3 AUs) are
  dealt out evenly over every expression of the dataset from the rendering style's pool.

Timing, blinks and head motion come from random streams that never see the AUs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from au_llm.data.builders.long_formats import LONG_KINDS, MICRO_MAX_SECONDS, long_format
from au_llm.synth.long.recording import Blink, HeadTurn, LongExpression, LongRecording
from au_llm.synth.plan import (
    HARD_COMBOS,
    SAMM_SUBJECTS,
    AUAction,
    au_cell,
    dealt_combos,
    difficulty_spec,
    rng_for,
    style_spec,
)

LONG_STYLES = LONG_KINDS
MARGIN_SECONDS = 0.3
"""Least time between an expression and a blink or a quick head turn."""

# Random-stream purposes of the long recordings (distinct from the clip plan's 1-4).
RNG_LONG_LAYOUT, RNG_TIMELINE, RNG_HEAD, RNG_FRAME = 11, 12, 13, 14

# CAS(ME)^2's stimuli: the code (``0101`` written as the number 101 in ``naming rule2``), the
# folder name after the code, and the label expression names start with.
CASME_SQ_STIMULI: tuple[tuple[int, str, str], ...] = (
    (101, "disgustingteeth", "disgust1"),
    (102, "eatingworms", "disgust2"),
    (401, "girlcrashing", "anger1"),
    (402, "beatingpregnantwoman", "anger2"),
    (502, "funnyerrors", "happy1"),
    (503, "unnyfarting", "happy2"),
    (505, "funnyinnovations", "happy3"),
    (507, "climbingthewall", "happy4"),
    (508, "funnydunkey", "happy5"),
)
_CASME_SQ_SUBJECTS = (15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35)
_CASME_SQ_SUBJECTS += (36, 37, 38, 40)
_CASME3_RECORDINGS = tuple("abcdefghijklm")


@dataclass(frozen=True)
class _Look:
    """How one long style is drawn and named."""

    base: str  # rendering style of the faces: casme2 (RGB 640x480) or samm (gray 680x363)
    seed_offset: int  # so that each dataset shows other people than the clip datasets
    subjects: tuple[int, ...]  # the dataset's subject numbers
    max_recordings: int


_LOOKS = {
    "samm-lv": _Look("samm", 5009, SAMM_SUBJECTS, 99),
    "casme-sq-lv": _Look("casme2", 6011, _CASME_SQ_SUBJECTS, len(CASME_SQ_STIMULI)),
    "casme3-lv": _Look("casme2", 7013, tuple(range(1, 217)), len(_CASME3_RECORDINGS)),
}


@dataclass(frozen=True)
class _Motion:
    """Head motion and distractor rates of a difficulty level (lengths in face widths)."""

    drift: float  # amplitude of the slow drift (x; y is 3/4 of it)
    drift_roll: float  # degrees
    turns_per_minute: float
    turn_shift: tuple[float, float]
    turn_roll: tuple[float, float]  # degrees
    blink_gap: tuple[float, float]  # seconds between blinks


_MOTION = {
    "normal": _Motion(0.02, 0.8, 4.0, (0.05, 0.10), (2.0, 4.0), (2.0, 6.0)),
    "hard": _Motion(0.04, 1.5, 10.0, (0.08, 0.15), (3.0, 6.0), (1.5, 4.0)),
}


def long_look_style(style: str) -> str:
    """The rendering style (``casme2`` or ``samm``) of a long style; ValueError if unknown."""
    if style not in _LOOKS:
        raise ValueError(
            f"synthetic long style {style!r}: expected one of {', '.join(LONG_STYLES)}"
        )
    return _LOOKS[style].base


def long_seed(style: str, seed: int) -> int:
    """The seed a long style's faces and framing are drawn with."""
    long_look_style(style)
    return seed + _LOOKS[style].seed_offset


def _names(style: str, number: int, index: int) -> tuple[str, str]:
    """(subject id, recording id) of recording ``index`` of subject ``number``."""
    if style == "samm-lv":
        subject = f"{number:03d}"
        return subject, f"{subject}_{index + 1}"
    if style == "casme-sq-lv":
        code, folder, _ = CASME_SQ_STIMULI[index]
        return f"s{number}", f"{number}_{code:04d}{folder}"
    return f"spNO.{number}", _CASME3_RECORDINGS[index]


def _segments(
    fps: float, first: int, n_frames: int, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(onset, n_frames, kind) of the expressions of one recording, in time order."""
    micro_max = math.floor(MICRO_MAX_SECONDS * fps)
    end = first + n_frames - 1 - round(0.5 * fps)
    kind_first = int(rng.integers(2))
    cursor = first + round(rng.uniform(1.0, 2.0) * fps)
    found: list[tuple[int, int, str]] = []
    while True:
        kind = ("micro", "macro")[(len(found) + kind_first) % 2]
        if kind == "micro":
            length = min(max(3, round(rng.uniform(0.2, MICRO_MAX_SECONDS) * fps)), micro_max)
        else:
            length = max(micro_max + 1, round(rng.uniform(0.6, 3.0) * fps))
        if cursor + length - 1 > end:
            return found
        found.append((cursor, length, kind))
        cursor += length + round(rng.uniform(1.2, 3.0) * fps)


def _neutral_stretches(
    first: int, last: int, busy: list[tuple[int, int]], margin: int
) -> Iterator[tuple[int, int]]:
    """Stretches of frames at least ``margin`` away from every busy (onset, offset) span."""
    start = first
    for onset, offset in busy:
        if onset - margin - 1 >= start:
            yield start, onset - margin - 1
        start = offset + margin + 1
    if start <= last:
        yield start, last


def _blinks(
    stretches: list[tuple[int, int]], fps: float, motion: _Motion, rng: np.random.Generator
) -> list[Blink]:
    blinks = []
    for start, stop in stretches:
        cursor = start + round(rng.uniform(0.2, motion.blink_gap[0]) * fps)
        while True:
            length = max(3, round(rng.uniform(0.15, 0.3) * fps))
            if cursor + length > stop:
                break
            blinks.append(Blink(cursor, cursor + length, round(float(rng.uniform(0.8, 1.0)), 3)))
            cursor += length + round(rng.uniform(*motion.blink_gap) * fps)
    return blinks


def _turns(
    stretches: list[tuple[int, int]],
    fps: float,
    motion: _Motion,
    face: float,
    rng: np.random.Generator,
) -> list[HeadTurn]:
    turns = []
    for start, stop in stretches:
        seconds = (stop - start + 1) / fps
        if rng.random() >= min(1.0, seconds * motion.turns_per_minute / 60.0):
            continue
        ramp = max(2, round(rng.uniform(0.15, 0.4) * fps))
        hold = round(rng.uniform(0.3, 1.2) * fps)
        room = stop - start - 2 * ramp - hold
        if room < 0:
            continue
        angle = rng.uniform(0, 2 * math.pi)
        distance = rng.uniform(*motion.turn_shift) * face
        roll = rng.uniform(*motion.turn_roll) * (1 if rng.random() < 0.5 else -1)
        turns.append(
            HeadTurn(
                start=start + int(rng.integers(room + 1)),
                ramp=ramp,
                hold=hold,
                shift=(round(distance * math.cos(angle), 3), round(distance * math.sin(angle), 3)),
                roll=round(roll, 3),
            )
        )
    return turns


def _drift(
    motion: _Motion, face: float, rng: np.random.Generator
) -> tuple[tuple[tuple[float, float, float], ...], ...]:
    axes = []
    for amplitude in (motion.drift * face, 0.75 * motion.drift * face, motion.drift_roll):
        parts = []
        for share in (0.6, 0.3, 0.1):
            period = round(float(rng.uniform(3.0, 20.0)) * share**0.5, 3)
            phase = round(float(rng.uniform(0, 2 * math.pi)), 3)
            parts.append((round(amplitude * share, 4), period, phase))
        axes.append(tuple(parts))
    return tuple(axes)


def _emotion(style: str, emotion: str, rng: np.random.Generator) -> str:
    """The emotion cell of a combination's emotion in a long style's vocabulary."""
    if style == "samm-lv":
        return ""  # the SAMM-LV file has no emotion column
    name = emotion.lower()
    if style == "casme3-lv":
        word = {"happiness": "happy", "sadness": "sad", "repression": "others"}.get(name, name)
        return "Others" if word == "others" and rng.random() < 0.3 else word
    return {"repression": "helpless", "other": "others"}.get(name, name)


def plan_long_recordings(
    style: str,
    subjects: int = 3,
    recordings_per_subject: int = 2,
    seconds: float = 20.0,
    seed: int = 0,
    difficulty: str = "normal",
    size: float = 1.0,
) -> list[LongRecording]:
    """The recordings :func:`~au_llm.synth.long.write_long_style` writes, without any pixels.

    Args:
        style: ``samm-lv`` (200 fps), ``casme-sq-lv`` or ``casme3-lv`` (30 fps).
        subjects: Number of subjects.
        recordings_per_subject: Recordings per subject (at most 9 for CAS(ME)^2, 13 for
            CAS(ME)^3).
        seconds: Length of each recording.
        seed: Seed of everything random.
        difficulty: ``normal`` or ``hard`` (smaller movements, more noise, more head motion,
            more blinks).
        size: Factor on the image size (0.25 for quick tests).

    Returns:
        Recordings by subject, then recording; ``frames_dir`` is relative to the frames root.

    Raises:
        ValueError: Unknown style or difficulty, or impossible sizes.
    """
    base = long_look_style(style)
    look = _LOOKS[style]
    level = difficulty_spec(difficulty)
    motion = _MOTION[difficulty]
    form = long_format(style)
    spec = style_spec(base)
    if not 1 <= subjects <= len(look.subjects):
        raise ValueError(f"{style}: subjects = {subjects}, expected 1..{len(look.subjects)}")
    if not 1 <= recordings_per_subject <= look.max_recordings:
        raise ValueError(
            f"{style}: recordings_per_subject = {recordings_per_subject}, expected "
            f"1..{look.max_recordings}"
        )
    if not (seconds >= 2.0 and math.isfinite(seconds)):
        raise ValueError(f"{style}: seconds = {seconds}, expected at least 2")
    if not 0.1 <= size <= 4.0:
        raise ValueError(f"{style}: size = {size}, expected 0.1..4")
    seed_used = long_seed(style, seed)
    layout = rng_for(seed_used, spec.code, RNG_LONG_LAYOUT)
    numbers = sorted(int(n) for n in layout.choice(look.subjects, size=subjects, replace=False))
    n_frames = round(seconds * form.fps)
    face = sum(spec.face_width) / 2
    margin = round(MARGIN_SECONDS * form.fps)
    timings = []
    for s, number in enumerate(numbers):
        for k in range(recordings_per_subject):
            rng = rng_for(seed_used, spec.code, s, k, RNG_TIMELINE)
            segments = _segments(form.fps, form.first_frame, n_frames, rng)
            timings.append((s, number, k, segments, rng))
    pool = HARD_COMBOS[base] if level.imbalanced else spec.combos
    combos = iter(dealt_combos(pool, sum(len(t[3]) for t in timings), layout))
    recordings = []
    for s, number, k, segments, rng in timings:
        subject, recording = _names(style, number, k)
        expressions = []
        for j, (onset, length, kind) in enumerate(segments):
            pairs, emotion, objective = next(combos)
            gain = 1.0 if kind == "micro" else 2.0
            actions = tuple(
                AUAction(au, side, round(gain * float(layout.uniform(*level.intensity)), 3))
                for au, side in pairs
            )
            offset = onset + length - 1
            apex = onset + round((length - 1) * float(rng.uniform(0.3, 0.6)))
            if style == "samm-lv":
                name = f"{recording}_{j + 1}"
            elif style == "casme-sq-lv":
                name = f"{CASME_SQ_STIMULI[k][2]}_{j + 1}"
            else:
                name = ""
            expressions.append(
                LongExpression(
                    onset=onset,
                    apex=min(max(apex, onset + 1), offset - 1),
                    offset=offset,
                    kind=kind,
                    name=name,
                    actions=actions,
                    aus=tuple(sorted(a.au for a in actions)),
                    au_cell=au_cell(base, actions, layout, level.letters),
                    emotion=_emotion(style, emotion, layout),
                    objective_class=objective,
                )
            )
        last = form.first_frame + n_frames - 1
        busy = [(e.onset, e.offset) for e in expressions]
        stretches = list(_neutral_stretches(form.first_frame, last, busy, margin))
        head = rng_for(seed_used, spec.code, s, k, RNG_HEAD)
        recordings.append(
            LongRecording(
                style=style,
                seed=seed,
                difficulty=difficulty,
                size=size,
                subject=subject,
                subject_number=number,
                subject_index=s,
                recording=recording,
                index=k,
                fps=form.fps,
                first_frame=form.first_frame,
                n_frames=n_frames,
                expressions=tuple(expressions),
                blinks=tuple(_blinks(stretches, form.fps, motion, head)),
                turns=tuple(_turns(stretches, form.fps, motion, face, head)),
                drift=_drift(motion, face, head),
                frames_dir=_frames_dir(style, subject, recording),
            )
        )
    return recordings


def _frames_dir(style: str, subject: str, recording: str) -> Path:
    """A recording's frames folder relative to the frames root, in the dataset's layout."""
    if style == "samm-lv":
        return Path(recording)
    if style == "casme-sq-lv":
        return Path(subject) / recording
    return Path(subject) / recording / "color"
