"""Style settings, AU combinations and the clip plan (names, frames, AUs) of the synthetic data.

Everything here is pixel-free: :func:`plan_clips` decides what :func:`au_llm.synth.write_synthetic`
writes. Timing (length, onset, apex) and episode / inducement codes come from a random stream of
their own that never sees the AUs; AU combinations are dealt out evenly over subjects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STYLES: tuple[str, ...] = ("casme2", "samm")

# Random-stream purposes (the last entry of every seed sequence).
RNG_LAYOUT, RNG_IDENTITY, RNG_CLIP, RNG_NOISE = 1, 2, 3, 4

# AU combinations (AU, side) with the estimated emotion and objective class written for them.
# Each style's pool is dealt out evenly, so every AU of the style's evaluated set is positive in
# 3-4 of every 16 clips.
Combo = tuple[tuple[tuple[int, str], ...], str, int]
_CASME_COMBOS: tuple[Combo, ...] = (
    (((1, ""), (2, "")), "surprise", 2),
    (((1, "R"), (2, "R")), "surprise", 2),
    (((1, ""), (2, "L")), "others", 2),
    (((4, ""),), "others", 3),
    (((4, ""), (7, "")), "disgust", 3),
    (((7, ""),), "others", 3),
    (((12, ""),), "happiness", 1),
    (((12, "R"),), "happiness", 1),
    (((7, ""), (12, "")), "happiness", 1),
    (((14, ""),), "repression", 7),
    (((14, "L"),), "repression", 7),
    (((15, ""), (17, "")), "repression", 5),
    (((17, ""),), "repression", 7),
    (((4, ""), (15, "")), "sadness", 5),
    (((1, ""), (4, ""), (15, "")), "sadness", 5),
    (((14, ""), (17, "")), "repression", 7),
)
_SAMM_COMBOS: tuple[Combo, ...] = (
    (((12, ""),), "Happiness", 1),
    (((12, "R"),), "Contempt", 7),
    (((4, ""),), "Anger", 3),
    (((4, ""), (7, "")), "Anger", 3),
    (((7, ""),), "Other", 3),
    (((1, ""), (2, "")), "Surprise", 2),
    (((2, "L"),), "Other", 2),
    (((7, ""), (12, "")), "Happiness", 1),
    (((14, "R"),), "Contempt", 7),
    (((15, ""), (17, "")), "Sadness", 5),
    (((1, ""), (2, ""), (4, "")), "Fear", 6),
    (((4, ""), (15, "")), "Sadness", 5),
    (((1, "R"), (2, "R")), "Surprise", 2),
    (((12, ""), (15, "")), "Other", 7),
    (((17, ""),), "Other", 7),
    (((7, "L"),), "Other", 7),
)

# The hard level's pools: CASME II-like imbalance, AU4 in half of the combinations (8 of 16).
_CASME_HARD_COMBOS: tuple[Combo, ...] = (
    (((4, ""),), "others", 3),
    (((4, ""),), "disgust", 3),
    (((4, ""), (7, "")), "disgust", 3),
    (((4, ""), (7, "L")), "disgust", 3),
    (((1, ""), (4, "")), "sadness", 5),
    (((4, ""), (15, "")), "sadness", 5),
    (((4, ""), (14, "L")), "repression", 7),
    (((4, ""), (17, "")), "repression", 7),
    (((1, ""), (2, "")), "surprise", 2),
    (((2, "L"),), "others", 2),
    (((12, ""),), "happiness", 1),
    (((12, "R"),), "happiness", 1),
    (((14, ""),), "repression", 7),
    (((7, ""),), "others", 3),
    (((17, ""),), "repression", 7),
    (((15, ""), (17, "")), "repression", 5),
)
_SAMM_HARD_COMBOS: tuple[Combo, ...] = (
    (((4, ""),), "Anger", 3),
    (((4, ""), (7, "")), "Anger", 3),
    (((4, "L"),), "Other", 3),
    (((1, ""), (2, ""), (4, "")), "Fear", 6),
    (((4, ""), (15, "")), "Sadness", 5),
    (((4, ""), (7, "R")), "Disgust", 3),
    (((4, ""), (12, "")), "Other", 7),
    (((4, ""), (17, "")), "Other", 7),
    (((12, ""),), "Happiness", 1),
    (((12, "R"),), "Contempt", 7),
    (((7, ""),), "Other", 3),
    (((1, ""), (2, "")), "Surprise", 2),
    (((14, "R"),), "Contempt", 7),
    (((15, ""), (17, "")), "Sadness", 5),
    (((17, ""),), "Other", 7),
    (((7, "L"),), "Other", 7),
)
HARD_COMBOS = {"casme2": _CASME_HARD_COMBOS, "samm": _SAMM_HARD_COMBOS}

SAMM_SUBJECTS = (6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28)
SAMM_SUBJECTS += (30, 31, 32, 33, 34, 35, 36, 37)


@dataclass(frozen=True)
class StyleSpec:
    """Rendering and naming settings of one dataset style (see :data:`STYLE_SPECS`)."""

    code: int
    width: int
    height: int
    gray: bool
    face_width: tuple[float, float]  # landmark extent in output pixels
    centre_x: tuple[float, float]  # face centre, fraction of the width
    centre_y: tuple[float, float]  # face centre, fraction of the height
    roll_deg: float
    noise_sigma: float
    jpeg_quality: int
    onset_range: tuple[int, int]
    root_name: str
    coding_name: str
    combos: tuple[Combo, ...]


STYLE_SPECS: dict[str, StyleSpec] = {
    "casme2": StyleSpec(
        code=2,
        width=640,
        height=480,
        gray=False,
        face_width=(170.0, 215.0),
        centre_x=(0.44, 0.56),
        centre_y=(0.50, 0.58),
        roll_deg=4.0,
        noise_sigma=2.0,
        jpeg_quality=92,
        onset_range=(20, 250),
        root_name="CASME2_RAW_selected",
        coding_name="CASME2-coding-20190701.xlsx",
        combos=_CASME_COMBOS,
    ),
    "samm": StyleSpec(
        code=3,
        width=680,
        height=363,
        gray=True,
        face_width=(120.0, 150.0),
        centre_x=(0.38, 0.62),
        centre_y=(0.48, 0.56),
        roll_deg=3.0,
        noise_sigma=1.5,
        jpeg_quality=90,
        onset_range=(800, 6000),
        root_name="SAMM",
        coding_name="SAMM_Micro_FACS_Codes_v2.xlsx",
        combos=_SAMM_COMBOS,
    ),
}


@dataclass(frozen=True)
class Difficulty:
    """How hard a synthetic dataset is (see :data:`DIFFICULTIES`).

    Attributes:
        intensity: Range of an AU's apex amplitude, relative to its nominal displacement.
        letters: Amplitudes below which SAMM-style cells say intensity ``A``, then ``B``
            (``C`` above).
        jitter_step: Standard deviation of the per-frame head random walk, in output pixels.
        jitter_max: Largest head offset from the clip's mean position, in output pixels.
        noise_factor: Sensor noise, as a multiple of the style's ``noise_sigma``.
        pose_shift: Largest per-clip head shift, as a fraction of the frame width.
        pose_roll_deg: Largest per-clip extra roll, in degrees.
        imbalanced: Deal the AU combinations from :data:`HARD_COMBOS` (AU4 in half the clips).
    """

    intensity: tuple[float, float]
    letters: tuple[float, float]
    jitter_step: float
    jitter_max: float
    noise_factor: float
    pose_shift: float
    pose_roll_deg: float
    imbalanced: bool


DIFFICULTIES: dict[str, Difficulty] = {
    "normal": Difficulty((0.75, 1.3), (0.9, 1.1), 0.15, 0.6, 1.0, 0.015, 1.5, False),
    "hard": Difficulty((0.35, 0.6), (0.43, 0.52), 0.35, 1.5, 2.5, 0.03, 3.0, True),
}


def difficulty_spec(name: str) -> Difficulty:
    """Settings of a difficulty level (``normal`` or ``hard``); ValueError for another name."""
    if name not in DIFFICULTIES:
        raise ValueError(
            f"synthetic difficulty {name!r}: expected one of {', '.join(DIFFICULTIES)}"
        )
    return DIFFICULTIES[name]


@dataclass(frozen=True)
class AUAction:
    """One animated Action Unit of a clip.

    Attributes:
        au: AU number (one of ``ANIMATED_AUS``).
        side: ``""`` (both sides), ``"L"`` or ``"R"`` (the subject's left / right only).
        intensity: Apex amplitude relative to the AU's nominal displacement (drawn from the
            difficulty's range: 0.75-1.3 normal, 0.35-0.6 hard).
    """

    au: int
    side: str
    intensity: float


@dataclass(frozen=True)
class SynthClip:
    """One synthetic clip, as written.

    Attributes:
        style: ``casme2`` or ``samm``.
        seed: Seed the dataset was written with.
        subject: Subject folder name (``sub05``, ``011``).
        subject_number: ``Subject`` cell of the spreadsheet (5, 11).
        subject_index: Position of the subject among the generated ones (selects its identity).
        index: Position of the clip within its subject (selects its pose, brightness, jitter).
        clip: ``Filename`` cell and clip folder name (``EP07_02f``, ``011_3_2``).
        onset: First frame number.
        apex: Apex frame number (onset < apex < offset).
        offset: Last frame number.
        aus: Intended AU set, sorted.
        au_cell: ``Action Units`` cell as written (an int for one plain AU, else a string).
        emotion: ``Estimated Emotion`` cell.
        objective_class: ``Objective Classes`` cell.
        actions: The animated AUs with their side and intensity.
        frames_dir: Folder of the clip's frames.
        difficulty: ``normal`` or ``hard`` (see :data:`DIFFICULTIES`).
    """

    style: str
    seed: int
    subject: str
    subject_number: int
    subject_index: int
    index: int
    clip: str
    onset: int
    apex: int
    offset: int
    aus: tuple[int, ...]
    au_cell: int | str
    emotion: str
    objective_class: int
    actions: tuple[AUAction, ...]
    frames_dir: Path
    difficulty: str = "normal"

    @property
    def n_frames(self) -> int:
        """Number of frames written (onset..offset)."""
        return self.offset - self.onset + 1

    def frame_path(self, frame: int) -> Path:
        """Path of the JPEG file of frame number ``frame``."""
        if self.style == "samm":
            return self.frames_dir / f"{self.subject}_{frame:05d}.jpg"
        return self.frames_dir / f"img{frame}.jpg"


def style_spec(style: str) -> StyleSpec:
    """Settings of a style (``casme2`` or ``samm``); ValueError for another name."""
    if style not in STYLE_SPECS:
        raise ValueError(f"synthetic style {style!r}: expected one of {', '.join(STYLES)}")
    return STYLE_SPECS[style]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for ``seed`` and integer ``keys`` (subject, clip, purpose)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _subject_numbers(style: str, subjects: int, rng: np.random.Generator) -> list[int]:
    pool = list(range(1, 27)) if style == "casme2" else list(SAMM_SUBJECTS)
    limit = 99 if style == "casme2" else 999
    if subjects > limit:
        raise ValueError(f"{style}: at most {limit} synthetic subjects, got {subjects}")
    if subjects > len(pool):
        pool += list(range(pool[-1] + 1, pool[-1] + 1 + subjects - len(pool)))
    return sorted(int(n) for n in rng.choice(pool, size=subjects, replace=False))


def dealt_combos(pool: tuple[Combo, ...], count: int, rng: np.random.Generator) -> list[Combo]:
    """``count`` combinations: concatenated random permutations of the pool (even coverage)."""
    dealt: list[Combo] = []
    while len(dealt) < count:
        dealt += [pool[i] for i in rng.permutation(len(pool))]
    return dealt[:count]


def _intensity_letter(intensity: float, bounds: tuple[float, float]) -> str:
    """``A`` below ``bounds[0]``, ``B`` below ``bounds[1]``, else ``C``."""
    return "A" if intensity < bounds[0] else "B" if intensity < bounds[1] else "C"


def au_cell(
    style: str, actions: Sequence[AUAction], rng: np.random.Generator, bounds: tuple[float, float]
) -> int | str:
    """The ``Action Units`` cell of ``actions``: ``12``, ``4+L7``; SAMM adds intensity letters.

    Args:
        style: ``samm`` writes an intensity letter after about half the AUs (``12B``).
        actions: The animated AUs.
        rng: Draws which AUs get a letter.
        bounds: Amplitudes below which the letter is ``A``, then ``B`` (``C`` above).
    """
    parts = []
    for action in actions:
        part = f"{action.side}{action.au}"
        if style == "samm" and rng.random() < 0.5:
            part += _intensity_letter(action.intensity, bounds)
        parts.append(part)
    if len(parts) == 1 and parts[0].isdigit():
        return int(parts[0])
    return "+".join(parts)


def plan_clips(
    style: str,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    frames_per_clip: int | None = None,
    difficulty: str = "normal",
) -> list[SynthClip]:
    """The clips :func:`write_synthetic` writes with the same arguments, without any pixels.

    Names, frame numbers, AUs and cells are drawn from streams of their own: the timing
    (length, onset, apex) and the episode / inducement codes never see the AUs.

    Args:
        style: ``casme2`` or ``samm``.
        subjects: Number of subjects.
        clips_per_subject: Clips per subject.
        seed: Seed of everything random.
        frames_per_clip: Frames per clip (at least 3); None draws 12-24 per clip.
        difficulty: ``normal`` or ``hard`` (see :data:`DIFFICULTIES`).

    Returns:
        Clips in spreadsheet order; ``frames_dir`` is relative to the frames root.

    Raises:
        ValueError: For an unknown style or difficulty, or impossible sizes.
    """
    spec = style_spec(style)
    level = difficulty_spec(difficulty)
    if subjects < 1 or clips_per_subject < 1:
        raise ValueError(
            f"synthetic {style}: subjects ({subjects}) and clips_per_subject "
            f"({clips_per_subject}) must be >= 1"
        )
    if frames_per_clip is not None and frames_per_clip < 3:
        raise ValueError(f"synthetic {style}: frames_per_clip = {frames_per_clip}, expected >= 3")
    rng = rng_for(seed, spec.code, RNG_LAYOUT)
    numbers = _subject_numbers(style, subjects, rng)
    pool = HARD_COMBOS[style] if level.imbalanced else spec.combos
    combos = dealt_combos(pool, subjects * clips_per_subject, rng)
    timing = rng_for(seed, spec.code, RNG_LAYOUT, 1)
    clips: list[SynthClip] = []
    for s, number in enumerate(numbers):
        folder = f"sub{number:02d}" if style == "casme2" else f"{number:03d}"
        counters: dict[int, int] = {}
        rows = []
        for k in range(clips_per_subject):
            pairs, emotion, objective = combos[s * clips_per_subject + k]
            n = frames_per_clip if frames_per_clip else int(timing.integers(12, 25))
            onset = int(timing.integers(*spec.onset_range))
            apex = onset + int(timing.integers(round(0.3 * (n - 1)), round(0.6 * (n - 1)) + 1))
            apex = min(max(apex, onset + 1), onset + n - 2)
            code = int(timing.integers(1, 20 if style == "casme2" else 8))
            counters[code] = counters.get(code, 0) + 1
            if style == "casme2":
                suffix = "f" if timing.random() < 0.3 else ""
                name = f"EP{code:02d}_{counters[code]:02d}{suffix}"
            else:
                name = f"{folder}_{code}_{counters[code]}"
            actions = tuple(
                AUAction(au, side, round(float(rng.uniform(*level.intensity)), 3))
                for au, side in pairs
            )
            rows.append((name, k, onset, apex, n, actions, emotion, objective))
        for name, k, onset, apex, n, actions, emotion, objective in sorted(rows):
            clips.append(
                SynthClip(
                    style=style,
                    seed=seed,
                    subject=folder,
                    subject_number=number,
                    subject_index=s,
                    index=k,
                    clip=name,
                    onset=onset,
                    apex=apex,
                    offset=onset + n - 1,
                    aus=tuple(sorted(a.au for a in actions)),
                    au_cell=au_cell(style, actions, rng, level.letters),
                    emotion=emotion,
                    objective_class=objective,
                    actions=actions,
                    frames_dir=Path(folder) / name,
                    difficulty=difficulty,
                )
            )
    return clips
