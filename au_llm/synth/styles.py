"""Synthetic data in the on-disk formats of CASME, CAS(ME)^3 Part A, MMEW and 4DME.

The clips are planned and rendered like the CASME II / SAMM styles (:mod:`.plan`, :mod:`.render`;
RGB 640x480 frames for CASME, CAS(ME)^3 and MMEW, grayscale 680x363 for 4DME) with a seed of their
own per style, so the four datasets show different people. What differs is the layout, written as
``au-llm manifest casme|casme3|mmew|4dme`` reads it (see ``data_manifests/DATASETS.md``):

* ``casme``: ``<out>/CASME_raw_selected/subNN/EPxx_yy/imgK.jpg`` and ``<out>/casme.xlsx``
  (``Subject, Filename, -, OnsetF, ApexF1, ApexF2, OffsetF, -, AU, Emotion``).
* ``casme3``: ``<out>/ME_A/spNO.N/<letter>/color/K.jpg`` and
  ``<out>/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (sheet ``label``). Clips of one subject share
  recordings (``a``, ``b``, ``e``): several rows repeat a ``Filename`` with later, disjoint frames.
* ``mmew``: ``<out>/Micro_Expression/<emotion>/<Filename>/K.jpg`` and ``<out>/MMEW_Micro_Exp.xlsx``.
* ``4dme``: ``<out>/gray_micro/<sub_ID>/<fold_name>/K.jpg`` and
  ``<out>/4DME_Labelling_Micro_release v1.xlsx``; AU cells such as ``AU4+AU7`` (no sides); every
  fifth clip names an extra ``AU45(k)`` part (not animated; the builder does not count ``(k)``).

Where the real frame file names are not documented, frames are named by their number (the
builders only read the integer at the end of a name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from au_llm.data.builders import DATASET_FORMATS
from au_llm.io_utils import atomic_write_bytes
from au_llm.synth.long import LONG_STYLES, LongSynthResult, write_long_style
from au_llm.synth.plan import STYLES, SynthClip, plan_clips, style_spec
from au_llm.synth.write import (
    SynthResult,
    prepare_root,
    write_clip_frames,
    write_synthetic,
    xlsx_bytes,
)

logger = logging.getLogger(__name__)

# style -> (rendering style, seed offset); the frames root and label file are the dataset's
# (:data:`~au_llm.data.builders.DATASET_FORMATS`).
_LAYOUTS = {
    "casme": ("casme2", 1001),
    "casme3": ("casme2", 2003),
    "mmew": ("casme2", 3005),
    "4dme": ("samm", 4007),
}
COMPOSITE_STYLES = tuple(_LAYOUTS)
_RECORDINGS = ("a", "b", "e")
_RECORDING_GAP = 7
_MMEW_EMOTIONS = {"repression": "others"}
_HEADERS = {
    "casme": (
        "Subject",
        "Filename",
        None,
        "OnsetF",
        "ApexF1",
        "ApexF2",
        "OffsetF",
        None,
        "AU",
        "Emotion",
    ),
    "casme3": (
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "AU",
        "Objective class",
        "emotion",
    ),
    "mmew": (
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
        "remarks",
    ),
    "4dme": ("sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset", "AUs"),
}


def _casme3_timing(clips: list[SynthClip]) -> list[tuple[SynthClip, str]]:
    """Give each clip a recording letter and frames after the previous clip of that recording."""
    placed: list[tuple[SynthClip, str]] = []
    ends: dict[tuple[str, str], int] = {}
    uses: dict[tuple[str, str], int] = {}
    for clip in clips:
        letter = _RECORDINGS[clip.index % len(_RECORDINGS)]
        key = (clip.subject, letter)
        onset = ends.get(key, clip.onset % 50) + _RECORDING_GAP
        shift = onset - clip.onset
        moved = replace(clip, onset=onset, apex=clip.apex + shift, offset=clip.offset + shift)
        ends[key] = moved.offset
        uses[key] = uses.get(key, 0) + 1
        name = letter if uses[key] == 1 else f"{letter}{uses[key]}"
        placed.append((replace(moved, clip=name), letter))
    return placed


def _layout(style: str, clip: SynthClip, filename: str) -> tuple[SynthClip, Path, list[object]]:
    """The clip renamed for ``style``, its frames folder (relative) and its label row."""
    n = clip.subject_number
    cell = clip.au_cell
    if style == "casme":
        subject, name = f"sub{n:02d}", filename.rstrip("f")
        folder = Path(subject) / name
        row = [n, name, None, clip.onset, clip.apex, None, clip.offset, None, cell, clip.emotion]
    elif style == "casme3":
        subject, name = f"spNO.{n}", clip.clip
        folder = Path(subject) / filename / "color"
        row = [subject, filename, clip.onset, clip.apex, clip.offset, cell]
        row += [clip.objective_class, clip.emotion]
    elif style == "mmew":
        subject = f"S{n:02d}"
        name = f"{subject}_{clip.index + 1:02d}"
        emotion = _MMEW_EMOTIONS.get(clip.emotion, clip.emotion)
        folder = Path(emotion) / name
        row = [subject, name, clip.onset, clip.apex, clip.offset, cell, emotion, None]
    else:
        subject = f"S{n:03d}"
        name = f"{subject}_{clip.index + 1:02d}"
        parts = [f"AU{au}" for au in clip.aus]
        if clip.index % 5 == 4:
            parts.append("AU45(k)")
        folder = Path(subject) / name
        row = [subject, name, clip.emotion, clip.onset, clip.apex, clip.offset, "+".join(parts)]
    return replace(clip, subject=subject, clip=name, frames_dir=folder), folder, row


def write_composite_style(
    style: str,
    out: Path,
    subjects: int = 4,
    clips_per_subject: int = 6,
    seed: int = 0,
    frames_per_clip: int | None = None,
    difficulty: str = "normal",
) -> SynthResult:
    """Write a synthetic dataset in the CASME, CAS(ME)^3 Part A, MMEW or 4DME format.

    Args:
        style: ``casme``, ``casme3``, ``mmew`` or ``4dme``.
        out: Output folder (frames root and label file go inside; an existing frames root is
            replaced only when it holds synthetic data).
        subjects: Number of subjects.
        clips_per_subject: Clips per subject.
        seed: Seed; the same seed writes byte-identical files.
        frames_per_clip: Frames per clip (at least 3); None draws 12-24.
        difficulty: ``normal`` or ``hard``.

    Returns:
        The frames root, the label file and the clips (``subject``/``clip`` as the manifest
        builder names them; ``frames_dir`` absolute).

    Raises:
        ValueError: Unknown style or difficulty, or impossible sizes.
        FileExistsError: The frames root exists and is not synthetic.
    """
    if style not in _LAYOUTS:
        raise ValueError(f"synthetic style {style!r}: expected one of {', '.join(_LAYOUTS)}")
    base, offset = _LAYOUTS[style]
    spec = DATASET_FORMATS[style]
    planned = plan_clips(
        base, subjects, clips_per_subject, seed + offset, frames_per_clip, difficulty, name=style
    )
    named = _casme3_timing(planned) if style == "casme3" else [(c, c.clip) for c in planned]
    out = Path(out)
    root = out / spec.root_name
    prepare_root(root)
    pattern = "img{}.jpg" if style == "casme" else "{}.jpg"
    clips, rows = [], []
    for clip, filename in named:
        renamed, folder, row = _layout(style, clip, filename)
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        write_clip_frames(renamed, lambda frame, at=target: at / pattern.format(frame))
        clips.append(replace(renamed, frames_dir=target))
        rows.append(row)
    sheet = "label" if style == "casme3" else "Sheet1"
    coding = out / spec.coding_names[0]
    atomic_write_bytes(coding, xlsx_bytes([(sheet, [list(_HEADERS[style]), *rows])]))
    logger.info("wrote synthetic %s data: %d clips under %s", style, len(clips), root)
    return SynthResult(style=style, root=root, coding=coding, clips=clips)


def output_names(style: str) -> tuple[str, str]:
    """The frames root and the annotation file a style writes into its output folder.

    Raises:
        ValueError: Unknown style.
    """
    if style in _LAYOUTS:
        spec = DATASET_FORMATS[style]
        return spec.root_name, spec.coding_names[0]
    plan = style_spec(style)
    return plan.root_name, plan.coding_name


SynthWriter = Callable[..., SynthResult | LongSynthResult]
SYNTH_STYLES: dict[str, SynthWriter] = {
    **{style: write_synthetic for style in STYLES},
    **{style: write_composite_style for style in _LAYOUTS},
    **{style: write_long_style for style in LONG_STYLES},
}
"""Every synthetic style by name (``au-llm synth --style``) -> its writer, called as
``writer(style, out, subjects, clips_per_subject, seed=..., difficulty=...)``; the long-video
styles (:data:`~au_llm.synth.long.LONG_STYLES`, ``--long``) write long recordings,
``writer(style, out, subjects, recordings_per_subject, seconds=..., seed=..., difficulty=...,
size=...)``."""
